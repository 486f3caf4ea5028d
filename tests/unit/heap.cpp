//===- heap.cpp - The test binary's operator new and delete ----------------===//
//
// soma_tests replaces the global operator new and delete (for every library
// of the process: libsoma, libMLIR and libLLVM call them through the PLT)
// to do two things:
//
//  - count allocations, for the test that steady-state training steps
//    allocate nothing (allocation_test.cpp);
//  - poison every freed block with 0xA5 bytes before freeing it, so that a
//    read of freed memory gives garbage at once instead of the old contents.
//    A read through a stale reference into a DenseMap that grew (the map's
//    table is freed and reallocated) is then a crash in the test that does
//    it, not a crash in one run of twenty when another thread happens to
//    reuse the block first. Values and pointers read from poisoned memory
//    are 0xA5A5A5A5A5A5A5A5, a non-canonical address on x86-64.
//
//===----------------------------------------------------------------------===//

#include "test_util.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <new>

namespace {

std::atomic<long> gAllocations{0};

void *allocate(std::size_t n, std::size_t align) {
  gAllocations.fetch_add(1, std::memory_order_relaxed);
  n = n ? n : 1;
  void *p = align <= alignof(std::max_align_t) ? std::malloc(n)
                                                : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (!p)
    throw std::bad_alloc();
  return p;
}

void release(void *p) noexcept {
  if (!p)
    return;
  std::memset(p, 0xA5, malloc_usable_size(p));
  // Without this, the compiler deletes the memset as a dead store before
  // free (GCC 12 at -O3 did): the block must look read afterwards.
  asm volatile("" : : "r"(p) : "memory");
  std::free(p);
}

} // namespace

long soma::test::heapAllocations() { return gAllocations.load(); }

void *operator new(std::size_t n) { return allocate(n, 0); }
void *operator new[](std::size_t n) { return allocate(n, 0); }
void *operator new(std::size_t n, std::align_val_t a) { return allocate(n, static_cast<std::size_t>(a)); }
void *operator new[](std::size_t n, std::align_val_t a) { return allocate(n, static_cast<std::size_t>(a)); }
void *operator new(std::size_t n, const std::nothrow_t &) noexcept {
  try {
    return allocate(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void *operator new[](std::size_t n, const std::nothrow_t &t) noexcept { return ::operator new(n, t); }
void operator delete(void *p) noexcept { release(p); }
void operator delete[](void *p) noexcept { release(p); }
void operator delete(void *p, std::size_t) noexcept { release(p); }
void operator delete[](void *p, std::size_t) noexcept { release(p); }
void operator delete(void *p, std::align_val_t) noexcept { release(p); }
void operator delete[](void *p, std::align_val_t) noexcept { release(p); }
void operator delete(void *p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void *p, std::size_t, std::align_val_t) noexcept { release(p); }

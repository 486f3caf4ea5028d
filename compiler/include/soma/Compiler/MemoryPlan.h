//===- MemoryPlan.h - Offsets for buffers with live ranges --------*- C++ -*-===//
#pragma once

#include <cstdint>
#include <vector>

namespace soma {

/// A buffer of `bytes` live over the schedule positions [start, end].
struct BufferInterval {
  int64_t start;
  int64_t end;
  int64_t bytes;
};

/// Offsets (aligned to `alignment`) such that buffers whose live ranges
/// intersect never overlap; *totalBytes receives the arena size (aligned).
/// Greedy best fit by decreasing size.
std::vector<int64_t> placeBuffers(const std::vector<BufferInterval> &buffers,
                                  int64_t alignment, int64_t *totalBytes);

} // namespace soma

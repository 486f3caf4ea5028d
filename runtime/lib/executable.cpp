//===- executable.cpp - Calling compiled code ------------------------------===//

#include "soma/executable.h"
#include "soma/error.h"

#include <cstdio>
#include <cstdlib>

#include <pthread.h>

// libomp's own interface (the compiled kernels run on libomp's threads).
extern "C" int kmp_get_blocktime(void);
extern "C" void kmp_set_blocktime(int msec);
extern "C" int omp_get_max_threads(void);
extern "C" size_t kmp_get_stacksize_s(void);

namespace soma {

namespace {

/// How long (ms) an idle OpenMP worker spins for the next kernel of the
/// same call before it sleeps: SOMA_SPIN_MS (0 to 1000), 1 unless set; a
/// value that is not one of those is reported once and ignored.
int spinMs() {
  static const int ms = [] {
    const char *v = std::getenv("SOMA_SPIN_MS");
    if (!v || !*v)
      return 1;
    char *end = nullptr;
    long x = std::strtol(v, &end, 10);
    if (*end == '\0' && x >= 0 && x <= 1000)
      return static_cast<int>(x);
    std::fprintf(stderr, "soma: warning: SOMA_SPIN_MS='%s' is not a whole number of milliseconds from 0 to 1000; "
                         "using 1\n", v);
    return 1;
  }();
  return ms;
}

/// Workers awake for the duration of one call. A step runs tens to
/// hundreds of kernels, each its own parallel region, with sequential ones
/// between them; a worker that sleeps between two of them (as
/// KMP_BLOCKTIME=0 asks) takes the OS 30-120 us to wake on a VM, longer
/// than many kernels run. So while a call runs, idle workers spin up to
/// spinMs() for the next kernel (libomp's blocktime), and the process's
/// own setting comes back when it returns: the workers then sleep at most
/// spinMs() later. A longer setting is left alone.
class SpinWhileCalling {
public:
  SpinWhileCalling() {
    if (omp_get_max_threads() < 2)
      return;
    int now = kmp_get_blocktime();
    if (now < spinMs()) {
      saved_ = now;
      kmp_set_blocktime(spinMs());
    }
  }
  ~SpinWhileCalling() {
    if (saved_ >= 0)
      kmp_set_blocktime(saved_);
  }
  SpinWhileCalling(const SpinWhileCalling &) = delete;
  SpinWhileCalling &operator=(const SpinWhileCalling &) = delete;

private:
  int saved_ = -1; // the setting to restore, if it was changed
};

} // namespace

static int findByName(const std::vector<TensorSpec> &specs, const std::string &name) {
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].name == name)
      return static_cast<int>(i);
  return -1;
}

int Signature::find_input(const std::string &name) const { return findByName(inputs, name); }
int Signature::find_param(const std::string &name) const { return findByName(params, name); }
int Signature::find_state(const std::string &name) const { return findByName(states, name); }

static std::string typeOf(DType dt, const Shape &s) { return std::string(dtype_name(dt)) + shape_str(s); }

std::vector<std::pair<std::string, Array>>
Signature::match_params(const std::vector<std::pair<std::string, Array>> &given) const {
  std::vector<std::pair<std::string, Array>> out;
  for (const TensorSpec &spec : params) {
    const Array *found = nullptr;
    for (const auto &[n, a] : given)
      if (n == spec.name)
        found = &a;
    if (!found)
      throw Error("parameter '" + spec.name + "' (" + typeOf(spec.dtype, spec.shape) + ") is missing");
    if (found->empty() || found->dtype() != spec.dtype || found->shape() != spec.shape)
      throw Error("parameter '" + spec.name + "': the model has " + typeOf(spec.dtype, spec.shape) +
                  ", the given value is " +
                  (found->empty() ? std::string("empty") : typeOf(found->dtype(), found->shape())));
    out.emplace_back(spec.name, *found);
  }
  for (const auto &[n, a] : given)
    if (find_param(n) < 0)
      throw Error("parameter '" + n + "' is not a parameter of the model '" + name + "'");
  return out;
}
int Signature::find_output(const std::string &name) const { return findByName(outputs, name); }

Executable::Executable(Signature signature, PackedFn fn, std::shared_ptr<void> owner)
    : sig_(std::move(signature)), fn_(fn), owner_(std::move(owner)) {
  size_t bytes = static_cast<size_t>(std::max<int64_t>(sig_.workspace_bytes, 0));
  bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (bytes == 0)
    bytes = kAlignment;
  void *p = std::aligned_alloc(kAlignment, bytes);
  if (!p)
    throw Error("cannot allocate a workspace of " + std::to_string(bytes) + " bytes");
  workspace_ = std::shared_ptr<std::byte>(static_cast<std::byte *>(p), [](std::byte *q) { std::free(q); });
}

namespace {
std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

/// The running thread's stack, [low, high) (both 0 if unknown), found once
/// per thread: for the main thread glibc reads /proc/self/maps.
struct StackRange {
  uintptr_t low = 0, high = 0;
};
StackRange threadStack() {
  thread_local const StackRange range = [] {
    StackRange r;
    pthread_attr_t attr;
    void *addr = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      if (pthread_attr_getstack(&attr, &addr, &size) == 0 && addr) {
        r.low = reinterpret_cast<uintptr_t>(addr);
        r.high = r.low + size;
      }
      pthread_attr_destroy(&attr);
    }
    return r;
  }();
  return range;
}

/// The compiled code keeps its scratch on the stacks of the threads that
/// run it (Signature::stack_bytes); a stack too small for it would end
/// the program with SIGSEGV, so this says so first.
void checkStack(const Signature &sig) {
  if (sig.stack_bytes <= 0)
    return;
  const auto need = static_cast<uintptr_t>(sig.stack_bytes);
  // (Not checked when the frame is not on the thread's stack: a fiber, a
  // signal stack, a sanitizer's fake stack.)
  StackRange stack = threadStack();
  auto sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  const uintptr_t low = stack.low;
  auto needs = [&] { // (the start of either message; built only to throw)
    return "'" + sig.name + "' needs about " + mib(sig.stack_bytes) +
           " of stack for its scratch (packed GEMM panels, convolution blocks and masks)";
  };
  if (low && sp > low && sp < stack.high && sp - low < need)
    throw Error(needs() + ", and the calling thread has " + mib(static_cast<int64_t>(sp - low)) +
                " left: call it from a thread with a larger stack (the main thread's is `ulimit -s`, 8 MiB by "
                "default; a std::thread's 8 MiB)");
  if (omp_get_max_threads() > 1) {
    size_t worker = kmp_get_stacksize_s();
    if (worker > 0 && worker < need)
      throw Error(needs() + " on every OpenMP thread, and OpenMP's threads have " + mib(static_cast<int64_t>(worker)) +
                  " (OMP_STACKSIZE): set OMP_STACKSIZE=" + std::to_string((sig.stack_bytes + (1 << 20) - 1) >> 20) +
                  "M or more, or run on one thread (OMP_NUM_THREADS=1)");
  }
}
} // namespace

static void check(const char *role, const std::vector<TensorSpec> &specs,
                  std::span<const Array> arrays) {
  if (arrays.size() != specs.size())
    throw Error(std::string("expected ") + std::to_string(specs.size()) + " " +
                role + "s, got " + std::to_string(arrays.size()));
  for (size_t i = 0; i < specs.size(); ++i) {
    const Array &a = arrays[i];
    const TensorSpec &s = specs[i];
    if (a.empty() || a.dtype() != s.dtype || a.shape() != s.shape)
      throw Error(std::string(role) + " '" + s.name + "': expected " +
                  dtype_name(s.dtype) + shape_str(s.shape) + ", got " +
                  (a.empty() ? std::string("nothing")
                             : std::string(dtype_name(a.dtype())) + shape_str(a.shape())));
  }
}

void Executable::call(std::span<const Array> inputs, std::span<const Array> params,
                      std::span<Array> outputs) {
  call(inputs, params, {}, outputs);
}

void Executable::call(std::span<const Array> inputs, std::span<const Array> params,
                      std::span<const Array> states, std::span<Array> outputs) {
  if (!fn_)
    throw Error("calling an empty Executable");
  checkStack(sig_);
  check("input", sig_.inputs, inputs);
  check("parameter", sig_.params, params);
  check("state", sig_.states, states);
  check("output", sig_.outputs, std::span<const Array>(outputs.data(), outputs.size()));
  std::vector<void *> &ptrs = ptrs_, &args = args_;
  ptrs.clear();
  for (const Array &a : inputs)
    ptrs.push_back(const_cast<void *>(a.raw()));
  for (const Array &a : params)
    ptrs.push_back(const_cast<void *>(a.raw()));
  for (const Array &a : states)
    ptrs.push_back(const_cast<void *>(a.raw()));
  for (Array &a : outputs)
    ptrs.push_back(a.raw());
  ptrs.push_back(workspace_.get());
  args.resize(ptrs.size());
  for (size_t i = 0; i < ptrs.size(); ++i)
    args[i] = &ptrs[i];
  SpinWhileCalling spin;
  fn_(args.data());
}

std::vector<Array> Executable::make_states() const {
  std::vector<Array> out;
  for (size_t i = 0; i < sig_.states.size(); ++i) {
    Array a(sig_.states[i].dtype, sig_.states[i].shape);
    float init = static_cast<float>(sig_.state_init[i]);
    for (int64_t k = 0; k < a.numel(); ++k)
      a.data<float>()[k] = init;
    out.push_back(a);
  }
  return out;
}

std::vector<Array> Executable::make_outputs() const {
  // Not zeroed: a call writes its outputs whole (zeroing the ResNet
  // layer's 6.4 MB input gradient before each Inference::run cost 3.64 ->
  // 3.52 ms a call, min of 100, 2 threads).
  std::vector<Array> out;
  for (const TensorSpec &s : sig_.outputs)
    out.push_back(Array::uninitialized(s.dtype, s.shape));
  return out;
}

} // namespace soma

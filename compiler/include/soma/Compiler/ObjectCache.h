//===- ObjectCache.h - Compiled objects on disk, for the JIT -------*- C++ -*-===//
//
// jitCompile keeps the machine code it makes in a directory, keyed by the
// graph module, the compile mode and opt level, the target and the
// compiler itself. Running the same model again loads the object from
// there instead of lowering and optimising it (see docs/pipeline.md, "The
// compiled-object cache").
//
//===----------------------------------------------------------------------===//
#pragma once

#include "soma/compile.h"
#include "soma/executable.h"

#include "mlir/IR/BuiltinOps.h"

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace soma {

/// What identifies the code a compilation makes, besides the module.
struct CacheTarget {
  std::string triple, cpu, features;
  int64_t threads = 0; // what the GEMMs' units were cut for (0: unknown)
};

/// The cache key (64 hex digits, a BLAKE3 hash) of compiling `graphModule`
/// (printed in the generic form, without locations) in `mode` at `optLevel`
/// for `target` with this build of soma, MLIR and LLVM (compilerIdentity).
std::string objectCacheKey(mlir::ModuleOp graphModule, Mode mode, int optLevel,
                           const CacheTarget &target);

/// The compiler's identity in the key: the entry format version, the LLVM
/// version, and the GNU build IDs of the loaded libsoma, libMLIR and libLLVM
/// (read from their ELF notes, so any rebuild that changes code changes it;
/// an object without a build ID is identified by its path, size and mtime).
const std::string &compilerIdentity();

/// One cache entry: the kernel's ABI and its relocatable object code, one
/// object per piece the module was compiled in (linked together on load).
struct CachedObject {
  Signature signature;
  std::vector<std::string> objects;
};

/// The entry file's bytes: a header (magic, format version, key, payload
/// size, BLAKE3 of the payload), then the payload.
std::string serializeCachedObject(const std::string &key, const CachedObject &entry);
/// The entry in `bytes`; a wrong magic, version or key, a truncated or
/// corrupted file throws soma::Error saying which.
CachedObject parseCachedObject(const std::string &key, const std::string &bytes);

/// The cache directory. Disabled when SOMA_CACHE=0, when the compilation
/// asks for no cache, or when no directory is known.
class ObjectCache {
public:
  /// The directory from the environment: $SOMA_CACHE_DIR, else
  /// $XDG_CACHE_HOME/soma, else $HOME/.cache/soma; none with SOMA_CACHE=0.
  static ObjectCache fromEnvironment();
  ObjectCache() = default;
  explicit ObjectCache(std::string dir) : dir_(std::move(dir)) {}

  bool enabled() const { return !dir_.empty(); }
  const std::string &dir() const { return dir_; }
  std::string path(const std::string &key) const;

  /// The entry for `key`, or nothing when there is none. An unreadable or
  /// corrupt entry prints one warning line to stderr, is removed, and gives
  /// nothing.
  std::optional<CachedObject> load(const std::string &key) const;
  /// Writes the entry atomically (temporary file + rename). A directory that
  /// cannot be written prints one warning (once per directory and process)
  /// and turns writing off for it; never throws.
  void store(const std::string &key, const CachedObject &entry) const;
  /// Removes the entry (a bad one), ignoring errors.
  void remove(const std::string &key) const;

private:
  std::string dir_;
};

/// Counters of this process's JIT compilations, for tests and reports.
struct ObjectCacheStats {
  std::atomic<uint64_t> hits{0};     // served from the cache
  std::atomic<uint64_t> misses{0};   // looked up, not found (or not usable)
  std::atomic<uint64_t> rejected{0}; // entries found corrupt or unloadable
  std::atomic<uint64_t> stores{0};   // entries written
  std::atomic<uint64_t> compiles{0}; // JIT compilations that ran the lowering
  std::atomic<uint64_t> in_worker{0}; // ... of which in soma-jit-worker
  std::atomic<uint64_t> plans_in_worker{0}; // checkpointing's plans made in soma-jit-worker
};
ObjectCacheStats &objectCacheStats();

} // namespace soma

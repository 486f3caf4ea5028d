//===- ObjectCache.cpp - Compiled objects on disk, for the JIT -------------===//

#include "soma/Compiler/ObjectCache.h"
#include "soma/Compiler/Bytes.h"
#include "soma/io.h"

#include "mlir/IR/OperationSupport.h"
#include "mlir/IR/Verifier.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/BLAKE3.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/Host.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace soma {

namespace {

/// Bump when the entry format or anything the key does not cover changes.
constexpr uint32_t kFormatVersion = 3; // 2: several objects per entry; 3: stack_bytes
constexpr char kMagic[8] = {'S', 'O', 'M', 'A', 'O', 'B', 'J', '\n'};
constexpr size_t kHashBytes = 32;

std::string hex(const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

/// A raw_ostream that feeds a hash (printing a large module costs no copy).
class HashStream : public llvm::raw_ostream {
public:
  explicit HashStream(llvm::BLAKE3 &hash) : hash_(hash) { SetUnbuffered(); }
  ~HashStream() override { flush(); }

private:
  void write_impl(const char *p, size_t n) override {
    hash_.update(llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(p), n));
    pos_ += n;
  }
  uint64_t current_pos() const override { return pos_; }
  llvm::BLAKE3 &hash_;
  uint64_t pos_ = 0;
};

/// Feeds one length-prefixed field, so that fields cannot run together.
void addField(llvm::BLAKE3 &hash, llvm::StringRef field) {
  uint64_t n = field.size();
  hash.update(llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(&n), sizeof n));
  hash.update(field);
}

/// The GNU build ID (hex) of the loaded ELF object that contains `address`,
/// or its path, size and mtime when it has none.
std::string objectIdentity(const void *address) {
  struct Search {
    uintptr_t address;
    std::string id;
  } search{reinterpret_cast<uintptr_t>(address), {}};
  dl_iterate_phdr(
      [](dl_phdr_info *info, size_t, void *data) -> int {
        auto *s = static_cast<Search *>(data);
        bool contains = false;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr) &ph = info->dlpi_phdr[i];
          uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          if (ph.p_type == PT_LOAD && s->address >= start && s->address < start + ph.p_memsz)
            contains = true;
        }
        if (!contains)
          return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr) &ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_NOTE)
            continue;
          // Notes are padded to the segment's alignment (4, or 8 for
          // .note.gnu.property).
          size_t pad = ph.p_align == 8 ? 7 : 3;
          const char *p = reinterpret_cast<const char *>(info->dlpi_addr + ph.p_vaddr);
          const char *end = p + ph.p_memsz;
          while (p + sizeof(ElfW(Nhdr)) <= end) {
            const auto *note = reinterpret_cast<const ElfW(Nhdr) *>(p);
            const char *name = p + sizeof(ElfW(Nhdr));
            const char *desc = name + ((note->n_namesz + pad) & ~pad);
            if (desc + note->n_descsz > end)
              break;
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
              s->id = "build-id:" + hex(reinterpret_cast<const uint8_t *>(desc), note->n_descsz);
              return 1;
            }
            p = desc + ((note->n_descsz + pad) & ~pad);
          }
        }
        return 1;
      },
      &search);
  if (!search.id.empty())
    return search.id;
  Dl_info info;
  if (dladdr(address, &info) && info.dli_fname) {
    std::error_code ec;
    fs::path path = fs::canonical(info.dli_fname, ec);
    if (!ec) {
      auto size = fs::file_size(path, ec);
      auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
      return "file:" + path.string() + ":" + std::to_string(size) + ":" + std::to_string(mtime);
    }
  }
  // Nothing identifies this build: make the key unique to the process, so
  // that nothing it stores is ever served to another build.
  return "unidentified:" + std::to_string(reinterpret_cast<uintptr_t>(&search)) + ":" +
         std::to_string(static_cast<long long>(::getpid()));
}

void warn(const std::string &message) { std::fprintf(stderr, "soma: warning: %s\n", message.c_str()); }

// --- entry format: Bytes.h's fields, and tensor specs -----------------------

class Writer : public ByteWriter {
public:
  void spec(const TensorSpec &t) {
    str(t.name);
    str(dtype_name(t.dtype));
    u64(t.shape.size());
    for (int64_t d : t.shape)
      u64(static_cast<uint64_t>(d));
  }
  void specs(const std::vector<TensorSpec> &ts) {
    u64(ts.size());
    for (const TensorSpec &t : ts)
      spec(t);
  }
};

class Reader : public ByteReader {
public:
  using ByteReader::ByteReader;
  TensorSpec spec() {
    TensorSpec t;
    t.name = str();
    t.dtype = parse_dtype(str());
    uint64_t rank = count(sizeof(uint64_t));
    for (uint64_t i = 0; i < rank; ++i)
      t.shape.push_back(static_cast<int64_t>(u64()));
    return t;
  }
  std::vector<TensorSpec> specs() {
    std::vector<TensorSpec> ts;
    uint64_t n = count(3 * sizeof(uint64_t));
    for (uint64_t i = 0; i < n; ++i)
      ts.push_back(spec());
    return ts;
  }
};

std::string keyBytes(const std::string &key) {
  std::string raw;
  for (size_t i = 0; i + 1 < key.size(); i += 2)
    raw += static_cast<char>(std::stoi(key.substr(i, 2), nullptr, 16));
  return raw;
}

std::string payloadHash(std::string_view payload) {
  auto h = llvm::BLAKE3::hash(
      llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(payload.data()), payload.size()));
  return std::string(reinterpret_cast<const char *>(h.data()), h.size());
}

constexpr size_t kHeaderBytes = sizeof kMagic + 2 * sizeof(uint32_t) + kHashBytes + sizeof(uint64_t) + kHashBytes;

} // namespace

const std::string &compilerIdentity() {
  static const std::string id = [] {
    std::string s = "soma-object-cache " + std::to_string(kFormatVersion) + "; LLVM " LLVM_VERSION_STRING;
    // An address in each of libsoma (this function), libMLIR and libLLVM.
    s += "; soma " + objectIdentity(reinterpret_cast<const void *>(&compilerIdentity));
    auto verify = static_cast<mlir::LogicalResult (*)(mlir::Operation *, bool)>(&mlir::verify);
    s += "; MLIR " + objectIdentity(reinterpret_cast<const void *>(verify));
    s += "; LLVM " + objectIdentity(reinterpret_cast<const void *>(&llvm::sys::getHostCPUName));
    return s;
  }();
  return id;
}

std::string objectCacheKey(mlir::ModuleOp graphModule, Mode mode, int optLevel, const CacheTarget &target) {
  llvm::BLAKE3 hash;
  addField(hash, compilerIdentity());
  addField(hash, mode == Mode::train ? "mode=train" : "mode=eval");
  addField(hash, "opt=" + std::to_string(optLevel));
  addField(hash, target.triple);
  addField(hash, target.cpu);
  addField(hash, target.features);
  addField(hash, "threads=" + std::to_string(target.threads));
  // The module in the generic form (no custom printer can hide anything),
  // every constant in full, without locations: moving the model's source
  // lines does not change the code.
  mlir::OpPrintingFlags flags;
  flags.printGenericOpForm();
  flags.assumeVerified();
  flags.elideLargeElementsAttrs(std::numeric_limits<int64_t>::max());
  flags.elideLargeResourceString(std::numeric_limits<int64_t>::max());
  flags.enableDebugInfo(false);
  {
    HashStream os(hash);
    graphModule->print(os, flags);
  }
  auto result = hash.final();
  return hex(result.data(), result.size());
}

std::string serializeCachedObject(const std::string &key, const CachedObject &entry) {
  Writer payload;
  const Signature &sig = entry.signature;
  payload.str(sig.name);
  payload.specs(sig.inputs);
  payload.specs(sig.params);
  payload.specs(sig.states);
  payload.specs(sig.outputs);
  payload.u64(sig.state_init.size());
  for (double v : sig.state_init) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    payload.u64(bits);
  }
  payload.u64(static_cast<uint64_t>(sig.workspace_bytes));
  payload.u64(static_cast<uint64_t>(sig.stack_bytes));
  payload.u64(entry.objects.size());
  for (const std::string &object : entry.objects)
    payload.str(object);

  std::string out(kMagic, sizeof kMagic);
  uint32_t version[2] = {kFormatVersion, 0};
  out.append(reinterpret_cast<const char *>(version), sizeof version);
  out += keyBytes(key);
  uint64_t size = payload.out.size();
  out.append(reinterpret_cast<const char *>(&size), sizeof size);
  out += payloadHash(payload.out);
  out += payload.out;
  return out;
}

CachedObject parseCachedObject(const std::string &key, const std::string &bytes) {
  if (bytes.size() < kHeaderBytes)
    throw Error("truncated header");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw Error("not a soma cache entry");
  size_t pos = sizeof kMagic;
  uint32_t version[2];
  std::memcpy(version, bytes.data() + pos, sizeof version);
  pos += sizeof version;
  if (version[0] != kFormatVersion)
    throw Error("entry format " + std::to_string(version[0]) + ", expected " + std::to_string(kFormatVersion));
  if (bytes.compare(pos, kHashBytes, keyBytes(key)) != 0)
    throw Error("written for another key");
  pos += kHashBytes;
  uint64_t size;
  std::memcpy(&size, bytes.data() + pos, sizeof size);
  pos += sizeof size;
  std::string_view hash(bytes.data() + pos, kHashBytes);
  pos += kHashBytes;
  if (size != bytes.size() - pos)
    throw Error("truncated or extended: " + std::to_string(bytes.size() - pos) + " payload bytes, header says " +
                std::to_string(size));
  std::string_view payload(bytes.data() + pos, size);
  if (payloadHash(payload) != hash)
    throw Error("checksum mismatch");
  Reader in(payload);
  CachedObject entry;
  Signature &sig = entry.signature;
  sig.name = in.str();
  sig.inputs = in.specs();
  sig.params = in.specs();
  sig.states = in.specs();
  sig.outputs = in.specs();
  uint64_t n = in.count(sizeof(uint64_t));
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t bits = in.u64();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    sig.state_init.push_back(v);
  }
  sig.workspace_bytes = static_cast<int64_t>(in.u64());
  sig.stack_bytes = static_cast<int64_t>(in.u64());
  uint64_t objects = in.count(sizeof(uint64_t));
  for (uint64_t i = 0; i < objects; ++i) {
    entry.objects.push_back(in.str());
    if (entry.objects.back().empty())
      throw Error("malformed payload: an empty object");
  }
  if (!in.atEnd() || sig.state_init.size() != sig.states.size() || sig.name.empty() || entry.objects.empty())
    throw Error("malformed payload");
  return entry;
}

ObjectCache ObjectCache::fromEnvironment() {
  if (const char *v = std::getenv("SOMA_CACHE"); v && std::string(v) == "0")
    return ObjectCache();
  if (const char *d = std::getenv("SOMA_CACHE_DIR"); d && *d)
    return ObjectCache(d);
  if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return ObjectCache((fs::path(x) / "soma").string());
  if (const char *h = std::getenv("HOME"); h && *h)
    return ObjectCache((fs::path(h) / ".cache" / "soma").string());
  return ObjectCache();
}

std::string ObjectCache::path(const std::string &key) const {
  return (fs::path(dir_) / (key + ".somaobj")).string();
}

std::optional<CachedObject> ObjectCache::load(const std::string &key) const {
  std::string file = path(key);
  std::error_code ec;
  if (!enabled() || !fs::exists(file, ec))
    return std::nullopt;
  try {
    return parseCachedObject(key, read_file(file));
  } catch (const std::exception &e) {
    warn("ignoring the compile cache entry " + file + " (" + e.what() + "); recompiling");
    remove(key);
    return std::nullopt;
  }
}

void ObjectCache::store(const std::string &key, const CachedObject &entry) const {
  static std::mutex mutex;
  static std::set<std::string> unwritable;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!enabled() || unwritable.count(dir_))
      return;
  }
  try {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec)
      throw Error("cannot create " + dir_ + ": " + ec.message());
    write_file_atomic(path(key), serializeCachedObject(key, entry));
  } catch (const std::exception &e) {
    std::lock_guard<std::mutex> lock(mutex);
    if (unwritable.insert(dir_).second)
      warn(std::string("not writing to the compile cache: ") + e.what() +
           " (set SOMA_CACHE_DIR to a writable directory, or SOMA_CACHE=0)");
    return;
  }
  ++objectCacheStats().stores;
}

void ObjectCache::remove(const std::string &key) const {
  std::error_code ec;
  fs::remove(path(key), ec);
}

ObjectCacheStats &objectCacheStats() {
  static ObjectCacheStats stats;
  return stats;
}

} // namespace soma

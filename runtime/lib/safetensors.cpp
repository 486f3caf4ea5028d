//===- safetensors.cpp - Reading and writing safetensors files ------------===//
//
// The format: a u64 LE header length N, N bytes of JSON
//   {"__metadata__": {"k": "v"},
//    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
// then the data buffer. Offsets are relative to the start of the data buffer;
// the tensors must cover it exactly, without gaps or overlaps.
//
//===----------------------------------------------------------------------===//

#include "soma/error.h"
#include "soma/io.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

namespace soma {

static_assert(std::endian::native == std::endian::little,
              "soma's safetensors I/O assumes a little-endian host");

namespace {

/// The reference implementation refuses headers larger than this.
constexpr uint64_t kMaxHeaderSize = 100'000'000;
/// The data buffer starts at a multiple of this many bytes.
constexpr size_t kDataAlign = 8;
constexpr const char *kMetadataKey = "__metadata__";

const char *st_dtype_name(DType dt) {
  switch (dt) {
  case DType::f32:
    return "F32";
  case DType::i32:
    return "I32";
  case DType::i64:
    return "I64";
  }
  return "?";
}

std::optional<DType> st_parse_dtype(std::string_view name) {
  if (name == "F32")
    return DType::f32;
  if (name == "I32")
    return DType::i32;
  if (name == "I64")
    return DType::i64;
  return std::nullopt;
}

/// The header a writer produces and where each tensor's data begin,
/// relative to the data buffer.
struct Layout {
  std::string header; // padded JSON
  std::vector<size_t> begins;
};

/// `context` prefixes error messages (the file path, or a function name).
Layout make_layout(const std::string &context, const NamedArrays &tensors,
                   const std::map<std::string, std::string> &metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty())
    j[kMetadataKey] = metadata;
  Layout layout;
  size_t offset = 0;
  for (const auto &[name, array] : tensors) {
    if (name == kMetadataKey)
      throw Error(
          fmt::format("{}: '{}' cannot be a tensor name", context, name));
    if (j.contains(name))
      throw Error(fmt::format("{}: duplicate tensor name '{}'", context, name));
    if (array.empty())
      throw Error(fmt::format("{}: tensor '{}' is empty", context, name));
    size_t end = offset + array.nbytes();
    j[name] = {{"dtype", st_dtype_name(array.dtype())},
               {"shape", array.shape()},
               {"data_offsets", {offset, end}}};
    layout.begins.push_back(offset);
    offset = end;
  }
  try {
    layout.header = j.dump();
  } catch (const nlohmann::json::exception &e) {
    // E.g. a name or metadata value that is not valid UTF-8.
    throw Error(fmt::format("{}: cannot encode header: {}", context, e.what()));
  }
  size_t total = 8 + layout.header.size();
  layout.header.append((kDataAlign - total % kDataAlign) % kDataAlign, ' ');
  return layout;
}

/// One tensor as described by a header entry.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

/// Checks and decodes one header entry.
Entry parse_entry(const std::string &path, const std::string &name,
                  const nlohmann::json &info) {
  auto fail = [&](const std::string &what) -> Error {
    return Error(fmt::format("{}: tensor '{}': {}", path, name, what));
  };
  if (!info.is_object())
    throw fail("entry is not a JSON object");
  for (const char *key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key))
      throw fail(fmt::format("no '{}'", key));

  Entry e;
  e.name = name;
  const nlohmann::json &dtype = info["dtype"];
  if (!dtype.is_string())
    throw fail("'dtype' is not a string");
  std::optional<DType> dt = st_parse_dtype(dtype.get<std::string>());
  if (!dt)
    throw fail(fmt::format("unsupported dtype '{}' (soma reads F32, I32, I64)",
                           dtype.get<std::string>()));
  e.dtype = *dt;

  const nlohmann::json &shape = info["shape"];
  if (!shape.is_array())
    throw fail("'shape' is not a list");
  for (const nlohmann::json &d : shape) {
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw fail(fmt::format(
          "bad dimension {} in 'shape' (want a non-negative integer)",
          d.dump()));
    e.shape.push_back(d.get<int64_t>());
  }

  const nlohmann::json &offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 ||
      !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
    throw fail(fmt::format("bad 'data_offsets' {} (want [begin, end])",
                           offsets.dump()));
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.end < e.begin)
    throw fail(fmt::format("data_offsets [{}, {}] end before they begin",
                           e.begin, e.end));

  int64_t n;
  try {
    n = numel(e.shape);
  } catch (const Error &) {
    throw fail(fmt::format("shape {} is too large", shape_str(e.shape)));
  }
  uint64_t elem = dtype_size(e.dtype);
  uint64_t span = e.end - e.begin;
  uint64_t need;
  if (__builtin_mul_overflow(static_cast<uint64_t>(n), elem, &need) ||
      need != span)
    throw fail(
        fmt::format("data_offsets [{}, {}] span {} bytes but shape {} of {} "
                    "needs {} x {} bytes",
                    e.begin, e.end, span, shape_str(e.shape),
                    dtype.get<std::string>(), n, elem));
  return e;
}

uint64_t read_u64_le(const std::string &bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return v;
}

} // namespace

NamedArrays read_safetensors(const std::string &path,
                             std::map<std::string, std::string> *metadata) {
  std::string bytes = read_file(path);
  if (bytes.size() < 8)
    throw Error(
        fmt::format("{}: not a safetensors file ({} bytes, too short for "
                    "the header length)",
                    path, bytes.size()));
  uint64_t header_len = read_u64_le(bytes);
  if (header_len > bytes.size() - 8)
    throw Error(
        fmt::format("{}: corrupt header length {} (the file has only {} "
                    "bytes after it)",
                    path, header_len, bytes.size() - 8));
  if (header_len > kMaxHeaderSize)
    throw Error(
        fmt::format("{}: header length {} exceeds the limit of {} bytes", path,
                    header_len, kMaxHeaderSize));

  // nlohmann::json keeps the last of duplicate keys; spot them while parsing.
  std::set<std::string> seen;
  std::optional<std::string> duplicate;
  auto spot_duplicates = [&](int depth, nlohmann::json::parse_event_t event,
                             nlohmann::json &parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key &&
        !seen.insert(parsed.get<std::string>()).second && !duplicate)
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    const char *begin = bytes.data() + 8;
    header = nlohmann::json::parse(begin, begin + header_len, spot_duplicates);
  } catch (const nlohmann::json::exception &e) {
    throw Error(fmt::format("{}: corrupt header: {}", path, e.what()));
  }
  if (!header.is_object())
    throw Error(fmt::format("{}: corrupt header: not a JSON object", path));
  if (duplicate)
    throw Error(fmt::format("{}: duplicate tensor name '{}' in header", path,
                            *duplicate));

  std::map<std::string, std::string> meta;
  std::vector<Entry> entries;
  for (const auto &[name, info] : header.items()) {
    if (name != kMetadataKey) {
      entries.push_back(parse_entry(path, name, info));
      continue;
    }
    if (!info.is_object())
      throw Error(fmt::format("{}: '{}' is not a JSON object", path, name));
    for (const auto &[key, value] : info.items()) {
      if (!value.is_string())
        throw Error(
            fmt::format("{}: metadata '{}' is not a string", path, key));
      meta[key] = value.get<std::string>();
    }
  }

  // The tensors, in data order, must tile the data buffer exactly.
  std::stable_sort(
      entries.begin(), entries.end(), [](const Entry &a, const Entry &b) {
        return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
      });
  uint64_t data_start = 8 + header_len;
  uint64_t data_size = bytes.size() - data_start;
  uint64_t covered = 0;
  const Entry *prev = nullptr;
  for (const Entry &e : entries) {
    if (e.begin < covered)
      throw Error(fmt::format(
          "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path,
          prev->name, prev->begin, prev->end, e.name, e.begin, e.end));
    if (e.begin > covered)
      throw Error(
          fmt::format("{}: {} unused bytes in the data buffer before tensor "
                      "'{}' at offset {}",
                      path, e.begin - covered, e.name, e.begin));
    covered = e.end;
    prev = &e;
  }
  if (covered > data_size)
    throw Error(
        fmt::format("{}: data truncated: the tensors need {} bytes, the "
                    "file has {}",
                    path, covered, data_size));
  if (covered < data_size)
    throw Error(fmt::format("{}: {} extra bytes after the tensor data", path,
                            data_size - covered));

  NamedArrays result;
  result.reserve(entries.size());
  for (Entry &e : entries) {
    Array array(e.dtype, std::move(e.shape));
    if (array.nbytes() > 0)
      std::memcpy(array.raw(), bytes.data() + data_start + e.begin,
                  array.nbytes());
    result.emplace_back(std::move(e.name), std::move(array));
  }
  if (metadata)
    *metadata = std::move(meta);
  return result;
}

void write_safetensors(const std::string &path, const NamedArrays &tensors,
                       const std::map<std::string, std::string> &metadata) {
  Layout layout = make_layout(path, tensors, metadata);
  std::string bytes;
  uint64_t n = layout.header.size();
  for (size_t i = 0; i < 8; ++i)
    bytes += static_cast<char>((n >> (8 * i)) & 0xff);
  bytes += layout.header;
  for (const auto &[name, array] : tensors)
    bytes.append(static_cast<const char *>(array.raw()), array.nbytes());
  write_file_atomic(path, bytes);
}

std::vector<size_t>
safetensors_data_offsets(const NamedArrays &tensors,
                         const std::map<std::string, std::string> &metadata) {
  Layout layout = make_layout("safetensors_data_offsets", tensors, metadata);
  std::vector<size_t> offsets;
  for (size_t begin : layout.begins)
    offsets.push_back(8 + layout.header.size() + begin);
  return offsets;
}

} // namespace soma

//===- soma/io.h - NumPy .npy and safetensors files --------------*- C++ -*-===//
#pragma once

#include "soma/array.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace soma {

/// Reads a NumPy .npy file (format versions 1.0, 2.0 and 3.0; dtypes '<f4',
/// '<i4', '<i8'; C order). Anything else -- a missing file, a bad magic, a
/// truncated payload, Fortran order, big-endian or another dtype -- throws
/// soma::Error naming the file and the problem.
Array read_npy(const std::string &path);

/// Writes an array as a .npy file (version 1.0). Atomic: the data go to a
/// temporary file in the same directory which is then renamed over `path`,
/// so an existing file is never left half-written. Throws on I/O errors.
void write_npy(const std::string &path, const Array &array);

/// A named list of tensors in file order.
using NamedArrays = std::vector<std::pair<std::string, Array>>;

/// Reads a safetensors file (8-byte little-endian header length, JSON header,
/// data). Supports dtypes F32, I32, I64. Validates everything: header length
/// within the file, JSON well formed, offsets in range and matching
/// shape*dtype, no overlap, known dtypes. Tensors are returned in the order
/// of their data offsets. "__metadata__" goes to *metadata if non-null.
NamedArrays read_safetensors(const std::string &path,
                             std::map<std::string, std::string> *metadata = nullptr);

/// Writes a safetensors file atomically (temporary file + rename), tensors
/// in the given order, data 8-byte aligned as the format requires.
void write_safetensors(const std::string &path, const NamedArrays &tensors,
                       const std::map<std::string, std::string> &metadata = {});

/// Byte offset of each tensor's data from the start of the file, for a file
/// that write_safetensors would write with these tensors and metadata (used
/// by the AOT header generator so that C code can fread each parameter).
std::vector<size_t>
safetensors_data_offsets(const NamedArrays &tensors,
                         const std::map<std::string, std::string> &metadata = {});

/// Writes `bytes` to `path` atomically (temp file in the same dir + rename).
void write_file_atomic(const std::string &path, const std::string &bytes);
/// Reads a whole file; throws soma::Error "cannot open FILE: reason".
std::string read_file(const std::string &path);

} // namespace soma

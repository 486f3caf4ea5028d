//===- soma/error.h - The one exception type soma throws --------*- C++ -*-===//
#pragma once

#include <stdexcept>
#include <string>

namespace soma {

/// Every error a user can cause (a bad shape, a bad file, a wrong input)
/// is reported as a soma::Error whose message says what went wrong and where,
/// e.g. "mlp.cpp:14: matmul: inner dimensions differ: [64,784] x [512,256]".
class Error : public std::runtime_error {
public:
  explicit Error(const std::string &message) : std::runtime_error(message) {}
};

} // namespace soma

//===- soma/graph.h - Graphs and symbolic tensors of the DSL -----*- C++ -*-===//
//
// A soma::Graph is built by calling ops on soma::Tensor values. Every call
// records the caller's file and line, and a mistake (wrong shape, wrong
// dtype, bad attribute) throws soma::Error at that line:
//
//   mlp.cpp:14: matmul: inner dimensions differ: [64,784] x [512,256]
//
// This header includes no MLIR or LLVM headers.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "soma/array.h"
#include "soma/error.h"
#include "soma/executable.h"
#include "soma/io.h"
#include "soma/random.h"

#include <cstdint>
#include <memory>
#include <source_location>
#include <string>
#include <vector>

namespace soma {

class Graph;
struct GraphImpl;

/// A symbolic tensor: a value of a Graph with a static shape and a dtype.
class Tensor {
public:
  Tensor() = default;

  Shape shape() const;
  DType dtype() const;
  int64_t rank() const;
  /// Size of dimension `d`; negative d counts from the end.
  int64_t dim(int64_t d) const;
  int64_t numel() const;
  /// The graph this tensor belongs to.
  Graph &graph() const;
  bool valid() const { return impl_ != nullptr; }

  /// "f32[64,784]".
  std::string type_str() const;

  // Internal: the graph's implementation and an opaque handle to the value.
  Tensor(GraphImpl *impl, void *value) : impl_(impl), value_(value) {}
  GraphImpl *impl() const { return impl_; }
  void *handle() const { return value_; }

private:
  GraphImpl *impl_ = nullptr;
  void *value_ = nullptr;
};

/// How a parameter is initialised (see soma/random.h for the formulas).
struct Init {
  InitSpec::Kind kind = InitSpec::Kind::zeros;
  double a = 0.0, b = 1.0;
  double gain = 1.0;
  /// 0 means "derive from the shape": rank 2 [in, out] -> fan_in = in,
  /// fan_out = out; rank >= 3 [out, in, k...] -> in*k..., out*k...;
  /// rank 1 -> both = size.
  int64_t fan_in = 0, fan_out = 0;
};

namespace init {
Init zeros();
Init ones();
Init constant(double value);
Init uniform(double low, double high);
Init normal(double mean, double stddev);
Init xavier_uniform(double gain = 1.0);
Init xavier_normal(double gain = 1.0);
Init he_uniform(double gain = 1.0);
Init he_normal(double gain = 1.0);
} // namespace init

/// Where a Graph's parameters and inputs are declared and how it was built.
struct ParamInfo {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  InitSpec init;
  bool trainable = true;
};

/// A computation graph under construction (or loaded from a .mlir file).
/// Graphs are movable, not copyable.
class Graph {
public:
  /// `name` becomes the module and function name (a C identifier is made of
  /// it for AOT). `seed` drives every initializer of the graph.
  explicit Graph(const std::string &name, uint64_t seed = 0);
  ~Graph();
  Graph(Graph &&) noexcept;
  Graph &operator=(Graph &&) noexcept;
  Graph(const Graph &) = delete;
  Graph &operator=(const Graph &) = delete;

  /// A graph input (data fed at every call).
  Tensor input(const std::string &name, const Shape &shape, DType dtype = DType::f32,
               std::source_location loc = std::source_location::current());
  /// A trainable parameter, initialised per `init` from the graph's seed.
  Tensor param(const std::string &name, const Shape &shape, const Init &init,
               std::source_location loc = std::source_location::current());
  /// A parameter the optimizer does not train (running statistics, say):
  /// initialised, checkpointed and read like a parameter, updated only by
  /// the ops that own it.
  Tensor buffer(const std::string &name, const Shape &shape, const Init &init,
                std::source_location loc = std::source_location::current());
  /// Marks `t` as an output named `name`.
  void output(const std::string &name, const Tensor &t,
              std::source_location loc = std::source_location::current());

  /// The tensor of the output named `name` (throws soma::Error listing the
  /// outputs if there is none).
  Tensor output_tensor(const std::string &name) const;
  /// The tensor of the input or parameter named `name`.
  Tensor find(const std::string &name) const;

  const std::string &name() const;
  uint64_t seed() const;

  /// The graph's inputs, parameters and outputs in declaration order.
  std::vector<TensorSpec> inputs() const;
  std::vector<ParamInfo> params() const;
  std::vector<TensorSpec> outputs() const;

  /// Initial parameter values from the initializers and the seed.
  NamedArrays init_params() const;

  /// Textual IR (soma dialect), with source locations.
  std::string str() const;
  /// Writes str() to a file (atomically).
  void save(const std::string &path) const;

  /// A name not used yet in this graph: prefix + counter ("dense0", ...).
  std::string unique_name(const std::string &prefix);

  GraphImpl *impl() const { return impl_.get(); }
  explicit Graph(std::unique_ptr<GraphImpl> impl);

private:
  std::unique_ptr<GraphImpl> impl_;
};

/// Reads a graph saved with Graph::save (or written by hand). Malformed
/// text, unknown ops and shape errors throw soma::Error naming the file,
/// line and column.
Graph load(const std::string &path);
/// Same, from a string; `filename` is used in error messages.
Graph parse(const std::string &text, const std::string &filename = "<string>");

} // namespace soma

// RUN: soma-opt %s -split-input-file -soma-lower-to-linalg -verify-diagnostics

// A graph function must say what each argument and result is.

// expected-error @+1 {{argument 1 of graph 'g' is marked neither soma.input, soma.param nor soma.state}}
func.func @g(%x: tensor<4xf32> {soma.input = "x"}, %b: tensor<4xf32>) -> (tensor<4xf32> {soma.output = "o"}) {
  %0 = soma.add %x, %b : tensor<4xf32>, tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// Only soma.output names the kernel's output arguments.
// expected-error @+1 {{argument 0 of graph 'g' is marked neither soma.input, soma.param nor soma.state}}
func.func @g(%x: tensor<4xf32> {soma.output = "x"}) -> (tensor<4xf32> {soma.output = "o"}) {
  %0 = soma.exp %x : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// expected-error @+1 {{result 1 of graph 'g' has no soma.output name}}
func.func @g(%x: tensor<4xf32> {soma.input = "x"}) -> (tensor<4xf32> {soma.output = "o"}, tensor<4xf32>) {
  %0 = soma.exp %x : tensor<4xf32>
  return %0, %x : tensor<4xf32>, tensor<4xf32>
}

// -----

func.func @g(%x: tensor<4xf32> {soma.input = "x"}) -> (tensor<4xf32> {soma.output = "o"}) {
  // expected-error @+1 {{'arith.addf' op is not a soma op; graphs contain only soma ops}}
  %0 = arith.addf %x, %x : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// Max or average pooling whose windows overlap is decomposed
// (soma-decompose) before it is lowered; only windows that tile the input
// are lowered directly.
func.func @g(%x: tensor<1x1x5x5xf32> {soma.input = "x"}) -> (tensor<1x1x3x3xf32> {soma.output = "o"}) {
  // expected-error @+1 {{pooling whose windows do not tile the input must be decomposed first}}
  %0 = soma.max_pool2d %x {kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>} : tensor<1x1x5x5xf32> -> tensor<1x1x3x3xf32>
  return %0 : tensor<1x1x3x3xf32>
}

// -----

func.func @g(%x: tensor<1x1x5x5xf32> {soma.input = "x"}) -> (tensor<1x1x3x3xf32> {soma.output = "o"}) {
  // expected-error @+1 {{pooling whose windows do not tile the input must be decomposed first}}
  %0 = soma.avg_pool2d %x {kernel = array<i64: 3, 3>, stride = array<i64: 1, 1>, padding = array<i64: 0, 0, 0, 0>} : tensor<1x1x5x5xf32> -> tensor<1x1x3x3xf32>
  return %0 : tensor<1x1x3x3xf32>
}

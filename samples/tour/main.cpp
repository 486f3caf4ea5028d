// tour: the README's five-minute tour of the soma DSL, as a program.
//
// Builds a small MLP by hand, shows a shape error at the line that caused
// it, runs the graph JIT-compiled and in the reference interpreter, saves
// the IR and loads it back.
#include <soma/soma.h>

#include <cmath>
#include <cstdio>

int main() {
  // 1. Build: inputs, layers (which create their parameters), outputs.
  soma::Graph g("tour", /*seed=*/42);
  soma::Tensor x = g.input("x", {4, 3});
  soma::Tensor h = soma::relu(soma::nn::dense(x, 8, {.weight_init = soma::init::he_uniform()}));
  soma::Tensor logits = soma::nn::dense(h, 2);
  g.output("probs", soma::softmax(logits));
  std::printf("logits: %s\n", logits.type_str().c_str());

  // 2. Mistakes are errors at your line, naming the op and the shapes.
  try {
    soma::matmul(x, logits);
  } catch (const soma::Error &e) {
    std::printf("error: %s\n", e.what());
  }

  // 3. Compile (JIT) and run; compare with the reference interpreter.
  soma::Array input = soma::Array::f32({4, 3}, {1, 2, 3, 4, 5, 6, -1, -2, -3, 0, 0, 0});
  soma::Inference fn = soma::compile_inference(g);
  soma::Array probs = fn.run({{"x", input}})["probs"];
  soma::Array ref = soma::interpret(g, {{"x", input}})["probs"];
  double worst = 0;
  for (int i = 0; i < 8; ++i)
    worst = std::fmax(worst, std::fabs(probs.data<float>()[i] - ref.data<float>()[i]));
  std::printf("probs[0] = %.6f %.6f (interpreter differs by %.1e)\n", probs.data<float>()[0],
              probs.data<float>()[1], worst);

  // 4. Save the IR and load it back.
  g.save("tour.mlir");
  soma::Graph back = soma::load("tour.mlir");
  std::printf("round trip exact: %s\n", back.str() == g.str() ? "yes" : "no");
  return worst < 1e-5 && back.str() == g.str() ? 0 : 1;
}

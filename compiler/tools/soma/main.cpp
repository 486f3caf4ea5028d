//===- main.cpp - The soma command-line tool ---------------------------------===//
//
//   soma export MODEL -o FILE.mlir        write a zoo model as IR
//   soma compile MODEL --emit=... -o DIR  ahead-of-time object/header/weights
//   soma run MODEL --input N=F.npy ...    JIT-run on .npy inputs
//   soma dump MODEL --stage=all           write every pipeline stage
//
// MODEL is a .mlir file or the name of a zoo model. Every error is one line
// on stderr and a non-zero exit: 2 for a usage mistake, 1 for anything else.
//
//===----------------------------------------------------------------------===//

#include "soma/soma.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;

namespace {

/// A usage mistake (exit code 2).
struct UsageError : soma::Error {
  using soma::Error::Error;
};

/// `text` parsed whole by `parse` (std::stoll, std::stod) into a finite
/// value, or nothing: "10x", "" and "inf" are not numbers.
template <class T, class Parse> std::optional<T> parseWhole(const std::string &text, Parse parse) {
  try {
    size_t used = 0;
    T x = parse(text, &used);
    if (used != text.size())
      return std::nullopt;
    if constexpr (std::is_floating_point_v<T>)
      if (!std::isfinite(x))
        return std::nullopt;
    return x;
  } catch (const std::exception &) {
    return std::nullopt;
  }
}
std::optional<double> parseNumber(const std::string &text) {
  return parseWhole<double>(text, [](const std::string &v, size_t *n) { return std::stod(v, n); });
}
std::optional<int64_t> parseInteger(const std::string &text) {
  return parseWhole<int64_t>(text, [](const std::string &v, size_t *n) { return std::stoll(v, n); });
}

/// Command-line arguments: positionals and --name[=value] options.
class Args {
public:
  Args(std::string command, int argc, char **argv, int first,
       std::map<std::string, bool> takesValue)
      : command(std::move(command)) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0 || a == "--") {
        if (a == "-o") {
          if (i + 1 >= argc)
            throw UsageError("option '-o' needs a value");
          options["o"].push_back(argv[++i]);
          continue;
        }
        if (a.size() > 1 && a[0] == '-' && a != "-")
          throw UsageError("unknown option '" + a + "'");
        positionals.push_back(a);
        continue;
      }
      std::string name = a.substr(2), value;
      size_t eq = name.find('=');
      bool hasValue = eq != std::string::npos;
      if (hasValue) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      auto it = takesValue.find(name);
      if (it == takesValue.end())
        throw UsageError("unknown option '--" + name + "'");
      if (it->second && !hasValue) {
        if (i + 1 >= argc)
          throw UsageError("option '--" + name + "' needs a value");
        value = argv[++i];
      } else if (!it->second && hasValue) {
        throw UsageError("option '--" + name + "' takes no value");
      }
      options[name].push_back(value);
    }
  }
  bool has(const std::string &name) const { return options.count(name) > 0; }
  std::string get(const std::string &name, const std::string &def = "") const {
    auto it = options.find(name);
    return it == options.end() ? def : it->second.back();
  }
  std::vector<std::string> all(const std::string &name) const {
    auto it = options.find(name);
    return it == options.end() ? std::vector<std::string>{} : it->second;
  }
  /// The value of --name parsed whole by `parse` (std::stoll, std::stod),
  /// `def` when absent; anything else is a usage error.
  template <class T, class Parse>
  T parsed(const std::string &name, T def, Parse parse, const char *what) const {
    if (!has(name))
      return def;
    std::string v = get(name);
    if (std::optional<T> x = parseWhole<T>(v, parse))
      return *x;
    throw UsageError("option '--" + name + "' expects " + what + ", got '" + v + "'");
  }
  int64_t integer(const std::string &name, int64_t def) const {
    return parsed<int64_t>(name, def, [](const std::string &v, size_t *n) { return std::stoll(v, n); },
                           "an integer");
  }
  double number(const std::string &name, double def) const {
    return parsed<double>(name, def, [](const std::string &v, size_t *n) { return std::stod(v, n); },
                          "a number");
  }
  std::string command;
  std::vector<std::string> positionals;
  std::map<std::string, std::vector<std::string>> options;
};

const char *kMainHelp = R"(soma - a static computation-graph compiler for deep learning

usage: soma <command> [options]

commands:
  export   write a zoo model as soma IR (.mlir)
  compile  compile a model ahead of time: object file, C header, weights
  run      JIT-compile a model and run it on .npy inputs (--grad: gradients too)
  train    train a model on a data set (Fashion-MNIST)
  dump     write the IR of every pipeline stage

MODEL arguments are a .mlir file or the name of a zoo model (soma export --list).
Run 'soma <command> --help' for a command's options.
)";

const char *kExportHelp = R"(usage: soma export MODEL -o FILE.mlir [options]

Builds a model of the zoo and writes it as soma IR.

options:
  -o FILE         where to write the IR (required)
  --batch N       batch size (default 64)
  --seed S        seed of the parameter initializers (default 0)
  --with-loss     add the labels input "y" and the output "loss"
  --list          print the zoo's model names and exit
  --help          show this help
)";

const char *kCompileHelp = R"(usage: soma compile MODEL --emit=KINDS -o DIR [options]

Compiles a model ahead of time into DIR.

options:
  --emit=KINDS        comma-separated: obj, header, weights, llvm, asm
                      (default obj,header,weights)
  -o DIR              output directory (created if missing; required)
  --params FILE       parameter values (.safetensors); default: the model's
                      initializers
  --cpu CPU           target CPU: host (default) or an LLVM name (x86-64-v3)
  --batch N, --seed S when MODEL is a zoo name
  --dump=STAGES, --dump-dir=DIR, --print-ir-after-all   see 'soma dump'
  --keep-denormals    compute with IEEE denormals (magnitudes below 2^-126)
                      instead of flushing them to zero, the default: each
                      operation on one costs ~100 cycles on x86 cores
  --report            print what the compilation did: per function the ops
                      before fusion, the kernels after (bytes each reads and
                      writes), the memory plan and the time of each stage
  --help              show this help

The object exports void NAME(inputs..., params..., outputs..., workspace);
the header documents every pointer and has NAME_load_weights().
)";

const char *kRunHelp = R"(usage: soma run MODEL --input NAME=FILE.npy ... --output-dir DIR [options]

JIT-compiles MODEL and runs it once; writes every output as DIR/NAME.npy.

options:
  --input NAME=FILE   an input as a NumPy .npy file (repeat per input)
  --params FILE       parameter values (.safetensors); default: the model's
                      initializers
  --output-dir DIR    where to write the outputs (created if missing)
  --interpret         use the reference interpreter instead of the JIT
  --grad              also write the gradient of the loss (the first output,
                      or --loss NAME; a scalar) with respect to every
                      parameter and f32 input as DIR/grad_NAME.npy
  --loss NAME         the output to differentiate with --grad
  --output-gradient   with --grad: the output (of any shape) comes with its
                      gradient, --input grad_NAME=FILE.npy; the gradients
                      written are the vector-Jacobian products
  --gradients-only    with --grad: write only the gradients, and skip the
                      forward work that only the outputs need
  --mode MODE         eval (default): batch norm with its running statistics,
                      dropout off; train: batch statistics, dropout on (the
                      mask of step 0; not with --interpret). --grad always
                      differentiates the training form.
  --no-cache          compile even if the compiled-object cache has the
                      code, and do not store it (SOMA_CACHE=0 does the same)
  --batch N, --seed S when MODEL is a zoo name
  --dump=STAGES, --dump-dir=DIR, --print-ir-after-all   see 'soma dump'
  --keep-denormals    compute with IEEE denormals (magnitudes below 2^-126)
                      instead of flushing them to zero, the default: each
                      operation on one costs ~100 cycles on x86 cores
  --report            print what the compilation did: per function the ops
                      before fusion, the kernels after (bytes each reads and
                      writes), the memory plan and the time of each stage
  --help              show this help
)";

const char *kTrainHelp = R"(usage: soma train MODEL [options]

Trains MODEL on a data set with a compiled training step (forward, backward
and the optimizer update in one call), showing a progress bar per epoch and a
summary line per epoch, and prints the final test accuracy.

MODEL is a zoo name (built with its loss) or a .mlir file whose loss is the
output named "loss". The data inputs are "x" and "y".

options:
  --dataset NAME      fashion-mnist (default; Debian package dataset-fashion-mnist)
  --data-dir DIR      where the data set's files are (default: the package's)
  --epochs N          epochs to train (default 3)
  --batch N           batch size (default 64; a .mlir file fixes its own)
  --optimizer NAME    sgd, momentum, nesterov, adagrad, rmsprop, adadelta, adam
                      (default), adamax, nadam, adamw
  --lr X              learning rate (default: the optimizer's)
  --schedule KIND     constant (default), step:SIZE:GAMMA, exp:K, inv:K,
                      cosine:PERIOD[:LR_MIN]; append +warmup:STEPS for warmup
                      (sizes and periods in steps)
  --clip-norm X       clip the global gradient norm at X
  --weight-decay X    L2 penalty (coupled; AdamW's decay for adamw)
  --seed S            seed of initializers and shuffling (default 0)
  --checkpoint FILE   save parameters and optimizer state after every epoch
  --resume FILE       continue from a checkpoint, exactly where it stopped
  --log FILE.csv      per-step metrics (epoch, step, loss, accuracy, lr, ex/s)
  --max-steps N       stop after N steps in total
  --recompute         activation checkpointing: recompute cheap forward values
                      (activations, batch-norm normalisation) in the backward
                      pass instead of keeping them (see --report)
  --recompute-budget B  ... only until those kept fit in B bytes
  --recompute-policy P  best (default: plan the step without recomputation,
                      with chains and with cones, compile the smallest arena),
                      chains or cones
  --augment LIST      augment the training images, e.g. flip,shift:2,rotate:10,noise:0.1
                      (mirror, translate by up to 2 pixels, rotate by up to
                      10 degrees, add N(0, 0.1^2); models with image inputs)
  --no-progress       no progress bar (summary lines only)
  --no-cache          compile even if the compiled-object cache has the
                      code, and do not store it (SOMA_CACHE=0 does the same)
  --dump=STAGES, --dump-dir=DIR, --print-ir-after-all   see 'soma dump'
  --keep-denormals    compute with IEEE denormals (magnitudes below 2^-126)
                      instead of flushing them to zero, the default: each
                      operation on one costs ~100 cycles on x86 cores
  --report            print what the compilation did: per function the ops
                      before fusion, the kernels after (bytes each reads and
                      writes), the memory plan and the time of each stage
  --help              show this help
)";

const char *kDumpHelp = R"(usage: soma dump MODEL [--stage=STAGES] [--dump-dir DIR]

Runs the compilation pipeline and writes the IR of each stage to DIR
(default soma-dump):

  00-built.mlir        the graph as built (soma dialect, with source locations)
  10-train.mlir        the training step: forward, backward, update (--train)
  20-fused.mlir        elementwise chains grouped into soma.fusion kernels
  30-lowered.mlir      linalg/memref kernels in destination-passing style
  35-planned.mlir      every temporary placed in the workspace
  memory-plan.txt      arena, lower bound, each buffer's offset, size, live range
  memory-plan.svg      a picture of the live ranges in the arena
  38-llvm-dialect.mlir the LLVM dialect (loops, OpenMP)
  40-module.ll         optimised LLVM IR
  50-module.s          assembly for this machine

options:
  --stage=STAGES        comma-separated: built, train, fused, lowered, planned,
                        memory-plan, memory-picture, llvm-dialect,
                        llvm, asm, all (default all)
  --dump-dir DIR        where to write (created if missing)
  --print-ir-after-all  also print the IR after every pass to stderr
  --report              print what the compilation did (see 'soma compile --help')
  --optimizer NAME, --lr X   the update dumped with --train
  --recompute, --recompute-budget B, --recompute-policy P
                        activation checkpointing (see 'soma train --help')
  --train               dump the training step (forward, backward and the
                        update of --optimizer, default adam) instead of
                        inference; MODEL needs a loss output
  --batch N, --seed S   when MODEL is a zoo name
  --keep-denormals      IEEE denormals instead of flushing them to zero
                        (see 'soma run --help')
  --help                show this help

Programs using the library get the same with SOMA_DUMP=STAGES and
SOMA_DUMP_DIR=DIR in the environment.
)";

/// MODEL, the one positional argument of the commands that take a model.
const std::string &modelArgument(const Args &args) {
  if (args.positionals.empty())
    throw UsageError("missing MODEL (a .mlir file or a zoo model name)");
  if (args.positionals.size() > 1)
    throw UsageError("unexpected argument '" + args.positionals[1] + "'");
  return args.positionals[0];
}

/// MODEL names a .mlir file (rather than a zoo model).
bool isModelFile(const std::string &model) {
  return fs::exists(model) || model.find('/') != std::string::npos ||
         model.find(".mlir") != std::string::npos;
}

soma::Graph loadModel(const Args &args) {
  const std::string &model = modelArgument(args);
  if (isModelFile(model))
    return soma::load(model);
  for (const std::string &name : soma::zoo::names())
    if (name == model)
      return soma::zoo::build(model, args.integer("batch", 64), false,
                              static_cast<uint64_t>(args.integer("seed", 0)));
  throw soma::Error("no such file or zoo model: '" + model + "'");
}

/// A model with a loss: a zoo model built with its loss, or a .mlir file
/// with an output named "loss".
soma::Graph loadTrainable(const Args &args) {
  const std::string &model = modelArgument(args);
  return isModelFile(model) ? soma::load(model)
                : soma::zoo::build(model, args.integer("batch", 64), true,
                                   static_cast<uint64_t>(args.integer("seed", 0)));
}

/// Filled by every compilation of a command run with --report.
soma::CompileReport gReport;

soma::CompileOptions compileOptions(const Args &args) {
  soma::CompileOptions o;
  if (args.has("report"))
    o.report = &gReport;
  o.dump = args.get("dump");
  o.dump_dir = args.get("dump-dir");
  o.print_ir_after_all = args.has("print-ir-after-all");
  o.cache = !args.has("no-cache");
  o.flush_denormals = !args.has("keep-denormals");
  if (args.has("mode")) {
    std::string m = args.get("mode");
    if (m != "eval" && m != "train")
      throw UsageError("option '--mode' expects eval or train, got '" + m + "'");
    o.mode = m == "train" ? soma::Mode::train : soma::Mode::eval;
  }
  return o;
}

soma::NamedArrays loadParams(const soma::Graph &g, const Args &args) {
  if (!args.has("params"))
    return g.init_params();
  return soma::read_safetensors(args.get("params"));
}

std::map<std::string, bool> withCommon(std::map<std::string, bool> m) {
  m["help"] = false;
  m["batch"] = true;
  m["seed"] = true;
  m["dump"] = true;
  m["dump-dir"] = true;
  m["print-ir-after-all"] = false;
  m["report"] = false;
  m["keep-denormals"] = false;
  return m;
}

int cmdExport(const Args &args) {
  if (args.has("list")) {
    for (const std::string &n : soma::zoo::names())
      std::printf("%s\n", n.c_str());
    return 0;
  }
  if (args.positionals.size() != 1)
    throw UsageError(args.positionals.empty() ? "missing MODEL (try --list)"
                                              : "unexpected argument '" + args.positionals[1] + "'");
  if (!args.has("o"))
    throw UsageError("missing -o FILE.mlir");
  soma::Graph g = soma::zoo::build(args.positionals[0], args.integer("batch", 64),
                                   args.has("with-loss"),
                                   static_cast<uint64_t>(args.integer("seed", 0)));
  g.save(args.get("o"));
  std::printf("wrote %s (%zu inputs, %zu parameters, %zu outputs)\n", args.get("o").c_str(),
              g.inputs().size(), g.params().size(), g.outputs().size());
  return 0;
}

int cmdCompile(const Args &args) {
  if (!args.has("o"))
    throw UsageError("missing -o DIR");
  soma::AotOptions aot;
  aot.object = aot.header = aot.weights = false;
  std::stringstream kinds(args.get("emit", "obj,header,weights"));
  std::string kind;
  while (std::getline(kinds, kind, ',')) {
    if (kind == "obj")
      aot.object = true;
    else if (kind == "header")
      aot.header = true;
    else if (kind == "weights")
      aot.weights = true;
    else if (kind == "llvm")
      aot.llvm_ir = true;
    else if (kind == "asm")
      aot.assembly = true;
    else if (!kind.empty())
      throw UsageError("unknown --emit kind '" + kind + "' (kinds: obj, header, weights, llvm, asm)");
  }
  aot.cpu = args.get("cpu", "host");
  soma::Graph g = loadModel(args);
  soma::NamedArrays params = loadParams(g, args);
  for (const std::string &f : soma::compile_aot(g, args.get("o"), aot, &params, compileOptions(args)))
    std::printf("wrote %s\n", f.c_str());
  return 0;
}

int cmdRun(const Args &args) {
  if (!args.has("output-dir"))
    throw UsageError("missing --output-dir DIR");
  std::map<std::string, soma::Array> inputs;
  for (const std::string &spec : args.all("input")) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      throw UsageError("--input expects NAME=FILE.npy, got '" + spec + "'");
    std::string name = spec.substr(0, eq);
    if (inputs.count(name))
      throw UsageError("input '" + name + "' given twice");
    inputs[name] = soma::read_npy(spec.substr(eq + 1));
  }
  soma::CompileOptions options = compileOptions(args);
  if (args.has("interpret") && options.mode == soma::Mode::train && !args.has("grad"))
    throw UsageError("--interpret evaluates the eval form; --mode train needs the JIT");
  soma::Graph g = loadModel(args);
  soma::NamedArrays params = loadParams(g, args);
  std::string dir = args.get("output-dir");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw soma::Error("cannot create output directory " + dir + ": " +
                      (ec ? ec.message() : std::string("not a directory")));
  std::map<std::string, soma::Array> outputs;
  soma::GradientOptions grad{.loss = args.get("loss"),
                             .inputs = true,
                             .output_gradient = args.has("output-gradient"),
                             .outputs = !args.has("gradients-only")};
  for (const char *flag : {"output-gradient", "gradients-only"})
    if (args.has(flag) && !args.has("grad"))
      throw UsageError(std::string("--") + flag + " goes with --grad");
  if (args.has("grad")) {
    if (args.has("interpret")) {
      outputs = soma::interpret_gradients(g, inputs, &params, grad);
    } else {
      soma::Inference fn = soma::compile_gradients(g, grad, options);
      fn.set_params(params);
      outputs = fn.run(inputs);
    }
  } else if (args.has("interpret")) {
    outputs = soma::interpret(g, inputs, &params);
  } else {
    soma::Inference fn = soma::compile_inference(g, options);
    fn.set_params(params);
    outputs = fn.run(inputs);
  }
  for (const auto &[name, value] : outputs) {
    std::string path = (fs::path(dir) / (name + ".npy")).string();
    soma::write_npy(path, value);
    std::printf("wrote %s %s%s\n", path.c_str(), soma::dtype_name(value.dtype()),
                soma::shape_str(value.shape()).c_str());
  }
  return 0;
}

/// "step:10:0.5+warmup:100" and friends.
soma::optim::Schedule parseSchedule(const std::string &text) {
  using soma::optim::Schedule;
  std::string main = text, warm;
  size_t plus = text.find("+warmup:");
  if (plus != std::string::npos) {
    main = text.substr(0, plus);
    warm = text.substr(plus + 8);
  }
  std::vector<std::string> f;
  std::stringstream ss(main);
  std::string item;
  while (std::getline(ss, item, ':'))
    f.push_back(item);
  auto num = [&](size_t i) {
    if (i >= f.size())
      throw UsageError("--schedule '" + text + "' is missing a number");
    if (std::optional<double> x = parseNumber(f[i]))
      return *x;
    throw UsageError("--schedule '" + text + "': '" + f[i] + "' is not a number");
  };
  Schedule s;
  if (f.empty() || f[0] == "constant")
    s = Schedule::constant();
  else if (f[0] == "step")
    s = Schedule::step_decay(static_cast<int64_t>(num(1)), num(2));
  else if (f[0] == "exp")
    s = Schedule::exponential_decay(num(1));
  else if (f[0] == "inv")
    s = Schedule::inverse_time_decay(num(1));
  else if (f[0] == "cosine")
    s = Schedule::cosine_with_restarts(static_cast<int64_t>(num(1)), f.size() > 2 ? num(2) : 0.0);
  else
    throw UsageError("unknown --schedule '" + f[0] + "' (constant, step, exp, inv, cosine)");
  if (!warm.empty()) {
    std::optional<int64_t> steps = parseInteger(warm);
    if (!steps)
      throw UsageError("--schedule '" + text + "': bad warmup '" + warm + "'");
    try {
      s = s.with_warmup(*steps);
    } catch (const std::logic_error &) {
      throw UsageError("--schedule '" + text + "': bad warmup '" + warm + "'");
    }
  }
  return s;
}

soma::Checkpointing checkpointingOptions(const Args &args) {
  soma::Checkpointing c;
  c.enabled = args.has("recompute") || args.has("recompute-budget") || args.has("recompute-policy");
  c.budget_bytes = args.integer("recompute-budget", 0);
  if (c.budget_bytes < 0)
    throw UsageError("--recompute-budget must be >= 0 bytes");
  if (args.has("recompute-policy")) {
    std::string p = args.get("recompute-policy");
    if (p == "best")
      c.policy = soma::Checkpointing::Policy::best;
    else if (p == "chains")
      c.policy = soma::Checkpointing::Policy::chains;
    else if (p == "cones")
      c.policy = soma::Checkpointing::Policy::cones;
    else
      throw UsageError("--recompute-policy must be best, chains or cones, got '" + p + "'");
  }
  return c;
}

/// "flip,shift:2,rotate:10,noise:0.1" -> Augment.
soma::data::Augment parseAugment(const std::string &spec) {
  soma::data::Augment a;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t colon = item.find(':');
    std::string key = item.substr(0, colon), value = colon == std::string::npos ? "" : item.substr(colon + 1);
    auto num = [&]() {
      std::optional<double> v = parseNumber(value);
      if (!v || *v < 0)
        throw UsageError("--augment: '" + item + "' needs a number >= 0 (e.g. " + key + ":2)");
      return *v;
    };
    if (key == "flip" && value.empty())
      a.flip = true;
    else if (key == "shift")
      a.shift = static_cast<int64_t>(num());
    else if (key == "rotate")
      a.rotate_degrees = num();
    else if (key == "noise")
      a.noise_std = num();
    else
      throw UsageError("--augment: unknown item '" + item + "' (items: flip, shift:PIXELS, rotate:DEGREES, noise:STD)");
  }
  return a;
}

int cmdTrain(const Args &args) {
  std::string dataset = args.get("dataset", "fashion-mnist");
  if (dataset != "fashion-mnist")
    throw UsageError("unknown --dataset '" + dataset + "' (data sets: fashion-mnist)");
  int64_t batch = args.integer("batch", 64), epochs = args.integer("epochs", 3);
  uint64_t seed = static_cast<uint64_t>(args.integer("seed", 0));
  if (epochs < 1)
    throw UsageError("--epochs must be at least 1");
  const std::string &model = modelArgument(args);
  bool isFile = isModelFile(model);
  soma::Graph g = loadTrainable(args);
  soma::Tensor loss = g.output_tensor("loss");
  soma::Tensor x = g.find("x");
  if (isFile && args.has("batch") && x.dim(0) != batch)
    throw soma::Error(model + " is built for batch " + std::to_string(x.dim(0)) + ", not --batch " +
                      std::to_string(batch));

  soma::optim::Optimizer opt = soma::optim::by_name(args.get("optimizer", "adam"),
                                                    args.number("lr", 0.0));
  soma::optim::Common &common = soma::optim::common(opt);
  if (args.has("clip-norm"))
    common.clip_norm = args.number("clip-norm", 0.0);
  if (args.has("weight-decay")) {
    double wd = args.number("weight-decay", 0.0);
    if (auto *aw = std::get_if<soma::optim::AdamW>(&opt))
      aw->weight_decay = wd;
    else
      common.l2 = wd;
  }
  soma::TrainOptions to;
  to.schedule = parseSchedule(args.get("schedule", "constant"));
  to.compile = compileOptions(args);
  to.checkpointing = checkpointingOptions(args);

  std::string dir = args.get("data-dir");
  soma::data::Dataset train = soma::data::fashion_mnist("train", dir);
  soma::data::Dataset test = soma::data::fashion_mnist("test", dir);
  // Images arrive as [n, 784]; give them the model's input shape.
  soma::Shape xs = x.shape();
  auto shaped = [&](soma::data::Dataset d) {
    soma::Shape s = xs;
    s[0] = d.x.shape()[0];
    if (soma::numel(s) != d.x.numel())
      throw soma::Error("the model's input 'x' is " + x.type_str() +
                        ", but Fashion-MNIST examples have 784 values (28x28x1)");
    d.x = d.x.reshaped(s);
    return d;
  };
  train = shaped(train);
  test = shaped(test);

  std::printf("training %s (%s, %zu parameter tensors) on Fashion-MNIST: %lld examples, batch %lld, %s lr %g\n",
              g.name().c_str(), x.type_str().c_str(), g.params().size(),
              static_cast<long long>(train.x.shape()[0]), static_cast<long long>(x.dim(0)),
              soma::optim::name(opt).c_str(), common.lr);
  std::fflush(stdout);
  soma::TrainStep step = soma::compile_training(g, loss, opt, to);
  soma::data::Loader trainLoader(train, x.dim(0), true, seed);
  if (args.has("augment"))
    trainLoader.set_augment(parseAugment(args.get("augment")));
  soma::data::Loader testLoader(test, x.dim(0), false, 0, soma::data::LastBatch::pad_wrap);
  soma::FitOptions fo;
  fo.epochs = epochs;
  fo.progress = !args.has("no-progress");
  fo.checkpoint = args.get("checkpoint");
  fo.resume = args.get("resume");
  fo.log_csv = args.get("log");
  fo.max_steps = args.integer("max-steps", 0);
  soma::fit(step, trainLoader, &testLoader, fo);
  soma::StepResult final = soma::evaluate(step, testLoader);
  if (final.correct >= 0)
    std::printf("test accuracy: %.2f%% (%lld of %lld)\n", 100 * final.accuracy(),
                static_cast<long long>(final.correct), static_cast<long long>(final.examples));
  else
    std::printf("test loss: %.4f\n", final.loss);
  return 0;
}

int cmdDump(const Args &args) {
  soma::CompileOptions o = compileOptions(args);
  o.dump = args.get("stage", "all");
  o.dump_dir = args.get("dump-dir", "soma-dump");
  if (args.has("dump"))
    throw UsageError("'soma dump' takes --stage, not --dump");
  bool train = args.has("train");
  soma::Graph g = train ? loadTrainable(args) : loadModel(args);
  soma::AotOptions aot;
  aot.object = aot.header = aot.weights = false;
  // Remove earlier dumps of these stages so that only files written now are
  // reported.
  std::set<std::string> wanted;
  {
    std::stringstream ss(o.dump);
    std::string s;
    while (std::getline(ss, s, ','))
      wanted.insert(s);
  }
  for (const soma::DumpStage &s : soma::dump_stages())
    if (wanted.count("all") || wanted.count(s.name))
      fs::remove(fs::path(o.dump_dir) / s.file);
  if (train) {
    soma::TrainOptions to;
    to.compile = o;
    to.checkpointing = checkpointingOptions(args);
    soma::compile_training(g, g.output_tensor("loss"),
                           soma::optim::by_name(args.get("optimizer", "adam"), args.number("lr", 0.0)), to);
  }
  // An AOT compilation into a scratch directory runs every stage.
  fs::path scratch = fs::temp_directory_path() /
                     ("soma-dump-" + std::to_string(static_cast<long>(::getpid())));
  if (!train) {
    soma::compile_aot(g, scratch.string(), aot, nullptr, o);
    fs::remove_all(scratch);
  }
  for (const soma::DumpStage &s : soma::dump_stages()) {
    fs::path p = fs::path(o.dump_dir) / s.file;
    if ((wanted.count("all") || wanted.count(s.name)) && fs::exists(p))
      std::printf("wrote %s\n", p.string().c_str());
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  std::string command = argc > 1 ? argv[1] : "";
  struct Command {
    const char *help;
    std::map<std::string, bool> options;
    std::function<int(const Args &)> run;
  };
  std::map<std::string, Command> commands = {
      {"export", {kExportHelp, {{"help", false}, {"batch", true}, {"seed", true},
                                {"with-loss", false}, {"list", false}}, cmdExport}},
      {"compile", {kCompileHelp, withCommon({{"emit", true}, {"params", true}, {"cpu", true}}),
                   cmdCompile}},
      {"run", {kRunHelp, withCommon({{"input", true}, {"params", true}, {"output-dir", true},
                                     {"interpret", false}, {"grad", false}, {"loss", true},
                                     {"output-gradient", false}, {"gradients-only", false},
                                     {"mode", true}, {"no-cache", false}}),
               cmdRun}},
      {"dump", {kDumpHelp, withCommon({{"stage", true}, {"train", false}, {"optimizer", true}, {"lr", true},
                                       {"recompute", false}, {"recompute-budget", true},
                                       {"recompute-policy", true}}),
                cmdDump}},
      {"train", {kTrainHelp,
                 withCommon({{"dataset", true}, {"data-dir", true}, {"epochs", true}, {"optimizer", true},
                             {"lr", true}, {"schedule", true}, {"clip-norm", true},
                             {"weight-decay", true}, {"checkpoint", true}, {"resume", true},
                             {"log", true}, {"max-steps", true}, {"no-progress", false},
                             {"augment", true}, {"recompute", false}, {"recompute-budget", true},
                             {"recompute-policy", true},
                             {"no-cache", false}}),
                 cmdTrain}},
  };
  if (command.empty() || command == "--help" || command == "-h" || command == "help") {
    if (command == "help" && argc > 2 && commands.count(argv[2])) {
      std::fputs(commands[argv[2]].help, stdout);
      return 0;
    }
    std::fputs(kMainHelp, command.empty() ? stderr : stdout);
    return command.empty() ? 2 : 0;
  }
  auto it = commands.find(command);
  if (it == commands.end()) {
    std::fprintf(stderr, "soma: error: unknown command '%s' (commands: export, compile, run, dump)\n",
                 command.c_str());
    return 2;
  }
  try {
    Args args(command, argc, argv, 2, it->second.options);
    if (args.has("help")) {
      std::fputs(it->second.help, stdout);
      return 0;
    }
    int code = it->second.run(args);
    if (args.has("report") && code == 0)
      std::fputs(gReport.str().c_str(), stdout);
    return code;
  } catch (const UsageError &e) {
    std::fprintf(stderr, "soma %s: error: %s (see 'soma %s --help')\n", command.c_str(), e.what(),
                 command.c_str());
    return 2;
  } catch (const soma::Error &e) {
    std::fprintf(stderr, "soma %s: error: %s\n", command.c_str(), e.what());
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "soma %s: internal error: %s\n", command.c_str(), e.what());
    return 1;
  }
}

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

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
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
  int64_t integer(const std::string &name, int64_t def) const {
    if (!has(name))
      return def;
    std::string v = get(name);
    try {
      size_t used = 0;
      long long n = std::stoll(v, &used);
      if (used != v.size())
        throw std::invalid_argument(v);
      return n;
    } catch (const std::exception &) {
      throw UsageError("option '--" + name + "' expects an integer, got '" + v + "'");
    }
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
  run      JIT-compile a model and run it on .npy inputs
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
  --batch N, --seed S when MODEL is a zoo name
  --dump=STAGES, --dump-dir=DIR, --print-ir-after-all   see 'soma dump'
  --help              show this help
)";

const char *kDumpHelp = R"(usage: soma dump MODEL [--stage=STAGES] [--dump-dir DIR]

Runs the compilation pipeline and writes the IR of each stage to DIR
(default soma-dump):

  00-built.mlir        the graph as built (soma dialect, with source locations)
  30-lowered.mlir      linalg/memref kernels in destination-passing style
  35-planned.mlir      every temporary placed in the workspace
  38-llvm-dialect.mlir the LLVM dialect (loops, OpenMP)
  40-module.ll         optimised LLVM IR
  50-module.s          assembly for this machine

options:
  --stage=STAGES        comma-separated: built, lowered, planned, llvm-dialect,
                        llvm, asm, all (default all)
  --dump-dir DIR        where to write (created if missing)
  --print-ir-after-all  also print the IR after every pass to stderr
  --batch N, --seed S   when MODEL is a zoo name
  --help                show this help

Programs using the library get the same with SOMA_DUMP=STAGES and
SOMA_DUMP_DIR=DIR in the environment.
)";

soma::Graph loadModel(const Args &args) {
  if (args.positionals.empty())
    throw UsageError("missing MODEL (a .mlir file or a zoo model name)");
  if (args.positionals.size() > 1)
    throw UsageError("unexpected argument '" + args.positionals[1] + "'");
  const std::string &model = args.positionals[0];
  if (fs::exists(model) || model.find('/') != std::string::npos ||
      model.find(".mlir") != std::string::npos)
    return soma::load(model);
  for (const std::string &name : soma::zoo::names())
    if (name == model)
      return soma::zoo::build(model, args.integer("batch", 64), false,
                              static_cast<uint64_t>(args.integer("seed", 0)));
  throw soma::Error("no such file or zoo model: '" + model + "'");
}

soma::CompileOptions compileOptions(const Args &args) {
  soma::CompileOptions o;
  o.dump = args.get("dump");
  o.dump_dir = args.get("dump-dir");
  o.print_ir_after_all = args.has("print-ir-after-all");
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
  soma::Graph g = loadModel(args);
  soma::NamedArrays params = loadParams(g, args);
  std::string dir = args.get("output-dir");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw soma::Error("cannot create output directory " + dir + ": " +
                      (ec ? ec.message() : std::string("not a directory")));
  std::map<std::string, soma::Array> outputs;
  if (args.has("interpret")) {
    outputs = soma::interpret(g, inputs, &params);
  } else {
    soma::Inference fn = soma::compile_inference(g, compileOptions(args));
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

int cmdDump(const Args &args) {
  soma::CompileOptions o = compileOptions(args);
  o.dump = args.get("stage", "all");
  o.dump_dir = args.get("dump-dir", "soma-dump");
  if (args.has("dump"))
    throw UsageError("'soma dump' takes --stage, not --dump");
  soma::Graph g = loadModel(args);
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
  // An AOT compilation into a scratch directory runs every stage.
  fs::path scratch = fs::temp_directory_path() /
                     ("soma-dump-" + std::to_string(static_cast<long>(::getpid())));
  soma::compile_aot(g, scratch.string(), aot, nullptr, o);
  fs::remove_all(scratch);
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
                                     {"interpret", false}}),
               cmdRun}},
      {"dump", {kDumpHelp, withCommon({{"stage", true}}), cmdDump}},
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
    return it->second.run(args);
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

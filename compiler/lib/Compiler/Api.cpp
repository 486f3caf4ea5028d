//===- Api.cpp - The public compile entry points (soma/compile.h) ---------===//

#include "soma/Compiler/GraphImpl.h"
#include "soma/Compiler/Pipeline.h"
#include "soma/compile.h"
#include "soma/io.h"

#include <filesystem>

namespace soma {

//===----------------------------------------------------------------------===//
// Inference
//===----------------------------------------------------------------------===//

std::string CompileReport::str() const {
  auto kb = [](int64_t b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024.0);
    return std::string(buf);
  };
  std::string out;
  char line[512];
  for (const Function &f : functions) {
    std::snprintf(line, sizeof line, "function %s: %lld ops before fusion, %zu kernels after\n", f.name.c_str(),
                  static_cast<long long>(f.ops_before_fusion), f.kernels.size());
    out += line;
    std::snprintf(line, sizeof line, "  %-44s %12s %12s\n", "kernel", "reads", "writes");
    out += line;
    int64_t reads = 0, writes = 0;
    for (const Kernel &k : f.kernels) {
      std::snprintf(line, sizeof line, "  %-44s %12s %12s\n", k.name.c_str(), kb(k.bytes_read).c_str(),
                    kb(k.bytes_written).c_str());
      out += line;
      reads += k.bytes_read;
      writes += k.bytes_written;
    }
    std::snprintf(line, sizeof line, "  %-44s %12s %12s\n", "total", kb(reads).c_str(), kb(writes).c_str());
    out += line;
    int64_t flops = 0;
    for (const Kernel &k : f.kernels)
      flops += k.flops;
    std::snprintf(line, sizeof line, "  floating-point operations: %.4g (matmuls 2mnk, other ops one per element)\n",
                  static_cast<double>(flops));
    out += line;
    double ratio = f.lower_bound_bytes > 0 ? static_cast<double>(f.arena_bytes) / static_cast<double>(f.lower_bound_bytes) : 1.0;
    std::snprintf(line, sizeof line,
                  "  memory: arena %s for %lld temporaries; lower bound %s (arena / bound %.3f); without reuse %s\n",
                  kb(f.arena_bytes).c_str(), static_cast<long long>(f.buffers), kb(f.lower_bound_bytes).c_str(), ratio,
                  kb(f.no_reuse_bytes).c_str());
    out += line;
    if (!f.recompute_policy.empty() && f.arena_no_recompute > 0) {
      std::snprintf(line, sizeof line,
                    "  checkpointing: arena without recomputation %s, recomputing chains %s, whole cones %s: %s\n",
                    kb(f.arena_no_recompute).c_str(), kb(f.arena_chains).c_str(), kb(f.arena_cones).c_str(),
                    f.recompute_policy == "none" ? "nothing recomputed"
                    : f.recompute_policy == "chains" ? "chains compiled"
                                                     : "whole cones compiled");
      out += line;
    }
    if (f.recomputed_values > 0) {
      std::snprintf(line, sizeof line,
                    "  checkpointing: %lld values recomputed in the backward pass (%s of values), %lld extra FLOPs "
                    "(%.2f%% of the step)\n",
                    static_cast<long long>(f.recomputed_values), kb(f.recomputed_bytes).c_str(),
                    static_cast<long long>(f.recompute_flops),
                    flops > 0 ? 100.0 * static_cast<double>(f.recompute_flops) / static_cast<double>(flops) : 0.0);
      out += line;
    }
  }
  if (!stage_seconds.empty()) {
    out += "compile time:\n";
    for (const auto &[stage, sec] : stage_seconds) {
      std::snprintf(line, sizeof line, "  %-24s %9.1f ms\n", stage.c_str(), sec * 1000.0);
      out += line;
    }
  }
  return out;
}

Inference::Inference(Executable exe, NamedArrays params) : exe_(std::move(exe)) {
  set_params(params);
  states_ = exe_.make_states();
}

void Inference::set_params(const NamedArrays &params) {
  params_ = exe_.signature().match_params(params);
}

std::map<std::string, Array> Inference::run(const std::map<std::string, Array> &inputs) {
  const Signature &sig = exe_.signature();
  std::vector<Array> ins;
  for (const TensorSpec &spec : sig.inputs) {
    auto it = inputs.find(spec.name);
    if (it == inputs.end())
      throw Error("input '" + spec.name + "' (" + dtype_name(spec.dtype) +
                  shape_str(spec.shape) + ") is missing");
    ins.push_back(it->second);
  }
  for (const auto &[name, a] : inputs)
    if (sig.find_input(name) < 0)
      throw Error("'" + name + "' is not an input of the model '" + sig.name + "'");
  // params() may have been edited in place: the names must still be the
  // signature's, in order (a cheap check); Executable::call checks each
  // array's dtype and shape.
  if (params_.size() != sig.params.size())
    throw Error("the model has " + std::to_string(sig.params.size()) + " parameters, params() holds " +
                std::to_string(params_.size()) + "; use set_params to replace them");
  paramArrays_.clear();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].first != sig.params[i].name)
      throw Error("params() holds '" + params_[i].first + "' where the model has '" + sig.params[i].name +
                  "'; use set_params to replace parameters");
    paramArrays_.push_back(params_[i].second);
  }
  std::vector<Array> outs = exe_.make_outputs();
  exe_.call(ins, paramArrays_, states_, outs);
  std::map<std::string, Array> result;
  for (size_t i = 0; i < outs.size(); ++i)
    result.emplace(sig.outputs[i].name, outs[i]);
  return result;
}

Inference compile_inference(const Graph &g, const CompileOptions &options) {
  Executable exe = jitCompile(*g.impl()->module, options);
  return Inference(std::move(exe), g.init_params());
}

//===----------------------------------------------------------------------===//
// AOT
//===----------------------------------------------------------------------===//

std::vector<std::string> compile_aot(const Graph &g, const std::string &dir,
                                     const AotOptions &aot, const NamedArrays *params,
                                     const CompileOptions &options) {
  namespace fs = std::filesystem;
  if (options.mode == Mode::train)
    throw Error("compile_aot: only the eval form is compiled ahead of time (in Mode::train batch "
                "norm updates its running statistics and dropout keeps a step count, which the C "
                "ABI does not carry)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw Error("cannot create output directory " + dir + ": " +
                (ec ? ec.message() : std::string("not a directory")));
  DumpConfig dump = makeDumpConfig(options);
  auto tm = createTargetMachine(aot.cpu, options.opt_level);
  mlir::OwningOpRef<mlir::ModuleOp> kept;
  if (!options.flush_denormals)
    kept = keepingDenormals(*g.impl()->module);
  LoweredModule lowered =
      lowerToLLVMDialect(kept ? *kept : *g.impl()->module, dump, options.mode, vectorWidthOf(*tm));
  const Signature &sig = lowered.signature;
  llvm::LLVMContext llctx;
  auto module = translateAndOptimize(*lowered.module, llctx, *tm, options.opt_level, dump);

  std::string base = cIdentifier(sig.name);
  std::vector<std::string> written;
  auto out = [&](const std::string &file, const std::string &bytes) {
    std::string path = (fs::path(dir) / file).string();
    write_file_atomic(path, bytes);
    written.push_back(path);
  };
  // Parameter values only when a file needs them (VGG-16 has 138M).
  NamedArrays values;
  if (aot.weights || aot.header)
    values = sig.match_params(params ? *params : g.init_params());
  std::map<std::string, std::string> meta{{"soma.model", sig.name}};
  std::string weightsFile = base + ".weights.safetensors";
  if (aot.weights) {
    std::string path = (fs::path(dir) / weightsFile).string();
    write_safetensors(path, values, meta);
    written.push_back(path);
  }
  if (aot.object)
    out(base + ".o", emitMachineCode(*module, *tm, false));
  if (aot.assembly)
    out(base + ".s", emitMachineCode(*module, *tm, true));
  if (aot.llvm_ir) {
    std::string s;
    llvm::raw_string_ostream os(s);
    module->print(os, nullptr);
    out(base + ".ll", os.str());
  }
  if (aot.header) {
    std::vector<size_t> offsets = safetensors_data_offsets(values, meta);
    // The JSON header's length: what precedes the first tensor's data, or,
    // with no parameters, the length field of the file itself.
    uint64_t headerBytes = 0;
    if (!offsets.empty()) {
      headerBytes = offsets[0] - 8;
    } else {
      std::string tmp = (fs::path(dir) / (weightsFile + ".probe")).string();
      write_safetensors(tmp, values, meta);
      std::string bytes = read_file(tmp);
      fs::remove(tmp);
      for (int i = 7; i >= 0; --i)
        headerBytes = headerBytes << 8 | static_cast<unsigned char>(bytes.at(i));
    }
    out(base + ".h", aotHeader(sig, offsets, headerBytes, weightsFile));
  }
  return written;
}

} // namespace soma

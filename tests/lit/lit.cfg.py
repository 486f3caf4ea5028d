# lit configuration for soma's IR tests: every .mlir file under tests/lit is
# run through its RUN lines with soma-opt, soma and FileCheck on PATH.
import os
import lit.formats

config.name = "soma"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.soma_obj_root, "tests", "lit")
config.excludes = ["lit.cfg.py", "lit.site.cfg.py.in", "Inputs"]
config.environment["PATH"] = os.pathsep.join(
    [config.soma_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", "")])
config.environment["KMP_BLOCKTIME"] = "0"
# The JIT's compiled-object cache in the build tree, not in the home.
config.environment["SOMA_CACHE_DIR"] = os.path.join(config.soma_obj_root, "test-cache")

//===- Worker.cpp - JIT compilation in a worker process -------------------===//
//
// jitCompile lowers and compiles in a child process, soma-jit-worker, when
// nothing is dumped or reported. The training process then keeps none of
// what the compiler touched: MLIR's and LLVM's heaps (freed, but fragmented
// and not returned to the system) and the pages of libMLIR and libLLVM that
// only lowering and code generation use. Measured by bench/run_memory.sh:
// the whole process's peak of a first run (which compiles) falls to that of
// a run served by the compiled-object cache. A compiler crash (an LLVM
// fatal error, a segfault) also becomes a soma::Error instead of killing
// the user's program.
//
// The worker is a fresh process (posix_spawn, not fork: the parent may run
// other threads, and a fork would copy their locks). The request goes to
// its stdin and the reply comes from its stdout, over one socket pair:
//   request: "SOMAJIT1", what (0: compile, 1: plan the memory only), mode,
//            opt level, threads (u64 each), the parent's compilerIdentity()
//            and the graph module as MLIR bytecode (length-prefixed
//            strings);
//   reply:   'O' and a cache entry (serializeCachedObject: checksummed), or
//            'P' and the planned workspace bytes (u64), or
//            'E' and an error message (thrown in the parent as it is), or
//            'V' and the worker's identity when it is not the parent's
//            build of soma (the parent then compiles itself).
//
//===----------------------------------------------------------------------===//

#include "soma/Compiler/Bytes.h"
#include "soma/Compiler/Context.h"
#include "soma/Compiler/Pipeline.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/raw_ostream.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

using namespace mlir;

namespace soma {
namespace {

constexpr char kRequestMagic[8] = {'S', 'O', 'M', 'A', 'J', 'I', 'T', '1'};
/// The key the entries exchanged with a worker are framed with (they are
/// never stored under it).
const std::string kWireKey(64, '0');

/// All of `fd` until end of file (EINTR retried); false on a read error.
bool readAll(int fd, std::string &out) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0)
      out.append(buf, static_cast<size_t>(n));
    else if (n == 0)
      return true;
    else if (errno != EINTR)
      return false;
  }
}

/// The worker's reply from socket `fd`: until end of file, or, once the
/// worker `pid` has exited, until nothing more is buffered. (End of file
/// alone could wait for ever: a process that got a copy of the worker's
/// socket, forked from this program without exec at the wrong moment or
/// started by the worker, keeps it open after the worker is gone.) Without
/// pidfd_open (Linux < 5.3), until end of file. False on a read error.
bool readReply(int fd, pid_t pid, std::string &out) {
  // (The system call: Debian 12's <sys/pidfd.h> declares pidfd_open
  // without C linkage for C++.)
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0)
    return readAll(fd, out);
  char buf[65536];
  bool ok = true, exited = false;
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int n = ::poll(p, exited ? 1 : 2, exited ? 0 : -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      ok = false;
      break;
    }
    if (n == 0) // exited, and nothing is left to read
      break;
    if (p[0].revents) {
      ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r > 0) {
        out.append(buf, static_cast<size_t>(r));
        continue;
      }
      if (r == 0) // every copy of the worker's end is closed
        break;
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
        if (exited)
          break;
        continue;
      }
      ok = false;
      break;
    }
    if (p[1].revents & POLLIN)
      exited = true; // read what it left, then stop
  }
  ::close(pidfd);
  return ok;
}

/// Writes all of `data` to `fd`; to a socket without raising SIGPIPE (a
/// worker that died must not kill the parent). False on an error.
bool writeAll(int fd, const std::string &data, bool socket) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = socket ? ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL)
                       : ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void warnOnce(const std::string &message) {
  static std::mutex mutex;
  static std::set<std::string> said;
  std::lock_guard<std::mutex> lock(mutex);
  if (said.insert(message).second)
    std::fprintf(stderr, "soma: warning: %s\n", message.c_str());
}

/// The worker to run: $SOMA_JIT_WORKER ("0": none; "1": the default), else
/// soma-jit-worker in libsoma.so's directory if it is there. `named` says the
/// user named it.
std::string workerPath(bool &named) {
  named = false;
  if (const char *e = std::getenv("SOMA_JIT_WORKER"); e && *e && std::string(e) != "1") {
    if (std::string(e) == "0")
      return "";
    named = true;
    return e;
  }
  Dl_info info;
  if (!dladdr(reinterpret_cast<const void *>(&jitWorkerMain), &info) || !info.dli_fname)
    return "";
  std::string lib = info.dli_fname;
  size_t slash = lib.rfind('/');
  std::string path = (slash == std::string::npos ? std::string(".") : lib.substr(0, slash)) + "/soma-jit-worker";
  return ::access(path.c_str(), X_OK) == 0 ? path : "";
}

/// How a worker that gave no reply ended, from waitpid's status, and
/// whether that says soma has a bug (a crash, an exit without a reply)
/// rather than that the worker was stopped from outside (the out-of-memory
/// killer's SIGKILL, a Ctrl-C that reached the whole process group).
std::string howItEnded(int status, bool &bug) {
  bug = true;
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
#ifdef SOMA_HAVE_SIGABBREV
    const char *name = sigabbrev_np(sig);
#else
    const char *name = nullptr;
#endif
    std::string how = "was killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
    if (sig == SIGKILL) {
      bug = false;
      return how + ": out of memory (the kernel's OOM killer), or killed by someone";
    }
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT) {
      bug = false;
      return how + ": interrupted";
    }
    return how;
  }
  if (WIFEXITED(status))
    return "exited with status " + std::to_string(WEXITSTATUS(status)) + " without a reply";
  return "ended without a reply";
}

/// A spawned worker: its socket end closed and the child waited for
/// (killed first if it has not ended) when the parent leaves early, by an
/// exception (a reply too large to hold) as well.
struct SpawnedWorker {
  pid_t pid = 0;
  int fd = -1;
  bool waited = false;
  int status = 0;
  void closeSocket() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  /// waitpid's status; false when the child cannot be waited for (the
  /// program ignores SIGCHLD).
  bool wait() {
    pid_t w;
    do
      w = ::waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    waited = true;
    return w == pid;
  }
  ~SpawnedWorker() {
    closeSocket();
    if (pid > 0 && !waited) {
      ::kill(pid, SIGKILL);
      wait();
    }
  }
};

std::string graphName(ModuleOp m) {
  for (auto f : m.getOps<func::FuncOp>())
    return f.getSymName().str();
  return "?";
}

/// A request for `what` (0: compile, 1: plan) of `graphModule`; nothing
/// (after a warning) when the module cannot be written as bytecode.
std::optional<std::string> makeRequest(uint64_t what, ModuleOp graphModule, Mode mode, int optLevel,
                                       int64_t threads) {
  ByteWriter request;
  request.out.assign(kRequestMagic, sizeof kRequestMagic);
  request.u64(what);
  request.u64(mode == Mode::train ? 1 : 0);
  request.u64(static_cast<uint64_t>(optLevel));
  request.u64(static_cast<uint64_t>(threads));
  request.str(compilerIdentity());
  std::string bytecode;
  llvm::raw_string_ostream os(bytecode);
  if (failed(writeBytecodeToFile(graphModule, os))) {
    warnOnce("cannot write the graph module as MLIR bytecode for soma-jit-worker; compiling in this process");
    return std::nullopt;
  }
  os.flush();
  request.str(bytecode);
  return std::move(request.out);
}

/// Runs a worker on the request for `what` (see makeRequest) and returns
/// its reply's body when it is of kind `ok`; nothing when there is no
/// worker or it is another build's (the request is only made when there is
/// one). `doing` ("compiling", "planning") and the graph's name go into
/// errors.
std::optional<std::string> askWorker(uint64_t what, ModuleOp graphModule, Mode mode, int optLevel, int64_t threads,
                                     char ok, const char *doing) {
  bool named = false;
  std::string path = workerPath(named);
  if (path.empty())
    return std::nullopt;
  std::optional<std::string> request = makeRequest(what, graphModule, mode, optLevel, threads);
  if (!request)
    return std::nullopt;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    warnOnce(std::string("cannot talk to soma-jit-worker (socketpair: ") + std::strerror(errno) +
             "); compiling in this process");
    return std::nullopt;
  }
  // The worker's end becomes its stdin and stdout (dup2 clears close-on-exec
  // there); stderr is ours, for its warnings.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], 0);
  posix_spawn_file_actions_adddup2(&actions, sv[1], 1);
  // Nothing else of ours: a worker holding the program's other files (the
  // write end of a pipe, a socket) could delay their end for it. (Without
  // glibc's extension, only those marked close-on-exec are closed.)
#ifdef SOMA_HAVE_SPAWN_CLOSEFROM
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
  // Signals as a new program expects them, not as this thread has them: no
  // blocked ones, and the default action for those a program (or an
  // interpreter embedding soma) commonly ignores or handles.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD})
    sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char *argv[] = {const_cast<char *>(path.c_str()), nullptr};
  SpawnedWorker child;
  int rc = ::posix_spawn(&child.pid, path.c_str(), &actions, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sv[1]);
  if (rc != 0) {
    child.pid = 0;
    ::close(sv[0]);
    std::string why = "cannot start the JIT worker " + path + ": " + std::strerror(rc);
    if (named)
      throw Error(why + " (SOMA_JIT_WORKER=0 compiles in this process)");
    warnOnce(why + "; compiling in this process");
    return std::nullopt;
  }
  child.fd = sv[0];
  // A worker that dies early leaves the request half sent: its status says
  // why, below.
  writeAll(child.fd, *request, /*socket=*/true);
  request.reset();
  ::shutdown(child.fd, SHUT_WR);
  std::string reply;
  bool readOk = readReply(child.fd, child.pid, reply);
  child.closeSocket();
  // (With SIGCHLD ignored by the program, waitpid finds no child: then the
  // reply alone tells.)
  bool statusKnown = child.wait();

  std::string whatFor = std::string(doing) + " '" + graphName(graphModule) + "'";
  if (readOk && !reply.empty()) {
    char kind = reply[0];
    if (kind == ok)
      return reply.substr(1);
    if (kind == 'E')
      throw Error(reply.substr(1));
    if (kind == 'V') {
      warnOnce(path + " is from another build of soma (" + reply.substr(1) + "; this process: " +
               compilerIdentity() + "); compiling in this process");
      return std::nullopt;
    }
  }
  std::string where = "JIT: the compiler process (" + path + ", pid " + std::to_string(child.pid) + ")";
  if (readOk && !reply.empty())
    throw Error(where + " sent a bad reply " + whatFor);
  bool bug = true;
  std::string how = statusKnown ? howItEnded(child.status, bug) : std::string("ended without a reply");
  throw Error(where + " " + how + " while " + whatFor +
              (bug ? ". This is a bug in soma; SOMA_JIT_WORKER=0 compiles in this process (to debug it there)"
                   : ""));
}

} // namespace

std::optional<CachedObject> compileInWorker(ModuleOp graphModule, Mode mode, int optLevel, int64_t threads) {
  std::optional<std::string> body = askWorker(0, graphModule, mode, optLevel, threads, 'O', "compiling");
  if (!body)
    return std::nullopt;
  try {
    return parseCachedObject(kWireKey, *body);
  } catch (const Error &e) {
    throw Error("JIT: soma-jit-worker sent a bad reply compiling '" + graphName(graphModule) + "': " + e.what());
  }
}

std::optional<int64_t> planInWorker(ModuleOp graphModule, Mode mode) {
  std::optional<std::string> body = askWorker(1, graphModule, mode, 0, 0, 'P', "planning");
  if (!body)
    return std::nullopt;
  int64_t bytes = -1;
  try {
    ByteReader in(*body);
    bytes = static_cast<int64_t>(in.u64());
    if (!in.atEnd())
      bytes = -1;
  } catch (const Error &) {
  }
  if (bytes < 0)
    throw Error("JIT: soma-jit-worker sent a bad reply planning '" + graphName(graphModule) + "'");
  ++objectCacheStats().plans_in_worker;
  return bytes;
}

int jitWorkerMain() {
  // The reply goes to the original stdout; anything printed to stdout while
  // compiling goes to stderr, so it cannot corrupt the reply. (A program
  // without a stderr gives the worker none: /dev/null stands in.)
  if (::fcntl(2, F_GETFD) < 0) {
    int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0 && null != 2) {
      ::dup2(null, 2);
      ::close(null);
    }
  }
  int replyFd = ::dup(1);
  if (replyFd < 0 || ::dup2(2, 1) < 0) {
    std::perror("soma-jit-worker");
    return 1;
  }
  std::string request, reply;
  if (!readAll(0, request)) {
    std::perror("soma-jit-worker: reading the request");
    return 1;
  }
  try {
    ByteReader in(request, "soma-jit-worker: truncated request");
    if (!in.skip(std::string_view(kRequestMagic, sizeof kRequestMagic)))
      throw Error("soma-jit-worker: not a soma JIT request (soma-jit-worker is started by libsoma)");
    uint64_t what = in.u64();
    Mode mode = in.u64() == 1 ? Mode::train : Mode::eval;
    int optLevel = static_cast<int>(in.u64());
    int64_t threads = static_cast<int64_t>(in.u64());
    std::string identity = in.str();
    if (identity != compilerIdentity()) {
      reply = "V" + compilerIdentity();
    } else {
      std::string bytecode = in.str();
      std::unique_ptr<MLIRContext> ctx = createContext();
      DiagnosticCollector diags(ctx.get());
      OwningOpRef<ModuleOp> m = parseSourceString<ModuleOp>(bytecode, ParserConfig(ctx.get()));
      if (!m)
        throw Error("soma-jit-worker: cannot read the graph module: " + diags.message());
      if (what == 1) {
        ByteWriter p;
        p.out = "P";
        p.u64(static_cast<uint64_t>(plannedWorkspaceBytes(*m, mode)));
        reply = std::move(p.out);
      } else {
        DumpConfig none;
        none.cache = false;
        none.worker = false;
        reply = "O" + serializeCachedObject(kWireKey, compileObjects(*m, none, optLevel, mode, threads));
      }
    }
  } catch (const Error &e) {
    reply = std::string("E") + e.what();
  } catch (const std::exception &e) {
    reply = std::string("Esoma-jit-worker: internal compiler error: ") + e.what();
  }
  std::fflush(stdout);
  if (!writeAll(replyFd, reply, /*socket=*/false)) {
    std::perror("soma-jit-worker: writing the reply");
    return 1;
  }
  return 0;
}

} // namespace soma

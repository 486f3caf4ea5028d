#!/usr/bin/env python3
"""Side-by-side speed of soma and its peers (see bench/README.md).

Runs the workers speed_soma, speed_peers (OpenBLAS, oneDNN) and speed_torch
(libtorch) in alternating processes (A B C A B C ... with the order rotated
every round), each with the same thread settings, and prints medians,
spreads and ratios (peer time / soma time: > 1 means soma is faster).

Every process runs with KMP_BLOCKTIME=0 and OMP_WAIT_POLICY=passive: idle
OpenMP threads sleep at once. soma's runtime keeps its workers spinning up
to SOMA_SPIN_MS (1 ms) between the kernels of one call whatever those say;
so that each peer is also shown at its best, the OpenMP peers (oneDNN,
libtorch) run a second time with more than one thread under
OMP_WAIT_POLICY=active (suffix _spin in the CSV), and their cells show the
faster of the two policies (marked * where spinning won).

  bench/run_speed.py [--build build-bench] [--only gemm,conv,ops,models,compile]
                     [--threads 1,2] [--reps N] [--rounds R] [--budget S] [--csv FILE]
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile

# FP32 FMA peak (GFLOP/s) per thread count: measured at the start of a run
# (speed_soma peak: vector FMA chains on every thread, fma_peak.h); --peak
# sets it instead (GFLOP/s of one core, times the threads).
PEAK_GFLOPS = {}
SECTIONS = ["gemm", "conv", "ops", "models", "compile"]
SPIN = "_spin"  # an OpenMP peer's second run, with OMP_WAIT_POLICY=active
COMPILE_MODELS = [("mlp", 64), ("lenet5", 64), ("resnet8", 32)]


def quantile(xs, q):
    xs = sorted(xs)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class Results:
    def __init__(self):
        self.times = {}   # (section, item, who, threads) -> [ms]
        self.flops = {}   # (section, item) -> flops
        self.errs = {}    # (section, item, who, threads) -> max relative error
        self.values = {}  # (section, item, who, threads) -> [float]

    def parse(self, text, suffix=""):
        """A worker's output; `suffix` is appended to the contender's name."""
        for line in text.splitlines():
            f = line.split()
            if len(f) < 6 or f[0] not in ("time", "err", "value"):
                continue
            key = (f[1], f[2], f[3] + suffix, int(f[4]))
            if f[0] == "time":
                self.flops[(f[1], f[2])] = float(f[5])
                self.times.setdefault(key, []).extend(float(v) for v in f[6].split(","))
            elif f[0] == "err":
                self.errs[key] = max(self.errs.get(key, 0.0), float(f[5]))
            else:
                self.values.setdefault(key, [float(v) for v in f[5].split(",")])

    def stats(self, section, item, who, threads):
        xs = self.times.get((section, item, who, threads))
        if not xs:
            return None
        return {"n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs),
                "q1": quantile(xs, 0.25), "q3": quantile(xs, 0.75)}

    def items(self, section):
        """The section's items, in the order the workers first printed them."""
        seen = []
        for (sec, item, who, t) in self.times:
            if sec == section and item not in seen:
                seen.append(item)
        return seen

    def median(self, section, item, who, threads):
        s = self.stats(section, item, who, threads)
        return s["median"] if s else None

    def best(self, section, item, who, threads):
        """(stats, spun): the OpenMP peer `who` under the wait policy with the
        lower median, passive or active (who + SPIN)."""
        s = self.stats(section, item, who, threads)
        spin = self.stats(section, item, who + SPIN, threads)
        if spin and (not s or spin["median"] < s["median"]):
            return spin, True
        return s, False


def env_for(threads, extra=None):
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                "OMP_PROC_BIND": "close", "KMP_BLOCKTIME": "0", "OMP_WAIT_POLICY": "passive"})
    env.update(extra or {})
    return env


def run(cmd, env, results, suffix=""):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write("run_speed: %s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr))
        sys.exit(1)
    results.parse(p.stdout, suffix)


def progress(msg=""):
    """A status line on stderr, overwritten by the next one; empty clears it."""
    sys.stderr.write("\r%-78s\r%s" % ("", msg[:78]))
    sys.stderr.flush()


def alternate(workers, threads, args, results, label, openmp=()):
    """Runs each worker once per round, the order rotated every round.
    Workers whose index is in `openmp` (OpenMP peers) also run, with more
    than one thread, under OMP_WAIT_POLICY=active (contender name + SPIN)."""
    reps = max(1, math.ceil(args.reps / args.rounds))
    runs = [(w, {}, "") for w in workers]
    if threads > 1:
        runs += [(workers[i], {"OMP_WAIT_POLICY": "active"}, SPIN) for i in openmp]
    for r in range(args.rounds):
        order = runs[r % len(runs):] + runs[:r % len(runs)]
        for w, extra, suffix in order:
            progress("%s, %d thread(s): round %d/%d, %s%s" % (label, threads, r + 1, args.rounds,
                                                            os.path.basename(w[0]), suffix))
            run([w[0], w[1], str(threads), str(reps), str(args.budget)] + w[2:], env_for(threads, extra), results,
                suffix)
    progress()


def fmt_ms(s):
    """median and half the inter-quartile range as a share of it."""
    if not s:
        return "%18s" % "-"
    half = (s["q3"] - s["q1"]) / 2 / s["median"] * 100 if s["median"] > 0 else 0
    return "%10.4g ±%3.0f%%  " % (s["median"], half)


def ratio(peer, soma):
    return "%6.2f" % (peer / soma) if peer and soma else "%6s" % "-"


def rel_diff(a, b):
    if not a or not b or len(a) != len(b):
        return None
    scale = max(max(abs(x) for x in a), 1e-30)
    return max(abs(x - y) for x, y in zip(a, b)) / scale


class Csv:
    def __init__(self, path):
        self.f = open(path, "w") if path else None
        if self.f:
            self.f.write("section,item,contender,threads,samples,median_ms,q1_ms,q3_ms,min_ms,max_ms,gflops,max_rel_error\n")

    def row(self, res, section, item, who, threads, median=None):
        if not self.f:
            return
        s = res.stats(section, item, who, threads)
        fl = res.flops.get((section, item), 0)
        if s:
            median = s["median"]
            cols = [s["n"], s["median"], s["q1"], s["q3"], s["min"], s["max"]]
        elif median is not None:  # a sum of medians
            cols = ["", median, "", "", "", ""]
        else:
            return
        gf = fl / median / 1e6 if fl and median else ""
        err = res.errs.get((section, item, who, threads), "")
        self.f.write(",".join(str(c) for c in [section, item, who, threads] + cols + [gf, err]) + "\n")


def gemm(args, res, csv):
    soma = os.path.join(args.build, "bench", "speed_soma")
    peers = os.path.join(args.build, "bench", "speed_peers")
    for t in args.threads:
        alternate([[soma, "gemm"], [peers, "gemm", "openblas"], [peers, "gemm", "onednn"]], t, args, res, "gemm",
                  openmp=[2])
    names = res.items("gemm")
    print("\n== SGEMM, row-major f32 (M x N x K; _At/_Bt: A/B transposed): median ms ±IQR/2, GFLOP/s, % of FMA peak ==")
    print("ratio = peer time / soma time (> 1: soma faster); err = max relative error vs a double-precision reference (sampled)")
    print("oneDNN: the faster of OMP_WAIT_POLICY=passive and active (* = active)")
    for t in args.threads:
        peak = PEAK_GFLOPS.get(t, 99.0 * t)
        print("\n%d thread(s), peak %.0f GFLOP/s" % (t, peak))
        print("%-17s | %-18s %6s %4s | %-18s %6s | %-18s %6s | %6s %6s | %s" % (
            "shape", "soma ms", "GF/s", "%pk", "OpenBLAS ms", "GF/s", "oneDNN ms", "GF/s", "OB/s", "DNNL/s", "err soma/OB/DNNL"))
        for item in names:
            fl = res.flops.get(("gemm", item), 0)
            st = {w: res.stats("gemm", item, w, t) for w in ("soma", "openblas")}
            st["onednn"], spun = res.best("gemm", item, "onednn", t)
            gf = {w: (fl / st[w]["median"] / 1e6 if st[w] else 0) for w in st}
            errs = "/".join("%.0e" % res.errs.get(("gemm", item, w, t), float("nan")) for w in st)
            print("%-17s | %s %6.1f %3.0f%% | %s %6.1f | %s%s%6.1f | %s %s | %s" % (
                item, fmt_ms(st["soma"]), gf["soma"], gf["soma"] / peak * 100, fmt_ms(st["openblas"]), gf["openblas"],
                fmt_ms(st["onednn"])[:-1], "*" if spun else " ", gf["onednn"],
                ratio(st["openblas"] and st["openblas"]["median"], st["soma"] and st["soma"]["median"]),
                ratio(st["onednn"] and st["onednn"]["median"], st["soma"] and st["soma"]["median"]), errs))
            for w in ("soma", "openblas", "onednn", "onednn" + SPIN):
                csv.row(res, "gemm", item, w, t)


CONV_ROWS = [  # (label, soma item suffix, oneDNN passes summed)
    ("fwd", "fwd", ["fwd"]),
    ("bwd_data", "bwd_data", ["bwd_data"]),
    ("bwd_weights", "bwd_weights", ["bwd_weights"]),
    ("both bwd", "bwd_data+bwd_weights", ["bwd_data", "bwd_weights"]),
]


def conv(args, res, csv):
    soma = os.path.join(args.build, "bench", "speed_soma")
    peers = os.path.join(args.build, "bench", "speed_peers")
    for t in args.threads:
        alternate([[soma, "conv"], [peers, "conv"]], t, args, res, "conv", openmp=[1])
    layers = []
    for (sec, item, who, t) in res.times:
        layer = item.split(":")[0]
        if sec == "conv" and layer not in layers:
            layers.append(layer)
    print("\n== Convolution, NCHW f32: soma vs oneDNN (blocked: format_tag::any; nchw: plain layouts) ==")
    print("soma's backward rows are the gradients of y = conv(x, w) given dy, without y (compile_gradients with")
    print("output_gradient, outputs = false); 'both bwd' is one soma function against the sum of oneDNN's two")
    print("passes. median ms ±IQR/2, GFLOP/s; ratio = oneDNN / soma;")
    print("oneDNN: the faster of OMP_WAIT_POLICY=passive and active (* = active)")
    for t in args.threads:
        print("\n%d thread(s), peak %.0f GFLOP/s" % (t, PEAK_GFLOPS.get(t, 99.0 * t)))
        print("%-12s %-16s | %-18s %6s | %-11s %6s | %-11s %6s | %6s %6s | %s" % (
            "layer", "pass", "soma ms", "GF/s", "DNNL blk ms", "GF/s", "DNNL nchw", "GF/s", "blk/s", "nchw/s", "err soma (dx/dw)"))
        for layer in layers:
            for label, suffix, passes in CONV_ROWS:
                st = res.stats("conv", layer + ":" + suffix, "soma", t)
                s_ms = st["median"] if st else None
                shown = fmt_ms(st)
                fl = sum(res.flops.get(("conv", layer + ":" + p), 0) for p in passes)
                peer, spun = {}, {}
                for who in ("onednn", "onednn_nchw"):
                    sums = []
                    for w in (who, who + SPIN):
                        ms = [res.median("conv", layer + ":" + p, w, t) for p in passes]
                        if all(ms):
                            sums.append((sum(ms), w != who))
                    peer[who], spun[who] = min(sums) if sums else (None, False)
                errs = "/".join("%.0e" % e for e in [
                    res.errs.get(("conv", layer + ":" + suffix + s, "soma", t)) for s in ("", "(dx)", "(dw)")] if e is not None)
                gf = lambda ms: fl / ms / 1e6 if ms and fl else 0.0
                mark = {w: "*" if spun[w] else " " for w in spun}
                print("%-12s %-16s | %s %6.1f | %10.4g%s %6.1f | %10.4g%s %6.1f | %s %s | %s" % (
                    layer, label, shown, gf(s_ms), peer["onednn"] or 0, mark["onednn"], gf(peer["onednn"]),
                    peer["onednn_nchw"] or 0, mark["onednn_nchw"], gf(peer["onednn_nchw"]),
                    ratio(peer["onednn"], s_ms), ratio(peer["onednn_nchw"], s_ms), errs))
        for (sec, item, who, th) in res.times:
            if sec == "conv" and th == t:
                csv.row(res, sec, item, who, t)


def ops(args, res, csv):
    """The memory-bound kernels against their bandwidth bound: the time of a
    memcpy moving as many bytes as the op must read and write, measured
    right after the op in the same process (speed_soma ops)."""
    soma = os.path.join(args.build, "bench", "speed_soma")
    for t in args.threads:
        alternate([[soma, "ops"]], t, args, res, "ops")
    items = res.items("ops")
    print("\n== Memory-bound kernels: soma against the memory-bandwidth bound ==")
    print("bound = a memcpy moving the bytes the op must read and write at least (x and y; backward: x, dy and dx;")
    print("avg_pool and global_avg_pool backward: dy and dx), on the same threads, timed right after the op;")
    print("backward = the gradient given dy, without y (compile_gradients, outputs = false). Shapes: [32, 64, 32, 32]")
    print("(8 MiB; pooling 2 x 2), softmax [8192, 256] over its rows. median ms ±IQR/2; x bound = soma / bound (target <= 2)")
    for t in args.threads:
        print("\n%d thread(s)" % t)
        print("%-22s | %-18s %7s | %-18s %7s | %7s" % ("op:pass", "soma ms", "GB/s", "bound (copy) ms", "GB/s", "x bound"))
        for item in items:
            st, cp = res.stats("ops", item, "soma", t), res.stats("ops", item, "copy", t)
            by = res.flops.get(("ops", item), 0)
            gb = lambda s: by / s["median"] / 1e6 if s and by else 0.0
            x = "%7.2f" % (st["median"] / cp["median"]) if st and cp else "%7s" % "-"
            print("%-22s | %s %7.1f | %s %7.1f | %s" % (item, fmt_ms(st), gb(st), fmt_ms(cp), gb(cp), x))
            for w in ("soma", "copy"):
                csv.row(res, "ops", item, w, t)


def models(args, res, csv):
    soma = os.path.join(args.build, "bench", "speed_soma")
    torch = os.path.join(args.build, "bench", "speed_torch")
    with tempfile.TemporaryDirectory(prefix="soma-bench-") as d:
        for t in args.threads:
            # soma first: it writes the initial parameters that libtorch loads.
            alternate([[soma, "models", d], [torch, "models", d]], t, args, res, "models", openmp=[1])
    items = res.items("models")
    print("\n== Whole models (Adam training step: forward + backward + update; inference: forward, eval mode) ==")
    print("median ms ±IQR/2; ratio = libtorch / soma (> 1: soma faster); best = each at its best thread count;")
    print("libtorch: the faster of OMP_WAIT_POLICY=passive and active (* = active);")
    print("check = max relative difference of the first 3 training losses / the first 30 logits (same parameters)")
    print("%-18s | %-7s | %-18s %-18s %6s | %s" % ("model", "threads", "soma ms", "libtorch ms", "ratio", "check"))
    for item in items:
        best = {}
        for t in args.threads:
            s = res.stats("models", item, "soma", t)
            p, spun = res.best("models", item, "libtorch", t)
            d = rel_diff(res.values.get(("models", item, "soma", t)), res.values.get(("models", item, "libtorch", t)))
            print("%-18s | %-7d | %s %s%s%s | %s" % (item, t, fmt_ms(s), fmt_ms(p)[:-1], "*" if spun else " ",
                                                     ratio(p and p["median"], s and s["median"]),
                                                     "%.1e" % d if d is not None else "-"))
            for who, st in (("soma", s), ("libtorch", p)):
                if st and (who not in best or st["median"] < best[who][0]):
                    best[who] = (st["median"], t)
            for who in ("soma", "libtorch", "libtorch" + SPIN):
                csv.row(res, "models", item, who, t)
        if len(best) == 2:
            print("%-18s | %-7s | %10.4g (%dT)     %10.4g (%dT)     %s |" % (
                item, "best", best["soma"][0], best["soma"][1], best["libtorch"][0], best["libtorch"][1],
                ratio(best["libtorch"][0], best["soma"][0])))


def compile_times(args, res, csv):
    soma = os.path.join(args.build, "bench", "speed_soma")
    t = args.threads[0]
    runs = max(1, args.rounds)
    print("\n== JIT compile time (ms; compile_training with Adam / compile_inference, each in a fresh process) ==")
    print("cold: SOMA_CACHE=0; cached: SOMA_CACHE_DIR=<fresh dir> filled by one process, then %d more processes." % runs)
    print("%-18s | %-24s | %-24s | %s" % ("model", "cold median (min-max)", "cached median (min-max)", "cache files"))
    with tempfile.TemporaryDirectory(prefix="soma-cache-") as cache:
        for model, batch in COMPILE_MODELS:
            for kind in ("train", "infer"):
                item = "%s_b%d_%s" % (model, batch, kind)
                progress("compile " + item)
                cmd = [soma, "compile", str(t), "1", "0", model, str(batch), kind]
                cold, warm = Results(), Results()
                for _ in range(runs):
                    run(cmd, env_for(t, {"SOMA_CACHE": "0"}), cold)
                run(cmd, env_for(t, {"SOMA_CACHE_DIR": cache}), Results())
                for _ in range(runs):
                    run(cmd, env_for(t, {"SOMA_CACHE_DIR": cache}), warm)
                files = sum(len(fs) for _, _, fs in os.walk(cache))
                cells = []
                for r, who in ((cold, "soma_cold"), (warm, "soma_cached")):
                    s = r.stats("compile", item, "soma", t)
                    cells.append("%8.1f (%.1f-%.1f)" % (s["median"], s["min"], s["max"]))
                    res.times[("compile", item, who, t)] = r.times[("compile", item, "soma", t)]
                    csv.row(res, "compile", item, who, t)
                progress()
                print("%-18s | %-24s | %-24s | %d" % (item, cells[0], cells[1], files))
    progress()


def measure_peak(args):
    """PEAK_GFLOPS[t] for every thread count, from speed_soma peak (the best
    of 10 runs of 0.2 s)."""
    soma = os.path.join(args.build, "bench", "speed_soma")
    cells = []
    for t in args.threads:
        p = subprocess.run([soma, "peak", str(t), "10", "2.0"], env=env_for(t), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        f = p.stdout.split()
        if p.returncode != 0 or len(f) != 4 or f[0] != "peak" or f[3] == "none":
            print("note: no FMA peak measured for %d thread(s) (%s); %%-of-peak columns use %.0f GFLOP/s a core"
                  % (t, (p.stderr.strip() or p.stdout.strip() or "no vector FMA"), 99.0))
            PEAK_GFLOPS[t] = 99.0 * t
            continue
        PEAK_GFLOPS[t] = float(f[2])
        cells.append("%dT %.0f GFLOP/s (%s)" % (t, PEAK_GFLOPS[t], f[3]))
    if cells:
        print("FMA peak, measured (speed_soma peak: vector FMA chains on every thread): " + ", ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-bench", help="build directory with bench/ (default build-bench)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--reps", type=int, default=30, help="timed samples per item and contender (default 30)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating process rounds (default 3)")
    ap.add_argument("--budget", type=float, default=1.0,
                    help="seconds of samples per item per process, at least 3 samples (default 1)")
    ap.add_argument("--peak", type=float,
                    help="FP32 peak GFLOP/s of one core (default: measured by an FMA loop, speed_soma peak)")
    ap.add_argument("--csv", help="also write every median and spread to this CSV file")
    args = ap.parse_args()
    args.threads = [int(x) for x in args.threads.split(",") if x]
    if args.peak:
        PEAK_GFLOPS.clear()
        PEAK_GFLOPS.update({t: args.peak * t for t in args.threads})
    only = [s for s in args.only.split(",") if s]
    for s in only:
        if s not in SECTIONS:
            ap.error("unknown section '%s' (%s)" % (s, ", ".join(SECTIONS)))
    load = os.getloadavg()[0]
    print("soma speed benchmark: threads %s, up to %d samples per item in %d alternating rounds; load average %.2f on %d CPUs"
          % (",".join(map(str, args.threads)), args.reps, args.rounds, load, os.cpu_count()))
    print("every contender: OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=T, torch::set_num_threads(T), OMP_PROC_BIND=close, "
          "KMP_BLOCKTIME=0, OMP_WAIT_POLICY=passive;")
    print("soma's workers spin up to SOMA_SPIN_MS=%s ms between the kernels of a call; the OpenMP peers also run with "
          "OMP_WAIT_POLICY=active (2+ threads)" % os.environ.get("SOMA_SPIN_MS", "1"))
    if not args.peak:
        measure_peak(args)
    res = Results()
    csv = Csv(args.csv)
    for s in SECTIONS:
        if s in only:
            {"gemm": gemm, "conv": conv, "ops": ops, "models": models, "compile": compile_times}[s](args, res, csv)
            sys.stdout.flush()
    print("\nload average at the end: %.2f (a second busy process halves every 2-thread number)" % os.getloadavg()[0])


if __name__ == "__main__":
    main()

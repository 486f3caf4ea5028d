// speed_peers: the libraries' side of the speed benchmark (bench/run_speed.py
// runs it), on the shapes and data of speed_common.h.
//
//   speed_peers gemm THREADS REPS BUDGET_S openblas|onednn
//   speed_peers conv THREADS REPS BUDGET_S
//
// gemm: cblas_sgemm (OpenBLAS, pthreads) or dnnl_sgemm (oneDNN, OpenMP),
// row-major, on preallocated buffers. conv: oneDNN's direct convolution
// forward (forward_training), backward-data and backward-weights, once with
// the layouts oneDNN prefers (format_tag::any: blocked, e.g. nChw8c) and
// once on plain NCHW/OIHW; only the primitive is timed (the reorders from
// and to NCHW are done once, outside the timing, as a framework keeping
// blocked tensors between layers would). The thread counts come from
// OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (set by the driver) and are set
// again here.
#include "speed_common.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <unordered_map>

namespace {

using bench::Args;

void gemm(const Args &a, const std::string &lib) {
  bool blas = lib == "openblas";
  if (!blas && lib != "onednn") {
    std::fprintf(stderr, "speed_peers gemm: openblas or onednn, not '%s'\n", lib.c_str());
    std::exit(2);
  }
  for (const bench::Gemm &s : bench::gemmShapes()) {
    std::vector<float> A(s.m * s.k), B(s.k * s.n), C(s.m * s.n);
    bench::fill(A.data(), static_cast<int64_t>(A.size()), 1);
    bench::fill(B.data(), static_cast<int64_t>(B.size()), 2);
    int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    auto call = [&] {
      if (blas)
        cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                    static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), 1.0f, A.data(),
                    static_cast<int>(lda), B.data(), static_cast<int>(ldb), 0.0f, C.data(),
                    static_cast<int>(s.n));
      else
        dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, A.data(), lda, B.data(), ldb,
                   0.0f, C.data(), s.n);
    };
    call();
    bench::emitErr(a, s.name(), lib.c_str(), bench::gemmError(s, A.data(), B.data(), C.data()));
    bench::emitTime(a, s.name(), lib.c_str(), s.flops(), bench::measure(call, a));
  }
}

using dnnl::memory;
using tag = dnnl::memory::format_tag;

/// A user buffer in a plain layout and, if the primitive wants another
/// layout, its copy in that layout.
struct Buf {
  memory user, prim;
};

Buf buffer(dnnl::engine &eng, dnnl::stream &st, const memory::desc &want, const memory::dims &dims,
           tag plain, float *data, bool input) {
  Buf b;
  b.user = memory({dims, memory::data_type::f32, plain}, eng, data);
  b.prim = want == b.user.get_desc() ? b.user : memory(want, eng);
  if (input && b.prim != b.user)
    dnnl::reorder(b.user, b.prim).execute(st, b.user, b.prim);
  st.wait();
  return b;
}

void toUser(dnnl::stream &st, Buf &b) {
  if (b.prim != b.user)
    dnnl::reorder(b.prim, b.user).execute(st, b.prim, b.user);
  st.wait();
}

void conv(const Args &a) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  for (const bench::Conv &cv : bench::convLayers()) {
    memory::dims xd{cv.n, cv.c, cv.h, cv.w}, wd{cv.k, cv.c, cv.r, cv.r}, yd{cv.n, cv.k, cv.p(), cv.q()};
    memory::dims strides{1, 1}, pad{cv.pad, cv.pad};
    std::vector<float> x(cv.xSize()), w(cv.wSize()), dy(cv.ySize()), y(cv.ySize()), dx(cv.xSize()),
        dw(cv.wSize());
    bench::fill(x.data(), cv.xSize(), 3);
    bench::fill(w.data(), cv.wSize(), 4);
    bench::fill(dy.data(), cv.ySize(), 5);
    for (bool blocked : {true, false}) {
      const char *who = blocked ? "onednn" : "onednn_nchw";
      tag act = blocked ? tag::any : tag::nchw, wt = blocked ? tag::any : tag::oihw;
      auto f32 = memory::data_type::f32;
      memory::desc xm(xd, f32, act), wm(wd, f32, wt), ym(yd, f32, act);
      auto alg = dnnl::algorithm::convolution_direct;
      dnnl::convolution_forward::primitive_desc fpd(
          dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, xm, wm, ym, strides, pad, pad),
          eng);
      dnnl::convolution_backward_data::primitive_desc dpd(
          dnnl::convolution_backward_data::desc(alg, xm, wm, ym, strides, pad, pad), eng, fpd);
      dnnl::convolution_backward_weights::primitive_desc wpd(
          dnnl::convolution_backward_weights::desc(alg, xm, wm, ym, strides, pad, pad), eng, fpd);
      std::string item = std::string(cv.name) + ":";
      // Runs once, checks against the reference, then times.
      auto run = [&](dnnl::primitive p, const std::unordered_map<int, memory> &args, Buf &out,
                     const char *pass, bench::Pass kind, const float *got) {
        auto call = [&] {
          p.execute(st, args);
          st.wait();
        };
        call();
        toUser(st, out);
        bench::emitErr(a, item + pass, who, bench::convError(cv, kind, x.data(), w.data(), dy.data(), got));
        bench::emitTime(a, item + pass, who, cv.flops(), bench::measure(call, a));
      };
      {
        Buf bx = buffer(eng, st, fpd.src_desc(), xd, tag::nchw, x.data(), true);
        Buf bw = buffer(eng, st, fpd.weights_desc(), wd, tag::oihw, w.data(), true);
        Buf by = buffer(eng, st, fpd.dst_desc(), yd, tag::nchw, y.data(), false);
        run(dnnl::convolution_forward(fpd), {{DNNL_ARG_SRC, bx.prim}, {DNNL_ARG_WEIGHTS, bw.prim}, {DNNL_ARG_DST, by.prim}},
            by, "fwd", bench::Pass::fwd, y.data());
      }
      {
        Buf bdy = buffer(eng, st, dpd.diff_dst_desc(), yd, tag::nchw, dy.data(), true);
        Buf bw = buffer(eng, st, dpd.weights_desc(), wd, tag::oihw, w.data(), true);
        Buf bdx = buffer(eng, st, dpd.diff_src_desc(), xd, tag::nchw, dx.data(), false);
        run(dnnl::convolution_backward_data(dpd),
            {{DNNL_ARG_DIFF_DST, bdy.prim}, {DNNL_ARG_WEIGHTS, bw.prim}, {DNNL_ARG_DIFF_SRC, bdx.prim}}, bdx,
            "bwd_data", bench::Pass::bwdData, dx.data());
      }
      {
        Buf bdy = buffer(eng, st, wpd.diff_dst_desc(), yd, tag::nchw, dy.data(), true);
        Buf bx = buffer(eng, st, wpd.src_desc(), xd, tag::nchw, x.data(), true);
        Buf bdw = buffer(eng, st, wpd.diff_weights_desc(), wd, tag::oihw, dw.data(), false);
        run(dnnl::convolution_backward_weights(wpd),
            {{DNNL_ARG_DIFF_DST, bdy.prim}, {DNNL_ARG_SRC, bx.prim}, {DNNL_ARG_DIFF_WEIGHTS, bdw.prim}}, bdw,
            "bwd_weights", bench::Pass::bwdWeights, dw.data());
      }
    }
  }
}

} // namespace

int main(int argc, char **argv) {
  Args a = bench::parseArgs(argc, argv, "[gemm openblas|onednn | conv]");
  openblas_set_num_threads(a.threads);
  return bench::guarded("speed_peers", [&] {
    if (a.section == "gemm" && a.rest.size() == 1)
      gemm(a, a.rest[0]);
    else if (a.section == "conv")
      conv(a);
    else {
      std::fprintf(stderr, "speed_peers: unknown section '%s' or missing library\n", a.section.c_str());
      return 2;
    }
    return 0;
  });
}

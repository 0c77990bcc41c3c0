// See moe_layer_bench.h. The GPU part is compiled only when the CUDA backend is built in
// (SWITCHYARD_HAVE_CUDA, from sy_cuda_kernels); otherwise the command explains and exits 2.
#include "src/bench/moe_layer_bench.h"

#include <algorithm>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "src/core/error.h"

#if defined(SWITCHYARD_HAVE_CUDA)
#include <cuda_bf16.h>

#include <type_traits>
#include <vector>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/init.h"
#include "kernels/cuda/ops.h"
#include "src/model/cuda_moe.h"
#endif

namespace sy {

namespace {

void check_options(const MoeLayerBenchOptions& o) {
  auto positive = [](int v, const char* name) {
    if (v <= 0) throw UsageError(std::string("--") + name + " must be > 0");
  };
  positive(o.tokens, "tokens");
  positive(o.d, "d");
  positive(o.ffn, "ffn");
  positive(o.experts, "experts");
  positive(o.iters, "iters");
  if (o.top_k < 1 || o.top_k > o.experts) throw UsageError("--top-k must be in [1, --experts]");
  if (o.warmup < 0) throw UsageError("--warmup must be >= 0");
}

}  // namespace

#if !defined(SWITCHYARD_HAVE_CUDA)

MoeLayerBenchResult run_moe_layer_bench(const MoeLayerBenchOptions& opt) {
  check_options(opt);
  throw UsageError(
      "bench moe-layer needs the CUDA backend, and this switchyard was built without it "
      "(configure with -DSWITCHYARD_CUDA=ON on a machine with nvcc)");
}

#else

namespace {

template <class T>
MoeLayerBenchResult run_typed(const MoeLayerBenchOptions& o) {
  namespace cu = cuda;
  const int N = o.tokens, C = o.d, F = o.ffn, E = o.experts, K = o.top_k, A = N * K;
  MoeDims d;
  d.C = C;
  d.E = E;
  d.K = K;
  d.F = F;
  d.aux_scope = AuxScope::kMicroBatch;  // one routing group: no seq_len to pick
  d.aux_coeff = 1e-2;
  d.z_coeff = 1e-3;

  cu::Stream stream;
  cu::CublasHandle cublas(stream.get());
  cudaDeviceProp prop{};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));

  // fp32 master values from the SPEC init (std 0.02), converted to T; inputs ~ N(0, 1).
  auto param = [&](size_t n, uint64_t id, double std) {
    cu::DeviceBuffer<float> master(n);
    cu::init_normal(master.data(), o.seed, id, std, 0, n, stream.get());
    cu::DeviceBuffer<T> t(n);
    cu::convert(t.data(), master.data(), static_cast<long>(n), stream.get());
    return t;
  };
  const size_t ECF = static_cast<size_t>(E) * C * F;
  auto router = param(static_cast<size_t>(C) * E, 1, 0.02);
  auto w1 = param(ECF, 2, 0.02), w3 = param(ECF, 3, 0.02), w2 = param(ECF, 4, 0.02);
  auto m = param(static_cast<size_t>(N) * C, 5, 1.0);
  auto dout = param(static_cast<size_t>(N) * C, 6, 1e-3);
  cu::DeviceBuffer<T> out(static_cast<size_t>(N) * C), dm(static_cast<size_t>(N) * C);
  cu::DeviceBuffer<float> g_router(static_cast<size_t>(C) * E), g_w1(ECF), g_w3(ECF), g_w2(ECF);
  for (auto* g : {&g_router, &g_w1, &g_w3, &g_w2}) g->fill_bytes_async(0, stream.get());
  CudaMoeWeights<T> w{router.data(), nullptr, w1.data(), w3.data(), w2.data()};
  CudaMoeGrads g{g_router.data(), g_w1.data(), g_w3.data(), g_w2.data()};
  const LossScale scale{1.0 / N, 1.0};

  CudaMoeLayer<T> layer(d);
  cu::Event t0, t1;
  auto step = [&] {
    layer.forward(out.data(), m.data(), 1, N, w, scale, stream.get(), cublas.get());
    layer.backward(dm.data(), g, dout.data(), m.data(), w, scale, stream.get(), cublas.get());
  };
  for (int i = 0; i < o.warmup; ++i) step();
  t0.record(stream.get());
  for (int i = 0; i < o.iters; ++i) step();
  t1.record(stream.get());
  t1.sync();

  MoeLayerBenchResult r;
  r.device = prop.name;
  r.expert_flops = 18.0 * N * K * static_cast<double>(C) * F;
  r.layer_flops = r.expert_flops + 6.0 * N * static_cast<double>(C) * E;
  r.layer_ms = static_cast<double>(t1.ms_since(t0)) / o.iters;
  r.layer_tflops = r.layer_flops / (r.layer_ms * 1e-3) / 1e12;
  r.grouped_fallback = layer.grouped_fallback();
  const std::vector<int> rows = layer.expert_counts();
  r.min_rows = *std::min_element(rows.begin(), rows.end());
  r.max_rows = *std::max_element(rows.begin(), rows.end());

  // The 9 expert products of one step on the layer's routing: grouped, then dense over A rows.
  const size_t AC = static_cast<size_t>(A) * C, AF = static_cast<size_t>(A) * F;
  cu::DeviceBuffer<T> xs(AC), ys(AC), h1(AF), h3(AF), h(AF);
  for (auto* b : {&xs, &ys}) b->fill_bytes_async(0, stream.get());
  for (auto* b : {&h1, &h3, &h}) b->fill_bytes_async(0, stream.get());
  cu::GroupedGemm gg;
  using cu::Grad;
  auto grouped = [&](const std::vector<int>& rr) {
    gg.forward(h1.data(), xs.data(), w1.data(), rr, C, F, Grad::kAssign, cublas.get(),
               stream.get());
    gg.forward(h3.data(), xs.data(), w3.data(), rr, C, F, Grad::kAssign, cublas.get(),
               stream.get());
    gg.forward(ys.data(), h.data(), w2.data(), rr, F, C, Grad::kAssign, cublas.get(), stream.get());
    gg.backward_dx(h1.data(), ys.data(), w2.data(), rr, F, C, Grad::kAssign, cublas.get(),
                   stream.get());
    gg.backward_dw(g_w2.data(), h.data(), ys.data(), rr, F, C, cublas.get(), stream.get());
    gg.backward_dx(xs.data(), h1.data(), w1.data(), rr, C, F, Grad::kAssign, cublas.get(),
                   stream.get());
    gg.backward_dx(xs.data(), h3.data(), w3.data(), rr, C, F, Grad::kAccumulate, cublas.get(),
                   stream.get());
    gg.backward_dw(g_w1.data(), xs.data(), h1.data(), rr, C, F, cublas.get(), stream.get());
    gg.backward_dw(g_w3.data(), xs.data(), h3.data(), rr, C, F, cublas.get(), stream.get());
  };
  auto time_ms = [&](const auto& fn) {
    for (int i = 0; i < o.warmup; ++i) fn();
    t0.record(stream.get());
    for (int i = 0; i < o.iters; ++i) fn();
    t1.record(stream.get());
    t1.sync();
    return static_cast<double>(t1.ms_since(t0)) / o.iters;
  };
  r.experts_ms = time_ms([&] { grouped(rows); });
  // Dense ceiling: one "expert" holding all A rows, so the products are plain cuBLAS GEMMs of
  // the same FLOPs (the grouped API with one group would add its own overhead, so gemm()).
  r.dense_ms = time_ms([&] {
    cu::gemm<T, T>(cublas.get(), false, false, A, F, C, 1.0f, xs.data(), C, w1.data(), F, 0.0f,
                   h1.data(), F);
    cu::gemm<T, T>(cublas.get(), false, false, A, F, C, 1.0f, xs.data(), C, w3.data(), F, 0.0f,
                   h3.data(), F);
    cu::gemm<T, T>(cublas.get(), false, false, A, C, F, 1.0f, h.data(), F, w2.data(), C, 0.0f,
                   ys.data(), C);
    cu::gemm<T, T>(cublas.get(), false, true, A, F, C, 1.0f, ys.data(), C, w2.data(), C, 0.0f,
                   h1.data(), F);
    cu::gemm<T, float>(cublas.get(), true, false, F, C, A, 1.0f, h.data(), F, ys.data(), C, 1.0f,
                       g_w2.data(), C);
    cu::gemm<T, T>(cublas.get(), false, true, A, C, F, 1.0f, h1.data(), F, w1.data(), F, 0.0f,
                   xs.data(), C);
    cu::gemm<T, T>(cublas.get(), false, true, A, C, F, 1.0f, h3.data(), F, w3.data(), F, 1.0f,
                   xs.data(), C);
    cu::gemm<T, float>(cublas.get(), true, false, C, F, A, 1.0f, xs.data(), C, h1.data(), F, 1.0f,
                       g_w1.data(), F);
    cu::gemm<T, float>(cublas.get(), true, false, C, F, A, 1.0f, xs.data(), C, h3.data(), F, 1.0f,
                       g_w3.data(), F);
  });
  r.experts_tflops = r.expert_flops / (r.experts_ms * 1e-3) / 1e12;
  r.dense_tflops = r.expert_flops / (r.dense_ms * 1e-3) / 1e12;
  r.grouped_fallback = r.grouped_fallback || gg.used_fallback();
  return r;
}

}  // namespace

MoeLayerBenchResult run_moe_layer_bench(const MoeLayerBenchOptions& opt) {
  check_options(opt);
  std::string reason;
  if (cuda::device_count(&reason) == 0)
    throw UsageError("bench moe-layer needs a CUDA GPU, and none is usable here: " + reason);
  return opt.precision == Precision::kBf16 ? run_typed<cuda::bf16>(opt) : run_typed<float>(opt);
}

#endif  // SWITCHYARD_HAVE_CUDA

void print_moe_layer_bench(const MoeLayerBenchOptions& o, const MoeLayerBenchResult& r,
                           std::ostream& os) {
  os << "# moe-layer  impl=switchyard-cuda  device=\"" << r.device << "\"  tokens=" << o.tokens
     << " d=" << o.d << " ffn=" << o.ffn << " experts=" << o.experts << " top_k=" << o.top_k
     << " precision=" << (o.precision == Precision::kBf16 ? "bf16" : "fp32")
     << "  rows/expert=" << r.min_rows << ".." << r.max_rows
     << (r.grouped_fallback ? "  (grouped GEMM fell back to one call per expert)" : "") << "\n";
  os << std::left << std::setw(24) << "# impl" << std::setw(22) << "what" << std::right
     << std::setw(10) << "ms" << std::setw(10) << "TFLOP/s" << std::setw(12) << "vs_dense"
     << "\n";
  auto row = [&](const char* what, double ms, double tf) {
    os << std::left << std::setw(24) << "switchyard-cuda" << std::setw(22) << what << std::right
       << std::fixed << std::setprecision(3) << std::setw(10) << ms << std::setprecision(1)
       << std::setw(10) << tf << std::setprecision(3) << std::setw(12)
       << (r.dense_tflops > 0 ? tf / r.dense_tflops : 0.0) << "\n";
  };
  row("layer_fwd_bwd", r.layer_ms, r.layer_tflops);
  row("expert_gemms", r.experts_ms, r.experts_tflops);
  row("dense_ceiling", r.dense_ms, r.dense_tflops);
}

}  // namespace sy

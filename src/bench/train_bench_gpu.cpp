// `switchyard bench train` with `device: cuda` (train_bench.h): the GPU trainer's step (CudaModel
// on one GPU, train.precision), the device memory it takes, and the cuBLAS ceiling on the
// model's own matrix shapes. Compiled to a clear refusal (exit 2) without the CUDA backend.
#include <algorithm>
#include <ostream>
#include <string>
#include <vector>

#include "src/bench/gemm_ceiling.h"
#include "src/bench/train_bench.h"
#include "src/bench/train_bench_steps.h"
#include "src/core/error.h"
#include "src/data/tokens.h"
#include "src/optim/optim.h"
#include "src/train/train_gpu.h"

#if defined(SWITCHYARD_HAVE_CUDA)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/init.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/phase_timer.h"
#include "src/model/cuda_model.h"
#include "src/model/step_phases.h"
#endif

namespace sy::bench_detail {

#if !defined(SWITCHYARD_HAVE_CUDA)

void run_gpu_train_bench(const Config& cfg, const TrainBenchOptions&, TrainBenchResult&,
                         std::ostream&) {
  check_gpu_run(cfg, 1);  // throws: this build has no CUDA backend
  throw UsageError("bench train: device: cuda needs the CUDA backend");
}

#else

namespace {

// The device's used memory (total - free) at its highest sample, and the free memory before the
// run allocated anything: cudaMemGetInfo sees every allocation (cudaMalloc, cuBLAS workspaces,
// the context), not only the model's.
class MemoryHighWater {
 public:
  MemoryHighWater() {
    CUDA_CHECK(cudaMemGetInfo(&free_before_, &total_));
    min_free_ = free_before_;
  }
  void sample() {
    size_t free = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free, &total));
    min_free_ = std::min(min_free_, free);
  }
  double peak_used() const { return static_cast<double>(total_ - min_free_); }
  double peak_ours() const { return static_cast<double>(free_before_ - min_free_); }
  double total() const { return static_cast<double>(total_); }

 private:
  size_t free_before_ = 0, total_ = 0, min_free_ = 0;
};

// One shape's cuBLAS rate: random operands in T (weight gradients written in fp32, as the model
// accumulates them), warm-up, then the median over batches of 10 calls timed with events for at
// least min_seconds.
template <class T>
double time_gemm_shape(const GemmShape& s, double min_seconds, cudaStream_t stream,
                       cublasHandle_t cublas) {
  namespace cu = cuda;
  const size_t a_n = static_cast<size_t>(s.M) * s.K, b_n = static_cast<size_t>(s.K) * s.N;
  const size_t c_n = static_cast<size_t>(s.M) * s.N;
  cu::DeviceBuffer<float> master(std::max(a_n, b_n));
  cu::DeviceBuffer<T> a(a_n), b(b_n);
  cu::init_normal(master.data(), 7, 1, 1.0, 0, a_n, stream);
  cu::convert(a.data(), master.data(), static_cast<long>(a_n), stream);
  cu::init_normal(master.data(), 7, 2, 1.0, 0, b_n, stream);
  cu::convert(b.data(), master.data(), static_cast<long>(b_n), stream);
  const bool weight_grad = s.trans_a;  // x^T dy: the fp32 master gradient in the model
  cu::DeviceBuffer<float> c32(weight_grad ? c_n : 0);
  cu::DeviceBuffer<T> ct(weight_grad ? 0 : c_n);
  const int lda = s.trans_a ? s.M : s.K, ldb = s.trans_b ? s.K : s.N;
  auto call = [&] {
    if (weight_grad)
      cu::gemm<T, float>(cublas, s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, a.data(), lda, b.data(),
                         ldb, 0.0f, c32.data(), s.N);
    else
      cu::gemm<T, T>(cublas, s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, a.data(), lda, b.data(),
                     ldb, 0.0f, ct.data(), s.N);
  };
  constexpr int kCallsPerBatch = 10;
  cu::Event t0, t1;
  for (int i = 0; i < 3; ++i) call();
  std::vector<double> per_call_s;
  double spent = 0;
  while (per_call_s.size() < 5 || spent < min_seconds) {
    t0.record(stream);
    for (int i = 0; i < kCallsPerBatch; ++i) call();
    t1.record(stream);
    t1.sync();
    const double batch_s = static_cast<double>(t1.ms_since(t0)) * 1e-3;
    per_call_s.push_back(batch_s / kCallsPerBatch);
    spent += batch_s;
  }
  return median(per_call_s);
}

std::vector<GemmTiming> time_gemms_cuda(const std::vector<GemmShape>& shapes, Precision precision,
                                        double min_seconds) {
  cuda::Stream stream;
  cuda::CublasHandle cublas(stream.get());
  std::vector<GemmTiming> out;
  for (const GemmShape& s : shapes) {
    SY_CHECK(s.M > 0 && s.N > 0 && s.K > 0, "empty GEMM shape " << s.what);
    GemmTiming t;
    t.shape = s;
    t.threads = 1;  // one device: the threaded and per-core columns are the same figure
    t.threaded_s = precision == Precision::kBf16
                       ? time_gemm_shape<cuda::bf16>(s, min_seconds, stream.get(), cublas.get())
                       : time_gemm_shape<float>(s, min_seconds, stream.get(), cublas.get());
    t.per_core_s = t.threaded_s;
    out.push_back(t);
  }
  return out;
}

}  // namespace

void run_gpu_train_bench(const Config& cfg, const TrainBenchOptions& opt, TrainBenchResult& r,
                         std::ostream& log) {
  check_gpu_run(cfg, 1);  // parallel.etp, zero1: what the GPU trainer refuses, it refuses here
  std::string reason;
  if (cuda::device_count(&reason) == 0)
    throw UsageError("bench train: device: cuda needs a usable CUDA GPU: " + reason);
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  r.device = prop.name;
  r.peak = gpu_bf16_peak(r.device);
  if (opt.peak_tflops > 0) {
    r.peak.flops = opt.peak_tflops * 1e12;
    r.peak.source = "--peak-tflops " + std::to_string(opt.peak_tflops);
  }

  MemoryHighWater mem;
  // as the trainer: a config the GPU cannot hold is exit 2 naming the largest term, not OOM
  if (const std::string w = check_current_gpu_fits(cfg, 1, r.device, 1); !w.empty())
    log << "warning: " << w << "\n";
  {  // the model is freed before the ceiling and the PyTorch peer take the device
    // The tokens stay in the file, as the trainer's (the memory check counts no copy).
    const TokenSource data =
        open_token_file(cfg.data.path, cfg.model.vocab_size, cfg.model.seq_len, /*scan=*/true);
    log << "device: " << r.device << "; initialising the model on it\n" << std::flush;
    CudaModel model(cfg);
    model.init_params(cfg.run.seed);
    // After the timed steps, kPhaseSteps more with the model's parts marked by CUDA events (so
    // the marks cannot slow the timed ones).
    constexpr int64_t kPhaseSteps = 2;
    cuda::PhaseTimer timer(static_cast<int>(StepPhase::kCount));
    bool marking = false;
    auto settle = [&] {
      if (marking) timer.mark(static_cast<int>(StepPhase::kHostWait), model.stream());
      CUDA_CHECK(cudaStreamSynchronize(model.stream()));
      mem.sample();
    };
    auto on_extra = [&](bool starting) {
      marking = starting;
      if (starting) {
        log << "marking the parts of " << kPhaseSteps << " more steps with CUDA events\n"
            << std::flush;
        model.set_phase_timer(&timer);
        return;
      }
      timer.mark(-1, model.stream());
      timer.collect();
      model.set_phase_timer(nullptr);
      r.phase_steps = kPhaseSteps;
      for (double s : timer.seconds()) r.phase_s.push_back(s / kPhaseSteps);
    };
    time_train_steps(
        cfg, data, opt, model,
        [&](int64_t step) {
          model.optimizer_step(learning_rate(cfg.train, step), cfg.train.grad_clip,
                               cfg.train.weight_decay);
        },
        settle, r, log, kPhaseSteps, on_extra);
  }
  r.peak_mem_bytes = mem.peak_used();
  r.model_mem_bytes = mem.peak_ours();
  r.device_mem_bytes = mem.total();
  r.mfu = model_flops_utilization(r.flops.total(), r.step_s, r.peak.flops);

  log << "timing cuBLAS on the model's shapes\n" << std::flush;
  r.gemms = time_gemms_cuda(model_gemm_shapes(cfg), cfg.train.precision, opt.gemm_seconds);
}

#endif  // SWITCHYARD_HAVE_CUDA

}  // namespace sy::bench_detail

// `device: cuda`: the steps of SPEC section 3's training loop (run_training, train_loop.h) with
// CudaModel (parameters, gradients and AdamW moments on the device, in the CPU rank's flat
// layout), on one GPU or over one GPU per rank, data-, tensor- and expert-parallel:
//
//   - device choice: local rank (an MPI_COMM_TYPE_SHARED split) % the visible GPU count, so a
//     node's ranks that all see every GPU take one each and ranks bound to one GPU per task
//     (each sees one) take theirs; two ranks on one physical GPU (compared by UUID) are refused
//     (NCCL needs a GPU per rank; comm/gpu_binding.h);
//   - the work split: each rank processes its dp share of the global batch exactly as the CPU
//     trainer does (same BatchLoader, same sequence indices), so a 2-GPU run sees the sequences
//     of a 1-GPU run, in other micro-batches;
//   - tensor parallelism (parallel.tp > 1): attention heads and shared experts split over tp,
//     activations all-reduced with NCCL (src/model/cuda_model.h);
//   - expert parallelism (parallel.ep > 1): each rank holds E/ep experts and its MoE layers move
//     tokens through comm::GpuExchange (NCCL inside a node, MPI across nodes, the hierarchical
//     route of comm/route_plan.h);
//   - gradients: summed by NCCL all-reduces (a few large buckets, on the model's stream,
//     bounded wait) before the global-norm clip and AdamW: the router's tp-partial gradients
//     over tp, then the dense group over dp and the expert group over edp (the parameter
//     table's two groups; edp is every rank at tp > 1 and ep = 1: each tp rank differentiates
//     its own slice of the tokens through the replicated experts, gpu_expert_sum_group); the norm
//     adds the other tp ranks' dense sums and the other EP ranks' expert sums. NCCL gives every
//     rank the same bits, so every replica applies the same update and the parameters stay
//     identical;
//   - loss, routing counts (the router-bias sign rule needs the global ones) and val_loss are
//     summed over the ranks with the CPU trainer's MPI collectives; evaluation is sharded over
//     the ranks as on the CPU; rank 0 writes metrics.jsonl and the log;
//   - checkpoints, --resume and preemption (SIGUSR1/SIGTERM: checkpoint, exit 75) go through the
//     CPU trainer's code (train_ckpt.h) with the device buffers downloaded to host vectors: the
//     same files, so a GPU checkpoint resumes on the CPU and the other way round.
//
// Not done on the GPU path (refused by check_gpu_run, naming the key): expert tensor parallelism
// (parallel.etp > 1), ZeRO-1, an expert placement file (parallel.expert_placement) and a top-k
// past kGpuMaxTopK. The expert exchange is always hierarchical (parallel.a2a and
// parallel.internode do not apply: NCCL inside a node, MPI between nodes).
#include "src/train/train_gpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "comm/collectives.h"
#include "comm/gpu_binding.h"
#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/core/error.h"
#include "src/data/loader.h"
#include "src/optim/optim.h"
#include "src/train/coactivation.h"
#include "src/train/eval_sample.h"
#include "src/train/flops.h"
#include "src/train/loop_common.h"
#include "src/train/metrics.h"
#include "src/train/progress.h"
#include "src/train/rank_memory.h"
#include "src/train/report.h"
#include "src/train/signals.h"
#include "src/train/train_ckpt.h"
#include "src/train/train_loop.h"

#if defined(SWITCHYARD_HAVE_CUDA)
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/moe_ops.h"
#include "src/model/cuda_model.h"
static_assert(sy::kGpuMaxTopK == sy::cuda::kMaxTopK, "check_gpu_run's moe.top_k bound");
#endif
#if defined(SWITCHYARD_HAVE_NCCL)
#include "comm/gpu_exchange.h"
#include "comm/nccl.h"
#endif

namespace sy {

void check_gpu_run(const Config& cfg, int world_size) {
  if (cfg.device != Device::kCuda) return;
  if (cfg.parallel.etp != 1)
    throw UsageError("parallel.etp=" + std::to_string(cfg.parallel.etp) +
                     ": device: cuda does not split the experts' hidden dimension (parallel.etp "
                     "must be 1; data, tensor and expert parallelism run on GPUs, expert tensor "
                     "parallelism with device: cpu)");
  if (cfg.parallel.zero1)
    throw UsageError(
        "parallel.zero1=true is not supported with device: cuda (every GPU keeps the whole AdamW "
        "state); set parallel.zero1=false");
  if (!cfg.parallel.expert_placement.empty())
    throw UsageError("parallel.expert_placement=" + cfg.parallel.expert_placement +
                     ": device: cuda places expert e on EP rank e / (E / ep) only; remove the key "
                     "or train with device: cpu");
  if (cfg.moe.top_k > kGpuMaxTopK)
    throw UsageError("moe.top_k=" + std::to_string(cfg.moe.top_k) +
                     ": device: cuda routes a token to at most " + std::to_string(kGpuMaxTopK) +
                     " experts (its router keeps them in registers); lower moe.top_k or train "
                     "with device: cpu");
#if !defined(SWITCHYARD_HAVE_CUDA)
  (void)world_size;
  throw UsageError(
      "device: cuda, but this switchyard was built without the CUDA backend "
      "(configure with -DSWITCHYARD_CUDA=ON)");
#elif !defined(SWITCHYARD_HAVE_NCCL)
  if (world_size != 1)
    throw UsageError("device: cuda on " + std::to_string(world_size) +
                     " ranks needs NCCL, and this switchyard was built without it (install NCCL "
                     "and configure with -DSWITCHYARD_CUDA=ON)");
#else
  (void)world_size;
#endif
}

const comm::Comm& gpu_expert_sum_group(const comm::ProcessGroups& g) {
  int cmp = MPI_UNEQUAL;
  MPI_CHECK(MPI_Comm_compare(g.dp().get(), g.edp().get(), &cmp));
  return cmp == MPI_IDENT || cmp == MPI_CONGRUENT ? g.dp() : g.edp();
}

#if !defined(SWITCHYARD_HAVE_CUDA)

struct GpuRun {};

TrainSummary train_on_gpu(const GpuRunArgs& args, std::ostream&, std::shared_ptr<GpuRun>&) {
  check_gpu_run(args.cfg, 1);  // throws: no CUDA backend in this build
  return {};
}

#else

struct GpuRun {
  comm::Comm node;  // the ranks sharing this node (MPI_COMM_TYPE_SHARED): the device choice
  int device = 0;
#if defined(SWITCHYARD_HAVE_NCCL)
  std::unique_ptr<comm::GpuExchange> exchange;  // the EP group's, when ep > 1
  std::unique_ptr<comm::NcclComm> dp_nccl;      // over the dp group, when dp > 1
  std::unique_ptr<comm::NcclComm> tp_nccl;      // over the tp group, when tp > 1
  std::unique_ptr<comm::NcclComm> edp_nccl;     // over edp, when edp > 1 and it is not dp
  comm::NcclComm* expert_nccl = nullptr;        // the expert sums: dp_nccl or edp_nccl
#endif
  std::unique_ptr<CudaModel> model;             // last: destroyed before the exchange it uses
};

std::string check_current_gpu_fits(const Config& cfg, int world_size, const std::string& gpu,
                                   int64_t node_ranks) {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  MemoryBudget budget{static_cast<double>(free_bytes), "free memory of " + gpu, 0, node_ranks};
  budget.library_bytes = static_cast<double>(cuda::CublasHandle::kWorkspaceBytes);
  return check_memory_fits(cfg, world_size, budget, MemorySide::kGpuDevice);
}

namespace {

using Clock = std::chrono::steady_clock;

// Device memory in use on the current GPU (total - free): its peak is what metrics report.
int64_t device_bytes_in_use() {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<int64_t>(total_bytes - free_bytes);
}

// Picks this rank's GPU (comm/gpu_binding.h: local rank % the GPUs it sees, one physical GPU per
// rank of a node, so SLURM's per-task binding works) and makes it current. Collective over the
// world: every rank agrees on a UsageError (a rank without a GPU, two ranks on one GPU); every
// wait bounded by the watchdog.
void select_device(GpuRun& run, const comm::Comm& world, comm::Watchdog* wd) {
  MPI_Comm node = MPI_COMM_NULL;
  std::string reason;
  const int n = cuda::device_count(&reason);
  comm::GpuBinding b;
  {
    comm::WatchdogScope scope(wd, "the other ranks of this node to pick their GPUs (start-up)");
    MPI_CHECK(
        MPI_Comm_split_type(world.get(), MPI_COMM_TYPE_SHARED, world.rank(), MPI_INFO_NULL, &node));
    run.node = comm::Comm(node);
    b = comm::bind_gpu_per_rank(run.node, n, cuda::device_uuid, reason);
  }
  agree_on_usage(world, wd, [&] {
    if (!b.error.empty()) throw UsageError("device: cuda: " + b.error);
    run.device = b.device;
  });
  CUDA_CHECK(cudaSetDevice(run.device));
}

#if defined(SWITCHYARD_HAVE_NCCL)
// grads[range] (=) their sum over `nccl`'s ranks: NCCL all-reduces of at most kBucketElems
// elements (a few large buckets: one for the models we test), queued on the model's stream after
// backward(), then a bounded wait for them, so that the optimizer step reads the sums. Every rank
// receives the same bits (each element is reduced once, then broadcast).
void all_reduce_grads(CudaModel& model, ParamGroup group, comm::NcclComm& nccl, int64_t step) {
  constexpr size_t kBucketElems = size_t{32} << 20;  // 128 MiB of fp32
  const ParamTable::Range range = model.table().group_range(group);
  float* grads = model.device_grads() + range.first;
  for (size_t first = 0; first < range.size; first += kBucketElems)
    nccl.all_reduce_sum(grads + first, grads + first, std::min(kBucketElems, range.size - first),
                        comm::nccl_type<float>(), model.stream());
  nccl.wait(model.stream(), std::string("the ") +
                                (group == ParamGroup::kDense ? "dense" : "expert") +
                                " gradient all-reduce of step " + std::to_string(step));
}
#endif

#if defined(SWITCHYARD_HAVE_NCCL)
// The router gradients (TpMode::kPartialGrad: each tp rank's token slice) (=) their sum over tp,
// before the data-parallel reduction.
void sum_router_grads_over_tp(CudaModel& model, comm::NcclComm& tp, int64_t step) {
  for (const ParamSpec& spec : model.table().specs())
    if (spec.tp_mode == TpMode::kPartialGrad) {
      float* grads = model.device_grads() + spec.offset;
      tp.all_reduce_sum(grads, grads, spec.numel, comm::nccl_type<float>(), model.stream());
    }
  tp.wait(model.stream(), "the router gradient all-reduce over tp of step " + std::to_string(step));
}
#endif

// This rank's tensors brought to the host for a checkpoint (params, m, v in the table's layout).
struct HostTensors {
  std::vector<float> params, m, v;
  std::vector<ckpt::TensorRef> refs(const ParamTable& table) {
    return training_refs(table, params.data(), m.data(), v.data());
  }
};

// The GPU model's step: CudaModel with its fused AdamW, the gradients summed by NCCL.
class GpuSteps final : public StepBackend {
 public:
  GpuSteps(const Config& cfg, int ep, GpuRun& run, const CkptTarget& ckpt,
           CudaModel::TotalSq total_sq)
      : cfg_(cfg),
        ep_(ep),
        run_(run),
        model_(*run.model),
        ckpt_(ckpt),
        total_sq_(std::move(total_sq)) {}

  ResumeResult resume(const std::string& resume, std::ostream& log) override {
    const ResumeResult resumed = resume_training(ckpt_, resume, log, [&] {
      const size_t P = model_.table().total_numel();
      host_.params.assign(P, 0.0f);
      host_.m.assign(P, 0.0f);
      host_.v.assign(P, 0.0f);
      return host_.refs(model_.table());
    });
    if (resumed.resumed) {
      model_.upload_params(host_.params);
      model_.upload_moments(host_.m, host_.v);
      model_.set_step_count(resumed.state.optim_step);
    }
    return resumed;
  }
  void begin_step() override {
#if defined(SWITCHYARD_HAVE_NCCL)
    if (run_.exchange) run_.exchange->reset_stats();
#endif
    model_.zero_grads();
  }
  StepTotals accumulate(BatchShare& share, int64_t step, CoactivationCounter& coact) override {
    return share.accumulate(model_, step, [&] {  // after each micro-batch's forward
      for (int l = 0; l < static_cast<int>(cfg_.model.n_layers); ++l) {
        const std::vector<int32_t>& topk = model_.topk(l);
        coact.add_layer(l, topk.data(), static_cast<int64_t>(topk.size()) / cfg_.moe.top_k);
      }
    });
  }
  std::optional<double> reduce_gradients([[maybe_unused]] int64_t done) override {
#if defined(SWITCHYARD_HAVE_NCCL)
    if (run_.tp_nccl) sum_router_grads_over_tp(model_, *run_.tp_nccl, done);
    if (run_.dp_nccl) all_reduce_grads(model_, ParamGroup::kDense, *run_.dp_nccl, done);
    if (run_.expert_nccl)  // over edp, as the CPU optimizer sums them
      all_reduce_grads(model_, ParamGroup::kExpert, *run_.expert_nccl, done);
#endif
    return std::nullopt;  // optimizer_step computes the norm
  }
  double update(double lr, std::optional<double>, const StepTotals& tot) override {
    const double norm =
        model_.optimizer_step(lr, cfg_.train.grad_clip, cfg_.train.weight_decay, total_sq_);
    if (std::isfinite(norm) && cfg_.moe.bias_update_rate > 0)
      model_.update_router_biases(tot.selected, cfg_.moe.bias_update_rate);
    return norm;
  }
  // optimizer_step() queues AdamW and returns; update_overflow() waits for it, so the step's
  // time ends when the GPU is done (the next step would wait for that work anyway). Then the
  // memory in use is sampled, every step.
  int64_t update_overflow() override {
    const int64_t overflowed = model_.update_overflow();
    device_peak_ = std::max(device_peak_, device_bytes_in_use());
    return overflowed;
  }
  const comm::ExchangeStats* exchange_stats() const override {
#if defined(SWITCHYARD_HAVE_NCCL)
    if (run_.exchange) return &run_.exchange->stats();
#endif
    return nullptr;
  }
  int64_t peak_bytes() override {
    return device_peak_;
  }

  double forward_lm(const int32_t* tokens, int n) override {
    LossScale s;
    s.token_weight = 1.0;  // sum of per-token losses; evaluate divides once
    if (n > 0) return model_.forward(tokens, n, s).lm;
    // An empty share: the expert exchange is collective, so take part with one window of token
    // 0 and drop its loss (tokens are routed independently: the others' are unchanged).
    if (ep_ > 1) {
      const std::vector<int32_t> idle(static_cast<size_t>(cfg_.model.seq_len) + 1, 0);
      model_.forward(idle.data(), 1, s);
    }
    return 0.0;
  }
  const float* host_params() override {
    model_.download_params(host_.params);
    return host_.params.data();
  }
  const ParamTable& table() const override {
    return model_.table();
  }
  int64_t optim_step() const override {
    return model_.step_count();
  }
  ckpt::SaveResult save(const ckpt::TrainState& state) override {
    model_.download_params(host_.params);
    model_.download_moments(host_.m, host_.v);
    return save_training_checkpoint(ckpt_, state, host_.refs(model_.table()));
  }

 private:
  const Config& cfg_;             // resolved
  int ep_;                        // parallel.ep
  [[maybe_unused]] GpuRun& run_;  // its NCCL communicators and exchange (a build with NCCL)
  CudaModel& model_;
  CkptTarget ckpt_;
  CudaModel::TotalSq total_sq_;
  HostTensors host_;  // this rank's tensors on the host: checkpoints, samples, the final gather
  int64_t device_peak_ = 0;
};

}  // namespace

TrainSummary train_on_gpu(const GpuRunArgs& args, std::ostream& log,
                          std::shared_ptr<GpuRun>& keep) {
  const Config& cfg = args.cfg;
  const TokenSource& data = args.data;
  const comm::ProcessGroups& g = args.groups;
  const comm::Layout& lay = g.layout();
  comm::Watchdog* wd = args.watchdog;
  const auto t_start = Clock::now();
  SY_CHECK(lay.etp == 1, "train_on_gpu: check_gpu_run first");

  keep = std::make_shared<GpuRun>();
  GpuRun& run = *keep;
  // Bounded as the CPU trainer's start-up: a rank whose GPU context, NCCL id or exchange set-up
  // stalls must not leave the others waiting in MPI for ever (NCCL's own set-up waits are bounded
  // by parallel.timeout_s besides). Inner scopes put this wait back, with a fresh clock.
  std::optional<comm::WatchdogScope> startup(
      std::in_place, wd,
      "start-up: every rank setting up its GPU, NCCL communicators, expert exchange and model");
  select_device(run, g.world(), wd);
  comm::GpuExchange* exchange = nullptr;
  comm::NcclComm* tp = nullptr;
#if defined(SWITCHYARD_HAVE_NCCL)
  const double timeout_s = cfg.parallel.timeout_s;  // bounds each NCCL set-up and call
  if (lay.dp > 1)
    run.dp_nccl = std::make_unique<comm::NcclComm>(g.dp().get(), timeout_s, "the dp group");
  if (lay.tp > 1) {
    run.tp_nccl = std::make_unique<comm::NcclComm>(g.tp().get(), timeout_s, "the tp group");
    tp = run.tp_nccl.get();
  }
  if (lay.ep > 1) {
    run.exchange = std::make_unique<comm::GpuExchange>(g.ep().get(), ep_node_of_rank(lay),
                                                       static_cast<int>(cfg.moe.num_experts),
                                                       cfg.parallel.timeout_s, wd);
    exchange = run.exchange.get();
  }
  if (lay.edp > 1) {
    if (&gpu_expert_sum_group(g) == &g.dp()) {
      run.expert_nccl = run.dp_nccl.get();  // the same ranks: dp = edp > 1
    } else {
      run.edp_nccl = std::make_unique<comm::NcclComm>(g.edp().get(), timeout_s, "the edp group");
      run.expert_nccl = run.edp_nccl.get();
    }
  }
#endif
  // After the NCCL communicators are created (what they allocate is then out of the GPU's free
  // memory; peers' buffers come at the first call), before the model allocates.
  std::string memory_warning;
  agree_on_usage(g.world(), wd, [&] {
    memory_warning = check_current_gpu_fits(cfg, lay.world_size,
                                            "GPU " + std::to_string(run.device), run.node.size());
  });
  if (!memory_warning.empty()) log << "warning: " << memory_warning << "\n";
  // cfg is the trainer's resolved config (route_groups a number)
  run.model = std::make_unique<CudaModel>(cfg, shard_layout(lay), exchange, tp);
  CudaModel& model = *run.model;
  model.init_params(cfg.run.seed);
  startup.reset();
  // The squared global gradient norm: the dense group is the same on the dp ranks (all-reduced
  // over dp) and split over tp (each parameter counted by one tp rank), the expert group is the
  // same on the edp ranks and split over ep.
  const CudaModel::TotalSq total_sq = [&](double dense_sq, double expert_sq) {
    if (lay.tp > 1)
      comm::allreduce_sum(std::span<double>(&dense_sq, 1), g.tp(), wd, "the dense gradient norm");
    if (lay.ep > 1)
      comm::allreduce_sum(std::span<double>(&expert_sq, 1), g.ep(), wd, "the expert gradient norm");
    return dense_sq + expert_sq;
  };
  GpuSteps steps(cfg, lay.ep, run,
                 CkptTarget{cfg, g.world().get(),
                            ckpt::layout_string(lay.dp, lay.tp, lay.ep, lay.etp), &data, wd},
                 total_sq);

  std::ostringstream device_line;
  device_line << "device: cuda (" << to_string(cfg.train.precision) << "), " << lay.world_size
              << (lay.world_size > 1 ? " GPUs, gradients all-reduced with NCCL" : " GPU")
              << " (rank 0 on GPU " << run.device << ")\n";
#if defined(SWITCHYARD_HAVE_NCCL)
  if (run.exchange) device_line << "expert all-to-all: " << run.exchange->describe() << "\n";
#endif
  return run_training(TrainLoopArgs{args.user_cfg, cfg, args.data, g, wd, args.options,
                                    args.spans_nodes, device_line.str(), "", t_start},
                      steps, log);
}

#endif  // SWITCHYARD_HAVE_CUDA

}  // namespace sy

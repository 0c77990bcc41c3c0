#include "src/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <thread>
#include <vector>

#include "comm/alltoall.h"
#include "comm/collectives.h"
#include "comm/groups.h"
#include "comm/watchdog.h"
#include "kernels/cpu/gemm.h"
#include "src/core/error.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"
#include "src/model/init.h"
#include "src/model/model.h"
#include "src/optim/distributed.h"
#include "src/optim/optim.h"
#include "src/placement/placement.h"
#include "src/train/coactivation.h"
#include "src/train/eval_sample.h"
#include "src/train/flops.h"
#include "src/train/loop_common.h"
#include "src/train/metrics.h"
#include "src/train/progress.h"
#include "src/train/rank_memory.h"
#include "src/train/report.h"
#include "src/train/run_dirs.h"
#include "src/train/signals.h"
#include "src/train/train_ckpt.h"
#include "src/train/train_gpu.h"
#include "src/train/train_loop.h"

namespace sy {

namespace {

using Clock = std::chrono::steady_clock;

// Everything one rank needs, built collectively in a fixed order.
struct Runtime {
  comm::Comm world;
  std::unique_ptr<comm::ProcessGroups> groups;
  std::unique_ptr<comm::Watchdog> watchdog;
  std::unique_ptr<comm::TokenExchange> exchange;
  std::unique_ptr<Model<float>> model;
  std::unique_ptr<DistributedOptimizer> opt;
  std::shared_ptr<GpuRun> gpu;  // device: cuda
};

std::unique_ptr<comm::TokenExchange> make_expert_exchange(const Config& cfg,
                                                          const comm::ProcessGroups& g,
                                                          comm::Watchdog* wd) {
  const comm::Layout& l = g.layout();
  if (l.ep == 1) return nullptr;
  comm::ExchangeOptions o;
  o.ep_comm = g.ep().get();
  o.num_experts = static_cast<int>(cfg.moe.num_experts);
  o.watchdog = wd;
  o.node_of_ep_rank = ep_node_of_rank(l);
  // cfg is resolved (resolve_a2a): one algorithm for every EP group of the run.
  SY_CHECK(cfg.parallel.a2a != A2aKind::kAuto, "parallel.a2a is not resolved for the layout");
  o.algo = cfg.parallel.a2a == A2aKind::kHierarchical ? comm::A2aAlgo::kHierarchical
                                                      : comm::A2aAlgo::kFlat;
  o.internode =
      cfg.parallel.internode == InternodeKind::kUcx ? comm::Internode::kUcx : comm::Internode::kMpi;
  return comm::make_exchange(o);
}

// The CPU model's step: Model<float> with the DistributedOptimizer (gradient sums over dp and
// edp, ZeRO-1 when set), the expert exchange of comm/.
class CpuSteps final : public StepBackend {
 public:
  CpuSteps(const Config& cfg, const CkptContext& ckpt, comm::TokenExchange* exchange)
      : cfg_(cfg), ckpt_(ckpt), model_(ckpt.model), opt_(ckpt.opt), exchange_(exchange) {}

  ResumeResult resume(const std::string& resume, std::ostream& log) override {
    return resume_training(ckpt_, resume, log);
  }
  void begin_step() override {
    if (exchange_) exchange_->reset_stats();
    model_.zero_grads();
  }
  StepTotals accumulate(BatchShare& share, int64_t step, CoactivationCounter& coact) override {
    return share.accumulate(model_, step, [&] { coact.add(model_); });
  }
  std::optional<double> reduce_gradients(int64_t) override {
    return opt_.reduce_gradients(model_.grads.data());
  }
  double update(double lr, std::optional<double> norm, const StepTotals& tot) override {
    overflowed_ = opt_.step(model_.params.data(), model_.grads.data(), lr,
                            clip_factor(*norm, cfg_.train.grad_clip));
    const int L = static_cast<int>(cfg_.model.n_layers), E = static_cast<int>(cfg_.moe.num_experts);
    if (cfg_.moe.bias_update_rate > 0)
      for (int l = 0; l < L; ++l)
        overflowed_ += update_router_bias(model_.param(layer_param_name(l, "moe/bias")),
                                          tot.selected.data() + static_cast<size_t>(l) * E, E,
                                          cfg_.moe.bias_update_rate);
    return *norm;
  }
  int64_t update_overflow() override { return overflowed_; }
  const comm::ExchangeStats* exchange_stats() const override {
    return exchange_ ? &exchange_->stats() : nullptr;
  }
  int64_t peak_bytes() override { return peak_rss_bytes(); }

  double forward_lm(const int32_t* tokens, int n) override {
    LossScale s;
    s.token_weight = 1.0;  // sum of per-token losses; evaluate divides once
    return model_.forward(tokens, n, s).lm;
  }
  const float* host_params() override { return model_.params.data(); }
  const ParamTable& table() const override { return model_.table(); }
  int64_t optim_step() const override { return opt_.step_count(); }
  ckpt::SaveResult save(const ckpt::TrainState& state) override {
    return save_training_checkpoint(ckpt_, state);
  }

 private:
  const Config& cfg_;
  CkptContext ckpt_;
  Model<float>& model_;
  DistributedOptimizer& opt_;
  comm::TokenExchange* exchange_;
  int64_t overflowed_ = 0;
};

TrainSummary train_impl(Runtime& rt, const Config& cfg, std::ostream& log_all,
                        const TrainOptions& options) {
  const auto t_start = Clock::now();
  const int64_t T = cfg.model.seq_len, GB = cfg.train.global_batch, MB = cfg.train.micro_batch;
  const int E = static_cast<int>(cfg.moe.num_experts);
  const bool rank0 = rt.world.rank() == 0;
  std::ostream null_log(nullptr);
  std::ostream& log = rank0 ? log_all : null_log;

  comm::Watchdog* wd = rt.watchdog.get();  // bounds every wait, start-up and checkpoints included
  std::optional<RunDirs> dirs;  // rank 0: run.out_dir and checkpoint.dir probed and locked

  // Inputs first, agreed by every rank: a bad layout or data file is one message and exit 2
  // before any allocation or output.
  TokenSource data;
  std::shared_ptr<const ExpertPlacement> placement;
  check_same_config_everywhere(cfg, options.resume, rt.world, wd);
  const MemoryBudget memory = host_memory_budget(rt.world);
  std::string memory_warning;  // a fit that an untrained router's skew may break
  agree_on_usage(rt.world, wd, [&] {
    comm::validate_layout(rt.world.size(), static_cast<int>(cfg.parallel.tp),
                          static_cast<int>(cfg.parallel.ep), static_cast<int>(cfg.parallel.etp), E,
                          static_cast<int>(cfg.model.n_heads), static_cast<int>(cfg.moe.ffn_hidden),
                          static_cast<int>(cfg.parallel.ranks_per_node));
    check_global_batch(GB, MB, rt.world.size() / cfg.parallel.tp);
    check_gpu_run(cfg, rt.world.size());
    memory_warning = check_memory_fits(
        cfg, rt.world.size(), memory,  // before any allocation
        cfg.device == Device::kCuda ? MemorySide::kGpuHost : MemorySide::kCpuRank);
    data = open_token_file(cfg.data.path, cfg.model.vocab_size, T, /*scan=*/rank0);
    data.fingerprint = token_source_fingerprint(data);  // checkpoints keep it too
    placement = load_expert_placement(cfg);
    if (rank0 && options.resume == "auto") refuse_checkpoints_left_behind(cfg);
    if (rank0 && options.resume.empty()) refuse_fresh_start_over_checkpoints(cfg);
    // A --resume file that is not there, said before the run's directories are made (they were
    // left behind, with their lock files).
    std::error_code ec;  // a path it cannot look at is the checkpoint reader's to word
    if (rank0 && !options.resume.empty() && options.resume != "auto" &&
        !std::filesystem::exists(options.resume, ec) && !ec)
      throw UsageError("--resume '" + options.resume + "': no such checkpoint file");
    if (rank0) dirs.emplace(cfg, log);
  });
  if (!memory_warning.empty()) log << "warning: " << memory_warning << "\n";

  // What each rank reads from its own path (the same-config check leaves paths aside: a node
  // may see a file under another one), compared with rank 0's: two placement files that differ
  // routed by other tables, two token files trained other batches than the log named (exit 0),
  // a checkpoint.dir that is not shared hung at the first checkpoint.
  check_same_as_rank0(
      placement ? describe_placement(*placement, 0, placement->num_layers()) : "none", rt.world, wd,
      "rank 0's placement", [&](const std::string& root) {
        return "parallel.expert_placement: this rank's placement ('" +
               cfg.parallel.expert_placement + "') is not rank 0's (" +
               (root == "none" ? std::string("none there") : "another table") +
               "): every rank must read the same placement file (a copy that differs between "
               "nodes?)";
      });
  check_same_as_rank0(
      data.fingerprint, rt.world, wd, "rank 0's token file", [&](const std::string& root) {
        return "data.path: this rank's token file '" + cfg.data.path + "' (" + data.fingerprint +
               ") is not rank 0's (" + root +
               "): every rank must read the same data (a copy that differs between nodes?)";
      });
  check_checkpoint_dir_shared(cfg, rt.world, wd);
  std::optional<comm::WatchdogScope> startup(
      std::in_place, wd, "start-up: every rank building the process groups and the model");
  rt.groups = std::make_unique<comm::ProcessGroups>(
      rt.world.get(),
      comm::ParallelSizes{static_cast<int>(cfg.parallel.tp), static_cast<int>(cfg.parallel.ep),
                          static_cast<int>(cfg.parallel.etp),
                          static_cast<int>(cfg.parallel.ranks_per_node)});
  const comm::ProcessGroups& g = *rt.groups;
  const comm::Layout& lay = g.layout();
  const std::vector<int> ep_nodes = ep_node_of_rank(lay);
  // Whether any EP group crosses nodes (agreed: the step's byte count below is collective).
  int64_t spans_nodes =
      std::any_of(ep_nodes.begin(), ep_nodes.end(), [&](int n) { return n != ep_nodes[0]; });
  comm::allreduce_sum(std::span<int64_t>(&spans_nodes, 1), rt.world, wd, "node span");
  // `moe.route_groups: nodes` becomes a number once the layout is known. The model, the
  // checkpoints (SPEC 5's resolved config, so `sample` and `ckpt export` route as training did)
  // and the evaluation samples use the resolved config.
  Config model_cfg;
  agree_on_usage(rt.world, wd, [&] {
    model_cfg = resolve_a2a(resolve_route_groups(cfg, lay), spans_nodes != 0);
    check_hierarchical_groups(model_cfg, lay);
  });
  if (placement)
    agree_on_usage(rt.world, wd, [&] {
      check_placement_route_groups(*placement, cfg.moe.route_groups, ep_nodes,
                                   "parallel.expert_placement=" + cfg.parallel.expert_placement);
    });
  if (cfg.device == Device::kCuda) {
    startup.reset();  // train_on_gpu bounds its own start-up
    return train_on_gpu(GpuRunArgs{model_cfg, cfg, data, g, wd, options, spans_nodes != 0}, log,
                        rt.gpu);
  }
  rt.exchange = make_expert_exchange(model_cfg, g, wd);

  ModelParallel mp;
  mp.layout = shard_layout(lay);
  mp.moe.tp = &g.tp();
  mp.moe.etp = &g.etp();
  mp.moe.exchange = rt.exchange.get();
  mp.moe.watchdog = wd;
  mp.placement = placement;
  rt.model = std::make_unique<Model<float>>(model_cfg, mp);
  init_params(rt.model->params.data(), rt.model->table(), cfg.run.seed);
  rt.opt = std::make_unique<DistributedOptimizer>(
      rt.model->table(), OptimComms{&g.world(), &g.tp(), &g.dp(), &g.edp(), wd}, cfg.parallel.zero1,
      cfg.train.weight_decay);
  startup.reset();
  CpuSteps steps(
      cfg,
      CkptContext{model_cfg, rt.world.get(), ckpt::layout_string(lay.dp, lay.tp, lay.ep, lay.etp),
                  *rt.model, *rt.opt, &data, wd},
      rt.exchange.get());

  // The BLAS kernel decides how products round: a resume on another one is not bitwise.
  std::string backend_lines = "cpu gemm: " + cpu::blas_description() + "\n";
  if (rt.exchange) backend_lines += "expert all-to-all: " + rt.exchange->describe() + "\n";
  std::string after_header;
  if (placement) {  // the experts of each EP rank (the layout lines above leave them out)
    const int per_node =
        static_cast<int>(std::count(ep_nodes.begin(), ep_nodes.end(), ep_nodes[0]));
    after_header =
        "expert placement " + cfg.parallel.expert_placement +
        " (EP ranks in order, '|' between nodes): " + describe_placement(*placement, per_node) +
        "\n";
    // Made for other nodes: its experts work, its grouping of co-selected ones by node does not.
    if (placement->ranks_per_node > 0 && placement->ranks_per_node != per_node)
      after_header += "note: " + cfg.parallel.expert_placement + " was made for " +
                      std::to_string(placement->ranks_per_node) + " EP ranks per node, this run " +
                      "has " + std::to_string(per_node) + ": the experts it keeps together on a " +
                      "node are not on one here (remake it with `switchyard placement " +
                      "--ranks-per-node " + std::to_string(per_node) + "`)\n";
  }
  return run_training(TrainLoopArgs{cfg, model_cfg, data, g, wd, options, spans_nodes != 0,
                                    backend_lines, after_header, t_start},
                      steps, log);
}

}  // namespace

TextSource config_source() {
  return launcher_size() > 1 ? TextSource::kRegularFile : TextSource::kFileOrStream;
}

Config load_config_on_every_rank(const std::string& path, const std::optional<std::string>& text,
                                 const std::vector<std::string>& overrides, MPI_Comm world) {
  const comm::Comm w = comm::Comm::borrow(world);  // the caller's: not freed here
  Config cfg;
  agree_on_usage(w, nullptr, [&] {
    cfg = config_from_file_text(text ? *text : read_config_text(path, config_source()), path,
                                overrides);
  });
  return cfg;
}

TrainSummary train(const Config& cfg, std::ostream& log, MPI_Comm world,
                   const TrainOptions& options) {
  // The runtime outlives the try block: a rank that fails alone must not run the destructors of
  // communicators, shared windows and UCX endpoints that its peers are still waiting in; it
  // reports and aborts the job (the others' watchdogs would end it too, later).
  Runtime rt;
  // parallel.timeout_s bounds a rank's wait for the others: one rank alone waits for none (its
  // own slow start-up under load ended it, "timed out after 1s waiting for start-up").
  int world_size = 1;
  MPI_CHECK(MPI_Comm_size(world, &world_size));
  if (world_size > 1) rt.watchdog = std::make_unique<comm::Watchdog>(cfg.parallel.timeout_s);
  {
    comm::WatchdogScope scope(rt.watchdog.get(), "start-up: every rank to join the run");
    rt.world = comm::Comm::dup(world);
  }
  try {
    TrainSummary summary = train_impl(rt, cfg, log, options);
    // Freeing shared windows, UCX endpoints and communicators waits for the other ranks too.
    comm::WatchdogScope scope(rt.watchdog.get(), "the other ranks to finish the run (teardown)");
    rt.gpu.reset();
    rt.opt.reset();
    rt.model.reset();
    rt.exchange.reset();
    rt.groups.reset();
    return summary;
  } catch (const Error&) {
    throw;  // usage and numerical errors are found by every rank alike
  } catch (const std::exception& e) {
    if (rt.world.size() == 1) throw;
    // Out of memory names an address-space limit here too (it was a bare "std::bad_alloc").
    std::fprintf(stderr, "rank %d: fatal: %s\nrank %d: aborting the job\n", comm::world_rank(),
                 failure_text(e).c_str(), comm::world_rank());
    std::fflush(stderr);
    MPI_Abort(rt.world.get(), kExitOther);
    throw;  // not reached
  }
}

}  // namespace sy

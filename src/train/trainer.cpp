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
#include "src/core/error.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"
#include "src/model/init.h"
#include "src/model/model.h"
#include "src/optim/distributed.h"
#include "src/optim/optim.h"
#include "src/train/flops.h"
#include "src/train/metrics.h"
#include "src/train/report.h"
#include "src/train/signals.h"
#include "src/train/train_ckpt.h"
#include "src/train/train_gpu.h"

namespace sy {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

ShardLayout shard_layout(const comm::Layout& l) {
  ShardLayout s;
  s.tp = l.tp;
  s.tp_rank = l.coords.tp_rank;
  s.dp = l.dp;
  s.dp_rank = l.coords.dp_rank;
  s.ep = l.ep;
  s.ep_rank = l.coords.ep_rank;
  s.etp = l.etp;
  s.etp_rank = l.coords.etp_rank;
  s.edp = l.edp;
  s.edp_rank = l.coords.edp_rank;
  return s;
}

// Runs `work` on every rank; if it throws UsageError on any rank, every rank throws: rank 0 with
// its own message (or naming the first failing rank), the others quietly. Inputs are checked
// this way before any other collective, so a bad file ends the job with one message and exit 2.
template <class F>
void agree_on_usage(const comm::Comm& world, F&& work) {
  std::string err;
  try {
    work();
  } catch (const UsageError& e) {
    err = e.what();
  }
  int failed_rank = err.empty() ? world.size() : world.rank();
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &failed_rank, 1, MPI_INT, MPI_MIN, world.get()));
  if (failed_rank == world.size()) return;
  if (world.rank() != 0) throw UsageError(err, /*quiet=*/true);
  if (err.empty()) err = "rank " + std::to_string(failed_rank) + " could not start (see above)";
  throw UsageError(err);
}

// Test hook for the failure tests (issue 3): SWITCHYARD_FAULT="<rank>:<step>:throw|exit|hang"
// makes that world rank throw, _exit, or go silent (sleep) at the start of that step.
void maybe_inject_fault(int world_rank, int64_t step) {
  const char* spec = std::getenv("SWITCHYARD_FAULT");
  if (!spec) return;
  int rank = -1;
  long long at = -1;
  char kind[16] = {};
  if (std::sscanf(spec, "%d:%lld:%15s", &rank, &at, kind) != 3) return;
  if (rank != world_rank || at != step) return;
  if (std::string(kind) == "exit") std::_Exit(9);
  if (std::string(kind) == "hang") std::this_thread::sleep_for(std::chrono::hours(1));
  throw std::runtime_error("injected fault (SWITCHYARD_FAULT=" + std::string(spec) + ") at step " +
                           std::to_string(step));
}

struct StepTotals {
  LossParts loss;
  std::vector<int64_t> selected;  // [L*E] assignments per layer and expert
  int64_t dropped = 0;
};

// Everything one rank needs, built collectively in a fixed order.
struct Runtime {
  comm::Comm world;
  std::unique_ptr<comm::ProcessGroups> groups;
  std::unique_ptr<comm::Watchdog> watchdog;
  std::unique_ptr<comm::TokenExchange> exchange;
  std::unique_ptr<Model<float>> model;
  std::unique_ptr<DistributedOptimizer> opt;
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
  for (int p = 0; p < l.ep; ++p) {
    const int global = (l.coords.edp_rank * l.ep + p) * l.etp + l.coords.etp_rank;
    o.node_of_ep_rank.push_back(l.node_of_rank[static_cast<size_t>(global)]);
  }
  const bool spans_nodes = std::any_of(o.node_of_ep_rank.begin(), o.node_of_ep_rank.end(),
                                       [&](int n) { return n != o.node_of_ep_rank[0]; });
  switch (cfg.parallel.a2a) {
    case A2aKind::kFlat:
      o.algo = comm::A2aAlgo::kFlat;
      break;
    case A2aKind::kHierarchical:
      o.algo = comm::A2aAlgo::kHierarchical;
      break;
    case A2aKind::kAuto:
      o.algo = spans_nodes ? comm::A2aAlgo::kHierarchical : comm::A2aAlgo::kFlat;
      break;
  }
  o.internode =
      cfg.parallel.internode == InternodeKind::kUcx ? comm::Internode::kUcx : comm::Internode::kMpi;
  return comm::make_exchange(o);
}

// val_loss (SPEC 3): mean lm_loss over the first `windows` windows of T+1 tokens of the
// validation split, in file order. Each data-parallel rank takes a contiguous share; every rank
// runs the same number of forwards (some with no sequences), since the expert exchange is
// collective.
double evaluate(Runtime& rt, const TokenData& data, const Config& cfg, int64_t windows) {
  const comm::Layout& l = rt.groups->layout();
  const int64_t T = cfg.model.seq_len, MB = cfg.train.micro_batch;
  const int64_t per_rank = (windows + l.dp - 1) / l.dp;
  const int64_t first = std::min(windows, per_rank * l.coords.dp_rank);
  const int64_t mine = std::min(windows, first + per_rank) - first;
  std::vector<int32_t> tokens(static_cast<size_t>(MB * (T + 1)));
  double sum = 0.0;
  for (int64_t done = 0; done < per_rank; done += MB) {
    const int64_t n = std::clamp<int64_t>(mine - done, 0, MB);
    fill_val_windows(data.val, T, first + done, n, tokens.data());
    LossScale s;
    s.token_weight = 1.0;  // sum of per-token losses; divided once below
    sum += rt.model->forward(tokens.data(), static_cast<int>(n), s).lm;
  }
  comm::allreduce_sum(std::span<double>(&sum, 1), rt.groups->dp(), rt.watchdog.get(),
                      "validation loss");
  return sum / static_cast<double>(windows * T);
}

// The final parameters as global tensors on world rank 0: every writer rank sends its parts,
// rank 0 knows every rank's slabs from the layout arithmetic.
std::map<std::string, std::vector<float>> gather_params(const Runtime& rt, const Config& cfg) {
  const comm::Layout& l = rt.groups->layout();
  const ParamTable& mine = rt.model->table();
  const MPI_Comm w = rt.world.get();
  std::map<std::string, std::vector<float>> out;
  if (l.world_rank != 0) {
    for (size_t i = 0; i < mine.specs().size(); ++i) {
      const ParamSpec& p = mine.specs()[i];
      if (!p.writer) continue;
      MPI_CHECK(MPI_Send(rt.model->params.data() + p.offset, static_cast<int>(p.numel), MPI_FLOAT,
                         0, static_cast<int>(i), w));
    }
    return out;
  }
  for (const ParamSpec& p : mine.specs()) out[p.name].assign(p.global_numel(), 0.0f);
  std::vector<float> buf;
  for (int r = 0; r < l.world_size; ++r) {
    comm::Layout lr = l;
    lr.coords = comm::rank_coords(r, l.tp, l.ep, l.etp);
    const ParamTable t = make_param_table(cfg, shard_layout(lr));
    for (size_t i = 0; i < t.specs().size(); ++i) {
      const ParamSpec& p = t.specs()[i];
      if (!p.writer) continue;
      buf.resize(p.numel);
      if (r == 0) {
        std::copy_n(rt.model->params.begin() + static_cast<long>(p.offset), p.numel, buf.begin());
      } else {
        MPI_CHECK(MPI_Recv(buf.data(), static_cast<int>(p.numel), MPI_FLOAT, r, static_cast<int>(i),
                           w, MPI_STATUS_IGNORE));
      }
      std::vector<float>& dst = out[p.name];
      p.slab.for_each_run(p.shape, [&](int64_t g, int64_t loc, int64_t n) {
        std::copy_n(buf.begin() + loc, n, dst.begin() + g);
      });
    }
  }
  return out;
}

// The names of parameters whose copies differ between the ranks that hold the same part: every
// rank for replicated parameters, the dp group for tp shards, the edp group for experts.
std::vector<std::string> diverged_replicas(const Runtime& rt) {
  const comm::ProcessGroups& g = *rt.groups;
  std::vector<std::string> out;
  for (const ParamSpec& p : rt.model->table().specs()) {
    const comm::Comm& c = p.group == ParamGroup::kExpert  ? g.edp()
                          : p.tp_mode == TpMode::kSharded ? g.dp()
                                                          : g.world();
    const auto* bytes = reinterpret_cast<const unsigned char*>(rt.model->params.data() + p.offset);
    uint64_t h = 1469598103934665603ull;  // FNV-1a 64 of the part's bytes
    for (size_t i = 0; i < p.numel * sizeof(float); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    std::vector<int64_t> all(static_cast<size_t>(c.size()), 0);
    all[static_cast<size_t>(c.rank())] = static_cast<int64_t>(h);
    comm::allreduce_sum(std::span<int64_t>(all), c, rt.watchdog.get(), "replica check");
    if (std::any_of(all.begin(), all.end(), [&](int64_t v) { return v != all[0]; }))
      out.push_back(p.name);
  }
  return out;
}

TrainSummary train_impl(Runtime& rt, const Config& cfg, std::ostream& log_all,
                        const TrainOptions& options) {
  namespace fs = std::filesystem;
  const auto t_start = Clock::now();
  const int64_t T = cfg.model.seq_len, GB = cfg.train.global_batch, MB = cfg.train.micro_batch;
  const int L = static_cast<int>(cfg.model.n_layers), E = static_cast<int>(cfg.moe.num_experts);
  const int64_t K = cfg.moe.top_k;
  const bool rank0 = rt.world.rank() == 0;
  std::ostream null_log(nullptr);
  std::ostream& log = rank0 ? log_all : null_log;

  // Inputs first, agreed by every rank: a bad layout or data file is one message and exit 2
  // before any allocation or output.
  TokenData data;
  agree_on_usage(rt.world, [&] {
    comm::validate_layout(rt.world.size(), static_cast<int>(cfg.parallel.tp),
                          static_cast<int>(cfg.parallel.ep), static_cast<int>(cfg.parallel.etp), E,
                          static_cast<int>(cfg.model.n_heads), static_cast<int>(cfg.moe.ffn_hidden),
                          static_cast<int>(cfg.parallel.ranks_per_node));
    const int64_t dp = rt.world.size() / cfg.parallel.tp;
    if (GB % (dp * MB) != 0)
      throw UsageError("train.global_batch=" + std::to_string(GB) + " must be a multiple of dp * " +
                       "train.micro_batch = " + std::to_string(dp) + " * " + std::to_string(MB) +
                       " (dp = world size / parallel.tp)");
    check_gpu_run(cfg, rt.world.size(), options.resume);
    data = read_token_file(cfg.data.path, cfg.model.vocab_size, T);
  });
  if (cfg.device == Device::kCuda) return train_on_gpu(cfg, data, log);

  rt.groups = std::make_unique<comm::ProcessGroups>(
      rt.world.get(),
      comm::ParallelSizes{static_cast<int>(cfg.parallel.tp), static_cast<int>(cfg.parallel.ep),
                          static_cast<int>(cfg.parallel.etp),
                          static_cast<int>(cfg.parallel.ranks_per_node)});
  const comm::ProcessGroups& g = *rt.groups;
  const comm::Layout& lay = g.layout();
  rt.watchdog = std::make_unique<comm::Watchdog>(cfg.parallel.timeout_s);
  comm::Watchdog* wd = rt.watchdog.get();
  rt.exchange = make_expert_exchange(cfg, g, wd);

  ModelParallel mp;
  mp.layout = shard_layout(lay);
  mp.moe.tp = &g.tp();
  mp.moe.etp = &g.etp();
  mp.moe.exchange = rt.exchange.get();
  mp.moe.watchdog = wd;
  rt.model = std::make_unique<Model<float>>(cfg, mp);
  Model<float>& model = *rt.model;
  init_params(model.params.data(), model.table(), cfg.run.seed);
  rt.opt = std::make_unique<DistributedOptimizer>(
      model.table(), OptimComms{&g.world(), &g.tp(), &g.dp(), &g.edp(), wd}, cfg.parallel.zero1,
      cfg.train.weight_decay);
  DistributedOptimizer& opt = *rt.opt;
  BatchLoader loader(data.train, T, GB, cfg.run.seed);
  const CkptContext ckpt_ctx{cfg, rt.world.get(),
                             ckpt::layout_string(lay.dp, lay.tp, lay.ep, lay.etp), model, opt};
  std::ostringstream resume_log;
  const ResumeResult resumed = resume_training(ckpt_ctx, options.resume, resume_log);
  const int64_t first_step = resumed.resumed ? resumed.state.step : 0;

  const int64_t val_windows = std::min<int64_t>(
      cfg.eval.sequences, num_val_windows(static_cast<int64_t>(data.val.size()), T));
  std::optional<MetricsWriter> metrics;
  if (rank0) {
    fs::create_directories(cfg.run.out_dir);
    std::ofstream(fs::path(cfg.run.out_dir) / "config.yaml") << to_yaml(cfg);
    const std::string path = (fs::path(cfg.run.out_dir) / "metrics.jsonl").string();
    if (resumed.resumed) {
      metrics.emplace(path, first_step);
    } else {
      metrics.emplace(path, false);
    }
  }
  const StepFlops flops = step_flops(cfg);
  log << "switchyard: run '" << cfg.run.name << "' -> " << cfg.run.out_dir << "\n"
      << "resolved config:\n"
      << to_yaml(cfg) << "\n"
      << "data: " << cfg.data.path << " (" << data.train.size() << " train / " << data.val.size()
      << " val tokens, tokenizer " << data.tokenizer << ")\n"
      << comm::describe(lay, E);
  if (rt.exchange) log << "expert all-to-all: " << rt.exchange->describe() << "\n";
  if (val_windows < cfg.eval.sequences)
    log << "warning: eval.sequences = " << cfg.eval.sequences << " but the validation split holds "
        << val_windows << " windows of " << T + 1 << " tokens; evaluating on " << val_windows
        << "\n";
  size_t global_params = 0;
  for (const ParamSpec& p : model.table().specs()) global_params += p.global_numel();
  log << "model: " << global_params << " parameters (" << model.table().total_numel()
      << " on this rank), " << L << " layers, " << E << " experts (top-" << K << "), "
      << flops.total() / 1e9 << " GFLOP per step\n"
      << resume_log.str();

  // The loss of the global batch is the mean over its tokens; aux is the mean over its groups.
  const LossScale scale = global_batch_scale(cfg);
  const int64_t per_dp = GB / lay.dp, first_seq = per_dp * lay.coords.dp_rank;

  std::vector<int32_t> tokens(static_cast<size_t>(MB * (T + 1)));
  std::vector<MoeStats> mb_stats;
  TrainSummary summary;
  summary.final_val_loss = summary.best_val_loss = std::numeric_limits<double>::quiet_NaN();
  summary.first_step = summary.steps_done = first_step;
  if (resumed.resumed) {
    summary.best_val_loss = resumed.state.best_val_loss;
    summary.final_val_loss = resumed.state.last_val_loss;
  }
  double step_s_sum = 0.0, last_lr = resumed.state.lr;
  std::optional<PreemptionSignals> own_signals;
  if (!options.signals) own_signals.emplace();
  const PreemptionSignals& signals = options.signals ? *options.signals : *own_signals;
  int64_t saved_step = resumed.resumed ? first_step : -1;
  auto save = [&](int64_t done) {
    ckpt::TrainState st;
    st.step = done;
    st.tokens_seen = done * GB * T;
    st.optim_step = opt.step_count();
    st.lr = last_lr;
    st.loader = loader.state(done);
    st.rng = {cfg.run.seed, 0};
    st.best_val_loss = summary.best_val_loss;
    st.last_val_loss = summary.final_val_loss;
    const ckpt::SaveResult r = save_training_checkpoint(ckpt_ctx, st);
    summary.checkpoints_written.push_back(r.path);
    saved_step = done;
    log << "checkpoint: " << r.path << "\n";
    for (const auto& note : r.notes) log << "  " << note << "\n";
  };

  auto run_eval = [&](int64_t step) {
    const double v = evaluate(rt, data, cfg, val_windows);
    summary.final_val_loss = v;
    if (!(v >= summary.best_val_loss)) summary.best_val_loss = v;  // also replaces NaN
    report_eval(step, v, metrics ? &*metrics : nullptr, log);
  };

  StepTotals tot;
  for (int64_t step = first_step; step < cfg.train.steps; ++step) {
    maybe_inject_fault(lay.world_rank, step + 1);
    const auto t0 = Clock::now();
    if (rt.exchange) rt.exchange->reset_stats();
    model.zero_grads();
    tot = StepTotals{};
    tot.selected.assign(static_cast<size_t>(L) * E, 0);
    for (int64_t mb = 0; mb < per_dp; mb += MB) {
      loader.fill(step, first_seq + mb, MB, tokens.data());
      tot.loss += model.forward(tokens.data(), static_cast<int>(MB), scale, &mb_stats);
      model.backward();
      add_routing_counts(mb_stats, tot.selected, tot.dropped);
    }
    // Loss and routing counts of the global batch (identical on tp ranks: summed over dp).
    double parts[3] = {tot.loss.lm, tot.loss.aux, tot.loss.z};
    comm::allreduce_sum(std::span<double>(parts, 3), g.dp(), wd, "step loss");
    tot.loss = LossParts{parts[0], parts[1], parts[2]};
    tot.selected.push_back(tot.dropped);
    comm::allreduce_sum(std::span<int64_t>(tot.selected), g.dp(), wd, "expert load");
    tot.dropped = tot.selected.back();
    tot.selected.pop_back();

    const double norm = opt.reduce_gradients(model.grads.data());
    if (!std::isfinite(tot.loss.total()) || !std::isfinite(norm))
      throw NumericalError("non-finite " +
                               std::string(std::isfinite(tot.loss.total()) ? "gradients" : "loss") +
                               " at step " + std::to_string(step + 1),
                           /*quiet=*/!rank0);
    const double lr = learning_rate(cfg.train, step);
    opt.step(model.params.data(), model.grads.data(), lr, clip_factor(norm, cfg.train.grad_clip));
    last_lr = lr;
    if (cfg.moe.bias_update_rate > 0)
      for (int l = 0; l < L; ++l)
        update_router_bias(model.param(layer_param_name(l, "moe/bias")),
                           tot.selected.data() + static_cast<size_t>(l) * E, E,
                           cfg.moe.bias_update_rate);

    const double step_s = seconds_since(t0);
    step_s_sum += step_s;
    const int64_t done = step + 1;
    summary.steps_done = done;
    summary.final_loss = tot.loss.total();
    summary.step_losses.push_back(tot.loss.total());
    if (done % cfg.log.every == 0 || done == cfg.train.steps) {
      StepRecord rec;
      rec.step = done;
      rec.loss = tot.loss;
      rec.lr = lr;
      rec.grad_norm = norm;
      rec.step_s = step_s;
      if (rt.exchange) {
        rec.a2a_s = rt.exchange->stats().seconds;
        rec.a2a_internode_bytes = rt.exchange->stats().internode_bytes;
        rec.a2a_intranode_bytes = rt.exchange->stats().intranode_bytes;
      }
      rec.selected = &tot.selected;
      rec.dropped = tot.dropped;
      const double eta = step_s_sum / static_cast<double>(done - first_step) *
                         static_cast<double>(cfg.train.steps - done);
      report_step(cfg, rec, flops, eta, metrics ? &*metrics : nullptr, log);
    }
    if (cfg.eval.every > 0 && done % cfg.eval.every == 0 && done != cfg.train.steps) run_eval(done);
    if (cfg.checkpoint.every > 0 && done % cfg.checkpoint.every == 0) save(done);
    if (stop_requested(rt.world.get(), signals)) {
      if (saved_step != done) save(done);
      log << "preempted ("
          << (signals.requested() ? signals.signal_name() : "signal on another rank")
          << ") after step " << done << ": checkpoint written, exiting with " << kExitPreempted
          << " so the job script requeues the run\n"
          << std::flush;
      throw Error(kExitPreempted,
                  "preempted after step " + std::to_string(done) + "; resume with --resume auto",
                  /*quiet=*/true);
    }
  }
  run_eval(summary.steps_done);
  if (cfg.checkpoint.every > 0 && saved_step != summary.steps_done) save(summary.steps_done);
  if (options.gather_params) summary.final_params = gather_params(rt, cfg);
  if (options.check_replicas) summary.diverged_replicas = diverged_replicas(rt);

  summary.wall_s = seconds_since(t_start);
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "done: %lld steps in %s | final loss %.4f | val_loss %.4f (best %.4f) | "
                "%zu checkpoint(s) written | metrics: %s\n",
                static_cast<long long>(summary.steps_done), format_duration(summary.wall_s).c_str(),
                summary.final_loss, summary.final_val_loss, summary.best_val_loss,
                summary.checkpoints_written.size(), metrics ? metrics->path().c_str() : "-");
  log << buf << std::flush;
  return summary;
}

}  // namespace

TrainSummary train(const Config& cfg, std::ostream& log, MPI_Comm world,
                   const TrainOptions& options) {
  // The runtime outlives the try block: a rank that fails alone must not run the destructors of
  // communicators, shared windows and UCX endpoints that its peers are still waiting in; it
  // reports and aborts the job (the others' watchdogs would end it too, later).
  Runtime rt;
  rt.world = comm::Comm::dup(world);
  try {
    return train_impl(rt, cfg, log, options);
  } catch (const Error&) {
    throw;  // usage and numerical errors are found by every rank alike
  } catch (const std::exception& e) {
    if (rt.world.size() == 1) throw;
    std::fprintf(stderr, "rank %d: fatal: %s\nrank %d: aborting the job\n", comm::world_rank(),
                 e.what(), comm::world_rank());
    std::fflush(stderr);
    MPI_Abort(rt.world.get(), kExitOther);
    throw;  // not reached
  }
}

}  // namespace sy

#include "src/train/loop_common.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <span>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "comm/alltoall.h"
#include "comm/collectives.h"
#include "kernels/cpu/philox.h"
#include "src/ckpt/compat.h"
#include "src/core/build_id.h"
#include "src/data/loader.h"
#include "src/train/report.h"
#include "src/train/run_dirs.h"

namespace sy {

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

std::string first_config_difference(const std::string& mine, const std::string& root) {
  const std::vector<ckpt::ConfigChange> changes = ckpt::changed_keys(root, mine);
  if (changes.empty()) return "";
  const ckpt::ConfigChange& c = changes.front();
  return c.key + " is '" + c.new_value + "' here and '" + c.old_value + "' on rank 0";
}

void check_same_config_everywhere(const Config& cfg, const std::string& resume,
                                  const comm::Comm& world, comm::Watchdog* wd) {
  // Paths aside: a node may see the same file under another path (data staged to node-local
  // scratch), and only rank 0 writes run.out_dir. What the paths name is compared on its own
  // (check_same_as_rank0: the token file, the placement, checkpoint.dir).
  Config c = cfg;
  c.run.out_dir = c.checkpoint.dir = c.data.path = c.parallel.expert_placement = "";
  YAML::Node node = YAML::Load(to_yaml(c));
  node["--resume"] = resume;  // a key of its own, quoted by the emitter as it needs
  YAML::Emitter text;
  text << node;
  const std::string mine = text.c_str();
  check_same_as_rank0(mine, world, wd, "rank 0's config", [&](const std::string& root) {
    const std::string d = first_config_difference(mine, root);
    return d.empty() ? d
                     : "this rank does not run rank 0's config: " + d +
                           " (every rank must read the same config file, --set options and "
                           "--resume; a copy that differs between nodes?)";
  });
}

void check_same_as_rank0(const std::string& mine, const comm::Comm& world, comm::Watchdog* wd,
                         const std::string& what,
                         const std::function<std::string(const std::string& root)>& differs) {
  const std::string root = comm::broadcast_string(mine, 0, world, wd, what.c_str());
  agree_on_usage(world, wd, [&] {
    if (mine == root) return;
    if (std::string why = differs(root); !why.empty()) throw UsageError(why);
  });
}

void check_checkpoint_dir_shared(const Config& cfg, const comm::Comm& world, comm::Watchdog* wd) {
  if (world.size() == 1) return;
  const std::string lock =
      (std::filesystem::path(cfg.checkpoint.dir) / RunDirs::kLockName).string();
  std::ifstream in(lock);
  std::string holder;
  std::getline(in, holder);
  check_same_as_rank0(holder, world, wd, "rank 0's checkpoint.dir lock", [&](const std::string&) {
    return "checkpoint.dir '" + cfg.checkpoint.dir + "' is not rank 0's directory here (" +
           (holder.empty() ? "no " + std::string(RunDirs::kLockName) + " from rank 0 in it"
                           : "its lock names another run: " + holder) +
           "): every rank writes its part of each checkpoint into one file, so checkpoint.dir "
           "must be a directory all nodes share (a node-local or unmounted path?)";
  });
}

void check_global_batch(int64_t gb, int64_t mb, int64_t dp) {
  if (gb % (dp * mb) == 0) return;
  std::string fix;
  if (gb % dp == 0) {  // the largest micro-batch below mb that divides a rank's share
    int64_t m = std::min(mb, gb / dp);
    while (m > 1 && (gb / dp) % m != 0) --m;
    fix = "--set train.micro_batch=" + std::to_string(m) + " (" + std::to_string(gb / dp) +
          " sequences per data-parallel rank), or ";
  }
  const int64_t up = (gb + dp * mb - 1) / (dp * mb) * (dp * mb);
  throw UsageError("train.global_batch=" + std::to_string(gb) + " must be a multiple of dp * " +
                   "train.micro_batch = " + std::to_string(dp) + " * " + std::to_string(mb) +
                   " (dp = world size / parallel.tp); e.g. " + fix +
                   "--set train.global_batch=" + std::to_string(up) + " (a larger batch)");
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

namespace {
// The node of each EP rank of the EP group with these edp and etp coordinates.
std::vector<int> ep_group_nodes(const comm::Layout& l, int edp_rank, int etp_rank) {
  std::vector<int> nodes;
  for (int p = 0; p < l.ep; ++p) {
    const int global = (edp_rank * l.ep + p) * l.etp + etp_rank;
    nodes.push_back(l.node_of_rank[static_cast<size_t>(global)]);
  }
  return nodes;
}
}  // namespace

std::vector<int> ep_node_of_rank(const comm::Layout& l) {
  return ep_group_nodes(l, l.coords.edp_rank, l.coords.etp_rank);
}

Config resolve_route_groups(const Config& cfg, const comm::Layout& l) {
  if (!cfg.moe.route_groups.nodes) return cfg;
  // An expert split over etp ranks on two nodes takes its tokens to both: no group count keeps
  // a token on route_groups_topk nodes.
  for (int edp = 0; edp < l.edp; ++edp) {
    std::vector<std::vector<int>> by_etp;
    for (int etp = 0; etp < l.etp; ++etp) by_etp.push_back(ep_group_nodes(l, edp, etp));
    for (int p = 0; p < l.ep; ++p)
      for (int etp = 1; etp < l.etp; ++etp)
        if (by_etp[static_cast<size_t>(etp)][static_cast<size_t>(p)] !=
            by_etp[0][static_cast<size_t>(p)])
          throw UsageError(
              "moe.route_groups: nodes needs each expert on one node, but parallel.etp=" +
              std::to_string(l.etp) + " splits the experts of EP rank " + std::to_string(p) +
              " (edp rank " + std::to_string(edp) + ") over nodes " +
              std::to_string(by_etp[0][static_cast<size_t>(p)]) + " and " +
              std::to_string(by_etp[static_cast<size_t>(etp)][static_cast<size_t>(p)]) +
              ", so a token would reach both. Make parallel.ranks_per_node a multiple of "
              "parallel.etp, or set moe.route_groups to a number");
  }
  int R = 0;
  for (int edp = 0; edp < l.edp; ++edp)
    for (int etp = 0; etp < l.etp; ++etp) {
      const std::vector<int> nodes = ep_group_nodes(l, edp, etp);
      // Blocks of consecutive EP ranks on one node; node-limited routing needs one block per
      // node, all of the same size, and the same count in every EP group.
      int blocks = 1;
      for (int p = 1; p < l.ep; ++p) blocks += nodes[p] != nodes[p - 1];
      const int per_block = l.ep % blocks == 0 ? l.ep / blocks : 0;
      bool fits = per_block > 0 && (R == 0 || R == blocks);
      for (int p = 0; fits && p < l.ep; ++p)
        fits = nodes[p] == nodes[p / per_block * per_block] &&
               std::count(nodes.begin(), nodes.end(), nodes[p]) == per_block;
      if (!fits) {
        std::ostringstream os;
        os << "moe.route_groups: nodes needs the experts of each node to be one group: every "
              "expert-parallel group must put equal, contiguous blocks of its parallel.ep="
           << l.ep << " ranks on distinct nodes, the same number of nodes for every group; the "
           << "group of edp rank " << edp;
        if (l.etp > 1) os << " and etp rank " << etp;
        os << " has its EP ranks on nodes";
        for (int n : nodes) os << " " << n;
        if (R > 0 && R != blocks) os << " (another group spans " << R << " nodes)";
        os << ". Set moe.route_groups to a number, or change parallel.ep / "
              "parallel.ranks_per_node";
        throw UsageError(os.str());
      }
      R = blocks;
    }
  return resolve_route_groups(cfg, R);
}

void check_hierarchical_groups(const Config& cfg, const comm::Layout& l) {
  // device: cuda exchanges hierarchically whatever parallel.a2a says (comm/gpu_exchange.h).
  const bool gpu = cfg.device == Device::kCuda;
  if (cfg.parallel.a2a != A2aKind::kHierarchical && !gpu) return;
  for (int edp = 0; edp < l.edp; ++edp)
    for (int etp = 0; etp < l.etp; ++etp) {
      const std::vector<int> nodes = ep_group_nodes(l, edp, etp);
      if (comm::even_over_nodes(nodes)) continue;
      std::ostringstream os;
      if (gpu)
        os << "device: cuda: the GPU expert all-to-all (hierarchical whatever parallel.a2a says: "
           << "NCCL inside a node, MPI between nodes)";
      else
        os << "parallel.a2a: the hierarchical all-to-all (hierarchical, or auto on a layout that "
           << "spans nodes)";
      os << " needs the same number of EP ranks on every node of each expert-parallel group, but "
         << "the group of edp rank " << edp;
      if (l.etp > 1) os << " and etp rank " << etp;
      os << " has its parallel.ep=" << l.ep << " ranks on nodes";
      for (int n : nodes) os << " " << n;
      os << ". Set " << (gpu ? "" : "parallel.a2a=flat, or ")
         << "parallel.ep / parallel.ranks_per_node so that each group's ranks split evenly over "
            "its nodes";
      throw UsageError(os.str());
    }
}

BatchShare::BatchShare(const Config& cfg, const TokenSource& data, const comm::Layout& lay)
    : loader_(data.train.reader(), data.train.size(), cfg.model.seq_len, cfg.train.global_batch,
              cfg.run.seed),
      scale_(global_batch_scale(cfg)),
      num_layers_(cfg.model.n_layers),
      num_experts_(cfg.moe.num_experts),
      micro_batch_(cfg.train.micro_batch),
      per_dp_(cfg.train.global_batch / lay.dp),
      first_seq_(per_dp_ * lay.coords.dp_rank),
      tokens_(static_cast<size_t>(micro_batch_ * (cfg.model.seq_len + 1))) {}

void BatchShare::resume_at(const ResumeResult& resumed) {
  if (!resumed.resumed) return;
  const ckpt::TrainState& s = resumed.state;
  loader_.resume_at(s.step,
                    s.loader.consumed >= 0 ? s.loader.consumed : s.step * loader_.global_batch(),
                    s.tokens_seen);
}

void sum_over_dp(StepTotals& tot, const comm::Comm& dp, comm::Watchdog* wd) {
  double parts[3] = {tot.loss.lm, tot.loss.aux, tot.loss.z};
  comm::allreduce_sum(std::span<double>(parts, 3), dp, wd, "step loss");
  tot.loss = LossParts{parts[0], parts[1], parts[2]};
  tot.selected.push_back(tot.dropped);
  comm::allreduce_sum(std::span<int64_t>(tot.selected), dp, wd, "expert load");
  tot.dropped = tot.selected.back();
  tot.selected.pop_back();
}

StepRecord step_record(int64_t done, const StepTotals& tot, double lr, double grad_norm,
                       double step_s) {
  StepRecord rec;
  rec.step = done;
  rec.loss = tot.loss;
  rec.lr = lr;
  rec.grad_norm = grad_norm;
  rec.step_s = step_s;
  rec.selected = &tot.selected;
  rec.dropped = tot.dropped;
  return rec;
}

void add_exchange_figures(StepRecord& rec, const comm::ExchangeStats& stats, bool spans_nodes,
                          bool log_step, const comm::Comm& world, comm::Watchdog* wd) {
  rec.a2a_s = stats.seconds;
  rec.a2a_internode_bytes = stats.internode_bytes;
  rec.a2a_intranode_bytes = stats.intranode_bytes;
  if (spans_nodes && log_step) {
    rec.internode_bytes = rec.a2a_internode_bytes;
    comm::allreduce_sum(std::span<int64_t>(&rec.internode_bytes, 1), world, wd, "inter-node bytes");
  }
}

void check_update_finite(int64_t overflowed, int64_t done, const comm::Comm& world,
                         comm::Watchdog* wd) {
  comm::allreduce_sum(std::span<int64_t>(&overflowed, 1), world, wd, "the update check");
  if (overflowed > 0)
    throw NumericalError("the update of step " + std::to_string(done) + " left " +
                             std::to_string(overflowed) +
                             " values not finite in fp32 (parameters, AdamW moments or router "
                             "biases, counted on every rank that holds a copy; train.lr, a loss "
                             "coefficient or moe.bias_update_rate too large?)",
                         /*quiet=*/world.rank() != 0);
}

int64_t eval_windows(const Config& cfg, const TokenSource& data) {
  return std::min<int64_t>(cfg.eval.sequences, num_val_windows(data.val.size(), cfg.model.seq_len));
}

void log_run_header(const Config& cfg, const TokenSource& data, const comm::Layout& lay,
                    const std::string& backend, const ParamTable& table, const StepFlops& flops,
                    std::ostream& log) {
  const int64_t T = cfg.model.seq_len, E = cfg.moe.num_experts;
  log << build_name() << ": run '" << cfg.run.name << "' -> " << cfg.run.out_dir << "\n"
      << "resolved config:\n"
      << to_yaml(cfg) << "\n"
      << "data: " << cfg.data.path << " (" << data.train.size() << " train / " << data.val.size()
      << " val tokens, tokenizer " << data.tokenizer << ")\n"
      << comm::describe(lay, static_cast<int>(E), cfg.parallel.expert_placement.empty()) << backend;
  const int64_t val_windows = eval_windows(cfg, data);
  if (val_windows < cfg.eval.sequences)
    log << "warning: eval.sequences = " << cfg.eval.sequences << " but the validation split holds "
        << val_windows << " windows of " << T + 1 << " tokens; evaluating on " << val_windows
        << "\n";
  size_t global_params = 0;
  for (const ParamSpec& p : table.specs()) global_params += p.global_numel();
  log << "model: " << global_params << " parameters (" << table.total_numel() << " on this rank), "
      << cfg.model.n_layers << " layers, " << E << " experts (top-" << cfg.moe.top_k << "), "
      << flops.total() / 1e9 << " GFLOP per step\n";
  const int64_t R = resolve_route_groups(cfg, lay).moe.route_groups.count;
  if (R > 1)
    log << "routing: each token picks its experts from at most " << cfg.moe.route_groups_topk
        << " of " << R << " groups of " << E / R << " experts"
        << (cfg.moe.route_groups.nodes ? " (a group per node: route_groups: nodes)" : "") << "\n";
  else if (cfg.moe.route_groups.nodes)
    log << "routing: route_groups: nodes is plain top-k here: the experts of each "
           "expert-parallel group are on one node\n";
  log << std::flush;  // a log file (a batch job's) has it before a first step that may be slow
}

double evaluate(const TokenSource& data, const Config& cfg, int64_t windows,
                const comm::ProcessGroups& g, comm::Watchdog* wd, const ForwardLm& forward_lm) {
  const comm::Layout& l = g.layout();
  const int64_t T = cfg.model.seq_len, MB = cfg.train.micro_batch;
  // Micro-batches of MB windows in file order (the last one shorter), the same on every layout:
  // capacity drops within a micro-batch, so its windows must not depend on dp. Each
  // data-parallel rank takes a contiguous share of them.
  const int64_t batches = (windows + MB - 1) / MB;
  const int64_t per_rank = (batches + l.dp - 1) / l.dp;
  const int64_t first = std::min(batches, per_rank * l.coords.dp_rank);
  std::vector<int32_t> tokens(static_cast<size_t>(MB * (T + 1)));
  double sum = 0.0;
  for (int64_t b = first; b < first + per_rank; ++b) {
    const int64_t n = std::clamp<int64_t>(windows - b * MB, 0, MB);  // 0 past the last one
    if (n > 0) fill_val_windows(data.val.reader(), data.val.size(), T, b * MB, n, tokens.data());
    sum += forward_lm(tokens.data(), static_cast<int>(n));
  }
  comm::allreduce_sum(std::span<double>(&sum, 1), g.dp(), wd, "validation loss");
  return sum / static_cast<double>(windows * T);
}

namespace {

// Every writer rank's parts to world rank 0, which hands each to put(spec, buf) with buf the
// part's local elements (spec.for_each_run maps them into the global tensor).
void gather_parts(const comm::ProcessGroups& g, const Config& cfg, const ParamTable& table,
                  const float* params, comm::Watchdog* wd,
                  const std::function<void(const ParamSpec&, const std::vector<float>&)>& put) {
  const comm::Layout& l = g.layout();
  const MPI_Comm w = g.world().get();
  comm::WatchdogScope scope(wd, "gathering the parameters on rank 0");
  // One part in messages of at most kChunk floats, tagged by the part's index.
  constexpr size_t kChunk = size_t{1} << 30;
  auto chunks = [&](size_t n, const auto& fn) {
    for (size_t at = 0; at < n; at += kChunk) fn(at, static_cast<int>(std::min(kChunk, n - at)));
  };
  if (l.world_rank != 0) {
    for (size_t i = 0; i < table.specs().size(); ++i) {
      const ParamSpec& p = table.specs()[i];
      if (!p.writer) continue;
      chunks(p.numel, [&](size_t at, int n) {
        MPI_CHECK(MPI_Send(params + p.offset + at, n, MPI_FLOAT, 0, static_cast<int>(i), w));
      });
    }
    return;
  }
  std::vector<float> buf;
  for (int r = 0; r < l.world_size; ++r) {
    comm::Layout lr = l;
    lr.coords = comm::rank_coords(r, l.tp, l.ep, l.etp);
    const ParamTable t = make_param_table(cfg, shard_layout(lr), table.placement());
    for (size_t i = 0; i < t.specs().size(); ++i) {
      const ParamSpec& p = t.specs()[i];
      if (!p.writer) continue;
      buf.resize(p.numel);
      if (r == 0) {
        std::copy_n(params + p.offset, p.numel, buf.begin());
      } else {
        chunks(p.numel, [&](size_t at, int n) {
          MPI_CHECK(MPI_Recv(buf.data() + at, n, MPI_FLOAT, r, static_cast<int>(i), w,
                             MPI_STATUS_IGNORE));
        });
      }
      put(p, buf);
    }
  }
}

}  // namespace

std::map<std::string, std::vector<float>> gather_params(const comm::ProcessGroups& g,
                                                        const Config& cfg, const ParamTable& table,
                                                        const float* params, comm::Watchdog* wd) {
  std::map<std::string, std::vector<float>> out;
  if (g.layout().world_rank == 0)
    for (const ParamSpec& p : table.specs()) out[p.name].assign(p.global_numel(), 0.0f);
  gather_parts(g, cfg, table, params, wd, [&](const ParamSpec& p, const std::vector<float>& buf) {
    std::vector<float>& dst = out[p.name];
    p.for_each_run([&](int64_t gi, int64_t loc, int64_t n) {
      std::copy_n(buf.begin() + loc, n, dst.begin() + gi);
    });
  });
  return out;
}

std::vector<float> gather_flat_params(const comm::ProcessGroups& g, const Config& cfg,
                                      const ParamTable& table, const float* params,
                                      comm::Watchdog* wd) {
  std::vector<float> flat;
  std::map<std::string, size_t> offset;  // a tensor's place in the one-rank buffer
  if (g.layout().world_rank == 0) {
    const ParamTable whole = make_param_table(cfg);
    flat.assign(whole.total_numel(), 0.0f);
    for (const ParamSpec& p : whole.specs()) offset[p.name] = p.offset;
  }
  gather_parts(g, cfg, table, params, wd, [&](const ParamSpec& p, const std::vector<float>& buf) {
    const size_t at = offset.at(p.name);
    p.for_each_run([&](int64_t gi, int64_t loc, int64_t n) {
      std::copy_n(buf.begin() + loc, n, flat.begin() + static_cast<std::ptrdiff_t>(at) + gi);
    });
  });
  return flat;
}

std::vector<std::string> diverged_replicas(const comm::ProcessGroups& g, const ParamTable& table,
                                           const float* params, comm::Watchdog* wd) {
  std::vector<std::string> out;
  for (const ParamSpec& p : table.specs()) {
    const comm::Comm& c = p.group == ParamGroup::kExpert  ? g.edp()
                          : p.tp_mode == TpMode::kSharded ? g.dp()
                                                          : g.world();
    const uint64_t h = philox::fnv1a64(reinterpret_cast<const char*>(params + p.offset),
                                       p.numel * sizeof(float));  // of the part's bytes
    std::vector<int64_t> all(static_cast<size_t>(c.size()), 0);
    all[static_cast<size_t>(c.rank())] = static_cast<int64_t>(h);
    comm::allreduce_sum(std::span<int64_t>(all), c, wd, "replica check");
    if (std::any_of(all.begin(), all.end(), [&](int64_t v) { return v != all[0]; }))
      out.push_back(p.name);
  }
  return out;
}

}  // namespace sy

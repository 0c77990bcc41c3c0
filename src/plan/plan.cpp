#include "src/plan/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

namespace sy::plan {

namespace {

std::string ms(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 0.01 ? "%.3f" : s < 1 ? "%.2f" : "%.0f", s * 1e3);
  return buf;
}

std::string num(double v, const char* fmt) {
  char buf[48];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

std::string format_bytes(double b) {
  const double gib = b / 1073741824.0;
  if (b >= 1e15) return num(b, "%.3g B") + " (" + num(gib, "%.3g GiB") + ")";
  if (gib >= 1024) return num(gib / 1024, "%.2f TiB");
  if (gib >= 1) return num(gib, "%.2f GiB");
  return num(b / 1048576.0, "%.1f MiB");
}

Evaluation evaluate(const Config& config, const PlanLayout& lay, const Cluster& cluster,
                    const RoutingStats& routing, const MemoryInputs& in, double memory_per_rank) {
  const Config cfg = config_for(config, lay);
  Evaluation e;
  e.layout = lay;
  e.memory_available = memory_per_rank;
  e.problem = layout_problem(cfg, lay);
  if (!e.problem.empty()) {
    e.runs = false;
    return e;
  }
  MemoryInputs rank_in = in;  // with the threads a rank of this layout runs (step_time.h)
  rank_in.threads = rank_compute(cluster, lay.world).threads;
  rank_in.host_ranks = static_cast<double>(std::min(lay.world, lay.ranks_per_node));
  e.memory = predict_memory(cfg, lay, routing, rank_in);
  // A GPU's memory holds no host data (the token data, the evaluation sample).
  if (cfg.device == Device::kCuda)
    std::erase_if(e.memory.terms, [](const MemoryTerm& t) { return t.host; });
  e.time = predict_step(cfg, lay, cluster, routing);
  e.tokens_per_s = static_cast<double>(cfg.train.global_batch) *
                   static_cast<double>(cfg.model.seq_len) / e.time.total();
  const auto index = index_problems(cfg, lay);
  if (!index.empty()) {
    e.problem = index.front().what + " exceeds the 32-bit index the code uses";
    e.runs = false;
  } else if (memory_per_rank > 0 && e.memory.total() > memory_per_rank) {
    e.problem = "needs " + format_bytes(e.memory.total()) +
                " per rank (largest: " + e.memory.largest().name + ", " +
                format_bytes(e.memory.largest().bytes) + "; shrink it with " +
                e.memory.largest().keys + ")";
  }
  return e;
}

PlanResult plan_layouts(const Config& cfg, int64_t world, const Cluster& cluster,
                        const RoutingStats& routing, const MemoryInputs& in,
                        double memory_per_rank) {
  PlanResult r;
  const int64_t rpn = std::min(world, cluster.ranks_per_node);
  for (const PlanLayout& lay : enumerate_layouts(cfg, world, rpn)) {
    Evaluation e = evaluate(cfg, lay, cluster, routing, in, memory_per_rank);
    (e.fits() ? r.ranked : r.dropped).push_back(std::move(e));
  }
  std::stable_sort(r.ranked.begin(), r.ranked.end(), [](const Evaluation& a, const Evaluation& b) {
    return a.tokens_per_s > b.tokens_per_s;
  });
  return r;
}

std::string format_evaluation(const Evaluation& e) {
  std::ostringstream o;
  const StepTime& t = e.time;
  o << "layout " << e.layout.describe() << " on " << e.layout.world << " ranks ("
    << e.layout.nodes() << " node(s) of " << e.layout.ranks_per_node << ")\n";
  if (!e.problem.empty() && e.memory.terms.empty()) {
    o << "  cannot run: " << e.problem << "\n";
    return o.str();
  }
  o << "  step " << ms(t.total()) << " ms, " << num(e.tokens_per_s, "%.0f") << " tokens/s\n"
    << "  compute " << ms(t.compute()) << " ms (attention " << ms(t.attention) << ", experts "
    << ms(t.experts) << ", dense " << ms(t.dense) << ", elementwise " << ms(t.elementwise)
    << ", fixed per layer " << ms(t.overhead) << ", optimizer " << ms(t.optimizer) << ")\n"
    << "  all-to-all " << ms(t.a2a()) << " ms (intra " << ms(t.a2a_intra) << ", inter "
    << ms(t.a2a_inter) << ", waiting for other ranks " << ms(t.a2a_wait) << ", hidden by overlap "
    << ms(t.overlap_saved) << "); per rank and step " << num(t.a2a_inter_bytes, "%.0f")
    << " B inter-node, " << num(t.a2a_intra_bytes, "%.0f") << " B intra-node\n"
    << "  sync " << ms(t.sync()) << " ms (tp " << ms(t.tp) << ", etp " << ms(t.etp)
    << ", gradients " << ms(t.grad_sync) << ", waiting for other ranks " << ms(t.sync_wait) << ")\n"
    << "  memory per rank " << format_bytes(e.memory.total());
  if (e.memory_available > 0) o << " of " << format_bytes(e.memory_available);
  o << "\n";
  for (const MemoryTerm& m : e.memory.terms)
    o << "    " << num(m.bytes / 1048576.0, "%12.1f") << " MiB  " << m.name << "\n";
  if (!e.problem.empty()) o << "  does not fit: " << e.problem << "\n";
  return o.str();
}

nlohmann::json evaluation_json(const Evaluation& e) {
  const StepTime& t = e.time;
  nlohmann::json terms = nlohmann::json::object();
  for (const MemoryTerm& m : e.memory.terms) terms[m.name] = m.bytes;
  return {{"layout", e.layout.describe()},
          {"set_flags", e.layout.set_flags()},
          {"world", e.layout.world},
          {"problem", e.problem},
          {"step_ms", t.total() * 1e3},
          {"tokens_per_s", e.tokens_per_s},
          {"compute_ms", t.compute() * 1e3},
          {"a2a_ms", t.a2a() * 1e3},
          {"a2a_intra_ms", t.a2a_intra * 1e3},
          {"a2a_inter_ms", t.a2a_inter * 1e3},
          {"a2a_wait_ms", t.a2a_wait * 1e3},
          {"sync_ms", t.sync() * 1e3},
          {"sync_wait_ms", t.sync_wait * 1e3},
          {"compute_terms_ms",
           {{"attention", t.attention * 1e3},
            {"experts", t.experts * 1e3},
            {"dense", t.dense * 1e3},
            {"elementwise", t.elementwise * 1e3},
            {"fixed per layer", t.overhead * 1e3},
            {"optimizer", t.optimizer * 1e3}}},
          {"a2a_internode_bytes", t.a2a_inter_bytes},
          {"a2a_intranode_bytes", t.a2a_intra_bytes},
          {"memory_bytes", e.memory.total()},
          {"memory_terms", terms}};
}

namespace {

// The largest world <= `most` that any layout of cfg runs on, 0 if none: dp <= train.global_batch
// and tp <= model.n_heads bound it, so the scan starts at their product.
int64_t largest_world_with_layouts(const Config& cfg, int64_t most, const Cluster& cluster,
                                   int64_t step = 1) {
  most = std::min(most, cfg.train.global_batch * cfg.model.n_heads);
  for (int64_t w = most / step * step; w >= step; w -= step)
    if (!enumerate_layouts(cfg, w, std::min(w, cluster.ranks_per_node)).empty()) return w;
  return 0;
}

}  // namespace

std::string format_plan(const Config& cfg, const PlanResult& r, int64_t world,
                        const Cluster& cluster, const RoutingStats& routing, int top) {
  std::ostringstream o;
  const int64_t rpn = std::min(world, cluster.ranks_per_node);
  o << "# switchyard plan: " << cfg.run.name << " on cluster '" << cluster.name << "', " << world
    << " ranks (" << (world + rpn - 1) / rpn << " node(s) of " << rpn << "), routing "
    << routing.source << "\n# " << r.ranked.size() << " layouts fit, " << r.dropped.size()
    << " do not; times in ms per optimizer step of " << cfg.train.global_batch
    << " sequences; the all-to-all split into its intra-node and inter-node legs, `hidden` the "
       "part overlapped with expert GEMMs (moe.overlap_chunks), `a2a wait` the time a mean rank "
       "waits in it for the busiest rank (or, on one host, its turn on the cores)\n";
  char line[512];
  std::snprintf(line, sizeof line, "%3s %10s %9s %8s %8s %8s %8s %8s %8s %8s %10s  %-34s %s\n", "#",
                "tokens/s", "step", "compute", "a2a in", "a2a out", "a2a wait", "hidden", "sync",
                "a2a %", "mem/rank", "layout", "flags");
  o << line;
  if (r.ranked.empty() && r.dropped.empty()) {
    o << "# no layout of this config runs on " << world
      << " ranks: tp must divide model.n_heads and the ranks, ep moe.num_experts, dp "
         "train.global_batch, the ranks must fill whole nodes, and route_groups: nodes needs "
         "each expert on one node\n";
    const int64_t most = largest_world_with_layouts(cfg, world, cluster);
    const int64_t nodes =
        largest_world_with_layouts(cfg, world, cluster, cluster.ranks_per_node) / rpn;
    if (most > 0) {
      // Past global_batch x n_heads no layout runs; below it a larger count may (--ranks 5 of
      // tiny.yaml: 4 runs, and so does 8).
      const bool above_all = world >= cfg.train.global_batch * cfg.model.n_heads;
      o << (above_all ? "# the most ranks a layout of it can use is "
                      : "# the largest rank count below " + std::to_string(world) +
                            " that a layout of it runs on is ")
        << most << " (--ranks " << most << ")";
      if (nodes > 0)
        o << "; in whole nodes of " << rpn << ": --nodes " << nodes << " (" << nodes * rpn
          << " ranks)";
      o << (above_all ? "; more ranks need a larger train.global_batch (dp = ranks / tp divides "
                        "it, tp divides model.n_heads)\n"
                      : "; a rank count runs where dp = ranks / tp divides train.global_batch "
                        "and tp divides model.n_heads\n");
    }
  }
  int shown = 0;
  for (const Evaluation& e : r.ranked) {
    if (shown++ >= top) break;
    const StepTime& t = e.time;
    std::snprintf(
        line, sizeof line, "%3d %10.0f %9s %8s %8s %8s %8s %8s %8s %7.1f%% %10s  %-34s %s\n", shown,
        e.tokens_per_s, ms(t.total()).c_str(), ms(t.compute()).c_str(), ms(t.a2a_intra).c_str(),
        ms(t.a2a_inter).c_str(), ms(t.a2a_wait).c_str(), ms(t.overlap_saved).c_str(),
        ms(t.sync()).c_str(), 100 * t.a2a() / t.total(), format_bytes(e.memory.total()).c_str(),
        e.layout.describe().c_str(), e.layout.set_flags().c_str());
    o << line;
  }
  if (!r.dropped.empty()) {
    std::map<std::string, std::vector<std::string>> by_term;
    for (const Evaluation& e : r.dropped)
      by_term[e.memory.terms.empty() ? e.problem : e.memory.largest().name].push_back(
          e.layout.describe() +
          (e.memory.terms.empty()
               ? ""
               : " (needs " + format_bytes(e.memory.total()) + ", " +
                     format_bytes(e.memory.largest().bytes) + " of it this term)"));
    o << "# do not fit in " << format_bytes(r.dropped.front().memory_available)
      << " per rank, by largest term:\n";
    for (const auto& [term, list] : by_term) {
      o << "#   " << term << ": " << list.size() << " layout(s), e.g. " << list.front() << "\n";
    }
  }
  return o.str();
}

std::vector<SweepPoint> sweep_nodes(const Config& cfg, const std::vector<int64_t>& nodes,
                                    const Cluster& cluster, const RoutingStats& routing,
                                    const MemoryInputs& in,
                                    const std::function<double(int64_t)>& memory_per_rank) {
  std::vector<SweepPoint> out;
  for (int64_t n : nodes) {
    SweepPoint p;
    p.nodes = n;
    p.ranks = n * cluster.ranks_per_node;
    const PlanResult r = plan_layouts(cfg, p.ranks, cluster, routing, in, memory_per_rank(p.ranks));
    p.valid = static_cast<int64_t>(r.ranked.size() + r.dropped.size());
    p.fitting = static_cast<int64_t>(r.ranked.size());
    for (const Evaluation& e : r.ranked) {
      if (e.layout.ep_nodes() != n) continue;
      p.found = true;
      p.best = e;
      break;
    }
    if (p.found) {
      p.a2a_share = p.best.time.a2a() / p.best.time.total();
      p.tokens_per_s_per_rank = p.best.tokens_per_s / static_cast<double>(p.ranks);
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::string format_sweep(const std::vector<SweepPoint>& points, const Cluster& cluster) {
  std::ostringstream o;
  o << "# expert layer spanning N nodes of cluster '" << cluster.name
    << "': the fastest fitting layout whose EP group covers every node\n";
  char line[400];
  std::snprintf(line, sizeof line, "%6s %6s %12s %14s %8s %9s %9s  %s\n", "nodes", "ranks",
                "tokens/s", "tokens/s/rank", "a2a %", "step ms", "a2a ms", "layout");
  o << line;
  for (const SweepPoint& p : points) {
    if (!p.found) {
      std::snprintf(line, sizeof line,
                    "%6lld %6lld  (%lld valid layouts, %lld fit in memory, none of those spans "
                    "all nodes)\n",
                    static_cast<long long>(p.nodes), static_cast<long long>(p.ranks),
                    static_cast<long long>(p.valid), static_cast<long long>(p.fitting));
    } else {
      std::snprintf(line, sizeof line, "%6lld %6lld %12.0f %14.1f %7.1f%% %9s %9s  %s\n",
                    static_cast<long long>(p.nodes), static_cast<long long>(p.ranks),
                    p.best.tokens_per_s, p.tokens_per_s_per_rank, 100 * p.a2a_share,
                    ms(p.best.time.total()).c_str(), ms(p.best.time.a2a()).c_str(),
                    p.best.layout.describe().c_str());
    }
    o << line;
  }
  return o.str();
}

}  // namespace sy::plan

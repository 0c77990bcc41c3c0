#include "src/plan/layout.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace sy::plan {

namespace {

// The divisors of n in increasing order, in O(sqrt n): a cluster file of 2^40 ranks (which it
// may hold) took the planner some 45 hours of a loop to 2^40 (QA).
std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> low, high;
  for (int64_t d = 1; d <= n / d; ++d)
    if (n % d == 0) {
      low.push_back(d);
      if (d != n / d) high.push_back(n / d);
    }
  low.insert(low.end(), high.rbegin(), high.rend());
  return low;
}

}  // namespace

int64_t PlanLayout::ep_nodes() const {
  std::set<int64_t> nodes;
  for (int64_t p = 0; p < ep; ++p) nodes.insert(p * etp / ranks_per_node);
  return static_cast<int64_t>(nodes.size());
}

bool PlanLayout::spans_nodes(int64_t stride, int64_t size) const {
  return size > 1 && (size - 1) * stride / ranks_per_node != 0;
}

std::string PlanLayout::describe() const {
  std::ostringstream o;
  o << "dp=" << dp() << " tp=" << tp << " ep=" << ep << " etp=" << etp << " mb=" << micro_batch
    << (zero1 ? " zero1" : "");
  if (ep > 1)
    o << (hierarchical ? std::string(" hier/") + to_string(internode) : std::string(" flat"));
  return o.str();
}

std::string PlanLayout::set_flags() const {
  std::ostringstream o;
  o << "--set train.micro_batch=" << micro_batch << " --set parallel.tp=" << tp
    << " --set parallel.ep=" << ep << " --set parallel.etp=" << etp
    << " --set parallel.zero1=" << (zero1 ? "true" : "false");
  // The nodes the plan assumed: on real nodes MPI finds them anyway (jobs/train.sbatch sets the
  // same), on one host (emulated nodes) the run needs it to span them at all.
  if (nodes() > 1) {
    o << " --set parallel.ranks_per_node=" << ranks_per_node;
  } else if (pin_nodes) {  // one node, over the config's emulated ones
    o << " --set parallel.ranks_per_node=" << world;
  }
  if (ep > 1 && !gpu) {
    o << " --set parallel.a2a=" << (hierarchical ? "hierarchical" : "flat");
    if (hierarchical) o << " --set parallel.internode=" << to_string(internode);
  }
  return o.str();
}

Config config_for(const Config& cfg, const PlanLayout& lay) {
  Config c = cfg;
  c.train.micro_batch = lay.micro_batch;
  return c;
}

PlanLayout layout_of_config(const Config& cfg, int64_t world, int64_t host_ranks) {
  PlanLayout l;
  l.micro_batch = cfg.train.micro_batch;
  l.world = world;
  l.ranks_per_node = cfg.parallel.ranks_per_node > 0
                         ? cfg.parallel.ranks_per_node
                         : std::min(world, std::max<int64_t>(1, host_ranks));
  l.tp = cfg.parallel.tp;
  l.ep = cfg.parallel.ep;
  l.etp = cfg.parallel.etp;
  l.zero1 = cfg.parallel.zero1;
  l.gpu = cfg.device == Device::kCuda;
  const bool spans = l.ep > 0 && l.etp > 0 && l.ep_nodes() > 1;
  l.internode = l.gpu ? InternodeKind::kMpi : cfg.parallel.internode;
  l.hierarchical = l.gpu ? spans : a2a_is_hierarchical(cfg.parallel.a2a, spans);
  return l;
}

int64_t route_groups_of(const Config& cfg, const PlanLayout& lay) {
  return cfg.moe.route_groups.nodes ? lay.ep_nodes() : cfg.moe.route_groups.count;
}

std::string layout_problem(const Config& cfg, const PlanLayout& l) {
  const auto& m = cfg.model;
  const auto& moe = cfg.moe;
  auto s = [](int64_t v) { return std::to_string(v); };
  if (l.tp < 1 || l.ep < 1 || l.etp < 1) return "parallel sizes must be >= 1";
  // Nodes are whole: the trainer refuses parallel.ranks_per_node that does not divide the world
  // (comm::validate_layout), and the cost model's nodes are alike.
  if (l.nodes() > 1 && l.world % l.ranks_per_node != 0)
    return "parallel.ranks_per_node=" + s(l.ranks_per_node) + " does not divide the world size " +
           s(l.world);
  if (l.world % l.tp != 0) return "parallel.tp=" + s(l.tp) + " does not divide " + s(l.world);
  if (l.world % (l.ep * l.etp) != 0)
    return "parallel.ep * parallel.etp = " + s(l.ep * l.etp) + " does not divide " + s(l.world);
  if (m.n_heads % l.tp != 0) return "parallel.tp does not divide model.n_heads";
  if (moe.shared_experts > 0 && moe.ffn_hidden % l.tp != 0)
    return "parallel.tp does not divide moe.ffn_hidden";
  if (moe.num_experts % l.ep != 0) return "parallel.ep does not divide moe.num_experts";
  if (moe.ffn_hidden % l.etp != 0) return "parallel.etp does not divide moe.ffn_hidden";
  if (l.micro_batch < 1 || cfg.train.global_batch % (l.dp() * l.micro_batch) != 0)
    return "train.global_batch is not a multiple of dp * train.micro_batch = " +
           s(l.dp() * l.micro_batch);
  // Every expert-parallel group (a block of ep * etp consecutive ranks) lies within one node or
  // spans whole nodes: then all groups are alike, as the cost model (group 0) and the trainer's
  // one a2a algorithm for the run (auto: hierarchical when any group spans nodes) assume.
  if (l.nodes() > 1 && l.ep > 1 && (l.ep * l.etp) % l.ranks_per_node != 0 &&
      l.ranks_per_node % (l.ep * l.etp) != 0)
    return "the expert-parallel groups of parallel.ep * parallel.etp = " + s(l.ep * l.etp) +
           " ranks split unevenly over nodes of " + s(l.ranks_per_node) + " ranks";
  if (l.hierarchical && (l.ep % l.ep_nodes() != 0))
    return "hierarchical all-to-all needs the same number of EP ranks on every node";
  if (moe.route_groups.nodes) {
    // Each expert's etp ranks on one node (the trainer's resolve_route_groups): etp blocks of
    // consecutive ranks stay inside nodes of ranks_per_node when it is a multiple of etp.
    if (l.nodes() > 1 && l.etp > 1 && l.ranks_per_node % l.etp != 0)
      return "route_groups: nodes needs each expert's parallel.etp ranks on one node";
    const int64_t R = route_groups_of(cfg, l), M = moe.route_groups_topk;
    if (moe.num_experts % R != 0) return "route_groups: nodes = " + s(R) + " does not divide E";
    if (M > R) return "moe.route_groups_topk > the " + s(R) + " nodes of the EP group";
    if (M * (moe.num_experts / R) < moe.top_k) return "too few experts on route_groups_topk nodes";
  }
  if (cfg.device == Device::kCuda && (l.etp != 1 || l.zero1))
    return "device: cuda runs etp = 1 without ZeRO-1";
  return "";
}

std::vector<PlanLayout> enumerate_layouts(const Config& cfg, int64_t world,
                                          int64_t ranks_per_node) {
  std::vector<PlanLayout> out;
  for (int64_t tp : divisors(world))
    for (int64_t ep : divisors(world))
      for (int64_t etp : divisors(world / ep)) {
        PlanLayout l;
        l.world = world;
        l.ranks_per_node = ranks_per_node;
        l.pin_nodes = cfg.parallel.ranks_per_node > 0;
        l.gpu = cfg.device == Device::kCuda;
        l.tp = tp;
        l.ep = ep;
        l.etp = etp;
        if (cfg.train.global_batch % l.dp() != 0) continue;
        const int64_t per_dp = cfg.train.global_batch / l.dp();
        l.micro_batch = std::min(cfg.train.micro_batch, per_dp);
        while (per_dp % l.micro_batch != 0) --l.micro_batch;
        if (!layout_problem(cfg, l).empty()) continue;
        const bool any_dp = l.dp() > 1 || l.edp() > 1;
        for (bool zero1 : {false, true}) {
          if (zero1 && !any_dp) continue;
          l.zero1 = zero1;
          std::vector<std::pair<bool, InternodeKind>> a2a = {{false, InternodeKind::kUcx}};
          if (l.gpu && ep > 1 && l.ep_nodes() > 1) {
            a2a = {{true, InternodeKind::kMpi}};  // the only exchange the GPU has
          } else if (ep > 1 && l.ep_nodes() > 1) {
            a2a.push_back({true, InternodeKind::kUcx});
            a2a.push_back({true, InternodeKind::kMpi});
          }
          for (auto [hier, inter] : a2a) {
            l.hierarchical = hier;
            l.internode = inter;
            if (layout_problem(cfg, l).empty()) out.push_back(l);
          }
        }
      }
  return out;
}

}  // namespace sy::plan

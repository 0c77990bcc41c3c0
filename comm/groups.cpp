#include "comm/groups.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include "src/core/error.h"

namespace sy::comm {

namespace {

[[noreturn]] void usage(const std::string& msg) {
  throw UsageError(msg);
}

}  // namespace

void validate_world_layout(int world_size, const ParallelSizes& sizes) {
  std::ostringstream os;
  if (sizes.tp < 1) usage("parallel.tp=" + std::to_string(sizes.tp) + " must be at least 1");
  if (sizes.ep < 1) usage("parallel.ep=" + std::to_string(sizes.ep) + " must be at least 1");
  if (sizes.etp < 1) usage("parallel.etp=" + std::to_string(sizes.etp) + " must be at least 1");
  if (sizes.ranks_per_node < 0) {
    usage("parallel.ranks_per_node=" + std::to_string(sizes.ranks_per_node) +
          " must be 0 (as MPI reports) or positive");
  }
  if (world_size % sizes.tp != 0) {
    os << "parallel.tp=" << sizes.tp << " does not divide the world size " << world_size;
    usage(os.str());
  }
  if (world_size % sizes.ep != 0) {
    os << "parallel.ep=" << sizes.ep << " does not divide the world size " << world_size;
    usage(os.str());
  }
  if (world_size % (sizes.ep * sizes.etp) != 0) {
    os << "parallel.ep * parallel.etp = " << sizes.ep << " * " << sizes.etp << " = "
       << sizes.ep * sizes.etp << " does not divide the world size " << world_size;
    usage(os.str());
  }
  if (sizes.ranks_per_node > 0 && world_size % sizes.ranks_per_node != 0) {
    os << "parallel.ranks_per_node=" << sizes.ranks_per_node << " does not divide the world size "
       << world_size;
    usage(os.str());
  }
}

void validate_layout(int world_size, int tp, int ep, int etp, int num_experts, int n_heads,
                     int ffn_hidden, int ranks_per_node) {
  validate_world_layout(world_size, ParallelSizes{tp, ep, etp, ranks_per_node});
  std::ostringstream os;
  if (num_experts % ep != 0) {
    os << "moe.num_experts=" << num_experts << " is not divisible by parallel.ep=" << ep;
    usage(os.str());
  }
  if (n_heads % tp != 0) {
    os << "model.n_heads=" << n_heads << " is not divisible by parallel.tp=" << tp;
    usage(os.str());
  }
  if (ffn_hidden % etp != 0) {
    os << "moe.ffn_hidden=" << ffn_hidden << " is not divisible by parallel.etp=" << etp;
    usage(os.str());
  }
}

RankCoords rank_coords(int global_rank, int tp, int ep, int etp) {
  RankCoords c;
  c.tp_rank = global_rank % tp;
  c.dp_rank = global_rank / tp;
  c.etp_rank = global_rank % etp;
  c.ep_rank = (global_rank / etp) % ep;
  c.edp_rank = global_rank / (ep * etp);
  return c;
}

std::string describe(const Layout& layout, int num_experts, bool contiguous_experts) {
  SY_CHECK(layout.ep > 0 && num_experts % layout.ep == 0,
           "num_experts=" << num_experts << " ep=" << layout.ep);
  const int local_experts = num_experts / layout.ep;
  std::ostringstream os;
  os << "layout: world=" << layout.world_size << " dp=" << layout.dp << " tp=" << layout.tp
     << " | edp=" << layout.edp << " ep=" << layout.ep << " etp=" << layout.etp
     << " | nodes=" << layout.num_nodes << (layout.emulated_nodes ? " (emulated)" : "")
     << " | experts=" << num_experts << " (" << local_experts << " per EP rank"
     << (contiguous_experts ? "" : ", placed per layer by parallel.expert_placement") << ")\n";
  for (int r = 0; r < layout.world_size; ++r) {
    const RankCoords c = rank_coords(r, layout.tp, layout.ep, layout.etp);
    const int first = c.ep_rank * local_experts;
    os << "  rank " << r << ": dp=" << c.dp_rank << " tp=" << c.tp_rank << " | edp=" << c.edp_rank
       << " ep=" << c.ep_rank << " etp=" << c.etp_rank;
    if (r < static_cast<int>(layout.node_of_rank.size()))
      os << " | node " << layout.node_of_rank[r];
    const std::string shard = std::to_string(c.etp_rank) + "/" + std::to_string(layout.etp);
    if (contiguous_experts) {
      os << " | experts " << first;
      if (local_experts > 1) os << "-" << first + local_experts - 1;
      if (layout.etp > 1) os << " (shard " << shard << ")";
    } else if (layout.etp > 1) {
      os << " | expert shard " << shard;
    }
    os << "\n";
  }
  return os.str();
}

ProcessGroups::ProcessGroups(MPI_Comm world, const ParallelSizes& sizes) {
  int world_size = 0, my_rank = 0;
  MPI_CHECK(MPI_Comm_size(world, &world_size));
  MPI_CHECK(MPI_Comm_rank(world, &my_rank));
  validate_world_layout(world_size, sizes);  // every rank throws the same, before any comm exists

  Layout& L = layout_;
  L.world_size = world_size;
  L.world_rank = my_rank;
  L.tp = sizes.tp;
  L.dp = world_size / sizes.tp;
  L.ep = sizes.ep;
  L.etp = sizes.etp;
  L.edp = world_size / (sizes.ep * sizes.etp);
  L.coords = rank_coords(my_rank, L.tp, L.ep, L.etp);
  const RankCoords& c = L.coords;

  world_ = Comm::dup(world);
  const MPI_Comm w = world_.get();
  // Keys are the coordinate inside the group, so a group's rank equals that coordinate.
  tp_ = Comm::split(w, c.dp_rank, c.tp_rank);
  dp_ = Comm::split(w, c.tp_rank, c.dp_rank);
  etp_ = Comm::split(w, c.edp_rank * L.ep + c.ep_rank, c.etp_rank);
  ep_ = Comm::split(w, c.edp_rank * L.etp + c.etp_rank, c.ep_rank);
  edp_ = Comm::split(w, c.ep_rank * L.etp + c.etp_rank, c.edp_rank);

  // Nodes.
  L.emulated_nodes = sizes.ranks_per_node > 0;
  if (L.emulated_nodes) {
    node_ = Comm::split(w, my_rank / sizes.ranks_per_node, my_rank);
  } else {
    MPI_Comm shared = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split_type(w, MPI_COMM_TYPE_SHARED, my_rank, MPI_INFO_NULL, &shared));
    node_ = Comm(shared);
  }
  L.local_rank = node_.rank();
  L.node_size = node_.size();

  // Name each node by its lowest global rank, then number the names in increasing order. Shared
  // memory nodes need not be blocks of consecutive ranks (round-robin launchers).
  int node_leader = my_rank;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &node_leader, 1, MPI_INT, MPI_MIN, node_.get()));
  std::vector<int> leader_of_rank(static_cast<size_t>(world_size));
  MPI_CHECK(MPI_Allgather(&node_leader, 1, MPI_INT, leader_of_rank.data(), 1, MPI_INT, w));
  std::vector<int> leaders = leader_of_rank;
  std::sort(leaders.begin(), leaders.end());
  leaders.erase(std::unique(leaders.begin(), leaders.end()), leaders.end());
  L.num_nodes = static_cast<int>(leaders.size());
  L.node_of_rank.resize(static_cast<size_t>(world_size));
  for (int r = 0; r < world_size; ++r) {
    const auto it = std::lower_bound(leaders.begin(), leaders.end(), leader_of_rank[r]);
    L.node_of_rank[r] = static_cast<int>(it - leaders.begin());
  }
  L.node_idx = L.node_of_rank[static_cast<size_t>(my_rank)];
  node_peers_ = Comm::split(w, L.local_rank, L.node_idx);

  // Names show up in MPI's error messages (and in install_abort_error_handler's).
  const std::pair<const Comm*, const char*> names[] = {
      {&world_, "sy.world"}, {&dp_, "sy.dp"},
      {&tp_, "sy.tp"},       {&ep_, "sy.ep"},
      {&etp_, "sy.etp"},     {&edp_, "sy.edp"},
      {&node_, "sy.node"},   {&node_peers_, "sy.node_peers"}};
  for (const auto& [comm, name] : names) MPI_CHECK(MPI_Comm_set_name(comm->get(), name));
}

}  // namespace sy::comm

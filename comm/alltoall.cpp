// The transport-independent parts of the token exchange: argument checks, the node topology,
// small MPI helpers and the factory.
#include "comm/alltoall.h"

#include <algorithm>
#include <climits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "comm/exchange_detail.h"
#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm {

namespace detail {
// The two transports (comm/exchange_flat.cpp, comm/exchange_hier.cpp).
std::unique_ptr<TokenExchange> make_flat_exchange(const ExchangeOptions& opt, Topology topo);
std::unique_ptr<TokenExchange> make_hier_exchange(const ExchangeOptions& opt, Topology topo);
}  // namespace detail

std::size_t elem_bytes(ElemType t) {
  return t == ElemType::kF32 ? sizeof(float) : sizeof(double);
}

const char* to_string(A2aAlgo algo) {
  return algo == A2aAlgo::kFlat ? "flat" : "hierarchical";
}

const char* to_string(Internode internode) {
  return internode == Internode::kUcx ? "ucx" : "mpi";
}

// ---- typed entry points: the size checks every transport shares ----

namespace {
template <class T>
constexpr ElemType elem_type_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "the token exchange moves float or double rows");
  return std::is_same_v<T, float> ? ElemType::kF32 : ElemType::kF64;
}
}  // namespace

template <class T>
void TokenExchange::dispatch_typed(const ExchangeHandle& h, std::span<const T> x, std::span<T> recv,
                                   int64_t width) {
  SY_CHECK(h.state != nullptr, "dispatch with a handle that layout() did not fill");
  SY_CHECK(width >= 0, "width=" << width);
  SY_CHECK(static_cast<int64_t>(x.size()) == h.num_tokens * width,
           "dispatch x holds " << x.size() << " elements, the handle wants " << h.num_tokens
                               << " tokens of " << width);
  SY_CHECK(static_cast<int64_t>(recv.size()) == h.num_recv * width,
           "dispatch recv holds " << recv.size() << " elements, the handle wants " << h.num_recv
                                  << " rows of " << width);
  do_dispatch(h, x.data(), recv.data(), width, elem_type_of<T>());
}

template <class T>
void TokenExchange::combine_typed(const ExchangeHandle& h, std::span<const T> y, std::span<T> out,
                                  int64_t width) {
  SY_CHECK(h.state != nullptr, "combine with a handle that layout() did not fill");
  SY_CHECK(width >= 0, "width=" << width);
  SY_CHECK(static_cast<int64_t>(y.size()) == h.num_recv * width,
           "combine y holds " << y.size() << " elements, the handle wants " << h.num_recv
                              << " rows of " << width);
  SY_CHECK(static_cast<int64_t>(out.size()) == h.num_tokens * width,
           "combine out holds " << out.size() << " elements, the handle wants " << h.num_tokens
                                << " tokens of " << width);
  do_combine(h, y.data(), out.data(), width, elem_type_of<T>());
}

void TokenExchange::dispatch(const ExchangeHandle& h, std::span<const float> x,
                             std::span<float> recv, int64_t width) {
  dispatch_typed(h, x, recv, width);
}
void TokenExchange::dispatch(const ExchangeHandle& h, std::span<const double> x,
                             std::span<double> recv, int64_t width) {
  dispatch_typed(h, x, recv, width);
}
void TokenExchange::combine(const ExchangeHandle& h, std::span<const float> y, std::span<float> out,
                            int64_t width) {
  combine_typed(h, y, out, width);
}
void TokenExchange::combine(const ExchangeHandle& h, std::span<const double> y,
                            std::span<double> out, int64_t width) {
  combine_typed(h, y, out, width);
}

// ---- MPI counts ----

namespace detail {

int checked_int(int64_t value, const char* what, int peer) {
  if (value > INT_MAX) {
    std::ostringstream os;
    os << "rank " << world_rank() << ": expert all-to-all " << what << " for EP peer " << peer
       << " is " << value << " rows, more than MPI's int count allows (" << INT_MAX
       << "); use a smaller train.micro_batch";
    throw std::runtime_error(os.str());
  }
  return static_cast<int>(value);
}

MPI_Datatype mpi_type(ElemType t) {
  return t == ElemType::kF32 ? MPI_FLOAT : MPI_DOUBLE;
}

}  // namespace detail

void rows_to_mpi_counts(std::span<const int64_t> rows_per_rank, std::span<int> counts,
                        std::span<int> displs) {
  SY_CHECK(counts.size() == rows_per_rank.size() && displs.size() == rows_per_rank.size(),
           "counts/displs must have one entry per rank");
  int64_t displ = 0;
  for (std::size_t p = 0; p < rows_per_rank.size(); ++p) {
    const int64_t count = rows_per_rank[p];
    counts[p] = detail::checked_int(count, "count", static_cast<int>(p));
    displs[p] = detail::checked_int(displ, "displacement", static_cast<int>(p));
    displ += count;
  }
}

namespace detail {

std::vector<int64_t> alltoallv_records(MPI_Comm comm, std::span<const int64_t> data,
                                       std::span<const int64_t> rows, int record,
                                       std::vector<int64_t>& recv_rows, Watchdog* watchdog,
                                       const char* what) {
  const std::size_t P = rows.size();
  recv_rows.assign(P, 0);
  std::vector<int> send_counts(P), send_displs(P), recv_counts(P), recv_displs(P);
  WatchdogScope scope(watchdog, what);
  MPI_CHECK(MPI_Alltoall(rows.data(), 1, MPI_INT64_T, recv_rows.data(), 1, MPI_INT64_T, comm));
  rows_to_mpi_counts(rows, send_counts, send_displs);
  rows_to_mpi_counts(recv_rows, recv_counts, recv_displs);
  int64_t total = 0;
  for (int64_t r : recv_rows) total += r;
  SY_CHECK(static_cast<int64_t>(data.size()) ==
               (P ? (int64_t{send_displs[P - 1]} + send_counts[P - 1]) * record : 0),
           "records do not match their counts");
  std::vector<int64_t> out(static_cast<std::size_t>(total * record));
  const RowType one_record(record, MPI_INT64_T);
  MPI_CHECK(MPI_Alltoallv(data.data(), send_counts.data(), send_displs.data(), one_record.get(),
                          out.data(), recv_counts.data(), recv_displs.data(), one_record.get(),
                          comm));
  return out;
}

Topology make_topology(MPI_Comm ep_comm, const std::vector<int>& node_of_ep_rank) {
  Topology t;
  MPI_CHECK(MPI_Comm_size(ep_comm, &t.num_ranks));
  MPI_CHECK(MPI_Comm_rank(ep_comm, &t.rank));
  const auto P = static_cast<std::size_t>(t.num_ranks);
  std::vector<int> ids = node_of_ep_rank;
  if (ids.empty()) {
    // Real nodes: name each by its lowest EP rank.
    MPI_Comm shared = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split_type(ep_comm, MPI_COMM_TYPE_SHARED, t.rank, MPI_INFO_NULL, &shared));
    Comm node(shared);
    int leader = t.rank;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &leader, 1, MPI_INT, MPI_MIN, node.get()));
    ids.resize(P);
    MPI_CHECK(MPI_Allgather(&leader, 1, MPI_INT, ids.data(), 1, MPI_INT, ep_comm));
  }
  if (ids.size() != P) {
    std::ostringstream os;
    os << "node_of_ep_rank has " << ids.size() << " entries for an EP group of " << P << " ranks";
    throw UsageError(os.str());
  }
  std::map<int, int> index_of_id;  // id -> 0..G-1 in increasing id order
  for (int id : ids) index_of_id.emplace(id, 0);
  int g = 0;
  for (auto& [id, index] : index_of_id) index = g++;
  t.num_nodes = g;
  t.node_of.resize(P);
  t.local_of.resize(P);
  std::vector<int> count(static_cast<std::size_t>(g), 0);
  for (std::size_t p = 0; p < P; ++p) {
    const int node = index_of_id[ids[p]];
    t.node_of[p] = node;
    t.local_of[p] = count[static_cast<std::size_t>(node)]++;
  }
  t.uniform = even_over_nodes(ids);
  if (t.uniform) {
    t.ranks_per_node = count[0];
    t.ep_of.assign(P, -1);
    for (std::size_t p = 0; p < P; ++p) {
      t.ep_of[static_cast<std::size_t>(t.node_of[p] * t.ranks_per_node + t.local_of[p])] =
          static_cast<int>(p);
    }
  }
  return t;
}

void check_topk(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k, int num_experts) {
  if (num_tokens < 0 || top_k < 1 || static_cast<int64_t>(topk_idx.size()) != num_tokens * top_k) {
    std::ostringstream os;
    os << "token exchange layout: topk_idx holds " << topk_idx.size()
       << " entries for N=" << num_tokens << " tokens and K=" << top_k;
    throw std::invalid_argument(os.str());
  }
  for (std::size_t i = 0; i < topk_idx.size(); ++i) {
    const int32_t e = topk_idx[i];
    if (e < -1 || e >= num_experts) {
      std::ostringstream os;
      os << "token exchange layout: topk_idx[" << i << "] (token " << i / top_k << ", slot "
         << i % top_k << ") = " << e << " is not -1 or a global expert in [0, " << num_experts
         << ")";
      throw std::invalid_argument(os.str());
    }
  }
}

void check_same_top_k(MPI_Comm comm, int top_k, Watchdog* watchdog) {
  int k[2] = {top_k, -top_k};  // max of K and of -K: min and max in one reduction
  {
    WatchdogScope scope(watchdog, "layout: top_k agreement on the EP group");
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, k, 2, MPI_INT, MPI_MAX, comm));
  }
  SY_CHECK(k[0] == -k[1], "top_k differs between EP ranks: " << -k[1] << " to " << k[0]);
}

void add_row(ElemType type, void* dst, const void* src, int64_t width) {
  if (type == ElemType::kF32) {
    float* d = static_cast<float*>(dst);
    const float* s = static_cast<const float*>(src);
    for (int64_t c = 0; c < width; ++c) d[c] += s[c];
  } else {
    double* d = static_cast<double*>(dst);
    const double* s = static_cast<const double*>(src);
    for (int64_t c = 0; c < width; ++c) d[c] += s[c];
  }
}

}  // namespace detail

bool even_over_nodes(std::span<const int> node_of_ep_rank) {
  std::map<int, int> per_node;
  for (int n : node_of_ep_rank) ++per_node[n];
  return std::all_of(per_node.begin(), per_node.end(),
                     [&](const auto& kv) { return kv.second == per_node.begin()->second; });
}

std::unique_ptr<TokenExchange> make_exchange(const ExchangeOptions& opt) {
  SY_CHECK(opt.ep_comm != MPI_COMM_NULL, "make_exchange without an EP communicator");
  detail::Topology topo = detail::make_topology(opt.ep_comm, opt.node_of_ep_rank);
  if (opt.num_experts < 1 || opt.num_experts % topo.num_ranks != 0) {
    std::ostringstream os;
    os << "moe.num_experts=" << opt.num_experts << " is not divisible by the EP group size "
       << topo.num_ranks;
    throw UsageError(os.str());
  }
  if (opt.algo == A2aAlgo::kFlat) return detail::make_flat_exchange(opt, std::move(topo));
  if (!topo.uniform) {
    throw UsageError(
        "parallel.a2a=hierarchical needs the same number of EP ranks on every node (set "
        "parallel.ranks_per_node to a divisor of the EP size, or use parallel.a2a=flat)");
  }
  return detail::make_hier_exchange(opt, std::move(topo));
}

}  // namespace sy::comm

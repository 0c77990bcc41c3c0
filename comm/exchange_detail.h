// Internals shared by the exchange transports (comm/exchange_flat.cpp, comm/exchange_hier.cpp).
// Not for use outside comm/.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "comm/alltoall.h"
#include "comm/mpi.h"
#include "src/core/error.h"

namespace sy::comm::detail {

// Where every EP rank sits. Nodes are numbered 0..G-1 in increasing order of their ids in
// node_of_ep_rank; inside a node, local indices follow the EP rank.
struct Topology {
  int num_ranks = 1;          // P
  int rank = 0;               // this rank in the EP group
  int num_nodes = 1;          // G
  bool uniform = true;        // every node has the same number of ranks
  int ranks_per_node = 1;     // R (when uniform)
  std::vector<int> node_of;   // [P] node index 0..G-1
  std::vector<int> local_of;  // [P] index inside the node
  std::vector<int> ep_of;     // [G*R] EP rank of (node, local index) (when uniform)
  int node() const { return node_of[static_cast<std::size_t>(rank)]; }
  int local() const { return local_of[static_cast<std::size_t>(rank)]; }
};
// node_of_ep_rank empty: the nodes MPI_COMM_TYPE_SHARED reports (collective over ep_comm).
Topology make_topology(MPI_Comm ep_comm, const std::vector<int>& node_of_ep_rank);

// Throws std::invalid_argument unless every entry is -1 or a global expert in [0, E) and the
// span holds N*K entries.
void check_topk(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k, int num_experts);

// Collective over comm: throws std::logic_error unless every rank passes the same top_k (the
// layout records' size depends on it).
void check_same_top_k(MPI_Comm comm, int top_k, Watchdog* watchdog);

MPI_Datatype mpi_type(ElemType t);
int checked_int(int64_t value, const char* what, int peer);

// Adds `time since construction` to *seconds on destruction.
class StatsTimer {
 public:
  explicit StatsTimer(double* seconds)
      : seconds_(seconds), start_(std::chrono::steady_clock::now()) {}
  ~StatsTimer() {
    *seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  StatsTimer(const StatsTimer&) = delete;
  StatsTimer& operator=(const StatsTimer&) = delete;

 private:
  double* seconds_;
  std::chrono::steady_clock::time_point start_;
};

// dst[W] += src[W] (elements of `type`).
void add_row(ElemType type, void* dst, const void* src, int64_t width);

// Every rank's int64 blocks to every other rank: send[p] (=) the records for rank p, as a
// concatenation `data` with per-rank record counts `rows`; each record is `record` int64s.
// Returns the received records concatenated in source order, with recv_rows[p] filled.
// Collective over comm (blocking MPI: only called when no UCX operation is in flight).
std::vector<int64_t> alltoallv_records(MPI_Comm comm, std::span<const int64_t> data,
                                       std::span<const int64_t> rows, int record,
                                       std::vector<int64_t>& recv_rows, Watchdog* watchdog,
                                       const char* what);

// The base of both transports: the stats every transport keeps, and the check that a handle's
// layout was made by this exchange.
class ExchangeBase : public TokenExchange {
 public:
  const ExchangeStats& stats() const override { return stats_; }
  void reset_stats() override { stats_ = ExchangeStats{}; }

 protected:
  // h's state as the transport's own State type (which has `const ExchangeBase* owner`); throws
  // when the handle comes from another exchange or another transport.
  template <class State>
  const State& state_as(const ExchangeHandle& h) const {
    const auto* s = dynamic_cast<const State*>(h.state.get());
    SY_CHECK(s != nullptr && s->owner == this, "handle from another exchange");
    return *s;
  }

  ExchangeStats stats_;
};

}  // namespace sy::comm::detail

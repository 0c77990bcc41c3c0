// Expert-parallel token exchange: moves token rows to the EP ranks holding their experts and the
// expert outputs back (DeepEP style, token-level).
//
// Letters: P = EP group size, E global experts, L = E / P local experts (global expert e lives on
// EP rank e / L, local index e % L), N tokens on this rank, K top-k, W row width (elements),
// Mr rows received by this rank, G nodes, R = P / G EP ranks per node.
//
// Phases, the combine reusing the dispatch's layout ("handle"):
//   layout   : topk_idx[N,K] -> ExchangeHandle (who sends which token where; counts exchanged)
//   dispatch : x[N,W] -> recv[Mr,W]   (copies: a token goes ONCE to every EP rank holding at
//                                      least one of its experts)
//   combine  : y[Mr,W] -> out[N,W]    (sums: out[n] = sum of the rows dispatched from token n)
// Received rows are ordered by source EP rank ascending, then source token ascending, on every
// transport. dispatch and combine are adjoint (copy vs. sum), so the MoE backward runs combine as
// dispatch's backward and dispatch as combine's backward, with the same handle.
//
// Transports (make_exchange): flat (one MPI_Alltoallv over the EP group, comm/exchange_flat.cpp)
// and hierarchical (network once per destination node, then shared memory inside the node,
// comm/exchange_hier.cpp). comm/README.md has the buffer layouts and the synchronisation argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "comm/mpi.h"

namespace sy::comm {

class Watchdog;

enum class ElemType { kF32, kF64 };
std::size_t elem_bytes(ElemType t);

// Transport-specific layout a handle carries (row lists, offsets); opaque to callers.
struct HandleState {
  virtual ~HandleState() = default;
};

struct ExchangeStats {             // accumulated since construction or reset_stats()
  int64_t calls = 0;               // dispatch + combine calls
  double seconds = 0;              // wall time inside layout/dispatch/combine
  int64_t internode_bytes = 0;     // payload bytes this rank SENT to other nodes
  int64_t intranode_bytes = 0;     // payload bytes this rank sent to other ranks of its node
  int64_t internode_messages = 0;  // messages this rank sent across node boundaries
  // Where `seconds` went (for profiles; the rest is local packing, copying and summing):
  double transfer_seconds = 0;  // moving rows between ranks: flat's MPI_Alltoallv, hierarchical's
                                // inter-node stage (puts + flush + wait, or MPI_Alltoallv)
  double sync_seconds = 0;      // hierarchical: node barriers around the shared-memory stage
};

struct ExchangeHandle {    // the layout of one dispatch/combine pair ("handle")
  int64_t num_tokens = 0;  // N
  int top_k = 0;           // K
  int64_t num_recv = 0;    // Mr
  // Per received row: which source EP rank and source token it is, and for each of the K slots
  // the LOCAL expert index (0..L-1) when that slot's expert is on this rank, else -1.
  std::vector<int32_t> recv_src_rank;        // [Mr]
  std::vector<int64_t> recv_src_token;       // [Mr]
  std::vector<int32_t> recv_topk_local;      // [Mr*K]
  std::shared_ptr<const HandleState> state;  // transport-specific (may be null)
};

class TokenExchange {
 public:
  virtual ~TokenExchange() = default;
  virtual int num_ranks() const = 0;    // P
  virtual int num_experts() const = 0;  // E

  // Collective over the EP group. topk_idx[N*K]: the GLOBAL expert of each (token, slot), or -1
  // (no assignment: dropped by capacity). A token is delivered ONCE to every EP rank that holds
  // at least one of its experts (deduplicated per rank), never to a rank holding none. Every rank
  // passes the same top_k; N may differ between ranks (and be 0).
  virtual void layout(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k,
                      ExchangeHandle& h) = 0;

  // recv[Mr*W] (=) the rows of x[N*W] per the layout. Collective. x and recv must not overlap.
  void dispatch(const ExchangeHandle& h, std::span<const float> x, std::span<float> recv,
                int64_t width);
  void dispatch(const ExchangeHandle& h, std::span<const double> x, std::span<double> recv,
                int64_t width);
  // out[N*W] (=) for each token n: the SUM of the rows y[Mr*W] that dispatch delivered from
  // token n (on every rank that received it); zero rows for tokens with no assignment.
  // Collective. Flat sums at the source in ascending EP-rank order; hierarchical first sums
  // inside the destination node, then at the source over nodes: the same values up to
  // summation order.
  void combine(const ExchangeHandle& h, std::span<const float> y, std::span<float> out,
               int64_t width);
  void combine(const ExchangeHandle& h, std::span<const double> y, std::span<double> out,
               int64_t width);

  virtual const ExchangeStats& stats() const = 0;
  virtual void reset_stats() = 0;
  // Transport summary for the start-up log: flat/hier, nodes x ranks, intra-node mechanism,
  // inter-node UCX transports+devices (or MPI), and a loud warning when a job spanning real
  // nodes crosses them over TCP.
  virtual std::string describe() const = 0;
  // Bytes of internal buffers currently held (grown to the largest exchange seen, never per
  // step; a repeated exchange of the same size does not grow them).
  virtual std::size_t buffer_bytes() const = 0;

 protected:
  // Sizes are checked before these run: x/y hold N*W (resp. Mr*W) elements of `type`.
  virtual void do_dispatch(const ExchangeHandle& h, const void* x, void* recv, int64_t width,
                           ElemType type) = 0;
  virtual void do_combine(const ExchangeHandle& h, const void* y, void* out, int64_t width,
                          ElemType type) = 0;

 private:
  template <class T>
  void dispatch_typed(const ExchangeHandle& h, std::span<const T> x, std::span<T> recv,
                      int64_t width);
  template <class T>
  void combine_typed(const ExchangeHandle& h, std::span<const T> y, std::span<T> out,
                     int64_t width);
};

enum class A2aAlgo { kFlat, kHierarchical };
enum class Internode { kUcx, kMpi };
const char* to_string(A2aAlgo algo);         // "flat" | "hierarchical"
const char* to_string(Internode internode);  // "ucx" | "mpi"

struct ExchangeOptions {
  MPI_Comm ep_comm = MPI_COMM_NULL;  // not owned; must outlive the exchange
  int num_experts = 0;
  std::vector<int> node_of_ep_rank;  // [P] node id of each EP rank (emulated or real); equal
                                     // counts per node required for hierarchical. Empty: the
                                     // nodes MPI_COMM_TYPE_SHARED reports.
  A2aAlgo algo = A2aAlgo::kFlat;
  Internode internode = Internode::kUcx;
  Watchdog* watchdog = nullptr;  // armed around every wait (not owned, may be null)
};

// Collective over opt.ep_comm. Throws sy::UsageError when the options cannot work (E not
// divisible by P, unequal nodes for hierarchical, node_of_ep_rank of the wrong size).
std::unique_ptr<TokenExchange> make_exchange(const ExchangeOptions& opt);

// Whether every node holds the same number of an EP group's ranks (`node_of_ep_rank`: any node
// id per EP rank), which the hierarchical exchange needs. make_exchange refuses otherwise; a
// caller that wants the refusal before any collective (the trainer's agreed start-up checks)
// asks here.
bool even_over_nodes(std::span<const int> node_of_ep_rank);

// MPI_Alltoallv arguments in rows, for a datatype of one row (RowType, comm/mpi.h):
// counts[p] = rows_per_rank[p] and displs[p] = the prefix sum. Counted in elements or bytes, the
// displacements (running totals over all peers) passed INT_MAX at production widths; in rows
// they fit up to 2^31 rows. Throws std::runtime_error naming the rank and the peer when one does
// not. rows_per_rank, counts, displs: [P].
void rows_to_mpi_counts(std::span<const int64_t> rows_per_rank, std::span<int> counts,
                        std::span<int> displs);

}  // namespace sy::comm

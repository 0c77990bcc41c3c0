// Expert-parallel exchange: moves token rows to the ranks holding their experts and back.
//
// Letters: P ranks in the EP communicator, E global experts, L = E / P local experts per rank,
// R row width in elements, Ns rows this rank sends, Nr rows it receives.
//
// Phases (as in DeepEP), the combine reusing the dispatch's layout ("handle"):
//   notify   : exchange per-expert row counts -> ExchangeHandle
//   dispatch : send[Ns,R], sorted by GLOBAL expert -> recv[Nr,R] on the experts' ranks
//   combine  : recv-layout rows [Nr,R] -> send-layout rows [Ns,R] (exact inverse movement)
//
// Global expert e lives on EP rank e / L. The dispatch output on each rank is sorted by LOCAL
// expert, inside one local expert by source EP rank (ascending), inside one source in the
// sender's order:
//   recv = [ l=0: src 0 rows, src 1 rows, ... | l=1: src 0 rows, ... | ... ]
// Both directions only move rows, so each is the other's adjoint: the MoE backward runs combine
// as dispatch's backward and dispatch as combine's backward, with the same handle.
//
// The transport behind ExpertExchange is replaceable (flat MPI_Alltoallv here, hierarchical
// next); the handle's public fields are the same for every transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "comm/mpi.h"

namespace sy::comm {

class Watchdog;

// Transport-specific state a handle may carry (the flat transport has none).
struct HandleState {
  virtual ~HandleState() = default;
};

// The layout of one dispatch/combine pair, from notify. Row counts, never bytes.
struct ExchangeHandle {
  int num_ranks = 0;          // P
  int num_experts = 0;        // E
  int local_experts = 0;      // L = E / P
  int64_t num_send_rows = 0;  // Ns = sum of send_counts_per_expert
  int64_t num_recv_rows = 0;  // Nr = sum of recv_counts

  std::vector<int64_t> send_counts_per_expert;        // [E]   rows sent to each global expert
  std::vector<int64_t> send_rows_per_rank;            // [P]   rows sent to each EP rank
  std::vector<int64_t> recv_rows_per_rank;            // [P]   rows received from each EP rank
  std::vector<int64_t> recv_counts;                   // [L,P] rows of local expert l from source p
  std::vector<int64_t> recv_rows_per_local_expert;    // [L]   sum over sources
  std::vector<int64_t> recv_offset_per_local_expert;  // [L+1] row offsets into recv (prefix)

  std::shared_ptr<const HandleState> state;  // transport-specific, may be null
};

enum class ElemType { kF32, kF64 };
std::size_t elem_bytes(ElemType t);

// MPI_Alltoallv arguments for rows of `row` elements: counts[p] (=) rows_per_rank[p] * row and
// displs[p] (=) the prefix sum, in elements of the MPI datatype (never bytes). Throws
// std::runtime_error naming the rank and the peer when one does not fit MPI's int (only this
// rank knows its displacements, so its peers stay in the collective: a Watchdog ends the job).
// rows_per_rank, counts, displs: [P].
void rows_to_mpi_counts(std::span<const int64_t> rows_per_rank, int64_t row, std::span<int> counts,
                        std::span<int> displs);

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;

  virtual int num_ranks() const = 0;    // P
  virtual int num_experts() const = 0;  // E

  // Collective over the EP communicator. send_counts_per_expert[E]: rows this rank sends to
  // each global expert (>= 0). Fills `handle`, reusing its vectors.
  virtual void notify(std::span<const int64_t> send_counts_per_expert, ExchangeHandle& handle) = 0;
  ExchangeHandle notify(std::span<const int64_t> send_counts_per_expert) {
    ExchangeHandle handle;
    notify(send_counts_per_expert, handle);
    return handle;
  }

  // recv[Nr,R] (=) dispatch(send[Ns,R]). Collective. send and recv must not overlap.
  void dispatch(const ExchangeHandle& h, std::span<const float> send, std::span<float> recv,
                int64_t row) {
    dispatch_typed(h, send, recv, row);
  }
  void dispatch(const ExchangeHandle& h, std::span<const double> send, std::span<double> recv,
                int64_t row) {
    dispatch_typed(h, send, recv, row);
  }

  // out[Ns,R] (=) combine(in[Nr,R]), in the dispatch's receive layout, back to the sender's
  // send layout. Collective. in and out must not overlap.
  void combine(const ExchangeHandle& h, std::span<const float> in, std::span<float> out,
               int64_t row) {
    combine_typed(h, in, out, row);
  }
  void combine(const ExchangeHandle& h, std::span<const double> in, std::span<double> out,
               int64_t row) {
    combine_typed(h, in, out, row);
  }

  // Bytes of internal buffers currently held (they grow, never shrink; tests check that a
  // repeated exchange of the same size does not grow them).
  virtual std::size_t buffer_bytes() const = 0;

 protected:
  // Sizes are checked before these run: send/in hold Ns*row, recv/out Nr*row elements.
  virtual void do_dispatch(const ExchangeHandle& h, const void* send, void* recv, int64_t row,
                           ElemType type) = 0;
  virtual void do_combine(const ExchangeHandle& h, const void* in, void* out, int64_t row,
                          ElemType type) = 0;

 private:
  template <class T>
  void dispatch_typed(const ExchangeHandle& h, std::span<const T> send, std::span<T> recv,
                      int64_t row);
  template <class T>
  void combine_typed(const ExchangeHandle& h, std::span<const T> in, std::span<T> out, int64_t row);
};

// The flat transport: counts by MPI_Alltoall, rows by one MPI_Alltoallv on the EP communicator,
// then a local permutation from (source, expert) to (expert, source) order (and back for
// combine). P == 1 is a local copy. Buffers grow to the largest exchange seen and are reused.
class FlatExchange final : public ExpertExchange {
 public:
  // ep_comm: the EP communicator (not owned; must outlive this object). num_experts % size == 0.
  // watchdog (optional, not owned) is armed around every collective.
  FlatExchange(MPI_Comm ep_comm, int num_experts, Watchdog* watchdog = nullptr);

  int num_ranks() const override { return num_ranks_; }
  int num_experts() const override { return num_experts_; }
  using ExpertExchange::notify;
  void notify(std::span<const int64_t> send_counts_per_expert, ExchangeHandle& handle) override;
  std::size_t buffer_bytes() const override { return staging_.capacity(); }

 protected:
  void do_dispatch(const ExchangeHandle& h, const void* send, void* recv, int64_t row,
                   ElemType type) override;
  void do_combine(const ExchangeHandle& h, const void* in, void* out, int64_t row,
                  ElemType type) override;

 private:
  void fill_mpi_counts(const ExchangeHandle& h, int64_t row);
  // Rows of one rank's receive buffer between (source, expert) order and (expert, source) order.
  void permute(const ExchangeHandle& h, const std::byte* from, std::byte* to, std::size_t row_bytes,
               bool source_major_to_expert_major);

  MPI_Comm comm_;
  int num_ranks_ = 1, rank_ = 0;
  int num_experts_ = 0, local_experts_ = 0;
  Watchdog* watchdog_;

  std::vector<std::byte> staging_;  // [Nr,R] rows in (source, expert) order
  std::vector<int> send_counts_, send_displs_, recv_counts_, recv_displs_;  // [P] each
  std::vector<int64_t> cursor_;            // [L] permutation scratch
  std::vector<int64_t> counts_by_source_;  // [P,L] notify scratch
};

}  // namespace sy::comm

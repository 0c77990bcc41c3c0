#include "comm/alltoall.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "comm/mpi.h"
#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm {

std::size_t elem_bytes(ElemType t) {
  return t == ElemType::kF32 ? sizeof(float) : sizeof(double);
}

namespace {

MPI_Datatype mpi_type(ElemType t) {
  return t == ElemType::kF32 ? MPI_FLOAT : MPI_DOUBLE;
}

template <class T>
constexpr ElemType elem_type_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "the expert exchange moves float or double rows");
  return std::is_same_v<T, float> ? ElemType::kF32 : ElemType::kF64;
}

void check_handle(const ExchangeHandle& h, int num_ranks, int num_experts) {
  SY_CHECK(h.num_ranks == num_ranks && h.num_experts == num_experts,
           "handle from an exchange with P=" << h.num_ranks << " E=" << h.num_experts
                                             << " used on one with P=" << num_ranks
                                             << " E=" << num_experts);
}

}  // namespace

// ---- typed entry points: size checks shared by every transport ----

template <class T>
void ExpertExchange::dispatch_typed(const ExchangeHandle& h, std::span<const T> send,
                                    std::span<T> recv, int64_t row) {
  SY_CHECK(row >= 0, "row=" << row);
  SY_CHECK(static_cast<int64_t>(send.size()) == h.num_send_rows * row,
           "dispatch send holds " << send.size() << " elements, handle wants " << h.num_send_rows
                                  << " rows of " << row);
  SY_CHECK(static_cast<int64_t>(recv.size()) == h.num_recv_rows * row,
           "dispatch recv holds " << recv.size() << " elements, handle wants " << h.num_recv_rows
                                  << " rows of " << row);
  do_dispatch(h, send.data(), recv.data(), row, elem_type_of<T>());
}

template <class T>
void ExpertExchange::combine_typed(const ExchangeHandle& h, std::span<const T> in, std::span<T> out,
                                   int64_t row) {
  SY_CHECK(row >= 0, "row=" << row);
  SY_CHECK(static_cast<int64_t>(in.size()) == h.num_recv_rows * row,
           "combine input holds " << in.size() << " elements, handle wants " << h.num_recv_rows
                                  << " rows of " << row);
  SY_CHECK(static_cast<int64_t>(out.size()) == h.num_send_rows * row,
           "combine output holds " << out.size() << " elements, handle wants " << h.num_send_rows
                                   << " rows of " << row);
  do_combine(h, in.data(), out.data(), row, elem_type_of<T>());
}

template void ExpertExchange::dispatch_typed<float>(const ExchangeHandle&, std::span<const float>,
                                                    std::span<float>, int64_t);
template void ExpertExchange::dispatch_typed<double>(const ExchangeHandle&, std::span<const double>,
                                                     std::span<double>, int64_t);
template void ExpertExchange::combine_typed<float>(const ExchangeHandle&, std::span<const float>,
                                                   std::span<float>, int64_t);
template void ExpertExchange::combine_typed<double>(const ExchangeHandle&, std::span<const double>,
                                                    std::span<double>, int64_t);

// ---- flat transport ----

FlatExchange::FlatExchange(MPI_Comm ep_comm, int num_experts, Watchdog* watchdog)
    : comm_(ep_comm), num_experts_(num_experts), watchdog_(watchdog) {
  MPI_CHECK(MPI_Comm_size(comm_, &num_ranks_));
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  SY_CHECK(num_experts_ > 0 && num_experts_ % num_ranks_ == 0,
           "num_experts=" << num_experts_ << " not divisible by the EP size " << num_ranks_
                          << " (validate_layout should have caught this)");
  local_experts_ = num_experts_ / num_ranks_;
  const auto P = static_cast<size_t>(num_ranks_);
  send_counts_.resize(P);
  send_displs_.resize(P);
  recv_counts_.resize(P);
  recv_displs_.resize(P);
  cursor_.resize(static_cast<size_t>(local_experts_));
  counts_by_source_.resize(P * static_cast<size_t>(local_experts_));
}

void FlatExchange::notify(std::span<const int64_t> send_counts_per_expert, ExchangeHandle& h) {
  SY_CHECK(static_cast<int>(send_counts_per_expert.size()) == num_experts_,
           "send_counts_per_expert has " << send_counts_per_expert.size()
                                         << " entries, E=" << num_experts_);
  const int P = num_ranks_, L = local_experts_;
  h.num_ranks = P;
  h.num_experts = num_experts_;
  h.local_experts = L;
  h.state.reset();
  h.send_counts_per_expert.assign(send_counts_per_expert.begin(), send_counts_per_expert.end());
  h.send_rows_per_rank.assign(static_cast<size_t>(P), 0);
  h.num_send_rows = 0;
  for (int e = 0; e < num_experts_; ++e) {
    const int64_t n = send_counts_per_expert[e];
    SY_CHECK(n >= 0, "send_counts_per_expert[" << e << "]=" << n);
    h.send_rows_per_rank[static_cast<size_t>(e / L)] += n;
    h.num_send_rows += n;
  }

  // The counts for EP rank p are the contiguous block of its experts [p*L, (p+1)*L).
  if (P == 1) {
    std::copy(send_counts_per_expert.begin(), send_counts_per_expert.end(),
              counts_by_source_.begin());
  } else {
    WatchdogScope scope(watchdog_, "notify: all-to-all of per-expert row counts on the EP group");
    MPI_CHECK(MPI_Alltoall(send_counts_per_expert.data(), L, MPI_INT64_T, counts_by_source_.data(),
                           L, MPI_INT64_T, comm_));
  }

  // counts_by_source_ is [P,L]; the handle keeps the transpose [L,P] (the receive order).
  h.recv_counts.assign(static_cast<size_t>(L) * static_cast<size_t>(P), 0);
  h.recv_rows_per_rank.assign(static_cast<size_t>(P), 0);
  h.recv_rows_per_local_expert.assign(static_cast<size_t>(L), 0);
  h.recv_offset_per_local_expert.assign(static_cast<size_t>(L) + 1, 0);
  for (int p = 0; p < P; ++p) {
    for (int l = 0; l < L; ++l) {
      const int64_t n = counts_by_source_[static_cast<size_t>(p * L + l)];
      h.recv_counts[static_cast<size_t>(l * P + p)] = n;
      h.recv_rows_per_rank[static_cast<size_t>(p)] += n;
      h.recv_rows_per_local_expert[static_cast<size_t>(l)] += n;
    }
  }
  for (int l = 0; l < L; ++l) {
    h.recv_offset_per_local_expert[static_cast<size_t>(l) + 1] =
        h.recv_offset_per_local_expert[static_cast<size_t>(l)] +
        h.recv_rows_per_local_expert[static_cast<size_t>(l)];
  }
  h.num_recv_rows = h.recv_offset_per_local_expert[static_cast<size_t>(L)];
}

namespace {
int checked_int(int64_t elements, const char* what, size_t peer) {
  if (elements > INT_MAX) {
    std::ostringstream os;
    os << "rank " << world_rank() << ": expert all-to-all " << what << " for EP rank " << peer
       << " is " << elements << " elements, more than MPI's int count allows (" << INT_MAX
       << "); use a smaller train.micro_batch";
    throw std::runtime_error(os.str());
  }
  return static_cast<int>(elements);
}
}  // namespace

void rows_to_mpi_counts(std::span<const int64_t> rows_per_rank, int64_t row, std::span<int> counts,
                        std::span<int> displs) {
  SY_CHECK(counts.size() == rows_per_rank.size() && displs.size() == rows_per_rank.size(),
           "counts/displs must have one entry per rank");
  int64_t displ = 0;
  for (size_t p = 0; p < rows_per_rank.size(); ++p) {
    const int64_t count = rows_per_rank[p] * row;
    counts[p] = checked_int(count, "count", p);
    displs[p] = checked_int(displ, "displacement", p);
    displ += count;
  }
}

void FlatExchange::fill_mpi_counts(const ExchangeHandle& h, int64_t row) {
  rows_to_mpi_counts(h.send_rows_per_rank, row, send_counts_, send_displs_);
  rows_to_mpi_counts(h.recv_rows_per_rank, row, recv_counts_, recv_displs_);
}

void FlatExchange::permute(const ExchangeHandle& h, const std::byte* from, std::byte* to,
                           std::size_t row_bytes, bool source_major_to_expert_major) {
  const int P = num_ranks_, L = local_experts_;
  // Walk the source-major order (p outer, l inner); cursor_[l] is where the next block of local
  // expert l sits in the expert-major order (its sources arrive in ascending p).
  for (int l = 0; l < L; ++l) {
    cursor_[static_cast<size_t>(l)] = h.recv_offset_per_local_expert[static_cast<size_t>(l)];
  }
  int64_t source_major_row = 0;
  for (int p = 0; p < P; ++p) {
    for (int l = 0; l < L; ++l) {
      const int64_t n = h.recv_counts[static_cast<size_t>(l * P + p)];
      if (n == 0) continue;
      int64_t& expert_major_row = cursor_[static_cast<size_t>(l)];
      const std::size_t bytes = static_cast<std::size_t>(n) * row_bytes;
      const std::size_t sm = static_cast<std::size_t>(source_major_row) * row_bytes;
      const std::size_t em = static_cast<std::size_t>(expert_major_row) * row_bytes;
      if (source_major_to_expert_major) {
        std::memcpy(to + em, from + sm, bytes);
      } else {
        std::memcpy(to + sm, from + em, bytes);
      }
      source_major_row += n;
      expert_major_row += n;
    }
  }
}

void FlatExchange::do_dispatch(const ExchangeHandle& h, const void* send, void* recv, int64_t row,
                               ElemType type) {
  check_handle(h, num_ranks_, num_experts_);
  const std::size_t row_bytes = static_cast<std::size_t>(row) * elem_bytes(type);
  if (num_ranks_ == 1) {
    // One source: the global order is already the local-expert order.
    if (h.num_send_rows > 0) {
      std::memcpy(recv, send, static_cast<std::size_t>(h.num_send_rows) * row_bytes);
    }
    return;
  }
  fill_mpi_counts(h, row);
  // With one local expert the source-major order is the expert-major order: receive in place.
  const bool direct = local_experts_ == 1;
  const std::size_t recv_bytes = static_cast<std::size_t>(h.num_recv_rows) * row_bytes;
  if (!direct && staging_.size() < recv_bytes) staging_.resize(recv_bytes);
  void* landing = direct ? recv : static_cast<void*>(staging_.data());
  {
    WatchdogScope scope(watchdog_, "dispatch: all-to-all of token rows on the EP group");
    MPI_CHECK(MPI_Alltoallv(send, send_counts_.data(), send_displs_.data(), mpi_type(type), landing,
                            recv_counts_.data(), recv_displs_.data(), mpi_type(type), comm_));
  }
  if (!direct) permute(h, staging_.data(), static_cast<std::byte*>(recv), row_bytes, true);
}

void FlatExchange::do_combine(const ExchangeHandle& h, const void* in, void* out, int64_t row,
                              ElemType type) {
  check_handle(h, num_ranks_, num_experts_);
  const std::size_t row_bytes = static_cast<std::size_t>(row) * elem_bytes(type);
  if (num_ranks_ == 1) {
    if (h.num_recv_rows > 0) {
      std::memcpy(out, in, static_cast<std::size_t>(h.num_recv_rows) * row_bytes);
    }
    return;
  }
  fill_mpi_counts(h, row);
  const bool direct = local_experts_ == 1;
  const std::size_t in_bytes = static_cast<std::size_t>(h.num_recv_rows) * row_bytes;
  if (!direct && staging_.size() < in_bytes) staging_.resize(in_bytes);
  if (!direct) permute(h, static_cast<const std::byte*>(in), staging_.data(), row_bytes, false);
  const void* source_major = direct ? in : static_cast<const void*>(staging_.data());
  {
    WatchdogScope scope(watchdog_, "combine: all-to-all of expert output rows on the EP group");
    // The reverse exchange: what was received from p goes back to p.
    MPI_CHECK(MPI_Alltoallv(source_major, recv_counts_.data(), recv_displs_.data(), mpi_type(type),
                            out, send_counts_.data(), send_displs_.data(), mpi_type(type), comm_));
  }
}

}  // namespace sy::comm

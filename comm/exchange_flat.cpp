// The flat token exchange: one MPI_Alltoallv over the whole EP group per dispatch or combine.
//
// Letters as in comm/alltoall.h; S = rows this rank sends (a token once per destination rank).
//
// layout  : per token, the set of destination EP ranks (deduplicated over its K slots). Send rows
//           are grouped by destination rank ascending, inside a group by token ascending:
//             send_token[S] = [ tokens for rank 0 | tokens for rank 1 | ... ]
//           Row counts go by MPI_Alltoall, then one record [token, topk_idx[K]] per send row by
//           MPI_Alltoallv, so the receiver learns source token and experts of every row.
// dispatch: pack x rows into staging[S,W] (send_token order), MPI_Alltoallv straight into
//           recv[Mr,W]: MPI delivers by source rank ascending, each source's rows in its order
//           (token ascending), which is exactly the documented receive order.
// combine : the reverse MPI_Alltoallv y[Mr,W] -> staging[S,W], then out[n] = sum of n's rows in
//           ascending destination rank (a linear pass over staging), zero rows elsewhere.
#include <cstring>
#include <memory>
#include <sstream>
#include <vector>

#include "comm/alltoall.h"
#include "comm/exchange_detail.h"
#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm::detail {

namespace {

struct FlatState final : HandleState {
  const ExchangeBase* owner = nullptr;      // the exchange that made the layout
  std::vector<int64_t> send_token;          // [S] grouped by destination rank, token ascending
  std::vector<int64_t> send_rows_per_rank;  // [P]
  std::vector<int64_t> recv_rows_per_rank;  // [P]
};

class FlatExchange final : public ExchangeBase {
 public:
  FlatExchange(const ExchangeOptions& opt, Topology topo)
      : comm_(opt.ep_comm),
        topo_(std::move(topo)),
        num_experts_(opt.num_experts),
        local_experts_(opt.num_experts / topo_.num_ranks),
        watchdog_(opt.watchdog) {
    const auto P = static_cast<std::size_t>(topo_.num_ranks);
    send_counts_.resize(P);
    send_displs_.resize(P);
    recv_counts_.resize(P);
    recv_displs_.resize(P);
  }

  int num_ranks() const override { return topo_.num_ranks; }
  int num_experts() const override { return num_experts_; }
  std::size_t buffer_bytes() const override { return staging_.capacity(); }

  std::string describe() const override {
    std::ostringstream os;
    os << "token exchange: flat MPI_Alltoallv over " << topo_.num_ranks << " EP ranks ("
       << topo_.num_nodes << " node" << (topo_.num_nodes > 1 ? "s" : "")
       << "); intra- and inter-node traffic take whatever transport MPI uses";
    return os.str();
  }

  void layout(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k,
              ExchangeHandle& h) override;

 protected:
  void do_dispatch(const ExchangeHandle& h, const void* x, void* recv, int64_t width,
                   ElemType type) override;
  void do_combine(const ExchangeHandle& h, const void* y, void* out, int64_t width,
                  ElemType type) override;

 private:
  // Start of a dispatch or combine: counts the call, grows the staging rows, fills the MPI
  // counts; returns the row size in bytes.
  std::size_t begin_call(const FlatState& s, int64_t width, ElemType type);
  void fill_counts(const FlatState& s);
  void count_traffic(const FlatState& s, std::size_t row_bytes, bool dispatch);

  MPI_Comm comm_;
  Topology topo_;
  int num_experts_, local_experts_;
  Watchdog* watchdog_;

  std::vector<std::byte> staging_;  // [S,W] send rows (dispatch) / returned rows (combine)
  std::vector<int> send_counts_, send_displs_, recv_counts_, recv_displs_;  // [P] rows
};

void FlatExchange::layout(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k,
                          ExchangeHandle& h) {
  StatsTimer timer(&stats_.seconds);
  check_topk(topk_idx, num_tokens, top_k, num_experts_);
  const int P = topo_.num_ranks, K = top_k, L = local_experts_;
  const auto N = static_cast<std::size_t>(num_tokens);
  auto state = std::make_shared<FlatState>();
  state->owner = this;

  // Destination ranks of each token, deduplicated with a "last token that marked it" array:
  // count, prefix, fill (token ascending inside each rank's group).
  std::vector<int64_t> marked(static_cast<std::size_t>(P), -1);
  // f(n, p) once for every destination rank p of token n (the first slot that names it).
  auto for_each_destination = [&](auto&& f) {
    std::fill(marked.begin(), marked.end(), -1);
    for (std::size_t n = 0; n < N; ++n) {
      for (int j = 0; j < K; ++j) {
        const int32_t e = topk_idx[n * K + static_cast<std::size_t>(j)];
        if (e < 0) continue;
        const auto p = static_cast<std::size_t>(e / L);
        if (marked[p] == static_cast<int64_t>(n)) continue;
        marked[p] = static_cast<int64_t>(n);
        f(n, p);
      }
    }
  };
  std::vector<int64_t>& rows = state->send_rows_per_rank;
  rows.assign(static_cast<std::size_t>(P), 0);
  for_each_destination([&](std::size_t, std::size_t p) { ++rows[p]; });
  std::vector<int64_t> cursor(static_cast<std::size_t>(P) + 1, 0);
  for (int p = 0; p < P; ++p) cursor[p + 1] = cursor[p] + rows[static_cast<std::size_t>(p)];
  const int64_t S = cursor[static_cast<std::size_t>(P)];
  state->send_token.resize(static_cast<std::size_t>(S));
  const int record = 1 + K;  // [token, topk_idx[K]]
  std::vector<int64_t> records(static_cast<std::size_t>(S * record));
  for_each_destination([&](std::size_t n, std::size_t p) {
    const int64_t row = cursor[p]++;
    state->send_token[static_cast<std::size_t>(row)] = static_cast<int64_t>(n);
    int64_t* rec = &records[static_cast<std::size_t>(row * record)];
    rec[0] = static_cast<int64_t>(n);
    for (int i = 0; i < K; ++i) rec[1 + i] = topk_idx[n * K + static_cast<std::size_t>(i)];
  });

  check_same_top_k(comm_, K, watchdog_);
  const std::vector<int64_t> got =
      alltoallv_records(comm_, records, rows, record, state->recv_rows_per_rank, watchdog_,
                        "layout: all-to-all of token records on the EP group");

  // Received rows: by source rank ascending, each source's rows token ascending.
  const int64_t Mr = static_cast<int64_t>(got.size()) / record;
  h.num_tokens = num_tokens;
  h.top_k = K;
  h.num_recv = Mr;
  h.recv_src_rank.resize(static_cast<std::size_t>(Mr));
  h.recv_src_token.resize(static_cast<std::size_t>(Mr));
  h.recv_topk_local.resize(static_cast<std::size_t>(Mr * K));
  int64_t i = 0;
  for (int src = 0; src < P; ++src) {
    for (int64_t k = 0; k < state->recv_rows_per_rank[static_cast<std::size_t>(src)]; ++k, ++i) {
      const int64_t* rec = &got[static_cast<std::size_t>(i * record)];
      h.recv_src_rank[static_cast<std::size_t>(i)] = src;
      h.recv_src_token[static_cast<std::size_t>(i)] = rec[0];
      for (int j = 0; j < K; ++j) {
        const int64_t e = rec[1 + j];
        h.recv_topk_local[static_cast<std::size_t>(i * K + j)] =
            e >= 0 && e / L == topo_.rank ? static_cast<int32_t>(e % L) : -1;
      }
    }
  }
  h.state = std::move(state);
}

std::size_t FlatExchange::begin_call(const FlatState& s, int64_t width, ElemType type) {
  ++stats_.calls;
  const std::size_t row_bytes = static_cast<std::size_t>(width) * elem_bytes(type);
  const std::size_t staged = s.send_token.size() * row_bytes;
  if (staging_.size() < staged) staging_.resize(staged);
  fill_counts(s);
  return row_bytes;
}

void FlatExchange::fill_counts(const FlatState& s) {
  rows_to_mpi_counts(s.send_rows_per_rank, send_counts_, send_displs_);
  rows_to_mpi_counts(s.recv_rows_per_rank, recv_counts_, recv_displs_);
}

void FlatExchange::count_traffic(const FlatState& s, std::size_t row_bytes, bool dispatch) {
  // dispatch sends send_rows_per_rank; combine sends back what was received.
  const std::vector<int64_t>& sent = dispatch ? s.send_rows_per_rank : s.recv_rows_per_rank;
  for (int p = 0; p < topo_.num_ranks; ++p) {
    const int64_t rows = sent[static_cast<std::size_t>(p)];
    if (p == topo_.rank || rows == 0) continue;
    const auto bytes = static_cast<int64_t>(static_cast<std::size_t>(rows) * row_bytes);
    if (topo_.node_of[static_cast<std::size_t>(p)] == topo_.node()) {
      stats_.intranode_bytes += bytes;
    } else {
      stats_.internode_bytes += bytes;
      ++stats_.internode_messages;
    }
  }
}

void FlatExchange::do_dispatch(const ExchangeHandle& h, const void* x, void* recv, int64_t width,
                               ElemType type) {
  StatsTimer timer(&stats_.seconds);
  const FlatState& s = state_as<FlatState>(h);
  const std::size_t row_bytes = begin_call(s, width, type);
  const std::size_t S = s.send_token.size();
  const auto* src = static_cast<const std::byte*>(x);
  for (std::size_t r = 0; r < S; ++r) {
    std::memcpy(staging_.data() + r * row_bytes,
                src + static_cast<std::size_t>(s.send_token[r]) * row_bytes, row_bytes);
  }
  {
    StatsTimer transfer(&stats_.transfer_seconds);
    WatchdogScope scope(watchdog_, "dispatch: all-to-all of token rows on the EP group");
    const RowType row(width, mpi_type(type));
    MPI_CHECK(MPI_Alltoallv(staging_.data(), send_counts_.data(), send_displs_.data(), row.get(),
                            recv, recv_counts_.data(), recv_displs_.data(), row.get(), comm_));
  }
  count_traffic(s, row_bytes, true);
}

void FlatExchange::do_combine(const ExchangeHandle& h, const void* y, void* out, int64_t width,
                              ElemType type) {
  StatsTimer timer(&stats_.seconds);
  const FlatState& s = state_as<FlatState>(h);
  const std::size_t row_bytes = begin_call(s, width, type);
  const std::size_t S = s.send_token.size();
  {
    StatsTimer transfer(&stats_.transfer_seconds);
    WatchdogScope scope(watchdog_, "combine: all-to-all of expert output rows on the EP group");
    // The reverse exchange: what was received from p goes back to p.
    const RowType row(width, mpi_type(type));
    MPI_CHECK(MPI_Alltoallv(y, recv_counts_.data(), recv_displs_.data(), row.get(), staging_.data(),
                            send_counts_.data(), send_displs_.data(), row.get(), comm_));
  }
  count_traffic(s, row_bytes, false);
  // Rows come grouped by destination rank ascending: one pass sums each token in rank order.
  auto* dst = static_cast<std::byte*>(out);
  if (h.num_tokens > 0) std::memset(dst, 0, static_cast<std::size_t>(h.num_tokens) * row_bytes);
  for (std::size_t r = 0; r < S; ++r) {
    add_row(type, dst + static_cast<std::size_t>(s.send_token[r]) * row_bytes,
            staging_.data() + r * row_bytes, width);
  }
}

}  // namespace

std::unique_ptr<TokenExchange> make_flat_exchange(const ExchangeOptions& opt, Topology topo) {
  return std::make_unique<FlatExchange>(opt, std::move(topo));
}

}  // namespace sy::comm::detail

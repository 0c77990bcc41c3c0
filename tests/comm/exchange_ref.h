// Seeded routings and a naive reference for the token exchange tests.
//
// Every rank draws its own topk_idx from (seed, EP rank); the reference allgathers all of them
// over the EP group (plain MPI) and derives, with naive loops straight from the contract in
// comm/alltoall.h, what each rank must receive and what each combine must return. Values encode
// (source rank, token, column) as small integers, so every sum is exact in float and any
// misplaced, duplicated or lost row shows up.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "comm/alltoall.h"
#include "comm/mpi.h"

namespace sy::test {

enum class Skew {
  kUniform,           // k distinct experts per token, uniformly
  kDropped,           // uniform, but ~25% of the slots are -1 (dropped by capacity)
  kOneExpertGetsAll,  // slot 0 is the last expert, the other slots are dropped
  kOddRanksOnly,      // only experts of odd EP ranks: even ranks receive nothing
  kFirstNodeOnly,     // only experts of EP rank 0: every other rank (and node) receives nothing
  kSomeSendNothing,   // uniform, but every third rank has no tokens
  kNobodySends,       // N = 0 everywhere
};
inline const char* name(Skew s) {
  switch (s) {
    case Skew::kUniform:
      return "uniform";
    case Skew::kDropped:
      return "dropped";
    case Skew::kOneExpertGetsAll:
      return "one-expert-gets-all";
    case Skew::kOddRanksOnly:
      return "odd-ranks-only";
    case Skew::kFirstNodeOnly:
      return "rank-0-only";
    case Skew::kSomeSendNothing:
      return "some-send-nothing";
    case Skew::kNobodySends:
      return "nobody-sends";
  }
  return "?";
}
inline const Skew kAllSkews[] = {Skew::kUniform,      Skew::kDropped,       Skew::kOneExpertGetsAll,
                                 Skew::kOddRanksOnly, Skew::kFirstNodeOnly, Skew::kSomeSendNothing,
                                 Skew::kNobodySends};

struct Routing {
  int64_t num_tokens = 0;
  int top_k = 1;
  std::vector<int32_t> topk;  // [N*K]
};

// P EP ranks, E experts (L = E / P per rank).
inline Routing make_routing(unsigned seed, int ep_rank, int P, int E, int K, Skew skew,
                            int max_tokens = 40, int min_tokens = 0) {
  std::mt19937 rng(seed * 7919u + static_cast<unsigned>(ep_rank) * 104729u + 17u);
  const int L = E / P;
  std::vector<int32_t> allowed;
  for (int e = 0; e < E; ++e) {
    if (skew == Skew::kOddRanksOnly && P > 1 && (e / L) % 2 == 0) continue;
    if (skew == Skew::kFirstNodeOnly && e / L != 0) continue;
    allowed.push_back(e);
  }
  Routing r;
  r.top_k = K;
  r.num_tokens = std::uniform_int_distribution<int>(min_tokens, max_tokens)(rng);
  if (skew == Skew::kNobodySends) r.num_tokens = 0;
  if (skew == Skew::kSomeSendNothing && ep_rank % 3 == 1) r.num_tokens = 0;
  r.topk.assign(static_cast<size_t>(r.num_tokens * K), -1);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t n = 0; n < r.num_tokens; ++n) {
    int32_t* slots = &r.topk[static_cast<size_t>(n * K)];
    if (skew == Skew::kOneExpertGetsAll) {
      slots[0] = E - 1;
      continue;
    }
    std::shuffle(allowed.begin(), allowed.end(), rng);  // distinct experts (when there are k)
    for (int j = 0; j < K; ++j) {
      slots[j] = allowed[static_cast<size_t>(j) % allowed.size()];
      if (skew == Skew::kDropped && u(rng) < 0.25) slots[j] = -1;
    }
  }
  return r;
}

// Every EP rank's routing, from an allgather (independent of comm/alltoall).
struct GlobalRouting {
  int P = 1, E = 1, K = 1;
  std::vector<int64_t> tokens;             // [P]
  std::vector<std::vector<int32_t>> topk;  // [P][N_p*K]
};
inline GlobalRouting allgather_routing(MPI_Comm ep, const Routing& mine, int E) {
  GlobalRouting g;
  MPI_Comm_size(ep, &g.P);
  g.E = E;
  g.K = mine.top_k;
  g.tokens.resize(static_cast<size_t>(g.P));
  MPI_Allgather(&mine.num_tokens, 1, MPI_INT64_T, g.tokens.data(), 1, MPI_INT64_T, ep);
  std::vector<int> counts(static_cast<size_t>(g.P)), displs(static_cast<size_t>(g.P));
  int total = 0;
  for (int p = 0; p < g.P; ++p) {
    counts[static_cast<size_t>(p)] = static_cast<int>(g.tokens[static_cast<size_t>(p)] * g.K);
    displs[static_cast<size_t>(p)] = total;
    total += counts[static_cast<size_t>(p)];
  }
  std::vector<int32_t> all(static_cast<size_t>(total));
  MPI_Allgatherv(mine.topk.data(), static_cast<int>(mine.topk.size()), MPI_INT32_T, all.data(),
                 counts.data(), displs.data(), MPI_INT32_T, ep);
  for (int p = 0; p < g.P; ++p) {
    const auto* b = all.data() + displs[static_cast<size_t>(p)];
    g.topk.emplace_back(b, b + counts[static_cast<size_t>(p)]);
  }
  return g;
}

// Small exact integers: src < 64, token < 1024, col < 16 keeps every value below 2^20, and the
// combine's sums of at most 64 of them times (rank + 1) below 2^24 for P <= 8: exact in float.
template <class T>
T encode(int src, int64_t token, int64_t col) {
  return static_cast<T>((static_cast<int64_t>(src) * 1024 + token) * 16 + col % 16);
}
// What rank q's "experts" make of a received value (the test's y).
template <class T>
T expert_fn(T v, int q) {
  return v * static_cast<T>(q + 1) + static_cast<T>(q);
}

struct ExpectedRow {
  int src = 0;
  int64_t token = 0;
  std::vector<int32_t> topk_local;  // [K]
};
// What EP rank q must receive, straight from the contract.
inline std::vector<ExpectedRow> expected_recv(const GlobalRouting& g, int q) {
  const int L = g.E / g.P;
  std::vector<ExpectedRow> rows;
  for (int src = 0; src < g.P; ++src) {
    for (int64_t t = 0; t < g.tokens[static_cast<size_t>(src)]; ++t) {
      ExpectedRow row{src, t, std::vector<int32_t>(static_cast<size_t>(g.K), -1)};
      bool held = false;
      for (int j = 0; j < g.K; ++j) {
        const int32_t e = g.topk[static_cast<size_t>(src)][static_cast<size_t>(t * g.K + j)];
        if (e >= 0 && e / L == q) {
          held = true;
          row.topk_local[static_cast<size_t>(j)] = e % L;
        }
      }
      if (held) rows.push_back(row);
    }
  }
  return rows;
}

// Runs layout + dispatch + combine on `ex` for this rank's routing and counts wrong entries
// against the reference (handle fields, received values, combined values). T: float or double.
template <class T>
int64_t check_against_reference(sy::comm::TokenExchange& ex, MPI_Comm ep, const Routing& mine,
                                int64_t width, std::string* first_error = nullptr) {
  int P = 1, me = 0;
  MPI_Comm_size(ep, &P);
  MPI_Comm_rank(ep, &me);
  const GlobalRouting g = allgather_routing(ep, mine, ex.num_experts());
  const std::vector<ExpectedRow> want = expected_recv(g, me);
  int64_t wrong = 0;
  auto note = [&](const std::string& what) {
    ++wrong;
    if (first_error && first_error->empty()) *first_error = what;
  };

  sy::comm::ExchangeHandle h;
  ex.layout(mine.topk, mine.num_tokens, mine.top_k, h);
  if (h.num_recv != static_cast<int64_t>(want.size())) {
    std::ostringstream os;
    os << "rank " << me << " received " << h.num_recv << " rows, expected " << want.size();
    note(os.str());
  }
  const size_t n = std::min(static_cast<size_t>(h.num_recv), want.size());
  for (size_t i = 0; i < n; ++i) {
    if (h.recv_src_rank[i] != want[i].src || h.recv_src_token[i] != want[i].token) {
      std::ostringstream os;
      os << "rank " << me << " row " << i << " is (" << h.recv_src_rank[i] << ","
         << h.recv_src_token[i] << "), expected (" << want[i].src << "," << want[i].token << ")";
      note(os.str());
    }
    for (int j = 0; j < mine.top_k; ++j) {
      if (h.recv_topk_local[i * mine.top_k + j] != want[i].topk_local[static_cast<size_t>(j)]) {
        note("recv_topk_local mismatch");
      }
    }
  }

  std::vector<T> x(static_cast<size_t>(mine.num_tokens * width));
  for (int64_t t = 0; t < mine.num_tokens; ++t) {
    for (int64_t c = 0; c < width; ++c) x[static_cast<size_t>(t * width + c)] = encode<T>(me, t, c);
  }
  std::vector<T> recv(static_cast<size_t>(h.num_recv * width), T(-7));
  ex.dispatch(h, x, recv, width);
  for (size_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      if (recv[i * width + c] != encode<T>(want[i].src, want[i].token, c)) note("dispatched value");
    }
  }
  std::vector<T> y(recv.size());
  for (size_t i = 0; i < recv.size(); ++i) y[i] = expert_fn(recv[i], me);
  std::vector<T> out(x.size(), T(-7));
  ex.combine(h, y, out, width);
  const int L = ex.num_experts() / P;
  for (int64_t t = 0; t < mine.num_tokens; ++t) {
    std::vector<int> ranks;
    for (int j = 0; j < mine.top_k; ++j) {
      const int32_t e = mine.topk[static_cast<size_t>(t * mine.top_k + j)];
      if (e >= 0) ranks.push_back(e / L);
    }
    std::sort(ranks.begin(), ranks.end());
    ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
    for (int64_t c = 0; c < width; ++c) {
      T expect = 0;
      for (int q : ranks) expect += expert_fn(encode<T>(me, t, c), q);
      if (out[static_cast<size_t>(t * width + c)] != expect) note("combined value");
    }
  }
  return wrong;
}

}  // namespace sy::test

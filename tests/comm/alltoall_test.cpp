// Expert-parallel exchange against a gather-to-one-rank reference.
//
// Every rank routes seeded random tokens to experts (k assignments per token) and packs the rows
// sorted by global expert. Each element encodes (source world rank, packed row index, column),
// so any misplaced, duplicated or lost element is detected. World rank 0 gathers every rank's
// counts and rows, builds each rank's expected receive buffer with naive loops from the SPEC
// layout (local expert, then source EP rank, then the sender's order) and scatters it back; each
// rank counts its wrong elements and the counts are summed over the world. combine(dispatch(x))
// must give x back exactly.
#include "comm/alltoall.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "comm/groups.h"
#include "comm/watchdog.h"
#include "mpi_util.h"

namespace {

using sy::comm::ExchangeHandle;
using sy::comm::FlatExchange;
using sy::comm::ProcessGroups;
using sy::test::divisors;
using sy::test::sum_over_world;

enum class Skew {
  kUniform,                // every expert equally likely
  kSomeRanksSendNothing,   // every third rank has no tokens
  kOneExpertGetsAll,       // k = 1, every token to the last expert
  kSomeEpRanksGetNothing,  // only experts of odd EP ranks are chosen
  kNobodySends,            // no rows anywhere
};

const char* name(Skew s) {
  switch (s) {
    case Skew::kUniform:
      return "uniform";
    case Skew::kSomeRanksSendNothing:
      return "some-ranks-send-nothing";
    case Skew::kOneExpertGetsAll:
      return "one-expert-gets-all";
    case Skew::kSomeEpRanksGetNothing:
      return "some-ep-ranks-get-nothing";
    case Skew::kNobodySends:
      return "nobody-sends";
  }
  return "?";
}

struct Case {
  int ep = 1, etp = 1, local_experts = 1, k = 1, row = 1;
  Skew skew = Skew::kUniform;
  unsigned seed = 0;
  std::string str() const {
    std::ostringstream os;
    os << "ep=" << ep << " etp=" << etp << " L=" << local_experts << " k=" << k << " row=" << row
       << " skew=" << name(skew) << " seed=" << seed;
    return os.str();
  }
};

// Exactly representable in float for source < 64, row index < 4096, column < 64.
template <class T>
T encode(int source, int64_t row_idx, int col) {
  return static_cast<T>((static_cast<int64_t>(source) * 4096 + row_idx) * 64 + col);
}

struct Routing {
  std::vector<int64_t> counts;     // [E]
  std::vector<int> expert_of_row;  // [Ns] sorted by expert
};

Routing make_routing(const Case& c, int num_experts, int world_rank) {
  std::mt19937 rng(c.seed * 7919u + static_cast<unsigned>(world_rank));
  std::vector<int> allowed;
  for (int e = 0; e < num_experts; ++e) {
    const int ep_rank = e / c.local_experts;
    if (c.skew == Skew::kSomeEpRanksGetNothing && c.ep > 1 && ep_rank % 2 == 0) continue;
    allowed.push_back(e);
  }
  int tokens = std::uniform_int_distribution<int>(0, 40)(rng);
  if (c.skew == Skew::kNobodySends) tokens = 0;
  if (c.skew == Skew::kSomeRanksSendNothing && world_rank % 3 == 1) tokens = 0;
  const int k =
      c.skew == Skew::kOneExpertGetsAll ? 1 : std::min<int>(c.k, static_cast<int>(allowed.size()));

  Routing r;
  r.counts.assign(static_cast<size_t>(num_experts), 0);
  for (int t = 0; t < tokens; ++t) {
    if (c.skew == Skew::kOneExpertGetsAll) {
      r.expert_of_row.push_back(num_experts - 1);
      continue;
    }
    std::shuffle(allowed.begin(), allowed.end(), rng);  // k distinct experts for this token
    for (int j = 0; j < k; ++j) r.expert_of_row.push_back(allowed[static_cast<size_t>(j)]);
  }
  std::stable_sort(r.expert_of_row.begin(), r.expert_of_row.end());
  for (int e : r.expert_of_row) ++r.counts[static_cast<size_t>(e)];
  return r;
}

template <class T>
MPI_Datatype mpi_type() {
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

// Rank 0 only: the expected receive buffer and per-local-expert counts of world rank q.
template <class T>
void expected_for(int q, const Case& c, int num_experts, const std::vector<int64_t>& all_counts,
                  const std::vector<T>& all_rows, const std::vector<int64_t>& rows_offset,
                  std::vector<T>& out, std::vector<int64_t>& per_local_expert) {
  const int ep = c.ep, etp = c.etp, L = c.local_experts;
  // q's expert coordinates and the world ranks of its EP group, enumerated in EP-rank order.
  const int q_edp = q / (ep * etp), q_ep = (q / etp) % ep, q_etp = q % etp;
  std::vector<int> group;
  for (int i = 0; i < ep; ++i) group.push_back((q_edp * ep + i) * etp + q_etp);
  out.clear();
  per_local_expert.assign(static_cast<size_t>(L), 0);
  for (int l = 0; l < L; ++l) {
    const int g = q_ep * L + l;
    for (int src : group) {
      const int64_t* counts = &all_counts[static_cast<size_t>(src) * num_experts];
      int64_t first = 0;  // src's first packed row of expert g
      for (int e = 0; e < g; ++e) first += counts[e];
      const int64_t n = counts[g];
      const T* rows = &all_rows[static_cast<size_t>(rows_offset[static_cast<size_t>(src)])];
      out.insert(out.end(), rows + first * c.row, rows + (first + n) * c.row);
      per_local_expert[static_cast<size_t>(l)] += n;
    }
  }
}

// Runs one case on every rank; returns this rank's wrong-element count (before the world sum).
template <class T>
int64_t run_case(const Case& c, FlatExchange& ex) {
  const int W = sy::test::world_size(), me = sy::test::world_rank();
  const int E = c.ep * c.local_experts;
  const Routing routing = make_routing(c, E, me);
  const int64_t Ns = static_cast<int64_t>(routing.expert_of_row.size());
  std::vector<T> send(static_cast<size_t>(Ns * c.row));
  for (int64_t j = 0; j < Ns; ++j) {
    for (int col = 0; col < c.row; ++col)
      send[static_cast<size_t>(j * c.row + col)] = encode<T>(me, j, col);
  }

  const ExchangeHandle h = ex.notify(routing.counts);
  std::vector<T> recv(static_cast<size_t>(h.num_recv_rows * c.row));
  ex.dispatch(h, send, recv, c.row);
  std::vector<T> back(send.size(), T(-1));
  ex.combine(h, recv, back, c.row);

  int64_t wrong = 0;
  for (size_t i = 0; i < send.size(); ++i) wrong += back[i] != send[i];
  wrong += h.num_send_rows != Ns;

  // Gather counts and rows on rank 0.
  std::vector<int64_t> all_counts(static_cast<size_t>(W) * E);
  MPI_Gather(routing.counts.data(), E, MPI_INT64_T, all_counts.data(), E, MPI_INT64_T, 0,
             MPI_COMM_WORLD);
  const int send_elems = static_cast<int>(send.size());
  std::vector<int> elems(static_cast<size_t>(W)), displs(static_cast<size_t>(W));
  MPI_Gather(&send_elems, 1, MPI_INT, elems.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::exclusive_scan(elems.begin(), elems.end(), displs.begin(), 0);
  std::vector<T> all_rows(static_cast<size_t>(displs.back() + elems.back()));
  MPI_Gatherv(send.data(), send_elems, mpi_type<T>(), all_rows.data(), elems.data(), displs.data(),
              mpi_type<T>(), 0, MPI_COMM_WORLD);

  // Rank 0 builds every rank's expected buffer; they travel back by Scatterv.
  const int L = c.local_experts;
  std::vector<T> expected_all;
  std::vector<int64_t> expected_counts_all(static_cast<size_t>(W) * L);
  std::vector<int> exp_elems(static_cast<size_t>(W)), exp_displs(static_cast<size_t>(W));
  if (me == 0) {
    std::vector<int64_t> rows_offset(displs.begin(), displs.end());
    std::vector<T> one;
    std::vector<int64_t> per_local;
    for (int q = 0; q < W; ++q) {
      expected_for<T>(q, c, E, all_counts, all_rows, rows_offset, one, per_local);
      exp_elems[static_cast<size_t>(q)] = static_cast<int>(one.size());
      expected_all.insert(expected_all.end(), one.begin(), one.end());
      std::copy(per_local.begin(), per_local.end(),
                expected_counts_all.begin() + static_cast<ptrdiff_t>(q) * L);
    }
    std::exclusive_scan(exp_elems.begin(), exp_elems.end(), exp_displs.begin(), 0);
  }
  int my_exp_elems = 0;
  MPI_Scatter(exp_elems.data(), 1, MPI_INT, &my_exp_elems, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<T> expected(static_cast<size_t>(my_exp_elems));
  MPI_Scatterv(expected_all.data(), exp_elems.data(), exp_displs.data(), mpi_type<T>(),
               expected.data(), my_exp_elems, mpi_type<T>(), 0, MPI_COMM_WORLD);
  std::vector<int64_t> expected_counts(static_cast<size_t>(L));
  MPI_Scatter(expected_counts_all.data(), L, MPI_INT64_T, expected_counts.data(), L, MPI_INT64_T, 0,
              MPI_COMM_WORLD);

  // Elements missing or extra count as wrong; the common prefix is compared element by element.
  const size_t n = std::min(expected.size(), recv.size());
  wrong += static_cast<int64_t>(std::max(expected.size(), recv.size()) - n);
  for (size_t i = 0; i < n; ++i) wrong += recv[i] != expected[i];
  for (int l = 0; l < L; ++l) {
    wrong += h.recv_rows_per_local_expert[static_cast<size_t>(l)] !=
             expected_counts[static_cast<size_t>(l)];
    int64_t offset = 0;
    for (int j = 0; j < l; ++j) offset += expected_counts[static_cast<size_t>(j)];
    wrong += h.recv_offset_per_local_expert[static_cast<size_t>(l)] != offset;
  }
  if (wrong != 0) ADD_FAILURE() << "rank " << me << ": " << wrong << " wrong in " << c.str();
  return wrong;
}

std::vector<Case> cases_for(int ep, int etp, unsigned& seed) {
  std::vector<Case> cases;
  for (int L : {1, 3}) {
    for (int k = 1; k <= 4; ++k) {
      cases.push_back({ep, etp, L, k, 1 + static_cast<int>(seed % 17), Skew::kUniform, seed});
      ++seed;
    }
    for (Skew s : {Skew::kSomeRanksSendNothing, Skew::kOneExpertGetsAll,
                   Skew::kSomeEpRanksGetNothing, Skew::kNobodySends}) {
      cases.push_back({ep, etp, L, 2, 1 + static_cast<int>(seed % 17), s, seed});
      ++seed;
    }
  }
  return cases;
}

template <class T>
void run_all_layouts() {
  const int W = sy::test::world_size();
  unsigned seed = std::is_same_v<T, float> ? 1 : 1000;
  int64_t total_wrong = 0, cases_run = 0;
  for (int ep : divisors(W)) {
    for (int etp : {1, 2}) {
      if (W % (ep * etp) != 0) continue;
      ProcessGroups groups(MPI_COMM_WORLD, {1, ep, etp, 0});
      for (int L : {1, 3}) {
        FlatExchange ex(groups.ep().get(), ep * L);
        for (const Case& c : cases_for(ep, etp, seed)) {
          if (c.local_experts != L) continue;
          total_wrong += run_case<T>(c, ex);
          ++cases_run;
        }
      }
    }
  }
  EXPECT_EQ(sum_over_world(total_wrong), 0) << "wrong elements summed over all ranks and cases";
  EXPECT_GT(cases_run, 0);
}

TEST(AllToAll, FlatMatchesGatherReferenceFloat) {
  run_all_layouts<float>();
}
TEST(AllToAll, FlatMatchesGatherReferenceDouble) {
  run_all_layouts<double>();
}

TEST(AllToAll, TwoEpGroupsRunConcurrently) {
  const int W = sy::test::world_size();
  if (W < 4 || W % 2 != 0) GTEST_SKIP() << "needs an even world of at least 4 ranks";
  ProcessGroups groups(MPI_COMM_WORLD, {1, 2, 1, 0});
  ASSERT_EQ(groups.layout().edp, W / 2);
  FlatExchange ex(groups.ep().get(), 4);
  int64_t wrong = 0;
  for (unsigned s = 0; s < 4; ++s) {
    wrong += run_case<float>({2, 1, 2, 2, 7, Skew::kUniform, 5000 + s}, ex);
  }
  EXPECT_EQ(sum_over_world(wrong), 0);
}

TEST(AllToAll, BuffersDoNotGrowWhenSizesDoNot) {
  const int W = sy::test::world_size(), me = sy::test::world_rank();
  ProcessGroups groups(MPI_COMM_WORLD, {1, W, 1, 0});
  // With a watchdog attached (armed around each collective; a generous timeout never fires).
  std::atomic<int> timeouts{0};
  sy::comm::Watchdog watchdog(60.0, [&](const std::string&) { ++timeouts; });
  FlatExchange ex(groups.ep().get(), 2 * W, &watchdog);
  // Every rank sends 3 rows to every expert: the same sizes every call.
  std::vector<int64_t> counts(static_cast<size_t>(2 * W), 3);
  const int row = 8;
  std::vector<double> send(static_cast<size_t>(6 * W * row));
  for (size_t i = 0; i < send.size(); ++i) send[i] = me * 1e6 + static_cast<double>(i);
  const ExchangeHandle h = ex.notify(counts);
  EXPECT_EQ(h.num_recv_rows, 6 * W);
  std::vector<double> recv(static_cast<size_t>(h.num_recv_rows * row)), back(send.size());
  ex.dispatch(h, send, recv, row);
  const size_t bytes = ex.buffer_bytes();
  for (int i = 0; i < 3; ++i) {
    ex.dispatch(h, send, recv, row);
    ex.combine(h, recv, back, row);
    EXPECT_EQ(ex.buffer_bytes(), bytes);
  }
  EXPECT_EQ(back, send);
  EXPECT_EQ(timeouts.load(), 0);
}

TEST(AllToAll, MpiCountsAreElementsAndOverflowThrows) {
  const std::vector<int64_t> rows = {2, 0, 5};
  std::vector<int> counts(3), displs(3);
  sy::comm::rows_to_mpi_counts(rows, 4, counts, displs);
  EXPECT_EQ(counts, (std::vector<int>{8, 0, 20}));
  EXPECT_EQ(displs, (std::vector<int>{0, 8, 8}));
  // One count past INT_MAX, and a displacement past it with every count fitting.
  const int64_t big = int64_t{1} << 20;
  EXPECT_THROW(
      sy::comm::rows_to_mpi_counts(std::vector<int64_t>{1, big * 4, 1}, 1024, counts, displs),
      std::runtime_error);
  EXPECT_THROW(
      sy::comm::rows_to_mpi_counts(std::vector<int64_t>{big, big, big}, 1024, counts, displs),
      std::runtime_error);
  sy::comm::rows_to_mpi_counts(std::vector<int64_t>{big, big - 1, 0}, 1024, counts, displs);
  EXPECT_EQ(displs[2], 2 * big * 1024 - 1024);
  EXPECT_LE(static_cast<int64_t>(counts[0]) + counts[1], INT_MAX);
}

}  // namespace

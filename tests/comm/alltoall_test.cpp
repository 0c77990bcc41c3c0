// The flat token exchange against the naive reference of exchange_ref.h (every rank's routing
// allgathered, the expected rows and sums derived with plain loops from the contract).
//
// Every EP size that divides the world, 1 and 3 local experts, k = 1..4, every skew of
// exchange_ref.h (ranks that send nothing, ranks that receive nothing, dropped slots, one
// expert that gets everything), float and double. One exchange object serves all cases of a
// layout, so its buffers grow and are reused along the way.
#include "comm/alltoall.h"

#include <gtest/gtest.h>

#include <atomic>
#include <climits>
#include <string>
#include <vector>

#include "comm/groups.h"
#include "comm/watchdog.h"
#include "common/mpi_util.h"
#include "exchange_ref.h"
#include "src/core/error.h"

namespace {

using sy::comm::A2aAlgo;
using sy::comm::ExchangeOptions;
using sy::comm::make_exchange;
using sy::comm::ProcessGroups;
using sy::test::divisors;
using sy::test::Skew;
using sy::test::sum_over_world;

template <class T>
void flat_against_reference(unsigned seed) {
  const int W = sy::test::world_size();
  int64_t wrong = 0, cases = 0;
  std::string first;
  for (int ep : divisors(W)) {
    ProcessGroups groups(MPI_COMM_WORLD, {1, ep, 1, 0});
    for (int L : {1, 3}) {
      ExchangeOptions opt;
      opt.ep_comm = groups.ep().get();
      opt.num_experts = ep * L;
      opt.algo = A2aAlgo::kFlat;
      auto ex = make_exchange(opt);
      for (int k = 1; k <= 4; ++k) {
        for (Skew skew : sy::test::kAllSkews) {
          if (k != 2 && skew != Skew::kUniform && skew != Skew::kDropped) continue;
          const auto routing =
              sy::test::make_routing(seed++, groups.ep().rank(), ep, ep * L, k, skew);
          const int64_t width = 1 + seed % 13;
          const int64_t w =
              sy::test::check_against_reference<T>(*ex, groups.ep().get(), routing, width, &first);
          if (w)
            ADD_FAILURE() << "ep=" << ep << " L=" << L << " k=" << k << " skew=" << name(skew)
                          << ": " << w << " wrong; first: " << first;
          wrong += w;
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(sum_over_world(wrong), 0) << "wrong entries summed over all ranks and cases";
  EXPECT_GT(cases, 0);
}

TEST(FlatExchange, MatchesGatherReferenceFloat) {
  flat_against_reference<float>(1);
}
TEST(FlatExchange, MatchesGatherReferenceDouble) {
  flat_against_reference<double>(5000);
}

TEST(FlatExchange, TwoEpGroupsRunConcurrently) {
  const int W = sy::test::world_size();
  if (W < 4 || W % 2 != 0) GTEST_SKIP() << "needs an even world of at least 4 ranks";
  ProcessGroups groups(MPI_COMM_WORLD, {1, 2, 1, 0});
  ASSERT_EQ(groups.layout().edp, W / 2);
  ExchangeOptions opt;
  opt.ep_comm = groups.ep().get();
  opt.num_experts = 4;
  auto ex = make_exchange(opt);
  int64_t wrong = 0;
  for (unsigned s = 0; s < 4; ++s) {
    const auto routing =
        sy::test::make_routing(9000 + s, groups.ep().rank(), 2, 4, 2, Skew::kUniform);
    wrong += sy::test::check_against_reference<float>(*ex, groups.ep().get(), routing, 7);
  }
  EXPECT_EQ(sum_over_world(wrong), 0);
}

TEST(FlatExchange, BuffersDoNotGrowWhenSizesDoNot) {
  const int W = sy::test::world_size(), me = sy::test::world_rank();
  // With a watchdog attached (armed around each collective; a generous timeout never fires).
  std::atomic<int> timeouts{0};
  sy::comm::Watchdog watchdog(60.0, [&](const std::string&) { ++timeouts; });
  ExchangeOptions opt;
  opt.ep_comm = MPI_COMM_WORLD;
  opt.num_experts = 2 * W;
  opt.watchdog = &watchdog;
  auto ex = make_exchange(opt);
  const auto routing = sy::test::make_routing(77, me, W, 2 * W, 2, Skew::kUniform);
  const int64_t width = 8;
  sy::comm::ExchangeHandle h;
  ex->layout(routing.topk, routing.num_tokens, 2, h);
  std::vector<double> x(static_cast<size_t>(routing.num_tokens * width), 1.0);
  std::vector<double> recv(static_cast<size_t>(h.num_recv * width)), out(x.size());
  ex->dispatch(h, x, recv, width);
  ex->combine(h, recv, out, width);
  const size_t bytes = ex->buffer_bytes();
  for (int i = 0; i < 3; ++i) {
    ex->dispatch(h, x, recv, width);
    ex->combine(h, recv, out, width);
    EXPECT_EQ(ex->buffer_bytes(), bytes);
  }
  EXPECT_EQ(ex->stats().calls, 8);
  EXPECT_EQ(timeouts.load(), 0);
}

TEST(FlatExchange, BadTopkIsRejectedWithItsPosition) {
  const int W = sy::test::world_size();
  ExchangeOptions opt;
  opt.ep_comm = MPI_COMM_WORLD;
  opt.num_experts = W;
  auto ex = make_exchange(opt);
  sy::comm::ExchangeHandle h;
  const std::vector<int32_t> topk = {0, W};  // token 0, slot 1 out of range
  try {
    ex->layout(topk, 1, 2, h);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("token 0, slot 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ex->layout(topk, 2, 2, h), std::invalid_argument);  // 4 entries expected
}

TEST(FlatExchange, MakeExchangeRejectsBadOptions) {
  const int W = sy::test::world_size();
  ExchangeOptions opt;
  opt.ep_comm = MPI_COMM_WORLD;
  opt.num_experts = W + 1;
  if (W > 1) {
    EXPECT_THROW(make_exchange(opt), sy::UsageError);
  }
  opt.num_experts = W;
  opt.node_of_ep_rank.assign(static_cast<size_t>(W) + 1, 0);
  EXPECT_THROW(make_exchange(opt), sy::UsageError);
  if (W >= 3) {
    opt.node_of_ep_rank.assign(static_cast<size_t>(W), 0);
    opt.node_of_ep_rank[0] = 1;  // one node of 1 rank, one of W - 1
    opt.algo = A2aAlgo::kHierarchical;
    EXPECT_THROW(make_exchange(opt), sy::UsageError);
    opt.algo = A2aAlgo::kFlat;  // flat does not care
    EXPECT_NO_THROW(make_exchange(opt));
  }
}

TEST(FlatExchange, HandleFromAnotherExchangeIsRefused) {
  // On this rank alone: a handle laid out by one exchange must not drive another (of either
  // transport), whose buffers and records it does not describe.
  ExchangeOptions opt;
  opt.ep_comm = MPI_COMM_SELF;
  opt.num_experts = 2;
  auto mine = make_exchange(opt);
  auto other_flat = make_exchange(opt);
  opt.algo = A2aAlgo::kHierarchical;
  opt.node_of_ep_rank = {0};
  auto other_hier = make_exchange(opt);
  sy::comm::ExchangeHandle h;
  mine->layout(std::vector<int32_t>{0, 1, 1, 0}, 2, 2, h);
  const int64_t width = 3;
  std::vector<float> x(static_cast<size_t>(2 * width), 1.f);
  std::vector<float> recv(static_cast<size_t>(h.num_recv * width));
  mine->dispatch(h, x, recv, width);  // its own handle: fine
  for (auto* other : {other_flat.get(), other_hier.get()}) {
    try {
      other->dispatch(h, x, recv, width);
      ADD_FAILURE() << "a foreign handle was accepted";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find("handle from another exchange"), std::string::npos)
          << e.what();
    }
  }
}

TEST(FlatExchange, MpiCountsAreRowsAndOverflowThrows) {
  const std::vector<int64_t> rows = {2, 0, 5};
  std::vector<int> counts(3), displs(3);
  sy::comm::rows_to_mpi_counts(rows, counts, displs);
  EXPECT_EQ(counts, (std::vector<int>{2, 0, 5}));
  EXPECT_EQ(displs, (std::vector<int>{0, 2, 2}));
  // One count past INT_MAX, and a displacement past it with every count fitting.
  const int64_t big = int64_t{1} << 30;
  EXPECT_THROW(sy::comm::rows_to_mpi_counts(std::vector<int64_t>{1, 2 * big, 1}, counts, displs),
               std::runtime_error);
  EXPECT_THROW(sy::comm::rows_to_mpi_counts(std::vector<int64_t>{big, big, big}, counts, displs),
               std::runtime_error);
  sy::comm::rows_to_mpi_counts(std::vector<int64_t>{big, big - 1, 0}, counts, displs);
  EXPECT_EQ(displs[2], INT_MAX);
  // What the element counts refused: 300 000 fp32 rows of d_model 7168 to one peer are 2.1e9
  // elements (8.6 GB); as rows of a row datatype the count is 300 000.
  sy::comm::rows_to_mpi_counts(std::vector<int64_t>{300000, 300000, 0}, counts, displs);
  EXPECT_EQ(displs[2], 600000);
}

// The row datatype: its size is the row's, displacements count whole rows, and a width that
// does not fit an int is refused before MPI sees it.
TEST(FlatExchange, RowTypeMovesWholeRows) {
  const sy::comm::RowType row(3, MPI_FLOAT);
  int size = 0;
  MPI_Type_size(row.get(), &size);
  EXPECT_EQ(size, 12);
  // On MPI_COMM_SELF: rows 1..2 of `in` (displacement 1 row) land at row 2 of `out`.
  const std::vector<float> in = {0, 1, 2, 10, 11, 12, 20, 21, 22};
  std::vector<float> out(12, -1);
  int count = 2, sdispl = 1, rdispl = 2;
  ASSERT_EQ(MPI_Alltoallv(in.data(), &count, &sdispl, row.get(), out.data(), &count, &rdispl,
                          row.get(), MPI_COMM_SELF),
            MPI_SUCCESS);
  EXPECT_EQ(out, (std::vector<float>{-1, -1, -1, -1, -1, -1, 10, 11, 12, 20, 21, 22}));
  EXPECT_THROW(sy::comm::RowType(0, MPI_FLOAT), std::runtime_error);
  EXPECT_THROW(sy::comm::RowType(int64_t{INT_MAX} + 1, MPI_BYTE), std::runtime_error);
}

}  // namespace

// The sharded parameter table: Slab runs on hand-worked cases, and for every rank of several
// layouts, the local buffer that init_params fills equals the matching elements of the 1-rank
// initialisation (SPEC section 2: init never depends on the layout), with every global element
// held by exactly one rank of each data-parallel replica.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "src/config/config.h"
#include "src/core/slab.h"
#include "src/model/init.h"
#include "src/model/params.h"

namespace sy {
namespace {

std::vector<std::tuple<int64_t, int64_t, int64_t>> runs(const Slab& s,
                                                        const std::vector<int64_t>& shape) {
  std::vector<std::tuple<int64_t, int64_t, int64_t>> r;
  s.for_each_run(shape, [&](int64_t g, int64_t l, int64_t n) { r.emplace_back(g, l, n); });
  return r;
}

TEST(Slab, RunsOfAColumnSplitWqkv) {
  // [C=4, 3C=12], tp rank 1 of 2: columns 2..3 of each of the q, k, v blocks, local [4, 6].
  const Slab s{{0, 2}, {4, 4}, {1, 3}, {4, 2}};
  EXPECT_EQ(s.numel(), 24);
  EXPECT_EQ(s.local_shape(), (std::vector<int64_t>{4, 6}));
  const auto r = runs(s, {4, 12});
  ASSERT_EQ(r.size(), 12u);
  // Row 0: global 2, 6, 10; row 1: 14, 18, 22 (12 columns per row); local runs of 2 in order.
  EXPECT_EQ(r[0], std::make_tuple(int64_t{2}, int64_t{0}, int64_t{2}));
  EXPECT_EQ(r[1], std::make_tuple(int64_t{6}, int64_t{2}, int64_t{2}));
  EXPECT_EQ(r[2], std::make_tuple(int64_t{10}, int64_t{4}, int64_t{2}));
  EXPECT_EQ(r[3], std::make_tuple(int64_t{14}, int64_t{6}, int64_t{2}));
  EXPECT_EQ(r[11], std::make_tuple(int64_t{46}, int64_t{22}, int64_t{2}));
}

TEST(Slab, RunsOfAThreeDimensionalBlockAndWhole) {
  // [E=4, C=2, F=6]: experts 2..3, F columns 3..5 -> local [2, 2, 3].
  const Slab s{{2, 0, 3}, {2, 2, 3}, {1, 1, 1}, {2, 2, 3}};
  const auto r = runs(s, {4, 2, 6});
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], std::make_tuple(int64_t{2 * 12 + 3}, int64_t{0}, int64_t{3}));
  EXPECT_EQ(r[1], std::make_tuple(int64_t{2 * 12 + 6 + 3}, int64_t{3}, int64_t{3}));
  EXPECT_EQ(r[2], std::make_tuple(int64_t{3 * 12 + 3}, int64_t{6}, int64_t{3}));
  EXPECT_EQ(r[3], std::make_tuple(int64_t{3 * 12 + 6 + 3}, int64_t{9}, int64_t{3}));
  const auto w = runs(Slab::whole({5}), {5});
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], std::make_tuple(int64_t{0}, int64_t{0}, int64_t{5}));
}

Config model_config() {
  return parse_config("data: {path: x.h5}\n",
                      {"model.d_model=16", "model.n_heads=4", "model.n_layers=2",
                       "model.vocab_size=11", "moe.num_experts=4", "moe.ffn_hidden=8",
                       "moe.shared_experts=1", "model.tie_embeddings=false"},
                      "test");
}

ShardLayout coords(int rank, int world, int tp, int ep, int etp) {
  ShardLayout s;
  s.tp = tp;
  s.tp_rank = rank % tp;
  s.dp = world / tp;
  s.dp_rank = rank / tp;
  s.ep = ep;
  s.etp = etp;
  s.etp_rank = rank % etp;
  s.ep_rank = (rank / etp) % ep;
  s.edp = world / (ep * etp);
  s.edp_rank = rank / (ep * etp);
  return s;
}

class ShardedInit : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(ShardedInit, LocalPartsAreSlicesOfTheOneRankInitAndCoverIt) {
  const auto [world, tp, ep, etp] = GetParam();
  const Config cfg = model_config();
  const ParamTable full = make_param_table(cfg);
  std::vector<float> ref(full.total_numel());
  init_params(ref.data(), full, cfg.run.seed);

  // times_held[name][i]: how many writer ranks hold global element i.
  std::map<std::string, std::vector<int>> writers;
  for (const ParamSpec& p : full.specs()) writers[p.name].assign(p.global_numel(), 0);
  for (int rank = 0; rank < world; ++rank) {
    const ShardLayout lay = coords(rank, world, tp, ep, etp);
    const ParamTable t = make_param_table(cfg, lay);
    ASSERT_EQ(t.specs().size(), full.specs().size());
    EXPECT_EQ(t.group_range(ParamGroup::kDense).size % static_cast<size_t>(lay.dp), 0u);
    EXPECT_EQ(t.group_range(ParamGroup::kExpert).size % static_cast<size_t>(lay.edp), 0u);
    std::vector<float> local(t.total_numel(), -1.0f);
    init_params(local.data(), t, cfg.run.seed);
    for (const ParamSpec& p : t.specs()) {
      const ParamSpec& q = full.at(p.name);
      const auto g0 = static_cast<int64_t>(q.offset);
      int64_t seen = 0;
      p.slab.for_each_run(p.shape, [&](int64_t g, int64_t l, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_EQ(local[p.offset + static_cast<size_t>(l + i)],
                    ref[static_cast<size_t>(g0 + g + i)])
              << p.name << " rank " << rank << " global " << g + i;
          if (p.writer) ++writers[p.name][static_cast<size_t>(g + i)];
        }
        seen += n;
      });
      EXPECT_EQ(seen, static_cast<int64_t>(p.numel)) << p.name;
    }
  }
  for (const auto& [name, held] : writers)
    for (size_t i = 0; i < held.size(); ++i)
      ASSERT_EQ(held[i], 1) << name << " element " << i << " must have exactly one writer";
}

INSTANTIATE_TEST_SUITE_P(Layouts, ShardedInit,
                         ::testing::Values(std::make_tuple(1, 1, 1, 1), std::make_tuple(2, 2, 1, 1),
                                           std::make_tuple(2, 1, 2, 1), std::make_tuple(4, 2, 2, 1),
                                           std::make_tuple(4, 1, 2, 2), std::make_tuple(8, 2, 2, 2),
                                           std::make_tuple(8, 1, 4, 1),
                                           std::make_tuple(4, 4, 4, 1)));

}  // namespace
}  // namespace sy

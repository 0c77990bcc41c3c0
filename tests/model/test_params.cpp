// The sharded parameter table: Slab runs on hand-worked cases, and for every rank of several
// layouts, the local buffer that init_params fills equals the matching elements of the 1-rank
// initialisation (SPEC section 2: init never depends on the layout), with every global element
// held by exactly one rank of each data-parallel replica; and init_runs, the enumeration both
// backends' init executes, against SPEC section 4's sharding written out.
#include <gtest/gtest.h>

#include <map>
#include <random>
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

// Global flat index of every local element of `s`, in local order (from for_each_run).
std::vector<int64_t> global_of_local(const Slab& s, const std::vector<int64_t>& shape) {
  std::vector<int64_t> g;
  s.for_each_run(shape, [&](int64_t first, int64_t, int64_t n) {
    for (int64_t i = 0; i < n; ++i) g.push_back(first + i);
  });
  return g;
}

// sub_slabs against the element-by-element walk: for random regular slabs of 1 to 3 dimensions
// (blocks with gaps between them, as a tp-split wqkv) and random ranges, the pieces' elements in
// order are the range's, each piece is a valid hyperslab inside the tensor, and there are at most
// 3 (2 nd - 1) of them.
TEST(Slab, SubSlabsOfALocalRangeWalkItsElementsInOrder) {
  std::mt19937 rng(7);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int64_t checked = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const size_t nd = static_cast<size_t>(pick(1, 3));
    Slab s;
    std::vector<int64_t> shape;
    for (size_t d = 0; d < nd; ++d) {
      s.block.push_back(pick(1, 3));
      s.count.push_back(pick(1, 3));
      s.stride.push_back(s.block[d] + pick(0, 2));
      s.start.push_back(pick(0, 2));
      shape.push_back(s.start[d] + (s.count[d] - 1) * s.stride[d] + s.block[d] + pick(0, 1));
    }
    const std::vector<int64_t> all = global_of_local(s, shape);
    ASSERT_EQ(static_cast<int64_t>(all.size()), s.numel());
    const int64_t first = pick(0, s.numel() - 1), n = pick(1, s.numel() - first);
    const std::vector<Slab> pieces = s.sub_slabs(first, n);
    EXPECT_LE(pieces.size(), 3 * (2 * nd - 1));
    std::vector<int64_t> got;
    for (const Slab& p : pieces) {
      for (size_t d = 0; d < nd; ++d) {
        EXPECT_TRUE(p.count[d] == 1 || p.block[d] <= p.stride[d]);
        EXPECT_LE(p.start[d] + (p.count[d] - 1) * p.stride[d] + p.block[d], shape[d]);
      }
      const std::vector<int64_t> g = global_of_local(p, shape);
      EXPECT_EQ(static_cast<int64_t>(g.size()), p.numel());
      got.insert(got.end(), g.begin(), g.end());
    }
    const std::vector<int64_t> want(all.begin() + first, all.begin() + first + n);
    ASSERT_EQ(got, want) << "trial " << trial << ": [" << first << ", " << first + n << ")";
    checked += n;
  }
  EXPECT_GT(checked, 1000);
  // The whole slab is itself; an empty range is nothing.
  const Slab wqkv{{0, 2}, {4, 4}, {1, 3}, {4, 2}};
  ASSERT_EQ(wqkv.sub_slabs(0, 24).size(), 1u);
  EXPECT_EQ(wqkv.sub_slabs(0, 24)[0].count, wqkv.count);
  EXPECT_TRUE(wqkv.sub_slabs(5, 0).empty());
}

Config model_config() {
  return parse_config("data: {path: x.h5}\n",
                      {"model.d_model=16", "model.n_heads=4", "model.n_layers=2",
                       "model.vocab_size=11", "moe.num_experts=4", "moe.ffn_hidden=8",
                       "moe.shared_experts=1", "model.tie_embeddings=false"},
                      "test");
}

// Each group is padded to a multiple of its own alignment, by hand: the expert group starts
// where the padded dense group ends. Before, the absolute end was rounded, so an expert group
// starting at an offset that is no multiple of edp (tp > 1, dp < edp) was left unpadded and the
// trainer stopped on "group of N elements not padded to edp ranks".
TEST(ParamTable, EachGroupIsPaddedToItsOwnAlignment) {
  auto table = [] {
    ParamTable t;
    t.add("model/embed", {5}, ParamKind::kGain);
    ParamSpec e;
    e.name = "model/layers/0/moe/w1";
    e.shape = {4};
    e.slab = Slab::whole(e.shape);
    e.group = ParamGroup::kExpert;
    t.add(std::move(e));
    return t;
  };
  struct Case {
    size_t dense_align, expert_align, dense_size, expert_first, expert_size;
  };
  for (const Case& c : {Case{1, 2, 5, 5, 4}, Case{2, 3, 6, 6, 6}, Case{2, 4, 6, 6, 4},
                        Case{1, 1, 5, 5, 4}, Case{3, 2, 6, 6, 4}}) {
    ParamTable t = table();
    t.layout_groups(c.dense_align, c.expert_align);
    const auto d = t.group_range(ParamGroup::kDense), x = t.group_range(ParamGroup::kExpert);
    SCOPED_TRACE(testing::Message() << c.dense_align << ", " << c.expert_align);
    EXPECT_EQ(d.first, 0u);
    EXPECT_EQ(d.size, c.dense_size);
    EXPECT_EQ(x.first, c.expert_first);
    EXPECT_EQ(x.size, c.expert_size);
    EXPECT_EQ(t.at("model/layers/0/moe/w1").offset, c.expert_first);
    EXPECT_EQ(t.total_numel(), c.expert_first + c.expert_size);
  }
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

// init_runs (src/model/init.h): the one enumeration of "which global elements go where" that the
// CPU init_params and the GPU's cuda_init_params both execute. For every rank of tensor-, expert-
// and expert-tensor-parallel layouts, the global index each run assigns to each local element
// must equal the index computed independently from SPEC section 4's sharding (the shard of a
// tp-split wqkv takes its heads' columns of q, k and v; an EP rank its block of experts; ...),
// and every local element of every parameter must be drawn exactly once. The GPU used to draw
// every parameter from global index 0, which this comparison rejects for every shard.
bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The global multi-index of local multi-index `idx` of parameter `name` (global shape `g`) on the
// rank at `lay`, written from SPEC section 4 and params.h's sharding table -- not from its Slab.
std::vector<int64_t> global_index(const std::string& name, const std::vector<int64_t>& g,
                                  std::vector<int64_t> idx, const ShardLayout& lay) {
  if (ends_with(name, "attn/wqkv")) {  // [C, 3C]: this rank's C/tp columns of each of q, k, v
    const int64_t C = g[0], Ct = C / lay.tp;
    const int64_t block = idx[1] / Ct, col = idx[1] % Ct;
    idx[1] = block * C + lay.tp_rank * Ct + col;
  } else if (ends_with(name, "attn/wo")) {  // [C, C]: rows over tp
    idx[0] += lay.tp_rank * (g[0] / lay.tp);
  } else if (ends_with(name, "moe/shared/w1") || ends_with(name, "moe/shared/w3")) {
    idx[2] += lay.tp_rank * (g[2] / lay.tp);  // [S, C, F]: F columns over tp
  } else if (ends_with(name, "moe/shared/w2")) {
    idx[1] += lay.tp_rank * (g[1] / lay.tp);  // [S, F, C]: F rows over tp
  } else if (ends_with(name, "moe/w1") || ends_with(name, "moe/w3")) {
    idx[0] += lay.ep_rank * (g[0] / lay.ep);    // [E, C, F]: experts over ep
    idx[2] += lay.etp_rank * (g[2] / lay.etp);  // F over etp
  } else if (ends_with(name, "moe/w2")) {
    idx[0] += lay.ep_rank * (g[0] / lay.ep);  // [E, F, C]
    idx[1] += lay.etp_rank * (g[1] / lay.etp);
  }
  return idx;
}

int64_t flat(const std::vector<int64_t>& idx, const std::vector<int64_t>& shape) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
  return f;
}

class InitRuns : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(InitRuns, DrawEveryLocalElementAtItsGlobalIndex) {
  const auto [world, tp, ep, etp] = GetParam();
  const Config cfg = model_config();
  for (int rank = 0; rank < world; ++rank) {
    const ShardLayout lay = coords(rank, world, tp, ep, etp);
    const ParamTable table = make_param_table(cfg, lay);
    // global_of[i]: the global index the runs draw for local buffer element i (-1: none).
    std::vector<int64_t> global_of(table.total_numel(), -1);
    std::vector<const ParamSpec*> owner(table.total_numel(), nullptr);
    size_t drawn = 0;
    for (const InitRun& r : init_runs(table)) {
      ASSERT_NE(r.spec, nullptr);
      ASSERT_GE(r.local, r.spec->offset);
      ASSERT_LE(r.local + r.count, r.spec->offset + r.spec->numel) << r.spec->name;
      ASSERT_LE(r.global + r.count, r.spec->global_numel()) << r.spec->name;
      for (size_t i = 0; i < r.count; ++i) {
        ASSERT_EQ(global_of[r.local + i], -1) << r.spec->name << ": local element drawn twice";
        global_of[r.local + i] = static_cast<int64_t>(r.global + i);
        owner[r.local + i] = r.spec;
      }
      drawn += r.count;
    }
    size_t wrong = 0, expected = 0;
    for (const ParamSpec& p : table.specs()) {
      expected += p.numel;
      // Walk the local shape in row-major order: local flat index i <-> multi-index idx.
      const std::vector<int64_t>& ls = p.local_shape;
      std::vector<int64_t> idx(ls.size(), 0);
      for (size_t i = 0; i < p.numel; ++i) {
        const int64_t want = flat(global_index(p.name, p.shape, idx, lay), p.shape);
        if (owner[p.offset + i] != &p || global_of[p.offset + i] != want) {
          if (wrong < 5)
            ADD_FAILURE() << p.name << " rank " << rank << " local " << i << ": drawn as global "
                          << global_of[p.offset + i] << ", SPEC says " << want;
          ++wrong;
        }
        for (int d = static_cast<int>(ls.size()) - 1; d >= 0; --d)
          if (++idx[static_cast<size_t>(d)] < ls[static_cast<size_t>(d)])
            break;
          else
            idx[static_cast<size_t>(d)] = 0;
      }
    }
    EXPECT_EQ(wrong, 0u) << "rank " << rank;
    EXPECT_EQ(drawn, expected) << "rank " << rank << ": every parameter element once";
  }
}

// 1 rank; tp=2; ep=2; tp=2 x ep=2; ep=2 x etp=2; tp=2 x ep=2 x etp=2; ep=4; tp=4 x ep=4.
INSTANTIATE_TEST_SUITE_P(Layouts, InitRuns,
                         ::testing::Values(std::make_tuple(1, 1, 1, 1), std::make_tuple(2, 2, 1, 1),
                                           std::make_tuple(2, 1, 2, 1), std::make_tuple(4, 2, 2, 1),
                                           std::make_tuple(4, 1, 2, 2), std::make_tuple(8, 2, 2, 2),
                                           std::make_tuple(8, 1, 4, 1),
                                           std::make_tuple(4, 4, 4, 1)));

}  // namespace
}  // namespace sy

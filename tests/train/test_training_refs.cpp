// training_refs (src/train/train_ckpt.h) under ZeRO-1: a rank's moments are its chunks of each
// bucket, cut anywhere in a tensor part, and the refs must name, for every element of every
// chunk, where it lies in the global tensor. Checked without HDF5 against the table's own
// local-to-global map (ParamSpec::for_each_run).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/model/params.h"
#include "src/placement/placement.h"
#include "src/train/train_ckpt.h"

namespace sy {
namespace {

// A tp-sharded, tp rank 1 table with an expert placement (its expert tensors have several parts
// on this rank) and shared experts; runs cutting it into chunks of 7, 13 and 29 elements at
// every offset a chunk boundary can take; m[at + i] holds the global index of the element the
// chunk's (first + i) is. Every m ref must enumerate, in its slab's order, exactly the values at
// its data pointer, each element of a run once, and the writer flag must be in_norm's.
TEST(TrainingRefs, Zero1ChunksNameEveryElementWhereItLies) {
  const Config cfg = parse_config(
      "data: {path: x.h5}\n",
      {"model.d_model=16", "model.n_heads=4", "model.n_layers=2", "model.vocab_size=11",
       "moe.num_experts=4", "moe.ffn_hidden=8", "moe.shared_experts=1",
       "model.tie_embeddings=false", "parallel.tp=2", "parallel.ep=2"},
      "t");
  ShardLayout lay;
  lay.tp = 2;
  lay.tp_rank = 1;
  lay.ep = 2;
  lay.ep_rank = 1;
  lay.edp = 1;
  const auto placement = std::make_shared<const ExpertPlacement>(
      ExpertPlacement::from_ranks({{1, 0, 1, 0}, {1, 1, 0, 0}}, 2, "ep2"));
  const ParamTable table = make_param_table(cfg, lay, placement);
  bool several_parts = false;
  // Global index of every local element (-1: padding).
  std::vector<int64_t> global(table.total_numel(), -1);
  for (const ParamSpec& s : table.specs()) {
    several_parts = several_parts || s.parts.size() > 1;
    s.for_each_run([&](int64_t g, int64_t l, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        global[s.offset + static_cast<size_t>(l + i)] = g + i;
      }
    });
  }
  ASSERT_TRUE(several_parts) << "the placement gives an expert tensor several parts";

  for (size_t chunk : {size_t{7}, size_t{13}, size_t{29}}) {
    std::vector<DistributedOptimizer::MomentRun> runs;
    size_t at = 0;
    // This rank's chunks: every other chunk of the buffer (as a rank of two would own).
    for (size_t first = chunk; first < table.total_numel(); first += 2 * chunk) {
      const size_t n = std::min(chunk, table.total_numel() - first);
      runs.push_back({first, n, at});
      at += n;
    }
    std::vector<float> m(at), v(at), params(table.total_numel());
    for (const auto& r : runs)
      for (size_t i = 0; i < r.n; ++i) m[r.at + i] = static_cast<float>(global[r.first + i]);
    const std::vector<ckpt::TensorRef> refs =
        training_refs(table, params.data(), m.data(), v.data(), &runs);
    size_t covered = 0;
    for (const ckpt::TensorRef& ref : refs) {
      if (!ref.path.starts_with("optim/m/")) continue;
      const std::string name = "model/" + ref.path.substr(std::string("optim/m/").size());
      const ParamSpec& s = table.at(name);
      EXPECT_EQ(ref.writer, s.in_norm) << ref.path;
      ASSERT_GE(ref.data, m.data());
      ASSERT_LE(ref.data + ref.slab.numel(), m.data() + m.size());
      int64_t k = 0;
      ref.slab.for_each_run(s.shape, [&](int64_t g, int64_t, int64_t n) {
        for (int64_t i = 0; i < n; ++i, ++k)
          ASSERT_EQ(ref.data[k], static_cast<float>(g + i)) << ref.path << " chunk " << chunk;
      });
      covered += static_cast<size_t>(ref.slab.numel());
    }
    // Every run's elements that belong to a tensor (not padding), once.
    size_t want = 0;
    for (const auto& r : runs)
      for (size_t i = 0; i < r.n; ++i) want += global[r.first + i] >= 0 ? 1 : 0;
    EXPECT_EQ(covered, want) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace sy

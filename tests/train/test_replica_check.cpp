// The replica check the layout tests rely on (diverged_replicas, src/train/loop_common.h) can
// fail: copies of a parameter that differ between the ranks that must hold the same part are
// named, and only those. Each kind of parameter is compared over its own group: replicated ones
// over every rank, tp shards over dp, experts over edp. The copies are perturbed on the ranks of
// one coordinate, so a check over the wrong group sees them all agree (or sees different shards
// as diverged).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "comm/groups.h"
#include "src/config/config.h"
#include "src/model/init.h"
#include "src/model/params.h"
#include "src/train/loop_common.h"

namespace sy {
namespace {

TEST(ReplicaCheck, NamesExactlyTheParametersWhoseCopiesDiffer) {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const Config cfg = load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml");
  const std::string norm = "model/final_norm", wqkv = layer_param_name(0, "attn/wqkv"),
                    w1 = layer_param_name(0, "moe/w1");
  int layouts = 0;
  for (int tp : {1, 2, 4})
    for (int ep : {1, 2, 4}) {
      if (world % tp != 0 || world % ep != 0) continue;
      const comm::ProcessGroups g(MPI_COMM_WORLD, comm::ParallelSizes{tp, ep, 1, 0});
      const comm::Layout& l = g.layout();
      const comm::RankCoords& c = l.coords;
      const ParamTable t = make_param_table(cfg, shard_layout(l));
      std::vector<float> params(t.total_numel());
      init_params(params.data(), t, cfg.run.seed);
      const std::string where = "tp=" + std::to_string(tp) + " ep=" + std::to_string(ep);
      EXPECT_TRUE(diverged_replicas(g, t, params.data(), nullptr).empty()) << where;
      struct Case {
        std::string name, coordinate;
        bool perturbed;  // this rank changes its copy
        bool diverged;   // the copies that must agree differ
      };
      const std::vector<Case> cases = {
          {norm, "tp", c.tp_rank == 1, tp > 1},
          {norm, "dp", c.dp_rank == 1, l.dp > 1},
          {wqkv, "dp", c.dp_rank == 1, l.dp > 1},
          {wqkv, "tp", c.tp_rank == 1, false},  // another shard: nothing to compare with
          {w1, "edp", c.edp_rank == 1, l.edp > 1},
          {w1, "ep", c.ep_rank == 1, false},
      };
      for (const Case& k : cases) {
        const size_t at = t.at(k.name).offset;
        const float kept = params[at];
        if (k.perturbed) params[at] += 1.0f;
        const std::vector<std::string> got = diverged_replicas(g, t, params.data(), nullptr);
        EXPECT_EQ(got, k.diverged ? std::vector<std::string>{k.name} : std::vector<std::string>{})
            << where << ": " << k.name << " changed on the ranks of " << k.coordinate << " rank 1";
        params[at] = kept;
      }
      ++layouts;
    }
  EXPECT_GE(layouts, world >= 8 ? 9 : 1);
}

}  // namespace
}  // namespace sy

// Which ranks a GPU step sums the expert gradients over (src/train/train_gpu.h), compared by MPI
// itself with the group the CPU optimizer sums them over (edp): for every layout of this world,
// including tp > 1 with ep = 1, where the dp group holds only half of the expert replicas. Runs
// without a GPU: the choice is made on MPI communicators before any NCCL one exists.
#include <gtest/gtest.h>

#include "comm/groups.h"
#include "comm/mpi.h"
#include "src/train/train_gpu.h"

namespace sy {
namespace {

int compare(const comm::Comm& a, const comm::Comm& b) {
  int cmp = MPI_UNEQUAL;
  MPI_Comm_compare(a.get(), b.get(), &cmp);
  return cmp;
}

TEST(GpuGradientGroups, ExpertsAreSummedOverTheCpuOptimizersEdpGroup) {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int layouts = 0;
  for (int tp = 1; tp <= world; tp *= 2)
    for (int ep = 1; tp * ep <= world; ep *= 2) {
      if (world % (tp * ep) != 0) continue;
      const comm::ProcessGroups g(MPI_COMM_WORLD, comm::ParallelSizes{tp, ep, 1, 0});
      const comm::Comm& experts = gpu_expert_sum_group(g);
      EXPECT_EQ(experts.size(), g.layout().edp) << "tp=" << tp << " ep=" << ep;
      const int cmp = compare(experts, g.edp());
      EXPECT_TRUE(cmp == MPI_IDENT || cmp == MPI_CONGRUENT) << "tp=" << tp << " ep=" << ep;
      if (tp == 1 && ep == 1) {
        EXPECT_EQ(&experts, &g.dp()) << "one communicator for dense and expert sums";
      }
      if (tp > 1 && ep == 1) {
        EXPECT_NE(experts.size(), g.dp().size()) << "every rank holds a replica, not dp's";
      }
      ++layouts;
    }
  EXPECT_GE(layouts, world >= 8 ? 10 : 1);
}

}  // namespace
}  // namespace sy

// One GPU per rank (comm/gpu_binding.h) with faked visible-device counts and GPU identities, so
// the launcher cases of a GPU cluster are checked on machines without GPUs: every GPU visible
// to every rank, SLURM's per-task binding (each rank sees one GPU: a valid run, which the old
// "ranks on the node > GPUs this rank sees" rule refused), two GPUs per task, and the refusals
// (more ranks than GPUs, one CUDA_VISIBLE_DEVICES for all, a rank without a GPU) naming the
// ranks. All ranks of the job are on this one node, so the world is the node.
#include "comm/gpu_binding.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/mpi_util.h"

namespace {

using sy::comm::bind_gpu_per_rank;
using sy::comm::gpu_for_local_rank;
using sy::comm::GpuBinding;
using sy::comm::shared_gpu_error;

sy::comm::Comm node_comm() {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  return sy::comm::Comm(node);
}

TEST(GpuBinding, DeviceIndexIsLocalRankModuloVisible) {
  EXPECT_EQ(gpu_for_local_rank(0, 4), 0);
  EXPECT_EQ(gpu_for_local_rank(3, 4), 3);
  EXPECT_EQ(gpu_for_local_rank(5, 4), 1);
  EXPECT_EQ(gpu_for_local_rank(3, 1), 0);  // per-task binding: every rank its device 0
  EXPECT_EQ(gpu_for_local_rank(0, 0), -1);
}

TEST(GpuBinding, SharedGpuIsNamed) {
  EXPECT_EQ(shared_gpu_error({"GPU-a", "GPU-b", "GPU-c"}), "");
  EXPECT_EQ(shared_gpu_error({"GPU-a", "", ""}), "");  // no GPU is not a shared GPU
  const std::string e = shared_gpu_error({"GPU-a", "GPU-b", "GPU-a"});
  EXPECT_NE(e.find("local ranks 0 and 2"), std::string::npos) << e;
  EXPECT_NE(e.find("GPU-a"), std::string::npos) << e;
}

TEST(GpuBinding, EveryGpuVisibleToEveryRank) {
  const sy::comm::Comm node = node_comm();
  const int P = node.size();
  const GpuBinding b = bind_gpu_per_rank(node, P, [](int d) { return "GPU-" + std::to_string(d); });
  EXPECT_EQ(b.error, "");
  EXPECT_EQ(b.device, node.rank());
}

TEST(GpuBinding, OneGpuPerTaskEachRankSeesOnlyItsOwn) {
  // srun --gpus-per-task=1: CUDA_VISIBLE_DEVICES differs per rank, each rank sees one device
  // (its index 0), and the UUIDs differ.
  const sy::comm::Comm node = node_comm();
  const int me = node.rank();
  const GpuBinding b =
      bind_gpu_per_rank(node, 1, [me](int d) { return "GPU-" + std::to_string(me + d); });
  EXPECT_EQ(b.error, "") << node.size() << " ranks, one GPU each";
  EXPECT_EQ(b.device, 0);
}

TEST(GpuBinding, TwoGpusPerTask) {
  const sy::comm::Comm node = node_comm();
  const int me = node.rank();
  const GpuBinding b =
      bind_gpu_per_rank(node, 2, [me](int d) { return "GPU-" + std::to_string(2 * me + d); });
  EXPECT_EQ(b.error, "");
  EXPECT_EQ(b.device, me % 2);
}

TEST(GpuBinding, OneVisibleGpuForAllRanksIsRefused) {
  // The same CUDA_VISIBLE_DEVICES for every rank (or a one-GPU node): they would share it.
  const sy::comm::Comm node = node_comm();
  const GpuBinding b = bind_gpu_per_rank(node, 1, [](int) { return std::string("GPU-only"); });
  if (node.size() == 1) {
    EXPECT_EQ(b.error, "");
    EXPECT_EQ(b.device, 0);
    return;
  }
  EXPECT_NE(b.error.find("local ranks 0 and 1"), std::string::npos) << b.error;
  EXPECT_NE(b.error.find("GPU-only"), std::string::npos) << b.error;
  EXPECT_EQ(b.device, -1);
}

TEST(GpuBinding, MoreRanksThanVisibleGpusIsRefused) {
  const sy::comm::Comm node = node_comm();
  const GpuBinding b = bind_gpu_per_rank(node, 2, [](int d) { return "GPU-" + std::to_string(d); });
  if (node.size() <= 2) {
    EXPECT_EQ(b.error, "");
    return;
  }
  EXPECT_NE(b.error.find("local ranks 0 and 2"), std::string::npos) << b.error;
}

TEST(GpuBinding, RankWithoutGpuIsNamedOnEveryRank) {
  const sy::comm::Comm node = node_comm();
  const int last = node.size() - 1, me = node.rank();
  const int visible = me == last ? 0 : 1;
  const GpuBinding b = bind_gpu_per_rank(
      node, visible, [me](int d) { return "GPU-" + std::to_string(me + d); }, "no driver here");
  EXPECT_NE(b.error.find("local rank " + std::to_string(last)), std::string::npos) << b.error;
  EXPECT_NE(b.error.find("no driver here"), std::string::npos) << b.error;
  EXPECT_EQ(b.device, -1);
}

}  // namespace

// Model-parallel training on 2 GPUs (issue 6), in the np=2 instance, against the 1-GPU run of
// the same config.
//
// Expert parallelism: parallel.ep=2, each GPU holding 2 of the 4 experts of configs/tiny.yaml and
// moving tokens through comm::GpuExchange:
// - on one node (the NCCL stage) and on two emulated nodes of one GPU (the MPI stage), with the
//   tokens moved in one chunk and in 3 (moe.overlap_chunks: each chunk's dispatch on the
//   communication stream overlapping the previous chunk's experts);
// - dropless and with a capacity limit that drops tokens (the kept assignments travel), router
//   bias updates on;
// - every step's loss and the final val_loss within 1e-5 relative (the sums differ only in
//   order), the dense replicas bitwise identical, and the gathered parameters within 1e-4 (per
//   tensor, relative) of the 1-GPU run's.
// Tensor parallelism: parallel.tp=2, each GPU running 2 of the 4 heads and half of a shared
// expert's hidden width, and the routed work of half of the tokens; the same tolerances, with a
// capacity limit and router bias updates.
// Skipped unless there are 2 ranks and at least 2 GPUs.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "gpu_test_util.h"
#include "train/gpu_train_util.h"

namespace sy {
namespace {

constexpr double kLossTolerance = 1e-5;
constexpr double kParamTolerance = 1e-4;

TEST(GpuExpertParallel, TwoGpusWithTwoExpertsEachMatchOneGpu) {
  if (test::world_size() != 2) GTEST_SKIP() << "the expert-parallel test runs in the np=2 instance";
  const int n = gputest::gpus_everywhere();
  if (n < 2) GTEST_SKIP() << "2 ranks need 2 GPUs, found " << n;
  gputest::SharedRunDir dir;
  for (const std::string capacity : {"null", "1.0"}) {
    const std::vector<std::string> set = {"moe.bias_update_rate=1e-3",
                                          "moe.capacity_factor=" + capacity};
    const TrainSummary one = gputest::run_on(1, dir.config("one-" + capacity, set));
    for (const auto& [rpn, chunks] :
         {std::pair{"0", "1"}, std::pair{"1", "1"}, std::pair{"0", "3"}, std::pair{"1", "3"}}) {
      std::vector<std::string> ep = set;
      ep.push_back("parallel.ep=2");
      ep.push_back(std::string("parallel.ranks_per_node=") + rpn);
      ep.push_back(std::string("moe.overlap_chunks=") + chunks);
      const std::string what =
          "capacity " + capacity + ", ranks_per_node " + rpn + ", overlap_chunks " + chunks;
      const TrainSummary two =
          gputest::run_on(2, dir.config("ep-" + capacity + "-" + rpn + "-" + chunks, ep));
      EXPECT_TRUE(two.diverged_replicas.empty())
          << what << ": replicas differ, first " << two.diverged_replicas.front();
      if (test::world_rank() != 0) continue;
      ASSERT_EQ(two.step_losses.size(), one.step_losses.size()) << what;
      for (size_t i = 0; i < one.step_losses.size(); ++i)
        EXPECT_NEAR(two.step_losses[i], one.step_losses[i], kLossTolerance * one.step_losses[i])
            << what << ", step " << i + 1;
      EXPECT_NEAR(two.final_val_loss, one.final_val_loss, kLossTolerance * one.final_val_loss)
          << what;
      ASSERT_EQ(two.final_params.size(), one.final_params.size()) << what;
      for (const auto& [name, want] : one.final_params)
        EXPECT_LE(gputest::relative_l2(two.final_params.at(name), want), kParamTolerance)
            << what << ": " << name;
    }
  }
}

TEST(GpuTensorParallel, TwoGpusWithHalfTheHeadsEachMatchOneGpu) {
  if (test::world_size() != 2) GTEST_SKIP() << "the tensor-parallel test runs in the np=2 instance";
  const int n = gputest::gpus_everywhere();
  if (n < 2) GTEST_SKIP() << "2 ranks need 2 GPUs, found " << n;
  gputest::SharedRunDir dir;
  const std::vector<std::string> set = {"moe.bias_update_rate=1e-3", "moe.capacity_factor=1.0",
                                        "moe.shared_experts=1"};
  const TrainSummary one = gputest::run_on(1, dir.config("one", set));
  std::vector<std::string> tp = set;
  tp.push_back("parallel.tp=2");
  const TrainSummary two = gputest::run_on(2, dir.config("tp", tp));
  EXPECT_TRUE(two.diverged_replicas.empty())
      << "replicas differ, first " << two.diverged_replicas.front();
  if (test::world_rank() != 0) return;
  ASSERT_EQ(two.step_losses.size(), one.step_losses.size());
  for (size_t i = 0; i < one.step_losses.size(); ++i)
    EXPECT_NEAR(two.step_losses[i], one.step_losses[i], kLossTolerance * one.step_losses[i])
        << "step " << i + 1;
  EXPECT_NEAR(two.final_val_loss, one.final_val_loss, kLossTolerance * one.final_val_loss);
  ASSERT_EQ(two.final_params.size(), one.final_params.size());
  for (const auto& [name, want] : one.final_params)
    EXPECT_LE(gputest::relative_l2(two.final_params.at(name), want), kParamTolerance) << name;
}

}  // namespace
}  // namespace sy

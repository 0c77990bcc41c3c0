// The global batch against the data-parallel layout (src/train/loop_common.h): a batch that does
// not split into whole micro-batches per rank is exit 2 naming both keys, with a micro-batch and
// a global batch that would split, each checked here by hand.
#include <gtest/gtest.h>

#include <string>

#include "src/core/error.h"
#include "src/train/loop_common.h"

namespace sy {
namespace {

std::string refusal(int64_t gb, int64_t mb, int64_t dp) {
  try {
    check_global_batch(gb, mb, dp);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(GlobalBatch, SplitsAreAcceptedAndOthersGetAFixThatWorks) {
  EXPECT_EQ(refusal(16, 8, 2), "");  // small.yaml on 2 ranks
  EXPECT_EQ(refusal(8, 4, 1), "");
  // small.yaml (16, 8) on 4 ranks: 4 sequences a rank, so micro-batches of 4; or 32 in all.
  const std::string four = refusal(16, 8, 4);
  EXPECT_NE(four.find("train.global_batch=16 must be a multiple of dp * train.micro_batch = 4 * 8"),
            std::string::npos)
      << four;
  EXPECT_NE(four.find("--set train.micro_batch=4 (4 sequences per data-parallel rank)"),
            std::string::npos)
      << four;
  EXPECT_NE(four.find("--set train.global_batch=32"), std::string::npos) << four;
  // 16 sequences on 16 ranks: micro-batches of 1; 6 a rank (12 on 2) with 4: the largest that
  // divides 6 is 3.
  EXPECT_NE(refusal(16, 8, 16).find("--set train.micro_batch=1 "), std::string::npos);
  EXPECT_NE(refusal(12, 4, 2).find("--set train.micro_batch=3 "), std::string::npos);
  // 10 on 4 ranks does not split at all: only a larger batch, 12.
  const std::string odd = refusal(10, 1, 4);
  EXPECT_EQ(odd.find("train.micro_batch="), std::string::npos) << odd;
  EXPECT_NE(odd.find("--set train.global_batch=12"), std::string::npos) << odd;
  // Each suggestion is itself accepted.
  EXPECT_EQ(refusal(16, 4, 4), "");
  EXPECT_EQ(refusal(32, 8, 4), "");
  EXPECT_EQ(refusal(12, 3, 2), "");
  EXPECT_EQ(refusal(12, 1, 4), "");
}

}  // namespace
}  // namespace sy

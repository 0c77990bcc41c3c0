// files::set_aside, what a numerical failure does to the checkpoint holding the weights that gave
// it (SPEC 9: the last GOOD checkpoint kept): renamed out of the step files, `latest` back to the
// newest one before it, or removed when none is left. Checked on plain files against the names a
// reader of the directory sees.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/latest.h"
#include "common/temp_dir.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/files.h"

namespace sy::ckpt::files {
namespace {

using sy::test::latest_in;

void touch(const std::string& path, const std::string& text = "x") {
  std::ofstream(path) << text;
}

TEST(SetAside, RenamesTheCheckpointAndPointsLatestAtTheRunsOneBefore) {
  sy::test::TempDir tmp;
  const std::string dir = tmp.path().string();
  for (int64_t s : {5, 10, 15}) touch(dir + "/" + checkpoint_file_name(s));
  touch(dir + "/latest", "step_00000015.h5\n");

  EXPECT_EQ(set_aside(dir, 15, {5, 10, 15}),
            dir + "/step_00000015.h5 is set aside as step_00000015.h5" + kNonFiniteSuffix +
                "; latest names step_00000010.h5 again");
  EXPECT_TRUE(std::filesystem::exists(dir + "/step_00000015.h5.nonfinite"));
  EXPECT_EQ(latest_in(dir), "step_00000010.h5");
  ASSERT_EQ(list_step_files(dir).size(), 2u);  // the set-aside file is no checkpoint any more
  EXPECT_EQ(list_step_files(dir).back().step, 10);
  EXPECT_EQ(list_set_aside(dir), std::vector<std::string>{dir + "/step_00000015.h5.nonfinite"});
}

// A run resumed from step 1 past an older line's step 2 (QA): `latest` goes back to step 1, the
// run's own, not to the newest step file below (it had named step 2, and --resume auto trained
// the line the user had gone back past); one rotated away is passed over.
TEST(SetAside, GoesBackAlongTheRunsOwnCheckpointsOnly) {
  sy::test::TempDir tmp;
  const std::string dir = tmp.path().string();
  for (int64_t s : {1, 2, 6}) touch(dir + "/" + checkpoint_file_name(s));
  touch(dir + "/latest", "step_00000006.h5");
  EXPECT_EQ(set_aside(dir, 6, {1, 3, 6}),  // step 3 rotated away
            dir + "/step_00000006.h5 is set aside as step_00000006.h5" + kNonFiniteSuffix +
                "; latest names step_00000001.h5 again");
  EXPECT_EQ(latest_in(dir), "step_00000001.h5");
}

TEST(SetAside, RemovesLatestWhenNoEarlierCheckpointOfTheRunIsLeft) {
  sy::test::TempDir tmp;
  const std::string dir = tmp.path().string();
  touch(dir + "/" + checkpoint_file_name(3));
  touch(dir + "/" + checkpoint_file_name(9));  // a later step of an older run: not "before"
  touch(dir + "/latest", "step_00000003.h5");
  EXPECT_EQ(set_aside(dir, 3, {3}),
            dir + "/step_00000003.h5 is set aside as step_00000003.h5" + kNonFiniteSuffix +
                "; no earlier checkpoint of this run is left, so latest is removed");
  EXPECT_FALSE(std::filesystem::exists(dir + "/latest"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/step_00000009.h5"));
}

TEST(SetAside, LeavesLatestNamingAnotherFileAndDoesNothingWithoutTheFile) {
  sy::test::TempDir tmp;
  const std::string dir = tmp.path().string();
  touch(dir + "/" + checkpoint_file_name(4));
  touch(dir + "/" + checkpoint_file_name(8));
  touch(dir + "/latest", "step_00000008.h5");
  EXPECT_EQ(set_aside(dir, 4, {2, 4}),
            dir + "/step_00000004.h5 is set aside as step_00000004.h5" + kNonFiniteSuffix);
  EXPECT_EQ(latest_in(dir), "step_00000008.h5");
  EXPECT_EQ(set_aside(dir, 6, {4, 6}), "");  // no step_00000006.h5
  EXPECT_EQ(latest_in(dir), "step_00000008.h5");
}

}  // namespace
}  // namespace sy::ckpt::files

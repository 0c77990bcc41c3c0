// What a run keeps beside its checkpoints, across resumes (the fixture: resume_fixture.h):
// - coactivation.h5 continues the counts as of the checkpoint a run resumes from (a stop between
//   log steps, a crash after log steps past it, a checkpoint set aside after a numerical
//   failure), and says -- in the log and the file -- which steps it counts twice or not at all;
// - samples.txt drops the samples of the steps a resume redoes, as metrics.jsonl drops their
//   lines, and a fresh run keeps an earlier run's as samples.txt.prev.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/file_text.h"
#include "common/run_command.h"
#include "src/placement/coactivation_file.h"
#include "train/resume_fixture.h"

namespace sy {

// Trains 20 steps with `every` straight, and again hung at step `hang_at` (SWITCHYARD_FAULT),
// SIGKILLed once `file` (of the killed run) holds `pattern` and resumed with --resume auto from
// the step-15 checkpoint: the resumed run's co-activation counts must be the uninterrupted run's.
// Returns the resumed run's output.
std::string test::Resume::expect_coactivation_after_a_kill(const std::string& every, int hang_at,
                                                           const std::string& file,
                                                           const std::string& pattern) {
  auto r = run_as_user(train_cmd("straight", every));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = kill_when(train_cmd("killed", every), hang_at, dir_.file("killed") + "/" + file, pattern);
  EXPECT_EQ(r.exit_code, 137) << r.output;
  r = run_as_user(train_cmd("killed", every + " --resume auto"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step_00000015.h5 (step 15)"), std::string::npos) << r.output;
  const Coactivation want = read_coactivation(dir_.file("straight") + "/coactivation.h5");
  const Coactivation got = read_coactivation(dir_.file("killed") + "/coactivation.h5");
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.counts, want.counts);
  EXPECT_EQ(got.last_step, 20);
  return r.output;
}

namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::Resume;
using test::run_as_user;

// The routing a coactivation.h5 records for its counts.
void expect_routing(const CoactivationRouting& r, int groups, int topk, int64_t other_steps) {
  EXPECT_EQ(r.groups, groups);
  EXPECT_EQ(r.topk, topk);
  EXPECT_EQ(r.other_steps, other_steps);
}

// A run stopped between log steps resumes with the co-activation counts of every step: the file
// is brought up to the checkpoint it resumes from. The counts of steps 11-15 (after the step-10
// log flush, before the step-15 checkpoint the run resumed from) were lost with no word.
TEST_F(Resume, CoactivationCountsSurviveAStopBetweenLogSteps) {
  expect_coactivation_after_a_kill("--set log.every=10 --set checkpoint.every=5", 17,
                                   "checkpoints/latest", "step_00000015");
}

// A run that crashed after log steps past its newest checkpoint resumes from the counts as of
// that checkpoint: steps 16-18 (counted at the step-18 log flush, the checkpoint at 15) were
// counted again by the resumed run (their tokens twice in the file, "will be counted twice" in
// the log).
TEST_F(Resume, CoactivationCountsOfStepsAfterTheCheckpointAreNotCountedTwice) {
  const std::string out = expect_coactivation_after_a_kill(
      "--set log.every=2 --set checkpoint.every=5", 19, "metrics.jsonl", "step.:18,");
  EXPECT_NE(out.find("as of the checkpoint's step 15 (steps 16..18, counted before the run "
                     "stopped, are dropped)"),
            std::string::npos)
      << out;
}

// A checkpoint set aside after a numerical failure (the weights of step 5, from an lr of 1e30,
// give step 6 a non-finite loss) leaves the run to resume from the one before it (step 4): the
// co-activation counts continue from that checkpoint's. The file kept the newest checkpoint's
// counts only (step 5's), so step 5 was counted twice (the file's tokens above the
// uninterrupted run's, "will be counted twice" in the log).
TEST_F(Resume, CoactivationCountsAfterASetAsideCheckpointAreNotCountedTwice) {
  // A constant lr (warm-up 0, min_lr = lr): the same schedule for any train.steps.
  const std::string every =
      "--set checkpoint.every=1 --set eval.every=0 --set train.warmup_steps=0 "
      "--set train.steps=8 ";
  const std::string lr = "--set train.lr=3e-3 --set train.min_lr=3e-3 ";
  auto r = run_as_user(train_cmd("straight", every + lr));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_as_user(train_cmd("run", every + lr + "--set train.steps=4"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_as_user(
      train_cmd("run", every + "--set train.lr=1e30 --set train.min_lr=1e30 --resume auto"));
  ASSERT_EQ(r.exit_code, 3) << r.output;
  ASSERT_NE(r.output.find("step_00000005.h5 is set aside"), std::string::npos) << r.output;
  r = run_as_user(train_cmd("run", every + lr + "--resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step_00000004.h5 (step 4)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("as of the checkpoint's step 4 (steps 5..5, counted before the run "
                          "stopped, are dropped)"),
            std::string::npos)
      << r.output;
  const Coactivation want = read_coactivation(dir_.file("straight") + "/coactivation.h5");
  const Coactivation got = read_coactivation(dir_.file("run") + "/coactivation.h5");
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.counts, want.counts);
  EXPECT_EQ(got.last_step, 8);
}

// coactivation.h5 behind the checkpoint a run resumes from: a run that stopped because
// run.out_dir could not take the file wrote a checkpoint of that step (checkpoint.dir had room),
// so the counts end before it. Here the file of step 2 is put back after the run reached step 4.
// The resume went on from the file's counts, its steps 3..4 missing while it claimed steps
// 1..6, unsaid (review); the log names them and the file counts them (uncounted_steps), which
// `placement` says; a resume from an older checkpoint counts recounted_steps the same way.
TEST_F(Resume, CoactivationStepsNotCountedOrCountedTwiceAreSaidAndRecorded) {
  const std::string every =
      "--set checkpoint.every=2 --set log.every=2 --set eval.every=0 "
      "--set train.warmup_steps=0 --set train.min_lr=3e-3 ";
  auto r = run_as_user(train_cmd("straight", every + "--set train.steps=6"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_as_user(train_cmd("run", every + "--set train.steps=2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string file = dir_.file("run") + "/coactivation.h5";
  fs::copy_file(file, dir_.file("step2.h5"));
  r = run_as_user(train_cmd("run", every + "--set train.steps=4 --resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::copy_file(dir_.file("step2.h5"), file, fs::copy_options::overwrite_existing);
  r = run_as_user(train_cmd("run", every + "--set train.steps=6 --resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("it counted steps up to 2 only (the file could not be written after "
                          "that), so steps 3..4 are not in the counts"),
            std::string::npos)
      << r.output;
  const Coactivation straight = read_coactivation(dir_.file("straight") + "/coactivation.h5");
  Coactivation got = read_coactivation(file);
  EXPECT_EQ(got.uncounted_steps, 2);
  EXPECT_EQ(got.recounted_steps, 0);
  EXPECT_EQ(got.tokens, straight.tokens / 3 * 2);  // steps 1-2 and 5-6 of 1-6
  // A resume from the step-4 checkpoint, whose counts the file keeps: the tallies as of it (the
  // file's current ones were kept).
  fs::copy_file(file, dir_.file("step6.h5"));
  r = run_as_user(train_cmd("run", every + "--set train.steps=6 --resume " + dir_.file("run") +
                                       "/checkpoints/step_00000004.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_coactivation(file).uncounted_steps, 2);
  // A resume of the straight run from step 2 by path, to step 4: steps 3..4 counted again (the
  // steps that will be, not the file's 3..6; it said 4).
  r = run_as_user(train_cmd("straight", every + "--set train.steps=4 --resume " +
                                            dir_.file("straight") +
                                            "/checkpoints/step_00000002.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  got = read_coactivation(dir_.file("straight") + "/coactivation.h5");
  EXPECT_EQ(got.recounted_steps, 2);
  EXPECT_EQ(got.uncounted_steps, 0);
  r = run_as_user(std::string(SWITCHYARD_BIN) + " placement --run " + dir_.file("straight") +
                  " --nodes 2 --ranks-per-node 1 --output " + dir_.file("p.yaml"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: of these steps the counts hold up to 2 twice and up to 0 not at "
                          "all"),
            std::string::npos)
      << r.output;
  // The gap again, the run stopped before its next checkpoint (its file has counted step 5): a
  // resume from step 2, whose counts the file keeps from before the gap, takes their tallies
  // too (it kept the file's 2 steps not counted, which the run counted then).
  const std::string ckpts = dir_.file("run") + "/checkpoints/";
  fs::copy_file(dir_.file("step2.h5"), file, fs::copy_options::overwrite_existing);
  r = run_as_user("SWITCHYARD_FAULT=0:6:throw " +
                  train_cmd("run", every + "--set log.every=1 --set train.steps=6 --resume " +
                                       ckpts + "step_00000004.h5"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_coactivation(file).uncounted_steps, 2);
  r = run_as_user(
      train_cmd("run", every + "--set train.steps=6 --resume " + ckpts + "step_00000002.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  got = read_coactivation(file);
  EXPECT_EQ(got.uncounted_steps, 0);
  EXPECT_EQ(got.recounted_steps, 0);
  EXPECT_EQ(got.tokens, straight.tokens);
  EXPECT_EQ(got.counts, straight.counts);
}

// coactivation.h5 records the routing its counts were gathered under. A resume that changes it
// (2 groups of which a token uses 1, then the best 2 of 4 -- as `route_groups: nodes` does on
// another node count) says so and records how many counted steps were routed otherwise, each
// checkpoint's counts keeping their own; `placement` says when the counts were routed otherwise
// than it places for (QA: it predicted rows past what that routing allows, unsaid).
TEST_F(Resume, CoactivationRecordsTheRoutingAndAResumeThatChangesIt) {
  const std::string every = "--set eval.every=0 ";
  const std::string two_of_one = "--set moe.route_groups=2 --set moe.route_groups_topk=1 ";
  const std::string four_of_two = "--set moe.route_groups=4 --set moe.route_groups_topk=2 ";
  auto r = run_as_user(train_cmd("run", every + two_of_one + "--set train.steps=10"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string file = dir_.file("run") + "/coactivation.h5";
  Coactivation c = read_coactivation(file);
  expect_routing(c.routing, 2, 1, 0);

  r = run_as_user(train_cmd("run", every + four_of_two + "--set train.steps=15 --resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("they were routed with the best 1 of 2 expert groups, this run routes "
                          "with the best 2 of 4 expert groups"),
            std::string::npos)
      << r.output;
  c = read_coactivation(file);
  expect_routing(c.routing, 4, 2, 10);  // steps 1..10, of 1..15
  EXPECT_EQ(c.checkpoints[0].step, 15);
  expect_routing(c.checkpoints[0].routing, 4, 2, 10);
  EXPECT_EQ(c.checkpoints[1].step, 10);
  expect_routing(c.checkpoints[1].routing, 2, 1, 0);

  const std::string placement = std::string(SWITCHYARD_BIN) + " placement --run " +
                                dir_.file("run") + " --nodes 2 --ranks-per-node 1 --output " +
                                dir_.file("p.yaml");
  r = run_as_user(placement);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: up to 10 of these steps were routed otherwise than with the best "
                          "2 of 4 expert groups"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("selects other experts"), std::string::npos) << r.output;
  r = run_as_user(placement + " --route-groups 2");  // 2 groups of which a token uses 2: all
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: the counts were routed with the best 2 of 4 expert groups; a run "
                          "routed with plain top-k selects other experts"),
            std::string::npos)
      << r.output;

  // Back to the step-10 checkpoint and its routing: its counts' own record, nothing routed
  // otherwise.
  r = run_as_user(train_cmd("run", every + two_of_one + "--set train.steps=12 --resume " +
                                       dir_.file("run") + "/checkpoints/step_00000010.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("they were routed with"), std::string::npos) << r.output;
  c = read_coactivation(file);
  expect_routing(c.routing, 2, 1, 0);
}

// Routing changed on a resume from a checkpoint older than the file's counts: the steps counted
// under the old routing are all the file counted, which stay in the counts (it said 5, the steps
// up to the checkpoint; review). And a file from before the routing was recorded: its steps are
// counted as routed otherwise, and the log says why (it took the new run's routing, unsaid).
TEST_F(Resume, CoactivationRoutingAfterAnOlderCheckpointOrAnUnrecordedFile) {
  const std::string every = "--set eval.every=0 --set checkpoint.every=5 --set checkpoint.keep=5 ";
  const std::string two_of_one = "--set moe.route_groups=2 --set moe.route_groups_topk=1 ";
  const std::string four_of_two = "--set moe.route_groups=4 --set moe.route_groups_topk=2 ";
  auto r = run_as_user(train_cmd("run", every + two_of_one));  // 20 steps, counts of 15 and 20
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpts = dir_.file("run") + "/checkpoints/";
  r = run_as_user(train_cmd(
      "run", every + four_of_two + "--set train.steps=22 --resume " + ckpts + "step_00000005.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string file = dir_.file("run") + "/coactivation.h5";
  Coactivation c = read_coactivation(file);
  expect_routing(c.routing, 4, 2, 20);  // steps 1..20 of the first run, all in the counts

  // The file as a switchyard before the routing attributes wrote it: placement says so where
  // the routing matters (it said nothing until a resume; review), then a resume records it.
  c.routing = {};
  for (CoactivationAt& at : c.checkpoints) at.routing = {};
  write_coactivation(file, c);
  r = run_as_user(std::string(SWITCHYARD_BIN) + " placement --run " + dir_.file("run") +
                  " --nodes 2 --ranks-per-node 1 --output " + dir_.file("p.yaml"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: the counts do not record the routing they were gathered under"),
            std::string::npos)
      << r.output;
  r = run_as_user(train_cmd("run", every + four_of_two + "--set train.steps=24 --resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("they do not record their routing (a file from before it was recorded), "
                          "so `switchyard placement` counts their 22 steps as routed otherwise"),
            std::string::npos)
      << r.output;
  c = read_coactivation(file);
  expect_routing(c.routing, 4, 2, 22);
}

// samples.txt follows the run as metrics.jsonl does: a resume from the step-10 checkpoint drops
// the samples of steps 15 and 20 that it draws again (it kept them: 5, 10, 15, 20, 15, 20), and a
// fresh run in the directory keeps the earlier run's as samples.txt.prev (it appended to them).
TEST_F(Resume, SamplesOfStepsRedoneAreDroppedAndAFreshRunKeepsTheEarlierOnes) {
  const std::string sample = "--set eval.sample_tokens=20 ";
  auto r = run_as_user(train_cmd("straight", sample));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_as_user(train_cmd("run", sample));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Step 5's text with a blank line and what starts like a header (it cut the file there).
  const std::string lookalike = "\n\nsample at step 99 looks like a header";
  std::string text = read_file(dir_.file("run") + "/samples.txt");
  const size_t at = text.find("sample at step 10 ");
  ASSERT_NE(at, std::string::npos) << text;
  text.insert(at - 2, lookalike);
  std::ofstream(dir_.file("run") + "/samples.txt", std::ios::binary) << text;
  r = run_as_user(
      train_cmd("run", sample + "--resume " + dir_.file("run") + "/checkpoints/step_00000010.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("samples.txt: the samples after step 10 (drawn before the run "
                          "stopped) are dropped"),
            std::string::npos)
      << r.output;
  const std::string straight = read_file(dir_.file("straight") + "/samples.txt");
  EXPECT_NE(straight.find("sample at step 20 "), std::string::npos) << straight;
  std::string want = straight;
  want.insert(want.find("sample at step 10 ") - 2, lookalike);
  EXPECT_EQ(read_file(dir_.file("run") + "/samples.txt"), want);

  r = run_as_user(
      train_cmd("run", sample + "--set train.steps=5 --set checkpoint.dir=" + dir_.file("other")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(dir_.file("run") + "/samples.txt.prev"), want);
  const std::string fresh = read_file(dir_.file("run") + "/samples.txt");
  EXPECT_EQ(fresh, straight.substr(0, straight.find("sample at step 10 "))) << fresh;
}

}  // namespace
}  // namespace sy

// A step's metrics.jsonl line (SPEC section 6) from a hand-made step record: the loss parts as
// given, expert_load as each layer's assignments per expert over the global batch's, dropped_frac
// as the dropped assignments over all layers'; then the rates, times and the progress line's ETA
// by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/temp_dir.h"
#include "src/config/config.h"
#include "src/train/loop_common.h"
#include "src/train/progress.h"
#include "src/train/report.h"

namespace sy {
namespace {

TEST(Report, MetricsLineFractionsByHand) {
  // tiny.yaml: 2 layers, 4 experts, top-2; global batch 8 x 32 tokens: 512 assignments a layer.
  const Config cfg = load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml");
  test::TempDir dir;
  const std::vector<int64_t> selected = {128, 128, 128, 128, 256, 64, 128, 0};
  StepRecord r;
  r.step = 7;
  r.loss = LossParts{2.5, 0.25, 0.125};
  r.lr = 1e-3;
  r.grad_norm = 0.75;
  r.step_s = 0.5;
  r.selected = &selected;
  r.dropped = 64;
  {
    MetricsWriter metrics(dir.file("metrics.jsonl"), false);
    std::ostringstream log;
    report_step(cfg, r, StepFlops{}, 1.0, &metrics, log);
  }
  std::ifstream in(dir.file("metrics.jsonl"));
  std::string text;
  ASSERT_TRUE(std::getline(in, text));
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_EQ(j["step"], 7);
  EXPECT_DOUBLE_EQ(j["loss"].get<double>(), 2.875);
  EXPECT_DOUBLE_EQ(j["lm_loss"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j["aux_loss"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["z_loss"].get<double>(), 0.125);
  EXPECT_DOUBLE_EQ(j["grad_norm"].get<double>(), 0.75);
  const std::vector<std::vector<double>> load = {{0.25, 0.25, 0.25, 0.25}, {0.5, 0.125, 0.25, 0.0}};
  EXPECT_EQ(j["expert_load"].get<std::vector<std::vector<double>>>(), load);
  EXPECT_DOUBLE_EQ(j["dropped_frac"].get<double>(), 64.0 / 1024.0);
}

// The rates and times of the same kind of line by hand: tokens_per_s = global_batch * seq_len /
// step_s (8 x 32 tokens in 0.5 s), step_ms and a2a_ms in milliseconds, the rank's a2a byte
// counters and lr as given, gflops = the step's FLOPs / step_s; the progress line's a2a share of
// the step and its ETA as hh:mm:ss (rounded to the second).
TEST(Report, RatesTimesAndTheProgressLineByHand) {
  const Config cfg = load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml");
  test::TempDir dir;
  const std::vector<int64_t> selected(8, 128);
  StepRecord r;
  r.step = 3;
  r.lr = 2.5e-4;
  r.step_s = 0.5;
  r.a2a_s = 0.125;
  r.a2a_internode_bytes = 4096;
  r.a2a_intranode_bytes = 1024;
  r.selected = &selected;
  StepFlops flops;
  flops.matmul = 3e9;
  flops.attention = 1e9;
  std::ostringstream log;
  {
    MetricsWriter metrics(dir.file("metrics.jsonl"), false);
    report_step(cfg, r, flops, 3725.4, &metrics, log);
  }
  std::ifstream in(dir.file("metrics.jsonl"));
  std::string text;
  ASSERT_TRUE(std::getline(in, text));
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_DOUBLE_EQ(j["tokens_per_s"].get<double>(), 512.0);
  EXPECT_DOUBLE_EQ(j["step_ms"].get<double>(), 500.0);
  EXPECT_DOUBLE_EQ(j["a2a_ms"].get<double>(), 125.0);
  EXPECT_DOUBLE_EQ(j["lr"].get<double>(), 2.5e-4);
  EXPECT_EQ(j["a2a_internode_bytes"].get<int64_t>(), 4096);
  EXPECT_EQ(j["a2a_intranode_bytes"].get<int64_t>(), 1024);
  EXPECT_DOUBLE_EQ(j["gflops"].get<double>(), 8.0);
  EXPECT_FALSE(j.contains("internode_bytes")) << "only where the run spans nodes";
  const std::string line = log.str();
  EXPECT_NE(line.find("step      3/"), std::string::npos) << line;
  EXPECT_NE(line.find("| 512 tok/s |"), std::string::npos) << line;
  EXPECT_NE(line.find("| a2a 25% |"), std::string::npos) << line;
  EXPECT_NE(line.find("| 500.0 ms |"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 01:02:05\n"), std::string::npos) << line;
  EXPECT_EQ(format_duration(59.5), "00:01:00");
  EXPECT_EQ(format_duration(90061.0), "25:01:01");
  // The ETA of train.steps near INT64_MAX overflowed the conversion (undefined behaviour; it
  // printed "-2562047788015215:-30:-8"; QA).
  EXPECT_EQ(format_duration(1.23917e19), "over 1000000 h");
  EXPECT_EQ(format_duration(std::nan("")), "over 1000000 h");
  EXPECT_EQ(format_duration(-3.0), "00:00:00");
}

// ProgressEta's line (data prepare's bytes, sample's prompt tokens): MiB to a tenth, other units
// as whole counts; nothing before `every_s` has passed, or before any work is done.
TEST(Report, ProgressLinesSayTheShareDoneInTheirUnit) {
  ProgressEta none(100, 3600.0);
  EXPECT_FALSE(none.update(50, "tokens").has_value());
  ProgressEta tokens(1000, 0.0);
  EXPECT_FALSE(tokens.update(0, "tokens").has_value());
  const auto t = tokens.update(340, "tokens");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->rfind("34% (340/1000 tokens), ETA ", 0), 0u) << *t;
  ProgressEta bytes(12 * 1048576, 0.0);
  const auto b = bytes.update(4 * 1048576 + 104858);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->rfind("34% (4.1/12.0 MiB), ETA ", 0), 0u) << *b;
}

// The progress line's ETA: this run's mean step time times the steps left. A run resumed at step
// 4 of 10 that took 2 s for step 5 has 5 steps left (ETA 10 s); after 4 s for step 6 the mean is
// 3 s and 4 steps are left (ETA 12 s). The steps before the resume took no time of this run.
TEST(Report, EtaIsThisRunsMeanStepTimeTimesTheStepsLeft) {
  Config cfg = load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml");
  cfg.train.steps = 10;
  cfg.log.every = 1;
  const StepFlops flops;
  ResumeResult resumed;
  resumed.resumed = true;
  resumed.state.step = 4;
  std::ostringstream log;
  RunProgress progress(cfg, flops, resumed, nullptr, log);
  StepRecord r;
  r.step = 5;
  r.step_s = 2.0;
  progress.step_done(r);
  EXPECT_NE(log.str().find("ETA 00:00:10\n"), std::string::npos) << log.str();
  log.str("");
  r.step = 6;
  r.step_s = 4.0;
  progress.step_done(r);
  EXPECT_NE(log.str().find("ETA 00:00:12\n"), std::string::npos) << log.str();
  EXPECT_EQ(progress.summary().first_step, 4);
  EXPECT_EQ(progress.summary().steps_done, 6);
}

}  // namespace
}  // namespace sy

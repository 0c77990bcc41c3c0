// A step's metrics.jsonl line (SPEC section 6) from a hand-made step record: the loss parts as
// given, expert_load as each layer's assignments per expert over the global batch's, dropped_frac
// as the dropped assignments over all layers' (tokens_per_s and the times are left unchecked).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/temp_dir.h"
#include "src/config/config.h"
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

}  // namespace
}  // namespace sy

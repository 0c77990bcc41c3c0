// bench train's pieces: the GEMM shapes it times are the model's (worked out by hand for
// small.yaml's dimensions), the timings are sane, and a short run on the tiny config reports
// numbers that agree with each other (tokens/s and GFLOP/s from the same median step time), and
// the PyTorch ratios print what a hand-made result works out to.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "src/bench/gemm_ceiling.h"
#include "src/bench/train_bench.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/data/tokens.h"

namespace sy {
namespace {

Config small_like() {
  return parse_config(R"(
model: {vocab_size: 256, d_model: 128, n_layers: 4, n_heads: 4, seq_len: 128}
moe: {num_experts: 8, top_k: 2, ffn_hidden: 256, shared_experts: 1}
train: {global_batch: 16, micro_batch: 8}
data: {path: x.h5}
)");
}

const GemmShape& find(const std::vector<GemmShape>& v, const std::string& what) {
  const auto it =
      std::find_if(v.begin(), v.end(), [&](const GemmShape& s) { return s.what == what; });
  if (it == v.end()) throw std::runtime_error("no shape " + what);
  return *it;
}

TEST(TrainBench, GemmShapesAreTheModelsProducts) {
  const auto shapes = model_gemm_shapes(small_like());
  // N = 8 * 128 = 1024 tokens per micro-batch; an expert gets R = N K / E = 256 rows.
  const GemmShape& qkv = find(shapes, "wqkv fwd");
  EXPECT_EQ(qkv.M, 1024);
  EXPECT_EQ(qkv.N, 384);
  EXPECT_EQ(qkv.K, 128);
  EXPECT_EQ(qkv.calls, 4);
  const GemmShape& w1_dw = find(shapes, "expert W1|W3 dW");  // dW1[C,F] = x^T dh over R rows
  EXPECT_EQ(w1_dw.M, 128);
  EXPECT_EQ(w1_dw.N, 256);
  EXPECT_EQ(w1_dw.K, 256);
  EXPECT_TRUE(w1_dw.trans_a);
  EXPECT_EQ(w1_dw.calls, 2 * 4 * 8);  // W1 and W3, 4 layers, 8 experts
  const GemmShape& shared = find(shapes, "shared W2 fwd");
  EXPECT_EQ(shared.M, 1024);
  EXPECT_EQ(shared.K, 256);
  const GemmShape& head = find(shapes, "head fwd");
  EXPECT_EQ(head.N, 256);
  EXPECT_TRUE(head.trans_b);
  // Summed over one micro-batch, the timed products are the matmul part of the model FLOPs of
  // that micro-batch (6 * P_tok * tokens), up to the router, whose rows are all N: exact here.
  double flops = 0;
  for (const auto& s : shapes) flops += s.calls * s.flops();
  const double P_tok = 4 * (4.0 * 128 * 128 + 128 * 8 + 3.0 * 128 * 256 * (2 + 1)) + 256 * 128;
  EXPECT_DOUBLE_EQ(flops, 6 * P_tok * 1024);
}

TEST(TrainBench, GemmTimingsArePositiveAndConsistent) {
  const std::vector<GemmShape> shapes = {{"a", 64, 96, 80, false, false, 1},
                                         {"b", 64, 96, 80, true, true, 3}};
  const auto t = time_gemms(shapes, 0.01);
  ASSERT_EQ(t.size(), 2u);
  for (const auto& g : t) {
    EXPECT_GT(g.threaded_s, 0);
    EXPECT_GT(g.per_core_s, 0);
    EXPECT_GE(g.gflops(), g.threaded_gflops());
    EXPECT_GE(g.gflops(), g.per_core_gflops());
  }
  EXPECT_DOUBLE_EQ(best_gflops(t), std::max(t[0].gflops(), t[1].gflops()));
  const double w = weighted_gflops(t);
  EXPECT_GE(w, std::min(t[0].gflops(), t[1].gflops()) * (1 - 1e-12));
  EXPECT_LE(w, best_gflops(t) * (1 + 1e-12));
}

TEST(TrainBench, ShortRunOnTinyConfig) {
  test::TempDir dir;
  PrepareOptions prep;
  for (const auto& e : std::filesystem::directory_iterator("/usr/share/common-licenses"))
    if (e.is_regular_file() && !e.is_symlink()) prep.inputs.push_back(e.path().string());
  std::sort(prep.inputs.begin(), prep.inputs.end());
  prep.output = dir.file("tokens.h5");
  prepare_token_file(prep);
  const Config cfg = load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml",
                                 {"data.path=" + prep.output});
  TrainBenchOptions opt;
  opt.steps = 3;
  opt.warmup = 1;
  opt.gemm_seconds = 0.005;
  opt.python.clear();  // no PyTorch peer in a unit test
  std::ostringstream log, table;
  const TrainBenchResult r = run_train_bench(cfg, opt, log);
  EXPECT_GT(r.step_s, 0);
  EXPECT_NEAR(r.tokens_per_s, 8.0 * 32 / r.step_s, 1e-6 * r.tokens_per_s);
  EXPECT_NEAR(r.gflops, r.flops.total() / r.step_s * 1e-9, 1e-9 * r.gflops);
  EXPECT_LE(r.forward_s + r.backward_s + r.optimizer_s, r.step_s * 1.5);
  EXPECT_TRUE(std::isfinite(r.first_loss));
  EXPECT_LT(r.last_loss, 6.0);  // ~ln 256 = 5.55 at the start, and not diverging
  EXPECT_GT(r.ceiling_gflops, 0);
  EXPECT_FALSE(r.torch.ran);
  print_train_bench(cfg, opt, r, table);
  for (const char* s :
       {"achieved GFLOP/s", "achieved / ceiling", "tokens/s", "6*P_tok*GB*T", "step time, median"})
    EXPECT_NE(table.str().find(s), std::string::npos) << s << "\n" << table.str();
  TrainBenchOptions zero = opt;
  zero.steps = 0;
  EXPECT_THROW(run_train_bench(cfg, zero, log), UsageError);
}

// The PyTorch rows, from a result made up by hand: 1000 tokens/s at 100 GFLOP/s, whose products
// alone would run at 250 (so 2500 tokens/s), against a peer at 500 tokens/s.
TEST(TrainBench, PrintsThePeerRatioAndTheGemmOnlyBound) {
  const Config cfg = small_like();
  TrainBenchResult r;
  r.step_s = 2.048;
  r.tokens_per_s = 1000;
  r.gflops = 100;
  r.ceiling_gflops = 300;
  r.gemm_only_gflops = 250;
  r.torch.ran = true;
  r.torch.tokens_per_s = 500;
  std::ostringstream table;
  print_train_bench(cfg, TrainBenchOptions{}, r, table);
  const std::string t = table.str();
  const auto value = [&](const std::string& name) {
    const size_t at = t.find(name + " ");
    if (at == std::string::npos) return std::string("(no row '" + name + "')");
    const size_t eol = t.find('\n', at);
    std::istringstream rest(t.substr(at + name.size(), eol - at - name.size()));
    std::string v, unit;
    rest >> v >> unit;
    return v + " " + unit;
  };
  EXPECT_EQ(value("switchyard / PyTorch"), "2.00 x") << t;
  EXPECT_EQ(value("GEMM-only step / PyTorch"), "5.00 x") << t;
  r.torch.ran = false;
  std::ostringstream without;
  print_train_bench(cfg, TrainBenchOptions{}, r, without);
  EXPECT_EQ(without.str().find("/ PyTorch"), std::string::npos) << without.str();
}

}  // namespace
}  // namespace sy

// The memory terms of src/plan/memory.h: parameter counts against the real parameter table
// (src/model/params.h) for many layouts, the activation buffers against hand-counted sizes and
// against the resident memory a real Model<float> takes, and the int32 index limits.
#include "src/plan/memory.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <omp.h>

#include <unistd.h>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "src/model/model.h"
#include "src/model/params.h"
#include "src/sample/decoder.h"
#include "src/sample/sampler.h"

namespace sy::plan {
namespace {

Config small_cfg() {
  Config c;
  c.model.vocab_size = 16;
  c.model.d_model = 8;
  c.model.n_layers = 1;
  c.model.n_heads = 2;
  c.model.seq_len = 4;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.ffn_hidden = 6;
  c.train.micro_batch = 2;
  c.train.global_batch = 2;
  c.data.path = "x.h5";
  return c;
}

const MemoryTerm& term(const MemoryEstimate& m, const std::string& prefix) {
  for (const auto& t : m.terms)
    if (t.name.rfind(prefix, 0) == 0) return t;
  ADD_FAILURE() << "no term " << prefix;
  return m.terms.front();
}

TEST(PlanMemory, ParameterCountsMatchTheParameterTable) {
  Config cfg = small_cfg();
  cfg.model.n_layers = 3;
  cfg.model.n_heads = 4;
  cfg.model.d_model = 16;
  cfg.moe.num_experts = 8;
  cfg.moe.ffn_hidden = 12;
  for (int64_t shared : {0, 2})
    for (bool tied : {true, false})
      for (auto [world, tp, ep, etp] : std::vector<std::array<int, 4>>{{1, 1, 1, 1},
                                                                       {2, 2, 1, 1},
                                                                       {4, 1, 4, 1},
                                                                       {4, 2, 2, 1},
                                                                       {8, 2, 2, 2},
                                                                       {6, 1, 2, 3},
                                                                       {8, 4, 8, 1}}) {
        cfg.moe.shared_experts = shared;
        cfg.model.tie_embeddings = tied;
        PlanLayout lay;
        lay.world = world;
        lay.tp = tp;
        lay.ep = ep;
        lay.etp = etp;
        ShardLayout s;  // rank 0's coordinates: the padding depends only on the group sizes
        s.tp = tp;
        s.dp = world / tp;
        s.ep = ep;
        s.etp = etp;
        s.edp = world / (ep * etp);
        const ParamTable t = make_param_table(cfg, s);
        EXPECT_EQ(local_param_elements(cfg, lay), static_cast<double>(t.total_numel()))
            << "world " << world << " tp " << tp << " ep " << ep << " etp " << etp;
        EXPECT_EQ(param_groups(cfg, lay).dense,
                  static_cast<double>(t.group_range(ParamGroup::kDense).size));
        lay.zero1 = true;
        EXPECT_EQ(local_moment_elements(cfg, lay),
                  static_cast<double>(t.group_range(ParamGroup::kDense).size) / s.dp +
                      static_cast<double>(t.group_range(ParamGroup::kExpert).size) / s.edp);
      }
}

TEST(PlanMemory, ActivationTermsByHand) {
  // B=2, T=4 (N=8), C=8, 2 heads, V=16, E=4, K=2, F=6, one layer, one rank.
  const Config cfg = small_cfg();
  PlanLayout lay;
  const MemoryEstimate m = predict_memory(cfg, lay, RoutingStats{}, MemoryInputs{});
  // Per layer 5 [N,C] + 2 [N] + 7 [N,C] (qkv, qkv_rot, atty) = 320 + 16 + 448 = 784 floats;
  // once 5 [N,C] + 5 [N] + 6 [N,C] + the batch's tokens [2, 5] = 320 + 40 + 384 + 10 = 754.
  EXPECT_DOUBLE_EQ(term(m, "activations kept for backward: residual").bytes, 4.0 * (784 + 754));
  // The CPU keeps each attention row's max and 1/sum, [B=2, heads=2, T=4, 2] = 32 floats per
  // layer, and one thread's two [min(T, 64), T] tiles, 2 x 16 floats; 3 threads, three pairs.
  EXPECT_DOUBLE_EQ(term(m, "activations kept for backward: attention").bytes, 4.0 * (32 + 32));
  MemoryInputs three_threads;
  three_threads.threads = 3;
  EXPECT_DOUBLE_EQ(term(predict_memory(cfg, lay, RoutingStats{}, three_threads),
                        "activations kept for backward: attention")
                       .bytes,
                   4.0 * (32 + 3 * 32));
  // The GPU keeps att per layer and datt once: 2 x [B=2, heads=2, T=4, T=4] = 2 x 64 floats.
  Config gpu = cfg;
  gpu.device = Device::kCuda;
  EXPECT_DOUBLE_EQ(term(predict_memory(gpu, lay, RoutingStats{}, MemoryInputs{}),
                        "activations kept for backward: attention")
                       .bytes,
                   4.0 * 128);
  EXPECT_DOUBLE_EQ(term(m, "logits").bytes, 4.0 * 8 * 16);
  // MoE layer on one rank: A = N K = 16 assignments, no moved rows.
  //   route: 4 [N,E] + 2 [N] + 5 [N,K] + 2 E + 1 = 128 + 16 + 80 + 9 = 233 floats, grp_frac
  //   [B=2, E] and score_sum [N] doubles = 16 doubles; layout 4 [A] = 64; experts 4 [A,C] +
  //   3 [A,F] + 2 [A,F] (dh) = 512 + 288 + 192 = 992.
  EXPECT_DOUBLE_EQ(term(m, "MoE layers").bytes, 4.0 * (233 + 64 + 992) + 8.0 * 16);
  // Params + grads: embed 128 + final norm 8 + layer (2*8 norms + 192 wqkv + 64 wo + 32 router
  // + 4 bias + 3*4*8*6 = 576 experts) = 1020 floats each; moments 2x.
  EXPECT_DOUBLE_EQ(term(m, "parameters").bytes, 4.0 * 1020);
  EXPECT_DOUBLE_EQ(term(m, "AdamW moments").bytes, 8.0 * 1020);
}

// Layouts that move rows, by hand from src/model/moe_parallel.cpp's buffers. small_cfg (N = 8,
// C = 8, K = 2, E = 4, F = 6) on two ranks; Route (233 floats + 16 doubles) as above.
// etp = 2 (ep = tp = 1): no exchange, so no send or recv rows; Mo = N = 8 own rows, M = 16 after
// the etp all-gather; A = 32 (the 16 rows' 2 assignments each, every expert local, no variance).
//   layout 4 A = 128; experts 4 [A,C] + 3 [A,F/2] + 2 [A,F/2] = 1024 + 288 + 192 = 1504;
//   moved: rows_x [M,C] and yrows [M,C+K] = 2 x 128 + 32, rows_g, rows_e [M,K] = 64,
//   etp_scratch [Mo,C+K] = 80: 432 floats.
// ep = 2 (flat): each rank holds 2 experts, which a token's top-2 of 4 reaches with probability
// 1 - C(2,2)/C(4,2) = 5/6; 16 source tokens give 13.3 + 3.72 sqrt(16 (5/6)(1/6)) > 16 rows, so
// Mo = M = 16 (all). A: 16 tokens x 2 slots x share 1/2, variance 2 (1/2)(1/2)(2/3) = 1/3 per
// token: A = 16 + 3.72 sqrt(16/3). Buffers: layout 4 A, experts 32 A + 18 A + 12 A; moved: send
// [Ns,C+K] 80, recv [Mo,C+K] 160, rows_x and yrows 2 x 128 + 32, rows_g, rows_e 64 = 592 floats.
// The flat exchange stages the rows a rank sends: 8 tokens x 2 ranks x 5/6 rows of C + K floats.
TEST(PlanMemory, MovedRowsTermsByHand) {
  const Config cfg = small_cfg();
  PlanLayout etp2;
  etp2.world = 2;
  etp2.etp = 2;
  const MemoryEstimate e = predict_memory(cfg, etp2, RoutingStats{}, MemoryInputs{});
  EXPECT_DOUBLE_EQ(term(e, "MoE layers").bytes, 4.0 * (233 + 128 + 1504 + 432) + 8.0 * 16);
  for (const auto& t : e.terms) EXPECT_NE(t.name.rfind("all-to-all", 0), 0u) << "no exchange";

  PlanLayout ep2;
  ep2.world = 2;
  ep2.ep = 2;
  const MemoryEstimate f = predict_memory(cfg, ep2, RoutingStats{}, MemoryInputs{});
  const double A = 16 + 3.72 * std::sqrt(16.0 / 3.0);
  EXPECT_NEAR(term(f, "MoE layers").bytes, 4.0 * (233 + 66 * A + 592) + 8.0 * 16, 1e-9);
  EXPECT_NEAR(term(f, "all-to-all buffers").bytes, 4.0 * 10 * 8 * 2 * 5.0 / 6.0, 1e-9);
}

// The workspace and MPI's reduction temporaries of small_cfg by hand. Dense group 444 elements
// (embed 128, final norm 8, norms 16, wqkv 192, wo 64, router 32, bias 4), expert group 576,
// router gradients 32; the process's base 100 bytes.
//   One rank: the optimizer's scratch is the largest group, 576 floats; no reduction.
//   dp = edp = 6: chunks of 444 / 6 = 74 and 576 / 6 = 96 (each far below a 4 MiB bucket), so
//   96 floats; the binomial tree's root holds ceil(log2 6) = 3 copies of a bucket, the larger
//   group's 576 floats. ZeRO-1 changes neither (a checkpoint writes each rank's chunks where
//   they lie: no term of gathered moments).
TEST(PlanMemory, WorkspaceAndReductionTemporariesByHand) {
  Config cfg = small_cfg();
  MemoryInputs in;
  in.base_bytes = 100;
  const MemoryEstimate one = predict_memory(cfg, PlanLayout{}, RoutingStats{}, in);
  EXPECT_DOUBLE_EQ(term(one, "workspace").bytes, 4.0 * 576 + 100);
  for (const auto& t : one.terms)
    EXPECT_NE(t.name.rfind("MPI", 0), 0u) << "one rank reduces nothing";

  PlanLayout six;
  six.world = 6;
  const MemoryEstimate m = predict_memory(cfg, six, RoutingStats{}, in);
  EXPECT_DOUBLE_EQ(term(m, "workspace").bytes, 4.0 * 96 + 100);
  EXPECT_DOUBLE_EQ(term(m, "MPI reduction temporaries").bytes, 4.0 * 576 * 3);
  six.zero1 = true;
  const MemoryEstimate z = predict_memory(cfg, six, RoutingStats{}, in);
  EXPECT_DOUBLE_EQ(term(z, "workspace").bytes, 4.0 * 96 + 100);
  for (const auto& t : z.terms) EXPECT_EQ(t.name.find("ZeRO-1"), std::string::npos) << t.name;
  // A checkpoint's HDF5 buffers: twice the largest tensor part (an expert stack, 4 x 8 x 6 =
  // 192 floats) and 4 MiB of MPI-IO.
  EXPECT_DOUBLE_EQ(term(z, "checkpoint writes").bytes, 8.0 * 192 + 4.0 * (1 << 20));
}

// The same model trained with device: cuda in bf16: CudaModel<bf16> stores the [N, *] activations,
// the attention probabilities, the logits and the expert rows as bf16 (2 bytes), keeps the [N]
// statistics, the router's scores and every gradient in fp32, and adds a bf16 copy of the
// parameters.
TEST(PlanMemory, Bf16OnTheGpuStoresActivationsInTwoBytes) {
  Config cfg = small_cfg();
  cfg.device = Device::kCuda;
  cfg.train.precision = Precision::kBf16;
  const MemoryEstimate m = predict_memory(cfg, PlanLayout{}, RoutingStats{}, MemoryInputs{});
  // Per layer 5 [N,C] + 7 [N,C] = 768 bf16 and 2 [N] = 16 floats; once 5 [N,C] + 6 [N,C] = 704
  // bf16 and 5 [N] + the tokens [2, 5] = 50 int32/floats.
  EXPECT_DOUBLE_EQ(term(m, "activations kept for backward: residual").bytes,
                   2.0 * (768 + 704) + 4.0 * (16 + 50));
  EXPECT_DOUBLE_EQ(term(m, "activations kept for backward: attention").bytes, 2.0 * 128);
  EXPECT_DOUBLE_EQ(term(m, "logits").bytes, 2.0 * 8 * 16);
  // Route and layout stay fp32 (233 + 64 floats, 16 doubles); the expert rows (992) are bf16.
  EXPECT_DOUBLE_EQ(term(m, "MoE layers").bytes, 4.0 * (233 + 64) + 8.0 * 16 + 2.0 * 992);
  EXPECT_DOUBLE_EQ(term(m, "parameters").bytes, 4.0 * 1020);
  EXPECT_DOUBLE_EQ(term(m, "bf16 compute copy").bytes, 2.0 * 1020);
  // fp32 on the GPU, and bf16 asked of the CPU trainer: 4-byte activations, no copy.
  for (const auto& [device, precision] :
       {std::pair{Device::kCuda, Precision::kFp32}, std::pair{Device::kCpu, Precision::kBf16}}) {
    cfg.device = device;
    cfg.train.precision = precision;
    const MemoryEstimate f = predict_memory(cfg, PlanLayout{}, RoutingStats{}, MemoryInputs{});
    EXPECT_DOUBLE_EQ(term(f, "logits").bytes, 4.0 * 8 * 16);
    for (const auto& t : f.terms) EXPECT_EQ(t.name.find("bf16"), std::string::npos) << t.name;
  }
}

// ZeRO-1 is offered as a fix of the moments where there are data-parallel replicas to shard them
// over (not on one rank, not on the GPU, which refuses it), and under it the moments are 1/dp of
// them with no gathered copy: a checkpoint writes each rank's chunks where they lie.
TEST(PlanMemory, Zero1IsOfferedWhereItShardsTheMoments) {
  Config cfg = small_cfg();
  auto moments = [&](const PlanLayout& lay) {
    return term(predict_memory(cfg, lay, RoutingStats{}, MemoryInputs{}), "AdamW moments m and v");
  };
  PlanLayout two;
  two.world = 2;
  EXPECT_NE(moments(two).keys.find("parallel.zero1=true"), std::string::npos);
  EXPECT_EQ(moments(PlanLayout{}).keys.find("zero1"), std::string::npos);
  two.zero1 = true;
  EXPECT_EQ(moments(two).keys.find("zero1"), std::string::npos);
  EXPECT_DOUBLE_EQ(moments(two).bytes, 8.0 * 1020 / 2);
  const MemoryEstimate z = predict_memory(cfg, two, RoutingStats{}, MemoryInputs{});
  for (const auto& t : z.terms) EXPECT_EQ(t.name.find("ZeRO-1"), std::string::npos) << t.name;
  cfg.device = Device::kCuda;
  two.zero1 = false;
  EXPECT_EQ(moments(two).keys.find("zero1"), std::string::npos);
}

TEST(PlanMemory, TokenDataAndTheLargestTerm) {
  Config cfg = small_cfg();
  MemoryInputs in;
  in.train_tokens = 1099511627776.0;  // 2^40 declared tokens
  in.val_tokens = 1000;
  in.data_name = "'huge.h5' /train";
  const MemoryEstimate m = predict_memory(cfg, PlanLayout{}, RoutingStats{}, in);
  // The tokens stay in the file: two cached epoch permutations of (n - 1) / T windows (int64),
  // the check's 8 MiB block and two 1 MiB chunk caches. (Both splits as int32 were counted too,
  // when every rank held them.)
  const double windows = std::floor((in.train_tokens - 1) / 4);
  EXPECT_DOUBLE_EQ(term(m, "token data").bytes, 16.0 * windows + 8.0 * (1 << 20) + 2.0 * (1 << 20));
  EXPECT_EQ(m.largest().name.find("token data 'huge.h5' /train"), 0u);
}

// The CPU trainer's co-activation counts, int64 [L, E, E] = 16 for small_cfg: this log period's
// on every rank, the run's total and its copy as of the newest checkpoint on rank 0, plus the
// all-reduce's binomial tree on 6 ranks (ceil(log2 6) = 3 copies). The GPU trainer keeps none.
TEST(PlanMemory, CoactivationCountsByHand) {
  Config cfg = small_cfg();
  EXPECT_DOUBLE_EQ(
      term(predict_memory(cfg, PlanLayout{}, RoutingStats{}, MemoryInputs{}), "co-activation")
          .bytes,
      8.0 * 16 * 3);
  PlanLayout six;
  six.world = 6;
  EXPECT_DOUBLE_EQ(
      term(predict_memory(cfg, six, RoutingStats{}, MemoryInputs{}), "co-activation").bytes,
      8.0 * 16 * 6);
  cfg.device = Device::kCuda;
  for (const auto& t : predict_memory(cfg, PlanLayout{}, RoutingStats{}, MemoryInputs{}).terms)
    EXPECT_EQ(t.name.find("co-activation"), std::string::npos);
}

// eval.sample_tokens > 0: world rank 0 gathers the whole model for its sample, whatever the
// layout. small_cfg: 1020 parameters (above), the key/value cache 2 x 1 layer x (4 + 63) x 8 =
// 1072 floats, and the largest part a rank sends: one rank's expert tensor 4 x 8 x 6 = 192; on
// ep = 2 the embedding 16 x 8 = 128 (an expert tensor is 2 x 8 x 6 there).
TEST(PlanMemory, TheEvalSampleHoldsTheWholeModelOnRankZero) {
  Config cfg = small_cfg();
  const MemoryEstimate none = predict_memory(cfg, PlanLayout{}, RoutingStats{}, MemoryInputs{});
  for (const auto& t : none.terms) EXPECT_NE(t.name.rfind("evaluation sample", 0), 0u) << t.name;
  cfg.eval.sample_tokens = 100;
  PlanLayout two;
  two.world = 2;
  two.ep = 2;
  for (const auto& [lay, part] : {std::pair{PlanLayout{}, 192.0}, std::pair{two, 128.0}}) {
    const MemoryEstimate m = predict_memory(cfg, lay, RoutingStats{}, MemoryInputs{});
    const MemoryTerm& t = term(m, "evaluation sample on rank 0");
    EXPECT_DOUBLE_EQ(t.bytes, 4.0 * (1020 + part + 1072)) << lay.describe();
    EXPECT_NE(t.keys.find("eval.sample_tokens"), std::string::npos);
  }
}

TEST(PlanMemory, IndexLimitsNameTheKey) {
  Config cfg = small_cfg();
  EXPECT_TRUE(index_problems(cfg, PlanLayout{}).empty());
  cfg.model.d_model = int64_t{1} << 31;
  auto p = index_problems(cfg, PlanLayout{});
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.front().key, "model.d_model");
  cfg = small_cfg();
  cfg.train.micro_batch = cfg.train.global_batch = int64_t{1} << 40;
  p = index_problems(cfg, PlanLayout{});
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.front().key, "train.micro_batch");
  cfg = small_cfg();
  cfg.moe.num_experts = int64_t{1} << 31;
  p = index_problems(cfg, PlanLayout{});
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.front().key, "moe.num_experts");
  // A micro-batch whose router scores [N, E] pass 2^31 even though N and E fit.
  cfg = small_cfg();
  cfg.moe.num_experts = 1 << 20;
  cfg.moe.top_k = 2;
  cfg.train.micro_batch = cfg.train.global_batch = 1 << 10;  // N = 4096, N*E = 2^32
  p = index_problems(cfg, PlanLayout{});
  ASSERT_FALSE(p.empty());
  EXPECT_NE(p.front().what.find("router scores"), std::string::npos);
}

// Resident bytes of this process (/proc/self/statm).
double rss_bytes() {
  std::ifstream in("/proc/self/statm");
  long size = 0, resident = 0;
  in >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// The terms must account for what a real model holds: construct Model<float> (params, grads)
// and run a forward and backward (every activation and MoE buffer), and compare the resident
// growth with the predicted parameters + gradients + activations + MoE layers.
// Long sequences too, where keeping attention's probabilities would show: at seq_len 512 they
// are 8.4 MB per layer of [B, heads, T, T]; the CPU model keeps 32 KB of row statistics instead.
struct ResidentCase {
  int d_model, seq_len, micro_batch;
};
class PlanMemoryResident : public ::testing::TestWithParam<ResidentCase> {};

TEST_P(PlanMemoryResident, PredictionMatchesTheResidentGrowthOfARealModel) {
  Config cfg;
  cfg.model.vocab_size = 512;
  cfg.model.d_model = GetParam().d_model;
  cfg.model.n_layers = 3;
  cfg.model.n_heads = 4;
  cfg.model.seq_len = GetParam().seq_len;
  cfg.moe.num_experts = 4;
  cfg.moe.top_k = 2;
  cfg.moe.ffn_hidden = 256;
  cfg.train.micro_batch = cfg.train.global_batch = GetParam().micro_batch;
  const int B = GetParam().micro_batch, T = GetParam().seq_len;
  MemoryInputs in;
  in.threads = omp_get_max_threads();
  const MemoryEstimate m = predict_memory(cfg, PlanLayout{}, RoutingStats{}, in);
  double predicted = 0;
  for (const char* t : {"parameters", "gradients", "activations", "logits", "MoE layers"})
    for (const auto& x : m.terms)
      if (x.name.rfind(t, 0) == 0) predicted += x.bytes;

  // Memory the earlier tests of this process freed would be reused without growing the resident
  // set (seq_len_512 grew 0.78 of its prediction after the other tests, 1.03 alone): give it
  // back to the system first.
  malloc_trim(0);
  const double before = rss_bytes();
  Model<float> model(cfg);
  for (size_t i = 0; i < model.params.size(); ++i)
    model.params[i] = 0.01f * static_cast<float>(i % 7);
  std::vector<int32_t> tokens(static_cast<size_t>(B) * (T + 1));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 31 % 512);
  LossScale s;
  model.forward(tokens.data(), B, s);
  model.backward();
  const double grown = rss_bytes() - before;
  // 83 and 59 MB predicted; allocator slack and reused pages stay within 15 %. Keeping att per
  // layer and datt once would add 34 MB (57 %) at seq_len 512.
  EXPECT_NEAR(grown, predicted, 0.15 * predicted) << "predicted " << predicted;
}
INSTANTIATE_TEST_SUITE_P(Shapes, PlanMemoryResident,
                         ::testing::Values(ResidentCase{128, 64, 16}, ResidentCase{64, 512, 2}),
                         [](const ::testing::TestParamInfo<ResidentCase>& p) {
                           return "seq_len_" + std::to_string(p.param.seq_len);
                         });

// The evaluation sample's term against a real decoder: the one-rank flat parameters gathered for
// it, a Decoder over them, a prompt and 64 generated tokens.
TEST(PlanMemory, TheEvalSampleTermMatchesTheResidentGrowthOfADecoder) {
  const Config cfg = parse_config("data:\n  path: x.h5\n",
                                  {"model.vocab_size=2048", "model.d_model=256", "model.n_layers=4",
                                   "model.n_heads=4", "model.seq_len=512", "moe.num_experts=8",
                                   "moe.top_k=2", "moe.ffn_hidden=512", "eval.sample_tokens=64"});
  const MemoryEstimate m = predict_memory(cfg, PlanLayout{}, RoutingStats{}, MemoryInputs{});
  const double predicted = term(m, "evaluation sample").bytes;
  malloc_trim(0);
  const double before = rss_bytes();
  std::vector<float> whole(make_param_table(cfg).total_numel());
  for (size_t i = 0; i < whole.size(); ++i) whole[i] = 0.02f * static_cast<float>(i % 13) - 0.12f;
  Decoder dec(cfg, std::move(whole));
  SampleOptions o;
  o.tokens = cfg.eval.sample_tokens;
  const std::vector<int32_t> prompt(16, 7);
  const GenerateResult r = generate(dec, prompt, o, 2048);
  EXPECT_EQ(r.tokens, 64);
  const double grown = rss_bytes() - before;
  // 66 MB predicted: 14.2 M parameters (57 MB), the 4.7 MB cache and the gather's 4.2 MB part
  // buffer, which is not held here; the decoder's own buffers took about as much (grew 64.6 MB).
  EXPECT_LE(grown, predicted) << "predicted " << predicted;
  EXPECT_GE(grown, 0.85 * predicted) << "predicted " << predicted;
  std::printf("eval sample: grew %.0f bytes, predicted %.0f\n", grown, predicted);
}

}  // namespace
}  // namespace sy::plan

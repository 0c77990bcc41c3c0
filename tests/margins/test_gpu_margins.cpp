// Near-ties in the inputs of the GPU tests that compare a discrete decision exactly (runs on the
// CPU, in CI). The GPU computes router scores in fp32 (expf, fp32 sums), the CPU in double
// rounded once, so the two differ by a few ulps (~1e-7); where two candidates' scores are closer
// than that, the GPU may choose the other one and the test fails without a bug. For the very
// inputs those tests draw (the shared headers tests/gpu/router_cases.h, tests/gpu/moe_case_inputs.h
// and tests/sample/decoder_cases.h) this measures, in double, the smallest margin of each decision
// and requires it to be at least kMinMargin:
//   - top-k: the gap between the j-th and (j+1)-th score p + b of a token (all j <= K where the
//     order of the top-k is compared, as the router kernel tests do; only j = K where only the
//     set counts, as the layer tests' routing counts do);
//   - group-limited selection: the gap between the M-th and (M+1)-th group score (the sum of a
//     group's r best scores), and the top-k gaps inside the kept groups;
//   - capacity: the gap in p between an over-full expert's last kept and first dropped slot;
//   - greedy decoding: the gap between the best and second-best logit of every step, relative
//     to the row's largest |logit|.
// Each case's selection is checked against the CPU reference's first, so the margins are those
// of the decisions the GPU tests compare. Every case's margins are printed (run the binary,
// build/tests/test_margins, to see them).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "gpu/model/model_cases.h"
#include "gpu/moe_case_inputs.h"
#include "gpu/router_cases.h"
#include "kernels/cpu/moe_ops.h"
#include "sample/decoder_cases.h"
#include "src/model/init.h"
#include "src/model/model.h"
#include "src/model/moe.h"
#include "src/optim/optim.h"
#include "src/sample/decoder.h"

namespace sy {
namespace {

// fp32 scores differ by ~1e-7 between the backends; a hundred times that is safe.
constexpr double kMinMargin = 1e-5;
constexpr double kInf = std::numeric_limits<double>::infinity();

// The smallest margin of each kind of decision over a case's tokens (inf: no such decision).
struct Margins {
  double topk = kInf, groups = kInf, capacity = kInf;
  double min() const { return std::min({topk, groups, capacity}); }
};

// Indices 0..n-1 ordered by score, highest first, ties to the lower index (the routers' order).
std::vector<int> ranked(const std::vector<double>& score) {
  std::vector<int> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return score[a] > score[b]; });
  return idx;
}

// The top-k of one token's selection scores s[E] (p + b) under `rule`, best first, as SPEC
// section 1 defines it; updates the margins. ordered: the order inside the top-k is compared
// too, so every gap down to the (K+1)-th counts.
std::vector<int> route_token(const std::vector<double>& s, int K, const RouterRule& rule,
                             bool ordered, Margins* m) {
  const int E = static_cast<int>(s.size());
  std::vector<int> candidates(E);
  std::iota(candidates.begin(), candidates.end(), 0);
  if (rule.limits_groups()) {
    const int R = rule.groups, Eg = E / R, M = rule.groups_topk, r = rule.group_score_experts(K);
    std::vector<double> group_score(R, 0.0);
    for (int g = 0; g < R; ++g) {
      std::vector<double> in_group(s.begin() + g * Eg, s.begin() + (g + 1) * Eg);
      std::sort(in_group.begin(), in_group.end(), std::greater<>());
      for (int j = 0; j < r; ++j) group_score[g] += in_group[j];
    }
    const std::vector<int> groups = ranked(group_score);
    m->groups = std::min(m->groups, group_score[groups[M - 1]] - group_score[groups[M]]);
    candidates.clear();
    for (int i = 0; i < E; ++i)
      if (std::find(groups.begin(), groups.begin() + M, i / Eg) != groups.begin() + M)
        candidates.push_back(i);
  }
  std::stable_sort(candidates.begin(), candidates.end(), [&](int a, int b) { return s[a] > s[b]; });
  const int n = static_cast<int>(candidates.size());
  for (int j = ordered ? 0 : K - 1; j < K && j + 1 < n; ++j)
    m->topk = std::min(m->topk, s[candidates[j]] - s[candidates[j + 1]]);
  return {candidates.begin(), candidates.begin() + K};
}

// p[N,E] from logits z[N,E] in double: softmax or, under rule.sigmoid, sigmoid per element.
std::vector<double> scores(const std::vector<double>& z, int N, int E, const RouterRule& rule) {
  std::vector<double> p(z.size());
  for (int n = 0; n < N; ++n) {
    const double* zn = &z[static_cast<size_t>(n) * E];
    double* pn = &p[static_cast<size_t>(n) * E];
    const double zmax = *std::max_element(zn, zn + E);
    double sum = 0.0;
    for (int i = 0; i < E; ++i) sum += std::exp(zn[i] - zmax);
    for (int i = 0; i < E; ++i)
      pn[i] = rule.sigmoid ? 1.0 / (1.0 + std::exp(-zn[i])) : std::exp(zn[i] - zmax) / sum;
  }
  return p;
}

// The top-k [N,K] of every token of p[N,E] with bias[E] (empty: none); updates the margins.
std::vector<int32_t> route_all(const std::vector<double>& p, const std::vector<float>& bias, int N,
                               int E, int K, const RouterRule& rule, bool ordered, Margins* m) {
  std::vector<int32_t> topk;
  std::vector<double> s(E);
  for (int n = 0; n < N; ++n) {
    for (int i = 0; i < E; ++i)
      s[i] = p[static_cast<size_t>(n) * E + i] + (bias.empty() ? 0.0 : bias[i]);
    for (int e : route_token(s, K, rule, ordered, m)) topk.push_back(e);
  }
  return topk;
}

// Capacity (SPEC section 1): each expert selected by more than cap slots keeps the cap of highest
// p. The margin: p of its last kept slot minus p of its first dropped one.
void capacity_margin(const std::vector<double>& p, const std::vector<int32_t>& topk, int N, int E,
                     int K, int64_t cap, Margins* m) {
  for (int e = 0; e < E; ++e) {
    std::vector<double> ps;
    for (int q = 0; q < N * K; ++q)
      if (topk[q] == e) ps.push_back(p[static_cast<size_t>(q / K) * E + e]);
    if (static_cast<int64_t>(ps.size()) <= cap) continue;
    std::sort(ps.begin(), ps.end(), std::greater<>());
    m->capacity = std::min(m->capacity, ps[cap - 1] - ps[cap]);
  }
}

void report(const std::string& what, const Margins& m) {
  std::printf("margin %-58s top-k %.3g  groups %.3g  capacity %.3g\n", what.c_str(), m.topk,
              m.groups, m.capacity);
  EXPECT_GE(m.min(), kMinMargin) << what << ": a near-tie the GPU's fp32 rounding could flip";
}

// The measurement itself, on hand-made scores: a group gap, the top-k gaps inside the kept
// group (in order, and only at the K-th where the order does not count) and a capacity gap.
TEST(GpuTestMargins, MeasuresHandMadeGaps) {
  Margins m;
  const std::vector<int> sel = route_token({0.30, 0.20, 0.26, 0.24 + 3e-6, 0.10, 0.05}, 2,
                                           RouterRule{.groups = 3, .groups_topk = 1}, true, &m);
  EXPECT_EQ(sel, (std::vector<int>{2, 3}));
  EXPECT_NEAR(m.groups, 3e-6, 1e-12);  // group 1 (0.50 + 3e-6) against group 0 (0.50)
  EXPECT_NEAR(m.topk, 0.02 - 3e-6, 1e-12);
  Margins plain;
  route_token({0.1, 0.5, 0.45, 0.44}, 2, RouterRule{}, false, &plain);
  EXPECT_NEAR(plain.topk, 0.01, 1e-12);  // the 0.5 - 0.45 gap above it does not count
  EXPECT_EQ(plain.groups, kInf);
  Margins c;  // two tokens (p of 2 experts each) both on expert 0, which keeps 1
  capacity_margin({0.4, 0.6, 0.4 + 2e-6, 0.6}, {0, 0}, 2, 2, 1, 1, &c);
  EXPECT_NEAR(c.capacity, 2e-6, 1e-12);
}

// Shapes/Router.* and Rules/RouterVariants.*: the kernel's top-k against cpu::router_forward,
// in order.
void check_router_case(const std::string& what, const gputest::RouterInputs& in, bool with_bias,
                       int N, int E, int K, const RouterRule& rule) {
  const std::vector<float> bias = with_bias ? in.bias : std::vector<float>{};
  std::vector<float> probs(N * E), lse(N), gates(N * K);
  std::vector<int32_t> cpu_topk(N * K);
  cpu::router_forward(probs.data(), lse.data(), cpu_topk.data(), gates.data(), in.logits.data(),
                      bias.empty() ? nullptr : bias.data(), N, E, K, rule);
  Margins m;
  const std::vector<double> z(in.logits.begin(), in.logits.end());
  const auto topk = route_all(scores(z, N, E, rule), bias, N, E, K, rule, true, &m);
  EXPECT_EQ(topk, cpu_topk) << what << ": the margins are not those of the CPU's selection";
  report(what, m);
}

TEST(GpuTestMargins, RouterKernelCases) {
  for (const gputest::RouterCase& c : gputest::kRouterCases)
    check_router_case("Shapes/Router N" + std::to_string(c.N) + "_E" + std::to_string(c.E) + "_K" +
                          std::to_string(c.K) + (c.norm_topk ? "_norm" : "_raw") +
                          (c.with_bias ? "_bias" : ""),
                      gputest::router_case_inputs(c), c.with_bias, c.N, c.E, c.K,
                      RouterRule{.norm_topk = c.norm_topk});
  for (const gputest::VariantCase& c : gputest::kVariants)
    check_router_case(std::string("Rules/RouterVariants ") + c.name, gputest::variant_inputs(c),
                      c.with_bias, c.N, c.E, c.K, c.rule);
}

// bf16 round to nearest even, as cuda_bf16.h's __float2bfloat16_rn for finite values (what a
// bf16 GPU tensor holds; gputest::representable<bf16> on the GPU side).
std::vector<float> round_bf16(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t b;
    std::memcpy(&b, &x[i], 4);
    b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    std::memcpy(&y[i], &b, 4);
  }
  return y;
}
std::vector<float> unrounded(const std::vector<float>& x) {
  return x;
}

// A layer case: the routing counts (selected before, kept after capacity) against the CPU
// MoeLayer<float>; only the set of experts per token counts, and which slots a full expert keeps.
void check_layer_case(const std::string& what, const MoeDims& d, const gputest::MoeWeightsHost& w,
                      const gputest::MoeBatch& b) {
  const int B = gputest::kMoeCaseB, T_ = gputest::kMoeCaseT, N = B * T_, C = d.C, E = d.E, K = d.K;
  std::vector<double> z(static_cast<size_t>(N) * E, 0.0);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int e = 0; e < E; ++e)
        z[static_cast<size_t>(n) * E + e] +=
            static_cast<double>(b.m[n * C + c]) * w.router[c * E + e];
  const RouterRule rule = d.router_rule();
  const std::vector<double> p = scores(z, N, E, rule);
  Margins m;
  const auto topk = route_all(p, w.bias, N, E, K, rule, false, &m);
  const int64_t cap = moe_expert_capacity(d, N);
  capacity_margin(p, topk, N, E, K, cap, &m);

  MoeLayer<float> layer(d);
  MoeStats stats;
  layer.route(b.m.data(), B, T_, w.router.data(), w.bias.data(), LossScale{1.0, 1.0}, &stats);
  const SlotRouting cpu = layer.slot_routing();
  std::vector<int32_t> kept = topk;  // the kept slots by SPEC's rule, from the double p
  for (int e = 0; e < E; ++e) {
    std::vector<int> slots;
    for (int q = 0; q < N * K; ++q)
      if (topk[q] == e) slots.push_back(q);
    std::stable_sort(slots.begin(), slots.end(), [&](int a, int c) {
      return p[static_cast<size_t>(a / K) * E + e] > p[static_cast<size_t>(c / K) * E + e];
    });
    for (size_t r = static_cast<size_t>(std::min<int64_t>(cap, slots.size())); r < slots.size();
         ++r)
      kept[slots[r]] = -1;
  }
  EXPECT_EQ(topk, cpu.selected) << what << ": the margins are not those of the CPU's selection";
  EXPECT_EQ(kept, cpu.kept) << what << ": the margins are not those of the CPU's capacity cut";
  if (d.has_capacity) {
    EXPECT_GT(stats.dropped, 0) << what << ": the capacity does not bind";
  }
  report(what, m);
}

std::string layer_case_name(const gputest::MoeCase& c, bool bf16) {
  return std::string(bf16 ? "bf16" : "fp32") + " S" + std::to_string(c.S) +
         (c.capacity_factor > 0 ? " capacity" : "") + (c.sigmoid ? " sigmoid" : "") +
         (c.route_groups > 1 ? " groups" : "");
}

TEST(GpuTestMargins, CudaMoeLayerCases) {
  auto run = [](const std::string& test, const gputest::MoeCase& c, bool bf16) {
    const gputest::RoundFn round = bf16 ? &round_bf16 : &unrounded;
    const MoeDims d = gputest::moe_case_dims(c);
    const auto w = gputest::random_moe_weights(d, gputest::kMoeCaseWeightSeed, round);
    const auto b = gputest::random_moe_batch(d, gputest::kMoeCaseB * gputest::kMoeCaseT,
                                             gputest::kMoeCaseBatchSeed, round);
    check_layer_case("CudaMoeLayer." + test + " " + layer_case_name(c, bf16), d, w, b);
  };
  for (const auto& c : gputest::moe_fp32_cases()) run("MatchesCpuFp32", c, false);
  for (const auto& c : gputest::moe_bf16_cases()) run("MatchesCpuBf16", c, true);
  for (const auto& c : gputest::moe_variant_cases())
    for (bool bf16 : {false, true}) run("RouterVariantsMatchCpu", c, bf16);
}

TEST(GpuTestMargins, MoeExchangeCases) {
  for (double capacity : gputest::kExchangeCapacityFactors)
    for (bool bf16 : {false, true})
      for (int q : {0, 1}) {  // rank q's micro-batch (np = 1 and 2)
        const gputest::RoundFn round = bf16 ? &round_bf16 : &unrounded;
        const MoeDims d = gputest::exchange_case_dims(1, capacity);
        const auto w = gputest::random_moe_weights(d, gputest::kExchangeWeightSeed, round);
        const auto b =
            gputest::exchange_batch(d, gputest::kMoeCaseB * gputest::kMoeCaseT, q, round);
        check_layer_case(std::string("MoeExchange ") + (bf16 ? "bf16" : "fp32") +
                             (capacity > 0 ? " capacity" : " dropless") + " rank " +
                             std::to_string(q),
                         d, w, b);
      }
}

// CudaModel.TenStepsMatchCpuFp32Options "router-bias updates": every step's selected counts,
// along the CPU's own 10 steps (AdamW, then the bias sign rule), as that test trains.
TEST(GpuTestMargins, CudaModelRouterBiasSteps) {
  const Config cfg = gputest::with_bias_updates(gputest::tiny_config(Precision::kFp32, 1));
  const int B = static_cast<int>(cfg.train.global_batch), L = static_cast<int>(cfg.model.n_layers),
            E = static_cast<int>(cfg.moe.num_experts), K = static_cast<int>(cfg.moe.top_k);
  const LossScale scale = global_batch_scale(cfg);
  Model<float> cpu(cfg);
  init_params(cpu.params.data(), cpu.table(), cfg.run.seed);
  AdamW opt(cpu.table(), cfg.train.weight_decay);
  Margins m;
  for (int step = 0; step < 10; ++step) {
    const auto tokens = gputest::batch_tokens(cfg, step);
    std::vector<MoeStats> stats;
    cpu.zero_grads();
    cpu.forward(tokens.data(), B, scale, &stats);
    cpu.backward();
    for (int l = 0; l < L; ++l) {
      const MoeLayer<float>& layer = cpu.moe_layer(l);
      const int N = layer.num_tokens();
      const float* bias = cpu.param(layer_param_name(l, "moe/bias"));
      const std::vector<double> p(layer.probs(), layer.probs() + static_cast<size_t>(N) * E);
      const auto topk = route_all(p, std::vector<float>(bias, bias + E), N, E, K,
                                  RouterRule{.norm_topk = cfg.moe.norm_topk}, false, &m);
      EXPECT_EQ(topk, layer.slot_routing().selected) << "step " << step << " layer " << l;
    }
    const double norm = global_grad_norm(cpu.grads.data(), cpu.grads.size());
    opt.step(cpu.params.data(), cpu.grads.data(), learning_rate(cfg.train, step),
             clip_factor(norm, cfg.train.grad_clip));
    for (int l = 0; l < L; ++l)
      update_router_bias(cpu.param(layer_param_name(l, "moe/bias")), stats[l].selected.data(), E,
                         cfg.moe.bias_update_rate);
  }
  report("CudaModel router-bias updates, 10 steps", m);
}

// Variants/CudaDecoding.*: the greedy token of every step, from the CPU Decoder's logits.
TEST(GpuTestMargins, CudaDecodingGreedySteps) {
  for (const test::DecoderVariant& v : test::decoder_variants()) {
    const Config cfg = test::tiny_decoder_config(v.overrides);
    Decoder dec(cfg, test::decoder_weights(cfg, v.bias));
    const std::vector<int32_t> prompt = test::greedy_prompt();
    const std::vector<float>* logits = &dec.feed(prompt.data(), static_cast<int>(prompt.size()));
    double margin = kInf;
    for (int step = 0; step < test::kGreedySteps; ++step) {
      std::vector<double> row(logits->begin(), logits->end());
      double scale = 0.0;
      for (double x : row) scale = std::max(scale, std::fabs(x));
      const std::vector<int> order = ranked(row);
      margin = std::min(margin, (row[order[0]] - row[order[1]]) / scale);
      const int32_t next = order[0];
      logits = &dec.feed(&next, 1);
    }
    std::printf("margin %-58s greedy (relative) %.3g\n",
                (std::string("Variants/CudaDecoding ") + v.name).c_str(), margin);
    EXPECT_GE(margin, kMinMargin) << v.name << ": a near-tie the GPU's fp32 rounding could flip";
  }
}

}  // namespace
}  // namespace sy

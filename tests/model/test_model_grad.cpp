// Gradient check of the whole model (embedding -> L x (attention, MoE) -> final norm -> head ->
// cross-entropy + aux + z): Model<double>::backward against central finite differences of
// Model<double>::forward's weighted loss, for every parameter element; then Model<float>'s
// gradients against the double ones. Covers tied and untied heads, shared experts, capacity
// dropping and norm_topk off. Also: the micro-batches' loss weights sum to the global batch's
// means.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/grad_check.h"
#include "src/config/config.h"
#include "src/model/init.h"
#include "src/model/model.h"

namespace sy {
namespace {

struct ModelCase {
  std::string name;
  std::vector<std::string> overrides;
  bool expect_drops = false;
};
void PrintTo(const ModelCase& c, std::ostream* os) {
  *os << c.name;
}

// Small enough that finite differences over every parameter (~2k) take well under a second.
Config small_model(const std::vector<std::string>& extra) {
  std::vector<std::string> o = {
      "model.vocab_size=13",    "model.d_model=8",      "model.n_layers=2", "model.n_heads=2",
      "model.seq_len=5",        "moe.num_experts=4",    "moe.top_k=2",      "moe.ffn_hidden=6",
      "moe.aux_loss_coeff=0.1", "moe.z_loss_coeff=0.02"};
  o.insert(o.end(), extra.begin(), extra.end());
  return parse_config("data: {path: unused.h5}\n", o, "test");
}

class ModelGrad : public ::testing::TestWithParam<ModelCase> {};

TEST_P(ModelGrad, MatchesFiniteDifferencesAndFloat) {
  const ModelCase& c = GetParam();
  const Config cfg = small_model(c.overrides);
  const int B = 2, T = static_cast<int>(cfg.model.seq_len);
  const int V = static_cast<int>(cfg.model.vocab_size);
  const LossScale s{1.0 / (B * T), 1.0 / B};

  std::mt19937 rng(7);
  std::vector<int32_t> tokens(static_cast<size_t>(B) * (T + 1));
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % static_cast<unsigned>(V));

  Model<double> md(cfg);
  init_params(md.params.data(), md.table(), cfg.run.seed);
  // The SPEC init (std 0.02) makes every term tiny; larger weights exercise the nonlinearities
  // and give the router clear (non-tied) preferences. Gains away from 1, each its own, so that
  // one gain used in another's place (moe_norm's in attn_norm's) changes the loss; a router bias
  // away from 0 (it moves the selection only).
  std::uniform_real_distribution<double> gain(0.5, 1.5), bias(-0.05, 0.05);
  for (const ParamSpec& p : md.table().specs())
    for (size_t i = 0; i < p.numel; ++i) {
      double& x = md.params[p.offset + i];
      if (p.kind == ParamKind::kMatrix) x *= 20.0;
      if (p.kind == ParamKind::kGain) x = gain(rng);
      if (p.kind == ParamKind::kBias) x = bias(rng);
    }

  std::vector<MoeStats> stats;
  const LossParts l0 = md.forward(tokens.data(), B, s, &stats);
  int64_t dropped = 0;
  for (const auto& st : stats) dropped += st.dropped;
  if (c.expect_drops) {
    EXPECT_GT(dropped, 0);
  } else {
    EXPECT_EQ(dropped, 0);
  }
  EXPECT_GT(l0.aux, 0.0);
  EXPECT_GT(l0.z, 0.0);
  md.zero_grads();
  md.backward();

  auto loss = [&] { return md.forward(tokens.data(), B, s).total(); };
  const std::vector<double> fd = test::fd_gradient(loss, md.params);
  for (const ParamSpec& p : md.table().specs()) {
    const auto first = static_cast<std::ptrdiff_t>(p.offset);
    const auto last = first + static_cast<std::ptrdiff_t>(p.numel);
    const std::vector<double> g(md.grads.begin() + first, md.grads.begin() + last);
    const std::vector<double> f(fd.begin() + first, fd.begin() + last);
    if (p.kind == ParamKind::kBias) {
      // Selection has no gradient: the bias never gets one, and the loss is flat in it.
      for (size_t i = 0; i < p.numel; ++i) {
        EXPECT_EQ(g[i], 0.0) << p.name;
        EXPECT_NEAR(f[i], 0.0, 1e-9) << p.name;
      }
      continue;
    }
    EXPECT_LE(test::rel_error(g, f), 1e-6) << p.name;
    // Every trained tensor moves the loss: one the model never reads (a gain wired to the wrong
    // layer) has 0 for both gradients, which rel_error passes.
    EXPECT_GT(std::sqrt(test::dot(f, f)), 1e-8) << p.name << " does not change the loss";
  }

  // The float path from the same weights (rounded once) against the double gradients.
  Model<float> mf(cfg);
  mf.params = test::convert<float>(md.params);
  std::vector<MoeStats> stats_f;
  const LossParts lf = mf.forward(tokens.data(), B, s, &stats_f);
  for (size_t l = 0; l < stats.size(); ++l)
    EXPECT_EQ(stats_f[l].kept, stats[l].kept) << "float and double must route alike, layer " << l;
  EXPECT_NEAR(lf.total(), l0.total(), 1e-5 * l0.total());
  mf.zero_grads();
  mf.backward();
  for (const ParamSpec& p : md.table().specs()) {
    if (p.kind == ParamKind::kBias) continue;
    const auto first = static_cast<std::ptrdiff_t>(p.offset);
    const auto last = first + static_cast<std::ptrdiff_t>(p.numel);
    const std::vector<double> g(md.grads.begin() + first, md.grads.begin() + last);
    const std::vector<float> gf(mf.grads.begin() + first, mf.grads.begin() + last);
    EXPECT_LE(test::rel_error(gf, g), 1e-3) << "float " << p.name;
  }
}

// global_batch_scale (SPEC sections 1 and 3): summed over the micro-batches of a global batch,
// the weighted losses are lm and z as means over all its tokens and aux as the mean of aux_G over
// its balance groups (sequences, or micro-batches with aux_loss_scope micro_batch). The reference
// takes each group's aux_G from a forward of that group alone with weight 1, and the per-token
// terms from one forward of the whole batch.
TEST(ModelLossScale, MicroBatchesSumToTheGlobalBatchMeans) {
  const int GB = 4, MB = 2;
  for (const std::string scope : {"sequence", "micro_batch"}) {
    const Config cfg =
        small_model({"moe.aux_loss_scope=" + scope, "train.global_batch=4", "train.micro_batch=2"});
    const int T = static_cast<int>(cfg.model.seq_len), V = static_cast<int>(cfg.model.vocab_size);
    std::mt19937 rng(3);
    std::vector<int32_t> tokens(static_cast<size_t>(GB) * (T + 1));
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % static_cast<unsigned>(V));
    Model<double> m(cfg);
    init_params(m.params.data(), m.table(), cfg.run.seed);
    for (const ParamSpec& p : m.table().specs())  // clear routing preferences, as above
      if (p.kind == ParamKind::kMatrix)
        for (size_t i = 0; i < p.numel; ++i) m.params[p.offset + i] *= 20.0;
    auto seqs = [&](int first) { return tokens.data() + static_cast<size_t>(first) * (T + 1); };

    const LossScale s = global_batch_scale(cfg);
    LossParts sum;
    for (int b = 0; b < GB; b += MB) sum += m.forward(seqs(b), MB, s);

    const LossParts whole = m.forward(seqs(0), GB, LossScale{1.0 / (GB * T), 1.0});
    EXPECT_NEAR(sum.lm, whole.lm, 1e-12 * whole.lm) << scope;
    EXPECT_NEAR(sum.z, whole.z, 1e-12 * whole.z) << scope;
    const int group = scope == "sequence" ? 1 : MB;  // sequences per balance group
    double aux = 0.0;
    for (int b = 0; b < GB; b += group) aux += m.forward(seqs(b), group, LossScale{1.0, 1.0}).aux;
    aux /= GB / group;
    EXPECT_GT(aux, 0.0);
    EXPECT_NEAR(sum.aux, aux, 1e-12 * aux) << scope;
  }
}

// A global batch near 2^63 / seq_len: global_batch * seq_len overflowed int64 (undefined; here
// it wrapped to 0 and the token weight was 1/0 = inf; QA under UBSan). 1/(GB T) in double.
TEST(ModelLossScale, AGlobalBatchPastInt64TokensKeepsAFiniteWeight) {
  Config cfg;
  cfg.model.seq_len = 32;
  cfg.train.global_batch = int64_t{1} << 62;
  cfg.train.micro_batch = 1;
  const LossScale s = global_batch_scale(cfg);
  EXPECT_DOUBLE_EQ(s.token_weight, 1.0 / (std::ldexp(1.0, 62) * 32.0));
}

// lm_loss by SPEC section 1 computed here: with every block's weights zero, attention and the MoE
// add nothing (x_out = Emb[token]), so the loss is the mean over all B*T positions of the
// cross-entropy of RMSNorm(Emb[tokens[t]], g_final) @ Head^T against the NEXT token tokens[t+1]
// -- the last position's target is the window's extra token T. Tied and untied heads, with the
// weight global_batch_scale gives a global batch of one micro-batch. A forward that predicted
// the current token, dropped a position or divided by anything but B*T fails it; the gradient
// checks above cannot see such a change (backward follows the forward's targets).
TEST(ModelLossByHand, ZeroBlocksGiveTheNextTokenCrossEntropyOfTheEmbedding) {
  for (const bool tied : {true, false}) {
    const Config cfg =
        small_model({"train.global_batch=2", "train.micro_batch=2",
                     tied ? "model.tie_embeddings=true" : "model.tie_embeddings=false"});
    const int B = 2, T = static_cast<int>(cfg.model.seq_len),
              C = static_cast<int>(cfg.model.d_model), V = static_cast<int>(cfg.model.vocab_size);
    Model<double> m(cfg);
    std::fill(m.params.begin(), m.params.end(), 0.0);
    std::mt19937 rng(11);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    auto fill = [&](const std::string& name, double lo) {
      const ParamSpec& p = m.table().at(name);
      for (size_t i = 0; i < p.numel; ++i) m.params[p.offset + i] = lo + u(rng);
    };
    fill("model/embed", 0.0);
    if (!tied) fill("model/head", 0.0);
    fill("model/final_norm", 1.5);  // gains in (0.5, 2.5)
    std::vector<int32_t> tokens(static_cast<size_t>(B) * (T + 1));
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % static_cast<unsigned>(V));

    const double* emb = m.params.data() + m.table().at("model/embed").offset;
    const double* head = m.params.data() + m.table().at(tied ? "model/embed" : "model/head").offset;
    const double* g = m.params.data() + m.table().at("model/final_norm").offset;
    double sum = 0.0;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const double* x = emb + static_cast<size_t>(tokens[b * (T + 1) + t]) * C;
        double ms = 0.0;
        for (int c = 0; c < C; ++c) ms += x[c] * x[c] / C;
        const double r = 1.0 / std::sqrt(ms + cfg.model.norm_eps);
        std::vector<double> logit(static_cast<size_t>(V));
        for (int v = 0; v < V; ++v)
          for (int c = 0; c < C; ++c) logit[v] += x[c] * r * g[c] * head[v * C + c];
        double z = 0.0;
        for (double l : logit) z += std::exp(l);
        sum += std::log(z) - logit[static_cast<size_t>(tokens[b * (T + 1) + t + 1])];
      }
    const LossParts got = m.forward(tokens.data(), B, global_batch_scale(cfg));
    EXPECT_NEAR(got.lm, sum / (B * T), 1e-12) << (tied ? "tied" : "untied");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, ModelGrad,
    ::testing::Values(ModelCase{"tied_dropless", {}},
                      ModelCase{"untied_head", {"model.tie_embeddings=false"}},
                      ModelCase{"shared_experts", {"moe.shared_experts=1"}},
                      ModelCase{"no_norm_topk_k1", {"moe.norm_topk=false", "moe.top_k=1"}},
                      ModelCase{"capacity_drops", {"moe.capacity_factor=0.5"}, true},
                      ModelCase{"micro_batch_aux_untied",
                                {"moe.aux_loss_scope=micro_batch", "model.tie_embeddings=false"}}),
    [](const ::testing::TestParamInfo<ModelCase>& p) { return p.param.name; });

}  // namespace
}  // namespace sy

// Hand-computed and reference cases of the MoE layer: aux and z losses worked out by hand,
// capacity decisions that must keep known assignments, top-k ties, the bias, the forward
// against a naive per-token loop, the stage API composed by hand, and run-to-run determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/grad_check.h"
#include "kernels/cpu/moe_ops.h"
#include "src/model/moe.h"
#include "test_moe_util.h"

namespace sy {
namespace {

using test::MoeParams;

// C == E with router = identity, so the router logits of a token are its m row.
MoeDims identity_router_dims(int E, int K) {
  MoeDims d;
  d.C = E;
  d.E = E;
  d.K = K;
  d.F = 3;
  d.aux_coeff = 0.1;
  d.z_coeff = 0.01;
  return d;
}

MoeParams<double> identity_router_params(const MoeDims& d, std::mt19937& rng) {
  MoeParams<double> w = test::random_params(d, rng);
  std::fill(w.router.begin(), w.router.end(), 0.0);
  for (int i = 0; i < d.E; ++i) w.router[i * d.E + i] = 1.0;
  return w;
}

std::vector<int32_t> rows_of(const MoeLayer<double>& layer) {
  return {layer.row_token(), layer.row_token() + layer.num_rows()};
}
std::vector<int32_t> counts_of(const MoeLayer<double>& layer) {
  return {layer.expert_counts(), layer.expert_counts() + layer.dims().E};
}

// Two sequences of two tokens, E = 3, K = 1, router = identity:
//   m = z rows (2,0,0) (0,1,0) | (0,0,1) (1,0,0)  -> experts 0, 1 | 2, 0
TEST(MoeHand, AuxAndZLoss) {
  const double e = std::exp(1.0), e2 = std::exp(2.0);
  // softmax of (2,0,0): (a, b, b); of a one-hot 1 row: c on the hot index, dd elsewhere.
  const double a = e2 / (e2 + 2.0), b = 1.0 / (e2 + 2.0);  // 0.786986, 0.106507
  const double c = e / (e + 2.0), dd = 1.0 / (e + 2.0);    // 0.576117, 0.211942
  const double alpha = 0.1, beta = 0.01;
  const LossScale s{0.25, 0.5};
  const std::vector<double> m = {2, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0};

  // Sequence scope. G0 = tokens 0,1: f = (1/2, 1/2, 0), P0 = (a+dd)/2, P1 = (b+c)/2.
  //                 G1 = tokens 2,3: f = (1/2, 0, 1/2), P0 = (dd+c)/2, P2 = (c+dd)/2.
  const double aux0 = alpha * 3 * (0.5 * (a + dd) / 2 + 0.5 * (b + c) / 2);
  const double aux1 = alpha * 3 * (0.5 * (dd + c) / 2 + 0.5 * (c + dd) / 2);
  const double want_seq = s.group_weight * (aux0 + aux1);  // 0.1221626
  // Micro-batch scope: f = (2/4, 1/4, 1/4), P_i = mean of p_i over the four tokens.
  const double P0 = (a + dd + dd + c) / 4, P1 = (b + c + dd + dd) / 4, P2 = (b + dd + c + dd) / 4;
  const double want_mb =
      s.group_weight * alpha * 3 * (0.5 * P0 + 0.25 * P1 + 0.25 * P2);  // 0.0542530
  // z: lse(2,0,0) = log(e^2 + 2), lse of a one-hot 1 row = log(e + 2).
  const double l2 = std::log(e2 + 2.0), l1 = std::log(e + 2.0);
  const double want_z = beta * s.token_weight * (l2 * l2 + 3 * l1 * l1);  // 0.0305913

  for (AuxScope scope : {AuxScope::kSequence, AuxScope::kMicroBatch}) {
    MoeDims d = identity_router_dims(3, 1);
    d.aux_coeff = alpha;
    d.z_coeff = beta;
    d.aux_scope = scope;
    std::mt19937 rng(1);
    MoeParams<double> w = identity_router_params(d, rng);
    MoeLayer<double> layer(d);
    std::vector<double> out(m.size());
    MoeStats st;
    const MoeLoss l = layer.forward(out.data(), m.data(), 2, 2, w.view(), s, &st);
    EXPECT_NEAR(l.aux, scope == AuxScope::kSequence ? want_seq : want_mb, 1e-14);
    EXPECT_NEAR(l.z, want_z, 1e-14);
    EXPECT_EQ(st.selected, (std::vector<int64_t>{2, 1, 1}));
    EXPECT_EQ(st.dropped, 0);
  }
}

// E = 2, K = 1, one sequence of 4 tokens all choosing expert 0, capacity ceil(1.0*4*1/2) = 2.
// p0 = sigmoid(z0 - z1): token 0: s(1) = .731, token 1: s(2) = .881, token 2: s(1) = .731,
// token 3: s(.5) = .622. Expert 0 keeps token 1 (highest) and token 0 (ties token 2, lower
// index); tokens 2 and 3 are dropped and get exactly zero output (no shared experts).
TEST(MoeHand, CapacityKeepsHighestProbabilityTiesToLowerToken) {
  MoeDims d = identity_router_dims(2, 1);
  d.has_capacity = true;
  d.capacity_factor = 1.0;
  EXPECT_EQ(moe_expert_capacity(d, 4), 2);
  std::mt19937 rng(2);
  MoeParams<double> w = identity_router_params(d, rng);
  const std::vector<double> m = {1, 0, 2, 0, 1, 0, 0.5, 0};
  MoeLayer<double> layer(d);
  std::vector<double> out(m.size());
  MoeStats st;
  const MoeLoss l = layer.forward(out.data(), m.data(), 1, 4, w.view(), LossScale{}, &st);
  // aux counts the assignments before capacity: f = (4/4, 0), not (2/4, 0).
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  const double P0 = (sigmoid(1) + sigmoid(2) + sigmoid(1) + sigmoid(0.5)) / 4;
  EXPECT_NEAR(l.aux, d.aux_coeff * 2 * 1.0 * P0, 1e-15);
  EXPECT_EQ(st.selected, (std::vector<int64_t>{4, 0}));
  EXPECT_EQ(st.kept, (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(st.dropped, 2);
  EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{2, 0}));
  EXPECT_EQ(rows_of(layer), (std::vector<int32_t>{0, 1}));  // inside an expert: token order
  // Slot by slot (what the GPU tests compare): every token selected expert 0, tokens 2 and 3
  // were dropped.
  const SlotRouting slots = layer.slot_routing();
  EXPECT_EQ(slots.selected, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(slots.kept, (std::vector<int32_t>{0, 0, -1, -1}));

  std::vector<double> want(m.size(), 0.0);
  for (int n : {0, 1})  // gate 1 (K = 1, norm_topk)
    test::naive_swiglu_add(&want[n * 2], &m[n * 2], w.w1.data(), w.w3.data(), w.w2.data(), 2, d.F,
                           1.0);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-14) << i;
  EXPECT_NE(want[0], 0.0);
  EXPECT_EQ(out[4], 0.0);
  EXPECT_EQ(out[6], 0.0);
}

// E = 3, K = 2, 2 tokens, capacity ceil(0.75*2*2/3) = 1. z0 = (1,0,-2), z1 = (2,0,-2): both
// select experts {0,1}. Expert 0 keeps token 1 (p0 higher), expert 1 keeps token 0 (p1 higher).
// The surviving gate keeps its normalisation over both selected experts.
TEST(MoeHand, CapacityDropKeepsGateNormalisation) {
  MoeDims d = identity_router_dims(3, 2);
  d.has_capacity = true;
  d.capacity_factor = 0.75;
  EXPECT_EQ(moe_expert_capacity(d, 2), 1);
  std::mt19937 rng(3);
  MoeParams<double> w = identity_router_params(d, rng);
  const std::vector<double> m = {1, 0, -2, 2, 0, -2};
  MoeLayer<double> layer(d);
  std::vector<double> out(m.size());
  MoeStats st;
  layer.forward(out.data(), m.data(), 1, 2, w.view(), LossScale{}, &st);
  EXPECT_EQ(st.dropped, 2);
  EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{1, 1, 0}));
  EXPECT_EQ(rows_of(layer), (std::vector<int32_t>{1, 0}));

  const double e = std::exp(1.0), e2 = std::exp(2.0);
  const double gate_t0_e1 = 1.0 / (e + 1.0);  // p1 / (p0 + p1) of token 0
  const double gate_t1_e0 = e2 / (e2 + 1.0);  // p0 / (p0 + p1) of token 1
  const size_t CF = static_cast<size_t>(d.C) * d.F;
  std::vector<double> want(m.size(), 0.0);
  test::naive_swiglu_add(&want[0], &m[0], &w.w1[CF], &w.w3[CF], &w.w2[CF], d.C, d.F, gate_t0_e1);
  test::naive_swiglu_add(&want[3], &m[3], &w.w1[0], &w.w3[0], &w.w2[0], d.C, d.F, gate_t1_e0);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-14) << i;
  EXPECT_NEAR(layer.row_gate()[0], gate_t1_e0, 1e-15);
  EXPECT_NEAR(layer.row_gate()[1], gate_t0_e1, 1e-15);
}

TEST(MoeHand, CapacityOfDecimalFactors) {
  MoeDims d = identity_router_dims(4, 2);
  d.has_capacity = true;
  d.capacity_factor = 0.5;
  EXPECT_EQ(moe_expert_capacity(d, 8), 2);  // 0.5*8*2/4 = 2
  d.capacity_factor = 1.25;
  EXPECT_EQ(moe_expert_capacity(d, 7), 5);  // 4.375 -> 5
  d.E = 11;
  d.K = 1;
  d.capacity_factor = 1.1;
  EXPECT_EQ(moe_expert_capacity(d, 10), 1);  // 1.1*10/11 = 1 (not 1.0000000000000002 -> 2)
  // Past every token once, an expert's capacity is the tokens (no drops): a factor of 5e17
  // overflowed int64 and dropped every assignment.
  for (double huge : {11.0, 5e17, 1e300}) {
    d.capacity_factor = huge;
    EXPECT_EQ(moe_expert_capacity(d, 10), 10) << huge;
  }
  // Any factor > 0 gives an expert at least one slot (SPEC 1's ceil): within 1e-9 of 0 was
  // snapped to 0, and every assignment was dropped.
  for (double tiny : {1e-12, 5e-10, 1e-9, 1e-3}) {
    d.capacity_factor = tiny;
    EXPECT_EQ(moe_expert_capacity(d, 10), 1) << tiny;
  }
  d.has_capacity = false;
  EXPECT_EQ(moe_expert_capacity(d, 10), 10);
}

// Equal probabilities: the lower expert index wins.
TEST(MoeHand, TopKTiesGoToLowerExpert) {
  const std::vector<double> m = {0, 1, 1, 0, 0.5, 0.5, 0.5, 0.5, 1, 0, 1, 1};
  std::mt19937 rng(4);
  {
    MoeDims d = identity_router_dims(4, 1);
    MoeParams<double> w = identity_router_params(d, rng);
    MoeLayer<double> layer(d);
    layer.route(m.data(), 1, 3, w.router.data(), w.bias.data(), LossScale{}, nullptr);
    // token 0 -> 1 (tie 1,2), token 1 -> 0 (all tie), token 2 -> 0 (tie 0,2,3)
    EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{2, 1, 0, 0}));
    EXPECT_EQ(rows_of(layer), (std::vector<int32_t>{1, 2, 0}));
  }
  {
    MoeDims d = identity_router_dims(4, 2);
    MoeParams<double> w = identity_router_params(d, rng);
    MoeLayer<double> layer(d);
    layer.route(m.data(), 1, 3, w.router.data(), w.bias.data(), LossScale{}, nullptr);
    // token 0 -> {1,2}, token 1 -> {0,1}, token 2 -> {0,2}
    EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{2, 2, 2, 0}));
    EXPECT_EQ(rows_of(layer), (std::vector<int32_t>{1, 2, 0, 1, 0, 2}));
  }
}

// z = (1, 0.5, 0): p = (e, e^.5, 1) / (e + e^.5 + 1) = (0.506, 0.307, 0.186).
TEST(MoeHand, BiasChangesSelectionNotGates) {
  const std::vector<double> m = {1, 0.5, 0};
  const double e = std::exp(1.0), eh = std::exp(0.5), Z = e + eh + 1.0;
  std::mt19937 rng(5);
  {  // K = 1 without norm_topk: the gate is the raw p of the chosen expert
    MoeDims d = identity_router_dims(3, 1);
    d.norm_topk = false;
    MoeParams<double> w = identity_router_params(d, rng);
    MoeLayer<double> layer(d);
    layer.route(m.data(), 1, 1, w.router.data(), w.bias.data(), LossScale{}, nullptr);
    EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{1, 0, 0}));
    EXPECT_NEAR(layer.row_gate()[0], e / Z, 1e-15);
    w.bias = {0.0, 0.5, 0.0};  // p1 + 0.5 = 0.807 > 0.506
    layer.route(m.data(), 1, 1, w.router.data(), w.bias.data(), LossScale{}, nullptr);
    EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{0, 1, 0}));
    EXPECT_NEAR(layer.row_gate()[0], eh / Z, 1e-15);
  }
  {  // K = 2 with norm_topk: {0,1} -> {1,2}, gates normalised over p only
    MoeDims d = identity_router_dims(3, 2);
    MoeParams<double> w = identity_router_params(d, rng);
    MoeLayer<double> layer(d);
    layer.route(m.data(), 1, 1, w.router.data(), w.bias.data(), LossScale{}, nullptr);
    EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{1, 1, 0}));
    EXPECT_NEAR(layer.row_gate()[0], e / (e + eh), 1e-15);
    EXPECT_NEAR(layer.row_gate()[1], eh / (e + eh), 1e-15);
    w.bias = {0.0, 0.5, 0.5};  // scores (0.506, 0.807, 0.686)
    layer.route(m.data(), 1, 1, w.router.data(), w.bias.data(), LossScale{}, nullptr);
    EXPECT_EQ(counts_of(layer), (std::vector<int32_t>{0, 1, 1}));
    EXPECT_NEAR(layer.row_gate()[0], eh / (eh + 1.0), 1e-15);
    EXPECT_NEAR(layer.row_gate()[1], 1.0 / (eh + 1.0), 1e-15);
  }
}

MoeDims ref_dims(bool norm, AuxScope scope, int S) {
  MoeDims d;
  d.C = 8;
  d.E = 4;
  d.K = 2;
  d.F = 6;
  d.S = S;
  d.norm_topk = norm;
  d.aux_coeff = 0.05;
  d.z_coeff = 0.01;
  d.aux_scope = scope;
  return d;
}

TEST(MoeReference, ForwardMatchesNaivePerTokenLoop) {
  const int B = 3, T = 5, N = B * T;
  const LossScale s{1.0 / N, 1.0 / B};
  for (bool norm : {true, false})
    for (AuxScope scope : {AuxScope::kSequence, AuxScope::kMicroBatch})
      for (int S : {0, 1}) {
        const MoeDims d = ref_dims(norm, scope, S);
        std::mt19937 rng(77);
        MoeParams<double> w = test::random_params(d, rng, 2.0);
        w.bias = {0.02, -0.05, 0.1, 0.0};
        const std::vector<double> m = test::random_vector(rng, static_cast<size_t>(N) * d.C);
        std::vector<double> want, out(m.size());
        const MoeLoss lw = test::naive_moe_forward(want, m, B, T, d, w, s);
        MoeLayer<double> layer(d);
        const MoeLoss l = layer.forward(out.data(), m.data(), B, T, w.view(), s, nullptr);
        EXPECT_LE(test::rel_error(out, want), 1e-13) << norm << " " << S;
        EXPECT_NEAR(l.aux, lw.aux, 1e-14);
        EXPECT_NEAR(l.z, lw.z, 1e-14);

        MoeParams<float> wf = w.convert_to<float>();
        std::vector<float> mf = test::convert<float>(m), outf(m.size());
        MoeLayer<float> layer_f(d);
        layer_f.forward(outf.data(), mf.data(), B, T, wf.view(), s, nullptr);
        EXPECT_LE(test::rel_error(outf, want), 1e-5);
      }
}

// route -> dispatch -> experts in two blocks (as two EP ranks would run them) -> combine, and
// the backward stages likewise, against the layer's own forward/backward.
TEST(MoeStages, ExpertStageSplitAcrossBlocks) {
  MoeDims d = ref_dims(true, AuxScope::kSequence, 1);
  d.has_capacity = true;
  d.capacity_factor = 0.75;
  const int B = 2, T = 6, N = B * T, C = d.C, F = d.F;
  const LossScale s{1.0 / N, 1.0 / B};
  std::mt19937 rng(9);
  MoeParams<double> w = test::random_params(d, rng, 2.0);
  const std::vector<double> m = test::random_vector(rng, static_cast<size_t>(N) * C);
  const std::vector<double> dout = test::random_vector(rng, m.size());

  MoeLayer<double> ref(d);
  std::vector<double> want(m.size()), dm_want(m.size());
  MoeParams<double> g_want(d);
  const MoeLoss l_want = ref.forward(want.data(), m.data(), B, T, w.view(), s, nullptr);
  ref.backward(dm_want.data(), g_want.view(), dout.data(), m.data(), w.view(), s);

  MoeLayer<double> layer(d);
  const MoeLoss l = layer.route(m.data(), B, T, w.router.data(), w.bias.data(), s, nullptr);
  EXPECT_EQ(l.aux, l_want.aux);
  EXPECT_EQ(l.z, l_want.z);
  const int A = layer.num_rows();
  const int32_t* counts = layer.expert_counts();
  std::vector<double> out(m.size()), xs(static_cast<size_t>(A) * C), ys(xs.size());
  layer.shared_forward(out.data(), m.data(), w.view());
  layer.dispatch(xs.data(), m.data());
  // Block 0 = experts {0,1}, block 1 = experts {2,3}: separate activations, as on two ranks.
  const long CF = static_cast<long>(C) * F;
  const int rows0 = counts[0] + counts[1], rows1 = counts[2] + counts[3];
  ASSERT_EQ(rows0 + rows1, A);
  std::vector<double> acts(static_cast<size_t>(3 * A * F));
  double* h1 = acts.data();
  double* h3 = h1 + static_cast<long>(A) * F;
  double* h = h3 + static_cast<long>(A) * F;
  const long o1 = static_cast<long>(rows0);
  grouped_swiglu_forward(ys.data(), h1, h3, h, xs.data(), counts, 2, w.w1.data(), w.w3.data(),
                         w.w2.data(), C, F);
  grouped_swiglu_forward(ys.data() + o1 * C, h1 + o1 * F, h3 + o1 * F, h + o1 * F,
                         xs.data() + o1 * C, counts + 2, 2, w.w1.data() + 2 * CF,
                         w.w3.data() + 2 * CF, w.w2.data() + 2 * CF, C, F);
  layer.combine(out.data(), ys.data());
  EXPECT_LE(test::rel_error(out, want), 1e-14);

  std::vector<double> dys(xs.size()), dxs(xs.size()), dm(m.size());
  std::vector<double> scratch(static_cast<size_t>(2 * A * F));
  MoeParams<double> g(d);
  layer.shared_backward(dm.data(), g.view(), dout.data(), m.data(), w.view());
  layer.combine_backward(dys.data(), dout.data(), ys.data());
  grouped_swiglu_backward(dxs.data(), g.w1.data(), g.w3.data(), g.w2.data(), scratch.data(),
                          dys.data(), xs.data(), h1, h3, h, counts, 2, w.w1.data(), w.w3.data(),
                          w.w2.data(), C, F);
  grouped_swiglu_backward(dxs.data() + o1 * C, g.w1.data() + 2 * CF, g.w3.data() + 2 * CF,
                          g.w2.data() + 2 * CF, scratch.data(), dys.data() + o1 * C,
                          xs.data() + o1 * C, h1 + o1 * F, h3 + o1 * F, h + o1 * F, counts + 2, 2,
                          w.w1.data() + 2 * CF, w.w3.data() + 2 * CF, w.w2.data() + 2 * CF, C, F);
  layer.dispatch_backward(dm.data(), dxs.data());
  layer.route_backward(dm.data(), g.router.data(), m.data(), w.router.data(), s);
  EXPECT_LE(test::rel_error(dm, dm_want), 1e-14);
  auto gt = g.tensors(), gw = g_want.tensors();
  for (size_t i = 0; i < gt.size(); ++i)
    EXPECT_LE(test::rel_error(*gt[i].second, *gw[i].second), 1e-14) << gt[i].first;
}

// Bitwise identical results run to run, on a fresh layer and on a reused one (also after a
// larger micro-batch grew its buffers).
TEST(MoeDeterminism, BitwiseRepeatable) {
  MoeDims d = ref_dims(true, AuxScope::kSequence, 1);
  d.C = 32;
  d.F = 48;
  d.E = 8;
  d.has_capacity = true;
  d.capacity_factor = 1.0;
  const int T = 16;
  std::mt19937 rng(11);
  MoeParams<float> w = test::random_params(d, rng, 2.0).convert_to<float>();
  const std::vector<float> m = test::random_vector<float>(rng, static_cast<size_t>(4) * T * d.C);
  const std::vector<float> dout = test::random_vector<float>(rng, m.size());

  struct Result {
    std::vector<float> out, dm;
    MoeParams<float> g;
    MoeLoss loss;
  };
  auto run = [&](MoeLayer<float>& layer, int B) {
    const size_t NC = static_cast<size_t>(B) * T * d.C;
    Result r{std::vector<float>(NC), std::vector<float>(NC), MoeParams<float>(d), {}};
    const LossScale s{1.0 / (B * T), 1.0 / B};
    r.loss = layer.forward(r.out.data(), m.data(), B, T, w.view(), s, nullptr);
    layer.backward(r.dm.data(), r.g.view(), dout.data(), m.data(), w.view(), s);
    return r;
  };
  auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  MoeLayer<float> fresh1(d), fresh2(d), reused(d);
  Result a = run(fresh1, 2);
  Result b = run(fresh2, 2);
  run(reused, 4);
  Result c = run(reused, 2);
  for (Result* r : {&b, &c}) {
    EXPECT_TRUE(same(a.out, r->out));
    EXPECT_TRUE(same(a.dm, r->dm));
    EXPECT_EQ(a.loss.aux, r->loss.aux);
    EXPECT_EQ(a.loss.z, r->loss.z);
    auto ga = a.g.tensors();
    auto gr = r->g.tensors();
    for (size_t i = 0; i < ga.size(); ++i)
      EXPECT_TRUE(same(*ga[i].second, *gr[i].second)) << ga[i].first;
  }
}

TEST(MoeOps, SwigluStaysFiniteAtExtremes) {
  const std::vector<double> a = {-1000.0, -50.0, 0.0, 50.0, 1000.0};
  const std::vector<double> b(a.size(), 2.0), dh(a.size(), 1.0);
  std::vector<double> h(a.size()), da(a.size()), db(a.size());
  cpu::swiglu_forward(h.data(), a.data(), b.data(), static_cast<long>(a.size()));
  cpu::swiglu_backward(da.data(), db.data(), dh.data(), a.data(), b.data(),
                       static_cast<long>(a.size()));
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(std::isfinite(h[i]) && std::isfinite(da[i]) && std::isfinite(db[i])) << a[i];
  }
  EXPECT_EQ(h[0], 0.0);            // silu(-1000) * 2
  EXPECT_EQ(h[4], 2000.0);         // silu(1000) * 2
  EXPECT_EQ(da[4], 2.0);           // silu'(1000) * b
  EXPECT_NEAR(da[2], 1.0, 1e-15);  // silu'(0) = 1/2, times b = 2
}

}  // namespace
}  // namespace sy

// Gradient checks of the whole MoE layer: the analytic backward in double against central
// finite differences of L = sum(out * R) + aux + z (every weight gradient and dm), over the
// routing variants of SPEC section 1; then the float instantiation against the double one.
#include <gtest/gtest.h>

#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/grad_check.h"
#include "src/model/moe.h"
#include "test_moe_util.h"

namespace sy {
namespace {

using test::MoeParams;

struct GradCase {
  std::string name;
  MoeDims d;
  int B = 2, T = 4;
  std::vector<double> bias;   // empty = zeros
  bool expect_drops = false;  // capacity small enough that assignments must be dropped
  bool losses_only = false;   // R = 0: only aux + z drive the gradients
  bool whole_groups = false;  // K = E / route_groups, M = 1: a token takes a whole group
};
void PrintTo(const GradCase& c, std::ostream* os) {
  *os << c.name;
}

MoeDims base_dims() {
  MoeDims d;
  d.C = 8;
  d.E = 4;
  d.K = 2;
  d.F = 6;
  d.S = 0;
  d.norm_topk = true;
  // Coefficients large enough that the aux and z gradients are not lost next to the output's.
  d.aux_coeff = 0.1;
  d.z_coeff = 0.02;
  d.aux_scope = AuxScope::kSequence;
  return d;
}

std::vector<GradCase> grad_cases() {
  std::vector<GradCase> cs;
  auto add = [&](std::string name, auto&& edit) {
    GradCase c;
    c.name = std::move(name);
    c.d = base_dims();
    edit(c);
    cs.push_back(c);
  };
  add("dropless", [](GradCase&) {});
  add("no_norm_topk", [](GradCase& c) { c.d.norm_topk = false; });
  add("capacity_drops", [](GradCase& c) {
    c.d.has_capacity = true;
    c.d.capacity_factor = 0.5;  // ceil(0.5 * 8 * 2 / 4) = 2 of the 16 assignments per expert
    c.expect_drops = true;
  });
  add("capacity_drops_no_norm_micro_batch", [](GradCase& c) {
    c.d.has_capacity = true;
    c.d.capacity_factor = 0.75;  // ceil(3) = 3
    c.d.norm_topk = false;
    c.d.aux_scope = AuxScope::kMicroBatch;
    c.expect_drops = true;
  });
  add("shared_1", [](GradCase& c) { c.d.S = 1; });
  add("shared_2", [](GradCase& c) { c.d.S = 2; });
  add("k1", [](GradCase& c) { c.d.K = 1; });
  add("k1_no_norm", [](GradCase& c) {
    c.d.K = 1;
    c.d.norm_topk = false;
  });
  add("k_eq_e", [](GradCase& c) { c.d.K = c.d.E; });
  // Expert 3 can never win (p - 1 < any other p), so it also runs with zero rows.
  add("bias", [](GradCase& c) { c.bias = {0.15, -0.1, 0.05, -1.0}; });
  add("aux_micro_batch", [](GradCase& c) { c.d.aux_scope = AuxScope::kMicroBatch; });
  // Group-limited routing: 2 groups of 2, one kept; the top-2 is then a whole group.
  add("groups_2_keep_1", [](GradCase& c) {
    c.d.route_groups = 2;
    c.d.route_groups_topk = 1;
    c.whole_groups = true;
  });
  add("groups_2_keep_1_no_norm_capacity", [](GradCase& c) {
    c.d.route_groups = 2;
    c.d.route_groups_topk = 1;
    c.d.norm_topk = false;
    c.d.has_capacity = true;
    c.d.capacity_factor = 0.5;
    c.expect_drops = true;
    c.whole_groups = true;
  });
  add("groups_4_keep_2_k1", [](GradCase& c) {
    c.d.K = 1;
    c.d.route_groups = 4;
    c.d.route_groups_topk = 2;
  });
  // Sigmoid scores (no z-loss) and the gate scale.
  auto sigmoid = [](GradCase& c) {
    c.d.score = Score::kSigmoid;
    c.d.z_coeff = 0.0;
  };
  add("sigmoid", sigmoid);
  add("sigmoid_no_norm_micro_batch", [&](GradCase& c) {
    sigmoid(c);
    c.d.norm_topk = false;
    c.d.aux_scope = AuxScope::kMicroBatch;
  });
  add("sigmoid_groups_capacity_gate_scale", [&](GradCase& c) {
    sigmoid(c);
    c.d.route_groups = 2;
    c.d.route_groups_topk = 1;
    c.d.has_capacity = true;
    c.d.capacity_factor = 0.5;
    c.d.gate_scale = 2.5;
    c.expect_drops = true;
    c.whole_groups = true;
  });
  add("sigmoid_losses_only", [&](GradCase& c) {
    sigmoid(c);
    c.d.S = 1;
    c.losses_only = true;
  });
  add("gate_scale", [](GradCase& c) { c.d.gate_scale = 2.5; });
  add("gate_scale_no_norm", [](GradCase& c) {
    c.d.gate_scale = 0.4;
    c.d.norm_topk = false;
  });
  add("losses_only", [](GradCase& c) {
    c.d.S = 1;
    c.losses_only = true;
  });
  add("losses_only_micro_batch_capacity", [](GradCase& c) {
    c.d.aux_scope = AuxScope::kMicroBatch;
    c.d.has_capacity = true;
    c.d.capacity_factor = 0.5;
    c.losses_only = true;
    c.expect_drops = true;
  });
  return cs;
}

class MoeGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(MoeGrad, MatchesFiniteDifferencesAndFloat) {
  const GradCase& c = GetParam();
  const MoeDims& d = c.d;
  const int N = c.B * c.T;
  const size_t NC = static_cast<size_t>(N) * d.C;
  std::mt19937 rng(1234);
  MoeParams<double> w = test::random_params(d, rng, 1.5);
  std::vector<double> m = test::random_vector(rng, NC);
  std::vector<double> R =
      c.losses_only ? std::vector<double>(NC, 0.0) : test::random_vector(rng, NC);
  const LossScale s{0.25, 0.6};

  MoeLayer<double> layer(d);
  std::vector<double> out(NC);
  MoeStats stats;
  if (!c.bias.empty()) {
    layer.forward(out.data(), m.data(), c.B, c.T, w.view(), s, &stats);
    const std::vector<int64_t> unbiased = stats.selected;
    w.bias = c.bias;
    layer.forward(out.data(), m.data(), c.B, c.T, w.view(), s, &stats);
    EXPECT_NE(stats.selected, unbiased) << "the bias must change the selection";
    EXPECT_EQ(stats.selected[3], 0);
    EXPECT_EQ(stats.kept[3], 0);
  }

  // Analytic gradients.
  const MoeLoss l0 = layer.forward(out.data(), m.data(), c.B, c.T, w.view(), s, &stats);
  if (c.expect_drops) {
    EXPECT_GT(stats.dropped, 0);
  }
  if (!d.has_capacity) {
    EXPECT_EQ(stats.dropped, 0);
  }
  if (c.whole_groups) {
    EXPECT_EQ(stats.selected[0], stats.selected[1]);
    EXPECT_EQ(stats.selected[2], stats.selected[3]);
    EXPECT_GT(stats.selected[0] * stats.selected[2], 0) << "both groups in use";
  }
  EXPECT_GT(l0.aux, 0.0);
  if (d.score == Score::kSoftmax) {
    EXPECT_GT(l0.z, 0.0);
  } else {
    EXPECT_EQ(l0.z, 0.0) << "no z-loss under sigmoid scores";
  }
  MoeParams<double> g(d);
  std::vector<double> dm(NC, 123.0);  // (=): stale contents must not leak into the result
  layer.backward(dm.data(), g.view(), R.data(), m.data(), w.view(), s);

  auto loss = [&] {
    const MoeLoss l = layer.forward(out.data(), m.data(), c.B, c.T, w.view(), s, nullptr);
    return test::dot(out, R) + l.aux + l.z;
  };
  EXPECT_LE(test::rel_error(dm, test::fd_gradient(loss, m)), 1e-6) << "dm";
  auto wt = w.tensors();
  auto gt = g.tensors();
  for (size_t i = 0; i < wt.size(); ++i) {
    if (wt[i].second->empty()) continue;
    const std::vector<double> fd = test::fd_gradient(loss, *wt[i].second);
    EXPECT_LE(test::rel_error(*gt[i].second, fd), 1e-6) << wt[i].first;
  }

  // Float against double (same weights and inputs).
  MoeParams<float> wf = w.convert_to<float>();
  std::vector<float> mf = test::convert<float>(m), Rf = test::convert<float>(R);
  std::vector<float> outf(NC), dmf(NC);
  MoeParams<float> gf(d);
  MoeLayer<float> layer_f(d);
  MoeStats stats_f;
  const MoeLoss lf = layer_f.forward(outf.data(), mf.data(), c.B, c.T, wf.view(), s, &stats_f);
  EXPECT_EQ(stats_f.kept, stats.kept) << "float and double must route alike";
  layer_f.backward(dmf.data(), gf.view(), Rf.data(), mf.data(), wf.view(), s);
  layer.forward(out.data(), m.data(), c.B, c.T, w.view(), s, nullptr);
  EXPECT_LE(test::rel_error(outf, out), 1e-5) << "out";
  EXPECT_NEAR(lf.aux, l0.aux, 1e-5 * l0.aux);
  EXPECT_NEAR(lf.z, l0.z, 1e-5 * l0.z);
  EXPECT_LE(test::rel_error(dmf, dm), 1e-3) << "float dm";
  auto gft = gf.tensors();
  for (size_t i = 0; i < gt.size(); ++i) {
    if (gt[i].second->empty()) continue;
    EXPECT_LE(test::rel_error(*gft[i].second, *gt[i].second), 1e-3) << "float " << gt[i].first;
  }
}

INSTANTIATE_TEST_SUITE_P(Routing, MoeGrad, ::testing::ValuesIn(grad_cases()),
                         [](const ::testing::TestParamInfo<GradCase>& p) { return p.param.name; });

}  // namespace
}  // namespace sy

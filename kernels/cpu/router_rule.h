// How a router turns its logits into scores, a selection and gates (SPEC section 1): the
// options the CPU (kernels/cpu/moe_ops.h) and GPU (kernels/cuda/moe_ops.h) routers share.
// Header-only and dependency-free so both backends include it (constexpr: usable in device
// code with nvcc's --expt-relaxed-constexpr).
#pragma once

namespace sy {

// Group-limited selection keeps at most this many groups apart (a bit mask per token).
constexpr int kMaxRouteGroups = 64;

struct RouterRule {
  bool sigmoid = false;     // p_i = sigmoid(z_i) per expert; false: p = softmax(z)
  bool norm_topk = true;    // gates divided by the sum of the selected p
  double gate_scale = 1.0;  // every gate multiplied by it (after the normalisation)
  // Group-limited (node-limited) selection: the experts form `groups` contiguous groups of
  // E / groups; a token selects only from the `groups_topk` groups with the largest sum of their
  // ceil(K / groups_topk) best p + b (ties: lower group). groups = 1 (or groups_topk = groups)
  // is plain top-k.
  int groups = 1;
  int groups_topk = 1;

  // Whether selection is restricted at all (groups_topk = groups keeps every group).
  constexpr bool limits_groups() const { return groups > 1 && groups_topk < groups; }
  // Experts counted in a group's score: ceil(K / groups_topk).
  constexpr int group_score_experts(int K) const { return (K + groups_topk - 1) / groups_topk; }
  // The arithmetic SPEC section 1 requires for E experts and top-k K (groups_topk is not
  // used with one group).
  constexpr bool valid_for(int E, int K) const {
    if (!(gate_scale > 0)) return false;
    if (groups == 1) return true;
    return groups > 1 && groups <= kMaxRouteGroups && E % groups == 0 && groups_topk >= 1 &&
           groups_topk <= groups && groups_topk * (E / groups) >= K;
  }
};

}  // namespace sy

// The optimizer side of a training step (SPEC section 3): learning-rate schedule, global-norm
// gradient clipping, AdamW over the flat parameter buffer of a ParamTable, and the aux-loss-free
// router-bias update. Everything here is deterministic: same inputs, same bits.
//
// Letters: P = table.total_numel() (the flat parameter / gradient / moment buffers), E experts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/config/config.h"
#include "src/model/params.h"

namespace sy {

// The learning rate of the update of step `step` (0-based; the first update is step 0).
// W = t.warmup_steps, S = t.steps:
//   step < W:  lr * (step + 1) / W                           (linear warmup, reaches lr at W-1)
//   else:      min_lr + 0.5 (lr - min_lr) (1 + cos(pi p)),    p = (step - W) / (S - 1 - W)
// p is clamped to [0, 1], and taken as 1 when S - 1 - W <= 0 (no step left to decay over), so
// the cosine starts at lr on step W, reaches min_lr exactly on the last step S-1 and stays there
// for any step beyond. W = 0 means no warmup. Throws (SY_CHECK) on step < 0 or W < 0.
double learning_rate(const TrainConfig& t, int64_t step);

// sum of g[i]^2 over grads[0..n), accumulated in double: eight interleaved sums inside fixed
// blocks of 32768 elements, the block sums in block order (deterministic for any thread count).
// The per-rank partial of the global norm: ranks sum these before the sqrt.
double grad_sq_sum(const float* grads, size_t n);
// sqrt(grad_sq_sum(grads, n)).
double global_grad_norm(const float* grads, size_t n);
// The factor gradients are multiplied by: min(1, grad_clip / (grad_norm + 1e-6)); 1 when
// grad_clip <= 0 (no clipping). A non-finite grad_norm gives NaN, never a silent 1, so a
// non-finite gradient cannot slip through as a clean update (the trainer checks grad_norm first).
double clip_factor(double grad_norm, double grad_clip);

// AdamW with the SPEC 3 constants. Per element i, with g = grads[i] * grad_scale, t = the step
// count after increment (1 for the first update), all arithmetic in double, m, v, p stored float:
//   m   = beta1 m + (1 - beta1) g
//   v   = beta2 v + (1 - beta2) g^2
//   u   = m (1 / (1 - beta1^t)) / (sqrt(v (1 / (1 - beta2^t))) + eps)
//   p  -= lr * (u + wd * p)        kMatrix  (decoupled weight decay: wd multiplies p, not g)
//   p  -= lr * u                   kGain    (no decay)
//   kBias elements (router bias b) are never touched: not p, not m, not v (SPEC 3 sign update).
// m and v are the checkpoint's /optim/m and /optim/v in the flat table layout; step_count is
// /optim's `step` attribute. Restoring them and calling step() continues bit for bit.
class AdamW {
 public:
  static constexpr double kBeta1 = 0.9;
  static constexpr double kBeta2 = 0.95;
  static constexpr double kEps = 1e-8;

  // A run of elements of one kind: params/grads at param_offset, m/v at moment_offset.
  struct Segment {
    size_t param_offset;
    size_t moment_offset;
    size_t numel;
    ParamKind kind;
  };

  // m and v start at zero, step_count at 0. The table's layout is copied (no reference kept):
  // every parameter, moments laid out like the parameters.
  AdamW(const ParamTable& table, double weight_decay);
  // Only the given segments (e.g. this rank's ZeRO-1 share), m and v of moment_numel elements.
  AdamW(std::vector<Segment> segments, size_t moment_numel, double weight_decay);

  // params[P] (=) updated in place; grads[P] read; m, v (=) updated; step_count += 1. Returns
  // the count of elements whose new parameter, m or v is not finite in fp32 (0 normally): a
  // finite gradient can still overflow them (v of a gradient element past ~1.8e19, a huge lr),
  // and an infinite v stops its parameter for good (its update is m / inf = 0) without a sign.
  int64_t step(float* params, const float* grads, double lr, double grad_scale);

  std::vector<float>& m() { return m_; }  // [P], or [moment_numel]
  std::vector<float>& v() { return v_; }
  const std::vector<float>& m() const { return m_; }
  const std::vector<float>& v() const { return v_; }
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }
  double weight_decay() const { return weight_decay_; }

 private:
  std::vector<Segment> segments_;
  double weight_decay_;
  std::vector<float> m_, v_;
  int64_t step_count_ = 0;
};

// Aux-loss-free balancing (SPEC 3), one MoE layer: bias[E] (+=) rate * sign(mean_load - load[i]),
// mean_load = sum(load) / E, sign(0) = 0. load[E]: assignments per expert over the global batch.
// Returns the count of biases no longer finite in fp32 (a rate near FLT_MAX), 0 normally.
int64_t update_router_bias(float* bias, const int64_t* load, int E, double rate);

}  // namespace sy

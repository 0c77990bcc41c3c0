#include "src/optim/optim.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <utility>
#include <vector>

#include "src/core/error.h"

namespace sy {

double learning_rate(const TrainConfig& t, int64_t step) {
  SY_CHECK(step >= 0, "step " << step);
  SY_CHECK(t.warmup_steps >= 0, "warmup_steps " << t.warmup_steps);
  const int64_t W = t.warmup_steps;
  if (step < W) return t.lr * static_cast<double>(step + 1) / static_cast<double>(W);
  const int64_t decay_steps = t.steps - 1 - W;
  double p = 1.0;
  if (decay_steps > 0)
    p = std::clamp(static_cast<double>(step - W) / static_cast<double>(decay_steps), 0.0, 1.0);
  return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + std::cos(std::numbers::pi * p));
}

double grad_sq_sum(const float* grads, size_t n) {
  // Fixed blocks, each summed in a fixed order, the block sums added in block order: the same
  // bits for any thread count (a resumed run may have a different OMP_NUM_THREADS).
  constexpr size_t kBlock = size_t{1} << 15;
  const auto blocks = static_cast<long>((n + kBlock - 1) / kBlock);
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (long b = 0; b < blocks; ++b) {
    const size_t first = static_cast<size_t>(b) * kBlock, last = std::min(n, first + kBlock);
    // Eight interleaved accumulators: no add waits on the previous one, and it vectorises.
    double lane[8] = {};
    size_t i = first;
    for (; i + 8 <= last; i += 8)
      for (size_t j = 0; j < 8; ++j) lane[j] += static_cast<double>(grads[i + j]) * grads[i + j];
    for (; i < last; ++i) lane[0] += static_cast<double>(grads[i]) * grads[i];
    partial[static_cast<size_t>(b)] =
        ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

double global_grad_norm(const float* grads, size_t n) {
  return std::sqrt(grad_sq_sum(grads, n));
}

double clip_factor(double grad_norm, double grad_clip) {
  if (!std::isfinite(grad_norm)) return std::numeric_limits<double>::quiet_NaN();
  if (grad_clip <= 0.0) return 1.0;
  return std::min(1.0, grad_clip / (grad_norm + 1e-6));
}

AdamW::AdamW(const ParamTable& table, double weight_decay)
    : weight_decay_(weight_decay), m_(table.total_numel(), 0.0f), v_(table.total_numel(), 0.0f) {
  for (const ParamSpec& s : table.specs())
    segments_.push_back({s.offset, s.offset, s.numel, s.kind});
}

AdamW::AdamW(std::vector<Segment> segments, size_t moment_numel, double weight_decay)
    : segments_(std::move(segments)),
      weight_decay_(weight_decay),
      m_(moment_numel, 0.0f),
      v_(moment_numel, 0.0f) {
  for (const Segment& seg : segments_)
    SY_CHECK(seg.moment_offset + seg.numel <= moment_numel,
             "segment leaves the optimizer state of " << moment_numel << " elements");
}

int64_t AdamW::step(float* params, const float* grads, double lr, double grad_scale) {
  SY_CHECK(m_.size() == v_.size(), "m has " << m_.size() << " elements, v " << v_.size());
  ++step_count_;
  const double t = static_cast<double>(step_count_);
  const double bc1 = 1.0 - std::pow(kBeta1, t);
  const double bc2 = 1.0 - std::pow(kBeta2, t);
  // Reciprocals once per step: a division less per element each (double divisions dominate).
  const double inv_bc1 = 1.0 / bc1, inv_bc2 = 1.0 / bc2;
  int64_t nonfinite = 0;
  for (const Segment& seg : segments_) {
    if (seg.kind == ParamKind::kBias) continue;
    SY_CHECK(seg.moment_offset + seg.numel <= m_.size(), "optimizer state smaller than the table");
    const double wd = seg.kind == ParamKind::kMatrix ? weight_decay_ : 0.0;
    float* __restrict p = params + seg.param_offset;
    const float* __restrict g = grads + seg.param_offset;
    float* __restrict m1 = m_.data() + seg.moment_offset;
    float* __restrict m2 = v_.data() + seg.moment_offset;
    const auto n = static_cast<long>(seg.numel);
    // Elementwise and independent: bitwise the same for any thread count.
#pragma omp parallel for simd schedule(static) if (n > 32768) reduction(+ : nonfinite)
    for (long i = 0; i < n; ++i) {
      const double gi = static_cast<double>(g[i]) * grad_scale;
      const double mi = kBeta1 * m1[i] + (1.0 - kBeta1) * gi;
      const double vi = kBeta2 * m2[i] + (1.0 - kBeta2) * gi * gi;
      const double u = mi * inv_bc1 / (std::sqrt(vi * inv_bc2) + kEps);
      const double pi = p[i];
      p[i] = static_cast<float>(pi - lr * (u + wd * pi));
      m1[i] = static_cast<float>(mi);
      m2[i] = static_cast<float>(vi);
      // inf * 0 is NaN: one test for the three
      nonfinite += !std::isfinite(p[i] * 0.0f + m1[i] * 0.0f + m2[i] * 0.0f);
    }
  }
  return nonfinite;
}

int64_t update_router_bias(float* bias, const int64_t* load, int E, double rate) {
  SY_CHECK(E > 0, "E = " << E);
  double total = 0.0;
  for (int i = 0; i < E; ++i) total += static_cast<double>(load[i]);
  const double mean_load = total / E;
  int64_t nonfinite = 0;
  for (int i = 0; i < E; ++i) {
    const double diff = mean_load - static_cast<double>(load[i]);
    const double sign = diff > 0.0 ? 1.0 : (diff < 0.0 ? -1.0 : 0.0);
    bias[i] = static_cast<float>(bias[i] + rate * sign);
    nonfinite += !std::isfinite(bias[i]);
  }
  return nonfinite;
}

}  // namespace sy

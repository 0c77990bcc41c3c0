// Causal multi-head attention by its definition, in double: the reference the attention kernels
// (kernels/cpu, kernels/cuda) are tested against. qkv is [B*T, 3C] (q, k, v of head h in columns
// h*HD.. of each third); header-only, included as "common/naive_attention.h".
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace sy::test {

struct NaiveAttention {
  std::vector<double> probs;  // [B,NH,T,T] softmax rows, zeros above the diagonal
  std::vector<double> stats;  // [B,NH,T,2] each row's largest score and 1/sum exp(score - it)
  std::vector<double> out;    // [B*T, C]
  double min_score = std::numeric_limits<double>::infinity();
};

template <class In>
NaiveAttention naive_attention(const std::vector<In>& qkv, int B, int T, int C, int NH) {
  const int HD = C / NH;
  const auto at = [&](int b, int t, int blk, int h, int i) {
    return static_cast<double>(
        qkv[(static_cast<size_t>(b) * T + t) * 3 * C + blk * C + h * HD + i]);
  };
  NaiveAttention r;
  r.probs.assign(static_cast<size_t>(B) * NH * T * T, 0.0);
  r.stats.resize(static_cast<size_t>(B) * NH * T * 2);
  r.out.resize(static_cast<size_t>(B) * T * C);
  std::vector<double> sc(T);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        double top = -std::numeric_limits<double>::infinity();
        for (int s = 0; s <= t; ++s) {
          double d = 0.0;
          for (int i = 0; i < HD; ++i) d += at(b, t, 0, h, i) * at(b, s, 1, h, i);
          sc[s] = d / std::sqrt(static_cast<double>(HD));
          top = std::max(top, sc[s]);
          r.min_score = std::min(r.min_score, sc[s]);
        }
        double z = 0.0;
        for (int s = 0; s <= t; ++s) z += std::exp(sc[s] - top);
        const size_t row = (static_cast<size_t>(b) * NH + h) * T + t;
        r.stats[2 * row] = top;
        r.stats[2 * row + 1] = 1.0 / z;
        for (int s = 0; s <= t; ++s) r.probs[row * T + s] = std::exp(sc[s] - top) / z;
        for (int i = 0; i < HD; ++i) {
          double o = 0.0;
          for (int s = 0; s <= t; ++s) o += r.probs[row * T + s] * at(b, s, 2, h, i);
          r.out[(static_cast<size_t>(b) * T + t) * C + h * HD + i] = o;
        }
      }
  return r;
}

}  // namespace sy::test

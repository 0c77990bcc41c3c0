// MoE-specific ops on the CPU (see moe_ops.h for the shape letters and conventions).
#include "kernels/cpu/moe_ops.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "kernels/cpu/vec_math.h"

namespace sy::cpu {

// Parallel loops (OpenMP): each op's iterations write disjoint outputs, and every element is
// computed by the same operations in the same order as a serial loop, so results are bitwise the
// same for any thread count. Where rows collide (scatter-adds by token) the loop runs over column
// blocks instead, keeping the row order r = 0..A-1 of every sum. Small calls stay serial: waking
// the second thread costs about a microsecond when the cores are free, much more when other
// processes hold them (so the tests' tiny shapes run serially).
namespace {
constexpr long kParallelMinElems = 1L << 16;

// Column blocks for a scatter-add of A rows of C: one per thread when the call is big enough
// and each block keeps at least 16 columns (a cache line of floats), else 1.
int column_blocks(int A, int C) {
  if (static_cast<long>(A) * C < kParallelMinElems) return 1;
  return std::max(1, std::min(omp_get_max_threads(), C / 16));
}

// Group-limited selection (SPEC section 1). The order of every selection: a higher score first,
// ties to the lower index; a NaN score ranks as -inf there, so a diverged step still keeps M
// distinct groups.
template <class T>
T rank_key(T s) {
  return std::isnan(s) ? -std::numeric_limits<T>::infinity() : s;
}
template <class T>
bool ranks_before(T sa, int a, T sb, int b) {
  return sa > sb || (sa == sb && a < b);
}

// Bit g set: group g is one of the token's rule.groups_topk best groups, where a group's score
// is the sum of its r = ceil(K / M) best selection scores score(i) (added best first). Every bit
// is set when the rule does not limit the groups.
template <class T, class ScoreFn>
uint64_t kept_groups(ScoreFn score, int E, int K, const RouterRule& rule) {
  if (!rule.limits_groups()) return ~uint64_t{0};
  const int R = rule.groups, Eg = E / R, r = rule.group_score_experts(K);
  T group_score[kMaxRouteGroups];
  for (int g = 0; g < R; ++g) {
    // Pass j picks the best expert ranking after pass j-1's pick: the group's j-th best.
    T sum = T(0), prev_s = T(0);
    int prev = -1;
    for (int j = 0; j < r; ++j) {
      int best = -1;
      T best_s = T(0);
      for (int i = g * Eg; i < (g + 1) * Eg; ++i) {
        const T s = rank_key(score(i));
        if (prev >= 0 && !ranks_before(prev_s, prev, s, i)) continue;
        if (best < 0 || ranks_before(s, i, best_s, best)) {
          best = i;
          best_s = s;
        }
      }
      sum += best_s;
      prev = best;
      prev_s = best_s;
    }
    group_score[g] = rank_key(sum);
  }
  uint64_t kept = 0;
  for (int m = 0; m < rule.groups_topk; ++m) {
    int best = -1;
    for (int g = 0; g < R; ++g) {
      if ((kept >> g) & 1) continue;
      if (best < 0 || ranks_before(group_score[g], g, group_score[best], best)) best = g;
    }
    kept |= uint64_t{1} << best;
  }
  return kept;
}

}  // namespace

// probs[N,E], lse[N], topk_idx[N,K], gates[N,K] (=); logits: [N,E], bias: [E] or null.
template <class T>
void router_forward(T* probs, T* lse, int32_t* topk_idx, T* gates, const T* logits, const T* bias,
                    int N, int E, int K, const RouterRule& rule) {
  const int group_size = E / rule.groups;
#pragma omp parallel if (static_cast <long>(N) * E >= kParallelMinElems / 4)
  {
    std::vector<int32_t> cand;  // one per thread, reused by its tokens
    cand.reserve(static_cast<size_t>(E));
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const T* z = logits + static_cast<long>(n) * E;
      T* p = probs + static_cast<long>(n) * E;
      int32_t* sel = topk_idx + static_cast<long>(n) * K;
      T* g = gates + static_cast<long>(n) * K;

      double zmax = static_cast<double>(z[0]);
      for (int i = 1; i < E; ++i) zmax = std::fmax(zmax, static_cast<double>(z[i]));
      double sum = 0.0;
      for (int i = 0; i < E; ++i) sum += std::exp(static_cast<double>(z[i]) - zmax);
      const double l = zmax + std::log(sum);
      lse[n] = static_cast<T>(l);
      for (int i = 0; i < E; ++i) {
        const double zi = static_cast<double>(z[i]);
        p[i] = static_cast<T>(rule.sigmoid ? 1.0 / (1.0 + std::exp(-zi)) : std::exp(zi - l));
      }

      auto score = [&](int i) { return bias ? p[i] + bias[i] : p[i]; };
      const uint64_t kept = kept_groups<T>(score, E, K, rule);
      // The K best candidates of the kept groups in selection order (a higher score first, ties
      // to the lower index). A NaN score ranks as -inf (rank_key, as on the GPU), so even a step
      // whose scores are all NaN selects K distinct experts and fails on its loss, not here.
      cand.clear();
      for (int i = 0; i < E; ++i)
        if ((kept >> (i / group_size)) & 1) cand.push_back(i);
      std::partial_sort(cand.begin(), cand.begin() + K, cand.end(), [&](int32_t a, int32_t b) {
        return ranks_before(rank_key(score(a)), a, rank_key(score(b)), b);
      });
      std::copy(cand.begin(), cand.begin() + K, sel);

      double gsum = 0.0;
      for (int j = 0; j < K; ++j) gsum += static_cast<double>(p[sel[j]]);
      const double norm = rule.norm_topk ? gsum : 1.0;
      for (int j = 0; j < K; ++j)
        g[j] = static_cast<T>(static_cast<double>(p[sel[j]]) / norm * rule.gate_scale);
    }
  }
}

// dlogits[N,E] (=); dgates: [N,K], dprobs: [N,E] or null, dlse: [N] or null, probs: [N,E],
// topk_idx: [N,K].
// With a = gate_scale, S = sum_j p_{e_j} and w_j = a p_{e_j} / S (norm_topk):
//   dp_{e_j} += a (dw_j - sum_l dw_l p_{e_l} / S) / S     (without norm_topk: dp_{e_j} += a dw_j)
// then through the softmax and d lse / dz_i = p_i:
//   dz_i = p_i (dp_i - sum_k p_k dp_k) + dlse p_i,
// or through the sigmoid: dz_i = dp_i p_i (1 - p_i).
template <class T>
void router_backward(T* dlogits, const T* dgates, const T* dprobs, const T* dlse, const T* probs,
                     const int32_t* topk_idx, int N, int E, int K, const RouterRule& rule) {
  if (rule.sigmoid && dlse)
    throw std::invalid_argument("router_backward: no lse gradient under sigmoid scores");
#pragma omp parallel for schedule(static) if (static_cast <long>(N) * E >= kParallelMinElems / 4)
  for (int n = 0; n < N; ++n) {
    const T* p = probs + static_cast<long>(n) * E;
    const int32_t* sel = topk_idx + static_cast<long>(n) * K;
    const T* dg = dgates + static_cast<long>(n) * K;
    T* dz = dlogits + static_cast<long>(n) * E;  // holds dp until the score step
    auto dw = [&](int j) { return static_cast<double>(dg[j]) * rule.gate_scale; };

    for (int i = 0; i < E; ++i) dz[i] = dprobs ? dprobs[static_cast<long>(n) * E + i] : T(0);
    if (rule.norm_topk) {
      double s = 0.0;
      for (int j = 0; j < K; ++j) s += static_cast<double>(p[sel[j]]);
      double dot = 0.0;  // sum_l a dw_l p_{e_l} / S
      for (int j = 0; j < K; ++j) dot += dw(j) * static_cast<double>(p[sel[j]]);
      dot /= s;
      for (int j = 0; j < K; ++j) dz[sel[j]] += static_cast<T>((dw(j) - dot) / s);
    } else {
      for (int j = 0; j < K; ++j) dz[sel[j]] += static_cast<T>(dw(j));
    }

    if (rule.sigmoid) {
      for (int i = 0; i < E; ++i) {
        const double pi = static_cast<double>(p[i]);
        dz[i] = static_cast<T>(static_cast<double>(dz[i]) * pi * (1.0 - pi));
      }
      continue;
    }

    double pdp = 0.0;
    for (int i = 0; i < E; ++i) pdp += static_cast<double>(p[i]) * static_cast<double>(dz[i]);
    const double dl = dlse ? static_cast<double>(dlse[n]) : 0.0;
    for (int i = 0; i < E; ++i) {
      dz[i] = static_cast<T>(static_cast<double>(p[i]) * (static_cast<double>(dz[i]) - pdp + dl));
    }
  }
}

// sigmoid(a) = 1/(1+exp(-a)): for very negative a, exp overflows to inf and the sigmoid to 0,
// never NaN. float runs 4 lanes at a time on exp_approx (vec_math.h: within 2 ulp of std::exp);
// a loop tail uses the same vector code on one lane, so every element gets the same bits
// wherever the blocks fall. double keeps std::exp (it is the finite-difference reference).
inline f32x4 sigmoid4(f32x4 a) {
  return 1.0f / (1.0f + exp_approx(-a));
}

// Runs body4(i) for i = 0, 4, 8, ... and body1(i) for the last n % 4 elements, in blocks of
// 4096 spread over the OpenMP threads when n >= min_parallel.
template <class Body4, class Body1>
void for_each4(long n, long min_parallel, Body4 body4, Body1 body1) {
  constexpr long kBlock = 4096;
  const long blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= min_parallel)
  for (long blk = 0; blk < blocks; ++blk) {
    const long i1 = std::min(n, (blk + 1) * kBlock);
    long i = blk * kBlock;
    for (; i + 4 <= i1; i += 4) body4(i);
    for (; i < i1; ++i) body1(i);
  }
}

// h[n] (=); a, b: [n].
template <class T>
void swiglu_forward(T* h, const T* a, const T* b, long n) {
  if constexpr (std::is_same_v<T, float>) {
    auto body4 = [=](long i) {
      const f32x4 av = load4(a + i);
      store4(h + i, av * sigmoid4(av) * load4(b + i));
    };
    auto body1 = [=](long i) { h[i] = a[i] * sigmoid4(f32x4{} + a[i])[0] * b[i]; };
    for_each4(n, kParallelMinElems / 2, body4, body1);
  } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElems / 2)
    for (long i = 0; i < n; ++i) {
      const T s = T(1) / (T(1) + std::exp(-a[i]));
      h[i] = a[i] * s * b[i];
    }
  }
}

// da[n], db[n] (=); dh, a, b: [n]. silu'(a) = s (1 + a (1 - s)), s = sigmoid(a).
template <class T>
void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, long n) {
  if constexpr (std::is_same_v<T, float>) {
    // All inputs of a block of 4 are loaded before da (which may alias dh) is written.
    auto body4 = [=](long i) {
      const f32x4 g = load4(dh + i), av = load4(a + i), bv = load4(b + i);
      const f32x4 s = sigmoid4(av);
      store4(da + i, g * bv * s * (1.0f + av * (1.0f - s)));
      store4(db + i, g * (av * s));
    };
    auto body1 = [=](long i) {
      const float g = dh[i], s = sigmoid4(f32x4{} + a[i])[0];
      da[i] = g * b[i] * s * (1.0f + a[i] * (1.0f - s));
      db[i] = g * (a[i] * s);
    };
    for_each4(n, kParallelMinElems / 2, body4, body1);
  } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElems / 2)
    for (long i = 0; i < n; ++i) {
      const T g = dh[i];
      const T s = T(1) / (T(1) + std::exp(-a[i]));
      const T silu = a[i] * s;
      da[i] = g * b[i] * s * (T(1) + a[i] * (T(1) - s));
      db[i] = g * silu;
    }
  }
}

// out[A,C] (=); in: [N,C], idx: [A].
template <class T>
void gather_rows_forward(T* out, const T* in, const int32_t* idx, int A, int C) {
#pragma omp parallel for schedule(static) if (static_cast <long>(A) * C >= kParallelMinElems)
  for (int r = 0; r < A; ++r) {
    const T* src = in + static_cast<long>(idx[r]) * C;
    T* dst = out + static_cast<long>(r) * C;
    for (int c = 0; c < C; ++c) dst[c] = src[c];
  }
}

// din[N,C] (+=); dout: [A,C], idx: [A].
template <class T>
void gather_rows_backward(T* din, const T* dout, const int32_t* idx, int A, int C) {
  const int blocks = column_blocks(A, C);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = C * blk / blocks, c1 = C * (blk + 1) / blocks;
    for (int r = 0; r < A; ++r) {
      const T* src = dout + static_cast<long>(r) * C;
      T* dst = din + static_cast<long>(idx[r]) * C;
      for (int c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

// out[N,C] (+=); in: [A,C], idx: [A], scale: [A].
template <class T>
void scatter_rows_forward(T* out, const T* in, const int32_t* idx, const T* scale, int A, int C) {
  const int blocks = column_blocks(A, C);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = C * blk / blocks, c1 = C * (blk + 1) / blocks;
    for (int r = 0; r < A; ++r) {
      const T* src = in + static_cast<long>(r) * C;
      T* dst = out + static_cast<long>(idx[r]) * C;
      const T w = scale[r];
      for (int c = c0; c < c1; ++c) dst[c] += w * src[c];
    }
  }
}

// din[A,C] (=), dscale[A] (=); dout: [N,C], in: [A,C], idx: [A], scale: [A].
template <class T>
void scatter_rows_backward(T* din, T* dscale, const T* dout, const T* in, const int32_t* idx,
                           const T* scale, int A, int C) {
#pragma omp parallel for schedule(static) if (static_cast <long>(A) * C >= kParallelMinElems)
  for (int r = 0; r < A; ++r) {
    const T* dy = dout + static_cast<long>(idx[r]) * C;
    if (din) {
      T* dx = din + static_cast<long>(r) * C;
      const T w = scale[r];
      for (int c = 0; c < C; ++c) dx[c] = w * dy[c];
    }
    if (dscale) {
      const T* x = in + static_cast<long>(r) * C;
      double dot = 0.0;
      for (int c = 0; c < C; ++c) dot += static_cast<double>(dy[c]) * static_cast<double>(x[c]);
      dscale[r] = static_cast<T>(dot);
    }
  }
}

#define SY_INSTANTIATE(T)                                                                      \
  template void router_forward<T>(T*, T*, int32_t*, T*, const T*, const T*, int, int, int,     \
                                  const RouterRule&);                                          \
  template void router_backward<T>(T*, const T*, const T*, const T*, const T*, const int32_t*, \
                                   int, int, int, const RouterRule&);                          \
  template void swiglu_forward<T>(T*, const T*, const T*, long);                               \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, long);                \
  template void gather_rows_forward<T>(T*, const T*, const int32_t*, int, int);                \
  template void gather_rows_backward<T>(T*, const T*, const int32_t*, int, int);               \
  template void scatter_rows_forward<T>(T*, const T*, const int32_t*, const T*, int, int);     \
  template void scatter_rows_backward<T>(T*, T*, const T*, const T*, const int32_t*, const T*, \
                                         int, int);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy::cpu

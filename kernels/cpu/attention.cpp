// Causal multi-head self-attention on the fused qkv[N,3C] (shape letters in ops.h).
// Per (sequence b, head h) the q, k, v blocks are [T,HD] strided views of qkv (row stride 3C),
// so every product is a gemm() with leading dimensions and nothing is copied.
// The probabilities are not kept: the forward saves each row's max and 1/sum (stats), and the
// backward recomputes a tile's probabilities from q, k and those two numbers, with the forward's
// own products and exp, so they are bitwise the forward's. Memory is O(T) per row instead of the
// [B,NH,T,T] probabilities (and as much again of their gradient) per layer; the price is one more
// q k^T product per tile in the backward.
// The (b,h) loop is parallel: each iteration writes only its own stats and its own HD-wide column
// slice of out/dqkv, its tiles live in its thread's scratch, and nothing is reduced across
// threads, so results are bitwise the same for any OpenMP thread count.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec_math.h"

namespace sy::cpu {

namespace {

// The (b,h) blocks run on the OpenMP threads, each gemm() inside them one single-threaded BLAS
// call (see gemm.h: a pthreads OpenBLAS pool per call would fight the OpenMP threads for the
// cores, measured 6-9x slower on 2 cores). Tiny calls (the tests' shapes) stay serial.
bool parallel_heads(int B, int T_, int C) {
  return 4.0 * B * T_ * T_ * C >= 2.0 * 128 * 128 * 64;  // forward FLOPs of all heads
}
// Strided [T,HD] views of one (b,h) block.
struct HeadView {
  long q, k, v;  // offsets of q/k/v[b, 0, h*HD] in qkv (row stride 3C)
  long o;        // offset of out[b, 0, h*HD] (row stride C)
  long st;       // offset of stats[b, h, 0, 0] (2 per row)
};

HeadView head_view(int bh, int T_, int C, int NH) {
  const int b = bh / NH;
  const int h = bh % NH;
  const int HD = C / NH;
  const long tok0 = static_cast<long>(b) * T_;
  HeadView v{};
  v.q = tok0 * 3L * C + static_cast<long>(h) * HD;
  v.k = v.q + C;
  v.v = v.q + 2L * C;
  v.o = tok0 * C + static_cast<long>(h) * HD;
  v.st = 2L * bh * T_;
  return v;
}

}  // namespace

// Causal tiles: the query rows go in tiles of kTile; tile [r0, r1) only needs the keys [0, r1),
// so the products skip the blocks above the diagonal (T = 128: 3 of 4 blocks, 75% of the full
// square's FLOPs; measured 151 -> 145 ms per small.yaml step, tiles of 32 the same). Smaller
// tiles skip more but make smaller, slower products. A tile's scores are [kTile, T] in the
// thread's scratch (row stride T).
constexpr int kTile = 64;

// exp(row[s] - mx) for s <= t, in place: float in one vectorised pass (exp_approx, 4 lanes).
template <class T>
void exp_shifted(T* row, int t, T mx) {
  if constexpr (std::is_same_v<T, float>) {
    int s = 0;
    for (; s + 4 <= t + 1; s += 4) store4(row + s, exp_approx(load4(row + s) - mx));
    for (; s <= t; ++s) row[s] = exp_approx(row[s] - mx);
  } else {
    for (int s = 0; s <= t; ++s) row[s] = std::exp(row[s] - mx);
  }
}

// Softmax of row t of the scores in place over s <= t; zeros for s in (t, n). Returns the row's
// max and 1/sum (the sum in double), from which recompute_softmax_row gives the same row.
template <class T>
void causal_softmax_row(T* row, int t, int n, T* stats = nullptr) {
  T mx = row[0];
  for (int s = 1; s <= t; ++s) mx = row[s] > mx ? row[s] : mx;
  exp_shifted(row, t, mx);
  double sum = 0.0;
  for (int s = 0; s <= t; ++s) sum += static_cast<double>(row[s]);
  const T inv = static_cast<T>(1.0 / sum);
  for (int s = 0; s <= t; ++s) row[s] *= inv;
  for (int s = t + 1; s < n; ++s) row[s] = T(0);
  if (stats) {
    stats[0] = mx;
    stats[1] = inv;
  }
}

// The softmax row again from its scores and the forward's stats: the same operations, so the
// same bits.
template <class T>
void recompute_softmax_row(T* row, int t, int n, const T* stats) {
  exp_shifted(row, t, stats[0]);
  for (int s = 0; s <= t; ++s) row[s] *= stats[1];
  for (int s = t + 1; s < n; ++s) row[s] = T(0);
}

// scores[0:rows, 0:r1] = q[r0:r1] k[0:r1]^T / sqrt(HD) for the tile of query rows [r0, r1), into
// `tile` (row stride T); the part above the diagonal is computed and then zeroed by the softmax.
template <class T>
void tile_scores(T* tile, const T* qkv, const HeadView& hv, int r0, int r1, int T_, int C, int HD,
                 T scale) {
  const int C3 = 3 * C;
  gemm<T>(false, true, r1 - r0, r1, HD, scale, qkv + hv.q + static_cast<long>(r0) * C3, C3,
          qkv + hv.k, C3, T(0), tile, T_);
}

// out[N,C] (=) att @ v per head, att = softmax_causal(q k^T / sqrt(HD)); stats[B,NH,T,2] (=)
// each row's max and 1/sum; qkv: [N,3C] (after RoPE).
template <class T>
void attention_forward(T* out, T* stats, const T* qkv, int B, int T_, int C, int NH) {
  const int HD = C / NH;
  const int C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(HD)));
  use_single_threaded_blas();
#pragma omp parallel if (parallel_heads(B, T_, C))
  {
    std::vector<T> tile(static_cast<size_t>(std::min(T_, kTile)) * T_);
#pragma omp for schedule(static)
    for (int bh = 0; bh < B * NH; ++bh) {
      const HeadView hv = head_view(bh, T_, C, NH);
      for (int r0 = 0; r0 < T_; r0 += kTile) {
        const int r1 = std::min(T_, r0 + kTile), rows = r1 - r0;
        tile_scores(tile.data(), qkv, hv, r0, r1, T_, C, HD, scale);
        for (int t = r0; t < r1; ++t)
          causal_softmax_row(tile.data() + static_cast<long>(t - r0) * T_, t, r1,
                             stats + hv.st + 2L * t);
        // out[r0:r1] = att[r0:r1, 0:r1] v[0:r1]
        gemm<T>(false, false, rows, HD, r1, T(1), tile.data(), T_, qkv + hv.v, C3, T(0),
                out + hv.o + static_cast<long>(r0) * C, C);
      }
    }
  }
}

// dqkv[N,3C] (=); dout: [N,C]; qkv: [N,3C] and stats[B,NH,T,2] from the forward.
// Per tile of query rows, the probabilities att are recomputed (tile_scores and the stats), then
//   datt = dout v^T, dv = att^T dout,
//   dS = att * (datt - rowsum(att * datt))   (softmax backward, zero above the diagonal),
//   dq = dS k / sqrt(HD), dk = dS^T q / sqrt(HD).
// dv and dk sum over the tiles of query rows, so the tiles run last to first: the last one
// reaches every key row and assigns (beta 0), the others add.
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* stats, int B, int T_, int C,
                        int NH) {
  const int HD = C / NH;
  const int C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(HD)));
  const int last_r0 = (T_ - 1) / kTile * kTile;
  use_single_threaded_blas();
#pragma omp parallel if (parallel_heads(B, T_, C))
  {
    const size_t tile_elems = static_cast<size_t>(std::min(T_, kTile)) * T_;
    std::vector<T> a(tile_elems), ds(tile_elems);  // att and datt -> dS of one tile
#pragma omp for schedule(static)
    for (int bh = 0; bh < B * NH; ++bh) {
      const HeadView hv = head_view(bh, T_, C, NH);
      for (int r0 = last_r0; r0 >= 0; r0 -= kTile) {
        const int r1 = std::min(T_, r0 + kTile), rows = r1 - r0;
        const T beta = r0 == last_r0 ? T(0) : T(1);
        tile_scores(a.data(), qkv, hv, r0, r1, T_, C, HD, scale);
        for (int t = r0; t < r1; ++t)
          recompute_softmax_row(a.data() + static_cast<long>(t - r0) * T_, t, r1,
                                stats + hv.st + 2L * t);
        const T* dy = dout + hv.o + static_cast<long>(r0) * C;
        // datt[r0:r1, 0:r1] = dy v^T;  dv[0:r1] (+)= att[r0:r1, 0:r1]^T dy
        gemm<T>(false, true, rows, r1, HD, T(1), dy, C, qkv + hv.v, C3, T(0), ds.data(), T_);
        gemm<T>(true, false, r1, HD, rows, T(1), a.data(), T_, dy, C, beta, dqkv + hv.v, C3);
        for (int t = r0; t < r1; ++t) {
          const T* arow = a.data() + static_cast<long>(t - r0) * T_;
          T* drow = ds.data() + static_cast<long>(t - r0) * T_;
          double dot = 0.0;
          for (int s = 0; s <= t; ++s)
            dot += static_cast<double>(arow[s]) * static_cast<double>(drow[s]);
          const T d = static_cast<T>(dot);
          for (int s = 0; s <= t; ++s) drow[s] = arow[s] * (drow[s] - d);
          for (int s = t + 1; s < r1; ++s) drow[s] = T(0);  // inside the tile's product
        }
        // dq[r0:r1] = dS[r0:r1, 0:r1] k[0:r1] / sqrt(HD);  dk[0:r1] (+)= dS^T q[r0:r1] / sqrt(HD)
        gemm<T>(false, false, rows, HD, r1, scale, ds.data(), T_, qkv + hv.k, C3, T(0),
                dqkv + hv.q + static_cast<long>(r0) * C3, C3);
        gemm<T>(true, false, r1, HD, rows, scale, ds.data(), T_,
                qkv + hv.q + static_cast<long>(r0) * C3, C3, beta, dqkv + hv.k, C3);
      }
    }
  }
}

// Per query row and head: scores over the cached positions in position order (the order of
// attention_forward's row), the same softmax, then the weighted sum of the cached values.
template <class T>
void attention_cached_forward(T* out, T* scratch, const T* q, int ldq, const T* kc, const T* vc,
                              int W, int rows, long p0, int n, int C, int NH) {
  if (rows < W)
    throw std::invalid_argument("attention_cached_forward: a cache of " + std::to_string(rows) +
                                " rows cannot hold a window of " + std::to_string(W));
  const int HD = C / NH;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(HD)));
  for (int i = 0; i < n; ++i) {
    const long p = p0 + i, first = std::max(0L, p - W + 1);
    const int count = static_cast<int>(p - first + 1);
    for (int h = 0; h < NH; ++h) {
      const T* qh = q + static_cast<long>(i) * ldq + static_cast<long>(h) * HD;
      for (int s = 0; s < count; ++s) {
        const T* kh = kc + ((first + s) % rows) * C + static_cast<long>(h) * HD;
        T dot = T(0);
        for (int d = 0; d < HD; ++d) dot += qh[d] * kh[d];
        scratch[s] = scale * dot;
      }
      causal_softmax_row(scratch, count - 1, count);
      T* oh = out + static_cast<long>(i) * C + static_cast<long>(h) * HD;
      std::fill(oh, oh + HD, T(0));
      for (int s = 0; s < count; ++s) {
        const T* vh = vc + ((first + s) % rows) * C + static_cast<long>(h) * HD;
        for (int d = 0; d < HD; ++d) oh[d] += scratch[s] * vh[d];
      }
    }
  }
}

#define SY_INSTANTIATE(T)                                                                        \
  template void attention_cached_forward<T>(T*, T*, const T*, int, const T*, const T*, int, int, \
                                            long, int, int, int);                                \
  template void attention_forward<T>(T*, T*, const T*, int, int, int, int);                      \
  template void attention_backward<T>(T*, const T*, const T*, const T*, int, int, int, int);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy::cpu

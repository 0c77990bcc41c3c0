// Causal multi-head self-attention on the fused qkv[N,3C] (shape letters in ops.h).
// Per (sequence b, head h) the q, k, v blocks are [T,HD] strided views of qkv (row stride 3C),
// so every product is a gemm() with leading dimensions and nothing is copied.
// The (b,h) loop is parallel: each iteration writes only its own att/scratch block and its own
// HD-wide column slice of out/dqkv, and nothing is reduced across threads, so results are
// bitwise the same for any OpenMP thread count.
#include <algorithm>
#include <cmath>
#include <type_traits>

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
  long a;        // offset of att[b, h, 0, 0] (row stride T)
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
  v.a = static_cast<long>(bh) * T_ * T_;
  return v;
}

}  // namespace

// Causal tiles: the query rows go in tiles of kTile; tile [r0, r1) only needs the keys [0, r1),
// so the products skip the blocks above the diagonal (T = 128: 3 of 4 blocks, 75% of the full
// square's FLOPs; measured 151 -> 145 ms per small.yaml step, tiles of 32 the same). Smaller
// tiles skip more but make smaller, slower products.
constexpr int kTile = 64;

// Softmax of row t of the scores in place over s <= t; zeros for s in (t, T).
template <class T>
void causal_softmax_row(T* row, int t, int T_) {
  T mx = row[0];
  for (int s = 1; s <= t; ++s) mx = row[s] > mx ? row[s] : mx;
  // exp in one vectorised pass (float: exp_approx, 4 lanes), the sum in double in a second.
  if constexpr (std::is_same_v<T, float>) {
    int s = 0;
    for (; s + 4 <= t + 1; s += 4) store4(row + s, exp_approx(load4(row + s) - mx));
    for (; s <= t; ++s) row[s] = exp_approx(row[s] - mx);
  } else {
    for (int s = 0; s <= t; ++s) row[s] = std::exp(row[s] - mx);
  }
  double sum = 0.0;
  for (int s = 0; s <= t; ++s) sum += static_cast<double>(row[s]);
  const T inv = static_cast<T>(1.0 / sum);
  for (int s = 0; s <= t; ++s) row[s] *= inv;
  for (int s = t + 1; s < T_; ++s) row[s] = T(0);
}

// out[N,C] (=) att @ v per head; att[B,NH,T,T] (=) softmax_causal(q k^T / sqrt(HD)), zeros
// above the diagonal; qkv: [N,3C] (after RoPE).
template <class T>
void attention_forward(T* out, T* att, const T* qkv, int B, int T_, int C, int NH) {
  const int HD = C / NH;
  const int C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(HD)));
  use_single_threaded_blas();
#pragma omp parallel for schedule(static) if (parallel_heads(B, T_, C))
  for (int bh = 0; bh < B * NH; ++bh) {
    const HeadView hv = head_view(bh, T_, C, NH);
    T* a = att + hv.a;
    for (int r0 = 0; r0 < T_; r0 += kTile) {
      const int r1 = std::min(T_, r0 + kTile), rows = r1 - r0;
      T* a_tile = a + static_cast<long>(r0) * T_;
      // scores[r0:r1, 0:r1] = q[r0:r1] k[0:r1]^T / sqrt(HD); the part above the diagonal inside
      // the tile is computed and then zeroed by the softmax.
      gemm<T>(false, true, rows, r1, HD, scale, qkv + hv.q + static_cast<long>(r0) * C3, C3,
              qkv + hv.k, C3, T(0), a_tile, T_);
      for (int t = r0; t < r1; ++t) causal_softmax_row(a + static_cast<long>(t) * T_, t, T_);
      // out[r0:r1] = att[r0:r1, 0:r1] v[0:r1]
      gemm<T>(false, false, rows, HD, r1, T(1), a_tile, T_, qkv + hv.v, C3, T(0),
              out + hv.o + static_cast<long>(r0) * C, C);
    }
  }
}

// dqkv[N,3C] (=); scratch: >= B*NH*T*T elements (datt), undefined after; dout: [N,C];
// qkv: [N,3C] and att[B,NH,T,T] from the forward.
//   datt = dout v^T, dv = att^T dout,
//   dS = att * (datt - rowsum(att * datt))   (softmax backward, zero above the diagonal),
//   dq = dS k / sqrt(HD), dk = dS^T q / sqrt(HD).
// In causal tiles as the forward; dv and dk sum over the tiles of query rows, so the tiles run
// last to first: the last one reaches every key row and assigns (beta 0), the others add.
template <class T>
void attention_backward(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                        int T_, int C, int NH) {
  const int HD = C / NH;
  const int C3 = 3 * C;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(HD)));
  const int last_r0 = (T_ - 1) / kTile * kTile;
  use_single_threaded_blas();
#pragma omp parallel for schedule(static) if (parallel_heads(B, T_, C))
  for (int bh = 0; bh < B * NH; ++bh) {
    const HeadView hv = head_view(bh, T_, C, NH);
    for (int r0 = last_r0; r0 >= 0; r0 -= kTile) {
      const int r1 = std::min(T_, r0 + kTile), rows = r1 - r0;
      const T beta = r0 == last_r0 ? T(0) : T(1);
      const T* a = att + hv.a + static_cast<long>(r0) * T_;
      T* ds = scratch + hv.a + static_cast<long>(r0) * T_;
      const T* dy = dout + hv.o + static_cast<long>(r0) * C;
      // datt[r0:r1, 0:r1] = dy v^T;  dv[0:r1] (+)= att[r0:r1, 0:r1]^T dy
      gemm<T>(false, true, rows, r1, HD, T(1), dy, C, qkv + hv.v, C3, T(0), ds, T_);
      gemm<T>(true, false, r1, HD, rows, T(1), a, T_, dy, C, beta, dqkv + hv.v, C3);
      for (int t = r0; t < r1; ++t) {
        const T* arow = a + static_cast<long>(t - r0) * T_;
        T* drow = ds + static_cast<long>(t - r0) * T_;
        double dot = 0.0;
        for (int s = 0; s <= t; ++s)
          dot += static_cast<double>(arow[s]) * static_cast<double>(drow[s]);
        const T d = static_cast<T>(dot);
        for (int s = 0; s <= t; ++s) drow[s] = arow[s] * (drow[s] - d);
        for (int s = t + 1; s < r1; ++s) drow[s] = T(0);  // inside the tile's product
      }
      // dq[r0:r1] = dS[r0:r1, 0:r1] k[0:r1] / sqrt(HD);  dk[0:r1] (+)= dS^T q[r0:r1] / sqrt(HD)
      gemm<T>(false, false, rows, HD, r1, scale, ds, T_, qkv + hv.k, C3, T(0),
              dqkv + hv.q + static_cast<long>(r0) * C3, C3);
      gemm<T>(true, false, r1, HD, rows, scale, ds, T_, qkv + hv.q + static_cast<long>(r0) * C3, C3,
              beta, dqkv + hv.k, C3);
    }
  }
}

// Per query row and head: scores over the cached positions in position order (the order of
// attention_forward's row), the same softmax, then the weighted sum of the cached values.
template <class T>
void attention_cached_forward(T* out, T* scratch, const T* q, int ldq, const T* kc, const T* vc,
                              int W, long p0, int n, int C, int NH) {
  const int HD = C / NH;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(HD)));
  for (int i = 0; i < n; ++i) {
    const long p = p0 + i, first = std::max(0L, p - W + 1);
    const int count = static_cast<int>(p - first + 1);
    for (int h = 0; h < NH; ++h) {
      const T* qh = q + static_cast<long>(i) * ldq + static_cast<long>(h) * HD;
      for (int s = 0; s < count; ++s) {
        const T* kh = kc + ((first + s) % W) * C + static_cast<long>(h) * HD;
        T dot = T(0);
        for (int d = 0; d < HD; ++d) dot += qh[d] * kh[d];
        scratch[s] = scale * dot;
      }
      causal_softmax_row(scratch, count - 1, count);
      T* oh = out + static_cast<long>(i) * C + static_cast<long>(h) * HD;
      std::fill(oh, oh + HD, T(0));
      for (int s = 0; s < count; ++s) {
        const T* vh = vc + ((first + s) % W) * C + static_cast<long>(h) * HD;
        for (int d = 0; d < HD; ++d) oh[d] += scratch[s] * vh[d];
      }
    }
  }
}

#define SY_INSTANTIATE(T)                                                                         \
  template void attention_cached_forward<T>(T*, T*, const T*, int, const T*, const T*, int, long, \
                                            int, int, int);                                       \
  template void attention_forward<T>(T*, T*, const T*, int, int, int, int);                       \
  template void attention_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int, int);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy::cpu

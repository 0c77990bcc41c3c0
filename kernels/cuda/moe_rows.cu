// Dispatch (gather), combine and SwiGLU on the GPU (see moe_ops.h). Everything that adds several
// rows into one token row runs per token over its K slots in order, so there are no atomics.
#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/moe_ops.h"

namespace sy::cuda {

namespace {

constexpr int kRowsPerBlock = kBlock / kWarp;

#define SY_GRID_STRIDE(idx, total)                                                         \
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < (total); \
       idx += static_cast<long>(gridDim.x) * blockDim.x)

template <class T>
__global__ void gather_kernel(T* xs, const T* m, const int32_t* row_token, int A, int C) {
  SY_GRID_STRIDE(idx, static_cast<long>(A) * C) {
    const long r = idx / C, c = idx % C;
    xs[idx] = m[static_cast<long>(row_token[r]) * C + c];
  }
}

template <class T>
__global__ void gather_backward_kernel(T* dm, const T* dxs, const int32_t* slot_row, int N, int K,
                                       int C) {
  SY_GRID_STRIDE(idx, static_cast<long>(N) * C) {
    const long n = idx / C, c = idx % C;
    float acc = to_f32(dm[idx]);
    for (int j = 0; j < K; ++j) {
      const int r = slot_row[n * K + j];
      if (r >= 0) acc += to_f32(dxs[static_cast<long>(r) * C + c]);
    }
    dm[idx] = from_f32<T>(acc);
  }
}

template <class T>
__global__ void combine_kernel(T* out, const T* ys, const int32_t* slot_row, const float* row_gate,
                               int N, int K, int C) {
  SY_GRID_STRIDE(idx, static_cast<long>(N) * C) {
    const long n = idx / C, c = idx % C;
    float acc = to_f32(out[idx]);
    for (int j = 0; j < K; ++j) {
      const int r = slot_row[n * K + j];
      if (r >= 0) acc += row_gate[r] * to_f32(ys[static_cast<long>(r) * C + c]);
    }
    out[idx] = from_f32<T>(acc);
  }
}

template <class T>
__global__ void combine_backward_dys_kernel(T* dys, const T* dout, const int32_t* row_token,
                                            const float* row_gate, int A, int C) {
  SY_GRID_STRIDE(idx, static_cast<long>(A) * C) {
    const long r = idx / C, c = idx % C;
    dys[idx] = from_f32<T>(row_gate[r] * to_f32(dout[static_cast<long>(row_token[r]) * C + c]));
  }
}

template <class T>
__global__ void gather_i64_kernel(T* out, const T* src, const int64_t* idx, long n, int W) {
  SY_GRID_STRIDE(i, n * W) {
    const long r = i / W, c = i % W;
    out[i] = src[idx[r] * W + c];
  }
}

template <class T>
__global__ void segment_sum_kernel(T* out, const T* src, const int64_t* begin, const int64_t* pos,
                                   long n, int W) {
  SY_GRID_STRIDE(i, n * W) {
    const long r = i / W, c = i % W;
    float acc = 0.0f;
    for (int64_t p = begin[r]; p < begin[r + 1]; ++p) acc += to_f32(src[pos[p] * W + c]);
    out[i] = from_f32<T>(acc);
  }
}

// One warp per slot q = n*K+j: dgates[q] = dot(dout[n,:], ys[slot_row[q],:]).
template <class T>
__global__ void combine_backward_dgates_kernel(float* dgates, const T* dout, const T* ys,
                                               const int32_t* slot_row, int NK, int K, int C) {
  const int q = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (q >= NK) return;
  const int r = slot_row[q];
  if (r < 0) {  // dropped: contributed nothing, no gradient
    if (lane == 0) dgates[q] = 0.0f;
    return;
  }
  const T* dy = dout + static_cast<long>(q / K) * C;
  const T* y = ys + static_cast<long>(r) * C;
  float dot = 0.0f;
  for (int c = lane; c < C; c += kWarp) dot += to_f32(dy[c]) * to_f32(y[c]);
  dot = warp_sum(dot);
  if (lane == 0) dgates[q] = dot;
}

// sigmoid as 1/(1+exp(-a)): very negative a gives exp -> inf, sigmoid -> 0, never NaN.
template <class T>
__global__ void swiglu_forward_kernel(T* h, const T* a, const T* b, long n) {
  SY_GRID_STRIDE(i, n) {
    const float x = to_f32(a[i]);
    const float s = 1.0f / (1.0f + expf(-x));
    h[i] = from_f32<T>(x * s * to_f32(b[i]));
  }
}

template <class T>
__global__ void swiglu_backward_kernel(T* da, T* db, const T* dh, const T* a, const T* b, long n) {
  SY_GRID_STRIDE(i, n) {
    const float g = to_f32(dh[i]);  // read before da (which may alias dh) is written
    const float x = to_f32(a[i]);
    const float s = 1.0f / (1.0f + expf(-x));
    const float bi = to_f32(b[i]);
    da[i] = from_f32<T>(g * bi * s * (1.0f + x * (1.0f - s)));
    db[i] = from_f32<T>(g * x * s);
  }
}

#undef SY_GRID_STRIDE

}  // namespace

template <class T>
void gather_rows_forward(T* xs, const T* m, const int32_t* row_token, int A, int C,
                         cudaStream_t stream) {
  const long total = static_cast<long>(A) * C;
  if (total == 0) return;
  gather_kernel<<<grid_for(total), kBlock, 0, stream>>>(xs, m, row_token, A, C);
  SY_CUDA_LAUNCH_CHECK("gather_kernel");
}

template <class T>
void gather_rows_backward(T* dm, const T* dxs, const int32_t* slot_row, int N, int K, int C,
                          cudaStream_t stream) {
  const long total = static_cast<long>(N) * C;
  if (total == 0) return;
  gather_backward_kernel<<<grid_for(total), kBlock, 0, stream>>>(dm, dxs, slot_row, N, K, C);
  SY_CUDA_LAUNCH_CHECK("gather_backward_kernel");
}

template <class T>
void combine_forward(T* out, const T* ys, const int32_t* slot_row, const float* row_gate, int N,
                     int K, int C, cudaStream_t stream) {
  const long total = static_cast<long>(N) * C;
  if (total == 0) return;
  combine_kernel<<<grid_for(total), kBlock, 0, stream>>>(out, ys, slot_row, row_gate, N, K, C);
  SY_CUDA_LAUNCH_CHECK("combine_kernel");
}

template <class T>
void combine_backward(T* dys, float* dgates, const T* dout, const T* ys, const int32_t* row_token,
                      const float* row_gate, const int32_t* slot_row, int A, int N, int K, int C,
                      cudaStream_t stream) {
  const long total = static_cast<long>(A) * C;
  if (total > 0) {
    combine_backward_dys_kernel<<<grid_for(total), kBlock, 0, stream>>>(dys, dout, row_token,
                                                                        row_gate, A, C);
    SY_CUDA_LAUNCH_CHECK("combine_backward_dys_kernel");
  }
  // Slots are int32 here as in the layout (moe_layout refuses N * K past INT32_MAX): the product
  // in long, so that a caller that skipped the layout is refused, not wrapped.
  const long NK = static_cast<long>(N) * K;
  if (NK > INT32_MAX)
    throw std::invalid_argument("combine_backward: " + std::to_string(N) + " tokens x top-k " +
                                std::to_string(K) + " slots exceed int32");
  if (NK > 0) {
    const auto blocks = static_cast<unsigned>((NK + kRowsPerBlock - 1) / kRowsPerBlock);
    combine_backward_dgates_kernel<<<blocks, kBlock, 0, stream>>>(dgates, dout, ys, slot_row,
                                                                  static_cast<int>(NK), K, C);
    SY_CUDA_LAUNCH_CHECK("combine_backward_dgates_kernel");
  }
}

template <class T>
void swiglu_forward(T* h, const T* a, const T* b, long n, cudaStream_t stream) {
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(h, a, b, n);
  SY_CUDA_LAUNCH_CHECK("swiglu_forward_kernel");
}

template <class T>
void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, long n,
                     cudaStream_t stream) {
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(da, db, dh, a, b, n);
  SY_CUDA_LAUNCH_CHECK("swiglu_backward_kernel");
}

template <class T>
void gather_rows(T* out, const T* src, const int64_t* idx, long n, int W, cudaStream_t stream) {
  const long total = n * W;
  if (total == 0) return;
  gather_i64_kernel<<<grid_for(total), kBlock, 0, stream>>>(out, src, idx, n, W);
  SY_CUDA_LAUNCH_CHECK("gather_i64_kernel");
}

template <class T>
void segment_sum_rows(T* out, const T* src, const int64_t* begin, const int64_t* pos, long n, int W,
                      cudaStream_t stream) {
  const long total = n * W;
  if (total == 0) return;
  segment_sum_kernel<<<grid_for(total), kBlock, 0, stream>>>(out, src, begin, pos, n, W);
  SY_CUDA_LAUNCH_CHECK("segment_sum_kernel");
}

#define SY_INSTANTIATE(T)                                                                         \
  template void gather_rows_forward<T>(T*, const T*, const int32_t*, int, int, cudaStream_t);     \
  template void gather_rows_backward<T>(T*, const T*, const int32_t*, int, int, int,              \
                                        cudaStream_t);                                            \
  template void combine_forward<T>(T*, const T*, const int32_t*, const float*, int, int, int,     \
                                   cudaStream_t);                                                 \
  template void combine_backward<T>(T*, float*, const T*, const T*, const int32_t*, const float*, \
                                    const int32_t*, int, int, int, int, cudaStream_t);            \
  template void swiglu_forward<T>(T*, const T*, const T*, long, cudaStream_t);                    \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, long, cudaStream_t);     \
  template void gather_rows<T>(T*, const T*, const int64_t*, long, int, cudaStream_t);            \
  template void segment_sum_rows<T>(T*, const T*, const int64_t*, const int64_t*, long, int,      \
                                    cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

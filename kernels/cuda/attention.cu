// Causal multi-head attention (see ops.h): heads are copied out of the fused qkv[N,3C] into a
// contiguous [3,B,NH,T,HD] block, so each product is one cuBLAS strided-batched GEMM over the
// B*NH heads; the causal softmax (and its backward) is one warp per score row.
#include <cmath>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {

namespace {

constexpr int kRowsPerBlock = kBlock / kWarp;

// dst[nb,B,NH,T,HD] (=) src[N, nb*C] split by block and head (nb = 3 for qkv, 1 for dout).
template <class T>
__global__ void split_heads_kernel(T* dst, const T* src, int B, int T_, int C, int NH, int nb) {
  const int HD = C / NH;
  const long width = static_cast<long>(nb) * C;
  const long total = static_cast<long>(B) * T_ * width;
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long>(gridDim.x) * blockDim.x) {
    const long n = idx / width;
    const int j = static_cast<int>(idx % width);
    const int b = static_cast<int>(n / T_), t = static_cast<int>(n % T_);
    const int blk = j / C, h = (j % C) / HD, d = j % HD;
    dst[(((static_cast<long>(blk) * B + b) * NH + h) * T_ + t) * HD + d] = src[idx];
  }
}

// dst[N, nb*C] (=) the inverse of split_heads.
template <class T>
__global__ void merge_heads_kernel(T* dst, const T* src, int B, int T_, int C, int NH, int nb) {
  const int HD = C / NH;
  const long width = static_cast<long>(nb) * C;
  const long total = static_cast<long>(B) * T_ * width;
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long>(gridDim.x) * blockDim.x) {
    const long n = idx / width;
    const int j = static_cast<int>(idx % width);
    const int b = static_cast<int>(n / T_), t = static_cast<int>(n % T_);
    const int blk = j / C, h = (j % C) / HD, d = j % HD;
    dst[idx] = src[(((static_cast<long>(blk) * B + b) * NH + h) * T_ + t) * HD + d];
  }
}

// att rows [rows = B*NH*T, T] in place: softmax over s <= t (t = row % T), zeros above.
template <class T>
__global__ void causal_softmax_kernel(T* att, long rows, int T_) {
  const long r = blockIdx.x * static_cast<long>(kRowsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= rows) return;  // uniform per warp
  const int t = static_cast<int>(r % T_);
  T* row = att + r * T_;
  float mx = -INFINITY;
  for (int s = lane; s <= t; s += kWarp) mx = fmaxf(mx, to_f32(row[s]));
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int s = lane; s <= t; s += kWarp) sum += expf(to_f32(row[s]) - mx);
  sum = warp_sum(sum);
  const float inv = 1.0f / sum;
  for (int s = lane; s < T_; s += kWarp)
    row[s] = s <= t ? from_f32<T>(expf(to_f32(row[s]) - mx) * inv) : from_f32<T>(0.0f);
}

// datt rows (=) att * (datt - rowsum(att * datt)) for s <= t, zeros above.
template <class T>
__global__ void causal_softmax_backward_kernel(T* datt, const T* att, long rows, int T_) {
  const long r = blockIdx.x * static_cast<long>(kRowsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const int t = static_cast<int>(r % T_);
  const T* a = att + r * T_;
  T* d = datt + r * T_;
  float dot = 0.0f;
  for (int s = lane; s <= t; s += kWarp) dot += to_f32(a[s]) * to_f32(d[s]);
  dot = warp_sum(dot);
  for (int s = lane; s < T_; s += kWarp)
    d[s] = s <= t ? from_f32<T>(to_f32(a[s]) * (to_f32(d[s]) - dot)) : from_f32<T>(0.0f);
}

template <class T>
void split_heads(T* dst, const T* src, int B, int T_, int C, int NH, int nb, cudaStream_t st) {
  const long total = static_cast<long>(B) * T_ * nb * C;
  if (total == 0) return;
  split_heads_kernel<<<grid_for(total), kBlock, 0, st>>>(dst, src, B, T_, C, NH, nb);
  SY_CUDA_LAUNCH_CHECK("split_heads_kernel");
}

template <class T>
void merge_heads(T* dst, const T* src, int B, int T_, int C, int NH, int nb, cudaStream_t st) {
  const long total = static_cast<long>(B) * T_ * nb * C;
  if (total == 0) return;
  merge_heads_kernel<<<grid_for(total), kBlock, 0, st>>>(dst, src, B, T_, C, NH, nb);
  SY_CUDA_LAUNCH_CHECK("merge_heads_kernel");
}

unsigned row_blocks(long rows) {
  return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}

}  // namespace

long attention_forward_scratch(int B, int T_, int C, int /*NH*/) {
  return 4L * B * T_ * C;
}
long attention_backward_scratch(int B, int T_, int C, int NH) {
  return 7L * B * T_ * C + static_cast<long>(B) * NH * T_ * T_;
}

// scratch: qkvh [3,B,NH,T,HD] then yh [B,NH,T,HD].
template <class T>
void attention_forward(T* out, T* att, T* scratch, const T* qkv, int B, int T_, int C, int NH,
                       cublasHandle_t cublas, cudaStream_t stream) {
  const int HD = C / NH, BH = B * NH;
  const long NC = static_cast<long>(B) * T_ * C, head = static_cast<long>(T_) * HD;
  if (NC == 0) return;
  T* q = scratch;
  T* k = q + NC;
  T* v = k + NC;
  T* yh = v + NC;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HD)));
  split_heads(scratch, qkv, B, T_, C, NH, 3, stream);
  // att[bh] = scale * q[bh] @ k[bh]^T          [T,T]
  gemm_strided_batched<T, T>(cublas, false, true, T_, T_, HD, scale, q, HD, head, k, HD, head, 0.0f,
                             att, T_, static_cast<long>(T_) * T_, BH);
  const long rows = static_cast<long>(BH) * T_;
  causal_softmax_kernel<<<row_blocks(rows), kBlock, 0, stream>>>(att, rows, T_);
  SY_CUDA_LAUNCH_CHECK("causal_softmax_kernel");
  // yh[bh] = att[bh] @ v[bh]                    [T,HD]
  gemm_strided_batched<T, T>(cublas, false, false, T_, HD, T_, 1.0f, att, T_,
                             static_cast<long>(T_) * T_, v, HD, head, 0.0f, yh, HD, head, BH);
  merge_heads(out, yh, B, T_, C, NH, 1, stream);
}

// scratch: qkvh [3,B,NH,T,HD], dqkvh [3,B,NH,T,HD], dyh [B,NH,T,HD], datt [B,NH,T,T].
//   datt = dy v^T, dv = att^T dy, dS = softmax_backward(att, datt),
//   dq = scale dS k, dk = scale dS^T q.
template <class T>
void attention_backward(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                        int T_, int C, int NH, cublasHandle_t cublas, cudaStream_t stream) {
  const int HD = C / NH, BH = B * NH;
  const long NC = static_cast<long>(B) * T_ * C, head = static_cast<long>(T_) * HD;
  const long TT = static_cast<long>(T_) * T_;
  if (NC == 0) return;
  T* q = scratch;
  T* k = q + NC;
  T* v = k + NC;
  T* dq = v + NC;
  T* dk = dq + NC;
  T* dv = dk + NC;
  T* dyh = dv + NC;
  T* datt = dyh + NC;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HD)));
  split_heads(q, qkv, B, T_, C, NH, 3, stream);
  split_heads(dyh, dout, B, T_, C, NH, 1, stream);
  gemm_strided_batched<T, T>(cublas, false, true, T_, T_, HD, 1.0f, dyh, HD, head, v, HD, head,
                             0.0f, datt, T_, TT, BH);
  gemm_strided_batched<T, T>(cublas, true, false, T_, HD, T_, 1.0f, att, T_, TT, dyh, HD, head,
                             0.0f, dv, HD, head, BH);
  const long rows = static_cast<long>(BH) * T_;
  causal_softmax_backward_kernel<<<row_blocks(rows), kBlock, 0, stream>>>(datt, att, rows, T_);
  SY_CUDA_LAUNCH_CHECK("causal_softmax_backward_kernel");
  gemm_strided_batched<T, T>(cublas, false, false, T_, HD, T_, scale, datt, T_, TT, k, HD, head,
                             0.0f, dq, HD, head, BH);
  gemm_strided_batched<T, T>(cublas, true, false, T_, HD, T_, scale, datt, T_, TT, q, HD, head,
                             0.0f, dk, HD, head, BH);
  merge_heads(dqkv, dq, B, T_, C, NH, 3, stream);
}

#define SY_INSTANTIATE(T)                                                                       \
  template void attention_forward<T>(T*, T*, T*, const T*, int, int, int, int, cublasHandle_t,  \
                                     cudaStream_t);                                             \
  template void attention_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int, int, \
                                      cublasHandle_t, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

// RMSNorm forward/backward (see ops.h): one warp per token row for the row reductions, one thread
// per column for the gain gradient (rows summed in order: deterministic, no atomics).
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {

namespace {

constexpr int kRowsPerBlock = kBlock / kWarp;

// out[N,C], rstd[N] (=); x: [N,C], g: [C].
template <class T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* x, const float* g, int N,
                                       int C, float eps) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (n >= N) return;  // whole warps exit together: n is uniform in a warp
  const T* xr = x + static_cast<long>(n) * C;
  float ss = 0.0f;
  for (int c = lane; c < C; c += kWarp) {
    const float v = to_f32(xr[c]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  T* yr = out + static_cast<long>(n) * C;
  for (int c = lane; c < C; c += kWarp) yr[c] = from_f32<T>(to_f32(xr[c]) * r * g[c]);
  if (lane == 0) rstd[n] = r;
}

// dx[N,C] (=): dx_j = r g_j dy_j - (r^3 / C) x_j sum_i(dy_i g_i x_i).
template <class T>
__global__ void rmsnorm_backward_dx_kernel(T* dx, const T* dout, const T* x, const float* g,
                                           const float* rstd, int N, int C) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (n >= N) return;
  const long row = static_cast<long>(n) * C;
  float dot = 0.0f;
  for (int c = lane; c < C; c += kWarp) dot += to_f32(dout[row + c]) * g[c] * to_f32(x[row + c]);
  dot = warp_sum(dot);
  const float r = rstd[n];
  const float coef = dot * r * r * r / static_cast<float>(C);
  for (int c = lane; c < C; c += kWarp)
    dx[row + c] = from_f32<T>(r * g[c] * to_f32(dout[row + c]) - coef * to_f32(x[row + c]));
}

// dg[C] (+=) sum_n dout[n,c] x[n,c] rstd[n]. A block owns kDgCols columns; its kDgRows thread
// rows take every kDgRows-th token row, then the partial sums are added in a fixed order in
// shared memory: deterministic (no atomics) with kDgRows times the parallelism of one thread
// per column.
constexpr int kDgCols = 32, kDgRows = 16;
template <class T>
__global__ void rmsnorm_backward_dg_kernel(float* dg, const T* dout, const T* x, const float* rstd,
                                           int N, int C) {
  __shared__ float partial[kDgRows][kDgCols];
  const int c = blockIdx.x * kDgCols + threadIdx.x;
  float acc = 0.0f;
  if (c < C) {
    for (int n = threadIdx.y; n < N; n += kDgRows) {
      const long i = static_cast<long>(n) * C + c;
      acc += to_f32(dout[i]) * to_f32(x[i]) * rstd[n];
    }
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float sum = 0.0f;
    for (int r = 0; r < kDgRows; ++r) sum += partial[r][threadIdx.x];
    dg[c] += sum;
  }
}

}  // namespace

template <class T>
void rmsnorm_forward(T* out, float* rstd, const T* x, const float* g, int N, int C, double eps,
                     cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const unsigned blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  rmsnorm_forward_kernel<<<blocks, kBlock, 0, stream>>>(out, rstd, x, g, N, C,
                                                        static_cast<float>(eps));
  SY_CUDA_LAUNCH_CHECK("rmsnorm_forward_kernel");
}

template <class T>
void rmsnorm_backward(T* dx, float* dg, const T* dout, const T* x, const float* g,
                      const float* rstd, int N, int C, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const unsigned blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  rmsnorm_backward_dx_kernel<<<blocks, kBlock, 0, stream>>>(dx, dout, x, g, rstd, N, C);
  SY_CUDA_LAUNCH_CHECK("rmsnorm_backward_dx_kernel");
  const dim3 dg_block(kDgCols, kDgRows);
  rmsnorm_backward_dg_kernel<<<(C + kDgCols - 1) / kDgCols, dg_block, 0, stream>>>(dg, dout, x,
                                                                                   rstd, N, C);
  SY_CUDA_LAUNCH_CHECK("rmsnorm_backward_dg_kernel");
}

#define SY_INSTANTIATE(T)                                                                       \
  template void rmsnorm_forward<T>(T*, float*, const T*, const float*, int, int, double,        \
                                   cudaStream_t);                                               \
  template void rmsnorm_backward<T>(T*, float*, const T*, const T*, const float*, const float*, \
                                    int, int, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

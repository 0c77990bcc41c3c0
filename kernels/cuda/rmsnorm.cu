// RMSNorm forward/backward (see ops.h): one warp per token row for the row reductions; the gain
// gradient in two passes over chunks of rows (a fixed order: deterministic, no atomics).
#include <string>

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

// The gain gradient dg[C] (+=) sum_n dout[n,c] x[n,c] rstd[n], in two passes so that the rows
// spread over many blocks (N = 65 536 rows of gpu-medium over 32 column blocks alone would leave
// most of the GPU idle):
//   1. block (column block b, row chunk s) owns kDgCols columns and rows [s*kDgChunk, ...): its
//      kDgRows thread rows take every kDgRows-th row of the chunk, then add their partial sums
//      in a fixed order into partial[s, c];
//   2. thread c: dg[c] += partial[0, c] + partial[1, c] + ... in chunk order.
constexpr int kDgCols = 32, kDgRows = 16, kDgChunk = 1024;

int dg_chunks(int N) {
  return (N + kDgChunk - 1) / kDgChunk;
}

template <class T>
__global__ void rmsnorm_dg_partial_kernel(float* partial, const T* dout, const T* x,
                                          const float* rstd, int N, int C) {
  __shared__ float rows[kDgRows][kDgCols];
  const int c = blockIdx.x * kDgCols + threadIdx.x;
  const int n0 = blockIdx.y * kDgChunk, n1 = min(N, n0 + kDgChunk);
  float acc = 0.0f;
  if (c < C) {
    for (int n = n0 + threadIdx.y; n < n1; n += kDgRows) {
      const long i = static_cast<long>(n) * C + c;
      acc += to_f32(dout[i]) * to_f32(x[i]) * rstd[n];
    }
  }
  rows[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float sum = 0.0f;
    for (int r = 0; r < kDgRows; ++r) sum += rows[r][threadIdx.x];
    partial[static_cast<long>(blockIdx.y) * C + c] = sum;
  }
}

__global__ void rmsnorm_dg_sum_kernel(float* dg, const float* partial, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.0f;
  for (int s = 0; s < chunks; ++s) sum += partial[static_cast<long>(s) * C + c];
  dg[c] += sum;
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

long rmsnorm_backward_scratch(int N, int C) {
  return static_cast<long>(dg_chunks(N)) * C + 1;
}

template <class T>
void rmsnorm_backward(T* dx, float* dg, const T* dout, const T* x, const float* g,
                      const float* rstd, int N, int C, float* scratch, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const int chunks = dg_chunks(N);
  if (chunks > 65535)  // grid.y; checked before anything is written
    throw CudaError("rmsnorm_backward: " + std::to_string(N) + " rows exceed " +
                    std::to_string(65535L * kDgChunk) + " (the gain gradient's row chunks)");
  const unsigned blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  rmsnorm_backward_dx_kernel<<<blocks, kBlock, 0, stream>>>(dx, dout, x, g, rstd, N, C);
  SY_CUDA_LAUNCH_CHECK("rmsnorm_backward_dx_kernel");
  const dim3 dg_grid((C + kDgCols - 1) / kDgCols, chunks), dg_block(kDgCols, kDgRows);
  rmsnorm_dg_partial_kernel<<<dg_grid, dg_block, 0, stream>>>(scratch, dout, x, rstd, N, C);
  SY_CUDA_LAUNCH_CHECK("rmsnorm_dg_partial_kernel");
  rmsnorm_dg_sum_kernel<<<(C + kBlock - 1) / kBlock, kBlock, 0, stream>>>(dg, scratch, chunks, C);
  SY_CUDA_LAUNCH_CHECK("rmsnorm_dg_sum_kernel");
}

#define SY_INSTANTIATE(T)                                                                       \
  template void rmsnorm_forward<T>(T*, float*, const T*, const float*, int, int, double,        \
                                   cudaStream_t);                                               \
  template void rmsnorm_backward<T>(T*, float*, const T*, const T*, const float*, const float*, \
                                    int, int, float*, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

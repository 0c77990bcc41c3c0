// Device-side helpers shared by the .cu files: element loads/stores for fp32 and bf16 storage
// (all arithmetic in fp32), grid sizing that never launches an empty grid, and warp/block sums.
// Only .cu files include this (it needs nvcc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace sy::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f32(float x) {
  return x;
}
__device__ __forceinline__ float to_f32(bf16 x) {
  return __bfloat162float(x);
}
template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) {
  return __float2bfloat16_rn(x);
}

constexpr int kBlock = 256;  // threads of the 1-D kernels
constexpr int kWarp = 32;

// Blocks for a grid-stride loop over n elements: at least 1 (callers return early on n == 0),
// capped so the grid stays within limits for any n.
inline unsigned grid_for(long n, int block = kBlock) {
  const long blocks = (n + block - 1) / block;
  return static_cast<unsigned>(std::clamp<long>(blocks, 1, 65535L * 16));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum_f64(double v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace sy::cuda

namespace sy::cuda {

// Sum / max over the whole block (blockDim.x a multiple of 32, <= 1024); every thread gets the
// result. Uses 32 floats of shared memory and two __syncthreads, so all threads must call it.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int num_warps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float total = lane < num_warps ? partial[lane] : 0.0f;
  return warp_sum(total);
}
// The same in double (fp32 data, fp64 reductions: gradient norms, aux/z loss sums).
__device__ __forceinline__ double block_sum_f64(double v) {
  __shared__ double partial[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum_f64(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  double total = lane < static_cast<int>(blockDim.x / kWarp) ? partial[lane] : 0.0;
  return warp_sum_f64(total);
}
__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int num_warps = blockDim.x / kWarp;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float m = lane < num_warps ? partial[lane] : -INFINITY;
  return warp_max(m);
}

}  // namespace sy::cuda

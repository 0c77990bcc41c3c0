// Embedding lookup, residual add and type conversion (see ops.h).
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {

namespace {

// One thread per output element (grid-stride).
template <class T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const float* emb, int N,
                                         int C) {
  const long total = static_cast<long>(N) * C;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const long n = i / C, c = i % C;
    out[i] = from_f32<T>(emb[static_cast<long>(tokens[n]) * C + c]);
  }
}

__global__ void iota_kernel(int32_t* out, int n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    out[i] = static_cast<int32_t>(i);
}

// One thread per (sorted index i, column c), c fastest (so a warp reads consecutive columns of
// one dout row). The thread at the head of a run of equal tokens v finds the run's end by binary
// search and adds the run's rows, in increasing position n, to demb[v, c]: the CPU's additions in
// the CPU's order (the loads are independent, so they overlap; only the adds chain). The other
// threads return at once.
template <class T>
__global__ void embedding_backward_kernel(float* demb, const T* dout, const int32_t* sorted_tokens,
                                          const int32_t* positions, int N, int C) {
  const long total = static_cast<long>(N) * C;
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx / C), c = static_cast<int>(idx % C);
    const int32_t v = sorted_tokens[i];
    if (i > 0 && sorted_tokens[i - 1] == v) continue;
    int end = i + 1, hi = N;  // the first index past the run: sorted_tokens[end] > v
    while (end < hi) {
      const int mid = end + (hi - end) / 2;
      if (sorted_tokens[mid] <= v)
        end = mid + 1;
      else
        hi = mid;
    }
    float* out = demb + static_cast<long>(v) * C + c;
    float acc = *out;
#pragma unroll 8
    for (int j = i; j < end; ++j) acc += to_f32(dout[static_cast<long>(positions[j]) * C + c]);
    *out = acc;
  }
}

template <class T>
__global__ void residual_kernel(T* out, const T* a, const T* b, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

template <class TD, class TS>
__global__ void convert_kernel(TD* dst, const TS* src, long n) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    dst[i] = from_f32<TD>(to_f32(src[i]));
}

}  // namespace

template <class T>
void embedding_forward(T* out, const int32_t* tokens, const float* emb, int N, int C,
                       cudaStream_t stream) {
  const long total = static_cast<long>(N) * C;
  if (total == 0) return;
  embedding_forward_kernel<<<grid_for(total), kBlock, 0, stream>>>(out, tokens, emb, N, C);
  SY_CUDA_LAUNCH_CHECK("embedding_forward_kernel");
}

template <class T>
void EmbeddingBackward::run(float* demb, const T* dout, const int32_t* tokens, int N, int C,
                            cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  const auto n = static_cast<size_t>(N);
  sorted_tokens_.resize(n);
  positions_.resize(n);
  sorted_positions_.resize(n);
  iota_kernel<<<grid_for(N), kBlock, 0, stream>>>(positions_.data(), N);
  SY_CUDA_LAUNCH_CHECK("iota_kernel");
  // Token ids are in [0, 2^31): 31 key bits.
  size_t scratch_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, tokens, sorted_tokens_.data(),
                                             positions_.data(), sorted_positions_.data(), N, 0, 31,
                                             stream));
  sort_scratch_.resize(std::max<size_t>(scratch_bytes, 1));
  // cub's own tile states are set by cub; zeroing the rest keeps initcheck from reporting cub's
  // reads of padding it never wrote (NVIDIA/cccl#1891).
  sort_scratch_.fill_bytes_async(0, stream);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_scratch_.data(), scratch_bytes, tokens,
                                             sorted_tokens_.data(), positions_.data(),
                                             sorted_positions_.data(), N, 0, 31, stream));
  const long total = static_cast<long>(N) * C;
  embedding_backward_kernel<<<grid_for(total), kBlock, 0, stream>>>(
      demb, dout, sorted_tokens_.data(), sorted_positions_.data(), N, C);
  SY_CUDA_LAUNCH_CHECK("embedding_backward_kernel");
}

template <class T>
void residual_forward(T* out, const T* a, const T* b, long n, cudaStream_t stream) {
  if (n == 0) return;
  residual_kernel<<<grid_for(n), kBlock, 0, stream>>>(out, a, b, n);
  SY_CUDA_LAUNCH_CHECK("residual_kernel");
}

template <class TD, class TS>
void convert(TD* dst, const TS* src, long n, cudaStream_t stream) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n), kBlock, 0, stream>>>(dst, src, n);
  SY_CUDA_LAUNCH_CHECK("convert_kernel");
}

#define SY_INSTANTIATE(T)                                                                       \
  template void embedding_forward<T>(T*, const int32_t*, const float*, int, int, cudaStream_t); \
  template void EmbeddingBackward::run<T>(float*, const T*, const int32_t*, int, int,           \
                                          cudaStream_t);                                        \
  template void residual_forward<T>(T*, const T*, const T*, long, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE
template void convert<bf16, float>(bf16*, const float*, long, cudaStream_t);
template void convert<float, bf16>(float*, const bf16*, long, cudaStream_t);
template void convert<float, float>(float*, const float*, long, cudaStream_t);

}  // namespace sy::cuda

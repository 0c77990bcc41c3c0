// Embedding lookup, residual add and type conversion (see ops.h).
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

// One thread per column c; it walks the tokens in order, so colliding rows add in the CPU's order
// and no two threads ever touch the same element (no atomics, deterministic).
template <class T>
__global__ void embedding_backward_kernel(float* demb, const T* dout, const int32_t* tokens, int N,
                                          int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int n = 0; n < N; ++n)
    demb[static_cast<long>(tokens[n]) * C + c] += to_f32(dout[static_cast<long>(n) * C + c]);
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
void embedding_backward(float* demb, const T* dout, const int32_t* tokens, int N, int C,
                        cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  embedding_backward_kernel<<<(C + kBlock - 1) / kBlock, kBlock, 0, stream>>>(demb, dout, tokens, N,
                                                                              C);
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

#define SY_INSTANTIATE(T)                                                                        \
  template void embedding_forward<T>(T*, const int32_t*, const float*, int, int, cudaStream_t);  \
  template void embedding_backward<T>(float*, const T*, const int32_t*, int, int, cudaStream_t); \
  template void residual_forward<T>(T*, const T*, const T*, long, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE
template void convert<bf16, float>(bf16*, const float*, long, cudaStream_t);
template void convert<float, bf16>(float*, const bf16*, long, cudaStream_t);
template void convert<float, float>(float*, const float*, long, cudaStream_t);

}  // namespace sy::cuda

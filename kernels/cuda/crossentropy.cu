// Softmax cross-entropy over the vocabulary (see ops.h): one block per token row.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {

namespace {

// losses[N], probs[N,V] (=). The target logit is read before the row is overwritten (probs may
// alias logits), and the block's reductions separate the reads from the writes.
template <class T>
__global__ void crossentropy_forward_kernel(float* losses, T* probs, const T* logits,
                                            const int32_t* targets, int V) {
  const long row = static_cast<long>(blockIdx.x) * V;
  const T* x = logits + row;
  T* p = probs + row;
  const float target_logit = to_f32(x[targets[blockIdx.x]]);
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, to_f32(x[i]));
  mx = block_max(mx);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(to_f32(x[i]) - mx);
  sum = block_sum(sum);  // also orders every read of x before the writes below
  const float inv = 1.0f / sum;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    p[i] = from_f32<T>(expf(to_f32(x[i]) - mx) * inv);
  if (threadIdx.x == 0) losses[blockIdx.x] = mx + logf(sum) - target_logit;
}

// dlogits[N,V] (=) (probs - onehot) * dlosses[n]; one thread per element.
template <class T>
__global__ void crossentropy_backward_kernel(T* dlogits, const T* probs, const int32_t* targets,
                                             const float* dlosses, int N, int V) {
  const long total = static_cast<long>(N) * V;
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long>(gridDim.x) * blockDim.x) {
    const long n = idx / V;
    const int i = static_cast<int>(idx % V);
    const float dl = dlosses[n];
    const float onehot = i == targets[n] ? 1.0f : 0.0f;
    dlogits[idx] = from_f32<T>((to_f32(probs[idx]) - onehot) * dl);
  }
}

}  // namespace

template <class T>
void crossentropy_forward(float* losses, T* probs, const T* logits, const int32_t* targets, int N,
                          int V, cudaStream_t stream) {
  if (N == 0) return;
  crossentropy_forward_kernel<<<N, kBlock, 0, stream>>>(losses, probs, logits, targets, V);
  SY_CUDA_LAUNCH_CHECK("crossentropy_forward_kernel");
}

template <class T>
void crossentropy_backward(T* dlogits, const T* probs, const int32_t* targets, const float* dlosses,
                           int N, int V, cudaStream_t stream) {
  const long total = static_cast<long>(N) * V;
  if (total == 0) return;
  crossentropy_backward_kernel<<<grid_for(total), kBlock, 0, stream>>>(dlogits, probs, targets,
                                                                       dlosses, N, V);
  SY_CUDA_LAUNCH_CHECK("crossentropy_backward_kernel");
}

#define SY_INSTANTIATE(T)                                                                      \
  template void crossentropy_forward<T>(float*, T*, const T*, const int32_t*, int, int,        \
                                        cudaStream_t);                                         \
  template void crossentropy_backward<T>(T*, const T*, const int32_t*, const float*, int, int, \
                                         cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

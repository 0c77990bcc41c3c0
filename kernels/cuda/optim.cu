// Gradient norm and AdamW kernels (see optim.h).
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/optim.h"

namespace sy::cuda {

namespace {

// Stage 1: block b sums the elements i = b*blockDim + tid (+ grid stride) into partial[b].
__global__ void sq_sum_partial_kernel(double* partial, const float* g, size_t n) {
  double acc = 0.0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double x = g[i];
    acc += x * x;
  }
  acc = block_sum_f64(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sq_sum_final_kernel(double* out, const double* partial, int num_partials) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < num_partials; i += blockDim.x) acc += partial[i];
  acc = block_sum_f64(acc);
  if (threadIdx.x == 0) *out = acc;
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, size_t n, double lr,
                             double wd, double beta1, double beta2, double eps, double bc1,
                             double bc2, double grad_scale, unsigned long long* nonfinite) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double gi = static_cast<double>(g[i]) * grad_scale;
    const double mi = beta1 * m[i] + (1.0 - beta1) * gi;
    const double vi = beta2 * v[i] + (1.0 - beta2) * gi * gi;
    const double u = (mi / bc1) / (sqrt(vi / bc2) + eps);
    const double pi = p[i];
    const float pf = static_cast<float>(pi - lr * (u + wd * pi));
    const float mf = static_cast<float>(mi), vf = static_cast<float>(vi);
    p[i] = pf;
    m[i] = mf;
    v[i] = vf;
    if (!isfinite(pf * 0.0f + mf * 0.0f + vf * 0.0f)) atomicAdd(nonfinite, 1ull);  // rare
  }
}

}  // namespace

void grad_sq_sum(double* out, double* scratch, const float* grads, size_t n, cudaStream_t stream) {
  sq_sum_partial_kernel<<<kNormBlocks, kBlock, 0, stream>>>(scratch, grads, n);
  SY_CUDA_LAUNCH_CHECK("sq_sum_partial_kernel");
  sq_sum_final_kernel<<<1, kBlock, 0, stream>>>(out, scratch, kNormBlocks);
  SY_CUDA_LAUNCH_CHECK("sq_sum_final_kernel");
}

void adamw_step(float* params, const float* grads, float* m, float* v, size_t n, double lr,
                double weight_decay, double beta1, double beta2, double eps, double bc1, double bc2,
                double grad_scale, unsigned long long* nonfinite, cudaStream_t stream) {
  if (n == 0) return;
  adamw_kernel<<<grid_for(static_cast<long>(n)), kBlock, 0, stream>>>(
      params, grads, m, v, n, lr, weight_decay, beta1, beta2, eps, bc1, bc2, grad_scale, nonfinite);
  SY_CUDA_LAUNCH_CHECK("adamw_kernel");
}

}  // namespace sy::cuda

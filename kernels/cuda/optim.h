// The optimizer side of a step on the GPU, mirroring src/optim/optim.h: the squared gradient
// norm (for global-norm clipping; the clip factor itself is host arithmetic, optim.h's
// clip_factor) and AdamW over one contiguous segment of the flat parameter buffer.
// Both keep the CPU's arithmetic: the norm is summed in double, AdamW runs in double per element
// (the CPU multiplies by precomputed reciprocals where this divides: a last-bit difference at
// most), so a GPU step matches the CPU step to rounding.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace sy::cuda {

// Blocks of the first stage of grad_sq_sum: scratch must hold this many doubles.
constexpr int kNormBlocks = 256;

// *out (=, device double) sum of grads[i]^2 over [0, n). Two stages (kNormBlocks partials, then
// one block), fixed order: the same bits every run.
void grad_sq_sum(double* out, double* scratch, const float* grads, size_t n, cudaStream_t stream);

// AdamW on one segment, per element (g = grads[i] * grad_scale, all in double):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  u = (m / bc1) / (sqrt(v / bc2) + eps)
//   p -= lr * (u + wd * p)
// params/m/v (=) updated in place; bc1 = 1 - b1^t, bc2 = 1 - b2^t (host-computed as on the CPU).
// *nonfinite (+=, device) the elements whose new p, m or v is not finite in fp32 (an update that
// overflowed: SPEC 9's numerical failure, as sy::AdamW::step counts it).
// A kBias segment is simply not passed in (the CPU skips it too).
void adamw_step(float* params, const float* grads, float* m, float* v, size_t n, double lr,
                double weight_decay, double beta1, double beta2, double eps, double bc1, double bc2,
                double grad_scale, unsigned long long* nonfinite, cudaStream_t stream);

}  // namespace sy::cuda

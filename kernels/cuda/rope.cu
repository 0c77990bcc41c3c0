// Rotary position embedding, rotate-half convention (see ops.h and kernels/cpu/rope.cpp).
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {

namespace {

// One thread per element of dst[N,3C]. Element `within` of an HD-wide q or k head pairs with
// the element half a head away. Token t of each sequence is at position pos = p0 + t. The angle
// pos * theta^(-2i/HD) comes from the [T, HD/2] tables cos_tab / sin_tab (p0 = 0: RopeTable)
// or, where they are null, is computed in double and rounded to float once, as the CPU's table
// is. sign = -1 applies the inverse rotation (the backward).
template <class T>
__global__ void rope_kernel(T* dst, const T* src, int B, int T_, int C, int NH,
                            const float* cos_tab, const float* sin_tab, double theta, float sign,
                            long p0) {
  const int HD = C / NH, half = HD / 2;
  const long C3 = 3L * C;
  const long total = static_cast<long>(B) * T_ * C3;
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long>(gridDim.x) * blockDim.x) {
    const long n = idx / C3;
    const int j = static_cast<int>(idx % C3);
    if (j >= 2 * C) {  // v: copied
      dst[idx] = src[idx];
      continue;
    }
    const long t = n % T_;
    const int within = j % HD;
    const int i = within % half;
    const long base = idx - within;  // element 0 of this head
    float c, s;
    if (cos_tab) {
      c = cos_tab[t * half + i];
      s = sign * sin_tab[t * half + i];
    } else {
      const double angle = static_cast<double>(p0 + t) * pow(theta, -2.0 * i / HD);
      c = static_cast<float>(cos(angle));
      s = sign * static_cast<float>(sin(angle));
    }
    const float x1 = to_f32(src[base + i]);
    const float x2 = to_f32(src[base + i + half]);
    dst[idx] = from_f32<T>(within < half ? x1 * c - x2 * s : x2 * c + x1 * s);
  }
}

template <class T>
void rope_launch(T* dst, const T* src, int B, int T_, int C, int NH, const RopeTable* angles,
                 double theta, float sign, long p0, cudaStream_t stream) {
  if (angles && (angles->seq_len() != T_ || angles->head_dim() != C / NH))
    throw std::invalid_argument("rope: a RopeTable for T " + std::to_string(angles->seq_len()) +
                                ", HD " + std::to_string(angles->head_dim()) + " used for T " +
                                std::to_string(T_) + ", HD " + std::to_string(C / NH));
  const long total = static_cast<long>(B) * T_ * 3L * C;
  if (total == 0) return;
  rope_kernel<<<grid_for(total), kBlock, 0, stream>>>(
      dst, src, B, T_, C, NH, angles ? angles->cos() : nullptr, angles ? angles->sin() : nullptr,
      theta, sign, p0);
  SY_CUDA_LAUNCH_CHECK("rope_kernel");
}

}  // namespace

RopeTable::RopeTable(int T, int HD, double theta) : T_(T), HD_(HD) {
  std::vector<float> c, s;
  cpu::rope_table(T, HD, theta, 0, c, s);
  cos_.upload(c);
  sin_.upload(s);
}

template <class T>
void rope_forward(T* out, const T* qkv, const RopeTable& angles, int B, int T_, int C, int NH,
                  cudaStream_t stream) {
  rope_launch(out, qkv, B, T_, C, NH, &angles, 0.0, 1.0f, 0, stream);
}

template <class T>
void rope_backward(T* dqkv, const T* dout, const RopeTable& angles, int B, int T_, int C, int NH,
                   cudaStream_t stream) {
  rope_launch(dqkv, dout, B, T_, C, NH, &angles, 0.0, -1.0f, 0, stream);
}

template <class T>
void rope_forward_from(T* out, const T* qkv, int N, int C, int NH, double theta, long p0,
                       cudaStream_t stream) {
  rope_launch<T>(out, qkv, 1, N, C, NH, nullptr, theta, 1.0f, p0, stream);
}

#define SY_INSTANTIATE(T)                                                                          \
  template void rope_forward<T>(T*, const T*, const RopeTable&, int, int, int, int, cudaStream_t); \
  template void rope_backward<T>(T*, const T*, const RopeTable&, int, int, int, int,               \
                                 cudaStream_t);                                                    \
  template void rope_forward_from<T>(T*, const T*, int, int, int, double, long, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

// Attention of new query rows over a key/value cache (incremental decoding; see ops.h). The CPU
// reference is cpu::attention_cached_forward (kernels/cpu/attention.cpp) and, for the store, the
// cache write of src/sample/decoder.cpp.
//
// Letters as ops.h, plus W the window, R the cache rows (R >= W) and n the query rows (tokens fed
// at once).
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {

namespace {

constexpr int kCachedBlock = 128;  // threads per (query, head): 4 warps
constexpr int kCachedWarps = kCachedBlock / kWarp;

// One thread per element of the k and v blocks of qkv[n,3C]: columns C..3C of row i go to row
// (p0+i) % R of kc (j < C) or vc (j >= C).
template <class T>
__global__ void kv_cache_store_kernel(T* kc, T* vc, const T* qkv, int R, long p0, int n, int C) {
  const long C2 = 2L * C, total = n * C2;
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long>(gridDim.x) * blockDim.x) {
    const long i = idx / C2;
    const int j = static_cast<int>(idx % C2);
    const long row = ((p0 + i) % R) * C;
    const T x = qkv[i * 3L * C + C + j];
    if (j < C)
      kc[row + j] = x;
    else
      vc[row + j - C] = x;
  }
}

// Block b = i * NH + h: query i (position p = p0 + i), head h. The count = p - first + 1 cached
// positions first .. p (first = max(0, p-W+1)) are row (first+s) % R, s < count.
//   scores sc[s] = scale * q.k_s   a warp per position, lanes over the head dim
//   sc[s] = exp(sc[s] - max)        threads over s; sum over the block
//   out   = sum_s sc[s] v_s / sum   warp w takes s = w, w+4, ..., lanes over d; partials in
//                                   shared memory acc[kCachedWarps, HD], summed per d
// sc is this block's row of the fp32 scratch [n*NH, W].
template <class T>
__global__ void attention_cached_kernel(T* out, float* scratch, const T* q, int ldq, const T* kc,
                                        const T* vc, int W, int R, long p0, int C, int NH,
                                        float scale) {
  extern __shared__ float acc[];  // [kCachedWarps, HD]
  const int HD = C / NH;
  const int i = static_cast<int>(blockIdx.x / NH), h = static_cast<int>(blockIdx.x % NH);
  const long p = p0 + i, first = p - W + 1 > 0 ? p - W + 1 : 0;
  const int count = static_cast<int>(p - first + 1);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  float* sc = scratch + static_cast<long>(blockIdx.x) * W;
  const T* qh = q + static_cast<long>(i) * ldq + static_cast<long>(h) * HD;
  const long col = static_cast<long>(h) * HD;

  float mx = -INFINITY;
  for (int s = warp; s < count; s += kCachedWarps) {
    const T* kh = kc + ((first + s) % R) * C + col;
    float dot = 0.0f;
    for (int d = lane; d < HD; d += kWarp) dot += to_f32(qh[d]) * to_f32(kh[d]);
    const float score = scale * warp_sum(dot);
    if (lane == 0) sc[s] = score;
    mx = fmaxf(mx, score);
  }
  mx = block_max(mx);  // its __syncthreads also publish sc
  float sum = 0.0f;
  for (int s = threadIdx.x; s < count; s += blockDim.x) {
    const float e = expf(sc[s] - mx);
    sc[s] = e;
    sum += e;
  }
  sum = block_sum(sum);  // publishes the exponentials
  for (int d = lane; d < HD; d += kWarp) {
    float a = 0.0f;
    for (int s = warp; s < count; s += kCachedWarps)
      a += sc[s] * to_f32(vc[((first + s) % R) * C + col + d]);
    acc[warp * HD + d] = a;
  }
  __syncthreads();
  const float inv = 1.0f / sum;
  for (int d = threadIdx.x; d < HD; d += blockDim.x) {
    float a = 0.0f;
    for (int w = 0; w < kCachedWarps; ++w) a += acc[w * HD + d];
    out[static_cast<long>(i) * C + col + d] = from_f32<T>(a * inv);
  }
}

}  // namespace

template <class T>
void kv_cache_store(T* kc, T* vc, const T* qkv, int R, long p0, int n, int C, cudaStream_t stream) {
  if (n > R)
    throw std::invalid_argument("kv_cache_store: " + std::to_string(n) + " rows into a cache of " +
                                std::to_string(R) + " (later rows would overwrite earlier ones)");
  const long total = 2L * n * C;
  if (total == 0) return;
  kv_cache_store_kernel<<<grid_for(total), kBlock, 0, stream>>>(kc, vc, qkv, R, p0, n, C);
  SY_CUDA_LAUNCH_CHECK("kv_cache_store_kernel");
}

long attention_cached_scratch(int n, int NH, int W) {
  return static_cast<long>(n) * NH * W;
}

template <class T>
void attention_cached_forward(T* out, float* scratch, const T* q, int ldq, const T* kc, const T* vc,
                              int W, int R, long p0, int n, int C, int NH, cudaStream_t stream) {
  if (n == 0) return;
  if (R < W)
    throw std::invalid_argument("attention_cached_forward: a cache of " + std::to_string(R) +
                                " rows cannot hold a window of " + std::to_string(W));
  const int HD = C / NH;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HD)));
  const size_t shared = sizeof(float) * kCachedWarps * static_cast<size_t>(HD);
  const unsigned blocks = static_cast<unsigned>(static_cast<long>(n) * NH);
  // Past the default 48 KiB of shared memory (this dynamic part and the kernel's static part
  // together: head dims from about 3058) a launch needs the kernel's opt-in; Hopper allows
  // 227 KiB, a larger head dim fails the launch check with the driver's message.
  static const size_t static_bytes = [] {
    cudaFuncAttributes a{};
    CUDA_CHECK(cudaFuncGetAttributes(&a, attention_cached_kernel<T>));
    return a.sharedSizeBytes;
  }();
  if (shared + static_bytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(attention_cached_kernel<T>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(shared)));
  attention_cached_kernel<<<blocks, kCachedBlock, shared, stream>>>(out, scratch, q, ldq, kc, vc, W,
                                                                    R, p0, C, NH, scale);
  SY_CUDA_LAUNCH_CHECK("attention_cached_kernel");
}

#define SY_INSTANTIATE(T)                                                                       \
  template void kv_cache_store<T>(T*, T*, const T*, int, long, int, int, cudaStream_t);         \
  template void attention_cached_forward<T>(T*, float*, const T*, int, const T*, const T*, int, \
                                            int, long, int, int, int, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

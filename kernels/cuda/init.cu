// Philox initialisation kernels (see init.h).
#include <curand_kernel.h>

#include <algorithm>

#include "kernels/cpu/philox.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/init.h"
#include "kernels/cuda/launch.cuh"

namespace sy::cuda {

namespace {

__device__ uint4 philox_block(uint64_t seed, uint64_t stream_id, uint64_t block) {
  curandStatePhilox4_32_10_t st;
  curand_init(seed, stream_id, 4 * block, &st);
  return curand4(&st);
}

// Philox block b of a parameter: its lanes that fall inside global [first, first + count) go to
// dst[index - first] (a range may start or end mid-block, as on the CPU).
__device__ void write_normal_block(float* dst, uint64_t seed, uint64_t stream_id, double init_std,
                                   uint64_t first, uint64_t count, uint64_t b) {
  const uint4 w = philox_block(seed, stream_id, b);
  double z[4];
  philox::box_muller(w.x, w.y, &z[0], &z[1]);
  philox::box_muller(w.z, w.w, &z[2], &z[3]);
  for (uint64_t lane = 0; lane < 4; ++lane) {
    const uint64_t idx = b * 4 + lane;
    if (idx >= first && idx < first + count)
      dst[idx - first] = static_cast<float>(philox::dmul(init_std, z[lane]));
  }
}

// One thread per Philox block.
__global__ void init_normal_kernel(float* dst, uint64_t seed, uint64_t stream_id, double init_std,
                                   uint64_t first, uint64_t count, uint64_t block_begin,
                                   uint64_t num_blocks) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < num_blocks;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x)
    write_normal_block(dst, seed, stream_id, init_std, first, count, block_begin + i);
}

// One block per run (grid-stride over the runs), its threads over the run's Philox blocks or
// elements.
__global__ void init_runs_kernel(float* dst, uint64_t seed, const InitRunDesc* runs,
                                 uint64_t num_runs) {
  for (uint64_t r = blockIdx.x; r < num_runs; r += gridDim.x) {
    const InitRunDesc run = runs[r];
    float* out = dst + run.local;
    if (!run.normal) {
      for (uint64_t i = threadIdx.x; i < run.count; i += blockDim.x) out[i] = run.value;
      continue;
    }
    const uint64_t b0 = run.global / 4, b1 = (run.global + run.count + 3) / 4;
    for (uint64_t b = b0 + threadIdx.x; b < b1; b += blockDim.x)
      write_normal_block(out, seed, run.stream_id, run.init_std, run.global, run.count, b);
  }
}

__global__ void fill_kernel(float* dst, float value, uint64_t count) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x)
    dst[i] = value;
}

__global__ void philox_blocks_kernel(uint32_t* words, uint64_t seed, uint64_t stream_id,
                                     uint64_t first_block, uint64_t num_blocks) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < num_blocks;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint4 w = philox_block(seed, stream_id, first_block + i);
    words[4 * i] = w.x;
    words[4 * i + 1] = w.y;
    words[4 * i + 2] = w.z;
    words[4 * i + 3] = w.w;
  }
}

}  // namespace

void init_normal(float* dst, uint64_t seed, uint64_t stream_id, double init_std, size_t first,
                 size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const uint64_t block_begin = first / 4, block_end = (first + count + 3) / 4;
  const uint64_t num_blocks = block_end - block_begin;
  init_normal_kernel<<<grid_for(static_cast<long>(num_blocks)), kBlock, 0, stream>>>(
      dst, seed, stream_id, init_std, first, count, block_begin, num_blocks);
  SY_CUDA_LAUNCH_CHECK("init_normal_kernel");
}

void init_runs(float* dst, uint64_t seed, const InitRunDesc* runs, size_t num_runs,
               cudaStream_t stream) {
  if (num_runs == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<size_t>(num_runs, 65535));
  init_runs_kernel<<<blocks, kBlock, 0, stream>>>(dst, seed, runs, num_runs);
  SY_CUDA_LAUNCH_CHECK("init_runs_kernel");
}

void fill(float* dst, float value, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  fill_kernel<<<grid_for(static_cast<long>(count)), kBlock, 0, stream>>>(dst, value, count);
  SY_CUDA_LAUNCH_CHECK("fill_kernel");
}

void philox_blocks(uint32_t* words, uint64_t seed, uint64_t stream_id, uint64_t first_block,
                   size_t num_blocks, cudaStream_t stream) {
  if (num_blocks == 0) return;
  philox_blocks_kernel<<<grid_for(static_cast<long>(num_blocks)), kBlock, 0, stream>>>(
      words, seed, stream_id, first_block, num_blocks);
  SY_CUDA_LAUNCH_CHECK("philox_blocks_kernel");
}

}  // namespace sy::cuda

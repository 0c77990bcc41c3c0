// Layout-independent initialisation on the GPU (SPEC section 2, src/model/init.h): the same
// values as the CPU, bit for bit. The raw Philox4x32-10 words come from cuRAND's device API:
//   curand_init(seed, subsequence = stream id, offset = 4 * block, &state); curand4(&state)
// returns the Philox block at counter {block lo, block hi, stream lo, stream hi} with key
// {seed lo, seed hi} -- exactly philox::normal4's counter (cuRAND's curand_init zeroes the
// counter, skipahead_sequence adds the subsequence to counter words 2-3 and skipahead(4*b) adds b
// to words 0-1). The uniform -> normal transform is philox::box_muller from
// kernels/cpu/philox.h, compiled for the device with only correctly rounded +, -, *, /, sqrt.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace sy::cuda {

// dst[0..count) (=) (float)(init_std * z[(first + i) % 4]) where z = philox::normal4(seed,
// stream_id, (first + i) / 4): elements first .. first+count-1 of a parameter.
void init_normal(float* dst, uint64_t seed, uint64_t stream_id, double init_std, size_t first,
                 size_t count, cudaStream_t stream);

// One run of a parameter's initialisation (src/model/init.h InitRun, flattened for the device):
// dst[local .. local+count) (=) elements global .. global+count-1 of a Normal(0, init_std)
// parameter of Philox stream `stream_id` when `normal`, else `value` (RMSNorm gains, the bias).
struct InitRunDesc {
  uint64_t global = 0, local = 0, count = 0, stream_id = 0;
  double init_std = 0.0;
  float value = 0.0f;
  uint32_t normal = 0;
};

// Every run of runs[num_runs] (a DEVICE array) into dst: one launch for a whole parameter table
// (a tensor-parallel shard has one run per row). Bit-identical to init_normal / fill per run.
void init_runs(float* dst, uint64_t seed, const InitRunDesc* runs, size_t num_runs,
               cudaStream_t stream);

// dst[0..count) (=) value (RMSNorm gains 1, router bias 0).
void fill(float* dst, float value, size_t count, cudaStream_t stream);

// words[4*i .. 4*i+3] (=) curand4 of the state curand_init(seed, stream_id, 4*(first_block+i))
// for i < num_blocks: the raw words, so a test can pin the counter mapping against philox.h.
void philox_blocks(uint32_t* words, uint64_t seed, uint64_t stream_id, uint64_t first_block,
                   size_t num_blocks, cudaStream_t stream);

}  // namespace sy::cuda

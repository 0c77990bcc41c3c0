// The dispatch layout: which (token, expert) assignment goes to which row of the expert-sorted
// buffer, with the SPEC capacity rule (see moe_ops.h; the CPU reference is build_layout in
// src/model/moe.cpp). Integer work only, deterministic: every row position comes from a block
// scan over slots taken in order.
#include <cub/block/block_scan.cuh>

#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/moe_ops.h"

namespace sy::cuda {

namespace {

using Scan = cub::BlockScan<int, kBlock>;

__global__ void count_kernel(int32_t* selected, const int32_t* topk_idx, int NK) {
  const long q = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (q < NK) atomicAdd(&selected[topk_idx[q]], 1);  // integer: the result is order-independent
}

// One thread: sel_offsets = scan(selected); counts = min(selected, capacity); offsets = scan.
__global__ void offsets_kernel(int32_t* sel_offsets, int32_t* counts, int32_t* offsets,
                               const int32_t* selected, int E, long capacity) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  sel_offsets[0] = 0;
  offsets[0] = 0;
  for (int e = 0; e < E; ++e) {
    const int s = selected[e];
    const int kept = capacity >= 0 && s > capacity ? static_cast<int>(capacity) : s;
    counts[e] = kept;
    sel_offsets[e + 1] = sel_offsets[e] + s;
    offsets[e + 1] = offsets[e] + kept;
  }
}

// Block e lists the slots routed to e, in slot order, at sel_list[sel_offsets[e] ..].
__global__ void list_kernel(int32_t* sel_list, const int32_t* sel_offsets, const int32_t* topk_idx,
                            int NK) {
  __shared__ typename Scan::TempStorage tmp;
  const int e = blockIdx.x;
  int running = sel_offsets[e];
  for (long base = 0; base < NK; base += kBlock) {
    const long q = base + threadIdx.x;
    const int flag = (q < NK && topk_idx[q] == e) ? 1 : 0;
    int prefix = 0, total = 0;
    Scan(tmp).ExclusiveSum(flag, prefix, total);
    if (flag) sel_list[running + prefix] = static_cast<int32_t>(q);
    running += total;
    __syncthreads();  // tmp is reused by the next chunk's scan
  }
}

// The capacity order of two of expert e's slots: higher p first (NaN lowest), then lower slot.
__device__ __forceinline__ bool ranks_before(float pa, int qa, float pb, int qb) {
  const float a = isnan(pa) ? -INFINITY : pa, b = isnan(pb) ? -INFINITY : pb;
  return a > b || (a == b && qa < qb);
}

// Block e walks its selected slots in slot order; a slot is kept when fewer than `capacity` of
// the expert's slots rank before it. Kept slots take consecutive rows (block scan), so rows are
// in token order; dropped slots get slot_row = -1.
__global__ void place_kernel(int32_t* row_token, float* row_gate, int32_t* slot_row,
                             const int32_t* sel_list, const int32_t* sel_offsets,
                             const int32_t* selected, const int32_t* offsets, const float* gates,
                             const float* probs, int E, int K, long capacity) {
  __shared__ typename Scan::TempStorage tmp;
  const int e = blockIdx.x;
  const int n_sel = selected[e];
  const int32_t* list = sel_list + sel_offsets[e];
  const bool limited = capacity >= 0 && n_sel > capacity;
  int running = offsets[e];
  for (long base = 0; base < n_sel; base += kBlock) {
    const long i = base + threadIdx.x;
    int keep = 0;
    int q = -1;
    if (i < n_sel) {
      q = list[i];
      keep = 1;
      if (limited) {
        const float p = probs[static_cast<long>(q / K) * E + e];
        long before = 0;
        for (int j = 0; j < n_sel; ++j) {
          const int qj = list[j];
          before += ranks_before(probs[static_cast<long>(qj / K) * E + e], qj, p, q) ? 1 : 0;
        }
        keep = before < capacity ? 1 : 0;
      }
    }
    int prefix = 0, total = 0;
    Scan(tmp).ExclusiveSum(keep, prefix, total);
    if (keep) {
      const int r = running + prefix;
      row_token[r] = q / K;
      row_gate[r] = gates[q];
      slot_row[q] = r;
    } else if (q >= 0) {
      slot_row[q] = -1;
    }
    running += total;
    __syncthreads();
  }
}

}  // namespace

long moe_layout_scratch(int N, int E, int K) {
  return static_cast<long>(E) + 1 + static_cast<long>(N) * K;
}

void moe_layout(int32_t* selected, int32_t* counts, int32_t* offsets, int32_t* row_token,
                float* row_gate, int32_t* slot_row, int32_t* scratch, const int32_t* topk_idx,
                const float* gates, const float* probs, int N, int E, int K, long capacity,
                cudaStream_t stream) {
  // Rows, slots and tokens are int32 in the layout (row_token, slot_row): N*K must fit.
  if (static_cast<long>(N) * K > INT32_MAX)
    throw std::invalid_argument("moe_layout: " + std::to_string(N) + " tokens x top-k " +
                                std::to_string(K) + " slots exceed the int32 row indices");
  const int NK = N * K;
  int32_t* sel_offsets = scratch;       // [E+1]
  int32_t* sel_list = scratch + E + 1;  // [NK]
  CUDA_CHECK(cudaMemsetAsync(selected, 0, sizeof(int32_t) * E, stream));
  if (NK > 0) {
    const auto blocks = static_cast<unsigned>((static_cast<long>(NK) + kBlock - 1) / kBlock);
    count_kernel<<<blocks, kBlock, 0, stream>>>(selected, topk_idx, NK);
    SY_CUDA_LAUNCH_CHECK("count_kernel");
  }
  offsets_kernel<<<1, 1, 0, stream>>>(sel_offsets, counts, offsets, selected, E, capacity);
  SY_CUDA_LAUNCH_CHECK("offsets_kernel");
  if (NK > 0) {
    list_kernel<<<E, kBlock, 0, stream>>>(sel_list, sel_offsets, topk_idx, NK);
    SY_CUDA_LAUNCH_CHECK("list_kernel");
    place_kernel<<<E, kBlock, 0, stream>>>(row_token, row_gate, slot_row, sel_list, sel_offsets,
                                           selected, offsets, gates, probs, E, K, capacity);
    SY_CUDA_LAUNCH_CHECK("place_kernel");
  }
}

}  // namespace sy::cuda

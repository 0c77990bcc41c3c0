// The dispatch layout: which (token, expert) assignment goes to which row of the expert-sorted
// buffer, with the SPEC capacity rule (see moe_ops.h; the CPU reference is build_layout in
// src/model/moe.cpp). Deterministic: every row position comes from a block scan over slots taken
// in order; over capacity, each expert's slots are ranked by a stable segmented radix sort.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

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

// The capacity order of expert e's slots: higher p first, NaN lowest, then lower slot. As a key
// for a stable descending sort of the slots listed in slot order: NaN as -inf, -0 as +0.
__global__ void rank_keys_kernel(float* keys, const int32_t* sel_list, const int32_t* topk_idx,
                                 const float* probs, int NK, int E, int K) {
  const long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (idx >= NK) return;
  const int q = sel_list[idx];
  const float p = probs[static_cast<long>(q / K) * E + topk_idx[q]];
  keys[idx] = isnan(p) ? -INFINITY : p + 0.0f;
}

// ranked[] holds each expert's slots best first: the first `capacity` of its segment are kept.
__global__ void keep_kernel(int32_t* keep, const int32_t* ranked, const int32_t* sel_offsets,
                            const int32_t* topk_idx, int NK, long capacity) {
  const long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (idx >= NK) return;
  const int q = ranked[idx];
  keep[q] = idx - sel_offsets[topk_idx[q]] < capacity ? 1 : 0;
}

// Block e walks its selected slots in slot order; a slot is kept when it is among the expert's
// `capacity` best (keep[], when the expert is over capacity). Kept slots take consecutive rows
// (block scan), so rows are in token order; dropped slots get slot_row = -1.
__global__ void place_kernel(int32_t* row_token, float* row_gate, int32_t* slot_row,
                             const int32_t* sel_list, const int32_t* sel_offsets,
                             const int32_t* selected, const int32_t* offsets, const float* gates,
                             const int32_t* keep_slot, int K, long capacity) {
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
      keep = limited ? keep_slot[q] : 1;
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

// The capacity ranking's scratch: keys and sorted keys (float), slots by rank and keep flags
// (int32), then the sort's own temporary storage at a 256-byte boundary.
constexpr long kSortAlign = 256;

size_t rank_sort_bytes(int NK, int E) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), NK, E,
      static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(nullptr)));
  return bytes;
}

// Rows, slots and tokens are int32 in the layout (row_token, slot_row): N*K must fit.
void check_slots_fit(int N, int K) {
  if (static_cast<long>(N) * K > INT32_MAX)
    throw std::invalid_argument("moe_layout: " + std::to_string(N) + " tokens x top-k " +
                                std::to_string(K) + " slots exceed the int32 row indices");
}

}  // namespace

long moe_layout_scratch(int N, int E, int K) {
  check_slots_fit(N, K);
  const long NK = static_cast<long>(N) * K;
  const long sort_words =
      (static_cast<long>(rank_sort_bytes(static_cast<int>(NK), E)) + kSortAlign + 3) / 4;
  return static_cast<long>(E) + 1 + NK + 4 * NK + sort_words;
}

void moe_layout(int32_t* selected, int32_t* counts, int32_t* offsets, int32_t* row_token,
                float* row_gate, int32_t* slot_row, int32_t* scratch, const int32_t* topk_idx,
                const float* gates, const float* probs, int N, int E, int K, long capacity,
                cudaStream_t stream) {
  check_slots_fit(N, K);
  const int NK = N * K;
  int32_t* sel_offsets = scratch;       // [E+1]
  int32_t* sel_list = scratch + E + 1;  // [NK]
  // one thread per slot (count, rank keys, keep flags)
  const auto slot_blocks = static_cast<unsigned>((static_cast<long>(NK) + kBlock - 1) / kBlock);
  CUDA_CHECK(cudaMemsetAsync(selected, 0, sizeof(int32_t) * E, stream));
  if (NK > 0) {
    count_kernel<<<slot_blocks, kBlock, 0, stream>>>(selected, topk_idx, NK);
    SY_CUDA_LAUNCH_CHECK("count_kernel");
  }
  offsets_kernel<<<1, 1, 0, stream>>>(sel_offsets, counts, offsets, selected, E, capacity);
  SY_CUDA_LAUNCH_CHECK("offsets_kernel");
  if (NK > 0) {
    list_kernel<<<E, kBlock, 0, stream>>>(sel_list, sel_offsets, topk_idx, NK);
    SY_CUDA_LAUNCH_CHECK("list_kernel");
    int32_t* keep = nullptr;
    if (capacity >= 0) {  // rank each expert's slots: a stable sort by p, descending
      auto* keys = reinterpret_cast<float*>(sel_list + NK);
      float* keys_sorted = keys + NK;
      auto* ranked = reinterpret_cast<int32_t*>(keys_sorted + NK);
      keep = ranked + NK;
      const auto base = reinterpret_cast<uintptr_t>(keep + NK);
      void* sort_tmp = reinterpret_cast<void*>((base + kSortAlign - 1) / kSortAlign * kSortAlign);
      size_t sort_bytes = rank_sort_bytes(NK, E);
      // zeroed for initcheck, as EmbeddingBackward's (cub reads padding it never wrote)
      CUDA_CHECK(cudaMemsetAsync(sort_tmp, 0, sort_bytes, stream));
      rank_keys_kernel<<<slot_blocks, kBlock, 0, stream>>>(keys, sel_list, topk_idx, probs, NK, E,
                                                           K);
      SY_CUDA_LAUNCH_CHECK("rank_keys_kernel");
      CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
          sort_tmp, sort_bytes, keys, keys_sorted, sel_list, ranked, NK, E, sel_offsets,
          sel_offsets + 1, 0, static_cast<int>(8 * sizeof(float)), stream));
      keep_kernel<<<slot_blocks, kBlock, 0, stream>>>(keep, ranked, sel_offsets, topk_idx, NK,
                                                      capacity);
      SY_CUDA_LAUNCH_CHECK("keep_kernel");
    }
    place_kernel<<<E, kBlock, 0, stream>>>(row_token, row_gate, slot_row, sel_list, sel_offsets,
                                           selected, offsets, gates, keep, K, capacity);
    SY_CUDA_LAUNCH_CHECK("place_kernel");
  }
}

}  // namespace sy::cuda

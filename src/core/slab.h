// The part of a global row-major tensor that one rank holds, as an HDF5 regular hyperslab
// (H5Sselect_hyperslab semantics): along dimension d, count[d] blocks of block[d] indices, the
// j-th block starting at start[d] + j * stride[d]. The rank's local buffer holds the selected
// elements in row-major order of their global index, which is exactly what H5Dwrite/H5Dread
// move between a contiguous memory space of numel() elements and the selection in the file.
//
// Examples for a [C, 3C] attention wqkv split over tp ranks by heads (rank r of tp):
//   start {0, r*C/tp}, stride {1, C}, count {1, 3}, block {C, C/tp}   -> local [C, 3*C/tp]
// and a replicated tensor: Slab::whole(shape).
#pragma once

#include <cstdint>
#include <vector>

namespace sy {

struct Slab {
  std::vector<int64_t> start, stride, count, block;  // one entry per dimension

  static Slab whole(const std::vector<int64_t>& shape) {
    Slab s;
    for (int64_t n : shape) {
      s.start.push_back(0);
      s.stride.push_back(n > 0 ? n : 1);
      s.count.push_back(1);
      s.block.push_back(n);
    }
    return s;
  }

  // count[d] * block[d] per dimension.
  std::vector<int64_t> local_shape() const {
    std::vector<int64_t> shape(start.size());
    for (size_t d = 0; d < shape.size(); ++d) shape[d] = count[d] * block[d];
    return shape;
  }

  int64_t numel() const {
    int64_t n = 1;
    for (size_t d = 0; d < start.size(); ++d) n *= count[d] * block[d];
    return n;
  }

  // Calls f(global_flat_index, local_flat_index, length) for every run of elements that is
  // contiguous in both the global tensor (of `global_shape`) and the local buffer: the runs along
  // the last dimension, in local order.
  template <class F>
  void for_each_run(const std::vector<int64_t>& global_shape, F&& f) const {
    const size_t nd = start.size();
    if (nd == 0) {
      f(int64_t{0}, int64_t{0}, int64_t{1});
      return;
    }
    const std::vector<int64_t> local = local_shape();
    for (int64_t n : local)
      if (n == 0) return;
    std::vector<int64_t> idx(nd, 0);  // local index of the current run's first element
    int64_t local_flat = 0;
    const int64_t last = static_cast<int64_t>(nd) - 1;
    while (true) {
      // Global flat index of local index idx; the last dimension is walked block by block.
      int64_t g_outer = 0;
      for (size_t d = 0; d + 1 < nd; ++d) {
        const int64_t gi = start[d] + (idx[d] / block[d]) * stride[d] + idx[d] % block[d];
        g_outer = g_outer * global_shape[d] + gi;
      }
      for (int64_t j = 0; j < count[last]; ++j) {
        const int64_t g = g_outer * global_shape[last] + start[last] + j * stride[last];
        f(g, local_flat, block[last]);
        local_flat += block[last];
      }
      int64_t d = last - 1;
      for (; d >= 0; --d) {
        if (++idx[d] < local[d]) break;
        idx[d] = 0;
      }
      if (d < 0) return;
    }
  }
};

}  // namespace sy

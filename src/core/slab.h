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

#include <algorithm>
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

  // The global index of local index i along dimension d.
  int64_t global_index(size_t d, int64_t i) const {
    return start[d] + (i / block[d]) * stride[d] + i % block[d];
  }

  // The local elements [first, first + n) (row-major in the local buffer) as regular hyperslabs
  // of the same global tensor, in local order, so that their numel() add up to n and their
  // elements follow each other in the buffer. At most 3 (2 nd - 1): the range is at most 2 nd - 1
  // boxes of the local shape (cut where it begins or ends inside a row, a plane, ...), and each
  // box at most three pieces along the dimension it spans in part (a partial block, whole blocks,
  // a partial block). A ZeRO-1 chunk of a parameter's moments, written and read where it lies.
  std::vector<Slab> sub_slabs(int64_t first, int64_t n) const {
    if (n <= 0) return {};
    if (first == 0 && n == numel()) return {*this};
    const size_t nd = start.size();
    const std::vector<int64_t> local = local_shape();
    std::vector<int64_t> inner(nd, 1);  // local elements per step along each dimension
    for (size_t d = nd - 1; d-- > 0;) inner[d] = inner[d + 1] * local[d + 1];
    std::vector<Slab> out;
    const int64_t end = first + n;
    for (int64_t pos = first; pos < end;) {
      // The outermost dimension d along which whole steps start at pos and fit before the end
      // (the last one always does: a step of it is one element).
      size_t d = 0;
      while (pos % inner[d] != 0 || pos + inner[d] > end) ++d;
      std::vector<int64_t> idx(nd);
      for (size_t k = 0, rest = static_cast<size_t>(pos); k < nd; ++k) {
        idx[k] = static_cast<int64_t>(rest) / inner[k];
        rest %= static_cast<size_t>(inner[k]);
      }
      const int64_t steps = std::min(local[d] - idx[d], (end - pos) / inner[d]);
      // Before d one index each, after d all of this slab, along d [idx[d], idx[d] + steps)
      // in pieces that each start a block or lie in one.
      Slab box = *this;
      for (size_t k = 0; k < d; ++k) {
        box.start[k] = global_index(k, idx[k]);
        box.stride[k] = box.count[k] = box.block[k] = 1;
      }
      for (int64_t i = idx[d], stop = idx[d] + steps; i < stop;) {
        Slab piece = box;
        const int64_t b = block[d], whole = i % b == 0 ? (stop - i) / b : 0;
        if (whole > 0) {
          piece.start[d] = global_index(d, i);
          piece.count[d] = whole;
          i += whole * b;
        } else {
          const int64_t len = std::min(b - i % b, stop - i);
          piece.start[d] = global_index(d, i);
          piece.stride[d] = piece.block[d] = len;
          piece.count[d] = 1;
          i += len;
        }
        out.push_back(std::move(piece));
      }
      pos += steps * inner[d];
    }
    return out;
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

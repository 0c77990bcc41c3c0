// Helpers of the multi-rank checkpoint tests: seeded tensor contents that every rank can compute
// for any element (the independent reference a read is compared with), slab layouts of a global
// tensor over the ranks, and a directory shared by all ranks.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/core/slab.h"

namespace sy::test {

inline int rank_of(MPI_Comm c = MPI_COMM_WORLD) {
  int r = 0;
  MPI_Comm_rank(c, &r);
  return r;
}
inline int size_of(MPI_Comm c = MPI_COMM_WORLD) {
  int n = 0;
  MPI_Comm_size(c, &n);
  return n;
}

// The value of global element `idx` of tensor `path` at `version`: a hash, so every element has
// its own bit pattern (a swapped, shifted or missing element cannot go unnoticed).
inline float pattern(const std::string& path, int64_t idx, uint64_t version = 0) {
  uint64_t h = 1469598103934665603ull ^ version;
  for (char c : path) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  uint64_t z = h + static_cast<uint64_t>(idx) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  // A finite float in (-1, 1) with 24 random mantissa bits.
  return static_cast<float>(static_cast<int64_t>(z >> 40) - (int64_t{1} << 23)) /
         static_cast<float>(1 << 23);
}

inline int64_t sum_wrong(int64_t local) {
  int64_t total = 0;
  MPI_Allreduce(&local, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

// The local buffer of `slab` filled with pattern(path, global index).
inline std::vector<float> fill_slab(const std::string& path, const std::vector<int64_t>& shape,
                                    const Slab& slab, uint64_t version = 0) {
  std::vector<float> buf(static_cast<size_t>(slab.numel()));
  slab.for_each_run(shape, [&](int64_t g, int64_t l, int64_t n) {
    for (int64_t i = 0; i < n; ++i) buf[static_cast<size_t>(l + i)] = pattern(path, g + i, version);
  });
  return buf;
}

// Number of elements of `buf` (the local buffer of `slab`) whose bits differ from the pattern.
inline int64_t count_wrong(const std::string& path, const std::vector<int64_t>& shape,
                           const Slab& slab, const std::vector<float>& buf, uint64_t version = 0) {
  int64_t wrong = 0;
  slab.for_each_run(shape, [&](int64_t g, int64_t l, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const float want = pattern(path, g + i, version);
      if (std::memcmp(&want, &buf[static_cast<size_t>(l + i)], sizeof(float)) != 0) ++wrong;
    }
  });
  return wrong;
}

// Rows [r*R/P, (r+1)*R/P) of dimension 0: uneven, and empty for some ranks when P > R.
inline Slab rows_slab(const std::vector<int64_t>& shape, int rank, int size) {
  Slab s = Slab::whole(shape);
  const int64_t R = shape[0];
  const int64_t r0 = R * rank / size, r1 = R * (rank + 1) / size;
  s.start[0] = r0;
  s.block[0] = r1 - r0;
  return s;
}

// The last dimension cut into 2P column blocks of width w; rank r holds blocks r and r + P
// (count 2, stride P*w: a strided hyperslab, like tp's slice of each of q, k, v in wqkv).
// Needs shape.back() % (2P) == 0.
inline Slab cols_slab(const std::vector<int64_t>& shape, int rank, int size) {
  Slab s = Slab::whole(shape);
  const size_t last = shape.size() - 1;
  const int64_t w = shape[last] / (2 * size);
  s.start[last] = rank * w;
  s.stride[last] = size * w;
  s.count[last] = 2;
  s.block[last] = w;
  return s;
}

// A directory every rank sees (rank 0 creates it under the build tree's temp area, everyone
// gets its name), removed at the end of the test.
class SharedDir {
 public:
  SharedDir() {
    std::string name;
    if (rank_of() == 0) {
      std::string tmpl =
          (std::filesystem::temp_directory_path() / "switchyard-ckpt-XXXXXX").string();
      if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
      name = tmpl;
    }
    int n = static_cast<int>(name.size());
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    name.resize(static_cast<size_t>(n));
    MPI_Bcast(name.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = name;
  }
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_of() == 0) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace sy::test

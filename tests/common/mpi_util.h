// Small MPI helpers for the multi-rank tests (plain MPI calls, independent of comm/ where it
// matters).
#pragma once

#include <cstdint>
#include <vector>

#include "comm/mpi.h"

namespace sy::test {

inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Sum of `local` over MPI_COMM_WORLD (every rank gets it).
inline int64_t sum_over_world(int64_t local) {
  int64_t total = 0;
  MPI_Allreduce(&local, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

// [size(comm)] the value of every rank of comm, in comm rank order.
inline std::vector<int> allgather(MPI_Comm comm, int value) {
  int n = 0;
  MPI_Comm_size(comm, &n);
  std::vector<int> out(static_cast<size_t>(n));
  MPI_Allgather(&value, 1, MPI_INT, out.data(), 1, MPI_INT, comm);
  return out;
}

inline std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int i = 1; i <= n; ++i) {
    if (n % i == 0) d.push_back(i);
  }
  return d;
}

}  // namespace sy::test

// Helpers of the NCCL tests (under mpirun): the skip when there is no GPU per rank (NCCL needs
// one device per rank; every rank takes the same decision) and the wrong-element count summed
// over the ranks (nccl-tests' #wrong).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "comm/mpi.h"
#include "kernels/cuda/check.h"

namespace sy::gputest {

inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Every rank takes the same decision (same node, same device count).
#define SY_REQUIRE_GPU_PER_RANK()                                                   \
  do {                                                                              \
    std::string sy_reason_;                                                         \
    const int sy_n_ = sy::cuda::device_count(&sy_reason_);                          \
    if (sy_n_ == 0) GTEST_SKIP() << "no usable CUDA device (" << sy_reason_ << ")"; \
    if (sy_n_ < ::sy::gputest::world_size())                                        \
      GTEST_SKIP() << ::sy::gputest::world_size() << " ranks but " << sy_n_         \
                   << " GPUs (NCCL needs one each)";                                \
    CUDA_CHECK(cudaSetDevice(sy::comm::world_rank() % sy_n_));                      \
  } while (0)

inline long sum_wrong(long wrong) {
  long total = 0;
  MPI_Allreduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

}  // namespace sy::gputest

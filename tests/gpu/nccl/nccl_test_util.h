// The skip of the NCCL tests (under mpirun) when there is no GPU per rank: NCCL needs one device
// per rank; every rank takes the same decision.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "comm/mpi.h"
#include "common/mpi_util.h"
#include "kernels/cuda/check.h"

// Every rank takes the same decision (same node, same device count).
#define SY_REQUIRE_GPU_PER_RANK()                                                   \
  do {                                                                              \
    std::string sy_reason_;                                                         \
    const int sy_n_ = sy::cuda::device_count(&sy_reason_);                          \
    if (sy_n_ == 0) GTEST_SKIP() << "no usable CUDA device (" << sy_reason_ << ")"; \
    if (sy_n_ < ::sy::test::world_size())                                           \
      GTEST_SKIP() << ::sy::test::world_size() << " ranks but " << sy_n_            \
                   << " GPUs (NCCL needs one each)";                                \
    CUDA_CHECK(cudaSetDevice(sy::comm::world_rank() % sy_n_));                      \
  } while (0)

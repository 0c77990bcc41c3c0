// The skips of the GPU tests that run under mpirun, decided the way the trainer picks its GPU
// (comm/gpu_binding.h), so a job with one GPU per task (SLURM --gpus-per-task=1: every rank sees
// one GPU) runs them instead of skipping. Every rank of the world takes the same decision.
#pragma once

#include <string>

#include "comm/gpu_binding.h"
#include "comm/mpi.h"
#include "kernels/cuda/check.h"

namespace sy::gputest {

// Binds this rank to a GPU of its own (cudaSetDevice) as the trainer does. "" on success, else
// why not, the same text on every rank of the world. Collective over MPI_COMM_WORLD.
inline std::string bind_gpu_of_own() {
  std::string reason;
  const int n = cuda::device_count(&reason);
  MPI_Comm node = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  const comm::Comm node_comm(node);
  const comm::GpuBinding b = comm::bind_gpu_per_rank(node_comm, n, cuda::device_uuid, reason);
  int bad = b.error.empty() ? 0 : 1;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  if (bad) return b.error.empty() ? "a rank on another node has no GPU of its own" : b.error;
  CUDA_CHECK(cudaSetDevice(b.device));
  return "";
}

// Some GPU on every rank (ranks may share one: tests that need no NCCL between the ranks).
// "" on success (the device is set: local rank % visible), else why not. Collective.
inline std::string bind_any_gpu() {
  std::string reason;
  const int n = cuda::device_count(&reason);
  int least = n;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &least, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (least == 0)
    return n == 0 ? "no usable CUDA device (" + reason + ")" : "a rank has no usable CUDA device";
  MPI_Comm node = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  const comm::Comm node_comm(node);
  CUDA_CHECK(cudaSetDevice(comm::gpu_for_local_rank(node_comm.rank(), n)));
  return "";
}

}  // namespace sy::gputest

// Skips the calling test (on every rank) unless each rank has a GPU of its own.
#define SY_REQUIRE_GPU_PER_RANK()                                                    \
  do {                                                                               \
    const std::string sy_why_ = ::sy::gputest::bind_gpu_of_own();                    \
    if (!sy_why_.empty()) GTEST_SKIP() << "no GPU of its own per rank: " << sy_why_; \
  } while (0)

// Skips the calling test (on every rank) unless every rank sees a GPU (possibly shared).
#define SY_REQUIRE_GPU_ON_EVERY_RANK()                         \
  do {                                                         \
    const std::string sy_why_ = ::sy::gputest::bind_any_gpu(); \
    if (!sy_why_.empty()) GTEST_SKIP() << sy_why_;             \
  } while (0)

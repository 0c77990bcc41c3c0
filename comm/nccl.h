// NCCL on top of the MPI groups (CUDA build only: cmake/cuda.cmake builds comm/nccl.cpp into
// sy_nccl with SWITCHYARD_HAVE_NCCL). An NcclComm is built from an MPI communicator: rank 0 makes
// the unique id, MPI broadcasts it, every rank joins with its MPI rank, so the NCCL group has
// exactly the members and rank order of the MPI one (a dp group, a tp group, the intra-node part
// of the all-to-all...). Helpers: all-reduce, reduce-scatter, all-gather, and the grouped
// ncclSend/ncclRecv exchange for the intra-node stage of the expert all-to-all.
//
// Every NCCL call goes through NCCL_CHECK (the library's message, the call, file:line, rank).
// NCCL calls are asynchronous on a stream; wait() is the bounded wait: it polls the stream and
// the communicator's async error and, past the timeout, aborts the communicator and throws
// naming the rank and what it was waiting for.
//
// The communicator is NONBLOCKING (ncclConfig_t::blocking = 0), so that no NCCL call can hang a
// rank: its set-up (ncclCommInitRankConfig) and every later call may return ncclInProgress,
// and the rank then polls ncclCommGetAsyncError -- bounded by the timeout -- before the next
// call (settle()). A rank whose peers never join (one failed before, or died) times out, aborts
// its communicator and throws "rank r of n: timed out after s seconds waiting for <what>",
// instead of blocking forever in ncclCommInitRank.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "comm/mpi.h"

namespace sy::comm {

[[noreturn]] void throw_nccl_error(ncclResult_t r, ncclComm_t comm, const char* call,
                                   const char* file, int line);

#define NCCL_CHECK(nccl_comm, call)                                                     \
  do {                                                                                  \
    const ncclResult_t sy_nccl_r_ = (call);                                             \
    if (sy_nccl_r_ != ncclSuccess && sy_nccl_r_ != ncclInProgress)                      \
      ::sy::comm::throw_nccl_error(sy_nccl_r_, (nccl_comm), #call, __FILE__, __LINE__); \
  } while (0)

// Whether device pointers can be handed to MPI directly (the inter-node stage otherwise stages
// through host memory). Open MPI answers through MPIX_Query_cuda_support (mpi-ext.h); other MPIs,
// or an Open MPI built without the extension, give kUnknown (treat as "no").
enum class CudaAwareMpi { kYes, kNo, kUnknown };
CudaAwareMpi cuda_aware_mpi();
const char* to_string(CudaAwareMpi v);

template <class T>
constexpr ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>) return ncclFloat32;
  if constexpr (std::is_same_v<T, double>) return ncclFloat64;
  if constexpr (std::is_same_v<T, int32_t>) return ncclInt32;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return ncclBfloat16;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                    std::is_same_v<T, int32_t> || std::is_same_v<T, __nv_bfloat16>,
                "no NCCL type for T");
  return ncclFloat32;
}

class NcclComm {
 public:
  // Collective over `mpi`: every member must call it. The calling rank must have selected its
  // CUDA device (cudaSetDevice) first. timeout_s bounds the set-up and every later call's
  // settling (<= 0: unbounded, parallel.timeout_s = 0); `what` names the group in messages.
  explicit NcclComm(MPI_Comm mpi, double timeout_s = 0, std::string what = "an NCCL group");
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  ncclComm_t get() const { return comm_; }

  // recv[count] (=) sum over ranks of send[count] (in place when send == recv).
  void all_reduce_sum(const void* send, void* recv, size_t count, ncclDataType_t type,
                      cudaStream_t stream);
  // recv[recv_count] (=) this rank's slice of the sum of send[size * recv_count].
  void reduce_scatter_sum(const void* send, void* recv, size_t recv_count, ncclDataType_t type,
                          cudaStream_t stream);
  // recv[size * send_count] (=) every rank's send[send_count], in rank order.
  void all_gather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                  cudaStream_t stream);
  // The variable all-to-all as one NCCL group of sends and receives (counts and displacements in
  // elements, per peer; a zero count posts nothing, so a rank may send or receive nothing).
  void all_to_all_v(const void* send, const std::vector<size_t>& send_counts,
                    const std::vector<size_t>& send_displs, void* recv,
                    const std::vector<size_t>& recv_counts, const std::vector<size_t>& recv_displs,
                    ncclDataType_t type, cudaStream_t stream);

  // Wait for everything queued on `stream`, bounded by the communicator's timeout_s; on timeout
  // aborts the communicator and throws "rank r: timed out after s seconds waiting for <what>".
  // timeout_s <= 0 waits without a bound (parallel.timeout_s = 0), still polling the
  // communicator's asynchronous errors. An asynchronous NCCL error or a CUDA error on the stream
  // aborts the communicator too before the throw (its kernels could otherwise spin forever).
  void wait(cudaStream_t stream, const std::string& what);

 private:
  // After an NCCL call that returned r: an error aborts the communicator and throws; ncclInProgress
  // (nonblocking mode) polls the communicator's state until the call has completed, bounded by
  // timeout_s_ (on timeout: abort, throw naming this rank and `what`).
  void settle(ncclResult_t r, const char* call, const std::string& what);
  [[noreturn]] void abort_and_throw(const std::string& message);
  // "rank <world rank> (rank <r> of <size> in <what>)": how every message names this rank.
  std::string who() const;

  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  double timeout_s_ = 0;
  std::string what_;
  bool aborted_ = false;
};

}  // namespace sy::comm

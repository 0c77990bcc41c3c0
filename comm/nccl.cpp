// NCCL communicators from MPI ones (see nccl.h). The whole file is compiled only in the CUDA
// build: sy_comm's glob also sees it, and without SWITCHYARD_HAVE_NCCL it is empty there.
#if defined(SWITCHYARD_HAVE_NCCL)
#include "comm/nccl.h"

#include <cuda_bf16.h>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <thread>

#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h>
#endif

namespace sy::comm {

void throw_nccl_error(ncclResult_t r, ncclComm_t comm, const char* call, const char* file,
                      int line) {
  std::ostringstream os;
  os << file << ":" << line << ": rank " << world_rank() << ": NCCL error " << static_cast<int>(r)
     << " (" << ncclGetErrorString(r) << ")";
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  if (last && *last) os << ": " << last;
  os << " in " << call;
  throw std::runtime_error(os.str());
}

CudaAwareMpi cuda_aware_mpi() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1 ? CudaAwareMpi::kYes : CudaAwareMpi::kNo;
#elif defined(MPIX_CUDA_AWARE_SUPPORT)
  return CudaAwareMpi::kNo;  // built without CUDA support
#else
  return CudaAwareMpi::kUnknown;
#endif
}

const char* to_string(CudaAwareMpi v) {
  switch (v) {
    case CudaAwareMpi::kYes:
      return "yes";
    case CudaAwareMpi::kNo:
      return "no";
    case CudaAwareMpi::kUnknown:
      return "unknown";
  }
  return "?";
}

NcclComm::NcclComm(MPI_Comm mpi) {
  MPI_CHECK(MPI_Comm_rank(mpi, &rank_));
  MPI_CHECK(MPI_Comm_size(mpi, &size_));
  ncclUniqueId id{};
  if (rank_ == 0) NCCL_CHECK(nullptr, ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi));
  NCCL_CHECK(nullptr, ncclCommInitRank(&comm_, size_, id, rank_));
}

NcclComm::~NcclComm() {
  if (comm_ && !aborted_) (void)ncclCommDestroy(comm_);
}

void NcclComm::all_reduce_sum(const void* send, void* recv, size_t count, ncclDataType_t type,
                              cudaStream_t stream) {
  NCCL_CHECK(comm_, ncclAllReduce(send, recv, count, type, ncclSum, comm_, stream));
}

void NcclComm::reduce_scatter_sum(const void* send, void* recv, size_t recv_count,
                                  ncclDataType_t type, cudaStream_t stream) {
  NCCL_CHECK(comm_, ncclReduceScatter(send, recv, recv_count, type, ncclSum, comm_, stream));
}

void NcclComm::all_gather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                          cudaStream_t stream) {
  NCCL_CHECK(comm_, ncclAllGather(send, recv, send_count, type, comm_, stream));
}

namespace {
size_t type_bytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      throw std::invalid_argument("NcclComm: unsupported ncclDataType_t");
  }
}
}  // namespace

void NcclComm::all_to_all_v(const void* send, const std::vector<size_t>& send_counts,
                            const std::vector<size_t>& send_displs, void* recv,
                            const std::vector<size_t>& recv_counts,
                            const std::vector<size_t>& recv_displs, ncclDataType_t type,
                            cudaStream_t stream) {
  const auto n = static_cast<size_t>(size_);
  if (send_counts.size() != n || send_displs.size() != n || recv_counts.size() != n ||
      recv_displs.size() != n)
    throw std::invalid_argument("NcclComm::all_to_all_v: count/displacement vectors must have " +
                                std::to_string(n) + " entries");
  const size_t esize = type_bytes(type);
  const auto* s = static_cast<const char*>(send);
  auto* r = static_cast<char*>(recv);
  NCCL_CHECK(comm_, ncclGroupStart());
  for (int peer = 0; peer < size_; ++peer) {
    const auto p = static_cast<size_t>(peer);
    if (send_counts[p] > 0)
      NCCL_CHECK(comm_,
                 ncclSend(s + send_displs[p] * esize, send_counts[p], type, peer, comm_, stream));
    if (recv_counts[p] > 0)
      NCCL_CHECK(comm_,
                 ncclRecv(r + recv_displs[p] * esize, recv_counts[p], type, peer, comm_, stream));
  }
  NCCL_CHECK(comm_, ncclGroupEnd());
}

void NcclComm::wait(cudaStream_t stream, double timeout_s, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) {
      std::ostringstream os;
      os << "rank " << rank_ << ": CUDA error while waiting for " << what << ": "
         << cudaGetErrorString(q);
      throw std::runtime_error(os.str());
    }
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(comm_, ncclCommGetAsyncError(comm_, &async));
    NCCL_CHECK(comm_, async);
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timeout_s > 0 && waited > timeout_s) {
      (void)ncclCommAbort(comm_);
      aborted_ = true;
      std::ostringstream os;
      os << "rank " << rank_ << " of " << size_ << ": timed out after " << timeout_s
         << " s waiting for " << what << " (NCCL communicator aborted)";
      throw std::runtime_error(os.str());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace sy::comm
#endif  // SWITCHYARD_HAVE_NCCL

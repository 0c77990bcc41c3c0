// NCCL communicators from MPI ones (see nccl.h). The whole file is compiled only in the CUDA
// build: sy_comm's glob also sees it, and without SWITCHYARD_HAVE_NCCL it is empty there.
#if defined(SWITCHYARD_HAVE_NCCL)
#include "comm/nccl.h"

#include <cuda_bf16.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

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

NcclComm::NcclComm(MPI_Comm mpi, double timeout_s, std::string what)
    : timeout_s_(timeout_s), what_(std::move(what)) {
  MPI_CHECK(MPI_Comm_rank(mpi, &rank_));
  MPI_CHECK(MPI_Comm_size(mpi, &size_));
  // Rank 0 makes the id; its success travels with it, so a failure there ends every rank alike.
  struct {
    ncclUniqueId id;
    int ok;
  } root{};
  std::string root_error;
  if (rank_ == 0) {
    const ncclResult_t r = ncclGetUniqueId(&root.id);
    root.ok = r == ncclSuccess ? 1 : 0;
    if (!root.ok) root_error = ncclGetErrorString(r);
  }
  MPI_CHECK(MPI_Bcast(&root, static_cast<int>(sizeof(root)), MPI_BYTE, 0, mpi));
  if (!root.ok)
    throw std::runtime_error("rank " + std::to_string(world_rank()) + ": rank 0 of " + what_ +
                             " could not make the NCCL unique id" +
                             (root_error.empty() ? "" : ": " + root_error));
  // Test hook (tests/gpu/nccl): SWITCHYARD_NCCL_INIT_FAULT=<world rank> makes that rank fail
  // here, before joining, as a rank whose device or network set-up failed would.
  if (const char* fault = std::getenv("SWITCHYARD_NCCL_INIT_FAULT");
      fault && *fault && std::atoi(fault) == world_rank())
    throw std::runtime_error("rank " + std::to_string(world_rank()) +
                             ": injected failure before ncclCommInitRankConfig of " + what_ +
                             " (SWITCHYARD_NCCL_INIT_FAULT)");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // the set-up and every call return at once; settle() bounds the wait
  const ncclResult_t r = ncclCommInitRankConfig(&comm_, size_, root.id, rank_, &config);
  settle(r, "ncclCommInitRankConfig",
         "the set-up of the NCCL communicator of " + what_ +
             " (every rank must join; a peer that failed or died "
             "before it never does)");
}

NcclComm::~NcclComm() {
  if (!comm_ || aborted_) return;
  // Nonblocking teardown: finalize (flushes outstanding work), wait for it within the timeout,
  // then free; a communicator that does not finish is aborted. Never throws.
  ncclResult_t r = ncclCommFinalize(comm_);
  const auto start = std::chrono::steady_clock::now();
  const double limit = timeout_s_ > 0 ? timeout_s_ : 60.0;
  while (r == ncclInProgress) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess) break;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > limit)
      break;
  }
  if (r == ncclSuccess)
    (void)ncclCommDestroy(comm_);
  else
    (void)ncclCommAbort(comm_);
}

std::string NcclComm::who() const {
  // The job's rank first: a group's rank 0 is rarely world rank 0 (a dp or edp group).
  return "rank " + std::to_string(world_rank()) + " (rank " + std::to_string(rank_) + " of " +
         std::to_string(size_) + " in " + what_ + ")";
}

void NcclComm::abort_and_throw(const std::string& message) {
  if (comm_ && !aborted_) (void)ncclCommAbort(comm_);
  aborted_ = true;
  throw std::runtime_error(message);
}

void NcclComm::settle(ncclResult_t r, const char* call, const std::string& what) {
  if (r != ncclSuccess && r != ncclInProgress) {
    std::ostringstream os;
    os << who() << ": NCCL error " << static_cast<int>(r) << " (" << ncclGetErrorString(r) << ")";
    const char* last = comm_ ? ncclGetLastError(comm_) : nullptr;
    if (last && *last) os << ": " << last;
    os << " in " << call << " during " << what << " (NCCL communicator aborted)";
    abort_and_throw(os.str());
  }
  const auto start = std::chrono::steady_clock::now();
  while (r == ncclInProgress) {
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &r);
    if (q != ncclSuccess) r = q;
    if (r == ncclSuccess) return;
    if (r != ncclInProgress) return settle(r, call, what);  // the error path above
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timeout_s_ > 0 && waited > timeout_s_) {
      std::ostringstream os;
      os << who() << ": timed out after " << timeout_s_ << " s waiting for " << what << " (" << call
         << "; NCCL communicator aborted)";
      abort_and_throw(os.str());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

void NcclComm::all_reduce_sum(const void* send, void* recv, size_t count, ncclDataType_t type,
                              cudaStream_t stream) {
  settle(ncclAllReduce(send, recv, count, type, ncclSum, comm_, stream), "ncclAllReduce",
         "an all-reduce of " + what_);
}

void NcclComm::reduce_scatter_sum(const void* send, void* recv, size_t recv_count,
                                  ncclDataType_t type, cudaStream_t stream) {
  settle(ncclReduceScatter(send, recv, recv_count, type, ncclSum, comm_, stream),
         "ncclReduceScatter", "a reduce-scatter of " + what_);
}

void NcclComm::all_gather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                          cudaStream_t stream) {
  settle(ncclAllGather(send, recv, send_count, type, comm_, stream), "ncclAllGather",
         "an all-gather of " + what_);
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
  const std::string what = "an all-to-all of " + what_;
  NCCL_CHECK(comm_, ncclGroupStart());
  // A failed send or receive must still close the group: an open one would hold back every later
  // NCCL call of this thread (other communicators' included). The first failure is reported
  // after the group end, and the communicator aborted.
  ncclResult_t failed = ncclSuccess;
  const char* failed_call = "";
  auto record = [&](ncclResult_t res, const char* call) {
    if (failed == ncclSuccess && res != ncclSuccess && res != ncclInProgress) {
      failed = res;
      failed_call = call;
    }
  };
  for (int peer = 0; peer < size_ && failed == ncclSuccess; ++peer) {
    const auto p = static_cast<size_t>(peer);
    if (send_counts[p] > 0)
      record(ncclSend(s + send_displs[p] * esize, send_counts[p], type, peer, comm_, stream),
             "ncclSend");
    if (recv_counts[p] > 0 && failed == ncclSuccess)
      record(ncclRecv(r + recv_displs[p] * esize, recv_counts[p], type, peer, comm_, stream),
             "ncclRecv");
  }
  // Inside a group the calls only record; the group end launches (and, nonblocking, may still
  // be connecting: settle).
  const ncclResult_t end = ncclGroupEnd();
  if (failed != ncclSuccess) settle(failed, failed_call, what);  // throws
  settle(end, "ncclGroupEnd", what);
}

void NcclComm::wait(cudaStream_t stream, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return;
    // An error aborts the communicator before the throw: its kernels may still be spinning on
    // the stream, and the unwinding that follows (a cudaFree syncs the device) would wait for
    // them forever.
    if (q != cudaErrorNotReady) {
      std::ostringstream os;
      os << who() << ": CUDA error while waiting for " << what << ": " << cudaGetErrorString(q)
         << " (NCCL communicator aborted)";
      abort_and_throw(os.str());
    }
    ncclResult_t async = ncclSuccess;
    const ncclResult_t got = ncclCommGetAsyncError(comm_, &async);
    if (got != ncclSuccess) async = got;
    if (async != ncclSuccess && async != ncclInProgress)
      settle(async, "ncclCommGetAsyncError", what);  // throws, the communicator aborted
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timeout_s_ > 0 && waited > timeout_s_) {
      std::ostringstream os;
      os << who() << ": timed out after " << timeout_s_ << " s waiting for " << what
         << " (NCCL communicator aborted)";
      abort_and_throw(os.str());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace sy::comm
#endif  // SWITCHYARD_HAVE_NCCL

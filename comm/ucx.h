// UCX (UCP) one-sided puts between the ranks of one communicator: the inter-node stage of the
// hierarchical token exchange (comm/exchange_hier.cpp).
//
// One UcxPeers owns a UCP context and worker, an endpoint to every other rank of its communicator
// (addresses exchanged with MPI_Allgatherv), one registered memory region of this rank
// (ucp_mem_map of memory the caller owns) and the unpacked remote keys of every peer's region.
//
// The progress rule (../shared/MACHINE-NOTES.md): over TCP a put completes only while the TARGET
// calls ucp_worker_progress, so no rank may block in MPI while a peer still needs its progress.
// Every wait here is a loop of ucp_worker_progress + MPI_Test (never a blocking MPI call), and
// complete_puts() ends with a non-blocking barrier, so that when it returns no UCX operation to
// or from this rank is in flight and blocking MPI is safe again.
//
// Failures: endpoints use UCP_ERR_HANDLING_MODE_PEER; a peer that dies (or closes its endpoints)
// turns into a std::runtime_error naming this rank, the peer and what was being waited for, not a
// hang. The optional Watchdog bounds every wait in time as well.
#pragma once

#include <ucp/api/ucp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi.h"

namespace sy::comm {

class Watchdog;

namespace detail {
[[noreturn]] void throw_ucx_error(ucs_status_t status, const char* call, const char* file,
                                  int line);
}  // namespace detail

// Checks a ucs_status_t: throws std::runtime_error with the call, file:line, the world rank and
// UCX's own message.
#define UCX_CHECK(call)                                                               \
  do {                                                                                \
    const ucs_status_t sy_ucx_status_ = (call);                                       \
    if (sy_ucx_status_ != UCS_OK)                                                     \
      ::sy::comm::detail::throw_ucx_error(sy_ucx_status_, #call, __FILE__, __LINE__); \
  } while (0)

// Why an endpoint to a peer failed, in words for the error: the peer is gone or unreachable; an
// endpoint timeout may also be this rank's own stall (stopped by SIGSTOP, swapped out) past UCX's
// keepalive, which makes a live peer look gone (found by QA: a stopped rank blamed a healthy one).
std::string peer_failure_words(ucs_status_t status);

class UcxPeers {
 public:
  // Collective over comm (not owned; must outlive this object). peer_names[i] names rank i of
  // comm in error messages ("EP rank 5 (world rank 5)"). Creates and wires up every endpoint,
  // so the transports are known after construction.
  UcxPeers(MPI_Comm comm, std::vector<std::string> peer_names, Watchdog* watchdog);
  ~UcxPeers();
  UcxPeers(const UcxPeers&) = delete;
  UcxPeers& operator=(const UcxPeers&) = delete;

  // Collective over comm, with no put in flight: registers [base, base + bytes) as this rank's
  // region (replacing the previous one) and learns every peer's region and remote key.
  void expose(void* base, std::size_t bytes);
  // Local: drops this rank's registration and the peers' keys (before the memory is freed).
  void unexpose() noexcept { release_region(); }

  // Starts a put of `bytes` from src into peer's region at byte offset `remote_offset`. src must
  // stay unchanged until complete_puts() returns. bytes == 0 is a no-op.
  void put(int peer, const void* src, std::size_t bytes, std::size_t remote_offset);

  // Collective over comm: completes this rank's puts at their targets (worker flush), then waits
  // for every rank of comm to have done the same (MPI_Ibarrier + progress). Afterwards every put
  // into this rank's region has landed. `what` names the phase in errors and watchdog reports.
  void complete_puts(const char* what);

  // "tcp/lo" style transport/device pairs of the endpoints' lanes (sorted, unique), from
  // ucp_ep_print_info after wire-up.
  const std::vector<std::string>& transports() const { return transports_; }
  bool uses_tcp() const;

  int size() const { return size_; }
  int rank() const { return rank_; }

 private:
  struct ErrArg {  // what an endpoint's error callback needs (stable address)
    UcxPeers* self = nullptr;
    int peer = -1;
  };
  static void on_endpoint_error(void* arg, ucp_ep_h ep, ucs_status_t status);

  void progress_once();
  void throw_if_failed(const char* what) const;
  // Waits for a UCX request with progress; frees it; throws on error naming `peer` (-1: all).
  void wait_request(void* request, int peer, const char* what);
  // Waits for an MPI request (on comm_) with progress, bounded by the watchdog.
  void wait_mpi(MPI_Request& request, const char* what);
  void release_region() noexcept;
  void teardown() noexcept;  // everything the destructor releases (also after a failed constructor)
  std::vector<std::string> read_transports();

  MPI_Comm comm_;
  int size_ = 1, rank_ = 0;
  std::vector<std::string> peer_names_;
  Watchdog* watchdog_;

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<ucp_ep_h> eps_;                 // [size] null for self
  std::vector<std::unique_ptr<ErrArg>> err_;  // [size]
  ucp_mem_h memh_ = nullptr;
  std::size_t exposed_bytes_ = 0;      // this rank's region; every peer's has the same size
  std::vector<uint64_t> remote_base_;  // [size] peers' region addresses
  std::vector<ucp_rkey_h> rkeys_;      // [size] null for self
  std::vector<std::pair<void*, int>> pending_;  // put requests in flight (request, peer)

  int failed_peer_ = -1;  // set by on_endpoint_error
  ucs_status_t failed_status_ = UCS_OK;
  std::vector<std::string> transports_;
};

}  // namespace sy::comm

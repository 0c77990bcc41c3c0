// One MPI shared-memory window over the ranks of a node (MPI_Win_allocate_shared): each rank
// owns a segment of the same size and loads/stores every other segment of its node directly, so
// the intra-node stage of the hierarchical exchange is a memcpy, not a message.
//
// The window stays in one passive-target epoch (MPI_Win_lock_all) for its whole life; ordering
// between ranks comes from sync_barrier(): MPI_Win_sync (a memory fence), a NodeBarrier (below),
// MPI_Win_sync. Every store before a sync_barrier is visible to every load after it, on every
// rank of the node.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "comm/mpi.h"

namespace sy::comm {

class NodeBarrier;
class Watchdog;

class SharedWindow {
 public:
  SharedWindow() = default;
  // Collective over node_comm (not owned; must outlive the window). bytes_per_rank > 0, the
  // same on every rank.
  SharedWindow(MPI_Comm node_comm, std::size_t bytes_per_rank);
  ~SharedWindow();
  SharedWindow(const SharedWindow&) = delete;
  SharedWindow& operator=(const SharedWindow&) = delete;
  SharedWindow(SharedWindow&& other) noexcept;
  SharedWindow& operator=(SharedWindow&& other) noexcept;

  bool empty() const { return win_ == MPI_WIN_NULL; }
  std::size_t bytes_per_rank() const { return bytes_per_rank_; }
  // The segment of local rank r of the node (this process's address for it).
  std::byte* segment(int local_rank) const {
    return segments_[static_cast<std::size_t>(local_rank)];
  }
  std::byte* mine() const { return segment(local_rank_); }
  int local_rank() const { return local_rank_; }

  // Collective over the node: a fence, barrier.wait(), a fence (see the top of this file). The
  // wait is armed on `watchdog` (may be null) as `what`.
  void sync_barrier(NodeBarrier& barrier, Watchdog* watchdog, const char* what) const;

 private:
  void reset() noexcept;

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Win win_ = MPI_WIN_NULL;
  int local_rank_ = 0;
  std::size_t bytes_per_rank_ = 0;
  std::vector<std::byte*> segments_;  // [node size]
};

// A barrier of the ranks of one node through shared memory, not messages: every rank owns a
// 64-byte slot of a small shared window; wait() stores the barrier's number into this rank's slot
// (release) and yields the core until every slot holds at least that number (acquire loads).
// MPI_Barrier on the node communicator would ride whatever MPI's point-to-point transport is --
// TCP, in a job whose UCX is pinned to the network (UCX_TLS=tcp,...) -- and pay a wake-up per
// message on oversubscribed cores.
class NodeBarrier {
 public:
  NodeBarrier() = default;
  // Collective over node_comm (not owned; must outlive the barrier).
  explicit NodeBarrier(MPI_Comm node_comm);
  // Collective over the node: returns once every rank of the node has called it this many times.
  // The wait is armed on `watchdog` (may be null) as `what`.
  void wait(Watchdog* watchdog, const char* what);

 private:
  SharedWindow slots_;  // 64 bytes per rank
  int node_size_ = 0;
  uint64_t count_ = 0;  // barriers passed (the same on every rank of the node)
};

}  // namespace sy::comm

#include "comm/shm_window.h"

#include <atomic>
#include <thread>
#include <utility>

#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm {

SharedWindow::SharedWindow(MPI_Comm node_comm, std::size_t bytes_per_rank)
    : comm_(node_comm), bytes_per_rank_(bytes_per_rank) {
  SY_CHECK(bytes_per_rank > 0, "empty shared window");
  int node_size = 0;
  MPI_CHECK(MPI_Comm_size(comm_, &node_size));
  MPI_CHECK(MPI_Comm_rank(comm_, &local_rank_));
  // Non-contiguous: each segment starts on its own pages (placed near its owner), and its size
  // need not be padded to keep the next one aligned.
  MPI_Info info = MPI_INFO_NULL;
  MPI_CHECK(MPI_Info_create(&info));
  MPI_CHECK(MPI_Info_set(info, "alloc_shared_noncontig", "true"));
  void* base = nullptr;
  const int rc =
      MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes_per_rank), 1, info, comm_, &base, &win_);
  MPI_Info_free(&info);
  MPI_CHECK(rc);
  try {
    MPI_CHECK(MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN));
    segments_.resize(static_cast<std::size_t>(node_size));
    for (int r = 0; r < node_size; ++r) {
      MPI_Aint size = 0;
      int disp_unit = 0;
      void* ptr = nullptr;
      MPI_CHECK(MPI_Win_shared_query(win_, r, &size, &disp_unit, &ptr));
      SY_CHECK(static_cast<std::size_t>(size) >= bytes_per_rank,
               "local rank " << r << " has a segment of " << size << " bytes");
      segments_[static_cast<std::size_t>(r)] = static_cast<std::byte*>(ptr);
    }
    MPI_CHECK(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_));
  } catch (...) {
    MPI_Win_free(&win_);
    throw;
  }
}

SharedWindow::~SharedWindow() {
  reset();
}

SharedWindow::SharedWindow(SharedWindow&& other) noexcept
    : comm_(std::exchange(other.comm_, MPI_COMM_NULL)),
      win_(std::exchange(other.win_, MPI_WIN_NULL)),
      local_rank_(other.local_rank_),
      bytes_per_rank_(std::exchange(other.bytes_per_rank_, 0)),
      segments_(std::move(other.segments_)) {}

SharedWindow& SharedWindow::operator=(SharedWindow&& other) noexcept {
  if (this != &other) {
    reset();
    comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
    win_ = std::exchange(other.win_, MPI_WIN_NULL);
    local_rank_ = other.local_rank_;
    bytes_per_rank_ = std::exchange(other.bytes_per_rank_, 0);
    segments_ = std::move(other.segments_);
  }
  return *this;
}

void SharedWindow::reset() noexcept {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (win_ != MPI_WIN_NULL && !finalized) {
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);  // collective over the node, like the allocation
  }
  win_ = MPI_WIN_NULL;
  segments_.clear();
  bytes_per_rank_ = 0;
}

void SharedWindow::sync_barrier(NodeBarrier& barrier, Watchdog* watchdog, const char* what) const {
  SY_CHECK(win_ != MPI_WIN_NULL, "sync_barrier on an empty window");
  MPI_CHECK(MPI_Win_sync(win_));
  barrier.wait(watchdog, what);
  MPI_CHECK(MPI_Win_sync(win_));
}

namespace {
constexpr std::size_t kSlotBytes = 64;  // one cache line per rank: no false sharing

std::atomic_ref<uint64_t> slot_of(const SharedWindow& w, int local_rank) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(w.segment(local_rank)));
}
}  // namespace

NodeBarrier::NodeBarrier(MPI_Comm node_comm) : slots_(node_comm, kSlotBytes) {
  MPI_CHECK(MPI_Comm_size(node_comm, &node_size_));
  int me = 0;
  MPI_CHECK(MPI_Comm_rank(node_comm, &me));
  slot_of(slots_, me).store(0, std::memory_order_release);
  MPI_CHECK(MPI_Barrier(node_comm));  // every slot is zero before anyone waits on it
}

void NodeBarrier::wait(Watchdog* watchdog, const char* what) {
  SY_CHECK(!slots_.empty(), "wait on an empty NodeBarrier");
  WatchdogScope scope(watchdog, what);
  ++count_;
  slot_of(slots_, slots_.local_rank()).store(count_, std::memory_order_release);
  // A slot may already hold count_ + 1 (a node-mate that left this barrier and reached the next).
  for (int r = 0; r < node_size_; ++r) {
    const std::atomic_ref<uint64_t> slot = slot_of(slots_, r);
    while (slot.load(std::memory_order_acquire) < count_) std::this_thread::yield();
  }
}

}  // namespace sy::comm

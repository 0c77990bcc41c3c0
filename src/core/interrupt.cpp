#include "src/core/interrupt.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstring>
#include <utility>

namespace sy::files {

namespace {

// A slot is kFree, then kWriting while its owner copies the path in, then kFile/kFolder; the
// handler claims one of the last two (kRemoving) before it reads the path, and an owner frees
// only a slot the handler has not claimed: a handler on another thread read kFileSet, the owner
// freed and refilled the slot, and the handler unlinked a half-copied path. 64 paths of up to
// 4 KiB: a command registers a handful.
enum State : int { kFree, kWriting, kFileSet, kFolderSet, kRemoving };
constexpr int kSlots = 64;
constexpr size_t kMaxPath = 4096;
struct Slot {
  std::atomic<int> state{kFree};
  std::array<char, kMaxPath> path{};
};
std::array<Slot, kSlots> g_slots;  // process-wide: read by the signal handler (see the header)

void remove_registered(int signo) {
  // Files first, then folders (innermost were registered last: the reverse order).
  // (A lock-free compare-exchange is async-signal-safe.)
  const auto claim = [](Slot& s, int set) {
    int expected = set;
    return s.state.compare_exchange_strong(expected, kRemoving);
  };
  for (Slot& s : g_slots)
    if (claim(s, kFileSet)) ::unlink(s.path.data());
  for (int i = kSlots - 1; i >= 0; --i)
    if (Slot& s = g_slots[static_cast<size_t>(i)]; claim(s, kFolderSet)) ::rmdir(s.path.data());
  std::signal(signo, SIG_DFL);
  std::raise(signo);  // the default action: the process ends by the signal
}

// Frees `slot` unless the handler has claimed it (it then stays kRemoving: the process is ending).
void release(int slot) {
  if (slot < 0) return;
  std::atomic<int>& state = g_slots[static_cast<size_t>(slot)].state;
  for (int set : {kFileSet, kFolderSet}) {
    int expected = set;
    if (state.compare_exchange_strong(expected, kFree)) return;
  }
}

}  // namespace

void install_interrupt_cleanup() {
  struct sigaction sa {};
  sa.sa_handler = remove_registered;
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sa.sa_mask, s);  // one cleanup at a time
  sa.sa_flags = SA_RESETHAND;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) {
    // One ignored by whoever started us stays ignored: a shell script's background job starts
    // with SIGINT ignored, so that Ctrl-C to the script leaves it running; nohup, SIGHUP.
    struct sigaction old {};
    if (sigaction(s, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaction(s, &sa, nullptr);
  }
}

RemovedOnInterrupt::RemovedOnInterrupt(const std::string& path, Kind kind) {
  if (path.empty() || path.size() >= kMaxPath) return;
  for (int i = 0; i < kSlots; ++i) {
    Slot& s = g_slots[static_cast<size_t>(i)];
    int expected = kFree;
    if (!s.state.compare_exchange_strong(expected, kWriting)) continue;
    std::memcpy(s.path.data(), path.c_str(), path.size() + 1);
    s.state.store(kind == kFolder ? kFolderSet : kFileSet);
    slot_ = i;
    return;
  }
}

RemovedOnInterrupt::~RemovedOnInterrupt() {
  release(slot_);
}

RemovedOnInterrupt::RemovedOnInterrupt(RemovedOnInterrupt&& other) noexcept
    : slot_(std::exchange(other.slot_, -1)) {}

RemovedOnInterrupt& RemovedOnInterrupt::operator=(RemovedOnInterrupt&& other) noexcept {
  if (this != &other) {
    release(slot_);
    slot_ = std::exchange(other.slot_, -1);
  }
  return *this;
}

}  // namespace sy::files

// What a command other than `train` leaves behind when SIGINT (Ctrl-C), SIGTERM (a job's end,
// `timeout`) or SIGHUP ends it: nothing of its own. Writers register the files and folders they
// are making (a "<path>.tmp" being written, a scratch folder) while they make them; the handler
// removes what is registered, then ends the process with the signal's default action (the shell
// sees 128 + the signal, as before). Without it an interrupted `data prepare` left a .tmp of
// 1 GB, and `plot` and `bench train` a folder under /tmp for good.
//
//   files::install_interrupt_cleanup();          // main(), once, not for train or guard
//   files::RemovedOnInterrupt tmp(path + ".tmp"); // while writing it
//   ... write, rename ...                         // ~RemovedOnInterrupt: no longer ours to remove
//
// The handler only calls unlink(2), rmdir(2) and raise(3) on paths stored beforehand in fixed
// slots (async-signal-safe), so the registry is process-wide state by necessity, as a signal is.
// A folder is removed when empty once its registered files are gone (register its files too).
// SIGKILL cannot be caught: what it leaves, the next run of the same command reuses or removes.
#pragma once

#include <string>

namespace sy::files {

// Installs the SIGINT, SIGTERM and SIGHUP handlers for the rest of the process; a signal this
// process was started with ignored (a script's background job: SIGINT; nohup: SIGHUP) stays
// ignored.
void install_interrupt_cleanup();

// Registers `path` (a file, or with kFolder a folder) for removal on an interrupt for its
// lifetime. Silently does nothing when the path is too long or every slot is taken (the
// cleanup is best effort; the writers' own failure paths are unchanged).
class RemovedOnInterrupt {
 public:
  enum Kind { kFile, kFolder };
  RemovedOnInterrupt() = default;  // registers nothing
  explicit RemovedOnInterrupt(const std::string& path, Kind kind = kFile);
  ~RemovedOnInterrupt();
  RemovedOnInterrupt(const RemovedOnInterrupt&) = delete;
  RemovedOnInterrupt& operator=(const RemovedOnInterrupt&) = delete;
  RemovedOnInterrupt(RemovedOnInterrupt&& other) noexcept;
  RemovedOnInterrupt& operator=(RemovedOnInterrupt&& other) noexcept;

 private:
  int slot_ = -1;
};

}  // namespace sy::files

// Preemption signals (SLURM's `--signal=USR1@<s>`, `scancel --signal=USR1`, the SIGTERM of a
// preemption or a time limit): the trainer finishes the step it is in, writes a checkpoint and
// exits with kExitPreempted (75), and the job script requeues the job.
//
//   PreemptionSignals signals;                         // installs the handlers (RAII)
//   for (step ...) {
//     ... one optimizer step ...
//     if (stop_requested(comm, signals)) {              // collective: once per step, every rank
//       save_checkpoint(...);
//       return kExitPreempted;
//     }
//   }
//
// A signal reaches ranks at different moments (or only some of them, e.g. one node), so each rank
// only records it; stop_requested all-reduces the flags so that every rank stops after the same
// step. The handler only stores to a lock-free atomic: async-signal-safe.
#pragma once

#include <csignal>

#include "comm/mpi.h"

namespace sy {

// Installs handlers for SIGUSR1 and SIGTERM for its lifetime and restores the previous ones on
// destruction. One at a time per process (the flag a handler sets is necessarily process-wide):
// a second instance throws std::logic_error.
class PreemptionSignals {
 public:
  PreemptionSignals();
  ~PreemptionSignals();
  PreemptionSignals(const PreemptionSignals&) = delete;
  PreemptionSignals& operator=(const PreemptionSignals&) = delete;

  // Whether this process received SIGUSR1 or SIGTERM since construction.
  bool requested() const;
  // The first such signal's number, 0 when none.
  int signal_number() const;
  // "SIGUSR1" / "SIGTERM" / "" for logs.
  const char* signal_name() const;

 private:
  struct sigaction old_usr1_ {};
  struct sigaction old_term_ {};
};

// Collective over `comm` (MPI_Allreduce, logical or): true on every rank when any rank of `comm`
// received a preemption signal. Call it at the same point of every step on every rank.
bool stop_requested(MPI_Comm comm, const PreemptionSignals& signals);

}  // namespace sy

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
// step. The handler only stores to lock-free atomics (and, before training, writes one line and
// calls _exit): async-signal-safe.
//
// `switchyard train` installs the handlers before its libraries initialize (catch_before_main),
// main takes them over (Mode::kExitBeforeTraining) and never removes them (issue 15, item 5):
//   while MPI starts              recorded; the process ends with 76 once MPI_Init has returned;
//   before the step loop starts   a signal ends the process at once with 76 (kExitStoppedEarly):
//                                 there is nothing to checkpoint, and a rank blocked in start-up
//                                 work must not hang on;
//   during the step loop          recorded; every rank stops after the same step and checkpoints;
//                                 the job exits 75 (rank 0's code; the other ranks exit 0);
//   in the last step              a checkpoint at once; then the run finishes: the final
//                                 evaluation, the checkpoint again with it, exit 0;
//   after the last step           recorded and ignored: the run finishes and exits 0.
#pragma once

#include <csignal>

#include "comm/mpi.h"

namespace sy {

namespace comm {
class Watchdog;
}

// Installs handlers for SIGUSR1 and SIGTERM for its lifetime and restores the previous ones on
// destruction (unless told to keep them). One at a time per process (the flag a handler sets is
// necessarily process-wide): a second instance throws std::logic_error.
class PreemptionSignals {
 public:
  enum class Mode {
    kRecord,              // only record the signal (tests, library users)
    kExitBeforeTraining,  // switchyard train: before start_up_over(), _exit(76) at once
  };
  enum class Restore { kOnDestruction, kNever };
  // `hangup`: SIGHUP too (a closed terminal stops a bare `train` as SIGTERM does; not where it
  // was ignored at exec, as under nohup).
  explicit PreemptionSignals(Mode mode = Mode::kRecord, Restore restore = Restore::kOnDestruction,
                             bool hangup = false);
  ~PreemptionSignals();
  PreemptionSignals(const PreemptionSignals&) = delete;
  PreemptionSignals& operator=(const PreemptionSignals&) = delete;

  // Whether this process received SIGUSR1 or SIGTERM (or SIGHUP, see above) since construction.
  bool requested() const;
  // The first such signal's number, 0 when none.
  int signal_number() const;
  // "SIGUSR1" / "SIGTERM" / "SIGHUP" / "" for logs.
  const char* signal_name() const;

  // The start-up is over: the step loop starts, or the run ends without one (already complete,
  // or an error reported). From now on a signal is recorded (and honoured at a step boundary);
  // in Mode::kExitBeforeTraining it ended the process with 76 until now -- "nothing written, run
  // again", which for a complete run or a failed start is not so. Process-wide, hence const.
  void start_up_over() const;

  // MPI_Init has returned. A stop that came while MPI started (from before main on, see
  // catch_before_main) was only recorded: in Mode::kExitBeforeTraining it ends the process now
  // with 76, and from here on one does at once. Process-wide, hence const.
  void mpi_is_up() const;

  // The instance that is installed now, or null.
  static const PreemptionSignals* installed();

  // For `switchyard train`'s .preinit_array (app/main.cpp), which runs before any shared
  // library's constructor: the handlers of Mode::kExitBeforeTraining go in there, and the
  // instance main constructs takes them over. A stop that reaches a rank while its libraries
  // initialize (mpirun forwards one to a rank the moment it has started it) ends it with 76
  // once MPI_Init has returned (mpi_is_up): a rank that ended while MPI started left Open MPI's
  // mpirun deadlocked in its finalize. Before main such a stop killed the rank (138). Sets no
  // instance; never throws.
  // `hangup`: SIGHUP too (not where it was ignored at exec).
  static void catch_before_main(bool hangup) noexcept;

 private:
  Restore restore_;
  bool hangup_;
  struct sigaction old_usr1_ {};
  struct sigaction old_term_ {};
  struct sigaction old_hup_ {};
};

// This process's rank as mpirun or srun announce it in the environment, before MPI is
// initialized (-1: unknown, e.g. a run without a launcher).
int launcher_rank();
// The rank count of this launch as mpirun or srun say it in the environment (-1: no launcher;
// a batch script's own commands, outside srun, have none).
int launcher_size();

// Collective over `comm` (MPI_Allreduce, logical or): true on every rank when any rank of `comm`
// received a preemption signal. Call it at the same point of every step on every rank. The wait
// is bounded by `watchdog` (null: unbounded).
bool stop_requested(MPI_Comm comm, const PreemptionSignals& signals,
                    comm::Watchdog* watchdog = nullptr);

}  // namespace sy

// `switchyard guard -- mpirun ...`: runs a launcher so that a SIGTERM ends the run the way a
// scheduler expects -- checkpoint, exit 75 -- instead of killing the ranks (issue 15, item 5).
//
// Open MPI's mpirun (4.1) answers a SIGTERM by sending SIGTERM and, one second later, SIGKILL to
// every rank, and exits 1: a rank has no time to finish its step and write a checkpoint, and the
// job script sees 1 instead of 75. mpirun cannot be told otherwise (SIGTERM is not among the
// signals ess_base_forward_signals accepts). So the guard starts the launcher with SIGTERM
// blocked -- mpirun never acts on it, while its ranks start with every signal unblocked -- and
// turns a SIGTERM meant for the launcher into SIGUSR1, which mpirun forwards to every rank:
//   - a SIGTERM to the guard (a job script's `kill`, SLURM signalling the whole job) is passed
//     on as SIGUSR1; SIGUSR1 to the guard too; and so are SIGINT (Ctrl-C in the terminal, which
//     reaches guard and launcher together) and SIGHUP (the terminal closed), which would
//     otherwise end the guard at once and leave the ranks running with nobody to report;
//   - a SIGTERM, SIGINT or SIGHUP sent to the launcher itself stays pending there (blocked); the
//     guard sees it in /proc/<pid>/status and passes SIGUSR1 on the same way.
//   - once passed, SIGUSR1 goes again until the launcher ends (after 2 s, then 4, 8, ... up to
//     64 s apart): mpirun drops a signal that comes before its ranks exist (a stop in a job's
//     first tenth of a second trained to the end, exit 0), and a rank keeps only the first it
//     gets; and each is held (up to 10 s) while the launcher or a process below it is starting
//     (under 5 s old, no handler for SIGUSR1 yet) and would die of it (a rank before its
//     handler: 138), or while the launcher is under 5 s old and has started nothing yet (mpirun
//     forwards a stop to ranks the moment they exist); none goes again to a launcher that no
//     longer catches SIGUSR1 (mpirun ending the job: it would die of it, 138);
//   - a second Ctrl-C (SIGINT to the guard) is for ranks that do not stop: the guard kills the
//     launcher and everything below it with SIGKILL.
// The ranks then stop after the same step and checkpoint; rank 0 exits 75 (the others 0, see
// app/run_mpi.h), mpirun exits 75, and so does the guard: it returns the launcher's exit status
// (128 + n when a signal n killed it).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace sy {

// Runs `argv` (argv[0] looked up in PATH) under the guard; notes go to `log`. Throws
// std::runtime_error when it cannot be started.
int run_guarded(const std::vector<std::string>& argv, std::ostream& log);

// For `switchyard guard`'s start (app/main.cpp: in .preinit_array, before any shared library's
// constructor, and again in main, as libucs's takes SIGHUP): the guard's handlers go in, and a
// stop that comes before run_guarded is passed on once the launcher runs (it killed the guard:
// 138). Never throws.
void catch_guard_signals() noexcept;

}  // namespace sy

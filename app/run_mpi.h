// How a command reports an error, and how a command that needs MPI runs.
#pragma once

#include <exception>
#include <functional>

#include "comm/mpi.h"

namespace sy::app {

// Prints what main() prints for an exception that ends a command: "error: ..." (sy::Error),
// "numerical failure: ..." (NumericalError) or "fatal: ..." (anything else); nothing for a quiet
// sy::Error (another rank reports it).
void report_error(const std::exception& e);

// Runs `work` with MPI up for its whole duration. Whatever it throws is reported on this rank
// BEFORE MPI_Finalize and then rethrown as an already-reported (quiet) sy::Error with the same
// exit code -- except a quiet sy::Error on a rank other than the launcher's rank 0: an error
// every rank found alike, which rank 0 reports and exits with. Such a rank returns kExitOk, so
// that rank 0 is the only rank that exits non-zero. mpirun ends the job at the first non-zero
// exit and kills the other ranks, and a rank 1 exiting 2 first killed rank 0 before its message
// was out (about one run in twenty under load); a rank's own output is complete before mpirun
// acts on its exit. The job's exit code is still rank 0's.
int run_with_mpi(const std::function<int(const comm::MpiSession&)>& work);

}  // namespace sy::app

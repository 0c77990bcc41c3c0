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
// exit code. Reporting after MPI_Finalize raced with the launcher: the ranks whose copy of an
// agreed error is quiet exit at once, and mpirun ends the job as soon as one of them has exited
// non-zero -- sometimes before rank 0 had printed the one message the user needs.
int run_with_mpi(const std::function<int(const comm::MpiSession&)>& work);

}  // namespace sy::app

// Training on part of the world, for the multi-rank trainer tests.
#pragma once

#include <sstream>

#include "comm/mpi.h"
#include "src/config/config.h"
#include "src/train/trainer.h"

namespace sy::test {

// Trains `cfg` with `options` on the first `ranks` ranks of MPI_COMM_WORLD (a sub-communicator;
// collective over the world) and returns this rank's summary; the other ranks return an empty one.
inline TrainSummary train_on_first(int ranks, const Config& cfg, const TrainOptions& options) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm sub = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank < ranks ? 0 : MPI_UNDEFINED, rank, &sub);
  TrainSummary s;
  if (sub != MPI_COMM_NULL) {
    std::ostringstream log;
    s = train(cfg, log, sub, options);
    MPI_Comm_free(&sub);
  }
  return s;
}

}  // namespace sy::test

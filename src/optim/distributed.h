// The data-parallel half of an optimizer step (SPEC section 3 under SPEC section 4's layouts):
//
//   reduce_gradients: router gradients (each tp rank's token share) summed over tp; then the
//     dense group's gradients summed over dp and the expert group's over edp, in buckets: one
//     reduce-scatter per bucket (each rank gets the sums of its chunk of the bucket), followed,
//     without ZeRO-1, by an all-gather so every rank holds every sum. Returns the global
//     gradient norm: each rank squares the elements of its chunks that it counts (a
//     tp-replicated parameter only on tp rank 0), and the partial sums add up over the world.
//   step: AdamW on this rank's chunks (ZeRO-1: moments exist only for them) then an all-gather
//     of the updated parameters per bucket; without ZeRO-1 AdamW on everything, identically on
//     every replica.
//
// Every collective gives the same bits on every rank (comm/collectives.h), so replicated
// parameters stay identical, and ZeRO-1 on or off computes the same numbers. Every rank issues
// the same collectives in the same order (tp, then dp, then edp, then the world), so the groups
// cannot deadlock each other.
//
// Letters: P = table.total_numel() (this rank's flat buffers, padding included).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "comm/mpi.h"
#include "src/model/params.h"
#include "src/optim/optim.h"

namespace sy::comm {
class Watchdog;
}

namespace sy {

struct OptimComms {
  const comm::Comm* world = nullptr;
  const comm::Comm* tp = nullptr;
  const comm::Comm* dp = nullptr;
  const comm::Comm* edp = nullptr;
  comm::Watchdog* watchdog = nullptr;
};

class DistributedOptimizer {
 public:
  // bucket_elems: the most gradient elements one collective moves (rounded down to a multiple
  // of the group size). The table must be laid out with layout_groups(dp, edp).
  DistributedOptimizer(const ParamTable& table, const OptimComms& comms, bool zero1,
                       double weight_decay, size_t bucket_elems = size_t{4} << 20);

  // grads[P] (=) summed over the groups (without ZeRO-1 everywhere, with ZeRO-1 at least in
  // this rank's chunks). Returns the global gradient norm (NaN/inf pass through).
  double reduce_gradients(float* grads);

  // params[P] (=) updated by AdamW(lr, grads * grad_scale) and identical on every replica.
  // Returns AdamW::step's count of elements not finite after the update, of this rank's part
  // (its chunks under ZeRO-1): not agreed between the ranks.
  int64_t step(float* params, const float* grads, double lr, double grad_scale);

  // Where this rank's AdamW moments live: runs of the local layout's elements [first, first + n)
  // held at [at, at + n) of moments(). Without ZeRO-1 one run, the whole buffer [P]; with it this
  // rank's chunk of each bucket. A checkpoint writes them, and a resume reads them, where they lie
  // (training_refs), so ZeRO-1 never holds the whole moments.
  struct MomentRun {
    size_t first = 0, n = 0, at = 0;
  };
  std::vector<MomentRun> moment_runs() const;
  std::pair<float*, float*> moments() { return {adam_.m().data(), adam_.v().data()}; }

  int64_t step_count() const { return adam_.step_count(); }
  void set_step_count(int64_t n) { adam_.set_step_count(n); }
  bool zero1() const { return zero1_; }

 private:
  struct Bucket {
    size_t first = 0, size = 0;  // in the local buffer; size is a multiple of the group size
    const comm::Comm* comm = nullptr;
    size_t chunk() const { return size / static_cast<size_t>(comm->size()); }
    size_t own_first() const { return first + chunk() * static_cast<size_t>(comm->rank()); }
  };
  void for_each_own_chunk(size_t& moment_at, auto&& f) const;

  const ParamTable& table_;
  OptimComms comms_;
  bool zero1_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> router_;  // (offset, numel) of the tp-partial grads
  std::vector<std::pair<size_t, size_t>> norm_;    // own elements counted in the norm
  AdamW adam_;
  std::vector<float> scratch_;  // one bucket chunk, and the packed router gradients
};

}  // namespace sy

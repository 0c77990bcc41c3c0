// Memory per rank, before and during a run (issue 18 part 4):
//   - before allocating: the trainer predicts each rank's memory with the planner's model
//     (src/plan/memory.h) and refuses a run that cannot fit (UsageError, exit 2, naming the
//     largest term, its size, the keys that shrink it and the memory the rank has), and a size
//     past the 32-bit index types the code uses;
//   - during the run: each rank's peak memory (host RSS high-water mark on the CPU, device memory
//     in use on the GPU), the largest over the ranks reported as metrics' `peak_mem_bytes`.
#pragma once

#include <cstdint>
#include <exception>
#include <string>

#include "comm/mpi.h"
#include "src/config/config.h"

namespace sy {

namespace comm {
class Watchdog;
}

// The memory one rank may use.
struct MemoryBudget {
  double bytes = 0;         // per rank
  std::string what;         // where the figure comes from, for messages
  double in_use_bytes = 0;  // what the process already holds (its RSS), counted as workspace
  int64_t node_ranks = 1;   // ranks sharing this host (MPI_COMM_TYPE_SHARED)
  // kGpuDevice: device memory a library takes after the check, beside the model's buffers (the
  // cuBLAS workspace); what is already allocated is out of `bytes`, the GPU's free memory.
  double library_bytes = 0;
};

// Host memory (RAM or the cgroup's limit) divided by the ranks on this host. Collective over
// `world` (it counts the ranks sharing the host).
MemoryBudget host_memory_budget(const comm::Comm& world);
// The same for `node_ranks` processes on this host, without MPI (one process: `bench train`).
MemoryBudget host_memory_budget(int64_t node_ranks);

// Which memory a check is about.
enum class MemorySide {
  kCpuRank,   // a device: cpu rank: everything, in host memory
  kGpuHost,   // the host side of a device: cuda rank: the token data, the host copies of the
              // parameters and AdamW moments a checkpoint or --resume stages, the process
  kGpuDevice  // the GPU's memory: the model, its activations and buffers (no token data)
};

// Throws UsageError when cfg on `world_size` ranks cannot fit `budget` per rank on `side`, or
// indexes past int32. Reads only the token file's declared sizes (data.path), never its tokens.
// The check prices uniform routing; a dropless expert-parallel run (no moe.capacity_factor)
// whose busiest rank would not fit under an untrained router's skew (its experts at
// kUntrainedSkew times their share: configs/small.yaml priced so at 1.24x the uniform figure at
// ep=2 and 1.63x at ep=4, where runs measured 1.26-1.35x and 1.7x) is not refused, but returned
// as a warning to print; "" otherwise.
inline constexpr double kUntrainedSkew = 3.0;
[[nodiscard]] std::string check_memory_fits(const Config& cfg, int world_size,
                                            const MemoryBudget& budget, MemorySide side);

// This process's peak resident set size (getrusage ru_maxrss), bytes.
int64_t peak_rss_bytes();

// What a failure that is not an sy::Error says after "fatal: ": its what(), and for an
// out-of-memory an address-space limit (ulimit -v) where one is set, which libraries' and
// threads' mappings count against beside the memory the check before training predicted.
std::string failure_text(const std::exception& e);

// The largest `value` over the ranks of `comm` (an MPI_MAX all-reduce, bounded by the watchdog).
int64_t max_over_ranks(const comm::Comm& comm, int64_t value, comm::Watchdog* wd);

}  // namespace sy

// `device: cuda` (issue 6): the training loop over CudaModel (src/model/cuda_model.h) on one GPU
// or, data-parallel, on one GPU per rank with the gradients all-reduced by NCCL.
#pragma once

#include <iosfwd>
#include <memory>

#include "comm/groups.h"
#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/train/trainer.h"

namespace sy {

namespace comm {
class Watchdog;
}

// The most experts a token goes to on the GPU (kernels/cuda/moe_ops.h's kMaxTopK: the router
// keeps a token's choice in registers).
inline constexpr int64_t kGpuMaxTopK = 16;

// Throws UsageError naming what a `device: cuda` run cannot do: expert tensor parallelism
// (parallel.etp > 1), parallel.zero1, parallel.expert_placement, moe.top_k past kGpuMaxTopK, a
// build without the CUDA backend, or more than one rank in a build without NCCL. Nothing for
// `device: cpu`.
// Depends on the config and the build only, so every rank decides alike.
void check_gpu_run(const Config& cfg, int world_size);

#if defined(SWITCHYARD_HAVE_CUDA)
// check_memory_fits for cfg on `world_size` ranks against the current GPU's free memory
// (MemorySide::kGpuDevice) and the cuBLAS workspace the model's handle adds; `gpu` names the GPU
// in the message. The trainer (after NCCL's set-up) and `bench train`. Returns
// check_memory_fits's warning ("" or a skew that may not fit).
[[nodiscard]] std::string check_current_gpu_fits(const Config& cfg, int world_size,
                                                 const std::string& gpu, int64_t node_ranks);
#endif

// The group over which a GPU step sums the expert gradients: the ranks holding replicas of the
// same experts, the CPU optimizer's edp group (world / (ep etp) ranks; with tp > 1 and ep = 1
// that is every rank, not the dp group). Returns g.dp() when it holds the same ranks in the same
// order, so that one NCCL communicator serves the dense and the expert sums.
const comm::Comm& gpu_expert_sum_group(const comm::ProcessGroups& g);

// What a GPU run owns on the device: the model, the NCCL communicator, the device choice. The
// caller keeps it alive past an exception (see train()): a rank that fails alone must abort the
// job, not free device memory and communicators that its peers' collectives are still using.
struct GpuRun;

struct GpuRunArgs {
  const Config& cfg;       // resolved: moe.route_groups a number (resolve_route_groups)
  const Config& user_cfg;  // as given (route_groups may say `nodes`): the run's loop (train_loop.h)
  const TokenSource& data;
  const comm::ProcessGroups& groups;  // etp = 1 (check_gpu_run)
  comm::Watchdog* watchdog;           // bounds the MPI waits (NCCL waits use parallel.timeout_s)
  const TrainOptions& options;        // resume, signals, gather_params, check_replicas
  bool spans_nodes = false;           // some EP group crosses nodes (agreed by every rank)
};

// The whole run: checkpoints, --resume, preemption, metrics.jsonl, progress and eval lines as the
// CPU trainer (trainer.h) does them. Collective over args.groups.world(); call check_gpu_run
// first. `keep` receives the run's device state.
TrainSummary train_on_gpu(const GpuRunArgs& args, std::ostream& log, std::shared_ptr<GpuRun>& keep);

}  // namespace sy

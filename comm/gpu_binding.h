// One GPU per rank: which of the GPUs it can see a rank uses, and the check that no two ranks of
// a node end up on the same physical GPU (NCCL refuses that, and two ranks sharing one GPU halve
// its speed). No CUDA here: the caller passes the visible-device count and a function naming a
// device (its UUID), so the decision is testable on machines without GPUs.
//
// The cases a launcher produces, for a node running R ranks:
//   - every rank sees all the node's G GPUs (mpirun, srun --gpus-per-node=G): rank with local
//     index i takes device i % G -- distinct while R <= G;
//   - each rank sees only its own (SLURM --gpus-per-task=1, or a per-rank CUDA_VISIBLE_DEVICES):
//     every rank takes its device 0, and the UUIDs differ;
//   - more ranks than GPUs (R > G with every GPU visible, or one CUDA_VISIBLE_DEVICES for all):
//     two ranks land on one UUID -> refused, naming both ranks and the GPU.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "comm/mpi.h"

namespace sy::comm {

// The device index (among the visible ones) of the rank with node-local index local_rank, or -1
// when it sees none. Pure.
int gpu_for_local_rank(int local_rank, int visible_devices);

// "" when every non-empty id in gpu_ids (indexed by local rank; "" = that rank has no GPU) is
// distinct, else a message naming the first two local ranks that share a GPU. Pure.
std::string shared_gpu_error(const std::vector<std::string>& gpu_ids);

struct GpuBinding {
  int device = -1;    // this rank's device index (cudaSetDevice), when error is empty
  std::string error;  // why the node's ranks cannot each have a GPU of their own; the same on
                      // every rank of the node
};

// Collective over `node` (the ranks of one node, MPI_COMM_TYPE_SHARED): each rank passes how many
// GPUs it sees (no_gpu_reason says why when 0) and gpu_id(device), the identity of one of its
// visible devices (called only for the chosen one). Every rank of the node gets the same verdict:
// an error when a rank sees no GPU or two ranks would share one.
GpuBinding bind_gpu_per_rank(const Comm& node, int visible_devices,
                             const std::function<std::string(int)>& gpu_id,
                             const std::string& no_gpu_reason = "");

}  // namespace sy::comm

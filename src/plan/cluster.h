// A cluster as the planner sees it (clusters/*.yaml): how many nodes and ranks, how fast one rank
// multiplies matrices and streams memory, how much memory it has, and an alpha-beta model of the
// two kinds of link a rank talks over (inside a node; between nodes). Every figure is per rank
// and in SI units (bytes, seconds, FLOP/s, bytes/s), so a formula never converts units.
//
// The file format, key by key, is clusters/README.md; parse_cluster() rejects unknown keys and
// missing required ones (UsageError naming the file and the key). No I/O here: the caller reads
// the file (src/plan/io/).
#pragma once

#include <cstdint>
#include <string>

namespace sy::plan {

// Alpha-beta model of one link class: moving b bytes in m messages takes
//   m * latency_s + b / bandwidth  seconds.
struct Link {
  double bandwidth = 0;  // bytes/s one rank sends (and receives) at, per direction
  double latency_s = 0;  // seconds per message
  // The bandwidth is one node's NIC(s) shared by all ranks of the node (each rank then gets
  // bandwidth / ranks_per_node when all of them send at once, as in an all-to-all); false: per
  // rank.
  bool shared_by_node = false;
};

struct Cluster {
  std::string name;
  bool overlaps_comm = false;  // the backend overlaps the expert all-to-all with expert GEMMs
                               // when moe.overlap_chunks > 1 (device: cuda); the CPU does not
  // Every rank of a run shares one host (nodes emulated with parallel.ranks_per_node): the
  // compute figures below are the host's, divided among the ranks of the run.
  bool one_host = false;
  // one_host: the host's cores. A rank of a run of n ranks runs t = max(1, cores / n) threads
  // (OMP_NUM_THREADS, as bench/plan_validate.py sets it) at t / cores of the compute figures
  // (which are the host's with every core running a one-thread rank), times thread_efficiency
  // when t > 1 (the fraction of a linear speed-up one rank gets from its threads); the ranks
  // take turns on the cores (step_time.h). cores 0 = the figures divided evenly among the
  // ranks, no turns. Not one_host: a node's cores; a CPU rank runs cores / ranks_per_node
  // threads, each with its own attention tiles (memory.h; the compute figures are per rank).
  int64_t cores = 0;
  double thread_efficiency = 1;
  int64_t nodes = 1;  // the most nodes a layout may span
  int64_t ranks_per_node = 1;
  double memory_bytes = 0;  // per rank; 0 = the rank's share of this host's RAM (the trainer
                            // measures it; the planner then needs --memory)
  double base_bytes = 0;    // what a rank holds before the model: libraries, MPI/NCCL and BLAS
                            // buffers, CUDA context (measured: clusters/README.md)

  // Compute, per rank. A GEMM of 2*M*N*K FLOPs runs at
  //   gemm_flops * m / (m + gemm_half_dim),   m = min(M, N, K)
  // (half the peak at m = gemm_half_dim: small products cannot fill the machine).
  double gemm_flops = 0;
  double gemm_half_dim = 0;
  double mem_bandwidth = 0;  // bytes/s of a streaming pass (the optimizer)
  // bytes/s at which the elementwise passes stream the saved activations (norms, RoPE, softmax,
  // SwiGLU, gathers); 0 = mem_bandwidth
  double elementwise_bandwidth = 0;
  // seconds per layer and micro-batch (forward and backward) that do not scale with its rows:
  // the fixed costs of the layer's few dozen kernel calls (packing GEMM operands, OpenMP
  // fork/join; kernel launches on a GPU). 0 = not modelled.
  double layer_overhead_s = 0;
  double elementwise_rate() const {
    return elementwise_bandwidth > 0 ? elementwise_bandwidth : mem_bandwidth;
  }

  Link intra;      // between ranks of one node (shared memory, NVLink)
  Link inter;      // between nodes (the network); the hierarchical all-to-all's UCX leg
  Link inter_mpi;  // the network through MPI (flat all-to-all, the `internode: mpi` leg, the
                   // gradient collectives); bandwidth 0 = same as `inter`
  const Link& mpi_inter() const { return inter_mpi.bandwidth > 0 ? inter_mpi : inter; }

  int64_t max_ranks() const { return nodes * ranks_per_node; }
};

// Parses a cluster file's text; `source` names it in messages. Throws UsageError naming the source
// and the key for an unknown key, a missing required one or a value out of range.
Cluster parse_cluster(const std::string& yaml_text, const std::string& source);

// The cluster as YAML that parse_cluster() reads back to the same values; `comments` (lines
// starting with '#') go first.
std::string cluster_to_yaml(const Cluster& c, const std::string& comments = "");

}  // namespace sy::plan

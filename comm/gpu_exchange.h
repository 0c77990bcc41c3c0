// The expert all-to-all between GPU ranks (CUDA build with NCCL only): the hierarchical route of
// comm/route_plan.h executed on device buffers.
//   - gathers and the combine's sums: device kernels over the plan's index lists
//     (kernels/cuda/moe_ops.h gather_rows, segment_sum_rows; every sum in a fixed order);
//   - across nodes (a token once per destination node): MPI_Alltoallv over the node peers, on
//     device pointers when Open MPI reports CUDA support (cuda_aware_mpi()), otherwise staged
//     through pinned host memory; on one node the stage is a device copy of this rank's own rows;
//   - inside the node (the fan-out to the ranks holding the experts): ncclSend/ncclRecv in one
//     NCCL group over the node's ranks (NVLink on a GPU node).
// Every call queues its device work on the caller's stream; MPI needs the rows on the host side,
// so the inter-node stage waits for the stream first. NCCL waits are bounded by timeout_s
// (parallel.timeout_s), MPI ones by the watchdog.
//
// Letters as route_plan.h; W the row width in elements of T (float or bf16).
#pragma once
#if defined(SWITCHYARD_HAVE_NCCL)

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "comm/alltoall.h"
#include "comm/nccl.h"
#include "comm/route_plan.h"
#include "kernels/cuda/buffer.h"

namespace sy::comm {

// One layout: the host plan and its index lists on the device.
struct GpuRoute {
  RoutePlan plan;
  cuda::DeviceBuffer<int64_t> a_send_token, a_token_begin, a_token_pos;
  cuda::DeviceBuffer<int64_t> b_send_row, b_row_begin, b_row_pos;
  cuda::PinnedBuffer<int64_t> stage;  // page-locked staging of the six uploads
  int64_t num_tokens() const { return plan.num_tokens; }
  int64_t num_recv() const { return plan.num_recv(); }  // Mr
};

class GpuExchange {
 public:
  // Collective over ep_comm (which must outlive the exchange). Every rank must have selected its
  // GPU. node_of_ep_rank as ExchangeOptions (empty: the nodes MPI reports).
  GpuExchange(MPI_Comm ep_comm, const std::vector<int>& node_of_ep_rank, int num_experts,
              double timeout_s, Watchdog* watchdog);
  GpuExchange(const GpuExchange&) = delete;
  GpuExchange& operator=(const GpuExchange&) = delete;

  int num_ranks() const { return groups_.topo.num_ranks; }
  int num_experts() const { return groups_.num_experts; }
  int rank() const { return groups_.topo.rank; }

  // Collective (host MPI). topk_idx[N*K] on the host, as TokenExchange::layout. The index lists
  // are copied to the device on `stream`. layout synchronises only `stream` before it rewrites
  // the route's lists, so every earlier use of `route` on another stream (the communication
  // stream of an overlapped MoE layer) must already be joined into `stream` by an event wait.
  void layout(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k, GpuRoute& route,
              cudaStream_t stream);
  // recv[Mr,W] (=) the rows of x[N,W] per the route (device pointers). Collective.
  template <class T>
  void dispatch(const GpuRoute& route, const T* x, T* recv, int W, cudaStream_t stream);
  // out[N,W] (=) per token the sum of the rows of y[Mr,W] that dispatch delivered from it (zeros
  // for a token that went nowhere). The adjoint of dispatch. Collective.
  template <class T>
  void combine(const GpuRoute& route, const T* y, T* out, int W, cudaStream_t stream);

  const ExchangeStats& stats() const { return stats_; }
  void reset_stats() { stats_ = ExchangeStats{}; }
  std::string describe() const;

 private:
  // recv (=) the rows of send exchanged over the node peers (MPI); rows are row_bytes long.
  void across_nodes(const void* send, const std::vector<int64_t>& send_rows, void* recv,
                    const std::vector<int64_t>& recv_rows, size_t row_bytes, cudaStream_t stream,
                    const char* what);
  // recv (=) the rows of send exchanged inside the node (NCCL).
  template <class T>
  void inside_node(const T* send, const std::vector<int64_t>& send_rows, T* recv,
                   const std::vector<int64_t>& recv_rows, int W, cudaStream_t stream,
                   const char* what);
  void count_traffic(const RoutePlan& plan, size_t row_bytes);
  // Waits on the host for `stream`'s queued work (what the call's inputs wait for), so that the
  // call's time is the exchange's.
  static void wait_for_inputs(cudaStream_t stream);
  // A dispatch or combine begins: its traffic counted, and the three row buffers grown for the
  // plan: a[S], xr[X], b[F] rows.
  template <class T>
  struct Scratch {
    T *a, *xr, *b;
  };
  template <class T>
  Scratch<T> begin_call(const RoutePlan& plan, size_t row_bytes);

  RouteGroups groups_;
  std::unique_ptr<NcclComm> node_nccl_;  // the node's ranks; none when a node has one rank
  CudaAwareMpi cuda_aware_;
  Watchdog* watchdog_;
  cuda::DeviceBuffer<std::byte> a_, xr_, b_;          // [S,W], [X,W], [F,W] scratch
  cuda::PinnedBuffer<std::byte> host_in_, host_out_;  // the staged inter-node stage
  std::vector<int> counts_, displs_, rcounts_, rdispls_;
  ExchangeStats stats_;
};

}  // namespace sy::comm

#endif  // SWITCHYARD_HAVE_NCCL

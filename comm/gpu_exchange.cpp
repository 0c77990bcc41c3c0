// The expert all-to-all between GPU ranks (see gpu_exchange.h). Compiled only in the CUDA build
// with NCCL: sy_comm's glob also sees this file, and without SWITCHYARD_HAVE_NCCL it is empty.
#if defined(SWITCHYARD_HAVE_NCCL)
#include "comm/gpu_exchange.h"

#include <algorithm>
#include <sstream>

#include "comm/watchdog.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/moe_ops.h"
#include "src/core/error.h"

namespace sy::comm {

namespace {

int64_t total(const std::vector<int64_t>& rows) {
  int64_t n = 0;
  for (int64_t r : rows) n += r;
  return n;
}

// Element counts and displacements of rows of W elements, for NCCL.
void element_counts(const std::vector<int64_t>& rows, int W, std::vector<size_t>& counts,
                    std::vector<size_t>& displs) {
  counts.resize(rows.size());
  displs.resize(rows.size());
  size_t at = 0;
  for (size_t p = 0; p < rows.size(); ++p) {
    counts[p] = static_cast<size_t>(rows[p]) * static_cast<size_t>(W);
    displs[p] = at;
    at += counts[p];
  }
}

}  // namespace

GpuExchange::GpuExchange(MPI_Comm ep_comm, const std::vector<int>& node_of_ep_rank, int num_experts,
                         double timeout_s, Watchdog* watchdog)
    : groups_(ep_comm, node_of_ep_rank, num_experts),
      cuda_aware_(cuda_aware_mpi()),
      watchdog_(watchdog) {
  // NCCL only inside a node of several ranks: emulated nodes of one rank (and one-rank nodes)
  // move their rows by device copies and MPI, and may even share a GPU.
  if (groups_.node.size() > 1)
    node_nccl_ = std::make_unique<NcclComm>(groups_.node.get(), timeout_s,
                                            "the expert exchange inside a node");
}

std::string GpuExchange::describe() const {
  std::ostringstream os;
  const detail::Topology& t = groups_.topo;
  os << "hierarchical GPU exchange, " << t.num_nodes << " node(s) x " << t.ranks_per_node
     << " GPU(s): inside a node " << (node_nccl_ ? "NCCL" : "a device copy (one rank per node)");
  if (t.num_nodes > 1)
    os << ", across nodes MPI "
       << (cuda_aware_ == CudaAwareMpi::kYes ? "on device memory (CUDA-aware)"
                                             : "staged through pinned host memory");
  return os.str();
}

void GpuExchange::layout(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k,
                         GpuRoute& route, cudaStream_t stream) {
  detail::StatsTimer timer(&stats_.seconds);
  // The previous layout's index lists may still be read by queued kernels: those on `stream`,
  // and (the caller's duty, see the header) those on other streams joined into it.
  CUDA_CHECK(cudaStreamSynchronize(stream));
  route.plan = make_route_plan(groups_, topk_idx, num_tokens, top_k, watchdog_);
  const RoutePlan& p = route.plan;
  // The stage is free: the synchronisation above waited for the previous layout's copies.
  route.stage.resize(p.a_send_token.size() + p.a_token_begin.size() + p.a_token_pos.size() +
                     p.b_send_row.size() + p.b_row_begin.size() + p.b_row_pos.size());
  int64_t* st = route.stage.data();
  st = cuda::upload_staged(route.a_send_token, p.a_send_token, st, stream);
  st = cuda::upload_staged(route.a_token_begin, p.a_token_begin, st, stream);
  st = cuda::upload_staged(route.a_token_pos, p.a_token_pos, st, stream);
  st = cuda::upload_staged(route.b_send_row, p.b_send_row, st, stream);
  st = cuda::upload_staged(route.b_row_begin, p.b_row_begin, st, stream);
  cuda::upload_staged(route.b_row_pos, p.b_row_pos, st, stream);
}

void GpuExchange::count_traffic(const RoutePlan& plan, size_t row_bytes) {
  ++stats_.calls;
  stats_.internode_bytes += plan.internode_rows * static_cast<int64_t>(row_bytes);
  stats_.intranode_bytes += plan.intranode_rows * static_cast<int64_t>(row_bytes);
  for (size_t g = 0; g < plan.a_send_rows.size(); ++g)
    stats_.internode_messages +=
        static_cast<int>(g) != groups_.topo.node() && plan.a_send_rows[g] > 0;
}

void GpuExchange::across_nodes(const void* send, const std::vector<int64_t>& send_rows, void* recv,
                               const std::vector<int64_t>& recv_rows, size_t row_bytes,
                               cudaStream_t stream, const char* what) {
  detail::StatsTimer timer(&stats_.transfer_seconds);
  const size_t in = static_cast<size_t>(total(send_rows)) * row_bytes;
  const size_t out = static_cast<size_t>(total(recv_rows)) * row_bytes;
  if (groups_.topo.num_nodes == 1) {  // only this rank's own rows, to itself
    SY_CHECK(in == out, "one-node route sends " << in << " bytes and receives " << out);
    if (in > 0) CUDA_CHECK(cudaMemcpyAsync(recv, send, in, cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const size_t G = send_rows.size();
  counts_.resize(G);
  displs_.resize(G);
  rcounts_.resize(G);
  rdispls_.resize(G);
  rows_to_mpi_counts(send_rows, counts_, displs_);
  rows_to_mpi_counts(recv_rows, rcounts_, rdispls_);
  const bool direct = cuda_aware_ == CudaAwareMpi::kYes;
  const void* src = send;
  void* dst = recv;
  if (!direct) {
    CUDA_CHECK(cudaStreamSynchronize(stream));  // the last H2D copy out of host_out_ is done
    host_in_.resize(in);
    host_out_.resize(out);
    if (in > 0)
      CUDA_CHECK(cudaMemcpyAsync(host_in_.data(), send, in, cudaMemcpyDeviceToHost, stream));
    src = host_in_.data();
    dst = host_out_.data();
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));  // MPI reads what the stream wrote
  {
    WatchdogScope scope(watchdog_, what);
    // Counted in rows of row_bytes: in bytes, 75 000 fp32 rows of d_model 7168 pass INT_MAX.
    const RowType row(static_cast<long long>(row_bytes), MPI_BYTE);
    MPI_CHECK(MPI_Alltoallv(src, counts_.data(), displs_.data(), row.get(), dst, rcounts_.data(),
                            rdispls_.data(), row.get(), groups_.peers.get()));
  }
  if (!direct && out > 0)
    CUDA_CHECK(cudaMemcpyAsync(recv, host_out_.data(), out, cudaMemcpyHostToDevice, stream));
}

template <class T>
void GpuExchange::inside_node(const T* send, const std::vector<int64_t>& send_rows, T* recv,
                              const std::vector<int64_t>& recv_rows, int W, cudaStream_t stream,
                              const char* what) {
  detail::StatsTimer timer(&stats_.transfer_seconds);
  if (!node_nccl_) {  // this rank alone on its node: its own rows, to itself
    const size_t n = static_cast<size_t>(total(send_rows)) * static_cast<size_t>(W) * sizeof(T);
    if (n > 0) CUDA_CHECK(cudaMemcpyAsync(recv, send, n, cudaMemcpyDeviceToDevice, stream));
    return;
  }
  std::vector<size_t> sc, sd, rc, rd;
  element_counts(send_rows, W, sc, sd);
  element_counts(recv_rows, W, rc, rd);
  node_nccl_->all_to_all_v(send, sc, sd, recv, rc, rd, nccl_type<T>(), stream);
  node_nccl_->wait(stream, what);
}

// The exchange's time (a2a_ms, the progress line's a2a share) starts when its inputs are ready:
// `stream` is made to wait for the compute that writes them (an event of the main stream: the
// experts before a combine, the layers above before a backward dispatch), and the exchange waits
// on the host for its stream, so without this wait that compute was counted as all-to-all time
// (review; the CPU exchange is called after its compute). The host waited for it all the same;
// not yet run on a GPU.
void GpuExchange::wait_for_inputs(cudaStream_t stream) {
  CUDA_CHECK(cudaStreamSynchronize(stream));
}

template <class T>
GpuExchange::Scratch<T> GpuExchange::begin_call(const RoutePlan& p, size_t row_bytes) {
  count_traffic(p, row_bytes);
  a_.resize(static_cast<size_t>(p.num_sent()) * row_bytes);
  xr_.resize(static_cast<size_t>(p.num_forwarded()) * row_bytes);
  b_.resize(static_cast<size_t>(p.num_fanned()) * row_bytes);
  return {reinterpret_cast<T*>(a_.data()), reinterpret_cast<T*>(xr_.data()),
          reinterpret_cast<T*>(b_.data())};
}

template <class T>
void GpuExchange::dispatch(const GpuRoute& route, const T* x, T* recv, int W, cudaStream_t stream) {
  wait_for_inputs(stream);
  detail::StatsTimer timer(&stats_.seconds);
  const RoutePlan& p = route.plan;
  const size_t row = static_cast<size_t>(W) * sizeof(T);
  const auto [a, xr, b] = begin_call<T>(p, row);
  cuda::gather_rows(a, x, route.a_send_token.data(), p.num_sent(), W, stream);
  across_nodes(a, p.a_send_rows, xr, p.a_recv_rows, row, stream, "dispatch across nodes");
  cuda::gather_rows(b, xr, route.b_send_row.data(), p.num_fanned(), W, stream);
  inside_node(b, p.b_send_rows, recv, p.b_recv_rows, W, stream, "dispatch inside the node");
}

template <class T>
void GpuExchange::combine(const GpuRoute& route, const T* y, T* out, int W, cudaStream_t stream) {
  wait_for_inputs(stream);
  detail::StatsTimer timer(&stats_.seconds);
  const RoutePlan& p = route.plan;
  const size_t row = static_cast<size_t>(W) * sizeof(T);
  const auto [a, xr, b] = begin_call<T>(p, row);
  inside_node(y, p.b_recv_rows, b, p.b_send_rows, W, stream, "combine inside the node");
  cuda::segment_sum_rows(xr, b, route.b_row_begin.data(), route.b_row_pos.data(), p.num_forwarded(),
                         W, stream);
  across_nodes(xr, p.a_recv_rows, a, p.a_send_rows, row, stream, "combine across nodes");
  cuda::segment_sum_rows(out, a, route.a_token_begin.data(), route.a_token_pos.data(), p.num_tokens,
                         W, stream);
}

#define SY_INSTANTIATE(T)                                                                   \
  template void GpuExchange::dispatch<T>(const GpuRoute&, const T*, T*, int, cudaStream_t); \
  template void GpuExchange::combine<T>(const GpuRoute&, const T*, T*, int, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(__nv_bfloat16)
#undef SY_INSTANTIATE

}  // namespace sy::comm
#endif  // SWITCHYARD_HAVE_NCCL

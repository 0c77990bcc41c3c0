// The GPU expert exchange (comm/gpu_exchange.h) under mpirun, one GPU per rank: layout, dispatch
// and combine on device buffers, checked by tests/comm/route_check.h against the naive
// reference (delivery of each (source, token) row to exactly the ranks holding its experts,
// values bit for bit, exact combine sums, once-per-node traffic), on one node (NCCL only, a GPU
// per rank) and on emulated nodes of one rank (the MPI stage, staged through host memory unless
// CUDA-aware; no NCCL, so the ranks may share one GPU);
// plus the bf16 rows against the fp32 ones.
#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "comm/gpu_exchange.h"
#include "comm/route_check.h"
#include "kernels/cuda/buffer.h"
#include "nccl_test_util.h"

namespace {

using sy::comm::GpuExchange;
using sy::comm::GpuRoute;
using sy::test::world_size;

// Host doubles <-> device T, through float (the test's values are small exact integers).
template <class T>
sy::cuda::DeviceBuffer<T> to_device_as(const std::vector<double>& h) {
  std::vector<T> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = static_cast<T>(static_cast<float>(h[i]));
  return sy::cuda::to_device(v);
}
template <class T>
std::vector<double> to_host(const sy::cuda::DeviceBuffer<T>& d, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> v = d.download();
  std::vector<double> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<double>(static_cast<float>(v[i]));
  return h;
}

template <class T>
sy::test::RouteExec gpu_executor(GpuExchange& ex, cudaStream_t s) {
  auto route = std::make_shared<GpuRoute>();
  sy::test::RouteExec e;
  e.layout = [&ex, route, s](std::span<const int32_t> topk, int64_t n,
                             int k) -> const sy::comm::RoutePlan& {
    ex.layout(topk, n, k, *route, s);
    return route->plan;
  };
  e.dispatch = [&ex, route, s](const std::vector<double>& x, int64_t w) {
    auto dx = to_device_as<T>(x);
    const size_t n = static_cast<size_t>(route->num_recv() * w);
    sy::cuda::DeviceBuffer<T> recv(n);
    recv.fill_bytes(0xFF);
    ex.dispatch(*route, dx.data(), recv.data(), static_cast<int>(w), s);
    return to_host(recv, n);
  };
  e.combine = [&ex, route, s](const std::vector<double>& y, int64_t w) {
    auto dy = to_device_as<T>(y);
    const size_t n = static_cast<size_t>(route->num_tokens() * w);
    sy::cuda::DeviceBuffer<T> out(n);
    out.fill_bytes(0xFF);
    ex.combine(*route, dy.data(), out.data(), static_cast<int>(w), s);
    return to_host(out, n);
  };
  return e;
}

// Every routing of the sweep on the nodes node_of (block_nodes(P, G)), L experts per rank.
int64_t check_on_nodes(int G, cudaStream_t stream, unsigned& seed) {
  const int P = world_size();
  const std::vector<int> node_of = sy::test::block_nodes(P, G);
  int64_t wrong = 0;
  for (int L : {1, 3}) {
    GpuExchange ex(MPI_COMM_WORLD, node_of, P * L, 60.0, nullptr);
    sy::test::RouteExec run = gpu_executor<float>(ex, stream);
    wrong += sy::test::check_routings(run, P * L, node_of, {1, 2, 3}, seed, 7,
                                      std::to_string(G) + " node(s) L=" + std::to_string(L));
  }
  return wrong;
}

// One node: the NCCL stage inside it (a GPU per rank).
TEST(GpuExchange, MatchesReferenceOnOneNode) {
  SY_REQUIRE_GPU_PER_RANK();
  sy::cuda::Stream stream;
  unsigned seed = 5;
  EXPECT_EQ(sy::test::sum_over_world(check_on_nodes(1, stream.get(), seed)), 0);
}

// Every rank its own emulated node: the inter-node stage is MPI (staged through pinned host
// memory unless CUDA-aware) and no NCCL communicator is made, so the ranks may share one GPU.
TEST(GpuExchange, MatchesReferenceOnEmulatedNodesWithoutNccl) {
  SY_REQUIRE_GPU_ON_EVERY_RANK();
  sy::cuda::Stream stream;
  unsigned seed = 6;
  EXPECT_EQ(sy::test::sum_over_world(check_on_nodes(world_size(), stream.get(), seed)), 0);
}

// bf16 rows: integers below 256 are exact in bf16, so the bf16 run must give the float run's
// values (the combine's sums are accumulated in fp32 and stay below 256 here).
TEST(GpuExchange, Bf16RowsMatchFloatRows) {
  SY_REQUIRE_GPU_PER_RANK();
  const int P = world_size(), me = sy::comm::world_rank(), K = 2, E = 2 * P, W = 5;
  sy::cuda::Stream stream;
  GpuExchange ex(MPI_COMM_WORLD, {}, E, 60.0, nullptr);
  const auto routing = sy::test::make_routing(77, me, P, E, K, sy::test::Skew::kUniform);
  std::vector<double> x(static_cast<size_t>(routing.num_tokens * W));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>((me * 7 + i) % 16);
  sy::test::RouteExec f32 = gpu_executor<float>(ex, stream.get());
  sy::test::RouteExec b16 = gpu_executor<__nv_bfloat16>(ex, stream.get());
  f32.layout(routing.topk, routing.num_tokens, K);
  b16.layout(routing.topk, routing.num_tokens, K);
  const auto r32 = f32.dispatch(x, W), r16 = b16.dispatch(x, W);
  const auto c32 = f32.combine(r32, W), c16 = b16.combine(r16, W);
  long wrong = (r32 != r16) + (c32 != c16);
  EXPECT_EQ(sy::test::sum_over_world(wrong), 0) << "bf16 rows differ from float rows";
}

}  // namespace

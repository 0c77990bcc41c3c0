// The GPU MoE layer's expert-parallel path (src/model/cuda_moe_parallel.cu: routes through
// comm::GpuExchange, the layer's communication stream, moe.overlap_chunks) against the CPU
// MoeLayer<float> of the whole layer, under mpirun:
//   - np=1: a one-rank exchange (every expert local, the rows still routed, dispatched on the
//     communication stream and combined), in 1 and 3 chunks, and in 3 with either stream held
//     back by a busy-wait (a missing wait between the streams then gives wrong values);
//   - np=2 on two emulated nodes of one rank each: the inter-node stage is MPI (staged through
//     pinned host memory unless the MPI is CUDA-aware) and no NCCL is needed, so the two ranks
//     may share one GPU;
//   - np=2 on one node (the NCCL stage inside the node), with a GPU per rank.
// Each rank routes its own micro-batch and holds E/P experts. Its output, dm, aux, z and routing
// counts must be the CPU layer's on its tokens; its router gradient the CPU's on its tokens; its
// experts' gradients the sum over the ranks' micro-batches of the CPU's (every rank recomputes
// every rank's reference from the seeds). fp32 1e-5, bf16 1e-2 (scale-relative).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "comm/gpu_exchange.h"
#include "common/mpi_util.h"
#include "gpu/moe_test_case.h"
#include "nccl_test_util.h"

namespace {

using sy::gputest::bf16;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::representable;
using sy::gputest::tol;
using sy::gputest::upload_as;

struct ExchangeCase {
  int chunks = 1;
  int S = 1;
  double capacity_factor = 0.0;
  bool one_node = false;  // false: every rank its own (emulated) node
  // GPU clock cycles of busy-wait ahead of each move on the communication stream, or each
  // chunk's compute on the main one (CudaMoeLayer::set_stream_delays_for_tests): with the shapes
  // this small the two streams otherwise run in launch order and a missing wait goes unseen.
  long long comm_delay = 0, main_delay = 0;
};

template <class T>
void run_exchange_case(const ExchangeCase& xc) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  // Dims, weights and micro-batches shared with tests/margins/test_gpu_margins.cpp, which checks
  // that they hold no near-tie (top-k or capacity cut) that fp32 rounding could flip: the routing
  // counts are compared exactly.
  const sy::MoeDims d = sy::gputest::exchange_case_dims(xc.S, xc.capacity_factor);
  const int B = sy::gputest::kMoeCaseB, T_ = sy::gputest::kMoeCaseT, N = B * T_, C = d.C, E = d.E,
            F = d.F, L = E / P;
  const sy::LossScale s{1.0 / (2 * N), 1.0 / 3};
  const std::string what = "P=" + std::to_string(P) + " chunks=" + std::to_string(xc.chunks) +
                           " S=" + std::to_string(xc.S) + (xc.one_node ? " one node" : " nodes") +
                           (d.has_capacity ? " capacity" : " dropless") +
                           (xc.comm_delay > 0 ? " comm delayed" : "") +
                           (xc.main_delay > 0 ? " main delayed" : "");

  const sy::gputest::MoeWeightsHost wh =
      sy::gputest::random_moe_weights<T>(d, sy::gputest::kExchangeWeightSeed);
  // Rank q's micro-batch and output gradient, and the CPU reference of every rank's.
  auto inputs = [&](int q) {
    const auto b = sy::gputest::exchange_batch(d, N, q, &representable<T>);
    return std::pair{b.m, b.dout};
  };
  std::vector<sy::gputest::MoeReference> refs;
  for (int q = 0; q < P; ++q) {
    const auto [m, dout] = inputs(q);
    refs.push_back(sy::gputest::cpu_moe_reference(d, wh, m, dout, B, T_, s));
  }
  const sy::gputest::MoeReference& mine = refs[static_cast<size_t>(me)];
  // This rank's experts' gradients: the sum over every rank's tokens.
  std::vector<float> g_w1(static_cast<size_t>(L) * C * F, 0.0f), g_w3 = g_w1, g_w2 = g_w1;
  for (const auto& r : refs) {
    const auto a = sy::gputest::expert_block(r.g_w1, me * L, L, C * F);
    const auto b = sy::gputest::expert_block(r.g_w3, me * L, L, C * F);
    const auto c = sy::gputest::expert_block(r.g_w2, me * L, L, C * F);
    for (size_t i = 0; i < g_w1.size(); ++i) {
      g_w1[i] += a[i];
      g_w3[i] += b[i];
      g_w2[i] += c[i];
    }
  }

  std::vector<int> node_of(static_cast<size_t>(P), 0);
  if (!xc.one_node)
    for (int q = 0; q < P; ++q) node_of[static_cast<size_t>(q)] = q;
  sy::comm::GpuExchange ex(MPI_COMM_WORLD, node_of, E, 60.0, nullptr);
  sy::MoeDims dl = d;
  dl.L = L;
  sy::CudaMoeParallel par;
  par.exchange = &ex;
  par.chunks = xc.chunks;
  sy::CudaMoeLayer<T> gpu(dl, par);
  gpu.set_stream_delays_for_tests(xc.comm_delay, xc.main_delay);

  sy::cuda::Stream stream;
  sy::cuda::CublasHandle cublas(stream.get());
  sy::gputest::MoeDeviceWeights<T> dw(d, wh, me * L, L);
  const auto [m, dout] = inputs(me);
  auto d_m = upload_as<T>(m), d_dout = upload_as<T>(dout);
  auto d_out = sy::gputest::poisoned<T>(N * C), d_dm = sy::gputest::poisoned<T>(N * C);
  const sy::MoeLoss gl =
      gpu.forward(d_out.data(), d_m.data(), B, T_, dw.weights(), s, stream.get(), cublas.get());
  gpu.backward(d_dm.data(), dw.grads(), d_dout.data(), d_m.data(), dw.weights(), s, stream.get(),
               cublas.get());
  stream.sync();

  EXPECT_NEAR(gl.aux, mine.loss.aux, 1e-5 * mine.loss.aux) << what;
  EXPECT_NEAR(gl.z, mine.loss.z, 1e-5 * mine.loss.z) << what;
  const sy::MoeStats gs = gpu.stats();
  EXPECT_EQ(gs.selected, mine.stats.selected) << what;
  EXPECT_EQ(gs.kept, mine.stats.kept) << what;
  if (d.has_capacity) {
    EXPECT_GT(mine.stats.dropped, 0) << what << ": capacity did not bind";
  }
  EXPECT_TRUE(close(download_f32(d_out), mine.out, tol<T>())) << what << ": out";
  EXPECT_TRUE(close(download_f32(d_dm), mine.dm, tol<T>())) << what << ": dm";
  EXPECT_TRUE(close(download_f32(dw.g_router), mine.g_router, tol<T>())) << what << ": router";
  EXPECT_TRUE(close(download_f32(dw.g_w1), g_w1, tol<T>())) << what << ": w1";
  EXPECT_TRUE(close(download_f32(dw.g_w3), g_w3, tol<T>())) << what << ": w3";
  EXPECT_TRUE(close(download_f32(dw.g_w2), g_w2, tol<T>())) << what << ": w2";
  if (d.S > 0) {
    EXPECT_TRUE(close(download_f32(dw.g_sw1), mine.g_sw1, tol<T>())) << what << ": shared w1";
    EXPECT_TRUE(close(download_f32(dw.g_sw3), mine.g_sw3, tol<T>())) << what << ": shared w3";
    EXPECT_TRUE(close(download_f32(dw.g_sw2), mine.g_sw2, tol<T>())) << what << ": shared w2";
  }
  const sy::comm::ExchangeStats& st = ex.stats();
  EXPECT_GT(st.calls, 0) << what << ": the rows did not go through the exchange";
}

// np=1: the routed path through a one-rank exchange; np=2: two emulated nodes (MPI stage, no
// NCCL), which may share one GPU.
TEST(MoeExchange, MatchesCpuThroughEmulatedNodes) {
  SY_REQUIRE_GPU_ON_EVERY_RANK();
  for (int chunks : {1, 3}) {
    run_exchange_case<float>({chunks, 1, 0.0, false});
    run_exchange_case<float>({chunks, 0, 0.75, false});
  }
  run_exchange_case<bf16>({3, 1, 0.75, false});
}

// The 3-chunk pipelines of forward and backward with one stream held back (~1 ms a move or a
// chunk at ~2 GHz): each stream must wait for the other's event, not for a lucky launch order.
TEST(MoeExchange, ChunkPipelinesWaitForTheOtherStream) {
  SY_REQUIRE_GPU_ON_EVERY_RANK();
  constexpr long long kDelay = 2'000'000;
  run_exchange_case<float>({3, 1, 0.75, false, kDelay, 0});
  run_exchange_case<float>({3, 1, 0.75, false, 0, kDelay});
}

// np=2 on one node: the NCCL stage inside the node (a GPU per rank).
TEST(MoeExchange, MatchesCpuInsideOneNode) {
  if (sy::test::world_size() == 1) GTEST_SKIP() << "one rank: covered by the emulated-nodes test";
  SY_REQUIRE_GPU_PER_RANK();
  for (int chunks : {1, 3}) run_exchange_case<float>({chunks, 1, 0.0, true});
  run_exchange_case<bf16>({3, 0, 0.75, true});
}

}  // namespace

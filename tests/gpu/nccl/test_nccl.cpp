// NCCL communicators built from MPI (comm/nccl.h), run under mpirun: each collective on seeded
// data, every rank counting wrong elements against the closed-form result, the counts summed
// over ranks (nccl-tests' #wrong). Skipped when there are fewer GPUs than ranks (NCCL needs one
// device per rank) or none at all.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "comm/nccl.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"
#include "nccl_test_util.h"

namespace {

using sy::test::world_size;

using sy::comm::nccl_type;
using sy::comm::NcclComm;
using sy::cuda::DeviceBuffer;

TEST(Nccl, CollectivesMatchClosedForm) {
  SY_REQUIRE_GPU_PER_RANK();
  NcclComm comm(MPI_COMM_WORLD, 60.0, "the world");
  const int r = comm.rank(), n = comm.size();
  sy::cuda::Stream stream;
  const size_t count = 1000;  // per-rank slice of the reduce-scatter

  // all-reduce: send[i] = r + i  ->  n*i + n(n-1)/2
  std::vector<float> send(count * n);
  for (size_t i = 0; i < send.size(); ++i) send[i] = static_cast<float>(r + static_cast<long>(i));
  auto d_send = sy::cuda::to_device(send);
  DeviceBuffer<float> d_recv(count * n);
  d_recv.fill_bytes(0xFF);
  comm.all_reduce_sum(d_send.data(), d_recv.data(), count * n, nccl_type<float>(), stream.get());
  comm.wait(stream.get(), "all_reduce");
  long wrong = 0;
  auto got = d_recv.download();
  for (size_t i = 0; i < got.size(); ++i)
    wrong += got[i] != static_cast<float>(n * static_cast<long>(i) + n * (n - 1) / 2);
  EXPECT_EQ(sy::test::sum_over_world(wrong), 0) << "all_reduce";

  // reduce-scatter: rank r gets elements [r*count, (r+1)*count) of the sum.
  DeviceBuffer<float> d_rs(count);
  d_rs.fill_bytes(0xFF);
  comm.reduce_scatter_sum(d_send.data(), d_rs.data(), count, nccl_type<float>(), stream.get());
  comm.wait(stream.get(), "reduce_scatter");
  got = d_rs.download();
  wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    const long gi = static_cast<long>(r * count + i);
    wrong += got[i] != static_cast<float>(n * gi + n * (n - 1) / 2);
  }
  EXPECT_EQ(sy::test::sum_over_world(wrong), 0) << "reduce_scatter";

  // all-gather: slot p holds rank p's first `count` elements (p + i).
  DeviceBuffer<float> d_ag(count * n);
  d_ag.fill_bytes(0xFF);
  comm.all_gather(d_send.data(), d_ag.data(), count, nccl_type<float>(), stream.get());
  comm.wait(stream.get(), "all_gather");
  got = d_ag.download();
  wrong = 0;
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < count; ++i)
      wrong += got[p * count + i] != static_cast<float>(p + static_cast<long>(i));
  EXPECT_EQ(sy::test::sum_over_world(wrong), 0) << "all_gather";
}

// all_to_all_v with counts (src + dst) % 3 (zero for some pairs, so ranks send or receive
// nothing from some peers); element value = 1000*src + 100*dst + index.
TEST(Nccl, AllToAllV) {
  SY_REQUIRE_GPU_PER_RANK();
  NcclComm comm(MPI_COMM_WORLD, 60.0, "the world");
  const int r = comm.rank(), n = comm.size();
  sy::cuda::Stream stream;
  auto cnt = [](int src, int dst) { return static_cast<size_t>((src + dst) % 3); };
  std::vector<size_t> sc(n), sd(n), rc(n), rd(n);
  size_t stot = 0, rtot = 0;
  for (int p = 0; p < n; ++p) {
    sc[p] = cnt(r, p);
    sd[p] = stot;
    stot += sc[p];
    rc[p] = cnt(p, r);
    rd[p] = rtot;
    rtot += rc[p];
  }
  std::vector<int32_t> send(stot);
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < sc[p]; ++i)
      send[sd[p] + i] = 1000 * r + 100 * p + static_cast<int32_t>(i);
  auto d_send = sy::cuda::to_device(send.empty() ? std::vector<int32_t>{0} : send);
  DeviceBuffer<int32_t> d_recv(rtot > 0 ? rtot : 1);
  d_recv.fill_bytes(0xFF);
  comm.all_to_all_v(d_send.data(), sc, sd, d_recv.data(), rc, rd, nccl_type<int32_t>(),
                    stream.get());
  comm.wait(stream.get(), "all_to_all_v");
  const auto got = d_recv.download();
  long wrong = 0;
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < rc[p]; ++i)
      wrong += got[rd[p] + i] != 1000 * p + 100 * r + static_cast<int32_t>(i);
  EXPECT_EQ(sy::test::sum_over_world(wrong), 0);
}

// A rank that fails before joining the NCCL set-up must not leave the others blocked forever:
// they time out (parallel.timeout_s), abort their communicator and throw naming their rank and
// what they waited for. Rank 1 fails through the SWITCHYARD_NCCL_INIT_FAULT hook and never
// touches NCCL, so this runs at np=2 on one GPU. (Before the bounded nonblocking set-up, rank 0
// sat in ncclCommInitRank until the test's watchdog killed the job.) The group is the world in
// reverse order, so that the message must name the job's rank, not only the group's (a dp or
// edp group's rank 0 is rarely world rank 0).
TEST(Nccl, PeerThatNeverJoinsTimesOutInsteadOfHanging) {
  if (world_size() != 2) GTEST_SKIP() << "runs in the np=2 instance";
  SY_REQUIRE_GPU_ON_EVERY_RANK();
  const int me = sy::comm::world_rank();
  ::setenv("SWITCHYARD_NCCL_INIT_FAULT", "1", 1);
  std::string message;
  const auto t0 = std::chrono::steady_clock::now();
  MPI_Comm reversed = MPI_COMM_NULL;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, 0, 1 - me, &reversed), MPI_SUCCESS);
  try {
    NcclComm comm(reversed, 5.0, "the test group");
    ADD_FAILURE() << "rank " << me << ": the set-up succeeded without rank 1";
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::unsetenv("SWITCHYARD_NCCL_INIT_FAULT");
  if (me == 1) {
    EXPECT_NE(message.find("injected failure"), std::string::npos) << message;
  } else {
    EXPECT_NE(message.find("rank 0 (rank 1 of 2 in the test group)"), std::string::npos) << message;
    EXPECT_NE(message.find("timed out after 5"), std::string::npos) << message;
    EXPECT_LT(waited, 60.0) << "the bounded wait took " << waited << " s";
  }
  MPI_Comm_free(&reversed);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(Nccl, CudaAwareMpiIsAnswered) {
  // No GPU needed: the query is about the MPI library.
  const auto v = sy::comm::cuda_aware_mpi();
  EXPECT_TRUE(v == sy::comm::CudaAwareMpi::kYes || v == sy::comm::CudaAwareMpi::kNo ||
              v == sy::comm::CudaAwareMpi::kUnknown);
  if (sy::comm::world_rank() == 0) std::printf("CUDA-aware MPI: %s\n", sy::comm::to_string(v));
}

}  // namespace

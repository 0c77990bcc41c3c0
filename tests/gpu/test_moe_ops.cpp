// The MoE CUDA ops (kernels/cuda/moe_ops.h, GroupedGemm) against the CPU reference
// (kernels/cpu/moe_ops.h, cpu::gemm per expert) and, for the layout and the losses, against
// naive host loops written from SPEC section 1. fp32 within 1e-5, bf16 within 1e-2; outputs are
// NaN-poisoned first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe_ops.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe_ops.h"

namespace {

namespace cpu = sy::cpu;
namespace cu = sy::cuda;
using sy::cuda::to_device;
using sy::gputest::bf16;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::kTolF32;
using sy::gputest::poisoned;
using sy::gputest::random_floats;
using sy::gputest::random_ints;
using sy::gputest::representable;
using sy::gputest::tol;
using sy::gputest::upload_as;

using sy::gputest::RouterCase;

class Router : public ::testing::TestWithParam<RouterCase> {};

// E = 13 (a partial warp), 40 (two experts per lane), 64 with K = 8 (router_cases.h).
INSTANTIATE_TEST_SUITE_P(Shapes, Router, ::testing::ValuesIn(sy::gputest::kRouterCases),
                         [](const ::testing::TestParamInfo<RouterCase>& p) {
                           // ostringstream, not string operator+: GCC 12 -Wrestrict misfires on
                           // the inlined concatenation.
                           std::ostringstream os;
                           os << "N" << p.param.N << "_E" << p.param.E << "_K" << p.param.K
                              << (p.param.norm_topk ? "_norm" : "_raw")
                              << (p.param.with_bias ? "_bias" : "");
                           return os.str();
                         });

TEST_P(Router, ForwardBackwardMatchCpu) {
  SY_REQUIRE_GPU();
  const auto [N, E, K, norm_topk, with_bias] = GetParam();
  // Shared with tests/margins/test_gpu_margins.cpp, which checks that no two scores these inputs
  // rank are near-ties that fp32 rounding could reorder (the top-k is compared exactly).
  const auto [logits, bias, dgates, dprobs, dlse] = sy::gputest::router_case_inputs(GetParam());
  std::vector<float> probs(N * E), lse(N), gates(N * K), dlogits(N * E);
  std::vector<int32_t> topk(N * K);
  const float* bias_ptr = with_bias ? bias.data() : nullptr;
  cpu::router_forward(probs.data(), lse.data(), topk.data(), gates.data(), logits.data(), bias_ptr,
                      N, E, K, norm_topk);
  cpu::router_backward(dlogits.data(), dgates.data(), dprobs.data(), dlse.data(), probs.data(),
                       topk.data(), N, E, K, norm_topk);

  auto d_logits = upload_as<float>(logits), d_bias = upload_as<float>(bias);
  auto d_probs = poisoned<float>(N * E), d_lse = poisoned<float>(N);
  auto d_gates = poisoned<float>(N * K);
  auto d_topk = poisoned<int32_t>(N * K);
  cu::router_forward(d_probs.data(), d_lse.data(), d_topk.data(), d_gates.data(), d_logits.data(),
                     with_bias ? d_bias.data() : nullptr, N, E, K, norm_topk, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d_topk.download(), topk);
  EXPECT_TRUE(close(download_f32(d_probs), probs, kTolF32));
  EXPECT_TRUE(close(download_f32(d_lse), lse, kTolF32));
  EXPECT_TRUE(close(download_f32(d_gates), gates, kTolF32));

  auto d_dg = upload_as<float>(dgates), d_dp = upload_as<float>(dprobs);
  auto d_dl = upload_as<float>(dlse);
  auto d_dlogits = poisoned<float>(N * E);
  auto d_probs_ref = upload_as<float>(probs);
  auto d_topk_ref = to_device(topk);
  cu::router_backward(d_dlogits.data(), d_dg.data(), d_dp.data(), d_dl.data(), d_probs_ref.data(),
                      d_topk_ref.data(), N, E, K, norm_topk, nullptr);
  EXPECT_TRUE(close(download_f32(d_dlogits), dlogits, kTolF32));
  // Null dprobs / dlse are zeros.
  std::vector<float> dlogits0(N * E);
  cpu::router_backward<float>(dlogits0.data(), dgates.data(), nullptr, nullptr, probs.data(),
                              topk.data(), N, E, K, norm_topk);
  d_dlogits.fill_bytes(0xFF);
  cu::router_backward(d_dlogits.data(), d_dg.data(), nullptr, nullptr, d_probs_ref.data(),
                      d_topk_ref.data(), N, E, K, norm_topk, nullptr);
  EXPECT_TRUE(close(download_f32(d_dlogits), dlogits0, kTolF32));
}

TEST(RouterTies, LowerExpertIndexWins) {
  SY_REQUIRE_GPU();
  // All logits equal: every p is 1/E, so the top-k must be experts 0..K-1 in order.
  const int N = 3, E = 37, K = 4;
  std::vector<float> logits(N * E, 0.5f);
  auto d_logits = upload_as<float>(logits);
  auto d_probs = poisoned<float>(N * E), d_lse = poisoned<float>(N);
  auto d_gates = poisoned<float>(N * K);
  auto d_topk = poisoned<int32_t>(N * K);
  cu::router_forward(d_probs.data(), d_lse.data(), d_topk.data(), d_gates.data(), d_logits.data(),
                     nullptr, N, E, K, true, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const auto topk = d_topk.download();
  for (int n = 0; n < N; ++n)
    for (int j = 0; j < K; ++j) EXPECT_EQ(topk[n * K + j], j) << "token " << n;
  EXPECT_TRUE(close(download_f32(d_gates), std::vector<float>(N * K, 0.25f), kTolF32));
}

// The layout by its definition (SPEC 1, src/model/moe.cpp build_layout): experts in order; an
// expert over capacity keeps its slots of highest p (ties: lower slot), then in slot order.
// capacity < 0: dropless.
struct HostLayout {
  std::vector<int32_t> selected, counts, offsets, row_token, slot_row;
  std::vector<float> row_gate;
};
HostLayout host_layout(const std::vector<int32_t>& topk, const std::vector<float>& gates,
                       const std::vector<float>& probs, int N, int E, int K, long capacity) {
  HostLayout l;
  l.selected.assign(E, 0);
  l.counts.assign(E, 0);
  l.offsets.assign(E + 1, 0);
  l.slot_row.assign(N * K, -1);
  for (int e = 0; e < E; ++e) {
    std::vector<int32_t> list;
    for (int q = 0; q < N * K; ++q)
      if (topk[q] == e) list.push_back(q);
    l.selected[e] = static_cast<int32_t>(list.size());
    if (capacity >= 0 && static_cast<long>(list.size()) > capacity) {
      auto key = [&](int32_t q) {  // NaN ranks lowest
        const float p = probs[(q / K) * E + e];
        return std::isnan(p) ? -std::numeric_limits<float>::infinity() : p;
      };
      std::stable_sort(list.begin(), list.end(),
                       [&](int32_t a, int32_t b) { return key(a) > key(b); });
      list.resize(static_cast<size_t>(capacity));
      std::sort(list.begin(), list.end());
    }
    l.offsets[e] = static_cast<int32_t>(l.row_token.size());
    for (int32_t q : list) {
      l.slot_row[q] = static_cast<int32_t>(l.row_token.size());
      l.row_token.push_back(q / K);
      l.row_gate.push_back(gates[q]);
    }
    l.counts[e] = static_cast<int32_t>(list.size());
  }
  l.offsets[E] = static_cast<int32_t>(l.row_token.size());
  return l;
}

// Distinct random experts per token (one expert at most once per token, as top-k gives).
std::vector<int32_t> random_topk(std::mt19937& rng, int N, int E, int K) {
  std::vector<int32_t> topk(N * K);
  std::vector<int32_t> perm(E);
  for (int n = 0; n < N; ++n) {
    for (int e = 0; e < E; ++e) perm[e] = e;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int j = 0; j < K; ++j) topk[n * K + j] = perm[j];
  }
  return topk;
}

// A small case (NK = 600, more than one 256-slot chunk) and a larger one (NK = 12 000, ~3000
// slots per expert) whose probabilities take 4 values, so the capacity cut falls inside a run of
// ~750 equal ones (ties to the lower slot, across the sort's tiles), and where two thirds of
// expert 0's are NaN (ranked lowest), so the cut also falls among NaNs (kept in slot order).
// Each dropless, with a capacity that binds for most experts, and one larger than any load.
struct LayoutCase {
  int N, E;
  long binding;  // a capacity below most experts' loads
  bool ties;     // 4 probability values, and NaN for most of expert 0's
};
class MoeLayout : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(MoeLayout, MatchesDefinition) {
  SY_REQUIRE_GPU();
  const int N = GetParam().N, E = GetParam().E, K = 2;
  std::mt19937 rng(12);
  auto topk = random_topk(rng, N, E - 1, K);  // expert E-1 never chosen: an empty expert
  const auto gates = random_floats(rng, N * K, 0.0f, 1.0f);
  auto probs = random_floats(rng, N * E, 0.0f, 1.0f);
  probs[3 * E + 1] = probs[5 * E + 1] = probs[8 * E + 1];  // ties: the lower token must win
  if (GetParam().ties) {
    for (float& p : probs) p = std::floor(p * 4) / 4;
    for (int n = 0; n < N; ++n)
      if (n % 3 != 0) probs[n * E] = std::nanf("");
  }
  for (long capacity : {-1L, GetParam().binding, 100000L}) {
    const HostLayout want = host_layout(topk, gates, probs, N, E, K, capacity);
    auto d_topk = to_device(topk);
    auto d_gates = upload_as<float>(gates), d_probs = upload_as<float>(probs);
    auto selected = poisoned<int32_t>(E), counts = poisoned<int32_t>(E);
    auto offsets = poisoned<int32_t>(E + 1);
    auto row_token = poisoned<int32_t>(N * K), slot_row = poisoned<int32_t>(N * K);
    auto row_gate = poisoned<float>(N * K);
    auto scratch = poisoned<int32_t>(cu::moe_layout_scratch(N, E, K));
    cu::moe_layout(selected.data(), counts.data(), offsets.data(), row_token.data(),
                   row_gate.data(), slot_row.data(), scratch.data(), d_topk.data(), d_gates.data(),
                   d_probs.data(), N, E, K, capacity, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const size_t A = want.row_token.size();
    auto head = [A](std::vector<int32_t> v) {
      v.resize(A);
      return v;
    };
    EXPECT_EQ(selected.download(), want.selected) << "capacity " << capacity;
    EXPECT_EQ(counts.download(), want.counts) << "capacity " << capacity;
    EXPECT_EQ(offsets.download(), want.offsets) << "capacity " << capacity;
    EXPECT_EQ(head(row_token.download()), want.row_token) << "capacity " << capacity;
    EXPECT_EQ(slot_row.download(), want.slot_row) << "capacity " << capacity;
    auto gate_rows = download_f32(row_gate);
    gate_rows.resize(A);
    EXPECT_TRUE(close(gate_rows, want.row_gate, 0.0)) << "capacity " << capacity;
    if (capacity == GetParam().binding) {
      EXPECT_LT(A, static_cast<size_t>(N * K)) << "capacity did not bind";
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Cases, MoeLayout,
                         ::testing::Values(LayoutCase{300, 7, 60, false},
                                           LayoutCase{6000, 5, 2000, true}));

template <class T>
class MoeRows : public ::testing::Test {};
using Types = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(MoeRows, Types);

// gather/combine and their backward against cpu::gather_rows_* / scatter_rows_*.
TYPED_TEST(MoeRows, DispatchCombine) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  const int N = 29, E = 5, K = 2, C = 40, A = N * K;
  std::mt19937 rng(13);
  const auto topk = random_topk(rng, N, E, K);
  const auto gates = random_floats(rng, N * K, 0.0f, 1.0f);
  const HostLayout l = host_layout(topk, gates, {}, N, E, K, -1);
  const auto m = representable<T>(random_floats(rng, N * C));
  const auto ys = representable<T>(random_floats(rng, A * C));
  const auto out0 = representable<T>(random_floats(rng, N * C));
  const auto dout = representable<T>(random_floats(rng, N * C));
  const auto dxs = representable<T>(random_floats(rng, A * C));
  const auto dm0 = representable<T>(random_floats(rng, N * C));

  std::vector<float> xs(A * C), out = out0, dys(A * C), drow_gate(A), dm = dm0;
  cpu::gather_rows_forward(xs.data(), m.data(), l.row_token.data(), A, C);
  cpu::scatter_rows_forward(out.data(), ys.data(), l.row_token.data(), l.row_gate.data(), A, C);
  cpu::scatter_rows_backward(dys.data(), drow_gate.data(), dout.data(), ys.data(),
                             l.row_token.data(), l.row_gate.data(), A, C);
  cpu::gather_rows_backward(dm.data(), dxs.data(), l.row_token.data(), A, C);
  std::vector<float> dgates(N * K);
  for (int q = 0; q < N * K; ++q) dgates[q] = drow_gate[l.slot_row[q]];

  auto d_rt = to_device(l.row_token), d_sr = to_device(l.slot_row);
  auto d_rg = upload_as<float>(l.row_gate);
  auto d_m = upload_as<T>(m), d_ys = upload_as<T>(ys), d_out = upload_as<T>(out0);
  auto d_dout = upload_as<T>(dout), d_dxs = upload_as<T>(dxs), d_dm = upload_as<T>(dm0);
  auto d_xs = poisoned<T>(A * C), d_dys = poisoned<T>(A * C);
  auto d_dgates = poisoned<float>(N * K);
  cu::gather_rows_forward(d_xs.data(), d_m.data(), d_rt.data(), A, C, nullptr);
  EXPECT_TRUE(close(download_f32(d_xs), xs, tol<T>()));
  cu::combine_forward(d_out.data(), d_ys.data(), d_sr.data(), d_rg.data(), N, K, C, nullptr);
  EXPECT_TRUE(close(download_f32(d_out), out, tol<T>()));
  cu::combine_backward(d_dys.data(), d_dgates.data(), d_dout.data(), d_ys.data(), d_rt.data(),
                       d_rg.data(), d_sr.data(), A, N, K, C, nullptr);
  EXPECT_TRUE(close(download_f32(d_dys), dys, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_dgates), dgates, tol<T>()));
  cu::gather_rows_backward(d_dm.data(), d_dxs.data(), d_sr.data(), N, K, C, nullptr);
  EXPECT_TRUE(close(download_f32(d_dm), dm, tol<T>()));
}

TYPED_TEST(MoeRows, SwiGlu) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  const long n = 1234;
  std::mt19937 rng(14);
  const auto a = representable<T>(random_floats(rng, n, -4.0f, 4.0f));
  const auto b = representable<T>(random_floats(rng, n));
  const auto dh = representable<T>(random_floats(rng, n));
  std::vector<float> h(n), da(n), db(n);
  cpu::swiglu_forward(h.data(), a.data(), b.data(), n);
  cpu::swiglu_backward(da.data(), db.data(), dh.data(), a.data(), b.data(), n);
  auto d_a = upload_as<T>(a), d_b = upload_as<T>(b), d_dh = upload_as<T>(dh);
  auto d_h = poisoned<T>(n), d_db = poisoned<T>(n);
  cu::swiglu_forward(d_h.data(), d_a.data(), d_b.data(), n, nullptr);
  EXPECT_TRUE(close(download_f32(d_h), h, tol<T>()));
  // da aliases dh, as in the expert backward.
  cu::swiglu_backward(d_dh.data(), d_db.data(), d_dh.data(), d_a.data(), d_b.data(), n, nullptr);
  EXPECT_TRUE(close(download_f32(d_dh), da, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_db), db, tol<T>()));
}

// Expert-grouped GEMMs (one cuBLAS call per projection) against cpu::gemm expert by expert: the
// forward, backward_dx accumulating onto a random dX and backward_dw onto a random dW, for
// experts of `rows` rows and [Kd, Nd] weights. Returns the object, which says the path it took.
template <class T>
cu::GroupedGemm check_grouped_gemm(const std::vector<int>& rows, int Kd, int Nd, unsigned seed) {
  const int E = static_cast<int>(rows.size());
  int R = 0;
  for (int r : rows) R += r;
  std::mt19937 rng(seed);
  const auto X = representable<T>(random_floats(rng, R * Kd));
  const auto W = representable<T>(random_floats(rng, E * Kd * Nd));
  const auto dY = representable<T>(random_floats(rng, R * Nd));
  const auto dX0 = representable<T>(random_floats(rng, R * Kd));
  const auto dW0 = random_floats(rng, E * Kd * Nd);
  std::vector<float> Y(R * Nd), dX = dX0, dW = dW0;
  long r0 = 0;
  for (int e = 0; e < E; ++e) {
    const long w0 = static_cast<long>(e) * Kd * Nd;
    cpu::gemm<float>(false, false, rows[e], Nd, Kd, 1.0f, X.data() + r0 * Kd, Kd, W.data() + w0, Nd,
                     0.0f, Y.data() + r0 * Nd, Nd);
    cpu::gemm<float>(false, true, rows[e], Kd, Nd, 1.0f, dY.data() + r0 * Nd, Nd, W.data() + w0, Nd,
                     1.0f, dX.data() + r0 * Kd, Kd);
    cpu::gemm<float>(true, false, Kd, Nd, rows[e], 1.0f, X.data() + r0 * Kd, Kd,
                     dY.data() + r0 * Nd, Nd, 1.0f, dW.data() + w0, Nd);
    r0 += rows[e];
  }
  cu::Stream stream;
  cu::CublasHandle cublas(stream.get());
  cu::GroupedGemm gg;
  auto d_X = upload_as<T>(X), d_W = upload_as<T>(W), d_dY = upload_as<T>(dY);
  auto d_dX = upload_as<T>(dX0);
  auto d_dW = upload_as<float>(dW0);
  auto d_Y = poisoned<T>(R * Nd);
  gg.forward(d_Y.data(), d_X.data(), d_W.data(), rows, Kd, Nd, cu::Grad::kAssign, cublas.get(),
             stream.get());
  gg.backward_dx(d_dX.data(), d_dY.data(), d_W.data(), rows, Kd, Nd, cu::Grad::kAccumulate,
                 cublas.get(), stream.get());
  gg.backward_dw(d_dW.data(), d_X.data(), d_dY.data(), rows, Kd, Nd, cublas.get(), stream.get());
  stream.sync();
  EXPECT_TRUE(close(download_f32(d_Y), Y, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_dX), dX, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_dW), dW, tol<T>()));
  return gg;
}

// With an empty expert in the middle.
TYPED_TEST(MoeRows, GroupedGemm) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  const cu::GroupedGemm gg = check_grouped_gemm<T>({5, 0, 17, 1, 9}, 24, 40, 15);
  EXPECT_EQ(gg.misaligned_calls(), 0);
  // Which path ran: cuBLAS 12.5+ takes the same-type grouped call; the weight gradient of bf16
  // operands (bf16 -> fp32) took one of the two (recorded, and printed).
  using Path = cu::GroupedGemm::Path;
#if CUBLAS_VERSION >= 120500
  EXPECT_EQ(gg.path(false), Path::kGrouped) << "same-type grouped GEMM fell back";
#endif
  if constexpr (std::is_same_v<T, bf16>) {
    EXPECT_NE(gg.path(true), Path::kNone);
    const char* mixed = gg.path(true) == Path::kGrouped ? "grouped" : "per-expert";
    ::testing::Test::RecordProperty("mixed_bf16_fp32_path", mixed);
    std::printf("bf16 -> fp32 weight-gradient GEMMs: %s path\n", mixed);
  } else {
    EXPECT_EQ(gg.path(true), Path::kNone);
  }
}

// Widths that are not a multiple of 8 (bf16 rows of 40 and 24 bytes): an expert's rows then start
// off a 16-byte boundary, which the grouped call cannot be told of; those calls run per expert
// and must give the same products, fp32 and bf16 alike.
TYPED_TEST(MoeRows, GroupedGemmOddWidths) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  const cu::GroupedGemm gg = check_grouped_gemm<T>({3, 5, 0, 7}, 20, 12, 16);
  // bf16: the second expert's rows start 3 * 12 * 2 = 72 bytes into Y (fp32: 144, aligned).
  if constexpr (std::is_same_v<T, bf16>) {
    EXPECT_GT(gg.misaligned_calls(), 0);
  } else {
    EXPECT_EQ(gg.misaligned_calls(), 0);
  }
}

// Many grouped products queued back to back on one stream without waiting: more calls than the
// ring of page-locked pointer slots, each reading its own inputs and writing its own output, so
// a slot rewritten before its GEMM had read it would put a wrong product somewhere.
TYPED_TEST(MoeRows, GroupedGemmRingOfPointerSlots) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  const std::vector<int> rows = {3, 0, 5, 2};
  const int E = static_cast<int>(rows.size()), Kd = 16, Nd = 24, R = 10;
  const int reps = 2 * cu::GroupedGemm::kRingSlots + 3;
  std::mt19937 rng(17);
  const auto X = representable<T>(random_floats(rng, static_cast<size_t>(reps) * R * Kd));
  const auto W = representable<T>(random_floats(rng, E * Kd * Nd));
  std::vector<float> Y(static_cast<size_t>(reps) * R * Nd);
  for (int i = 0; i < reps; ++i) {
    long r0 = 0;
    for (int e = 0; e < E; ++e) {
      cpu::gemm<float>(false, false, rows[e], Nd, Kd, 1.0f, X.data() + (i * R + r0) * Kd, Kd,
                       W.data() + static_cast<long>(e) * Kd * Nd, Nd, 0.0f,
                       Y.data() + (i * R + r0) * Nd, Nd);
      r0 += rows[e];
    }
  }
  cu::Stream stream;
  cu::CublasHandle cublas(stream.get());
  cu::GroupedGemm gg;
  auto d_X = upload_as<T>(X), d_W = upload_as<T>(W);
  auto d_Y = poisoned<T>(Y.size());
  for (int i = 0; i < reps; ++i)
    gg.forward(d_Y.data() + static_cast<long>(i) * R * Nd,
               d_X.data() + static_cast<long>(i) * R * Kd, d_W.data(), rows, Kd, Nd,
               cu::Grad::kAssign, cublas.get(), stream.get());
  stream.sync();
  EXPECT_TRUE(close(download_f32(d_Y), Y, tol<T>()));
}

// Aux and z losses (values and gradients) against SPEC section 1 written as naive host loops:
// groups of one chunk of the kernels' partial sums, of several (T = 1100 > 1024 tokens, the
// last chunk partial) and of more experts than a block has threads (E = 300).
struct LossShape {
  int B, T, E;
};
class RouterLossShapes : public ::testing::TestWithParam<LossShape> {};

TEST_P(RouterLossShapes, MatchSpecFormulas) {
  SY_REQUIRE_GPU();
  const int B = GetParam().B, T = GetParam().T, N = B * T, E = GetParam().E, K = 2;
  const double aux_coeff = 1e-2, z_coeff = 1e-3, token_weight = 1.0 / 50, group_weight = 1.0 / 4;
  std::mt19937 rng(16);
  auto probs = random_floats(rng, N * E, 0.0f, 1.0f);
  const auto lse = random_floats(rng, N, -2.0f, 3.0f);
  const auto topk = random_topk(rng, N, E, K);
  for (int NG : {T, N}) {  // sequence scope, micro-batch scope
    const int G = N / NG;
    std::vector<float> frac(G * E);
    double aux = 0.0, z = 0.0;
    for (int g = 0; g < G; ++g) {
      double aux_g = 0.0;
      for (int i = 0; i < E; ++i) {
        int count = 0;
        double P = 0.0;
        for (int n = g * NG; n < (g + 1) * NG; ++n) {
          for (int j = 0; j < K; ++j) count += topk[n * K + j] == i;
          P += probs[n * E + i];
        }
        const double f = static_cast<double>(count) / (NG * K);
        frac[g * E + i] = static_cast<float>(f);
        aux_g += f * P / NG;
      }
      aux += aux_coeff * E * aux_g;
    }
    for (int n = 0; n < N; ++n) z += static_cast<double>(lse[n]) * lse[n];
    std::vector<float> dprobs(N * E), dlse(N);
    for (int n = 0; n < N; ++n) {
      for (int i = 0; i < E; ++i)
        dprobs[n * E + i] =
            static_cast<float>(group_weight * aux_coeff * E * frac[(n / NG) * E + i] / NG);
      dlse[n] = static_cast<float>(2.0 * token_weight * z_coeff * lse[n]);
    }

    auto d_probs = upload_as<float>(probs), d_lse = upload_as<float>(lse);
    auto d_topk = to_device(topk);
    auto d_frac = poisoned<float>(G * E);
    auto d_scratch = poisoned<float>(cu::router_losses_scratch(N, E, NG));
    auto d_loss = poisoned<double>(2);
    cu::router_losses_forward(d_loss.data(), d_frac.data(), d_scratch.data(), d_probs.data(),
                              d_lse.data(), d_topk.data(), N, E, K, NG, aux_coeff, z_coeff,
                              token_weight, group_weight, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const auto loss = d_loss.download();
    EXPECT_NEAR(loss[0], aux * group_weight, 1e-5 * std::fabs(aux * group_weight)) << "NG " << NG;
    EXPECT_NEAR(loss[1], z_coeff * z * token_weight, 1e-5 * z_coeff * z * token_weight);
    EXPECT_TRUE(close(download_f32(d_frac), frac, kTolF32));
    auto d_dprobs = poisoned<float>(N * E), d_dlse = poisoned<float>(N);
    cu::router_losses_backward(d_dprobs.data(), d_dlse.data(), d_frac.data(), d_lse.data(), N, E,
                               NG, aux_coeff, z_coeff, token_weight, group_weight, nullptr);
    EXPECT_TRUE(close(download_f32(d_dprobs), dprobs, kTolF32));
    EXPECT_TRUE(close(download_f32(d_dlse), dlse, kTolF32));
  }
}
INSTANTIATE_TEST_SUITE_P(Shapes, RouterLossShapes,
                         ::testing::Values(LossShape{3, 11, 6}, LossShape{3, 1100, 6},
                                           LossShape{2, 40, 300}),
                         [](const ::testing::TestParamInfo<LossShape>& p) {
                           char name[48];
                           std::snprintf(name, sizeof name, "B%d_T%d_E%d", p.param.B, p.param.T,
                                         p.param.E);
                           return std::string(name);
                         });

// The route-plan row ops against host loops: a gather with repeated and skipped rows, and
// segment sums with empty, single and long segments; the width 3 of a gate row and 67 of a
// token row.
template <class T>
void plan_rows_match_host() {
  std::mt19937 rng(31);
  for (int W : {3, 67}) {
    const long rows = 50, n = 80;
    const auto src = representable<T>(random_floats(rng, rows * W));
    std::vector<int64_t> idx(n);
    for (auto& i : idx) i = std::uniform_int_distribution<int64_t>(0, rows - 1)(rng);
    std::vector<float> want(static_cast<size_t>(n * W));
    for (long i = 0; i < n; ++i)
      for (int c = 0; c < W; ++c) want[i * W + c] = src[idx[i] * W + c];
    auto d_src = upload_as<T>(src);
    auto d_idx = to_device(idx);
    auto out = poisoned<T>(n * W);
    cu::gather_rows(out.data(), d_src.data(), d_idx.data(), n, W, nullptr);
    EXPECT_TRUE(close(download_f32(out), want, 0.0)) << "gather W=" << W;

    // segments of 0..4 rows (empty ones included), positions in any order
    std::vector<int64_t> begin{0}, pos;
    for (long j = 0; j < n; ++j) {
      const int len = std::uniform_int_distribution<int>(0, 4)(rng);
      for (int p = 0; p < len; ++p) pos.push_back(idx[(j + p) % n]);
      begin.push_back(static_cast<int64_t>(pos.size()));
    }
    std::vector<float> sums(static_cast<size_t>(n * W), 0.0f);
    for (long j = 0; j < n; ++j)
      for (int64_t p = begin[j]; p < begin[j + 1]; ++p)
        for (int c = 0; c < W; ++c) sums[j * W + c] += src[pos[p] * W + c];
    auto d_begin = to_device(begin), d_pos = to_device(pos);
    auto sum = poisoned<T>(n * W);
    cu::segment_sum_rows(sum.data(), d_src.data(), d_begin.data(), d_pos.data(), n, W, nullptr);
    EXPECT_TRUE(close(download_f32(sum), sums, tol<T>())) << "segment sums W=" << W;
  }
}

TEST(PlanRows, GatherAndSegmentSumsMatchHostFp32) {
  SY_REQUIRE_GPU();
  plan_rows_match_host<float>();
}
TEST(PlanRows, GatherAndSegmentSumsMatchHostBf16) {
  SY_REQUIRE_GPU();
  plan_rows_match_host<bf16>();
}

}  // namespace

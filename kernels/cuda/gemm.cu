// cuBLAS GEMM wrappers (see gemm.h for the row-major convention).
#include <cuda_bf16.h>

#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"

namespace sy::cuda {

namespace {

using bf16 = __nv_bfloat16;

template <class T>
constexpr cudaDataType_t data_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "float or bf16");
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

cublasOperation_t op(bool t) {
  return t ? CUBLAS_OP_T : CUBLAS_OP_N;
}

}  // namespace

template <class TAB, class TC>
void gemm(cublasHandle_t h, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const TAB* A, int lda, const TAB* B, int ldb, float beta, TC* C, int ldc) {
  if (M == 0 || N == 0) return;
  // Column-major C^T[N,M] = op(B)^T[N,K] op(A)^T[K,M].
  CUBLAS_CHECK(cublasGemmEx(h, op(trans_b), op(trans_a), N, M, K, &alpha, B, data_type<TAB>(), ldb,
                            A, data_type<TAB>(), lda, &beta, C, data_type<TC>(), ldc,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

template <class TAB, class TC>
void gemm_strided_batched(cublasHandle_t h, bool trans_a, bool trans_b, int M, int N, int K,
                          float alpha, const TAB* A, int lda, long stride_a, const TAB* B, int ldb,
                          long stride_b, float beta, TC* C, int ldc, long stride_c, int batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, op(trans_b), op(trans_a), N, M, K, &alpha, B,
                                          data_type<TAB>(), ldb, stride_b, A, data_type<TAB>(), lda,
                                          stride_a, &beta, C, data_type<TC>(), ldc, stride_c, batch,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

template <class T>
void matmul_forward(T* y, const T* x, const T* w, int N, int IC, int OC, cublasHandle_t h) {
  gemm<T, T>(h, false, false, N, OC, IC, 1.0f, x, IC, w, OC, 0.0f, y, OC);
}

template <class T>
void matmul_backward(T* dx, float* dw, const T* dy, const T* x, const T* w, int N, int IC, int OC,
                     cublasHandle_t h, Grad dx_mode) {
  if (dx) {
    const float beta = dx_mode == Grad::kAccumulate ? 1.0f : 0.0f;
    gemm<T, T>(h, false, true, N, IC, OC, 1.0f, dy, OC, w, OC, beta, dx, IC);
  }
  if (dw) gemm<T, float>(h, true, false, IC, OC, N, 1.0f, x, IC, dy, OC, 1.0f, dw, OC);
}

// ---- grouped ----

namespace {
// Every one of the n operand pointers on a 16-byte boundary.
bool operands_aligned(const void* const* ptrs, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (reinterpret_cast<uintptr_t>(ptrs[i]) % 16 != 0) return false;
  return true;
}
}  // namespace

struct GroupedGemm::Slot {
  PinnedBuffer<const void*> host;  // [3, G]: A' then B' then C (cuBLAS's order)
  DeviceBuffer<const void*> dev;
  // recorded after the GEMM that read dev (and, before it, the copy from host)
  Event done{Event::Kind::kOrdering};
  bool pending = false;
};

GroupedGemm::GroupedGemm() = default;
GroupedGemm::~GroupedGemm() = default;
GroupedGemm::GroupedGemm(GroupedGemm&&) noexcept = default;
GroupedGemm& GroupedGemm::operator=(GroupedGemm&&) noexcept = default;

void GroupedGemm::run(bool trans_a, bool trans_b, float alpha, float beta, cudaDataType_t ab_type,
                      cudaDataType_t c_type, cublasHandle_t h, cudaStream_t stream) {
  const int G = static_cast<int>(problems_.size());
  if (G == 0) return;
  // The pointer upload and its event go on `stream`, the GEMMs on the handle's stream: they must
  // be one stream, or the GEMMs could read a slot before its upload lands.
  cudaStream_t handle_stream = nullptr;
  CUBLAS_CHECK(cublasGetStream(h, &handle_stream));
  if (handle_stream != stream)
    throw CudaError("GroupedGemm: the cuBLAS handle is bound to another stream than the one given");
  // The next staging slot, free once the GEMM that last read it is done (normally long ago).
  if (ring_.size() < static_cast<size_t>(kRingSlots)) ring_.push_back(std::make_unique<Slot>());
  Slot& slot = *ring_[next_slot_ % ring_.size()];
  ++next_slot_;
  if (slot.pending) slot.done.sync();
  // Per group, in cuBLAS's column-major terms (operands swapped, see gemm.h).
  std::vector<cublasOperation_t> ta(G, op(trans_b)), tb(G, op(trans_a));
  std::vector<int> m(G), n(G), k(G), lda(G), ldb(G), ldc(G), size(G, 1);
  std::vector<float> alphas(G, alpha), betas(G, beta);
  slot.host.resize(3 * static_cast<size_t>(G));
  const void** ptrs = slot.host.data();
  for (int g = 0; g < G; ++g) {
    const Problem& p = problems_[g];
    m[g] = p.N;
    n[g] = p.M;
    k[g] = p.K;
    lda[g] = p.ldb;
    ldb[g] = p.lda;
    ldc[g] = p.ldc;
    ptrs[g] = p.B;
    ptrs[G + g] = p.A;
    ptrs[2 * G + g] = p.C;
  }
  // The path is remembered per type combination: a cuBLAS that lacks the mixed bf16 -> fp32
  // grouped kernel keeps using the grouped call for the same-type products.
  Path& path = ab_type == c_type ? path_same_ : path_mixed_;
  // cuBLAS cannot see the device-resident pointers of a grouped call to pick a kernel that
  // tolerates a misaligned operand, as it does for cublasGemmEx's; this call goes per expert.
  const bool aligned = operands_aligned(ptrs, 3 * static_cast<size_t>(G));
  if (!aligned) ++misaligned_calls_;
#if CUBLAS_VERSION >= 120500  // cublasGemmGroupedBatchedEx arrived in cuBLAS 12.5
  if (path != Path::kPerExpert && aligned) {
    slot.dev.resize(3 * static_cast<size_t>(G));
    // From page-locked memory: a true asynchronous copy, ordered before the GEMM on `stream`.
    CUDA_CHECK(cudaMemcpyAsync(slot.dev.data(), ptrs, 3 * static_cast<size_t>(G) * sizeof(void*),
                               cudaMemcpyHostToDevice, stream));
    const void* const* dA = slot.dev.data();
    const void* const* dB = slot.dev.data() + G;
    void* const* dC = const_cast<void* const*>(slot.dev.data() + 2 * G);
    const cublasStatus_t st = cublasGemmGroupedBatchedEx(
        h, ta.data(), tb.data(), m.data(), n.data(), k.data(), alphas.data(), dA, ab_type,
        lda.data(), dB, ab_type, ldb.data(), betas.data(), dC, c_type, ldc.data(), G, size.data(),
        CUBLAS_COMPUTE_32F);
    slot.done.record(stream);
    slot.pending = true;
    // Some cuBLAS builds reject a type combination of the grouped API (bf16 inputs with an fp32
    // output) with NOT_SUPPORTED, or INVALID_VALUE for the mixed case; anything else is an error.
    const bool unsupported = st == CUBLAS_STATUS_NOT_SUPPORTED ||
                             (st == CUBLAS_STATUS_INVALID_VALUE && ab_type != c_type);
    if (!unsupported) {
      CUBLAS_CHECK(st);
      path = Path::kGrouped;
      return;
    }
  }
#else
  (void)stream;
#endif
  // Older cuBLAS, or this type combination: one GEMM per expert from now on (a misaligned
  // operand: this call only, counted in misaligned_calls()).
  if (aligned) path = Path::kPerExpert;
  for (int g = 0; g < G; ++g) {
    CUBLAS_CHECK(cublasGemmEx(h, ta[g], tb[g], m[g], n[g], k[g], &alpha, ptrs[g], ab_type, lda[g],
                              ptrs[G + g], ab_type, ldb[g], &beta,
                              const_cast<void*>(ptrs[2 * G + g]), c_type, ldc[g],
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

template <class T>
void GroupedGemm::forward(T* Y, const T* X, const T* W, const std::vector<int>& rows, int K, int N,
                          Grad y_mode, cublasHandle_t h, cudaStream_t stream) {
  problems_.clear();
  long r0 = 0;
  for (size_t e = 0; e < rows.size(); ++e) {
    if (rows[e] > 0)
      problems_.push_back(
          {rows[e], N, K, X + r0 * K, K, W + static_cast<long>(e) * K * N, N, Y + r0 * N, N});
    r0 += rows[e];
  }
  run(false, false, 1.0f, y_mode == Grad::kAccumulate ? 1.0f : 0.0f, data_type<T>(), data_type<T>(),
      h, stream);
}

template <class T>
void GroupedGemm::backward_dx(T* dX, const T* dY, const T* W, const std::vector<int>& rows, int K,
                              int N, Grad dx_mode, cublasHandle_t h, cudaStream_t stream) {
  problems_.clear();
  long r0 = 0;
  for (size_t e = 0; e < rows.size(); ++e) {
    if (rows[e] > 0)
      problems_.push_back(
          {rows[e], K, N, dY + r0 * N, N, W + static_cast<long>(e) * K * N, N, dX + r0 * K, K});
    r0 += rows[e];
  }
  run(false, true, 1.0f, dx_mode == Grad::kAccumulate ? 1.0f : 0.0f, data_type<T>(), data_type<T>(),
      h, stream);
}

template <class T>
void GroupedGemm::backward_dw(float* dW, const T* X, const T* dY, const std::vector<int>& rows,
                              int K, int N, cublasHandle_t h, cudaStream_t stream) {
  problems_.clear();
  long r0 = 0;
  for (size_t e = 0; e < rows.size(); ++e) {
    // An expert without rows adds nothing to its gradient (K = 0 with beta 1): skipped.
    if (rows[e] > 0)
      problems_.push_back(
          {K, N, rows[e], X + r0 * K, K, dY + r0 * N, N, dW + static_cast<long>(e) * K * N, N});
    r0 += rows[e];
  }
  run(true, false, 1.0f, 1.0f, data_type<T>(), CUDA_R_32F, h, stream);
}

#define SY_INSTANTIATE_AB_C(TAB, TC)                                                               \
  template void gemm<TAB, TC>(cublasHandle_t, bool, bool, int, int, int, float, const TAB*, int,   \
                              const TAB*, int, float, TC*, int);                                   \
  template void gemm_strided_batched<TAB, TC>(cublasHandle_t, bool, bool, int, int, int, float,    \
                                              const TAB*, int, long, const TAB*, int, long, float, \
                                              TC*, int, long, int);
SY_INSTANTIATE_AB_C(float, float)
SY_INSTANTIATE_AB_C(bf16, bf16)
SY_INSTANTIATE_AB_C(bf16, float)
#undef SY_INSTANTIATE_AB_C

#define SY_INSTANTIATE(T)                                                                          \
  template void matmul_forward<T>(T*, const T*, const T*, int, int, int, cublasHandle_t);          \
  template void matmul_backward<T>(T*, float*, const T*, const T*, const T*, int, int, int,        \
                                   cublasHandle_t, Grad);                                          \
  template void GroupedGemm::forward<T>(T*, const T*, const T*, const std::vector<int>&, int, int, \
                                        Grad, cublasHandle_t, cudaStream_t);                       \
  template void GroupedGemm::backward_dx<T>(T*, const T*, const T*, const std::vector<int>&, int,  \
                                            int, Grad, cublasHandle_t, cudaStream_t);              \
  template void GroupedGemm::backward_dw<T>(float*, const T*, const T*, const std::vector<int>&,   \
                                            int, int, cublasHandle_t, cudaStream_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(bf16)
#undef SY_INSTANTIATE

}  // namespace sy::cuda

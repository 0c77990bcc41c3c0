// Row-major GEMMs on the GPU through cuBLAS: the one place the CUDA path does matrix products,
// mirroring kernels/cpu/gemm.h. fp32 accumulation always (CUBLAS_COMPUTE_32F, no TF32); inputs
// fp32 or bf16, outputs fp32 or bf16 (bf16 inputs with an fp32 output is how weight gradients
// accumulate into the fp32 master gradient in bf16 mode).
//
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so every call hands cuBLAS the
// operands swapped: (m, n, k) = (N, M, K), first operand B, second A. The handle must be bound
// to the caller's stream (CublasHandle does that).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cuda/buffer.h"

namespace sy::cuda {

enum class Grad { kAssign, kAccumulate };  // as kernels/cpu/gemm.h

// C[M,N] = alpha * op(A) @ op(B) + beta * C (shapes and leading dimensions as cpu::gemm).
// M == 0 or N == 0: nothing happens.
template <class TAB, class TC>
void gemm(cublasHandle_t h, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
          const TAB* A, int lda, const TAB* B, int ldb, float beta, TC* C, int ldc);

// `batch` independent products, operand i at A + i*stride_a etc. (elements).
template <class TAB, class TC>
void gemm_strided_batched(cublasHandle_t h, bool trans_a, bool trans_b, int M, int N, int K,
                          float alpha, const TAB* A, int lda, long stride_a, const TAB* B, int ldb,
                          long stride_b, float beta, TC* C, int ldc, long stride_c, int batch);

// y[N,OC] (=) x[N,IC] @ w[IC,OC]
template <class T>
void matmul_forward(T* y, const T* x, const T* w, int N, int IC, int OC, cublasHandle_t h);
// dx[N,IC] (= or +=) dy @ w^T;  dw[IC,OC] (+=, fp32) x^T @ dy. Either output may be null.
template <class T>
void matmul_backward(T* dx, float* dw, const T* dy, const T* x, const T* w, int N, int IC, int OC,
                     cublasHandle_t h, Grad dx_mode = Grad::kAssign);

// Expert-grouped products over an expert-sorted buffer, ONE cuBLAS call per projection
// (cublasGemmGroupedBatchedEx, one group per non-empty expert) -- never a launch per expert.
// The row counts are host values (the caller copied the routing counts back once per layer).
// The per-group operand pointers go to the device from page-locked memory, asynchronously, through
// a ring of kRingSlots staging slots: a slot is reused only after the GEMM that read it has
// completed (its event), so no call waits for the device unless kRingSlots calls are in flight.
// Calls on one object must be on one stream. If this cuBLAS rejects the grouped call for a type
// combination (CUBLAS_STATUS_NOT_SUPPORTED; or INVALID_VALUE for bf16 inputs with an fp32
// output), it falls back to one cublasGemmEx per expert for that type combination; path() says
// which ran. A call with a misaligned operand (below) runs per expert, that call only.
class GroupedGemm {
 public:
  GroupedGemm();
  ~GroupedGemm();
  GroupedGemm(GroupedGemm&&) noexcept;
  GroupedGemm& operator=(GroupedGemm&&) noexcept;

  // Expert e has rows[e] rows starting at row sum(rows[0..e)) of the sorted buffers.
  //   forward:  Y_e[r_e, N] (= / +=) X_e[r_e, K] @ W_e[K, N]       W: [E, K, N]
  template <class T>
  void forward(T* Y, const T* X, const T* W, const std::vector<int>& rows, int K, int N,
               Grad y_mode, cublasHandle_t h, cudaStream_t stream);
  //   backward_dx: dX_e[r_e, K] (= / +=) dY_e[r_e, N] @ W_e^T
  template <class T>
  void backward_dx(T* dX, const T* dY, const T* W, const std::vector<int>& rows, int K, int N,
                   Grad dx_mode, cublasHandle_t h, cudaStream_t stream);
  //   backward_dw: dW_e[K, N] (+=, fp32) X_e^T @ dY_e
  template <class T>
  void backward_dw(float* dW, const T* X, const T* dY, const std::vector<int>& rows, int K, int N,
                   cublasHandle_t h, cudaStream_t stream);

  // Which path the products of a type combination took: A/B and C of one type (same), or bf16
  // A/B with an fp32 C (mixed: the weight gradients in bf16 mode). kNone until one ran.
  enum class Path { kNone, kGrouped, kPerExpert };
  Path path(bool mixed) const { return mixed ? path_mixed_ : path_same_; }
  bool used_fallback() const {
    return path_same_ == Path::kPerExpert || path_mixed_ == Path::kPerExpert;
  }
  // Calls with an operand off a 16-byte boundary (an expert's rows start at r0 * K elements:
  // bf16 with K not a multiple of 8), which ran per expert whatever path() says.
  int64_t misaligned_calls() const { return misaligned_calls_; }

  // One row-major product C = op(A) op(B) of the group (public for the implementation file).
  struct Problem {
    int M, N, K;
    const void* A;
    int lda;
    const void* B;
    int ldb;
    void* C;
    int ldc;
  };
  static constexpr int kRingSlots = 16;

 private:
  struct Slot;  // pinned host pointers, their device copy, the event of the GEMM that read them
  void run(bool trans_a, bool trans_b, float alpha, float beta, cudaDataType_t ab_type,
           cudaDataType_t c_type, cublasHandle_t h, cudaStream_t stream);

  std::vector<Problem> problems_;
  std::vector<std::unique_ptr<Slot>> ring_;  // grown to kRingSlots on demand
  size_t next_slot_ = 0;
  Path path_same_ = Path::kNone, path_mixed_ = Path::kNone;
  int64_t misaligned_calls_ = 0;
};

}  // namespace sy::cuda

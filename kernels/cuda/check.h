// Error checks for every call into CUDA, cuBLAS and cuRAND (NCCL's live in comm/nccl.h), and the
// "is there a GPU at all" probe the tests and the CLI use to skip or refuse cleanly.
//
// Each macro evaluates the call once and, on failure, throws sy::cuda::CudaError with the
// library's own message, the call's text and file:line. A kernel launch is followed by
// SY_CUDA_LAUNCH_CHECK(name), which reports launch-configuration errors (bad grid, too much
// shared memory) at the launch, not at the next unrelated call.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include <stdexcept>
#include <string>

namespace sy::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_error(const char* library, const char* call, int code, const char* what,
                              const char* file, int line);
// A failed cudaMalloc / cudaMallocHost of `bytes`: throw_error's text plus the size asked for and,
// for device memory, what the device has free of its total, so that an out-of-memory says how
// far the run is from fitting (a dropless MoE layer's buffers grow with its busiest step).
[[noreturn]] void throw_alloc_error(const char* call, cudaError_t err, size_t bytes, bool device,
                                    const char* file, int line);
const char* cublas_status_name(cublasStatus_t s);
const char* curand_status_name(curandStatus_t s);

// Number of usable CUDA devices. 0 (never an exception) when there is no driver, the driver is
// too old ("driver version is insufficient", the state of the CI machines) or no device is
// visible; *reason then says why.
int device_count(std::string* reason = nullptr);

// The UUID of visible device `device` as "GPU-" and 32 hex digits: the same physical GPU gives
// the same text in every process, whatever CUDA_VISIBLE_DEVICES numbered it.
std::string device_uuid(int device);

}  // namespace sy::cuda

#define CUDA_CHECK(call)                                                             \
  do {                                                                               \
    const cudaError_t sy_cuda_err_ = (call);                                         \
    if (sy_cuda_err_ != cudaSuccess)                                                 \
      ::sy::cuda::throw_error("CUDA", #call, static_cast<int>(sy_cuda_err_),         \
                              cudaGetErrorString(sy_cuda_err_), __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                        \
  do {                                                                                            \
    const cublasStatus_t sy_cublas_st_ = (call);                                                  \
    if (sy_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
      ::sy::cuda::throw_error("cuBLAS", #call, static_cast<int>(sy_cublas_st_),                   \
                              ::sy::cuda::cublas_status_name(sy_cublas_st_), __FILE__, __LINE__); \
  } while (0)

#define CURAND_CHECK(call)                                                                        \
  do {                                                                                            \
    const curandStatus_t sy_curand_st_ = (call);                                                  \
    if (sy_curand_st_ != CURAND_STATUS_SUCCESS)                                                   \
      ::sy::cuda::throw_error("cuRAND", #call, static_cast<int>(sy_curand_st_),                   \
                              ::sy::cuda::curand_status_name(sy_curand_st_), __FILE__, __LINE__); \
  } while (0)

// After every <<<...>>>: cudaGetLastError catches launch failures (the kernel's own faults
// surface at the next synchronising call, which is checked too).
#define SY_CUDA_LAUNCH_CHECK(kernel_name)                                                       \
  do {                                                                                          \
    const cudaError_t sy_cuda_err_ = cudaGetLastError();                                        \
    if (sy_cuda_err_ != cudaSuccess)                                                            \
      ::sy::cuda::throw_error("CUDA", "launch of " kernel_name, static_cast<int>(sy_cuda_err_), \
                              cudaGetErrorString(sy_cuda_err_), __FILE__, __LINE__);            \
  } while (0)

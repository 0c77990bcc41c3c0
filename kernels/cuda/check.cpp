#include "kernels/cuda/check.h"

#include <sstream>

namespace sy::cuda {

namespace {

// "file:line: <library> error <code> (<what>) in <call>": the head of every error here.
void write_error_head(std::ostream& os, const char* library, const char* call, int code,
                      const char* what, const char* file, int line) {
  os << file << ":" << line << ": " << library << " error " << code << " (" << what << ") in "
     << call;
}

}  // namespace

void throw_error(const char* library, const char* call, int code, const char* what,
                 const char* file, int line) {
  std::ostringstream os;
  write_error_head(os, library, call, code, what, file, line);
  throw CudaError(os.str());
}

void throw_alloc_error(const char* call, cudaError_t err, size_t bytes, bool device,
                       const char* file, int line) {
  (void)cudaGetLastError();  // an allocation failure is not sticky: leave no error behind
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(2);
  write_error_head(os, "CUDA", call, static_cast<int>(err), cudaGetErrorString(err), file, line);
  os << " of " << static_cast<double>(bytes) / kGiB << " GiB of "
     << (device ? "device" : "page-locked host") << " memory";
  size_t free_b = 0, total_b = 0;
  int dev = 0;
  if (device && cudaGetDevice(&dev) == cudaSuccess &&
      cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
    os << " (GPU " << dev << ": " << static_cast<double>(free_b) / kGiB << " GiB free of "
       << static_cast<double>(total_b) / kGiB << " GiB)";
  (void)cudaGetLastError();
  throw CudaError(os.str());
}

const char* cublas_status_name(cublasStatus_t s) {
  return cublasGetStatusString(s);
}

const char* curand_status_name(curandStatus_t s) {
  switch (s) {
    case CURAND_STATUS_SUCCESS:
      return "CURAND_STATUS_SUCCESS";
    case CURAND_STATUS_VERSION_MISMATCH:
      return "CURAND_STATUS_VERSION_MISMATCH";
    case CURAND_STATUS_NOT_INITIALIZED:
      return "CURAND_STATUS_NOT_INITIALIZED";
    case CURAND_STATUS_ALLOCATION_FAILED:
      return "CURAND_STATUS_ALLOCATION_FAILED";
    case CURAND_STATUS_TYPE_ERROR:
      return "CURAND_STATUS_TYPE_ERROR";
    case CURAND_STATUS_OUT_OF_RANGE:
      return "CURAND_STATUS_OUT_OF_RANGE";
    case CURAND_STATUS_LENGTH_NOT_MULTIPLE:
      return "CURAND_STATUS_LENGTH_NOT_MULTIPLE";
    case CURAND_STATUS_DOUBLE_PRECISION_REQUIRED:
      return "CURAND_STATUS_DOUBLE_PRECISION_REQUIRED";
    case CURAND_STATUS_LAUNCH_FAILURE:
      return "CURAND_STATUS_LAUNCH_FAILURE";
    case CURAND_STATUS_PREEXISTING_FAILURE:
      return "CURAND_STATUS_PREEXISTING_FAILURE";
    case CURAND_STATUS_INITIALIZATION_FAILED:
      return "CURAND_STATUS_INITIALIZATION_FAILED";
    case CURAND_STATUS_ARCH_MISMATCH:
      return "CURAND_STATUS_ARCH_MISMATCH";
    case CURAND_STATUS_INTERNAL_ERROR:
      return "CURAND_STATUS_INTERNAL_ERROR";
  }
  return "unknown curandStatus_t";
}

int device_count(std::string* reason) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    // Clear the sticky "last error" so a later, unrelated check does not report it.
    (void)cudaGetLastError();
    if (reason) *reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    return 0;
  }
  if (n == 0 && reason) *reason = "cudaGetDeviceCount: no CUDA device visible";
  return n;
}

std::string device_uuid(int device) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  static const char* const kHex = "0123456789abcdef";
  std::string id = "GPU-";
  for (int i = 0; i < 16; ++i) {
    const auto b = static_cast<unsigned char>(prop.uuid.bytes[i]);
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

}  // namespace sy::cuda

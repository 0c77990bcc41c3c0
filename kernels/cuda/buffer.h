// RAII owners for device memory, streams, events and the cuBLAS handle. Nothing here is global:
// the model (or a test) owns one of each and passes the stream / handle into every kernel entry.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "kernels/cuda/check.h"

namespace sy::cuda {

// n elements of T in device memory. Move-only. resize() reallocates only to grow (contents are
// not kept); the destructor never throws (a failing cudaFree at exit is ignored).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }

  // Growing frees the old allocation while kernels queued on any stream may still use it: safe
  // only because cudaFree waits for the whole device first (and every NCCL call is waited for on
  // the host before the next, so that wait cannot hang on a peer). With cudaFreeAsync or a
  // caching allocator, grow only after the streams that use the buffer are synchronised.
  void resize(size_t n) {
    if (n > capacity_) {
      release();
      void* p = nullptr;
      if (const cudaError_t e = cudaMalloc(&p, n * sizeof(T)); e != cudaSuccess)
        throw_alloc_error("cudaMalloc", e, n * sizeof(T), /*device=*/true, __FILE__, __LINE__);
      ptr_ = static_cast<T*>(p);
      capacity_ = n;
    }
    size_ = n;
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

  // Synchronous set-up copies and fills (tests, set-up), for use OUTSIDE the hot path. They run
  // on the legacy NULL stream, which does not order itself with the non-blocking streams the
  // code under test uses (cuda::Stream), and cudaMemset / a pageable cudaMemcpy may return before
  // the device is done. So each waits for the whole device before (no queued kernel still reads
  // or writes the buffer) and after (the bytes are in place before the caller queues work on any
  // stream): a poison fill can never land on a result, nor an upload arrive after its reader.
  void upload(const std::vector<T>& host) {
    resize(host.size());
    if (host.empty()) return;
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    std::vector<T> host;
    download_into(host);
    return host;
  }
  // Into `host`, resized to the buffer: a vector that already holds as many keeps its memory (a
  // new one beside it doubled the host copy while it was filled).
  void download_into(std::vector<T>& host) const {
    host.resize(size_);
    if (size_ == 0) return;
    CUDA_CHECK(cudaDeviceSynchronize());  // results of every stream are written
    CUDA_CHECK(cudaMemcpy(host.data(), ptr_, bytes(), cudaMemcpyDeviceToHost));
  }
  // Every byte set to `byte` (synchronous, as upload). The tests' poison: 0xFF makes every float
  // and bf16 element a NaN; integer outputs use gputest::poison_byte<T>() instead (0xFF would
  // be the legitimate -1).
  void fill_bytes(int byte) {
    if (size_ == 0) return;
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemset(ptr_, byte, bytes()));
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  // Stream-ordered versions for the hot path: queued on `stream` like the kernels around them.
  void fill_bytes_async(int byte, cudaStream_t stream) {
    if (size_ > 0) CUDA_CHECK(cudaMemsetAsync(ptr_, byte, bytes(), stream));
  }

 private:
  void release() noexcept {
    if (ptr_) (void)cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = capacity_ = 0;
  }
  T* ptr_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

template <class T>
DeviceBuffer<T> to_device(const std::vector<T>& host) {
  DeviceBuffer<T> d;
  d.upload(host);
  return d;
}

// n elements of T in page-locked host memory (cudaMallocHost): the staging area of copies that
// must overlap or feed MPI. Move-only; resize() reallocates only to grow (contents not kept).
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), capacity_(std::exchange(o.capacity_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  void resize(size_t n) {
    if (n <= capacity_) return;
    release();
    void* p = nullptr;
    if (const cudaError_t e = cudaMallocHost(&p, n * sizeof(T)); e != cudaSuccess)
      throw_alloc_error("cudaMallocHost", e, n * sizeof(T), /*device=*/false, __FILE__, __LINE__);
    ptr_ = static_cast<T*>(p);
    capacity_ = n;
  }
  T* data() { return ptr_; }
  size_t capacity() const { return capacity_; }

 private:
  void release() noexcept {
    if (ptr_) (void)cudaFreeHost(ptr_);
    ptr_ = nullptr;
    capacity_ = 0;
  }
  T* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// device (=) host, staged through page-locked memory at `stage` (room for host.size() elements)
// so that the copy is truly asynchronous on `stream`. The stage must stay untouched until the
// copy is done. Returns the stage's next free element (several uploads share one stage).
template <class T>
T* upload_staged(DeviceBuffer<T>& device, const std::vector<T>& host, T* stage,
                 cudaStream_t stream) {
  device.resize(host.size());
  if (host.empty()) return stage;
  std::copy(host.begin(), host.end(), stage);
  CUDA_CHECK(cudaMemcpyAsync(device.data(), stage, host.size() * sizeof(T), cudaMemcpyHostToDevice,
                             stream));
  return stage + host.size();
}

class Stream {
 public:
  Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s_) (void)cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void sync() const { CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  // A timed event can be measured (ms_since); an ordering one only orders streams or the host
  // (cudaEventDisableTiming: the CUDA guide's advice for events that are never timed, cheaper
  // to record and to wait on).
  enum class Kind { kTimed, kOrdering };
  explicit Event(Kind kind = Kind::kTimed) {
    CUDA_CHECK(cudaEventCreateWithFlags(
        &e_, kind == Kind::kOrdering ? cudaEventDisableTiming : cudaEventDefault));
  }
  ~Event() {
    if (e_) (void)cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }
  void record(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(e_, s)); }
  void sync() const { CUDA_CHECK(cudaEventSynchronize(e_)); }
  // Milliseconds from `start` to this event (both recorded and complete).
  float ms_since(const Event& start) const {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

// A cuBLAS handle bound to one stream. Pointer mode host (alpha/beta are host scalars); the
// default math mode, so fp32 GEMMs are true fp32 (no TF32), which the 1e-5 tests rely on.
class CublasHandle {
 public:
  // cuBLAS's workspace for Hopper and later (its API reference: 32 MiB; 4 MiB before), ours: a
  // known size the memory counts can name, zeroed once so that compute-sanitizer's initcheck
  // sees no read of memory never written in it. Set after the stream (cublasSetStream resets
  // the workspace to cuBLAS's own pool).
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  explicit CublasHandle(cudaStream_t stream) : workspace_(kWorkspaceBytes) {
    workspace_.fill_bytes(0);
    CUBLAS_CHECK(cublasCreate(&h_));
    CUBLAS_CHECK(cublasSetStream(h_, stream));
    CUBLAS_CHECK(cublasSetWorkspace(h_, workspace_.data(), kWorkspaceBytes));
    CUBLAS_CHECK(cublasSetMathMode(h_, CUBLAS_DEFAULT_MATH));
  }
  ~CublasHandle() {
    if (h_) (void)cublasDestroy(h_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  DeviceBuffer<unsigned char> workspace_;  // freed after the handle (destructor body first)
  cublasHandle_t h_ = nullptr;
};

}  // namespace sy::cuda

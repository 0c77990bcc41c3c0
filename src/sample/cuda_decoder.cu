// The GPU decoder (see cuda_decoder.h). Mirrors Decoder::forward (decoder.cpp) op for op; the CPU
// Decoder is the reference tests/gpu/sample compares it with.
#include "src/sample/cuda_decoder.h"

#include <algorithm>
#include <string>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "src/core/error.h"
#include "src/model/cuda_moe.h"
#include "src/model/model.h"

namespace sy {

using cuda::DeviceBuffer;

namespace {

// The GPU layer's view of layer l's MoE weights (device pointers into the flat fp32 buffer).
CudaMoeWeights<float> cuda_moe_weights(const MoeWeights<float>& w) {
  return {w.router, w.bias, w.w1, w.w3, w.w2, w.sw1, w.sw3, w.sw2};  // field for field
}

}  // namespace

struct CudaDecoder::Impl {
  Impl(const Config& config, const std::vector<float>& host_params, long scratch_floats,
       int cache_rows)
      : cfg(config),
        table(make_param_table(config)),
        L(static_cast<int>(config.model.n_layers)),
        C(static_cast<int>(config.model.d_model)),
        NH(static_cast<int>(config.model.n_heads)),
        V(static_cast<int>(config.model.vocab_size)),
        W(static_cast<int>(config.model.seq_len)),
        R(cache_rows),
        attn_rows(
            static_cast<int>(std::clamp<long>(scratch_floats / (static_cast<long>(NH) * W), 1, W))),
        cublas(stream.get()) {
    SY_CHECK(host_params.size() == table.total_numel(),
             "decoder: " << host_params.size() << " parameters given, the model has "
                         << table.total_numel());
    params.upload(host_params);
    const size_t cache = static_cast<size_t>(L) * R * C;
    kcache.resize(cache);
    vcache.resize(cache);
    const MoeDims dims = inference_moe_dims(config);
    moe.reserve(static_cast<size_t>(L));
    for (int l = 0; l < L; ++l) moe.emplace_back(dims);
    logits.resize(static_cast<size_t>(V));
  }

  cudaStream_t s() const { return stream.get(); }
  const float* param(const std::string& name) { return params.data() + table.at(name).offset; }

  // Grown to the largest n seen.
  void ensure(int n) {
    const size_t nC = static_cast<size_t>(n) * C;
    tokens.resize(static_cast<size_t>(n));
    for (auto* b : {&x, &a, &atty, &moe_out}) b->resize(nC);
    rstd.resize(static_cast<size_t>(n));
    qkv.resize(3 * nC);
    qkv_rot.resize(3 * nC);
    scratch.resize(
        static_cast<size_t>(cuda::attention_cached_scratch(std::min(n, attn_rows), NH, W)));
  }

  // Decoder::forward on the device: n tokens at positions pos .. pos+n-1; out[V] (=) the logits
  // of the last.
  void forward(const int32_t* host_tokens, int n, int64_t pos, std::vector<float>& out) {
    const int C3 = 3 * C;
    const long nC = static_cast<long>(n) * C;
    const double eps = cfg.model.norm_eps;
    ensure(n);
    CUDA_CHECK(cudaMemcpyAsync(tokens.data(), host_tokens, sizeof(int32_t) * n,
                               cudaMemcpyHostToDevice, s()));
    const float* embed = param("model/embed");
    const LossScale unit;  // the MoE layer's aux and z terms are computed and ignored

    cuda::embedding_forward(x.data(), tokens.data(), embed, n, C, s());
    for (int l = 0; l < L; ++l) {
      const LayerWeights<float> w = layer_weights(table, params.data(), l);
      // x += Attn(RMSNorm(x)), the new keys and values into the cache first.
      float* kc = kcache.data() + static_cast<size_t>(l) * R * C;
      float* vc = vcache.data() + static_cast<size_t>(l) * R * C;
      cuda::rmsnorm_forward(a.data(), rstd.data(), x.data(), w.attn_norm, n, C, eps, s());
      cuda::matmul_forward(qkv.data(), a.data(), w.wqkv, n, C, C3, cublas.get());
      cuda::rope_forward_from(qkv_rot.data(), qkv.data(), n, C, NH, cfg.model.rope_theta, pos, s());
      cuda::kv_cache_store(kc, vc, qkv_rot.data(), R, pos, n, C, s());
      // the queries in groups of at most attn_rows (their score rows fill the scratch)
      for (int i0 = 0; i0 < n; i0 += attn_rows) {
        const long q0 = static_cast<long>(i0);
        cuda::attention_cached_forward(atty.data() + q0 * C, scratch.data(),
                                       qkv_rot.data() + q0 * C3, C3, kc, vc, W, R, pos + i0,
                                       std::min(attn_rows, n - i0), C, NH, s());
      }
      cuda::matmul_forward(a.data(), atty.data(), w.wo, n, C, C, cublas.get());
      cuda::residual_forward(x.data(), x.data(), a.data(), nC, s());
      // x += MoE(RMSNorm(x)): one sequence of n tokens, dropless.
      cuda::rmsnorm_forward(a.data(), rstd.data(), x.data(), w.moe_norm, n, C, eps, s());
      moe[static_cast<size_t>(l)].forward(moe_out.data(), a.data(), 1, n, cuda_moe_weights(w.moe),
                                          unit, s(), cublas.get());
      cuda::residual_forward(x.data(), x.data(), moe_out.data(), nC, s());
    }
    // logits[V] of the last token = RMSNorm(x) @ Head^T
    const float* last = x.data() + static_cast<long>(n - 1) * C;
    const float* head = cfg.model.tie_embeddings ? embed : param("model/head");
    cuda::rmsnorm_forward(a.data(), rstd.data(), last, param("model/final_norm"), 1, C, eps, s());
    cuda::gemm<float, float>(cublas.get(), false, true, 1, V, C, 1.0f, a.data(), C, head, C, 0.0f,
                             logits.data(), V);
    out.resize(static_cast<size_t>(V));
    CUDA_CHECK(
        cudaMemcpyAsync(out.data(), logits.data(), sizeof(float) * V, cudaMemcpyDeviceToHost, s()));
    stream.sync();
  }

  Config cfg;
  ParamTable table;
  int L, C, NH, V, W;
  int R;          // cache rows (TokenDecoder::cache_rows)
  int attn_rows;  // query rows per attention call (cuda_decoder.h: attention_scratch_floats)
  cuda::Stream stream;
  cuda::CublasHandle cublas;
  DeviceBuffer<float> params;          // [P] in table order (fp32)
  DeviceBuffer<float> kcache, vcache;  // [L,R,C]: layer l, position s in row l*R + s % R
  std::vector<CudaMoeLayer<float>> moe;
  // The tokens being fed and their activations (grown to the largest n seen).
  DeviceBuffer<int32_t> tokens;                                 // [n]
  DeviceBuffer<float> x, a, atty, moe_out, rstd, qkv, qkv_rot;  // [n,C] / [n] / [n,3C]
  DeviceBuffer<float> scratch;  // [min(n, attn_rows)*NH*W] attention scores
  DeviceBuffer<float> logits;   // [V]
};

void CudaDecoder::require_gpu() {
  std::string reason;
  if (cuda::device_count(&reason) == 0)
    throw UsageError("--device cuda needs a usable CUDA GPU: " + reason +
                     " (--device cpu samples any checkpoint)");
}

CudaDecoder::CudaDecoder(const Config& cfg, const std::vector<float>& params,
                         long attention_scratch_floats)
    : TokenDecoder(static_cast<int>(cfg.model.vocab_size), static_cast<int>(cfg.model.seq_len)) {
  require_gpu();
  impl_ = std::make_unique<Impl>(cfg, params, attention_scratch_floats, cache_rows());
}
CudaDecoder::~CudaDecoder() = default;

void CudaDecoder::forward(const int32_t* tokens, int n) {
  impl_->forward(tokens, n, pos_, logits_);
}

}  // namespace sy

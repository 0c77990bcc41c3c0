#include "src/sample/decoder.h"

#include <algorithm>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "src/core/error.h"
#include "src/model/grow.h"
#include "src/model/model.h"

namespace sy {

Decoder::Decoder(const Config& cfg, std::vector<float> params)
    : TokenDecoder(static_cast<int>(cfg.model.vocab_size), static_cast<int>(cfg.model.seq_len)),
      cfg_(cfg),
      table_(make_param_table(cfg)),
      params_(std::move(params)),
      L_(static_cast<int>(cfg.model.n_layers)),
      C_(static_cast<int>(cfg.model.d_model)),
      NH_(static_cast<int>(cfg.model.n_heads)) {
  SY_CHECK(
      params_.size() == table_.total_numel(),
      "decoder: " << params_.size() << " parameters given, the model has " << table_.total_numel());
  const MoeDims dims = inference_moe_dims(cfg);
  moe_.reserve(static_cast<size_t>(L_));
  for (int l = 0; l < L_; ++l) moe_.emplace_back(dims);
  const size_t cache = static_cast<size_t>(cache_rows()) * static_cast<size_t>(C_);
  kcache_.assign(static_cast<size_t>(L_), std::vector<float>(cache, 0.0f));
  vcache_.assign(static_cast<size_t>(L_), std::vector<float>(cache, 0.0f));
  scratch_.resize(static_cast<size_t>(W_));
}

float* Decoder::param(const std::string& name) {
  return params_.data() + table_.at(name).offset;
}

// The layers of Model<float>::forward for the n new tokens, with attention over the cache.
void Decoder::forward(const int32_t* tokens, int n) {
  const int C = C_, C3 = 3 * C;
  const long nC = static_cast<long>(n) * C;
  grow(x_, nC);
  grow(a_, nC);
  grow(rstd_, n);
  grow(qkv_, 3 * nC);
  grow(qkv_rot_, 3 * nC);
  grow(atty_, nC);
  grow(moe_out_, nC);
  const double eps = cfg_.model.norm_eps;
  const float* embed = param("model/embed");
  LossScale unit;  // the MoE layer's aux and z terms are computed and ignored

  cpu::embedding_forward(x_.data(), tokens, embed, n, C);
  for (int l = 0; l < L_; ++l) {
    const LayerWeights<float> w = layer_weights(table_, params_.data(), l);
    // x += Attn(RMSNorm(x)), the new keys and values into the cache first.
    cpu::rmsnorm_forward(a_.data(), rstd_.data(), x_.data(), w.attn_norm, n, C, eps);
    cpu::matmul_forward(qkv_.data(), a_.data(), w.wqkv, n, C, C3);
    cpu::rope_forward_from(qkv_rot_.data(), qkv_.data(), n, C, NH_, cfg_.model.rope_theta, pos_);
    float* kc = kcache_[static_cast<size_t>(l)].data();
    float* vc = vcache_[static_cast<size_t>(l)].data();
    for (int i = 0; i < n; ++i) {
      const long row = ((pos_ + i) % cache_rows()) * C;
      const float* src = qkv_rot_.data() + static_cast<long>(i) * C3;
      std::copy(src + C, src + 2 * C, kc + row);
      std::copy(src + 2 * C, src + 3 * C, vc + row);
    }
    cpu::attention_cached_forward(atty_.data(), scratch_.data(), qkv_rot_.data(), C3, kc, vc, W_,
                                  cache_rows(), static_cast<long>(pos_), n, C, NH_);
    cpu::matmul_forward(a_.data(), atty_.data(), w.wo, n, C, C);
    cpu::residual_forward(x_.data(), x_.data(), a_.data(), nC);
    // x += MoE(RMSNorm(x)): one sequence of n tokens, dropless.
    cpu::rmsnorm_forward(a_.data(), rstd_.data(), x_.data(), w.moe_norm, n, C, eps);
    moe_[static_cast<size_t>(l)].forward(moe_out_.data(), a_.data(), 1, n, w.moe, unit, nullptr);
    cpu::residual_forward(x_.data(), x_.data(), moe_out_.data(), nC);
  }
  // logits[V] of the last token = RMSNorm(x) @ Head^T
  const float* last = x_.data() + static_cast<long>(n - 1) * C;
  const float* head = cfg_.model.tie_embeddings ? embed : param("model/head");
  cpu::rmsnorm_forward(a_.data(), rstd_.data(), last, param("model/final_norm"), 1, C, eps);
  cpu::gemm<float>(false, true, 1, V_, C, 1.0f, a_.data(), C, head, C, 0.0f, logits_.data(), V_);
}

}  // namespace sy

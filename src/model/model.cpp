#include "src/model/model.h"

#include <algorithm>

#include <span>

#include "comm/collectives.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "src/core/error.h"
#include "src/placement/placement.h"

namespace sy {

using cpu::Grad;

LossScale global_batch_scale(const Config& cfg) {
  const int64_t GB = cfg.train.global_batch, MB = cfg.train.micro_batch;
  LossScale s;
  // In double: GB * seq_len passes INT64_MAX for a global_batch near 2^63 / seq_len (QA, UB).
  s.token_weight = 1.0 / (static_cast<double>(GB) * static_cast<double>(cfg.model.seq_len));
  s.group_weight =
      1.0 / static_cast<double>(cfg.moe.aux_loss_scope == AuxScope::kSequence ? GB : GB / MB);
  return s;
}

template <class T>
Model<T>::Model(const Config& cfg, const ModelParallel& par)
    : cfg_(cfg),
      par_(par),
      table_(make_param_table(cfg, par.layout, par.placement)),
      L_(static_cast<int>(cfg.model.n_layers)),
      T_(static_cast<int>(cfg.model.seq_len)),
      C_(static_cast<int>(cfg.model.d_model)),
      NH_(static_cast<int>(cfg.model.n_heads)),
      V_(static_cast<int>(cfg.model.vocab_size)),
      E_(static_cast<int>(cfg.moe.num_experts)),
      Ct_(C_ / par.layout.tp),
      NHt_(NH_ / par.layout.tp) {
  SY_CHECK(par.layout.tp == (par.moe.tp ? par.moe.tp->size() : 1),
           "layout tp " << par.layout.tp << " differs from the tp communicator");
  params.assign(table_.total_numel(), T(0));
  grads.assign(table_.total_numel(), T(0));
  const MoeDims dims = moe_dims(cfg, par.layout.tp, par.layout.ep, par.layout.etp);
  moe_.reserve(static_cast<size_t>(L_));
  for (int l = 0; l < L_; ++l) {
    moe_.emplace_back(dims, par.moe);
    if (table_.placement()) moe_.back().set_expert_slots(table_.placement()->slots(l));
  }
  acts_.resize(static_cast<size_t>(L_));
}

template <class T>
void Model<T>::zero_grads() {
  // Tens of MB per step on real models: both cores' memory bandwidth, not one.
  T* g = grads.data();
  const auto n = static_cast<long>(grads.size());
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (long i = 0; i < n; ++i) g[i] = T(0);
}

template <class T>
LayerWeights<T> layer_weights(const ParamTable& table, T* buf, int l) {
  auto p = [&](const char* leaf) -> T* {
    const std::string name = layer_param_name(l, leaf);
    return table.contains(name) ? buf + table.at(name).offset : nullptr;
  };
  LayerWeights<T> r;
  r.attn_norm = p("attn_norm");
  r.wqkv = p("attn/wqkv");
  r.wo = p("attn/wo");
  r.moe_norm = p("moe_norm");
  r.moe.router = p("moe/router");
  r.moe.bias = p("moe/bias");
  r.moe.w1 = p("moe/w1");
  r.moe.w3 = p("moe/w3");
  r.moe.w2 = p("moe/w2");
  r.moe.sw1 = p("moe/shared/w1");
  r.moe.sw3 = p("moe/shared/w3");
  r.moe.sw2 = p("moe/shared/w2");
  return r;
}

template <class T>
void Model<T>::ensure_activations(int B) {
  B_ = B;
  if (B <= capacity_B_) return;
  capacity_B_ = B;
  const size_t N = static_cast<size_t>(B) * T_, C = C_, Ct = Ct_;
  const size_t att_stats = static_cast<size_t>(B) * NHt_ * T_ * 2;
  inputs_.resize(N);
  targets_.resize(N);
  for (auto& a : acts_) {
    a.x_in.resize(N * C);
    a.a.resize(N * C);
    a.a_rstd.resize(N);
    a.qkv.resize(N * 3 * Ct);
    a.qkv_rot.resize(N * 3 * Ct);
    a.att_stats.resize(att_stats);
    a.atty.resize(N * Ct);
    a.x_mid.resize(N * C);
    a.m.resize(N * C);
    a.m_rstd.resize(N);
    a.moe_out.resize(N * C);
  }
  x_out_.resize(N * C);
  xf_.resize(N * C);
  xf_rstd_.resize(N);
  probs_.resize(N * V_);
  losses_.resize(N);
  dx_.resize(N * C);
  dtmp_.resize(N * C);
  dtmp2_.resize(N * C);
  dqkv_.resize(N * 3 * Ct);
  dqkv2_.resize(N * 3 * Ct);
  dlosses_.resize(N);
}

template <class T>
LossParts Model<T>::forward(const int32_t* tokens, int B, const LossScale& s,
                            std::vector<MoeStats>* stats) {
  ensure_activations(B);
  scale_ = s;
  const int N = B * T_, C = C_;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T_; ++t) {
      inputs_[b * T_ + t] = tokens[b * (T_ + 1) + t];
      targets_[b * T_ + t] = tokens[b * (T_ + 1) + t + 1];
    }
  if (stats) stats->resize(static_cast<size_t>(L_));

  const T* embed = params.data() + table_.at("model/embed").offset;
  const double eps = cfg_.model.norm_eps;
  LossParts out;

  cpu::embedding_forward(acts_[0].x_in.data(), inputs_.data(), embed, N, C);
  for (int l = 0; l < L_; ++l) {
    LayerActs& a = acts_[l];
    const LayerPtrs w = layer_ptrs(params, l);
    // x_mid = x_in + Attn(RMSNorm(x_in)); this rank's NHt heads give a partial wo product.
    cpu::rmsnorm_forward(a.a.data(), a.a_rstd.data(), a.x_in.data(), w.attn_norm, N, C, eps);
    cpu::matmul_forward(a.qkv.data(), a.a.data(), w.wqkv, N, C, 3 * Ct_);
    cpu::rope_forward(a.qkv_rot.data(), a.qkv.data(), B, T_, Ct_, NHt_, cfg_.model.rope_theta);
    cpu::attention_forward(a.atty.data(), a.att_stats.data(), a.qkv_rot.data(), B, T_, Ct_, NHt_);
    cpu::matmul_forward(a.x_mid.data(), a.atty.data(), w.wo, N, Ct_, C);
    sum_over_tp(a.x_mid.data(), static_cast<long>(N) * C, "attention output");
    cpu::residual_forward(a.x_mid.data(), a.x_mid.data(), a.x_in.data(), static_cast<long>(N) * C);
    // x_out = x_mid + MoE(RMSNorm(x_mid))
    cpu::rmsnorm_forward(a.m.data(), a.m_rstd.data(), a.x_mid.data(), w.moe_norm, N, C, eps);
    const MoeLoss ml = moe_[l].forward(a.moe_out.data(), a.m.data(), B, T_, w.moe, s,
                                       stats ? &(*stats)[l] : nullptr);
    out.aux += ml.aux;
    out.z += ml.z;
    T* x_next = l + 1 < L_ ? acts_[l + 1].x_in.data() : x_out_.data();
    cpu::residual_forward(x_next, a.x_mid.data(), a.moe_out.data(), static_cast<long>(N) * C);
  }

  // logits[N,V] = RMSNorm(x_out) @ Head^T, Head [V,C] (the embedding when tied)
  const T* final_norm = params.data() + table_.at("model/final_norm").offset;
  const T* head =
      cfg_.model.tie_embeddings ? embed : params.data() + table_.at("model/head").offset;
  cpu::rmsnorm_forward(xf_.data(), xf_rstd_.data(), x_out_.data(), final_norm, N, C, eps);
  cpu::gemm<T>(false, true, N, V_, C, T(1), xf_.data(), C, head, C, T(0), probs_.data(), V_);
  cpu::crossentropy_forward(losses_.data(), probs_.data(), probs_.data(), targets_.data(), N, V_);
  double lm = 0.0;
  for (int n = 0; n < N; ++n) lm += static_cast<double>(losses_[n]);
  out.lm = lm * s.token_weight;
  return out;
}

template <class T>
void Model<T>::backward() {
  const int B = B_, N = B * T_, C = C_;
  const long NC = static_cast<long>(N) * C;
  T* dembed = grads.data() + table_.at("model/embed").offset;
  const T* embed = params.data() + table_.at("model/embed").offset;
  const bool tied = cfg_.model.tie_embeddings;
  T* dhead = tied ? dembed : grads.data() + table_.at("model/head").offset;
  const T* head = tied ? embed : params.data() + table_.at("model/head").offset;

  // lm = token_weight * sum_n losses[n]
  std::fill(dlosses_.begin(), dlosses_.begin() + N, static_cast<T>(scale_.token_weight));
  cpu::crossentropy_backward(probs_.data(), probs_.data(), targets_.data(), dlosses_.data(), N, V_);
  T* dlogits = probs_.data();
  // dxf[N,C] = dlogits[N,V] @ Head[V,C];  dHead[V,C] += dlogits^T @ xf
  cpu::gemm<T>(false, false, N, C, V_, T(1), dlogits, V_, head, C, T(0), dtmp_.data(), C);
  cpu::gemm<T>(true, false, V_, C, N, T(1), dlogits, V_, xf_.data(), C, T(1), dhead, C);
  T* dfinal_norm = grads.data() + table_.at("model/final_norm").offset;
  const T* final_norm = params.data() + table_.at("model/final_norm").offset;
  // dx_ holds d loss / d residual stream as it flows back through the layers.
  cpu::rmsnorm_backward(dx_.data(), dfinal_norm, dtmp_.data(), x_out_.data(), final_norm,
                        xf_rstd_.data(), N, C);

  for (int l = L_ - 1; l >= 0; --l) {
    LayerActs& a = acts_[l];
    const LayerPtrs w = layer_ptrs(params, l);
    const LayerPtrs g = layer_ptrs(grads, l);
    // MoE block: x_out = x_mid + MoE(RMSNorm(x_mid)); dx_ is d/dx_out, becomes d/dx_mid.
    moe_[l].backward(dtmp_.data(), g.moe, dx_.data(), a.m.data(), w.moe, scale_);
    cpu::rmsnorm_backward(dtmp2_.data(), g.moe_norm, dtmp_.data(), a.x_mid.data(), w.moe_norm,
                          a.m_rstd.data(), N, C);
    cpu::residual_forward(dx_.data(), dx_.data(), dtmp2_.data(), NC);
    // Attention block: x_mid = x_in + Attn(RMSNorm(x_in)); dx_ becomes d/dx_in. The gradient
    // reaching RMSNorm is this rank's heads' share: summed over tp before the (replicated) norm.
    cpu::matmul_backward(dtmp_.data(), g.wo, dx_.data(), a.atty.data(), w.wo, N, Ct_, C);
    cpu::attention_backward(dqkv_.data(), dtmp_.data(), a.qkv_rot.data(), a.att_stats.data(), B, T_,
                            Ct_, NHt_);
    cpu::rope_backward(dqkv2_.data(), dqkv_.data(), B, T_, Ct_, NHt_, cfg_.model.rope_theta);
    cpu::matmul_backward(dtmp_.data(), g.wqkv, dqkv2_.data(), a.a.data(), w.wqkv, N, C, 3 * Ct_);
    sum_over_tp(dtmp_.data(), NC, "attention input gradient");
    cpu::rmsnorm_backward(dtmp2_.data(), g.attn_norm, dtmp_.data(), a.x_in.data(), w.attn_norm,
                          a.a_rstd.data(), N, C);
    cpu::residual_forward(dx_.data(), dx_.data(), dtmp2_.data(), NC);
  }
  cpu::embedding_backward(dembed, dx_.data(), inputs_.data(), N, C);
}

template <class T>
void Model<T>::sum_over_tp(T* x, long n, const char* what) {
  const comm::Comm* tp = par_.moe.tp;
  if (tp && tp->size() > 1)
    comm::allreduce_sum(std::span<T>(x, static_cast<size_t>(n)), *tp, par_.moe.watchdog, what);
}

template class Model<float>;
template class Model<double>;
template LayerWeights<float> layer_weights(const ParamTable&, float*, int);
template LayerWeights<double> layer_weights(const ParamTable&, double*, int);

}  // namespace sy

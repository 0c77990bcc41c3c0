// The whole MoE transformer of SPEC section 1 on the CPU: parameters and gradients in one flat
// buffer each (laid out by ParamTable, found by SPEC name), activations saved by forward for
// backward, like llm.c's train_gpt2.c. Instantiated for float (training) and double (the
// finite-difference gradient checks).
//
// Parallel (ModelParallel): this rank holds its shards of the parameters (params.h). Attention
// runs its heads' share (NH/tp heads: wqkv column-parallel, wo row-parallel) and sums the
// partial outputs over tp — one all-reduce in forward and one in backward per block; the MoE
// layer moves tokens as moe.h describes. Everything else (embedding, norms, head, loss) is
// computed identically on every tp rank. Gradients come out as this rank's contribution; the
// data-parallel reduction is the trainer's (src/train/grad_sync.h).
//
// Letters: B sequences of the micro-batch, T positions (seq_len), N = B*T tokens, C d_model,
// NH heads, L layers, V vocab, E experts; Ct = C/tp and NHt = NH/tp this rank's attention share.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "src/config/config.h"
#include "src/model/moe.h"
#include "src/model/params.h"

namespace sy {

// The loss terms one micro-batch adds to the global batch's loss (already weighted by its
// LossScale): summing them over the micro-batches gives SPEC's lm_loss, sum_l aux_l, sum_l zloss_l.
struct LossParts {
  double lm = 0.0;
  double aux = 0.0;
  double z = 0.0;
  double total() const { return lm + aux + z; }
  LossParts& operator+=(const LossParts& o) {
    lm += o.lm;
    aux += o.aux;
    z += o.z;
    return *this;
  }
};

// The loss weights of any micro-batch of cfg's global batch (SPEC section 3: the loss is the mean
// over the global batch's tokens, aux the mean over its balance groups: every sequence, or
// every micro-batch with aux_loss_scope micro_batch).
LossScale global_batch_scale(const Config& cfg);

// Views of layer l's parameters (or gradients) in a flat buffer laid out by `table`; null for a
// parameter the table does not hold (the shared experts when S == 0).
template <class T>
struct LayerWeights {
  T *attn_norm, *wqkv, *wo, *moe_norm;
  MoeWeights<T> moe;
};
template <class T>
LayerWeights<T> layer_weights(const ParamTable& table, T* buf, int l);

// Where this rank sits in the layout and what it communicates over (default: one rank).
struct ModelParallel {
  ShardLayout layout;
  MoeParallel moe;  // moe.tp is also the attention's tensor-parallel group
  // Which experts each EP rank holds, per layer (null: contiguous); see src/placement.
  std::shared_ptr<const ExpertPlacement> placement;
};

template <class T>
class Model {
 public:
  explicit Model(const Config& cfg, const ModelParallel& par = {});

  const ParamTable& table() const { return table_; }
  int num_layers() const { return L_; }
  int seq_len() const { return T_; }
  int num_experts() const { return E_; }

  // Flat buffers in table() order.
  std::vector<T> params;  // initialised by the caller (init_params), or loaded
  std::vector<T> grads;   // accumulated by backward(); zero_grads() between optimizer steps

  void zero_grads();
  T* param(const std::string& name) { return params.data() + table_.at(name).offset; }
  // Layer l's MoE (read-only: its last routing, for the co-activation counts).
  const MoeLayer<T>& moe_layer(int l) const { return moe_[static_cast<size_t>(l)]; }

  // Forward of B sequences; tokens [B, T+1] (inputs tokens[:, :T], targets tokens[:, 1:]).
  // stats: null, or L entries that receive each layer's routing counts.
  // Saves the activations backward() needs.
  LossParts forward(const int32_t* tokens, int B, const LossScale& s,
                    std::vector<MoeStats>* stats = nullptr);
  // Accumulates d(weighted loss of the last forward)/d(params) into grads (+=).
  void backward();
  // RMSNorm(x_out) of the last forward, [B*T, C]: the hidden states the head multiplies (the
  // logits of token n are final_hidden()[n] @ Head^T; the incremental decoder's tests use it).
  const std::vector<T>& final_hidden() const { return xf_; }

 private:
  using LayerPtrs = LayerWeights<T>;
  LayerPtrs layer_ptrs(std::vector<T>& buf, int l) const {
    return layer_weights(table_, buf.data(), l);
  }
  void sum_over_tp(T* x, long n, const char* what);  // x[n] (=) its sum over tp
  void ensure_activations(int B);

  Config cfg_;
  ModelParallel par_;
  ParamTable table_;
  int L_, T_, C_, NH_, V_, E_;
  int Ct_, NHt_;  // this rank's attention share
  std::vector<MoeLayer<T>> moe_;

  // Saved activations of the last forward (grown to the largest B seen, never per step).
  int B_ = 0, capacity_B_ = 0;
  LossScale scale_;
  std::vector<int32_t> inputs_, targets_;  // [N]
  struct LayerActs {
    std::vector<T> x_in;       // [N,C]  residual stream entering the layer
    std::vector<T> a;          // [N,C]  RMSNorm(x_in)
    std::vector<T> a_rstd;     // [N]
    std::vector<T> qkv;        // [N,3Ct] a @ wqkv
    std::vector<T> qkv_rot;    // [N,3Ct] after RoPE
    std::vector<T> att_stats;  // [B,NHt,T,2] each attention row's max and 1/sum
    std::vector<T> atty;       // [N,Ct] attention output before wo
    std::vector<T> x_mid;      // [N,C]  x_in + atty @ wo
    std::vector<T> m;          // [N,C]  RMSNorm(x_mid)
    std::vector<T> m_rstd;     // [N]
    std::vector<T> moe_out;    // [N,C]
  };
  std::vector<LayerActs> acts_;
  std::vector<T> x_out_;    // [N,C] residual stream after the last layer
  std::vector<T> xf_;       // [N,C] RMSNorm(x_out)
  std::vector<T> xf_rstd_;  // [N]
  std::vector<T> probs_;    // [N,V] logits, then softmax in place
  std::vector<T> losses_;   // [N]
  // Backward scratch.
  std::vector<T> dx_, dtmp_, dtmp2_, dqkv_, dqkv2_, dlosses_;
};

}  // namespace sy

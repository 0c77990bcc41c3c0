// One Mixture-of-Experts feed-forward layer on the CPU (SPEC section 1), forward and backward,
// split into the stages that expert parallelism will later pull apart:
//
//   route    : router logits z = m Wr, p = softmax(z), top-k of p + b, gates, capacity
//   dispatch : gather each kept (token, expert) assignment into an expert-sorted buffer
//   experts  : one grouped pass of SwiGLU experts over the expert-sorted rows
//   combine  : weight each expert output by its gate and add it back to its token
//
// plus the always-on shared experts, the aux load-balancing loss and the router z-loss.
// With expert parallelism (comm/) the expert-sorted buffer crosses ranks between dispatch and
// experts and back between experts and combine; nothing else changes.
//
// Letters: B sequences, T positions, N = B*T tokens, C d_model, E experts, K top-k,
// F expert hidden, S shared experts, A = number of kept assignments (<= N*K).
#pragma once

#include <cstdint>
#include <vector>

#include "src/config/config.h"

namespace sy {

// Per-token and per-group loss weights of one micro-batch inside the global batch, so that the
// sum of the micro-batches' weighted losses is exactly the SPEC loss of the global batch.
struct LossScale {
  double token_weight = 1.0;  // 1 / (tokens in the global batch): lm and z-loss terms
  double group_weight = 1.0;  // 1 / (balance groups in the global batch): aux term
};

// Views into a flat parameter (or gradient) buffer, SPEC section 5 layouts.
template <class T>
struct MoeWeights {
  T* router = nullptr;  // [C,E]
  T* bias = nullptr;    // [E]   (never receives a gradient)
  T* w1 = nullptr;      // [E,C,F]
  T* w3 = nullptr;      // [E,C,F]
  T* w2 = nullptr;      // [E,F,C]
  T* sw1 = nullptr;     // [S,C,F] (null when S == 0)
  T* sw3 = nullptr;     // [S,C,F]
  T* sw2 = nullptr;     // [S,F,C]
};

// What one forward adds to the loss, already multiplied by the LossScale weights, so summing
// over micro-batches gives the layer's aux_l and zloss_l of SPEC section 1.
struct MoeLoss {
  double aux = 0.0;
  double z = 0.0;
};

// Routing counts of one forward (for metrics and the aux-loss-free bias update).
struct MoeStats {
  std::vector<int64_t> selected;  // [E] assignments selected per expert, before capacity
  std::vector<int64_t> kept;      // [E] assignments accepted per expert, after capacity
  int64_t dropped = 0;            // assignments dropped by capacity
};

struct MoeDims {
  int C = 0, E = 0, K = 0, F = 0, S = 0;
  bool norm_topk = true;
  bool has_capacity = false;   // false = dropless
  double capacity_factor = 0;  // used when has_capacity
  double aux_coeff = 0, z_coeff = 0;
  AuxScope aux_scope = AuxScope::kSequence;
};
MoeDims moe_dims(const Config& cfg);

template <class T>
class MoeLayer {
 public:
  explicit MoeLayer(const MoeDims& dims);

  // out[N,C] (=) MoE(m[N,C]) for B sequences of T_ tokens (N = B*T_; the micro-batch is the
  // routing group for capacity). Saves what backward needs inside this object.
  MoeLoss forward(T* out, const T* m, int B, int T_, const MoeWeights<T>& w, const LossScale& s,
                  MoeStats* stats);

  // dm[N,C] (=); parameter gradients in g (+=). Must follow the forward of the same micro-batch.
  void backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m, const MoeWeights<T>& w,
                const LossScale& s);

 private:
  MoeDims d_;
  // Saved activations of the last forward (grown, never shrunk: no per-step allocation once
  // the largest micro-batch has been seen). Implementation-owned.
  struct Cache;
  std::vector<T> buf_;            // backing store of all saved activations
  std::vector<int32_t> ibuf_;     // backing store of all saved indices
  int B_ = 0, T_ = 0;
};

}  // namespace sy

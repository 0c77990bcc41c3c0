// One Mixture-of-Experts feed-forward layer on the CPU (SPEC section 1), forward and backward,
// split into the stages that expert parallelism will later pull apart:
//
//   route    : router logits z = m Wr, p = softmax(z), top-k of p + b, gates, capacity, and the
//              dispatch layout (which token goes to which row of the expert-sorted buffer)
//   dispatch : gather each kept (token, expert) assignment into an expert-sorted buffer
//              (experts contiguous, inside an expert by token index)
//   experts  : one grouped pass of SwiGLU experts over the expert-sorted rows
//   combine  : weight each expert output by its gate and add it back to its token
//
// plus the always-on shared experts, the aux load-balancing loss and the router z-loss.
// With expert parallelism (comm/) the expert-sorted buffer crosses ranks between dispatch and
// experts and back between experts and combine; nothing else changes. The backward mirrors it:
// combine's backward is a dispatch of the gate-weighted output gradient, dispatch's backward an
// un-weighted scatter-add.
//
// Letters: B sequences, T positions, N = B*T tokens, C d_model, E experts, K top-k,
// F expert hidden, S shared experts, A = number of kept assignments (<= N*K), R rows of an
// expert-sorted buffer given to the expert stage (A on one rank).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/gemm.h"
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

// Assignments one expert accepts from a routing group of num_tokens tokens:
// ceil(c * num_tokens * K / E), or num_tokens when dropless (an expert is chosen at most once
// per token).
int64_t moe_expert_capacity(const MoeDims& d, int num_tokens);

// The expert stage on its own (no routing): R expert-sorted rows x[R,C], where the first
// counts[0] rows go through expert 0, the next counts[1] through expert 1, ... (an expert with
// zero rows is skipped). w1, w3: [num_experts,C,F], w2: [num_experts,F,C].
//   y[R,C] (= or += per y_mode) SwiGLU_e(x rows of e)
//   h1, h3, h[R,F] (=) saved activations x W1_e, x W3_e, silu(h1) * h3
template <class T>
void grouped_swiglu_forward(T* y, T* h1, T* h3, T* h, const T* x, const int32_t* counts,
                            int num_experts, const T* w1, const T* w3, const T* w2, int C, int F,
                            cpu::Grad y_mode = cpu::Grad::kAssign);
// dx[R,C] (= or += per dx_mode); dw1, dw3 [num_experts,C,F] (+=), dw2 [num_experts,F,C] (+=).
// scratch: 2*R*F elements, contents undefined after.
template <class T>
void grouped_swiglu_backward(T* dx, T* dw1, T* dw3, T* dw2, T* scratch, const T* dy, const T* x,
                             const T* h1, const T* h3, const T* h, const int32_t* counts,
                             int num_experts, const T* w1, const T* w3, const T* w2, int C, int F,
                             cpu::Grad dx_mode = cpu::Grad::kAssign);

template <class T>
class MoeLayer {
 public:
  explicit MoeLayer(const MoeDims& dims);
  const MoeDims& dims() const { return d_; }

  // out[N,C] (=) MoE(m[N,C]) for B sequences of T_ tokens (N = B*T_; the micro-batch is the
  // routing group for capacity). Saves what backward needs inside this object.
  // = route, shared_forward, dispatch, experts_forward, combine.
  MoeLoss forward(T* out, const T* m, int B, int T_, const MoeWeights<T>& w, const LossScale& s,
                  MoeStats* stats);

  // dm[N,C] (=); parameter gradients in g (+=). Must follow the forward of the same micro-batch.
  // = shared_backward, combine_backward, experts_backward, dispatch_backward, route_backward.
  void backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m, const MoeWeights<T>& w,
                const LossScale& s);

  // ---- The stages, for callers that move the expert-sorted buffer between them ----

  // Router, top-k, gates, capacity and the dispatch layout of m[N,C]; router [C,E], bias [E]
  // (may be null). Returns the weighted aux and z terms; fills stats when non-null.
  MoeLoss route(const T* m, int B, int T_, const T* router, const T* bias, const LossScale& s,
                MoeStats* stats);
  // The dispatch layout of the last route():
  int num_rows() const { return A_; }                              // A
  const int32_t* expert_counts() const { return counts_.data(); }  // [E] rows per expert
  const int32_t* row_token() const { return row_token_.data(); }   // [A] token of each row
  const T* row_gate() const { return row_gate_.data(); }           // [A] gate of each row

  // xs[A,C] (=) the m rows of the kept assignments, expert-sorted.
  void dispatch(T* xs, const T* m) const;
  // ys[R,C] (=) grouped SwiGLU of xs[R,C] (layout as grouped_swiglu_forward); saves the
  // activations inside this object for experts_backward.
  void experts_forward(T* ys, const T* xs, const int32_t* counts, int num_experts, const T* w1,
                       const T* w3, const T* w2);
  // out[N,C] (+=) row_gate[r] * ys[r,:] added to token row_token[r].
  void combine(T* out, const T* ys) const;
  // out[N,C] (=) sum over the S shared experts of SwiGLU_s(m) (zeros when S == 0); N of the
  // last route().
  void shared_forward(T* out, const T* m, const MoeWeights<T>& w);

  // dys[A,C] (=) row_gate * dout rows; keeps the gate gradients for route_backward.
  // ys[A,C]: the expert outputs combine() received.
  void combine_backward(T* dys, const T* dout, const T* ys);
  // dxs[R,C] (=); dw1, dw3, dw2 (+=). Same xs, counts and weights as experts_forward.
  void experts_backward(T* dxs, T* dw1, T* dw3, T* dw2, const T* dys, const T* xs,
                        const int32_t* counts, int num_experts, const T* w1, const T* w3,
                        const T* w2);
  // dm[N,C] (+=) scatter-add of dxs[A,C] rows to their tokens.
  void dispatch_backward(T* dm, const T* dxs) const;
  // dm[N,C] (+=), drouter[C,E] (+=): through the gates (after combine_backward), the aux loss
  // and the z-loss.
  void route_backward(T* dm, T* drouter, const T* m, const T* router, const LossScale& s);
  // dm[N,C] (=) from the shared experts (zeros when S == 0); shared weight gradients in g (+=).
  void shared_backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m,
                       const MoeWeights<T>& w);

 private:
  void build_layout(MoeStats* stats);

  MoeDims d_;
  int seq_len_ = 0, N_ = 0;  // shape of the last route()
  int A_ = 0;                // kept assignments of the last route()
  int R_ = 0;                // rows of the last experts_forward()

  // Saved by route() (sizes grown, never shrunk: no allocation once the largest micro-batch
  // has been seen).
  std::vector<T> logits_;           // [N,E]
  std::vector<T> probs_;            // [N,E]
  std::vector<T> lse_;              // [N]
  std::vector<int32_t> topk_;       // [N,K]
  std::vector<T> gates_;            // [N,K]
  std::vector<double> grp_frac_;    // [G,E] f_i of each balance group
  std::vector<int32_t> sel_;        // [N*K] slots (n*K+j) grouped by expert; route scratch
  std::vector<int32_t> sel_off_;    // [E+1]
  std::vector<int32_t> counts_;     // [E] kept rows per expert
  std::vector<int32_t> row_token_;  // [A]
  std::vector<int32_t> row_slot_;   // [A] n*K+j of each row (where its gate lives)
  std::vector<T> row_gate_;         // [A]
  // Saved by the expert stages.
  std::vector<T> xs_, ys_;         // [A,C] dispatched inputs and expert outputs (forward())
  std::vector<T> h1_, h3_, h_;     // [R,F] routed expert activations
  std::vector<T> sh1_, sh3_, sh_;  // [S,N,F] shared expert activations
  // Backward scratch.
  std::vector<T> dys_, dxs_;         // [A,C]
  std::vector<T> dh_;                // [2*max(R,N),F]
  std::vector<T> drow_gate_;         // [A] gate gradient of each row
  std::vector<T> dgates_;            // [N,K] gate gradients (0 for dropped assignments)
  std::vector<T> dprobs_, dlogits_;  // [N,E]
  std::vector<T> dlse_;              // [N]
};

}  // namespace sy

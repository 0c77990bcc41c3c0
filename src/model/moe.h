// One Mixture-of-Experts feed-forward layer on the CPU (SPEC section 1), forward and backward,
// split into the stages that expert parallelism pulls apart:
//
//   route    : router logits z = m Wr, p = softmax(z) or sigmoid(z), top-k of p + b (inside
//              the token's best expert groups with moe.route_groups), gates, capacity (which
//              assignments each expert keeps), aux and z losses — over all N tokens of the
//              micro-batch, identically on every tensor-parallel rank
//   move     : this rank's token rows (its tensor-parallel slice of the micro-batch) go, with
//              their K gates, to the expert-parallel ranks holding their experts (one row per
//              destination rank, comm::TokenExchange), and with etp > 1 are all-gathered over
//              the expert-tensor-parallel group; on one rank the rows are the tokens themselves
//   layout   : the local experts' assignments among those rows, expert-sorted (experts
//              contiguous, inside an expert by row)
//   dispatch : gather the assigned rows into the expert-sorted buffer
//   experts  : one grouped pass of SwiGLU experts over the expert-sorted rows
//   combine  : weight each expert output by its gate and add it to its row
//   move back: rows return (reduce-scatter over etp, combine over ep: a sum per token) and are
//              added to the output; with tp > 1 the outputs are all-reduced over tp
//
// plus the always-on shared experts (their hidden dimension split over tp). The backward mirrors
// it: combine's backward is a dispatch of the gate-weighted output gradient, dispatch's backward
// a scatter-add, and the exchange's dispatch and combine swap roles (they are adjoint). The gate
// gradients travel back with the row gradients as K extra columns; each (token, slot) gets its
// value from exactly one rank (zeros elsewhere), so the sums that move them back are exact.
//
// Letters: B sequences, T positions, N = B*T tokens, C d_model, E experts, K top-k,
// F expert hidden (Fl = F/etp held here), S shared experts (Fs = F/tp held here),
// L = E/ep local experts, M rows handed to the local experts, A their kept assignments.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/router_rule.h"
#include "src/config/config.h"

namespace sy::comm {
class Comm;
class TokenExchange;
class Watchdog;
struct ExchangeHandle;
}  // namespace sy::comm

namespace sy {

// Per-token and per-group loss weights of one micro-batch inside the global batch, so that the
// sum of the micro-batches' weighted losses is exactly the SPEC loss of the global batch.
struct LossScale {
  double token_weight = 1.0;  // 1 / (tokens in the global batch): lm and z-loss terms
  double group_weight = 1.0;  // 1 / (balance groups in the global batch): aux term
};

// Views into a flat parameter (or gradient) buffer: this rank's parts (SPEC section 5 layouts).
template <class T>
struct MoeWeights {
  T* router = nullptr;  // [C,E]
  T* bias = nullptr;    // [E]   (never receives a gradient)
  T* w1 = nullptr;      // [L,C,Fl]
  T* w3 = nullptr;      // [L,C,Fl]
  T* w2 = nullptr;      // [L,Fl,C]
  T* sw1 = nullptr;     // [S,C,Fs] (null when S == 0)
  T* sw3 = nullptr;     // [S,C,Fs]
  T* sw2 = nullptr;     // [S,Fs,C]
};

// What one forward adds to the loss, already multiplied by the LossScale weights, so summing
// over micro-batches gives the layer's aux_l and zloss_l of SPEC section 1.
struct MoeLoss {
  double aux = 0.0;
  double z = 0.0;
};

// Routing counts of one forward over the whole micro-batch (for metrics and the aux-loss-free
// bias update).
struct MoeStats {
  std::vector<int64_t> selected;  // [E] assignments selected per expert, before capacity
  std::vector<int64_t> kept;      // [E] assignments accepted per expert, after capacity
  int64_t dropped = 0;            // assignments dropped by capacity
};

// A routed micro-batch slot by slot, what two implementations must agree on to route alike
// (the GPU tests compare them): the expert each (token, k) slot selected, and the same with -1
// where the capacity dropped the slot.
struct SlotRouting {
  std::vector<int32_t> selected, kept;  // [N*K] each
};

struct MoeDims {
  int C = 0, E = 0, K = 0, F = 0, S = 0;
  bool norm_topk = true;
  bool has_capacity = false;   // false = dropless
  double capacity_factor = 0;  // used when has_capacity
  double aux_coeff = 0, z_coeff = 0;
  AuxScope aux_scope = AuxScope::kSequence;
  // The rest of the router's rule (SPEC section 1): the scores (under sigmoid the aux loss's P_i
  // averages p_i / sum_j p_j and there is no z-loss), the gate scale, and group-limited
  // selection over route_groups groups (R, resolved: never `nodes`; 1 = off) keeping
  // route_groups_topk (M) of them.
  Score score = Score::kSoftmax;
  double gate_scale = 1.0;
  int route_groups = 1, route_groups_topk = 1;
  // This rank's shares (0 = all of it, the one-rank case).
  int L = 0;   // local experts (E / ep)
  int Fl = 0;  // routed expert hidden held here (F / etp)
  int Fs = 0;  // shared expert hidden held here (F / tp)
  int local_experts() const { return L > 0 ? L : E; }
  int expert_hidden() const { return Fl > 0 ? Fl : F; }
  int shared_hidden() const { return Fs > 0 ? Fs : F; }
  RouterRule router_rule() const {
    return {score == Score::kSigmoid, norm_topk, gate_scale, route_groups, route_groups_topk};
  }
};
// One rank's dims for a layout with the given sizes (1, 1, 1: the whole layer). A config with
// `moe.route_groups: nodes` must have been resolved for its layout first
// (resolve_route_groups), except on one EP rank, where it means one group.
MoeDims moe_dims(const Config& cfg, int tp = 1, int ep = 1, int etp = 1);

// Assignments one expert accepts from a routing group of num_tokens tokens:
// ceil(c * num_tokens * K / E), or num_tokens when dropless (an expert is chosen at most once
// per token).
int64_t moe_expert_capacity(const MoeDims& d, int num_tokens);

// The communicators a layer moves rows over; every pointer may be null (a group of one).
struct MoeParallel {
  const comm::Comm* tp = nullptr;           // token slices; outputs all-reduced
  const comm::Comm* etp = nullptr;          // rows all-gathered, outputs reduce-scattered
  comm::TokenExchange* exchange = nullptr;  // the expert-parallel group
  comm::Watchdog* watchdog = nullptr;
};

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
  explicit MoeLayer(const MoeDims& dims, const MoeParallel& par = {});
  const MoeDims& dims() const { return d_; }

  // out[N,C] (=) MoE(m[N,C]) for B sequences of T_ tokens (N = B*T_; the micro-batch is the
  // routing group for capacity). Saves what backward needs inside this object. With tp > 1,
  // m must be the same on every tp rank and out is (the same on every tp rank).
  MoeLoss forward(T* out, const T* m, int B, int T_, const MoeWeights<T>& w, const LossScale& s,
                  MoeStats* stats);

  // dm[N,C] (=); parameter gradients in g (+=). Must follow the forward of the same micro-batch.
  // With tp > 1, dout must be the same on every tp rank; dm comes out the same on every tp
  // rank, while the router gradient is this rank's PARTIAL sum (its token slice): the gradient
  // reduction sums it over tp (TpMode::kPartialGrad).
  void backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m, const MoeWeights<T>& w,
                const LossScale& s);

  // Under an expert placement (src/placement/placement.h): slots[E], the exchange position (EP
  // rank * L + local index) of each logical expert. Routing, losses and stats keep logical ids;
  // only the exchange sees slots. Empty (the default): expert e is slot e.
  void set_expert_slots(std::vector<int32_t> slots);
  // The top-k of the last route() (or forward()): [num_tokens() * K] logical experts, selected
  // before capacity (the co-activation counts of src/train/coactivation.h read them).
  const int32_t* topk() const { return topk_.data(); }
  int num_tokens() const { return N_; }
  // The last route()'s scores p[num_tokens(), E] (tests: tests/margins measures near-ties).
  const T* probs() const { return probs_.data(); }
  // The last route()'s slots, selected and kept (tests).
  SlotRouting slot_routing() const {
    const auto n = static_cast<long>(N_) * d_.K;
    return {{topk_.begin(), topk_.begin() + n}, {kept_.begin(), kept_.begin() + n}};
  }

  // ---- The one-rank stages (no tp, ep or etp), for tests that compose them by hand ----

  // Router, top-k, gates, capacity, and (without an exchange) the local layout over all N
  // tokens; router [C,E], bias [E] (may be null). Returns the weighted aux and z terms; fills
  // stats when non-null.
  MoeLoss route(const T* m, int B, int T_, const T* router, const T* bias, const LossScale& s,
                MoeStats* stats);
  // The local layout of the last route() (or forward()):
  int num_rows() const { return A_; }                              // A
  const int32_t* expert_counts() const { return counts_.data(); }  // [L] rows per local expert
  const int32_t* row_token() const { return row_of_.data(); }      // [A] row (token) of each
  const T* row_gate() const { return row_gate_.data(); }           // [A] gate of each

  // xs[A,C] (=) the rows[M,C] of the kept assignments, expert-sorted.
  void dispatch(T* xs, const T* rows) const;
  // ys[R,C] (=) grouped SwiGLU of xs[R,C] (layout as grouped_swiglu_forward); saves the
  // activations inside this object for experts_backward.
  void experts_forward(T* ys, const T* xs, const int32_t* counts, int num_experts, const T* w1,
                       const T* w3, const T* w2);
  // out[M,C] (+=) row_gate[a] * ys[a,:] added to row row_token[a].
  void combine(T* out, const T* ys) const;
  // out[N,C] (=) sum over the S shared experts of SwiGLU_s(m) (its Fs share with tp > 1; zeros
  // when S == 0); N of the last route().
  void shared_forward(T* out, const T* m, const MoeWeights<T>& w);

  // dys[A,C] (=) row_gate * dout rows; the gate gradients go to the per-token gate gradient
  // (route_backward's input). ys[A,C]: the expert outputs combine() received.
  void combine_backward(T* dys, const T* dout, const T* ys);
  // dxs[R,C] (=); dw1, dw3, dw2 (+=). Same xs, counts and weights as experts_forward.
  void experts_backward(T* dxs, T* dw1, T* dw3, T* dw2, const T* dys, const T* xs,
                        const int32_t* counts, int num_experts, const T* w1, const T* w3,
                        const T* w2);
  // drows[M,C] (+=) scatter-add of dxs[A,C] rows to their rows.
  void dispatch_backward(T* drows, const T* dxs) const;
  // dm[N,C] (+=), drouter[C,E] (+=): through the gates (after combine_backward), the aux loss
  // and the z-loss, for the tokens of this rank's slice.
  void route_backward(T* dm, T* drouter, const T* m, const T* router, const LossScale& s);
  // dm[N,C] (=) from the shared experts (zeros when S == 0); shared weight gradients in g (+=).
  void shared_backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m,
                       const MoeWeights<T>& w);

 private:
  // Capacity: kept_[N*K] = the expert of each slot, or -1 when dropped.
  void apply_capacity(MoeStats* stats);
  // The local experts' assignments among M rows, from each row's K local expert ids (-1: not
  // here) and K gates: counts_, row_of_, slot_of_, row_gate_, A_.
  void build_layout(const int32_t* row_experts, const T* row_gates, int M);
  // The routed part for this rank's rows (moe_parallel.cpp). forward: out[n0..n1) (+=) routed
  // output; backward: dm[n0..n1) (+=) and dgates_ of the slice (=).
  void routed_forward(T* out, const T* m, const MoeWeights<T>& w);
  void routed_backward(T* dm, const MoeWeights<T>& g, const T* dout, const MoeWeights<T>& w);
  bool moves_rows() const;                   // anything but the one-rank path
  void sum_over_tp(T* x, const char* what);  // x[N,C] (=) its sum over tp (a no-op for tp = 1)
  // etp > 1: v (=) every etp rank's rows (M of `width` elements in all, etp-rank order) from
  // this rank's; and back, v's first rows (=) this rank's rows summed over the etp ranks.
  template <class V>
  void etp_gather(V& v, int width, int M, const char* what);
  void etp_sum_to_owner(std::vector<T>& v, int width, int M, const char* what);

  MoeDims d_;
  MoeParallel par_;
  int seq_len_ = 0, N_ = 0;  // shape of the last route()
  int n0_ = 0, n1_ = 0;      // this rank's token slice [n0, n1) of the micro-batch
  int M_ = 0;                // rows given to the local experts (all-gathered over etp)
  int A_ = 0;                // kept local assignments among them
  int R_ = 0;                // rows of the last experts_forward()

  // Saved by route() (sizes grown, never shrunk: no allocation once the largest micro-batch
  // has been seen).
  std::vector<T> logits_;         // [N,E]
  std::vector<T> probs_;          // [N,E]
  std::vector<T> lse_;            // [N]
  std::vector<int32_t> topk_;     // [N,K]
  std::vector<T> gates_;          // [N,K]
  std::vector<int32_t> kept_;     // [N,K] expert of a kept slot, -1 when dropped
  std::vector<double> grp_frac_;  // [G,E] f_i of each balance group
  std::vector<int32_t> sel_;      // [N*K] slots (n*K+j) grouped by expert; capacity scratch
  std::vector<int32_t> sel_off_;  // [E+1]
  std::vector<int32_t> counts_;   // [L] kept rows per local expert
  std::vector<int32_t> row_of_;   // [A] the row of each assignment
  std::vector<int32_t> slot_of_;  // [A] row*K+j of each assignment (where its gate lives)
  std::vector<T> row_gate_;       // [A]
  // [N] sum_j p_{n,j} under sigmoid scores (the aux loss's normaliser), 1 under softmax
  std::vector<double> score_sum_;
  // Rows handed to the local experts when they moved (moe_parallel.cpp).
  // shared_ptr: its deleter is bound where the handle is made, so this header needs no
  // definition of comm::ExchangeHandle.
  std::shared_ptr<comm::ExchangeHandle> handle_;
  std::vector<T> send_, recv_;      // [rows, C+K] token rows with their gates
  std::vector<T> rows_x_, rows_g_;  // [M,C], [M,K]
  std::vector<int32_t> rows_e_;     // [M,K] local expert of each slot, -1 when elsewhere
  std::vector<int64_t> etp_rows_;   // [etp] rows each etp rank contributed
  std::vector<T> etp_scratch_;      // this rank's rows of a reduce-scatter
  std::vector<T> yrows_;            // [M,C] / [M,C+K] weighted outputs, row gradients

  // Expert placement: the exchange slot of each expert [E] (empty: identity), and this slice's
  // kept experts as slots [Ns,K].
  std::vector<int32_t> expert_slot_, slot_e_;

  // Saved by the expert stages.
  std::vector<T> xs_, ys_;         // [A,C] dispatched inputs and expert outputs (forward())
  std::vector<T> h1_, h3_, h_;     // [R,Fl] routed expert activations
  std::vector<T> sh1_, sh3_, sh_;  // [S,N,Fs] shared expert activations
  // Backward scratch.
  std::vector<T> dys_, dxs_;         // [A,C]
  std::vector<T> dh_;                // [2*max(R,N),F]
  std::vector<T> drow_gate_;         // [A] gate gradient of each assignment
  std::vector<T> dgates_;            // [N,K] gate gradients (0 for dropped assignments)
  std::vector<T> dprobs_, dlogits_;  // [N,E]
  std::vector<T> dlse_;              // [N]
};

}  // namespace sy

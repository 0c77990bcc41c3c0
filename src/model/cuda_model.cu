// The single-GPU model (see cuda_model.h). Mirrors src/model/model.cpp step for step; the CPU
// Model<float> is the reference the GPU test compares 10 training steps against.
#include "src/model/cuda_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/init.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/optim.h"
#include "kernels/cuda/phase_timer.h"
#include "src/core/error.h"
#include "src/model/cuda_moe.h"
#include "src/model/init.h"
#include "src/optim/optim.h"

#if defined(SWITCHYARD_HAVE_NCCL)
#include "comm/nccl.h"
#endif

namespace sy {

using cuda::DeviceBuffer;
using cuda::Grad;

struct CudaModel::Impl {
  virtual ~Impl() = default;
  virtual const ParamTable& table() const = 0;
  virtual void init_params(uint64_t seed) = 0;
  virtual void upload_params(const std::vector<float>& host) = 0;
  virtual void download_params(std::vector<float>& into) const = 0;
  virtual std::vector<float> download_grads() const = 0;
  virtual void download_moments(std::vector<float>& m, std::vector<float>& v) const = 0;
  virtual void upload_moments(const std::vector<float>& m, const std::vector<float>& v) = 0;
  virtual void update_router_biases(const std::vector<int64_t>& selected, double rate) = 0;
  virtual int64_t update_overflow() = 0;
  virtual void zero_grads() = 0;
  virtual LossParts forward(const int32_t* tokens, int B, const LossScale& s,
                            std::vector<MoeStats>* stats) = 0;
  virtual void backward() = 0;
  virtual double optimizer_step(double lr, double grad_clip, double weight_decay,
                                const CudaModel::TotalSq& total_sq) = 0;
  virtual int64_t step_count() const = 0;
  virtual void set_step_count(int64_t n) = 0;
  virtual float* device_grads() = 0;
  virtual cudaStream_t stream() const = 0;
  virtual void set_phase_timer(cuda::PhaseTimer* timer) = 0;
  virtual std::vector<SlotRouting> slot_routing() const = 0;
  virtual const std::vector<int32_t>& topk(int layer) const = 0;
};

namespace {

template <class T>
class ModelImpl final : public CudaModel::Impl {
 public:
  ModelImpl(const Config& cfg, const ShardLayout& layout, comm::GpuExchange* exchange,
            comm::NcclComm* tp)
      : cfg_(cfg),
        table_(make_param_table(cfg, layout)),
        L_(static_cast<int>(cfg.model.n_layers)),
        T_(static_cast<int>(cfg.model.seq_len)),
        C_(static_cast<int>(cfg.model.d_model)),
        NH_(static_cast<int>(cfg.model.n_heads)),
        V_(static_cast<int>(cfg.model.vocab_size)),
        Ct_(C_ / layout.tp),
        NHt_(NH_ / layout.tp),
        tp_(tp),
        cublas_(stream_.get()),
        rope_(T_, C_ / NH_, cfg.model.rope_theta) {
    const size_t P = table_.total_numel();
    params_.resize(P);
    grads_.resize(P);
    m_.resize(P);
    v_.resize(P);
    if constexpr (!std::is_same_v<T, float>) params_t_.resize(P);
    for (auto* b : {&params_, &grads_, &m_, &v_}) b->fill_bytes_async(0, s());
    norm_.resize(table_.specs().size());
    norm_scratch_.resize(cuda::kNormBlocks);
    nonfinite_.resize(1);
    const MoeDims dims = moe_dims(cfg, layout.tp, layout.ep, 1);
    CudaMoeParallel par;
    par.exchange = exchange;
    par.tp = tp;
    par.tp_rank = layout.tp_rank;
    par.tp_size = layout.tp;
    par.chunks = static_cast<int>(cfg.moe.overlap_chunks);
    for (int l = 0; l < L_; ++l) moe_.emplace_back(dims, par);
    acts_.resize(static_cast<size_t>(L_));
    sync();
  }
  // The members are freed after this body: a copy still queued from h_bias_ (the last step's
  // router-bias update) must be done before its page-locked memory goes. Never throws.
  ~ModelImpl() override { (void)cudaStreamSynchronize(stream_.get()); }
  ModelImpl(const ModelImpl&) = delete;
  ModelImpl& operator=(const ModelImpl&) = delete;

  const ParamTable& table() const override { return table_; }

  void init_params(uint64_t seed) override {
    cuda_init_params(params_.data(), table_, seed, s());
    refresh_compute_copy();
    sync();
  }

  void update_router_biases(const std::vector<int64_t>& selected, double rate) override {
    const int E = static_cast<int>(cfg_.moe.num_experts);
    SY_CHECK(selected.size() == static_cast<size_t>(L_) * E,
             "update_router_biases: " << selected.size() << " counts for " << L_ << " x " << E);
    h_bias_.resize(static_cast<size_t>(L_) * E);
    for (int l = 0; l < L_; ++l)  // the fp32 master is what the router reads (no compute copy)
      CUDA_CHECK(cudaMemcpyAsync(h_bias_.data() + static_cast<size_t>(l) * E, pf(lp(l, "moe/bias")),
                                 sizeof(float) * E, cudaMemcpyDeviceToHost, s()));
    sync();
    for (int l = 0; l < L_; ++l) {
      const size_t o = static_cast<size_t>(l) * E;
      bias_nonfinite_ += update_router_bias(h_bias_.data() + o, selected.data() + o, E, rate);
      // page-locked source, stream-ordered: the next read of h_bias_ comes after this copy
      CUDA_CHECK(cudaMemcpyAsync(pf(lp(l, "moe/bias")), h_bias_.data() + o, sizeof(float) * E,
                                 cudaMemcpyHostToDevice, s()));
    }
  }

  void upload_params(const std::vector<float>& host) override {
    SY_CHECK(host.size() == table_.total_numel(),
             "upload_params: " << host.size() << " values for " << table_.total_numel());
    CUDA_CHECK(cudaMemcpyAsync(params_.data(), host.data(), host.size() * sizeof(float),
                               cudaMemcpyHostToDevice, s()));
    refresh_compute_copy();
    sync();
  }
  void download_params(std::vector<float>& into) const override {
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    params_.download_into(into);
  }
  std::vector<float> download_grads() const override {
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    return grads_.download();
  }
  void download_moments(std::vector<float>& m, std::vector<float>& v) const override {
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    m_.download_into(m);
    v_.download_into(v);
  }
  void upload_moments(const std::vector<float>& m, const std::vector<float>& v) override {
    for (const auto* h : {&m, &v})
      SY_CHECK(h->size() == table_.total_numel(),
               "upload_moments: " << h->size() << " values for " << table_.total_numel());
    CUDA_CHECK(cudaMemcpyAsync(m_.data(), m.data(), m.size() * sizeof(float),
                               cudaMemcpyHostToDevice, s()));
    CUDA_CHECK(cudaMemcpyAsync(v_.data(), v.data(), v.size() * sizeof(float),
                               cudaMemcpyHostToDevice, s()));
    sync();  // the host vectors may go away after this returns
  }
  void zero_grads() override { grads_.fill_bytes_async(0, s()); }
  int64_t step_count() const override { return step_count_; }
  void set_step_count(int64_t n) override { step_count_ = n; }
  float* device_grads() override { return grads_.data(); }
  cudaStream_t stream() const override { return stream_.get(); }
  std::vector<SlotRouting> slot_routing() const override {
    std::vector<SlotRouting> out;
    for (const auto& layer : moe_) out.push_back(layer.slot_routing());
    return out;
  }
  const std::vector<int32_t>& topk(int layer) const override {
    return moe_[static_cast<size_t>(layer)].topk();
  }
  void set_phase_timer(cuda::PhaseTimer* timer) override {
    timer_ = timer;
    for (auto& layer : moe_) layer.set_phase_timer(timer);
  }

  LossParts forward(const int32_t* tokens, int B, const LossScale& scale,
                    std::vector<MoeStats>* stats) override {
    ensure_activations(B);
    scale_ = scale;
    const int N = B * T_, C = C_;
    const long NC = static_cast<long>(N) * C;
    h_inputs_.resize(N);
    h_targets_.resize(N);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T_; ++t) {
        h_inputs_[b * T_ + t] = tokens[b * (T_ + 1) + t];
        h_targets_[b * T_ + t] = tokens[b * (T_ + 1) + t + 1];
      }
    for (const std::vector<int32_t>* ids : {&h_inputs_, &h_targets_})  // the GPU indexes by both
      for (int32_t tok : *ids)
        SY_CHECK(tok >= 0 && tok < V_, "token " << tok << " outside the vocabulary of " << V_);
    mark(StepPhase::kEmbedding);
    CUDA_CHECK(cudaMemcpyAsync(inputs_.data(), h_inputs_.data(), sizeof(int32_t) * N,
                               cudaMemcpyHostToDevice, s()));
    CUDA_CHECK(cudaMemcpyAsync(targets_.data(), h_targets_.data(), sizeof(int32_t) * N,
                               cudaMemcpyHostToDevice, s()));
    if (stats) stats->resize(static_cast<size_t>(L_));

    const double eps = cfg_.model.norm_eps;
    LossParts out;
    cuda::embedding_forward(acts_[0].x_in.data(), inputs_.data(), pf("model/embed"), N, C, s());
    for (int l = 0; l < L_; ++l) {
      Acts& a = acts_[l];
      // x_mid = x_in + Attn(RMSNorm(x_in))
      mark(StepPhase::kNorms);
      cuda::rmsnorm_forward(a.a.data(), a.a_rstd.data(), a.x_in.data(), pf(lp(l, "attn_norm")), N,
                            C, eps, s());
      // this rank's NHt heads (Ct = C/tp columns of each of q, k, v) give a partial wo product
      mark(StepPhase::kAttnGemms);
      cuda::matmul_forward(a.qkv.data(), a.a.data(), wt(lp(l, "attn/wqkv")), N, C, 3 * Ct_, cb());
      mark(StepPhase::kRope);
      cuda::rope_forward(a.qkv_rot.data(), a.qkv.data(), rope_, B, T_, Ct_, NHt_, s());
      mark(StepPhase::kAttnCore);
      cuda::attention_forward(a.atty.data(), a.att.data(), att_scratch_.data(), a.qkv_rot.data(), B,
                              T_, Ct_, NHt_, cb(), s());
      mark(StepPhase::kAttnGemms);
      cuda::matmul_forward(a.x_mid.data(), a.atty.data(), wt(lp(l, "attn/wo")), N, Ct_, C, cb());
      sum_over_tp(a.x_mid.data(), NC, "the attention output");
      mark(StepPhase::kNorms);
      cuda::residual_forward(a.x_mid.data(), a.x_mid.data(), a.x_in.data(), NC, s());
      // x_out = x_mid + MoE(RMSNorm(x_mid))
      cuda::rmsnorm_forward(a.m.data(), a.m_rstd.data(), a.x_mid.data(), pf(lp(l, "moe_norm")), N,
                            C, eps, s());
      const MoeLoss ml =
          moe_[l].forward(a.moe_out.data(), a.m.data(), B, T_, moe_weights(l), scale, s(), cb());
      out.aux += ml.aux;
      out.z += ml.z;
      if (stats) (*stats)[l] = moe_[l].stats();
      T* x_next = l + 1 < L_ ? acts_[l + 1].x_in.data() : x_out_.data();
      mark(StepPhase::kNorms);
      cuda::residual_forward(x_next, a.x_mid.data(), a.moe_out.data(), NC, s());
    }
    // logits[N,V] = RMSNorm(x_out) @ Head^T, then softmax in place
    cuda::rmsnorm_forward(xf_.data(), xf_rstd_.data(), x_out_.data(), pf("model/final_norm"), N, C,
                          eps, s());
    mark(StepPhase::kHeadLoss);
    cuda::gemm<T, T>(cublas_.get(), false, true, N, V_, C, 1.0f, xf_.data(), C, wt(head_name()), C,
                     0.0f, probs_.data(), V_);
    cuda::crossentropy_forward(losses_.data(), probs_.data(), probs_.data(), targets_.data(), N, V_,
                               s());
    h_losses_.resize(N);
    CUDA_CHECK(cudaMemcpyAsync(h_losses_.data(), losses_.data(), sizeof(float) * N,
                               cudaMemcpyDeviceToHost, s()));
    mark(StepPhase::kHostWait);
    sync();
    double lm = 0.0;
    for (float x : h_losses_) lm += static_cast<double>(x);
    out.lm = lm * scale.token_weight;
    return out;
  }

  void backward() override {
    const int B = B_, N = B * T_, C = C_;
    const long NC = static_cast<long>(N) * C;
    // lm = token_weight * sum_n losses[n]
    mark(StepPhase::kHeadLoss);
    cuda::fill(dlosses_.data(), static_cast<float>(scale_.token_weight), N, s());
    cuda::crossentropy_backward(probs_.data(), probs_.data(), targets_.data(), dlosses_.data(), N,
                                V_, s());
    const T* dlogits = probs_.data();
    // dxf[N,C] = dlogits[N,V] @ Head[V,C];  dHead[V,C] += dlogits^T @ xf
    cuda::gemm<T, T>(cublas_.get(), false, false, N, C, V_, 1.0f, dlogits, V_, wt(head_name()), C,
                     0.0f, dtmp_.data(), C);
    cuda::gemm<T, float>(cublas_.get(), true, false, V_, C, N, 1.0f, dlogits, V_, xf_.data(), C,
                         1.0f, gf(head_name()), C);
    mark(StepPhase::kNorms);
    cuda::rmsnorm_backward(dx_.data(), gf("model/final_norm"), dtmp_.data(), x_out_.data(),
                           pf("model/final_norm"), xf_rstd_.data(), N, C, rms_dg_scratch_.data(),
                           s());
    for (int l = L_ - 1; l >= 0; --l) {
      Acts& a = acts_[l];
      // MoE block; dx_ is d/dx_out, becomes d/dx_mid
      moe_[l].backward(dtmp_.data(), moe_grads(l), dx_.data(), a.m.data(), moe_weights(l), scale_,
                       s(), cb());
      mark(StepPhase::kNorms);
      cuda::rmsnorm_backward(dtmp2_.data(), gf(lp(l, "moe_norm")), dtmp_.data(), a.x_mid.data(),
                             pf(lp(l, "moe_norm")), a.m_rstd.data(), N, C, rms_dg_scratch_.data(),
                             s());
      cuda::residual_forward(dx_.data(), dx_.data(), dtmp2_.data(), NC, s());
      // attention block; dx_ becomes d/dx_in
      // the gradient reaching the (replicated) norm is this rank's heads' share: summed over tp
      mark(StepPhase::kAttnGemms);
      cuda::matmul_backward(dtmp_.data(), gf(lp(l, "attn/wo")), dx_.data(), a.atty.data(),
                            wt(lp(l, "attn/wo")), N, Ct_, C, cb());
      mark(StepPhase::kAttnCore);
      cuda::attention_backward(dqkv_.data(), att_scratch_.data(), dtmp_.data(), a.qkv_rot.data(),
                               a.att.data(), B, T_, Ct_, NHt_, cb(), s());
      mark(StepPhase::kRope);
      cuda::rope_backward(dqkv2_.data(), dqkv_.data(), rope_, B, T_, Ct_, NHt_, s());
      mark(StepPhase::kAttnGemms);
      cuda::matmul_backward(dtmp_.data(), gf(lp(l, "attn/wqkv")), dqkv2_.data(), a.a.data(),
                            wt(lp(l, "attn/wqkv")), N, C, 3 * Ct_, cb());
      sum_over_tp(dtmp_.data(), NC, "the attention input gradient");
      mark(StepPhase::kNorms);
      cuda::rmsnorm_backward(dtmp2_.data(), gf(lp(l, "attn_norm")), dtmp_.data(), a.x_in.data(),
                             pf(lp(l, "attn_norm")), a.a_rstd.data(), N, C, rms_dg_scratch_.data(),
                             s());
      cuda::residual_forward(dx_.data(), dx_.data(), dtmp2_.data(), NC, s());
    }
    mark(StepPhase::kEmbedding);
    embedding_backward_.run(gf("model/embed"), dx_.data(), inputs_.data(), N, C, s());
  }

  double optimizer_step(double lr, double grad_clip, double weight_decay,
                        const CudaModel::TotalSq& total_sq) override {
    // Each parameter's squared sum; the dense ones that another tp rank counts (in_norm false:
    // the copies of a replicated one) are left out.
    const std::vector<ParamSpec>& specs = table_.specs();
    mark(StepPhase::kOptimizer);
    for (size_t i = 0; i < specs.size(); ++i)
      cuda::grad_sq_sum(norm_.data() + i, norm_scratch_.data(), grads_.data() + specs[i].offset,
                        specs[i].numel, s());
    h_norms_.resize(specs.size());
    CUDA_CHECK(cudaMemcpyAsync(h_norms_.data(), norm_.data(), sizeof(double) * specs.size(),
                               cudaMemcpyDeviceToHost, s()));
    mark(StepPhase::kHostWait);
    sync();
    double dense_sq = 0.0, expert_sq = 0.0;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!specs[i].in_norm) continue;
      (specs[i].group == ParamGroup::kDense ? dense_sq : expert_sq) += h_norms_[i];
    }
    const double grad_norm =
        std::sqrt(total_sq ? total_sq(dense_sq, expert_sq) : dense_sq + expert_sq);
    if (!std::isfinite(grad_norm)) return grad_norm;
    const double scale = clip_factor(grad_norm, grad_clip);
    mark(StepPhase::kOptimizer);
    CUDA_CHECK(cudaMemsetAsync(nonfinite_.data(), 0, sizeof(unsigned long long), s()));
    bias_nonfinite_ = 0;
    ++step_count_;
    const double t = static_cast<double>(step_count_);
    const double bc1 = 1.0 - std::pow(AdamW::kBeta1, t), bc2 = 1.0 - std::pow(AdamW::kBeta2, t);
    for (const ParamSpec& spec : table_.specs()) {
      if (spec.kind == ParamKind::kBias) continue;  // SPEC 3: the bias follows its sign rule
      const double wd = spec.kind == ParamKind::kMatrix ? weight_decay : 0.0;
      const size_t o = spec.offset;
      cuda::adamw_step(params_.data() + o, grads_.data() + o, m_.data() + o, v_.data() + o,
                       spec.numel, lr, wd, AdamW::kBeta1, AdamW::kBeta2, AdamW::kEps, bc1, bc2,
                       scale, nonfinite_.data(), s());
    }
    refresh_compute_copy();
    return grad_norm;
  }

  int64_t update_overflow() override {
    unsigned long long adamw = 0;
    CUDA_CHECK(
        cudaMemcpyAsync(&adamw, nonfinite_.data(), sizeof adamw, cudaMemcpyDeviceToHost, s()));
    sync();
    return static_cast<int64_t>(adamw) + bias_nonfinite_;
  }

 private:
  struct Acts {
    DeviceBuffer<T> x_in, a, qkv, qkv_rot, att, atty, x_mid, m, moe_out;
    DeviceBuffer<float> a_rstd, m_rstd;
  };

  cudaStream_t s() const { return stream_.get(); }
  cublasHandle_t cb() const { return cublas_.get(); }
  void mark(StepPhase p) {
    if (timer_) timer_->mark(static_cast<int>(p), s());
  }
  void sync() const { CUDA_CHECK(cudaStreamSynchronize(stream_.get())); }
  static std::string lp(int l, const char* leaf) { return layer_param_name(l, leaf); }
  std::string head_name() const { return cfg_.model.tie_embeddings ? "model/embed" : "model/head"; }
  float* pf(const std::string& name) { return params_.data() + table_.at(name).offset; }
  float* gf(const std::string& name) { return grads_.data() + table_.at(name).offset; }
  // The compute copy (the master itself in fp32 mode).
  const T* wt(const std::string& name) {
    const size_t o = table_.at(name).offset;
    if constexpr (std::is_same_v<T, float>)
      return params_.data() + o;
    else
      return params_t_.data() + o;
  }
  const T* wt_or_null(const std::string& name) {
    return table_.contains(name) ? wt(name) : nullptr;
  }
  float* gf_or_null(const std::string& name) { return table_.contains(name) ? gf(name) : nullptr; }
  void refresh_compute_copy() {
    if constexpr (!std::is_same_v<T, float>)
      cuda::convert(params_t_.data(), params_.data(), static_cast<long>(params_.size()), s());
  }

  CudaMoeWeights<T> moe_weights(int l) {
    CudaMoeWeights<T> w;
    w.router = wt(lp(l, "moe/router"));
    w.bias = pf(lp(l, "moe/bias"));
    w.w1 = wt(lp(l, "moe/w1"));
    w.w3 = wt(lp(l, "moe/w3"));
    w.w2 = wt(lp(l, "moe/w2"));
    w.sw1 = wt_or_null(lp(l, "moe/shared/w1"));
    w.sw3 = wt_or_null(lp(l, "moe/shared/w3"));
    w.sw2 = wt_or_null(lp(l, "moe/shared/w2"));
    return w;
  }
  CudaMoeGrads moe_grads(int l) {
    CudaMoeGrads g;
    g.router = gf(lp(l, "moe/router"));
    g.w1 = gf(lp(l, "moe/w1"));
    g.w3 = gf(lp(l, "moe/w3"));
    g.w2 = gf(lp(l, "moe/w2"));
    g.sw1 = gf_or_null(lp(l, "moe/shared/w1"));
    g.sw3 = gf_or_null(lp(l, "moe/shared/w3"));
    g.sw2 = gf_or_null(lp(l, "moe/shared/w2"));
    return g;
  }

  // Grown to the largest B seen (resize never shrinks an allocation).
  void ensure_activations(int B) {
    B_ = B;
    const size_t N = static_cast<size_t>(B) * T_, C = C_;
    const size_t att = static_cast<size_t>(B) * NHt_ * T_ * T_, Ct = Ct_;
    inputs_.resize(N);
    targets_.resize(N);
    for (Acts& a : acts_) {
      for (auto* b : {&a.x_in, &a.a, &a.x_mid, &a.m, &a.moe_out}) b->resize(N * C);
      a.atty.resize(N * Ct);
      a.qkv.resize(3 * N * Ct);
      a.qkv_rot.resize(3 * N * Ct);
      a.att.resize(att);
      a.a_rstd.resize(N);
      a.m_rstd.resize(N);
    }
    att_scratch_.resize(static_cast<size_t>(cuda::attention_backward_scratch(B, T_, Ct_, NHt_)));
    for (auto* b : {&x_out_, &xf_, &dx_, &dtmp_, &dtmp2_}) b->resize(N * C);
    dqkv_.resize(3 * N * Ct);
    dqkv2_.resize(3 * N * Ct);
    xf_rstd_.resize(N);
    rms_dg_scratch_.resize(static_cast<size_t>(cuda::rmsnorm_backward_scratch(B * T_, C_)));
    probs_.resize(N * V_);
    losses_.resize(N);
    dlosses_.resize(N);
  }

  // x[n] (=) its sum over the tp group (a no-op for tp = 1), with a bounded wait.
  void sum_over_tp(T* x, long n, const char* what) {
#if defined(SWITCHYARD_HAVE_NCCL)
    if (!tp_) return;
    tp_->all_reduce_sum(x, x, static_cast<size_t>(n), comm::nccl_type<T>(), s());
    tp_->wait(s(), what);
#else
    (void)x;
    (void)n;
    (void)what;
#endif
  }

  Config cfg_;
  ParamTable table_;
  int L_, T_, C_, NH_, V_;
  int Ct_, NHt_;  // this rank's attention columns (C/tp) and heads (NH/tp)
  comm::NcclComm* tp_;
  std::vector<double> h_norms_;
  cuda::Stream stream_;
  cuda::CublasHandle cublas_;
  cuda::RopeTable rope_;                        // the angles of positions 0..T-1
  DeviceBuffer<float> params_, grads_, m_, v_;  // fp32 master, [P] in table order
  DeviceBuffer<T> params_t_;                    // bf16 compute copy (bf16 mode only)
  DeviceBuffer<double> norm_, norm_scratch_;
  // What the last update left non-finite: AdamW's elements (device), the router biases (host).
  DeviceBuffer<unsigned long long> nonfinite_;
  int64_t bias_nonfinite_ = 0;
  cuda::PinnedBuffer<float> h_bias_;  // [L*E] the biases on their way through the sign rule
  int64_t step_count_ = 0;
  std::vector<CudaMoeLayer<T>> moe_;

  int B_ = 0;
  LossScale scale_;
  std::vector<int32_t> h_inputs_, h_targets_;
  std::vector<float> h_losses_;
  DeviceBuffer<int32_t> inputs_, targets_;
  std::vector<Acts> acts_;
  DeviceBuffer<T> x_out_, xf_, probs_, att_scratch_;
  DeviceBuffer<float> xf_rstd_, losses_, dlosses_;
  DeviceBuffer<float> rms_dg_scratch_;  // the RMSNorm gain gradients' partial sums
  DeviceBuffer<T> dx_, dtmp_, dtmp2_, dqkv_, dqkv2_;
  cuda::EmbeddingBackward embedding_backward_;  // its token sort's scratch
  cuda::PhaseTimer* timer_ = nullptr;           // bench train's; null in training
};

}  // namespace

void cuda_init_params(float* dst, const ParamTable& table, uint64_t seed, cudaStream_t stream) {
  // Runs longer than kChunk are split so that one block per run keeps the GPU busy.
  constexpr size_t kChunk = size_t{1} << 16;
  std::vector<cuda::InitRunDesc> descs;
  for (const InitRun& r : init_runs(table)) {
    const ParamSpec& spec = *r.spec;
    for (size_t at = 0; at < r.count; at += kChunk) {
      cuda::InitRunDesc d;
      d.global = r.global + at;
      d.local = r.local + at;
      d.count = std::min(kChunk, r.count - at);
      d.normal = spec.kind == ParamKind::kMatrix ? 1u : 0u;
      d.stream_id = param_stream_id(spec.name);
      d.init_std = spec.init_std;
      d.value = spec.kind == ParamKind::kGain ? 1.0f : 0.0f;
      descs.push_back(d);
    }
  }
  const DeviceBuffer<cuda::InitRunDesc> d_descs = cuda::to_device(descs);
  CUDA_CHECK(cudaMemsetAsync(dst, 0, sizeof(float) * table.total_numel(), stream));  // padding
  cuda::init_runs(dst, seed, d_descs.data(), descs.size(), stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));  // d_descs is freed on return
}

CudaModel::CudaModel(const Config& cfg, const ShardLayout& layout, comm::GpuExchange* exchange,
                     comm::NcclComm* tp) {
  std::string reason;
  if (cuda::device_count(&reason) == 0)
    throw UsageError("device: cuda needs a usable CUDA GPU: " + reason);
  SY_CHECK(cfg.model.d_model % cfg.model.n_heads == 0 &&
               (cfg.model.d_model / cfg.model.n_heads) % 2 == 0,
           "head dim must be even (RoPE)");
  SY_CHECK(layout.etp == 1, "CudaModel does not split the experts: etp=" << layout.etp);
  SY_CHECK(layout.tp == 1 || tp != nullptr, "CudaModel with tp=" << layout.tp << " needs its comm");
  SY_CHECK(layout.ep == 1 || exchange != nullptr,
           "CudaModel with ep=" << layout.ep << " needs the EP group's exchange");
  if (cfg.train.precision == Precision::kBf16)
    impl_ = std::make_unique<ModelImpl<cuda::bf16>>(cfg, layout, exchange, tp);
  else
    impl_ = std::make_unique<ModelImpl<float>>(cfg, layout, exchange, tp);
}
CudaModel::~CudaModel() = default;

const ParamTable& CudaModel::table() const {
  return impl_->table();
}
void CudaModel::init_params(uint64_t seed) {
  impl_->init_params(seed);
}
void CudaModel::upload_params(const std::vector<float>& host) {
  impl_->upload_params(host);
}
std::vector<float> CudaModel::download_params() const {
  std::vector<float> out;
  impl_->download_params(out);
  return out;
}
void CudaModel::download_params(std::vector<float>& into) const {
  impl_->download_params(into);
}
std::vector<float> CudaModel::download_grads() const {
  return impl_->download_grads();
}
void CudaModel::update_router_biases(const std::vector<int64_t>& selected, double rate) {
  impl_->update_router_biases(selected, rate);
}
void CudaModel::zero_grads() {
  impl_->zero_grads();
}
LossParts CudaModel::forward(const int32_t* tokens, int B, const LossScale& s,
                             std::vector<MoeStats>* stats) {
  return impl_->forward(tokens, B, s, stats);
}
void CudaModel::backward() {
  impl_->backward();
}
int64_t CudaModel::update_overflow() {
  return impl_->update_overflow();
}

double CudaModel::optimizer_step(double lr, double grad_clip, double weight_decay,
                                 const TotalSq& total_sq) {
  return impl_->optimizer_step(lr, grad_clip, weight_decay, total_sq);
}
int64_t CudaModel::step_count() const {
  return impl_->step_count();
}
void CudaModel::set_step_count(int64_t n) {
  impl_->set_step_count(n);
}
void CudaModel::download_moments(std::vector<float>& m, std::vector<float>& v) const {
  impl_->download_moments(m, v);
}
void CudaModel::upload_moments(const std::vector<float>& m, const std::vector<float>& v) {
  impl_->upload_moments(m, v);
}
float* CudaModel::device_grads() {
  return impl_->device_grads();
}
cudaStream_t CudaModel::stream() const {
  return impl_->stream();
}
std::vector<SlotRouting> CudaModel::slot_routing() const {
  return impl_->slot_routing();
}
const std::vector<int32_t>& CudaModel::topk(int layer) const {
  return impl_->topk(layer);
}
void CudaModel::set_phase_timer(cuda::PhaseTimer* timer) {
  impl_->set_phase_timer(timer);
}

}  // namespace sy

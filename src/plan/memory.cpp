#include "src/plan/memory.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>

#include "src/core/error.h"
#include "src/plan/traffic.h"

namespace sy::plan {

namespace {

constexpr double kF = 4;                                          // float32 / int32 bytes
constexpr double kD = 8;                                          // double / int64 bytes
constexpr double kBucket = static_cast<double>(size_t{4} << 20);  // DistributedOptimizer's buckets

double d(int64_t v) {
  return static_cast<double>(v);
}

double round_up(double x, double to) {
  return std::ceil(x / to) * to;
}

// The shape letters of model.h / moe.h for one rank of the layout.
struct Dims {
  double N, Ns, B, T, C, Ct, NHt, V, E, K, F, Fl, Fs, S, L, Lx, G;
  bool moves;      // the MoE layer moves rows (any of ep, tp, etp > 1)
  bool cuda;       // CudaModel keeps attention's probabilities; the CPU model recomputes them
  double threads;  // OpenMP threads of a CPU rank, each with its own attention tiles
  // Bytes of an activation element: 2 on the GPU in bf16 (CudaModel<bf16> stores activations,
  // attention probabilities, logits and expert rows as bf16), else 4. Router scores, per-token
  // statistics, gradients and the master weights stay fp32.
  double act;
};

Dims dims_of(const Config& cfg, const PlanLayout& lay) {
  Dims x{};
  x.B = d(cfg.train.micro_batch);
  x.T = d(cfg.model.seq_len);
  x.N = x.B * x.T;
  x.Ns = x.N / d(lay.tp);
  x.C = d(cfg.model.d_model);
  x.Ct = x.C / d(lay.tp);
  x.NHt = d(cfg.model.n_heads) / d(lay.tp);
  x.V = d(cfg.model.vocab_size);
  x.E = d(cfg.moe.num_experts);
  x.K = d(cfg.moe.top_k);
  x.F = d(cfg.moe.ffn_hidden);
  x.Fl = x.F / d(lay.etp);
  x.Fs = x.F / d(lay.tp);
  x.S = d(cfg.moe.shared_experts);
  x.L = d(cfg.model.n_layers);
  x.Lx = x.E / d(lay.ep);
  x.G = cfg.moe.aux_loss_scope == AuxScope::kSequence ? x.B : 1;  // aux balance groups
  x.moves = lay.ep > 1 || lay.tp > 1 || lay.etp > 1;
  x.act = cfg.device == Device::kCuda && cfg.train.precision == Precision::kBf16 ? 2 : kF;
  x.cuda = cfg.device == Device::kCuda;
  x.threads = 1;
  return x;
}

// Model<float>'s saved activations and backward scratch (model.h), in bytes, split the way a
// user shrinks them.
struct ModelActs {
  double stream = 0;       // residual stream, norms, q/k/v, attention output, backward scratch
  double attn_probs = 0;   // kept: GPU att and datt [B, NH/tp, T, T]; CPU row stats and tiles
  double attn_scores = 0;  // what the softmax passes touch: (L + 1) [B, NH/tp, T, T] either way
  double logits = 0;       // probs [N, V]
};
ModelActs model_acts(const Dims& x) {
  ModelActs a;
  // Per layer: x_in, a, x_mid, m, moe_out [N,C]; a_rstd, m_rstd [N]; qkv, qkv_rot [N,3Ct];
  // atty [N,Ct]. Once: x_out, xf, dx, dtmp, dtmp2 [N,C]; inputs, targets, xf_rstd, losses,
  // dlosses [N]; dqkv, dqkv2 [N,3Ct]; the batch's tokens [B,T+1] (BatchShare).
  // The [N, *] activations are x.act bytes each; the [N] statistics and the tokens 4.
  const double per_layer = 5 * x.N * x.C + 7 * x.N * x.Ct, per_layer_f = 2 * x.N;
  const double once = 5 * x.N * x.C + 6 * x.N * x.Ct, once_f = 5 * x.N + x.B * (x.T + 1);
  a.stream = x.act * (x.L * per_layer + once) + kF * (x.L * per_layer_f + once_f);
  // GPU: att per layer, datt once. CPU (kernels/cpu/attention.cpp): each row's max and 1/sum
  // [B, NH/tp, T, 2] per layer, and per thread the backward's two [min(T, 64), T] tiles.
  // The elementwise passes go over every score either way (the CPU's in cache-sized tiles, twice
  // in the backward), so step_time.h times them by the GPU's count.
  a.attn_scores = x.act * (x.L + 1) * x.B * x.NHt * x.T * x.T;
  a.attn_probs =
      x.cuda ? a.attn_scores
             : kF * (x.L * x.B * x.NHt * x.T * 2 + x.threads * 2 * std::min(x.T, 64.0) * x.T);
  a.logits = x.act * x.N * x.V;
  return a;
}

// One MoeLayer's buffers (moe.h), bytes, with A assignments at its experts and Mo rows received.
double moe_layer_bytes(const Dims& x, const PlanLayout& lay, double A, double Mo) {
  const double N = x.N, E = x.E, K = x.K, C = x.C;
  // route: logits, probs, dprobs, dlogits [N,E]; lse, dlse [N]; gates, dgates [N,K];
  // topk, kept, sel [N,K] int; sel_off [E+1], counts [max(E, L)] int; grp_frac [G,E] double;
  // score_sum [N] double.
  double b = kF * (4 * N * E + 2 * N + 5 * N * K + 2 * E + 1) + kD * (x.G * E + N);
  // local layout: row_of, slot_of [A] int, row_gate [A]; drow_gate [A].
  b += kF * 4 * A;
  // expert stage: xs, ys, dys, dxs [A,C]; h1, h3, h [A,Fl]; shared sh1, sh3, sh [S,N,Fs];
  // dh [2, max(A Fl, N Fs)].
  b += x.act * (4 * A * C + 3 * A * x.Fl + 3 * x.S * N * x.Fs +
                2 * std::max(A * x.Fl, x.S > 0 ? N * x.Fs : 0.0));
  if (x.moves) {
    // moved rows: send [Ns, C+K] and recv [Mo, C+K] (only with an exchange, ep > 1: without one
    // the rows are the tokens themselves, moe_parallel.cpp); rows_x [M,C]; rows_g, rows_e [M,K];
    // yrows [M, C+K]; etp_scratch [Mo, C+K] (etp > 1); M = etp * Mo rows after the gather.
    // The exchange's buffers are counted at 4 bytes; rows_x and yrows' rows at x.act.
    const double M = d(lay.etp) * Mo;
    b += kF * ((lay.ep > 1 ? (x.Ns + Mo) * (C + K) : 0.0) + 2 * M * K + M * K +
               (lay.etp > 1 ? Mo * (C + K) : 0.0)) +
         x.act * 2 * M * C;
  }
  return b;
}

}  // namespace

double MemoryEstimate::total() const {
  double t = 0;
  for (const auto& m : terms) t += m.bytes;
  return t;
}

const MemoryTerm& MemoryEstimate::largest() const {
  SY_CHECK(!terms.empty(), "no memory terms");
  return *std::max_element(
      terms.begin(), terms.end(),
      [](const MemoryTerm& a, const MemoryTerm& b) { return a.bytes < b.bytes; });
}

ParamGroups param_groups(const Config& cfg, const PlanLayout& lay) {
  const Dims x = dims_of(cfg, lay);
  ParamGroups g;
  // Dense group (params.cpp): embed [V,C], head [V,C] unless tied, final_norm [C]; per layer
  // attn_norm, moe_norm [C], wqkv [C,3C/tp], wo [C/tp,C], router [C,E], bias [E], shared
  // w1, w3 [S,C,F/tp] and w2 [S,F/tp,C]; padded to a multiple of dp.
  const double dense =
      x.V * x.C * (cfg.model.tie_embeddings ? 1 : 2) + x.C +
      x.L * (2 * x.C + 3 * x.C * x.Ct + x.Ct * x.C + x.C * x.E + x.E + 3 * x.S * x.C * x.Fs);
  g.dense = round_up(dense, d(lay.dp()));
  // Expert group: per layer w1, w3 [E/ep, C, F/etp], w2 [E/ep, F/etp, C]; padded to edp.
  g.expert = round_up(x.L * 3 * x.Lx * x.C * x.Fl, d(lay.edp()));
  g.router = x.L * x.C * x.E;
  return g;
}

double local_param_elements(const Config& cfg, const PlanLayout& lay) {
  const ParamGroups g = param_groups(cfg, lay);
  return g.dense + g.expert;
}

double local_moment_elements(const Config& cfg, const PlanLayout& lay) {
  const ParamGroups g = param_groups(cfg, lay);
  // ZeRO-1: m and v only for this rank's chunk of each group (1/dp, 1/edp of it).
  return lay.zero1 ? g.dense / d(lay.dp()) + g.expert / d(lay.edp()) : g.dense + g.expert;
}

double activation_bytes(const Config& cfg, const PlanLayout& lay, double assignments, double rows) {
  const Dims x = dims_of(cfg, lay);
  const ModelActs a = model_acts(x);
  return a.stream + a.attn_scores + a.logits + x.L * moe_layer_bytes(x, lay, assignments, rows);
}

MemoryEstimate predict_memory(const Config& cfg, const PlanLayout& lay, const RoutingStats& routing,
                              const MemoryInputs& in) {
  Dims x = dims_of(cfg, lay);
  x.threads = in.threads;
  const double P = local_param_elements(cfg, lay);
  const std::string model_keys =
      "model.d_model, model.n_layers, moe.num_experts, moe.ffn_hidden, model.vocab_size" +
      std::string(cfg.moe.shared_experts > 0 ? ", moe.shared_experts" : "");
  const std::string batch_keys = "train.micro_batch, model.seq_len";
  MemoryEstimate m;
  m.terms.push_back({"parameters", model_keys + ", parallel.ep/etp/tp (shard them)", kF * P});
  m.terms.push_back({"gradients", model_keys + ", parallel.ep/etp/tp (shard them)", kF * P});
  // ZeRO-1 shards the moments over the data-parallel replicas, checkpoints included (each rank
  // writes and reads its own chunks): offered where there are replicas to shard them over, on
  // the CPU (device: cuda keeps the whole state on every GPU).
  const bool replicas = !x.cuda && (lay.dp() > 1 || lay.edp() > 1);
  m.terms.push_back({"AdamW moments m and v",
                     model_keys + ", parallel.ep/etp/tp (shard them)" +
                         (!lay.zero1 && replicas ? ", parallel.zero1=true" : ""),
                     2 * kF * local_moment_elements(cfg, lay)});
  if (x.act < kF)
    m.terms.push_back({"bf16 compute copy of the parameters",
                       model_keys + ", parallel.ep/etp/tp (shard them)", x.act * P});

  const ModelActs a = model_acts(x);
  m.terms.push_back({"activations kept for backward: residual stream and attention projections",
                     batch_keys + ", model.d_model, model.n_layers", a.stream});
  m.terms.push_back(
      {x.cuda ? "activations kept for backward: attention probabilities [B, heads, T, T]"
              : "activations kept for backward: attention's row max and 1/sum [B, heads, T, 2], "
                "and [64, T] score tiles per thread",
       "model.seq_len, train.micro_batch, model.n_layers, parallel.tp", a.attn_probs});
  m.terms.push_back(
      {"logits [N, V] of one micro-batch", "model.vocab_size, " + batch_keys, a.logits});

  // MoE layers (each its own buffers) and the one token exchange (sized by its largest call, the
  // forward dispatch of C + K floats per row).
  double moe = 0, exchange = 0;
  for_each_distinct_layer(cfg, lay, routing, [&](const LayerTraffic& t, double layers) {
    const double Mo = lay.ep > 1 ? t.recv_quantile : t.slice;
    moe += layers * moe_layer_bytes(x, lay, t.assign_quantile, Mo);
    if (lay.ep == 1) return;
    const double row = kF * (x.C + x.K);
    // flat: one staging buffer of the rows this rank packs; hierarchical: a shared window of
    // three buffer sets of xrecv + ybuf + xsend rows (exchange_hier.cpp).
    const double bytes = lay.hierarchical
                             ? 3 * row * (t.hier_xrecv + t.recv_quantile + t.hier_xsend)
                             : row * t.flat_sent_total;
    exchange = std::max(exchange, bytes);
  });
  m.terms.push_back(
      {"MoE layers: router [N, E] and expert rows [A, F/etp] at the busiest rank "
       "(z = 3.72 quantile)",
       "moe.num_experts, moe.top_k, moe.ffn_hidden, " + batch_keys + ", model.n_layers" +
           (cfg.moe.shared_experts > 0 ? ", moe.shared_experts" : ""),
       moe});
  if (lay.ep > 1)
    m.terms.push_back({"all-to-all buffers (busiest rank, z = 3.72 quantile)",
                       batch_keys + ", model.d_model, moe.top_k", exchange});

  // The largest tensor part a rank holds (the embedding, or one layer's expert stack): what the
  // sample's gather and a checkpoint write keep in flight.
  const double largest_part = std::max(x.V * x.C, x.Lx * x.C * x.Fl);

  // The evaluation sample (eval_sample.h): world rank 0 gathers the whole model into one flat
  // buffer (plus the largest part in flight) and decodes with its key/value cache, 2 x L x
  // (seq_len + 63) x d_model (decoder.h); in host memory, which rank 0 shares with the other
  // ranks of its host.
  if (cfg.eval.sample_tokens > 0) {
    const double whole = local_param_elements(cfg, PlanLayout{});
    const double kv = 2 * x.L * (x.T + 63) * x.C;
    m.terms.push_back({"evaluation sample on rank 0: the whole model and its key/value cache" +
                           std::string(in.host_ranks > 1 ? " (shared by its host's ranks)" : ""),
                       "eval.sample_tokens=0 (no sample)",
                       kF * (whole + largest_part + kv) / std::max(1.0, in.host_ranks), true});
  }

  // The CPU trainer's co-activation counts for `switchyard placement` (coactivation.h): int64
  // [L, E, E] counted since the last log step on every rank, the run's total and its copy as of
  // the newest checkpoint on rank 0, and the all-reduce's temporaries (a binomial tree, as below).
  if (!x.cuda) {
    const double counts = kD * x.L * x.E * x.E;
    m.terms.push_back({"co-activation counts [L, E, E] (int64, for switchyard placement)",
                       "moe.num_experts, model.n_layers",
                       counts * (3 + (lay.world > 1 ? std::ceil(std::log2(d(lay.world))) : 0))});
  }

  // Token data: the tokens stay in the file (token_read.cpp, read a window at a time); the
  // loader's two cached epoch permutations of the windows (int64), the int64 block of the check
  // before training, and HDF5's chunk cache of each split (1 MiB).
  const double windows = std::max(0.0, std::floor((in.train_tokens - 1) / x.T));
  const double tokens =
      2 * kD * windows +
      kD * std::min(std::max(in.train_tokens, in.val_tokens), static_cast<double>(1 << 20)) +
      (in.train_tokens > 0 ? 2.0 * (1 << 20) : 0.0);  // none without a file (the planner's)
  m.terms.push_back({"token data " + in.data_name + ": the loader's window order",
                     "data.path (a smaller file), model.seq_len", tokens, true});

  // Workspace: the optimizer's scratch (one bucket chunk, or the packed router gradients); the
  // process itself.
  const ParamGroups g = param_groups(cfg, lay);
  auto chunk = [&](double size, double p) {
    return std::min(size, std::max(p, std::floor(kBucket / p) * p)) / p;
  };
  double work =
      kF * std::max({chunk(g.dense, d(lay.dp())), chunk(g.expert, d(lay.edp())), g.router});
  m.terms.push_back({"workspace: optimizer scratch and the process (libraries, MPI, BLAS)",
                     "(not config-dependent)", work + in.base_bytes});
  // A checkpoint write's own buffers, in host memory on either device: HDF5 holds about twice a
  // rank's part of the tensor it writes (the chunks through the Fletcher32 filter), and MPI-IO's
  // first open loads its components. Measured on tiny.yaml, 1 rank: +7.3 MiB at 256 experts
  // (largest part 2 MiB), +17.4 MiB at 1024 (8 MiB).
  m.terms.push_back({"checkpoint writes: HDF5's buffers of the largest tensor, MPI-IO",
                     "(any run may write one)", 2 * kF * largest_part + 4.0 * (1 << 20), true});
  // MPI's reduction temporaries: Open MPI reduces a gradient bucket (reduce_scatter_block) and an
  // activation all-reduce (MPI_Reduce) along a binomial tree, where a rank that receives from
  // ceil(log2 p) children holds that many copies of the buffer (the group's root: measured +3
  // buckets at p = 8, +1 at p = 2). The root of each group is the busiest.
  auto tree = [&](double elems, double p) {
    return p > 1 ? kF * elems * std::ceil(std::log2(p)) : 0;
  };
  const double mpi_temps =
      std::max({tree(std::min(g.dense, kBucket), d(lay.dp())),
                tree(std::min(g.expert, kBucket), d(lay.edp())), tree(x.N * x.C, d(lay.tp))});
  if (mpi_temps > 0)
    m.terms.push_back({"MPI reduction temporaries (a gradient bucket per binomial-tree level)",
                       "parallel.tp, parallel.ep (fewer data-parallel replicas)", mpi_temps});
  return m;
}

std::vector<IndexProblem> index_problems(const Config& cfg, const PlanLayout& lay) {
  const Dims x = dims_of(cfg, lay);
  const double kInt = INT_MAX;
  std::vector<IndexProblem> out;
  auto check = [&](const char* what, double v, const char* key) {
    if (v > kInt) out.push_back({what, v, key});
  };
  // Kernel and layer dimensions are `int` (model.h, moe.h, kernels/cpu/ops.h).
  check("model.vocab_size (embedding rows)", x.V, "model.vocab_size");
  check("3 * model.d_model (wqkv columns)", 3 * x.C, "model.d_model");
  check("model.n_layers", x.L, "model.n_layers");
  check("model.n_heads", d(cfg.model.n_heads), "model.n_heads");
  check("model.seq_len", x.T, "model.seq_len");
  check("moe.num_experts", x.E, "moe.num_experts");
  check("moe.ffn_hidden", x.F, "moe.ffn_hidden");
  check("moe.top_k", x.K, "moe.top_k");
  // Tokens of a micro-batch and the router's flat [N,K] and [N,E] indices are `int` (moe.cpp).
  check("train.micro_batch * model.seq_len (tokens of a micro-batch)", x.N, "train.micro_batch");
  check("tokens of a micro-batch * moe.top_k (routing slots)", x.N * x.K, "train.micro_batch");
  check("tokens of a micro-batch * moe.num_experts (router scores)", x.N * x.E,
        "train.micro_batch");
  // MPI counts are `int` elements (comm/collectives.h, comm/alltoall.h).
  if (lay.tp > 1) {
    check("tokens of a micro-batch * model.d_model (tensor-parallel all-reduce)", x.N * x.C,
          "train.micro_batch");
    check("model.n_layers * model.d_model * moe.num_experts (router gradient all-reduce)",
          x.L * x.C * x.E, "model.n_layers");
  }
  // The all-to-all counts rows (a datatype of one row, comm/alltoall.h): the largest is the
  // displacement past every row one rank can receive, each EP rank's tokens once.
  if (x.moves)
    check("rows one rank receives in the all-to-all (ep * etp * tokens moved per rank)",
          d(lay.ep) * d(lay.etp) * x.Ns, "train.micro_batch");
  return out;
}

}  // namespace sy::plan

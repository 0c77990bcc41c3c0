#include "src/plan/step_time.h"

#include <algorithm>
#include <cmath>

#include "src/plan/memory.h"
#include "src/plan/traffic.h"

namespace sy::plan {

namespace {

constexpr double kF = 4;  // bytes of a float32 (every tensor the CPU trainer moves)
// Elementwise passes stream the saved activations three times per micro-batch: written in the
// forward, read in the backward, their gradients written.
constexpr double kElementwisePasses = 3;
// Per parameter element and step: zero_grads writes the gradient, the norm reads it (8 bytes);
// per updated element AdamW reads p, g, m, v and writes p, m, v (28 bytes).
constexpr double kOptimizerBytesPerParam = 8, kOptimizerBytesPerUpdate = 28;
constexpr double kBucketElems = static_cast<double>(size_t{4} << 20);

double d(int64_t v) {
  return static_cast<double>(v);
}

// A node-shared NIC split over the ranks of the node that use it at once (all of them: every
// rank is in a group that uses it).
Link shared(Link l, const PlanLayout& lay) {
  if (l.shared_by_node) l.bandwidth /= d(std::min(lay.ranks_per_node, lay.world));
  return l;
}

// The link a group of `size` ranks at `stride` uses.
Link group_link(const Cluster& k, const PlanLayout& lay, int64_t stride, int64_t size) {
  return lay.spans_nodes(stride, size) ? shared(k.mpi_inter(), lay) : k.intra;
}

// All-reduce of a small vector (loss, counts, the norm): a latency-bound tree, 2 log2(p) alpha.
double small_allreduce_seconds(const Link& l, double p, double bytes) {
  if (p <= 1) return 0;
  return 2 * std::ceil(std::log2(p)) * l.latency_s + bytes / l.bandwidth;
}

// One call of the all-to-all moving rows of `row_bytes` for one MoE layer and micro-batch:
// the seconds on its intra-node and inter-node legs.
struct CallTime {
  double intra = 0, inter = 0;
};

CallTime a2a_call(const Cluster& k, const PlanLayout& lay, const LayerTraffic& t,
                  double row_bytes) {
  CallTime c;
  const double Rn = d(t.ep_ranks_per_node), P = d(lay.ep), G = d(t.nodes);
  // Packing rows into (and summing them out of) staging buffers: local memory traffic.
  const double pack = row_bytes * 2 * t.recv_mean / k.mem_bandwidth;
  if (!lay.hierarchical) {
    // Flat MPI_Alltoallv: a message to every other EP rank; the busiest rank's sent or received
    // bytes on each link; both links at once, the slower decides (its column takes the time).
    const Link inter = shared(k.mpi_inter(), lay);
    const double intra_s =
        k.intra.latency_s * (Rn - 1) +
        row_bytes * std::max(t.flat_sent_intra, t.flat_recv_intra) / k.intra.bandwidth;
    const double inter_s =
        G > 1 ? inter.latency_s * (P - Rn) +
                    row_bytes * std::max(t.flat_sent_inter, t.flat_recv_inter) / inter.bandwidth
              : 0.0;
    if (inter_s > intra_s) {
      c.inter = inter_s;
      c.intra = pack;
    } else {
      c.intra = intra_s + pack;
    }
    return c;
  }
  // Hierarchical: the inter-node stage (one message per other node, to the forwarder), then the
  // node's shared-memory stage (two node barriers, the forwarded rows copied to their receivers).
  const Link inter = shared(lay.internode == InternodeKind::kUcx ? k.inter : k.mpi_inter(), lay);
  if (G > 1)
    c.inter = inter.latency_s * (G - 1) +
              row_bytes * std::max(t.hier_sent_inter, t.hier_recv_inter) / inter.bandwidth;
  c.intra = 2 * k.intra.latency_s + row_bytes * t.hier_intra / k.intra.bandwidth + pack;
  return c;
}

}  // namespace

RankCompute rank_compute(const Cluster& cluster, int64_t world) {
  RankCompute r{cluster, 1.0, 1.0};
  if (!cluster.one_host) {
    // A node's cores among its ranks; the compute figures are already a rank's.
    const double on_node = d(std::max<int64_t>(1, std::min(world, cluster.ranks_per_node)));
    if (cluster.cores > 0) r.threads = std::max(1.0, std::floor(d(cluster.cores) / on_node));
    return r;
  }
  double share = 1.0 / d(world);  // the rank's fraction of the host's figures
  if (cluster.cores > 0) {
    const double cores = d(cluster.cores);
    const double threads = std::max(1.0, std::floor(cores / d(world)));
    share = threads / cores * (threads > 1 ? cluster.thread_efficiency : 1.0);  // threads <= cores
    r.turns = std::max(1.0, d(world) * threads / cores);
    r.threads = threads;
  }
  r.k.gemm_flops *= share;
  r.k.mem_bandwidth *= share;
  r.k.elementwise_bandwidth *= share;
  r.k.layer_overhead_s /= share;  // work that does not scale with the rows, at the rank's share
  return r;
}

double gemm_seconds(const Cluster& k, double flops, double min_dim) {
  if (flops <= 0) return 0;
  const double rate = k.gemm_flops * min_dim / (min_dim + k.gemm_half_dim);
  return flops / rate;
}

double ring_allreduce_seconds(const Link& l, double p, double bytes, double messages) {
  if (p <= 1) return 0;
  return messages * 2 * (p - 1) * l.latency_s + 2 * (p - 1) / p * bytes / l.bandwidth;
}

double ring_gather_seconds(const Link& l, double p, double bytes, double messages) {
  if (p <= 1) return 0;
  return messages * (p - 1) * l.latency_s + (p - 1) / p * bytes / l.bandwidth;
}

StepTime predict_step(const Config& cfg, const PlanLayout& lay, const Cluster& cluster,
                      const RoutingStats& routing) {
  StepTime st;
  const RankCompute rc = rank_compute(cluster, lay.world);
  const Cluster& k = rc.k;
  const double B = d(cfg.train.micro_batch), T = d(cfg.model.seq_len), N = B * T;
  const double tp = d(lay.tp), Ns = N / tp;
  const double C = d(cfg.model.d_model), Ct = C / tp, V = d(cfg.model.vocab_size);
  const double E = d(cfg.moe.num_experts), K = d(cfg.moe.top_k), F = d(cfg.moe.ffn_hidden);
  const double S = d(cfg.moe.shared_experts), Fs = F / tp, Fl = F / d(lay.etp);
  const double Lx = E / d(lay.ep), hd = C / d(cfg.model.n_heads);
  const double L = d(cfg.model.n_layers);
  const double micro = d(cfg.train.global_batch) / (d(lay.dp()) * B);  // micro-batches per step

  // ---- compute per micro-batch (FLOPs: 6 per parameter-row product forward + backward, as
  // src/train/flops.h counts them; min_dim picks the GEMM's rate)
  // attention: wqkv [N,C]x[C,3C/tp], wo [N,C/tp]x[C/tp,C], scores and values over the causal
  // half of [T,T] per sequence and head (6 T^2 C / tp per sequence, flops.h's attention term;
  // the CPU's backward computes q k^T again, kernels/cpu/attention.cpp: 7)
  const double score_products = cfg.device == Device::kCuda ? 6 : 7;
  const double attention = gemm_seconds(k, 6 * N * C * 3 * Ct, std::min({N, C, 3 * Ct})) +
                           gemm_seconds(k, 6 * N * Ct * C, std::min({N, Ct, C})) +
                           gemm_seconds(k, score_products * B * T * T * Ct, std::min(T, hd));
  // dense: the router (forward over all N tokens, backward over this rank's Ns), the S shared
  // experts' W1, W3, W2 on F/tp columns, the LM head [N,C]x[C,V] once per micro-batch
  const double dense_layer = gemm_seconds(k, 2 * N * C * E + 4 * Ns * C * E, std::min({Ns, C, E})) +
                             gemm_seconds(k, 18 * N * C * Fs * S, std::min({N, C, Fs}));
  const double head = gemm_seconds(k, 6 * N * C * V, std::min({N, C, V}));
  st.attention = micro * L * attention;
  st.dense = micro * (L * dense_layer + head);
  st.overhead = micro * L * k.layer_overhead_s;  // the fixed cost of every layer and micro-batch
  // the elementwise passes stream a micro-batch's saved activations (activation_bytes) three
  // times: written in the forward, read in the backward, their gradients written. The part that
  // grows with a rank's expert assignments A goes with the expert phase.
  const double ew_rate = k.elementwise_rate();
  auto elementwise = [&](double A, double rows) {
    return kElementwisePasses * activation_bytes(cfg, lay, A, rows) / ew_rate;
  };

  const Link tp_link = group_link(k, lay, 1, lay.tp);
  const Link etp_link = group_link(k, lay, 1, lay.etp);
  double expert_wait = 0;  // the waits of the expert phases, per step
  double rest_ew = 0;      // the elementwise passes outside the expert phases, per step
  for_each_distinct_layer(cfg, lay, routing, [&](const LayerTraffic& t, double layers) {
    // experts: W1, W3 [C,F/etp] and W2 [F/etp,C] per assignment, each of the rank's Lx local
    // experts a GEMM of A/Lx rows; with the elementwise passes over the assignments' rows (the
    // expert phase of a layer and micro-batch, from the dispatch to the combine)
    const double rest = elementwise(0, t.recv_mean) / L;  // one layer's share, no assignments
    auto expert_gemms = [&](double A) {
      return gemm_seconds(k, 18 * A * C * Fl, std::min({A / Lx, C, Fl}));
    };
    const double mean_gemms = expert_gemms(t.assign_mean);
    const double mean_ew = elementwise(t.assign_mean, t.recv_mean) / L;
    const double experts = expert_gemms(t.assign_busiest);  // the busiest rank's, for overlap
    // the expert phases of the mean and the busiest rank
    const double own = mean_gemms + mean_ew - rest;
    const double busiest = experts + elementwise(t.assign_busiest, t.recv_mean) / L - rest;
    st.experts += micro * layers * mean_gemms;
    st.elementwise += micro * layers * mean_ew;
    rest_ew += micro * layers * rest;
    // the phase lasts the busiest rank's expert phase, or the mean rank's times its turns
    expert_wait += micro * layers * (std::max(rc.turns * own, busiest) - own);
    if (lay.ep > 1) {
      // layout (one record [token, K experts] of int64 per row), then the payloads: dispatch
      // and combine forward and backward (a2a_payload_row_bytes)
      const CallTime layout = a2a_call(k, lay, t, 8 * (1 + K));
      double intra = layout.intra, inter = layout.inter, moved = 0;
      for (double row : a2a_payload_row_bytes(cfg.model.d_model, cfg.moe.top_k)) {
        const CallTime c = a2a_call(k, lay, t, row);
        intra += c.intra;
        inter += c.inter;
        moved += row;
      }
      st.a2a_intra += micro * layers * intra;
      st.a2a_inter += micro * layers * inter;
      // what the trainer's counters see on a mean rank (payload bytes sent, dispatch and combine)
      const double inter_rows = lay.hierarchical ? t.hier_sent_inter : t.flat_sent_inter;
      const double intra_rows = lay.hierarchical ? t.hier_intra_mean : t.flat_sent_intra;
      st.a2a_inter_bytes += micro * layers * inter_rows * moved;
      st.a2a_intra_bytes += micro * layers * intra_rows * moved;
      if (k.overlaps_comm && cfg.moe.overlap_chunks > 1) {
        const double a = intra + inter, chunks = d(cfg.moe.overlap_chunks);
        st.overlap_saved += micro * layers * std::min(a, experts) * (1 - 1 / chunks);
      }
    }
    if (lay.etp > 1) {
      // etp: row counts all-reduced; rows, gates and experts all-gathered and the outputs
      // reduce-scattered (forward); output gradients all-gathered and row gradients
      // reduce-scattered (backward). M = etp * Mo rows.
      const double M = d(lay.etp) * (lay.ep > 1 ? t.recv_mean : t.slice);
      const double p = d(lay.etp);
      const double e = small_allreduce_seconds(etp_link, p, kF * p) +
                       ring_gather_seconds(etp_link, p, kF * M * (C + 2 * K), 3) +
                       ring_gather_seconds(etp_link, p, kF * M * C) +
                       ring_gather_seconds(etp_link, p, kF * M * C) +
                       ring_gather_seconds(etp_link, p, kF * M * (C + K));
      st.etp += micro * layers * e;
    }
  });
  // tp: attention output and MoE output forward, their input gradients backward: 4 all-reduces
  // of [N,C] per layer and micro-batch; the router's tp-partial gradients once per step.
  st.tp = micro * L * 4 * ring_allreduce_seconds(tp_link, tp, kF * N * C) +
          ring_allreduce_seconds(tp_link, tp, kF * L * C * E);

  // optimizer: a streaming pass (zero, norm over every local element; AdamW over the updated)
  st.optimizer = (kOptimizerBytesPerParam * local_param_elements(cfg, lay) +
                  kOptimizerBytesPerUpdate * local_moment_elements(cfg, lay)) /
                 k.mem_bandwidth;

  // gradient sync: per bucket of 4M elements a reduce-scatter, then an all-gather (of gradients,
  // or of the updated parameters with ZeRO-1), dense over dp and experts over edp; the step's
  // loss and routing counts (L*E int64) over dp and the global norm over the world.
  const ParamGroups g = param_groups(cfg, lay);
  const Link dp_link = group_link(k, lay, lay.tp, lay.dp());
  const Link edp_link = group_link(k, lay, lay.ep * lay.etp, lay.edp());
  const Link world_link = group_link(k, lay, 1, lay.world);
  auto buckets = [](double elems) { return std::max(1.0, std::ceil(elems / kBucketElems)); };
  st.grad_sync = 2 * ring_gather_seconds(dp_link, d(lay.dp()), kF * g.dense, buckets(g.dense)) +
                 2 * ring_gather_seconds(edp_link, d(lay.edp()), kF * g.expert, buckets(g.expert)) +
                 small_allreduce_seconds(dp_link, d(lay.dp()), 8 * (L * E + 4)) +
                 small_allreduce_seconds(world_link, d(lay.world), 8);

  // waits (step_time.h): the expert phases end in the all-to-all; every other phase lasts
  // `turns` times a rank's own compute, and ends in the next all-to-all call when ep > 1
  // (attention's in the tp all-reduce when tp > 1), else in the tp all-reduces or the gradient
  // sync.
  const double attention_wait = (rc.turns - 1) * st.attention;
  const double other_wait = (rc.turns - 1) * (st.dense + st.overhead + rest_ew + st.optimizer);
  if (lay.ep > 1) {
    st.a2a_wait = expert_wait + other_wait + (lay.tp > 1 ? 0.0 : attention_wait);
    st.sync_wait = lay.tp > 1 ? attention_wait : 0.0;
  } else {
    st.sync_wait = expert_wait + other_wait + attention_wait;
  }
  return st;
}

}  // namespace sy::plan

// The step-time terms of src/plan/step_time.h against hand-computed values, and its compute
// against the FLOP count of src/train/flops.h.
#include "src/plan/step_time.h"

#include <gtest/gtest.h>

#include "src/train/flops.h"

namespace sy::plan {
namespace {

Cluster ideal() {
  Cluster k;
  k.name = "ideal";
  k.gemm_flops = 1e12;
  k.gemm_half_dim = 0;
  k.mem_bandwidth = 1e300;  // streaming passes cost nothing
  k.intra = {1e9, 1e-6, false};
  k.inter = {1e8, 1e-5, false};
  k.ranks_per_node = 8;
  return k;
}

Config model() {
  Config c;
  c.model.vocab_size = 256;
  c.model.d_model = 64;
  c.model.n_layers = 3;
  c.model.n_heads = 4;
  c.model.seq_len = 32;
  c.moe.num_experts = 8;
  c.moe.top_k = 2;
  c.moe.ffn_hidden = 96;
  c.moe.shared_experts = 1;
  c.train.micro_batch = 4;
  c.train.global_batch = 8;
  return c;
}

TEST(PlanStepTime, GemmAndRingFormulasByHand) {
  Cluster k = ideal();
  k.gemm_half_dim = 100;
  // 2e12 FLOPs at a smallest dimension of 100: half of 1e12 FLOP/s -> 4 s.
  EXPECT_DOUBLE_EQ(gemm_seconds(k, 2e12, 100), 4.0);
  const Link l{1e9, 1e-6, false};
  // p = 4, 4e9 bytes: all-reduce 2*3 latencies + 2*(3/4)*4 s; gather 3 latencies + 3 s.
  EXPECT_DOUBLE_EQ(ring_allreduce_seconds(l, 4, 4e9), 6e-6 + 6.0);
  EXPECT_DOUBLE_EQ(ring_gather_seconds(l, 4, 4e9, 2), 6e-6 + 3.0);
  EXPECT_DOUBLE_EQ(ring_gather_seconds(l, 1, 4e9), 0.0);
}

// On the GPU the model's FLOPs (src/train/flops.h) at the peak; the CPU computes q k^T once more
// in the backward (kernels/cpu/attention.cpp): a sixth more of flops.h's attention term.
TEST(PlanStepTime, OneRankComputeIsTheModelFlopsAtThePeak) {
  Config cfg = model();
  const StepFlops f = step_flops(cfg);
  const StepTime cpu = predict_step(cfg, PlanLayout{}, ideal(), RoutingStats{});
  const double cpu_flops = (cpu.attention + cpu.experts + cpu.dense) * ideal().gemm_flops;
  EXPECT_NEAR(cpu_flops, f.total() + f.attention / 6, 1e-9 * f.total());
  EXPECT_DOUBLE_EQ(cpu.a2a(), 0.0);
  EXPECT_DOUBLE_EQ(cpu.sync(), 0.0);
  cfg.device = Device::kCuda;
  const StepTime gpu = predict_step(cfg, PlanLayout{}, ideal(), RoutingStats{});
  const double gpu_flops = (gpu.attention + gpu.experts + gpu.dense) * ideal().gemm_flops;
  EXPECT_NEAR(gpu_flops, f.total(), 1e-9 * f.total());
}

TEST(PlanStepTime, FlatAllToAllByHand) {
  // 2 EP ranks on 2 nodes, 2 experts top-1: a token stays home or crosses with p = 1/2.
  Config cfg = model();
  cfg.moe.num_experts = 2;
  cfg.moe.top_k = 1;
  cfg.moe.shared_experts = 0;
  cfg.train.global_batch = 8;  // dp = 2: one micro-batch of 4 x 32 = 128 tokens per rank
  PlanLayout lay;
  lay.world = 2;
  lay.ranks_per_node = 1;
  lay.ep = 2;
  const Cluster k = ideal();
  const StepTime t = predict_step(cfg, lay, k, RoutingStats{});
  // Per call: one message (latency 1e-5) and 64 rows of the call's width over 1e8 B/s; calls
  // per layer: layout 8 (1 + K) = 16 B, dispatch 4 (C + K) = 260 B, combine 256, backward 256 and
  // 260 bytes per row. 3 layers, 1 micro-batch.
  const double per_layer = 5 * 1e-5 + 64.0 * (16 + 260 + 256 + 256 + 260) / 1e8;
  EXPECT_NEAR(t.a2a_inter, 3 * per_layer, 1e-15);
  EXPECT_NEAR(t.a2a_intra, 0.0, 1e-12);  // no other rank on the node; packing is free here
  // The counters' bytes: 64 rows sent across per call, dispatch + combine payloads only.
  EXPECT_NEAR(t.a2a_inter_bytes, 3 * 64.0 * (260 + 256 + 256 + 260), 1e-9);
}

TEST(PlanStepTime, GradientSyncAndOverlapByHand) {
  Config cfg = model();
  cfg.train.global_batch = 8;
  PlanLayout lay;
  lay.world = 2;
  lay.ranks_per_node = 2;  // both on one node: the intra link
  StepTime t = predict_step(cfg, lay, ideal(), RoutingStats{});
  // Dense: embed 256*64 + 64 + 3 layers x (2*64 + 3*64^2 + 64^2 + 64*8 + 8 + 3*64*96) = 122840;
  // experts 3 x 3 x 8 x 64 x 96.
  // dp = edp = 2: every parameter reduce-scattered and all-gathered once (one bucket each):
  // 2 x (1 latency + (1/2) bytes / bandwidth) per group; the loss and counts (8 (L E + 4) bytes)
  // and the norm (8 bytes) all-reduced as 2 log2(2) latencies + bytes / bandwidth.
  const double dense = 4.0 * 122840, expert = 4.0 * 3 * 3 * 8 * 64 * 96;
  const double lat = 1e-6, bw = 1e9;
  const double expect = 2 * (lat + 0.5 * dense / bw) + 2 * (lat + 0.5 * expert / bw) +
                        (2 * lat + 8.0 * (3 * 8 + 4) / bw) + (2 * lat + 8.0 / bw);
  EXPECT_NEAR(t.grad_sync, expect, 1e-12);

  // Overlap: with chunks c, min(a2a, experts) (1 - 1/c) of every layer is hidden.
  lay.world = 4;
  lay.ranks_per_node = 2;
  lay.ep = 4;
  cfg.train.global_batch = 16;
  Cluster k = ideal();
  k.overlaps_comm = true;
  const StepTime plain = predict_step(cfg, lay, k, RoutingStats{});
  cfg.moe.overlap_chunks = 4;
  const StepTime chunked = predict_step(cfg, lay, k, RoutingStats{});
  EXPECT_NEAR(chunked.overlap_saved,
              0.75 * std::min(plain.a2a_intra + plain.a2a_inter, plain.experts), 1e-12);
  EXPECT_NEAR(plain.total() - chunked.total(), chunked.overlap_saved, 1e-12);
}

// Tensor parallelism: per layer and micro-batch 4 all-reduces of [N, C] (attention and MoE
// outputs forward, their input gradients backward), and once per step the router's partial
// gradients [L, C, E].
TEST(PlanStepTime, TensorParallelAllReducesByHand) {
  const Config cfg = model();
  PlanLayout lay;
  lay.world = 2;
  lay.tp = 2;
  lay.ranks_per_node = 2;  // the intra link: 1e-6 s, 1e9 B/s
  const StepTime t = predict_step(cfg, lay, ideal(), RoutingStats{});
  // dp = 1: 8 / 4 = 2 micro-batches of N = 4 x 32 tokens; a 2-rank ring all-reduce costs 2
  // latencies + the bytes over the bandwidth.
  const double per_layer = 2e-6 + 4.0 * 128 * 64 / 1e9, router = 2e-6 + 4.0 * 3 * 64 * 8 / 1e9;
  EXPECT_NEAR(t.tp, 2 * 3 * 4 * per_layer + router, 1e-15);
}

// etp = 2 on one node (the intra link: 1e-6 s, 1e9 B/s), ep = tp = 1: dp = 2, one micro-batch of
// N = 128 tokens per rank, so M = 2 x 128 rows after the gather. Per layer: the row counts
// all-reduced (8 bytes: 2 latencies + bytes / bandwidth); rows with gates and experts gathered
// (C + 2K floats a row, 3 calls); the outputs reduce-scattered and their gradients gathered (C
// each); the row gradients reduce-scattered (C + K) -- each a 2-rank ring: 1 latency per call +
// half the bytes. Then the optimizer's streaming pass at 1e9 B/s over the same layout with
// ZeRO-1: 8 bytes per local parameter (dense 122840 + experts 3 x 3 x 8 x 64 x 96 / etp), 28 per
// element of this rank's moment chunks (half the dense group over dp = 2; all its experts, edp =
// 1).
TEST(PlanStepTime, ExpertTensorParallelAndOptimizerByHand) {
  const Config cfg = model();
  PlanLayout lay;
  lay.world = 2;
  lay.etp = 2;
  lay.ranks_per_node = 2;
  lay.zero1 = true;
  Cluster k = ideal();
  k.mem_bandwidth = 1e9;
  const StepTime t = predict_step(cfg, lay, k, RoutingStats{});
  const double M = 256, lat = 1e-6, bw = 1e9;
  const double per_layer = (2 * lat + 8.0 / bw) + (3 * lat + 0.5 * 4 * M * (64 + 4) / bw) +
                           2 * (lat + 0.5 * 4 * M * 64 / bw) + (lat + 0.5 * 4 * M * (64 + 2) / bw);
  EXPECT_NEAR(t.etp, 3 * per_layer, 1e-15);
  const double dense = 122840, expert = 3.0 * 3 * 8 * 64 * 96 / 2;
  EXPECT_NEAR(t.optimizer, (8 * (dense + expert) + 28 * (dense / 2 + expert)) / bw, 1e-15);
}

TEST(PlanStepTime, RankComputeByHand) {
  Cluster k = ideal();
  k.layer_overhead_s = 1e-3;
  // Hardware of its own per rank: the figures as they are, no turns.
  RankCompute r = rank_compute(k, 4);
  EXPECT_DOUBLE_EQ(r.k.gemm_flops, 1e12);
  EXPECT_DOUBLE_EQ(r.turns, 1);
  EXPECT_DOUBLE_EQ(r.threads, 1);
  // With a node's cores (ranks_per_node 8), a rank runs its share of them as threads, which
  // change only its memory: the figures are already a rank's.
  k.cores = 48;
  EXPECT_DOUBLE_EQ(rank_compute(k, 16).threads, 6);
  EXPECT_DOUBLE_EQ(rank_compute(k, 4).threads, 12);  // half a node: 4 ranks on it
  EXPECT_DOUBLE_EQ(rank_compute(k, 16).k.gemm_flops, 1e12);
  EXPECT_DOUBLE_EQ(rank_compute(k, 16).turns, 1);
  k.cores = 4;
  EXPECT_DOUBLE_EQ(rank_compute(k, 16).threads, 1);  // fewer cores than ranks: one thread each
  k.cores = 0;
  k.one_host = true;
  // One host, cores unknown: the figures divided by the ranks, no turns.
  r = rank_compute(k, 4);
  EXPECT_DOUBLE_EQ(r.k.gemm_flops, 0.25e12);
  EXPECT_DOUBLE_EQ(r.k.layer_overhead_s, 4e-3);
  EXPECT_DOUBLE_EQ(r.turns, 1);
  k.cores = 2;
  k.thread_efficiency = 0.8;
  // 1 rank on 2 cores: 2 threads at 80 % of a linear speed-up.
  r = rank_compute(k, 1);
  EXPECT_DOUBLE_EQ(r.k.gemm_flops, 0.8e12);
  EXPECT_DOUBLE_EQ(r.k.layer_overhead_s, 1e-3 / 0.8);
  EXPECT_DOUBLE_EQ(r.turns, 1);
  // 2 ranks: one thread each on a core of its own.
  r = rank_compute(k, 2);
  EXPECT_DOUBLE_EQ(r.k.gemm_flops, 0.5e12);
  EXPECT_DOUBLE_EQ(r.turns, 1);
  // 8 ranks: one thread each, 4 taking turns on every core.
  r = rank_compute(k, 8);
  EXPECT_DOUBLE_EQ(r.k.gemm_flops, 0.5e12);
  EXPECT_DOUBLE_EQ(r.k.layer_overhead_s, 2e-3);
  EXPECT_DOUBLE_EQ(r.turns, 4);
}

// The mean rank waits for the busiest one inside the all-to-all: the difference of their
// expert GEMMs, every layer and micro-batch.
TEST(PlanStepTime, TheBusiestRanksExpertsAreWaitedForInTheAllToAll) {
  Config cfg = model();  // 3 layers, E = 8, K = 2, C = 64, F = 96, 128 tokens per micro-batch
  PlanLayout lay;
  lay.world = 2;
  lay.ranks_per_node = 2;
  lay.ep = 2;  // dp = 2: one micro-batch per rank
  const StepTime even = predict_step(cfg, lay, ideal(), RoutingStats{});
  EXPECT_DOUBLE_EQ(even.a2a_wait, 0.0);
  EXPECT_DOUBLE_EQ(even.sync_wait, 0.0);
  RoutingStats skew;  // rank 0's experts take 3/4 of the assignments
  skew.source = "hand";
  skew.load = {{0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625, 0.0625, 0.0625}};
  const StepTime t = predict_step(cfg, lay, ideal(), skew);
  // A rank's experts see 2 x 128 tokens x K = 512 assignments at share 1; the mean rank runs
  // 256, the busiest 384; 6 C F FLOPs per row and GEMM, 3 GEMMs forward + backward (x 3).
  EXPECT_NEAR(t.experts, even.experts, 1e-15);
  EXPECT_NEAR(t.experts, 3 * 18.0 * 256 * 64 * 96 / 1e12, 1e-15);
  EXPECT_NEAR(t.a2a_wait, 3 * 18.0 * (384 - 256) * 64 * 96 / 1e12, 1e-15);
  EXPECT_DOUBLE_EQ(t.sync_wait, 0.0);
}

// On one host of 2 cores, 4 one-thread ranks take turns, two on each core: every phase lasts
// twice a rank's own compute, and a rank waits out the other's turn in the collective that ends
// the phase (the all-to-all with ep > 1, attention's tp all-reduce with tp > 1, else the
// gradient sync).
TEST(PlanStepTime, RanksTakingTurnsOnOneHostWaitInTheNextCollective) {
  Config cfg = model();
  cfg.train.global_batch = 16;  // dp = 4: one micro-batch per rank
  Cluster k = ideal();
  k.one_host = true;
  k.cores = 2;
  k.layer_overhead_s = 1e-3;
  PlanLayout lay;
  lay.world = 4;
  lay.ranks_per_node = 4;
  lay.ep = 4;
  StepTime t = predict_step(cfg, lay, k, RoutingStats{});
  EXPECT_NEAR(t.overhead, 3 * 2e-3, 1e-15);  // 3 layers, at half the host per rank
  EXPECT_NEAR(t.a2a_wait, t.compute(), 1e-12 * t.compute());
  EXPECT_DOUBLE_EQ(t.sync_wait, 0.0);
  lay.ep = 1;
  t = predict_step(cfg, lay, k, RoutingStats{});
  EXPECT_DOUBLE_EQ(t.a2a_wait, 0.0);
  EXPECT_NEAR(t.sync_wait, t.compute(), 1e-12 * t.compute());
  lay.tp = 2;
  lay.ep = 2;
  cfg.train.global_batch = 8;  // dp = 2
  t = predict_step(cfg, lay, k, RoutingStats{});
  EXPECT_NEAR(t.sync_wait, t.attention, 1e-12 * t.attention);
  EXPECT_NEAR(t.a2a_wait, t.compute() - t.attention, 1e-12 * t.compute());
}

}  // namespace
}  // namespace sy::plan

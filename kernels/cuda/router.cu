// The fused router (softmax or sigmoid scores + group-limited top-k + gates) and the aux / z
// losses (see moe_ops.h and, for the reference, kernels/cpu/moe_ops.cpp and src/model/moe.cpp).
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/moe_ops.h"

namespace sy::cuda {

namespace {

constexpr int kRowsPerBlock = kBlock / kWarp;

// p = sigmoid(z) without overflow: for z < 0 as e^z / (1 + e^z), so a logit below -88 keeps its
// small (denormal) p as the CPU's double-precision sigmoid does, instead of 1 / (1 + inf) = 0.
__device__ __forceinline__ float sigmoid(float z) {
  if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
  const float e = expf(z);
  return e / (1.0f + e);
}

// (score, index) of the better candidate: higher score, ties to the lower index; index E means
// "none". A strict total order, so the xor-butterfly leaves every lane with the same winner.
__device__ __forceinline__ bool better(float s, int i, float best_s, int best_i, int E) {
  if (i >= E) return false;
  if (best_i >= E) return true;
  return s > best_s || (s == best_s && i < best_i);
}

// Leaves every lane of the warp with the better (score, index) over the lanes' candidates.
__device__ __forceinline__ void warp_best(float& best_s, int& best, int none) {
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const float other_s = __shfl_xor_sync(0xffffffffu, best_s, o);
    const int other = __shfl_xor_sync(0xffffffffu, best, o);
    if (better(other_s, other, best_s, best, none)) {
      best_s = other_s;
      best = other;
    }
  }
}

// Group-limited selection of one token (SPEC section 1; cpu::router_forward's kept_groups):
// bit g set when group g is one of the rule.groups_topk best, a group scoring the sum of its
// ceil(K / M) best selection scores score(i) (best first, NaN as -inf). Lane h*32 + lane scores
// group lane + 32 h (R <= kMaxRouteGroups = 64); the M groups are then M warp argmaxes.
template <class ScoreFn>
__device__ uint64_t kept_groups(ScoreFn score, int E, int K, const RouterRule& rule, int lane) {
  if (!rule.limits_groups()) return ~0ull;
  const int R = rule.groups, Eg = E / R, r = rule.group_score_experts(K);
  float group_score[kMaxRouteGroups / kWarp];
  for (int h = 0; h < kMaxRouteGroups / kWarp; ++h) {
    const int g = lane + h * kWarp;
    float sum = -INFINITY;
    if (g < R) {
      // Pass j picks the best expert ranking after pass j-1's pick: the group's j-th best.
      sum = 0.0f;
      float prev_s = 0.0f;
      int prev = E;
      for (int j = 0; j < r; ++j) {
        float best_s = -INFINITY;
        int best = E;
        for (int i = g * Eg; i < (g + 1) * Eg; ++i) {
          float s = score(i);
          if (isnan(s)) s = -INFINITY;
          if (prev < E && !better(prev_s, prev, s, i, E)) continue;
          if (better(s, i, best_s, best, E)) {
            best_s = s;
            best = i;
          }
        }
        sum += best_s;
        prev = best;
        prev_s = best_s;
      }
      if (isnan(sum)) sum = -INFINITY;
    }
    group_score[h] = sum;
  }
  uint64_t kept = 0;
  for (int m = 0; m < rule.groups_topk; ++m) {
    float best_s = -INFINITY;
    int best = R;
    for (int h = 0; h < kMaxRouteGroups / kWarp; ++h) {
      const int g = lane + h * kWarp;
      if (g < R && !((kept >> g) & 1) && better(group_score[h], g, best_s, best, R)) {
        best_s = group_score[h];
        best = g;
      }
    }
    warp_best(best_s, best, R);
    kept |= 1ull << best;
  }
  return kept;
}

__global__ void router_forward_kernel(float* probs, float* lse, int32_t* topk_idx, float* gates,
                                      const float* logits, const float* bias, int N, int E, int K,
                                      RouterRule rule) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (n >= N) return;  // uniform per warp
  const float* z = logits + static_cast<long>(n) * E;
  float* p = probs + static_cast<long>(n) * E;

  float zmax = -INFINITY;
  for (int i = lane; i < E; i += kWarp) zmax = fmaxf(zmax, z[i]);
  zmax = warp_max(zmax);
  float sum = 0.0f;
  for (int i = lane; i < E; i += kWarp) sum += expf(z[i] - zmax);
  sum = warp_sum(sum);
  const float l = zmax + logf(sum);
  if (lane == 0) lse[n] = l;  // the z-loss and its gradient read it
  auto prob = [&](int i) { return rule.sigmoid ? sigmoid(z[i]) : expf(z[i] - l); };
  for (int i = lane; i < E; i += kWarp) p[i] = prob(i);

  // K rounds of warp argmax over the experts of the kept groups not yet taken. Each lane
  // recomputes its own p_i (the same expression as above) instead of reading p back from
  // another lane.
  auto score = [&](int i) { return prob(i) + (bias ? bias[i] : 0.0f); };
  const uint64_t kept = kept_groups(score, E, K, rule, lane);
  const int group_size = E / rule.groups;
  int sel[kMaxTopK];
  for (int j = 0; j < K; ++j) {
    float best_s = -INFINITY;
    int best_i = E;
    for (int i = lane; i < E; i += kWarp) {
      if (!((kept >> (i / group_size)) & 1)) continue;
      bool taken = false;
      for (int q = 0; q < j; ++q) taken = taken || sel[q] == i;
      if (taken) continue;
      float s = score(i);
      if (isnan(s)) s = -INFINITY;  // a diverged step still selects K distinct experts
      if (better(s, i, best_s, best_i, E)) {
        best_s = s;
        best_i = i;
      }
    }
    warp_best(best_s, best_i, E);
    sel[j] = best_i;
  }
  if (lane == 0) {
    float gsum = 0.0f;
    for (int j = 0; j < K; ++j) gsum += prob(sel[j]);
    const float norm = rule.norm_topk ? gsum : 1.0f, scale = static_cast<float>(rule.gate_scale);
    for (int j = 0; j < K; ++j) {
      topk_idx[static_cast<long>(n) * K + j] = sel[j];
      gates[static_cast<long>(n) * K + j] = prob(sel[j]) / norm * scale;
    }
  }
}

// One warp per token; dlogits holds dp until the score step (cpu::router_backward's scheme).
__global__ void router_backward_kernel(float* dlogits, const float* dgates, const float* dprobs,
                                       const float* dlse, const float* probs,
                                       const int32_t* topk_idx, int N, int E, int K,
                                       RouterRule rule) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (n >= N) return;
  const long row = static_cast<long>(n) * E;
  const float* p = probs + row;
  float* dz = dlogits + row;
  const int32_t* sel = topk_idx + static_cast<long>(n) * K;
  const float* dg = dgates + static_cast<long>(n) * K;
  for (int i = lane; i < E; i += kWarp) dz[i] = dprobs ? dprobs[row + i] : 0.0f;
  __syncwarp();
  if (lane == 0) {  // K is small: the gate part serially, in the CPU's order
    const float scale = static_cast<float>(rule.gate_scale);
    if (rule.norm_topk) {
      float s = 0.0f, dot = 0.0f;
      for (int j = 0; j < K; ++j) s += p[sel[j]];
      for (int j = 0; j < K; ++j) dot += dg[j] * scale * p[sel[j]];
      dot /= s;
      for (int j = 0; j < K; ++j) dz[sel[j]] += (dg[j] * scale - dot) / s;
    } else {
      for (int j = 0; j < K; ++j) dz[sel[j]] += dg[j] * scale;
    }
  }
  __syncwarp();
  if (rule.sigmoid) {  // dz_i = dp_i p_i (1 - p_i); no lse gradient
    for (int i = lane; i < E; i += kWarp) dz[i] = dz[i] * p[i] * (1.0f - p[i]);
    return;
  }
  float pdp = 0.0f;
  for (int i = lane; i < E; i += kWarp) pdp += p[i] * dz[i];
  pdp = warp_sum(pdp);
  const float dl = dlse ? dlse[n] : 0.0f;
  __syncwarp();
  for (int i = lane; i < E; i += kWarp) dz[i] = p[i] * (dz[i] - pdp + dl);
}

// One warp per token: score_sum[n] = sum_j probs[n,j] (the sigmoid scores' normaliser).
__global__ void score_sums_kernel(float* score_sum, const float* probs, int N, int E) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (n >= N) return;
  float s = 0.0f;
  for (int i = lane; i < E; i += kWarp) s += probs[static_cast<long>(n) * E + i];
  s = warp_sum(s);
  if (lane == 0) score_sum[n] = s;
}

// The aux loss's per-group sums in two passes, so a group of many tokens (a micro-batch-scope
// group is the whole micro-batch) spreads over many blocks and the sums keep a fixed order:
//   1. block (g, c) over the group's chunk c of kAuxChunk tokens: per expert i, the count of
//      assignments to i and the sum of p_i (or p_i / score_sum with sigmoid scores) into
//      part_count[g,c,i], part_P[g,c,i]. Its threads form R rows x W columns (W = min(E, block)
//      experts at a time, R = block / W tokens at a time), each summing its column over every
//      R-th token; row 0 then adds the R partial sums in row order.
//   2. block g, thread per expert i: f_i and P_i from the chunks in order; grp_frac[g,i] = f_i,
//      terms[g,i] = f_i * P_i. P is summed in double, as the CPU's.
constexpr int kAuxChunk = 1024;

int aux_chunks(int NG) {
  return (NG + kAuxChunk - 1) / kAuxChunk;
}

__global__ void aux_partials_kernel(double* part_P, int32_t* part_count, const float* probs,
                                    const float* score_sum, const int32_t* topk_idx, int E, int K,
                                    int NG, int chunks) {
  __shared__ double s_P[kBlock];
  __shared__ int s_count[kBlock];
  const int g = blockIdx.x / chunks, c = blockIdx.x % chunks;
  const long n0 = static_cast<long>(g) * NG + static_cast<long>(c) * kAuxChunk;
  const long n1 = static_cast<long>(g) * NG + min(NG, (c + 1) * kAuxChunk);
  const int W = min(E, kBlock), R = kBlock / W;
  const int r = threadIdx.x / W, w = threadIdx.x % W;
  const long out = static_cast<long>(blockIdx.x) * E;
  for (int i0 = 0; i0 < E; i0 += W) {
    const int i = i0 + w;
    double P = 0.0;
    int count = 0;
    if (r < R && i < E)
      for (long n = n0 + r; n < n1; n += R) {
        for (int j = 0; j < K; ++j) count += topk_idx[n * K + j] == i ? 1 : 0;
        P += score_sum ? static_cast<double>(probs[n * E + i]) / score_sum[n] : probs[n * E + i];
      }
    s_P[threadIdx.x] = P;
    s_count[threadIdx.x] = count;
    __syncthreads();
    if (r == 0 && i < E) {
      for (int q = 1; q < R; ++q) {
        P += s_P[q * W + w];
        count += s_count[q * W + w];
      }
      part_P[out + i] = P;
      part_count[out + i] = count;
    }
    __syncthreads();  // s_P is rewritten by the next column block
  }
}

__global__ void aux_terms_kernel(float* grp_frac, float* terms, const double* part_P,
                                 const int32_t* part_count, int E, int K, int NG, int chunks) {
  const int g = blockIdx.x;
  for (int i = threadIdx.x; i < E; i += blockDim.x) {
    double P = 0.0;
    long count = 0;
    for (int c = 0; c < chunks; ++c) {
      const long at = (static_cast<long>(g) * chunks + c) * E + i;
      P += part_P[at];
      count += part_count[at];
    }
    const double f = static_cast<double>(count) / (static_cast<double>(NG) * K);
    grp_frac[static_cast<long>(g) * E + i] = static_cast<float>(f);
    terms[static_cast<long>(g) * E + i] = static_cast<float>(f * (P / static_cast<double>(NG)));
  }
}

// One block: loss = {aux_coeff*E*sum(terms)*group_weight, z_coeff*sum(lse^2)*token_weight}.
__global__ void loss_sum_kernel(double* loss, const float* terms, long num_terms, const float* lse,
                                int N, double aux_scale, double z_scale) {
  double a = 0.0, z = 0.0;
  for (long i = threadIdx.x; i < num_terms; i += blockDim.x) a += terms[i];
  for (long n = threadIdx.x; n < N; n += blockDim.x) z += static_cast<double>(lse[n]) * lse[n];
  a = block_sum_f64(a);
  z = block_sum_f64(z);
  if (threadIdx.x == 0) {
    loss[0] = a * aux_scale;
    loss[1] = z * z_scale;
  }
}

__global__ void losses_backward_kernel(float* dprobs, float* dlse, const float* grp_frac,
                                       const float* lse, int N, int E, int NG, float aux_scale,
                                       float z_scale) {
  const long total = static_cast<long>(N) * E;
  for (long idx = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<long>(gridDim.x) * blockDim.x) {
    const long n = idx / E;
    const int i = static_cast<int>(idx % E);
    dprobs[idx] = aux_scale * grp_frac[(n / NG) * E + i];
    if (i == 0) dlse[n] = z_scale * lse[n];
  }
}

// Sigmoid scores, one warp per token: with S = sum_j p_j and q = p / S,
// dprobs[n,k] = aux_scale * (f_k - sum_i f_i q_i) / S;  dlse[n] = z_scale * lse[n].
__global__ void sigmoid_losses_backward_kernel(float* dprobs, float* dlse, const float* grp_frac,
                                               const float* lse, const float* probs, int N, int E,
                                               int NG, float aux_scale, float z_scale) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (n >= N) return;
  const float* p = probs + static_cast<long>(n) * E;
  const float* f = grp_frac + static_cast<long>(n / NG) * E;
  float S = 0.0f, fp = 0.0f;
  for (int i = lane; i < E; i += kWarp) {
    S += p[i];
    fp += f[i] * p[i];
  }
  S = warp_sum(S);
  const float fq = warp_sum(fp) / S;
  for (int i = lane; i < E; i += kWarp)
    dprobs[static_cast<long>(n) * E + i] = aux_scale * (f[i] - fq) / S;
  if (lane == 0) dlse[n] = z_scale * lse[n];
}

unsigned row_blocks(int rows) {
  return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}

}  // namespace

void router_forward(float* probs, float* lse, int32_t* topk_idx, float* gates, const float* logits,
                    const float* bias, int N, int E, int K, const RouterRule& rule,
                    cudaStream_t stream) {
  if (K < 1 || K > kMaxTopK || K > E)
    throw CudaError("router_forward: top_k " + std::to_string(K) + " not in [1, min(" +
                    std::to_string(kMaxTopK) + ", E=" + std::to_string(E) + ")]");
  if (!rule.valid_for(E, K))
    throw CudaError("router_forward: " + std::to_string(E) + " experts top-" + std::to_string(K) +
                    " cannot form " + std::to_string(rule.groups) + " groups keeping " +
                    std::to_string(rule.groups_topk));
  if (N == 0) return;
  router_forward_kernel<<<row_blocks(N), kBlock, 0, stream>>>(probs, lse, topk_idx, gates, logits,
                                                              bias, N, E, K, rule);
  SY_CUDA_LAUNCH_CHECK("router_forward_kernel");
}

void router_backward(float* dlogits, const float* dgates, const float* dprobs, const float* dlse,
                     const float* probs, const int32_t* topk_idx, int N, int E, int K,
                     const RouterRule& rule, cudaStream_t stream) {
  if (rule.sigmoid && dlse)
    throw CudaError("router_backward: no lse gradient under sigmoid scores (no z-loss)");
  if (N == 0) return;
  router_backward_kernel<<<row_blocks(N), kBlock, 0, stream>>>(dlogits, dgates, dprobs, dlse, probs,
                                                               topk_idx, N, E, K, rule);
  SY_CUDA_LAUNCH_CHECK("router_backward_kernel");
}

long router_losses_scratch(int N, int E, int NG) {
  if (NG <= 0) return 1;
  const long G = N / NG, parts = G * aux_chunks(NG) * E;
  return 3 * parts + G * E + N + 1;
}

void router_losses_forward(double* loss, float* grp_frac, float* scratch, const float* probs,
                           const float* lse, const int32_t* topk_idx, int N, int E, int K, int NG,
                           double aux_coeff, double z_coeff, double token_weight,
                           double group_weight, cudaStream_t stream, bool sigmoid_scores) {
  if (NG <= 0 || N % NG != 0)
    throw CudaError("router_losses_forward: " + std::to_string(N) +
                    " tokens are not whole groups of " + std::to_string(NG));
  const int G = N / NG;
  // scratch: part_P[G*chunks*E] doubles (the allocation's start, 8-byte aligned), then
  // part_count[G*chunks*E] int32, terms[G*E], score_sum[N] (router_losses_scratch).
  const int chunks = aux_chunks(NG);
  const long parts = static_cast<long>(G) * chunks * E;
  auto* part_P = reinterpret_cast<double*>(scratch);
  auto* part_count = reinterpret_cast<int32_t*>(scratch + 2 * parts);
  float* terms = scratch + 3 * parts;
  float* score_sum = nullptr;
  if (sigmoid_scores && N > 0) {
    score_sum = terms + static_cast<long>(G) * E;
    score_sums_kernel<<<row_blocks(N), kBlock, 0, stream>>>(score_sum, probs, N, E);
    SY_CUDA_LAUNCH_CHECK("score_sums_kernel");
  }
  if (G > 0) {
    aux_partials_kernel<<<static_cast<unsigned>(static_cast<long>(G) * chunks), kBlock, 0,
                          stream>>>(part_P, part_count, probs, score_sum, topk_idx, E, K, NG,
                                    chunks);
    SY_CUDA_LAUNCH_CHECK("aux_partials_kernel");
    aux_terms_kernel<<<G, kBlock, 0, stream>>>(grp_frac, terms, part_P, part_count, E, K, NG,
                                               chunks);
    SY_CUDA_LAUNCH_CHECK("aux_terms_kernel");
  }
  // No z-loss under sigmoid scores (SPEC section 1; cpu MoeLayer never computes it): no lse is
  // summed, so one that is not finite (a logit of +inf) cannot make it NaN * 0.
  loss_sum_kernel<<<1, kBlock, 0, stream>>>(loss, terms, static_cast<long>(G) * E, lse,
                                            sigmoid_scores ? 0 : N, aux_coeff * E * group_weight,
                                            sigmoid_scores ? 0.0 : z_coeff * token_weight);
  SY_CUDA_LAUNCH_CHECK("loss_sum_kernel");
}

void router_losses_backward(float* dprobs, float* dlse, const float* grp_frac, const float* lse,
                            int N, int E, int NG, double aux_coeff, double z_coeff,
                            double token_weight, double group_weight, cudaStream_t stream,
                            const float* sigmoid_probs) {
  const long total = static_cast<long>(N) * E;
  if (total == 0) return;
  const auto aux_scale = static_cast<float>(group_weight * aux_coeff * E / NG);
  const auto z_scale = static_cast<float>(2.0 * token_weight * z_coeff);
  if (sigmoid_probs) {
    sigmoid_losses_backward_kernel<<<row_blocks(N), kBlock, 0, stream>>>(
        dprobs, dlse, grp_frac, lse, sigmoid_probs, N, E, NG, aux_scale, z_scale);
    SY_CUDA_LAUNCH_CHECK("sigmoid_losses_backward_kernel");
    return;
  }
  losses_backward_kernel<<<grid_for(total), kBlock, 0, stream>>>(dprobs, dlse, grp_frac, lse, N, E,
                                                                 NG, aux_scale, z_scale);
  SY_CUDA_LAUNCH_CHECK("losses_backward_kernel");
}

}  // namespace sy::cuda

// The routing statistics the planner assumes, and the probabilities it derives from them: how
// likely a token is to reach a given EP rank or node (which decides all-to-all rows after
// deduplication), and how many assignments the busiest rank's experts get (which decides its
// expert GEMMs and its buffers).
//
// Uniform routing is exact: a token's K experts are a uniformly random K-subset of the E experts
// (of the experts of its M kept groups under group-limited routing, SPEC section 1, each kept
// group set equally likely), so "at least one of a contiguous set of s experts" is a
// hypergeometric miss probability. Measured routing (a run's expert_load, optionally its
// co-activation) enters through the same formulas with the set's measured share of the
// assignments in place of s / E (routing.cpp says how co-activation corrects it).
//
// Letters: E experts, K top-k, R groups, M groups a token may use (route_groups_topk),
// g = E / R experts per group.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sy::plan {

struct RoutingStats {
  std::string source = "uniform";
  // [L][E] each expert's share of its layer's assignments (sums to 1); empty = uniform. A layer
  // index beyond the measured ones uses the last measured layer.
  std::vector<std::vector<double>> load;
  // [L][E] each expert's largest share over the measured steps (buffers grow to the busiest step
  // they see); empty = the same as `load`.
  std::vector<std::vector<double>> peak_load;
  // [S][L][E] the loads of every measured step (what a capacity drops depends on the busy
  // steps, not on the mean); empty = use `load`.
  std::vector<std::vector<std::vector<double>>> step_loads;
  // [L][E*E] the fraction of tokens whose top-k holds both expert i and expert j (i != j; the
  // diagonal is ignored); empty = not measured.
  std::vector<std::vector<double>> pairs;
  // [L][S*K] the top-k of S sampled tokens per layer (coactivation.h5's /sample); empty = none.
  // When present, "a token reaches this rank" is counted on the sample itself (exact for any k).
  std::vector<std::vector<int32_t>> sample;
  int64_t sample_k = 0;
  bool uniform() const { return load.empty(); }
};

struct RouteShape {
  int64_t E = 1, K = 1;
  int64_t groups = 1, groups_topk = 1;  // R, M (1, 1: plain top-k)
};

// C(n, K) / C(m, K) for real n <= m (the product of (n - j) / (m - j), j < K; 0 once n - j <= 0):
// the probability that K draws without replacement from m items all miss m - n marked ones.
double choose_ratio(double n, double m, int64_t K);

// P(a token's K experts include at least one of a contiguous set of `set_size` experts), uniform
// scores. A set inside one group, or a whole number of groups (contiguous sets are aligned to
// groups: EP ranks and nodes hold contiguous experts); a fractional set_size (measured shares)
// is interpolated by the same formula.
double hit_probability(const RouteShape& r, double set_size);

// The same with measured routing for the experts [first, first + count) of `layer`: the set's
// measured share replaces set_size / E; with co-activation measured (and no route groups), the
// pairs of the token's experts inside the set correct it (see routing.cpp).
double hit_probability(const RouteShape& r, const RoutingStats& s, int64_t layer, int64_t first,
                       int64_t count);

// The entry of `layer` in a per-layer record (the last layer's when the record is shorter), or
// null when the record is empty.
const std::vector<double>* layer_of(const std::vector<std::vector<double>>& v, int64_t layer);

// The measured share of the assignments of experts [first, first + count) of `layer`
// (count / E when uniform).
double assignment_share(const RoutingStats& s, int64_t E, int64_t layer, int64_t first,
                        int64_t count);

// How many of the S tokens of `topk` [S*K] (whole tokens' top-k, coactivation.h5's sample) have
// at least one of their K experts in each of `parts` parts of the experts, expert e being in
// part part_of[e] (its EP rank or node under a placement); experts outside part_of, and parts
// outside [0, parts), count nothing. What the planner and `switchyard placement` count on the
// sample.
std::vector<int64_t> tokens_reaching_parts(std::span<const int32_t> topk, int64_t K,
                                           std::span<const int32_t> part_of, int64_t parts);

// From the sample of `layer` (routing.sample): for each of the E / set_size contiguous sets of
// set_size experts, the fraction of sampled tokens with at least one expert in it. Empty when
// there is no sample for a layout of E experts.
std::vector<double> sample_hit_fractions(const RoutingStats& s, int64_t E, int64_t layer,
                                         int64_t set_size);

// The same at the busiest measured step (peak_load): what the rank's buffers grow to.
double peak_assignment_share(const RoutingStats& s, int64_t E, int64_t layer, int64_t first,
                             int64_t count);

// The buffer quantile: the largest of ~10^4 draws a run makes (micro-batches x layers), i.e. the
// 1 - 1e-4 quantile of one draw, z = 3.72 standard deviations above the mean under the normal
// approximation of the count.
inline constexpr double kBufferQuantileZ = 3.72;

// Assignments that `tokens` tokens give a set of experts holding `share` of the assignments:
// mean tokens * K * share, and its value at the buffer quantile (each token adds a
// hypergeometric count with s = share * E marked of E, K drawn; variance
// K (s/E)(1 - s/E)(E - K)/(E - 1) per token).
struct AssignmentCount {
  double mean = 0, quantile = 0;
};
AssignmentCount assignments(double tokens, int64_t E, int64_t K, double share);

}  // namespace sy::plan

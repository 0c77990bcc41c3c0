// <run dir>/coactivation.h5: which experts the router chooses together (issue 17), written by the
// trainer (src/train/coactivation.h) at every log step and read by `switchyard placement` and
// `switchyard plot`.
//
// A file of its own rather than part of the checkpoint: the checkpoint schema (SPEC section 5)
// stays as it is, a run without checkpoints still records its routing, and the counts of the
// latest log step are there while the run is going.
//
//   /        attrs: format ("switchyard-coactivation"), format_version (1), num_layers,
//                   num_experts, top_k, first_step, last_step, tokens, sample_step
//   /counts  int64 [NL, E, E]  counts[l, i, j] (i != j): tokens whose top-k in layer l holds both
//                              i and j; counts[l, i, i]: tokens that chose i (its load). Summed
//                              over every rank (each token once) and every training step
//                              first_step+1 .. last_step; `tokens` per layer over the same steps.
//   /sample  int32 [NL, S, K]  the top-k of S tokens of step sample_step (every data-parallel
//                              rank's share, at most 65536 tokens): the routing of whole tokens,
//                              from which the traffic of a placement follows when k > 2 (the
//                              pair counts say it exactly for k <= 2 only).
//   Where the run has written a checkpoint: root attrs checkpoint_step and checkpoint_tokens,
//   and /checkpoint_counts int64 [NL, E, E], the counts as of that step (absent while
//   checkpoint_step == last_step: /counts then). A run resumed from that checkpoint continues
//   from them, so the steps after it that a crash left counted are not counted twice. The same
//   for the checkpoint before it (previous_checkpoint_step, previous_checkpoint_tokens,
//   /previous_checkpoint_counts): the newest one may be set aside after a numerical failure,
//   and the run resume from the one before. Root attrs recounted_steps and uncounted_steps,
//   where not 0: steps counted twice or not at all after a resume (Coactivation says when); the
//   same of each checkpoint's counts as <name>_recounted_steps and <name>_uncounted_steps.
//   Root attrs route_groups and route_groups_topk: the routing the counts were gathered under
//   (moe.route_groups as the run resolved it; 1 and 1 for plain top-k, also where the groups
//   limit nothing), absent in a file from before them; other_routing_steps, where not 0: of the
//   steps counted, at most how many were routed otherwise (a resume that changed the routing:
//   route_groups: nodes on another node count; or the steps of a file from before the routing
//   was recorded, whose routing is not known). Each checkpoint's counts have their own
//   (<name>_route_groups, <name>_route_groups_topk, <name>_other_routing_steps).
//
// Letters: NL layers, E experts, K top-k, S sampled tokens.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sy {

// The routing counts were gathered under: a token's top-k from the `topk` best of `groups` groups
// (1, 1: plain top-k; 0, 0: not recorded, a file from before it), and of the steps counted, at
// most how many were routed otherwise.
struct CoactivationRouting {
  int groups = 0, topk = 0;
  int64_t other_steps = 0;

  // (route_groups, route_groups_topk) as recorded: groups that limit nothing are plain top-k.
  static CoactivationRouting of(int64_t route_groups, int64_t route_groups_topk);
  bool known() const { return groups > 0; }
  bool same_selection(const CoactivationRouting& o) const {
    return groups == o.groups && topk == o.topk;
  }
  std::string describe() const;  // "plain top-k", "the best 1 of 4 expert groups"
};

// The counts as of one checkpoint's step (with Coactivation's tallies of that step).
struct CoactivationAt {
  int64_t step = -1;  // -1: none
  int64_t tokens = 0;
  std::vector<int64_t> counts;  // [NL*E*E] when step >= 0
  int64_t recounted_steps = 0, uncounted_steps = 0;
  CoactivationRouting routing;
};

struct Coactivation {
  int num_layers = 0, num_experts = 0, top_k = 0;
  int64_t first_step = 0, last_step = 0;  // the steps counted are first_step+1 .. last_step
  int64_t tokens = 0;                     // tokens counted per layer
  int64_t sample_step = 0;
  std::vector<int64_t> counts;  // [NL*E*E]
  std::vector<int32_t> sample;  // [NL*S*K]
  // The counts as of the two newest checkpoints' steps, newest first (an older file has none).
  std::array<CoactivationAt, 2> checkpoints;
  // Of the steps first_step+1 .. last_step, at most how many the counts hold twice (a resume
  // from a checkpoint older than the counts, which have none of its step: the steps it counts
  // again) and at most how many not at all (the file could not be written before the run
  // stopped); each resume's log said which. Exact but where both kinds meet (a step missed, then
  // counted again, stays in both); a resume from a checkpoint's counts restores its tallies.
  int64_t recounted_steps = 0, uncounted_steps = 0;
  CoactivationRouting routing;  // of the latest steps counted

  int64_t sample_tokens() const;  // S
  const int64_t* layer_counts(int layer) const {
    return counts.data() + static_cast<size_t>(layer) * num_experts * num_experts;
  }
  const int32_t* layer_sample(int layer) const {
    return sample.data() + static_cast<size_t>(layer * sample_tokens() * top_k);
  }
};

// Throws UsageError naming the file: missing, not HDF5, not a co-activation file, or shapes that
// disagree with its attributes.
Coactivation read_coactivation(const std::string& path);

// Writes `c` to `path` atomically (a temporary file renamed over it), one process (serial HDF5).
// Throws Error (exit 1) naming the file when it cannot fit (no space, ulimit -f), before writing.
void write_coactivation(const std::string& path, const Coactivation& c);

}  // namespace sy

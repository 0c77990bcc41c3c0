#include "src/train/coactivation.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <ostream>
#include <span>
#include <string>
#include <utility>

#include "comm/collectives.h"
#include "src/core/error.h"

namespace sy {

namespace {
// The sample holds at most 65536 tokens, and at most 2^22 top-k entries (16 MB gathered per log
// step) on models with many layers and a large k.
int64_t sample_limit(int64_t num_layers, int64_t top_k) {
  return std::max<int64_t>(1024,
                           std::min<int64_t>(65536, (int64_t{1} << 22) / (num_layers * top_k)));
}
}  // namespace

void add_coactivation(int64_t* counts, int E, const int32_t* topk, int64_t n, int K) {
  for (int64_t t = 0; t < n; ++t) {
    const int32_t* e = topk + t * K;
    for (int i = 0; i < K; ++i) {
      if (e[i] < 0) continue;
      const size_t a = static_cast<size_t>(e[i]);
      ++counts[a * E + a];
      for (int j = i + 1; j < K; ++j) {
        if (e[j] < 0) continue;
        const size_t b = static_cast<size_t>(e[j]);
        ++counts[a * E + b];
        ++counts[b * E + a];
      }
    }
  }
}

CoactivationCounter::CoactivationCounter(const Config& cfg, bool rank0, bool samples,
                                         int world_size, int64_t resumed_step, std::ostream& log)
    : path_((std::filesystem::path(cfg.run.out_dir) / "coactivation.h5").string()),
      rank0_(rank0),
      samples_(samples),
      max_sample_(sample_limit(cfg.model.n_layers, cfg.moe.top_k) / world_size) {
  const int NL = static_cast<int>(cfg.model.n_layers), E = static_cast<int>(cfg.moe.num_experts);
  pending_.assign(static_cast<size_t>(NL) * E * E + 1, 0);  // + the token count
  sample_.resize(static_cast<size_t>(NL));
  total_.num_layers = NL;
  total_.num_experts = E;
  total_.top_k = static_cast<int>(cfg.moe.top_k);
  total_.first_step = total_.last_step = std::max<int64_t>(resumed_step, 0);
  const CoactivationRouting routing =
      CoactivationRouting::of(cfg.moe.route_groups.count, cfg.moe.route_groups_topk);
  total_.routing = routing;
  if (rank0_) total_.counts.assign(static_cast<size_t>(NL) * E * E, 0);  // rank 0 writes it
  if (!rank0_ || resumed_step < 0 || !std::filesystem::exists(path_)) return;
  try {
    Coactivation old = read_coactivation(path_);
    if (old.num_layers == NL && old.num_experts == E && old.top_k == total_.top_k) {
      log << "co-activation: continuing the counts of " << path_ << " (from step " << old.first_step
          << ")";
      const auto at = std::find_if(old.checkpoints.begin(), old.checkpoints.end(),
                                   [&](const CoactivationAt& c) { return c.step == resumed_step; });
      const bool restored = old.last_step > resumed_step && at != old.checkpoints.end();
      // The steps the counts hold: up to the checkpoint's own step where its counts are taken
      // back, else all the file counted (a resume from an older checkpoint keeps them).
      const int64_t counted = (restored ? resumed_step : old.last_step) - old.first_step;
      if (restored) {
        // Counted past the checkpoint before a crash (or past a newer checkpoint set aside after
        // a numerical failure): its own counts, the later ones dropped.
        log << " as of the checkpoint's step " << resumed_step << " (steps " << resumed_step + 1
            << ".." << old.last_step << ", counted before the run stopped, are dropped)";
        old.counts = at->counts;
        old.tokens = at->tokens;
        old.recounted_steps = at->recounted_steps;
        old.uncounted_steps = at->uncounted_steps;
        old.routing = at->routing;
      } else if (old.last_step > resumed_step) {  // an older checkpoint: no counts of its step
        log << "; it counted steps up to " << old.last_step << ", so steps " << resumed_step + 1
            << ".." << old.last_step << " will be counted twice";
        recount_ = {resumed_step, old.last_step, old.recounted_steps};  // tallied as counted
      } else if (old.last_step < resumed_step) {  // the run stopped when it could not write them
        log << "; it counted steps up to " << old.last_step << " only (the file could not be "
            << "written after that), so steps " << old.last_step + 1 << ".." << resumed_step
            << " are not in the counts";
        old.uncounted_steps += resumed_step - old.last_step;
      }
      old.last_step = resumed_step;
      // The checkpoint resumed from is the newest; an older one's counts are kept before it.
      CoactivationAt before;
      for (CoactivationAt& c : old.checkpoints)
        if (c.step >= 0 && c.step < resumed_step && c.step > before.step) before = std::move(c);
      old.checkpoints = {CoactivationAt{resumed_step, old.tokens, old.counts, old.recounted_steps,
                                        old.uncounted_steps, old.routing},
                         std::move(before)};
      // Another routing from here on (route_groups: nodes on another node count): the steps
      // counted so far chose their experts otherwise, which `placement` says.
      if (old.routing.known() && !old.routing.same_selection(routing)) {
        log << "; they were routed with " << old.routing.describe() << ", this run routes with "
            << routing.describe() << " (`switchyard placement` says so of the counts)";
        old.routing = {routing.groups, routing.topk, counted};
      } else if (!old.routing.known()) {  // a file from before the routing was recorded
        if (counted > 0)
          log << "; they do not record their routing (a file from before it was recorded), so "
              << "`switchyard placement` counts their " << counted << " steps as routed otherwise";
        old.routing = {routing.groups, routing.topk, counted};
      }
      log << "\n";
      total_ = std::move(old);
      return;
    }
    log << "co-activation: " << path_ << " holds another model's counts; starting afresh\n";
  } catch (const UsageError& e) {
    log << "warning: co-activation: " << e.what() << "; starting afresh\n";
  }
}

void CoactivationCounter::begin_step(int64_t step, bool keep_sample) {
  keep_sample_ = keep_sample && samples_;
  if (!keep_sample) return;
  sample_step_ = step + 1;
  for (auto& s : sample_) s.clear();
}

void CoactivationCounter::add(const Model<float>& model) {
  for (int l = 0; l < total_.num_layers; ++l)
    add_layer(l, model.moe_layer(l).topk(), model.moe_layer(l).num_tokens());
}

void CoactivationCounter::add_layer(int layer, const int32_t* topk, int64_t n) {
  const int E = total_.num_experts, K = total_.top_k;
  add_coactivation(pending_.data() + static_cast<size_t>(layer) * E * E, E, topk, n, K);
  if (keep_sample_) {
    auto& s = sample_[static_cast<size_t>(layer)];
    const int64_t room = max_sample_ - static_cast<int64_t>(s.size()) / K;
    s.insert(s.end(), topk, topk + std::clamp<int64_t>(room, 0, n) * K);
  }
  if (layer == 0) pending_.back() += n;  // tokens, counted once per micro-batch
}

void CoactivationCounter::flush(const comm::Comm& world, int tp, int64_t done, comm::Watchdog* wd,
                                bool at_checkpoint) {
  comm::allreduce_sum(std::span<int64_t>(pending_), world, wd, "co-activation counts");
  // The sample: every rank's tokens of the step, layer by layer, in rank order.
  const int NL = total_.num_layers;
  std::vector<int64_t> per_rank(static_cast<size_t>(world.size()), 0);  // entries (S_r * K * NL)
  per_rank[static_cast<size_t>(world.rank())] = static_cast<int64_t>(sample_[0].size()) * NL;
  comm::allreduce_sum(std::span<int64_t>(per_rank), world, wd, "co-activation sample sizes");
  const int64_t all = std::accumulate(per_rank.begin(), per_rank.end(), int64_t{0});
  std::vector<int32_t> mine, gathered(static_cast<size_t>(all));
  for (const auto& s : sample_) mine.insert(mine.end(), s.begin(), s.end());
  if (all > 0)
    comm::allgatherv(std::span<const int32_t>(mine), std::span<int32_t>(gathered),
                     std::span<const int64_t>(per_rank), world, wd, "co-activation sample");
  if (rank0_) {
    for (size_t i = 0; i < total_.counts.size(); ++i) total_.counts[i] += pending_[i] / tp;
    total_.tokens += pending_.back() / tp;
    total_.last_step = done;
    if (recount_.until > recount_.from)  // the steps counted again so far
      total_.recounted_steps =
          recount_.before + std::clamp(done, recount_.from, recount_.until) - recount_.from;
    if (all > 0) {  // [ranks][NL][S_r*K] -> [NL][ranks][S_r*K]
      total_.sample.clear();
      for (int l = 0; l < NL; ++l) {
        int64_t at = 0;
        for (int64_t n : per_rank) {
          const int64_t layer_len = n / NL;
          const auto first = gathered.begin() + at + l * layer_len;
          total_.sample.insert(total_.sample.end(), first, first + layer_len);
          at += n;
        }
      }
      total_.sample_step = sample_step_;
    }
    if (at_checkpoint) {  // the newest checkpoint's counts; the one before it kept
      auto& cps = total_.checkpoints;
      if (cps[0].step != done) cps[1] = std::exchange(cps[0], {});
      cps[0] = CoactivationAt{done,
                              total_.tokens,
                              total_.counts,
                              total_.recounted_steps,
                              total_.uncounted_steps,
                              total_.routing};
    }
  }
  // Rank 0 writes alone; every rank learns whether it could, so that a file that cannot be
  // written (a full run.out_dir) ends all ranks together with rank 0's message, instead of rank 0
  // alone while the others wait for it in the next collective.
  std::string failure;
  if (rank0_) {
    try {
      write_coactivation(path_, total_);
    } catch (const std::exception& e) {
      failure = e.what();
      if (failure.empty()) failure = "writing the co-activation counts '" + path_ + "' failed";
    }
  }
  int64_t failed = failure.empty() ? 0 : 1;
  comm::allreduce_sum(std::span<int64_t>(&failed, 1), world, wd, "co-activation file written");
  std::fill(pending_.begin(), pending_.end(), 0);  // in rank 0's total either way
  for (auto& s : sample_) s.clear();
  if (failed != 0) {
    failed_ = true;  // the run stops: a checkpoint before it does not try again
    throw Error(kExitOther, failure, /*quiet=*/!rank0_);
  }
}

}  // namespace sy

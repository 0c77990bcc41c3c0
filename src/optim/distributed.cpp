#include "src/optim/distributed.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "comm/collectives.h"
#include "src/core/error.h"

namespace sy {

namespace {

const comm::Comm& group_comm(const OptimComms& c, ParamGroup g) {
  const comm::Comm* comm = g == ParamGroup::kDense ? c.dp : c.edp;
  SY_CHECK(comm, "no communicator for a parameter group");
  return *comm;
}

// Buckets of one group's range, each a multiple of the group size.
void make_buckets(std::vector<std::pair<size_t, size_t>>& out, ParamTable::Range r, size_t p,
                  size_t bucket_elems) {
  SY_CHECK(r.size % p == 0, "group of " << r.size << " elements not padded to " << p << " ranks");
  const size_t step = std::max(p, bucket_elems / p * p);
  for (size_t at = 0; at < r.size; at += step)
    out.emplace_back(r.first + at, std::min(step, r.size - at));
}

// The AdamW segments for [first, first + n) of the local buffer, moments from moment_at on.
void segments_of(std::vector<AdamW::Segment>& out, const ParamTable& t, size_t first, size_t n,
                 size_t moment_at) {
  for (const ParamSpec& s : t.specs()) {
    const size_t lo = std::max(first, s.offset), hi = std::min(first + n, s.offset + s.numel);
    if (lo < hi) out.push_back({lo, moment_at + (lo - first), hi - lo, s.kind});
  }
}

}  // namespace

void DistributedOptimizer::for_each_own_chunk(size_t& moment_at, auto&& f) const {
  for (const Bucket& b : buckets_) {
    f(b, b.own_first(), b.chunk(), moment_at);
    moment_at += b.chunk();
  }
}

DistributedOptimizer::DistributedOptimizer(const ParamTable& table, const OptimComms& comms,
                                           bool zero1, double weight_decay, size_t bucket_elems)
    : table_(table),
      comms_(comms),
      zero1_(zero1),
      adam_(std::vector<AdamW::Segment>{}, 0, weight_decay) {
  SY_CHECK(comms.world && comms.tp && comms.dp && comms.edp, "missing communicators");
  for (ParamGroup g : {ParamGroup::kDense, ParamGroup::kExpert}) {
    const comm::Comm& c = group_comm(comms, g);
    std::vector<std::pair<size_t, size_t>> ranges;
    make_buckets(ranges, table.group_range(g), static_cast<size_t>(c.size()), bucket_elems);
    for (auto [first, size] : ranges) buckets_.push_back({first, size, &c});
  }
  size_t max_chunk = 0, router_numel = 0;
  for (const Bucket& b : buckets_) max_chunk = std::max(max_chunk, b.chunk());
  for (const ParamSpec& s : table.specs())
    if (s.tp_mode == TpMode::kPartialGrad) {
      router_.emplace_back(s.offset, s.numel);
      router_numel += s.numel;
    }
  scratch_.resize(std::max(max_chunk, router_numel));

  // This rank's chunks: the elements it reduces, counts in the norm and (ZeRO-1) updates.
  size_t moment_at = 0;
  std::vector<AdamW::Segment> own;
  for_each_own_chunk(moment_at, [&](const Bucket&, size_t first, size_t n, size_t m_at) {
    for (const ParamSpec& s : table.specs()) {
      const size_t lo = std::max(first, s.offset), hi = std::min(first + n, s.offset + s.numel);
      if (lo < hi && s.in_norm) norm_.emplace_back(lo, hi - lo);
    }
    segments_of(own, table, first, n, m_at);
  });
  if (zero1_) {
    adam_ = AdamW(std::move(own), moment_at, weight_decay);
  } else {
    adam_ = AdamW(table, weight_decay);
  }
}

double DistributedOptimizer::reduce_gradients(float* grads) {
  comm::Watchdog* wd = comms_.watchdog;
  // 1. Router: each tp rank differentiated its share of the tokens.
  if (comms_.tp->size() > 1 && !router_.empty()) {
    size_t at = 0;
    for (auto [off, n] : router_) {
      std::copy(grads + off, grads + off + n, scratch_.begin() + static_cast<long>(at));
      at += n;
    }
    comm::allreduce_sum(std::span<float>(scratch_.data(), at), *comms_.tp, wd,
                        "router gradients over tp");
    at = 0;
    for (auto [off, n] : router_) {
      std::copy(scratch_.begin() + static_cast<long>(at),
                scratch_.begin() + static_cast<long>(at + n), grads + off);
      at += n;
    }
  }
  // 2. The data-parallel sums, bucket by bucket.
  for (const Bucket& b : buckets_) {
    if (b.comm->size() == 1) continue;
    const size_t c = b.chunk();
    comm::reduce_scatter_sum(std::span<const float>(grads + b.first, b.size),
                             std::span<float>(scratch_.data(), c), *b.comm, wd, "gradient bucket");
    std::copy(scratch_.begin(), scratch_.begin() + static_cast<long>(c), grads + b.own_first());
    if (!zero1_)
      comm::allgather_inplace(std::span<float>(grads + b.first, b.size), *b.comm, wd,
                              "gradient bucket");
  }
  // 3. The norm over every unique element, each counted by exactly one rank.
  double sq = 0.0;
  for (auto [off, n] : norm_) sq += grad_sq_sum(grads + off, n);
  comm::allreduce_sum(std::span<double>(&sq, 1), *comms_.world, wd, "gradient norm");
  return std::sqrt(sq);
}

int64_t DistributedOptimizer::step(float* params, const float* grads, double lr,
                                   double grad_scale) {
  const int64_t nonfinite = adam_.step(params, grads, lr, grad_scale);
  if (!zero1_) return nonfinite;
  for (const Bucket& b : buckets_)
    comm::allgather_inplace(std::span<float>(params + b.first, b.size), *b.comm, comms_.watchdog,
                            "updated parameters");
  return nonfinite;
}

std::vector<DistributedOptimizer::MomentRun> DistributedOptimizer::moment_runs() const {
  if (!zero1_) return {{0, table_.total_numel(), 0}};
  std::vector<MomentRun> runs;
  size_t moment_at = 0;
  for_each_own_chunk(moment_at, [&](const Bucket&, size_t first, size_t n, size_t at) {
    if (n > 0) runs.push_back({first, n, at});
  });
  return runs;
}

}  // namespace sy

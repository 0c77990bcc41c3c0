#include "src/train/rank_memory.h"

#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <optional>
#include <string>

#include "comm/watchdog.h"
#include "kernels/cpu/gemm.h"
#include "src/core/error.h"
#include "src/plan/io/plan_inputs.h"
#include "src/plan/layout.h"
#include "src/plan/memory.h"
#include "src/plan/plan.h"

namespace sy {

MemoryBudget host_memory_budget(const comm::Comm& world) {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_CHECK(
      MPI_Comm_split_type(world.get(), MPI_COMM_TYPE_SHARED, world.rank(), MPI_INFO_NULL, &node));
  const comm::Comm node_comm(node);
  return host_memory_budget(node_comm.size());
}

namespace {

// This process's address-space limit (ulimit -v, RLIMIT_AS) in bytes; nullopt when there is none.
std::optional<double> address_space_limit() {
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY) return std::nullopt;
  return static_cast<double>(as.rlim_cur);
}

// This process's mapped address space (/proc/self/status VmSize), in bytes; 0 when unreadable.
double mapped_bytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmSize:")) return std::atof(line.c_str() + 7) * 1024.0;
  return 0.0;
}

}  // namespace

MemoryBudget host_memory_budget(int64_t node_ranks) {
  MemoryBudget b;
  b.node_ranks = node_ranks;
  const double host = plan::host_memory_bytes();
  b.bytes = host / static_cast<double>(b.node_ranks);
  b.what = "host memory " + plan::format_bytes(host) + " / " + std::to_string(b.node_ranks) +
           " rank(s) on this host";
  b.in_use_bytes = static_cast<double>(peak_rss_bytes());
  // An address-space limit (ulimit -v; SLURM's VSizeFactor sets one): what the run allocates
  // must fit in what is not mapped yet. The estimate counts the RSS in use; the limit counts
  // every mapping (libraries, MPI's shared memory), so the room is limit - mapped + in use. A run
  // past it ended in std::bad_alloc mid-start (exit 1), after the check had passed.
  if (const std::optional<double> limit_bytes = address_space_limit()) {
    const double limit = *limit_bytes, mapped = mapped_bytes();
    // Mapped later beside what the estimate counts: OpenBLAS's buffer per thread at the first
    // product (128 MiB; past the limit OpenBLAS retried its mmap for good, the run hung and took
    // no SIGTERM: review) and a malloc arena per thread (64 MiB of address space). The main
    // thread's heap is brk's, yet its 64 MiB stay: without them a 2-rank run just above the
    // boundary died of bad_alloc (review), while 1 rank is refused up to ~90 MiB early (QA).
    const double later = static_cast<double>(cpu::blas_threads()) * 128.0 * (1 << 20) +
                         static_cast<double>(omp_get_max_threads()) * 64.0 * (1 << 20);
    const double left = limit - mapped - later;
    const double room = std::max(0.0, left) + b.in_use_bytes;
    if (room < b.bytes) {
      b.bytes = room;
      // The sum spelled out: the limit's part left, plus what the need counts that is mapped.
      b.what = "this process's address-space limit (ulimit -v) of " + plan::format_bytes(limit) +
               " less " + plan::format_bytes(mapped) + " mapped already and " +
               plan::format_bytes(later) + " kept for OpenBLAS's and malloc's per-thread maps" +
               (left > 0 ? " leaves " + plan::format_bytes(left) : std::string(" leaves nothing")) +
               ", plus the " + plan::format_bytes(b.in_use_bytes) + " in use that the need counts";
    }
  }
  return b;
}

namespace {

// The experts of EP rank 0 at kUntrainedSkew times their share in every layer (each at most 1/k
// of the assignments, the rank at most all), the others even: a router that has not learnt to
// balance yet, its busiest rank.
plan::RoutingStats untrained_skew(const Config& cfg, const plan::PlanLayout& lay) {
  plan::RoutingStats r;
  r.source = "an untrained router's skew";
  const int64_t E = cfg.moe.num_experts, per_rank = E / lay.ep;
  const double top =
      std::min({kUntrainedSkew / static_cast<double>(E), 1.0 / static_cast<double>(cfg.moe.top_k),
                1.0 / static_cast<double>(per_rank)});
  const double rest =
      (1.0 - top * static_cast<double>(per_rank)) / static_cast<double>(E - per_rank);
  std::vector<double> load(static_cast<size_t>(E), rest);
  std::fill_n(load.begin(), per_rank, top);
  r.load = {load};  // one measured layer stands for every layer (routing.h)
  return r;
}

}  // namespace

std::string check_memory_fits(const Config& cfg, int world_size, const MemoryBudget& budget,
                              MemorySide side) {
  // A layout that does not fit the world is the caller's mistake (the trainer validates it
  // first; `bench train` runs one rank whatever parallel.* says): it priced dp = world / tp = 0
  // as "-nan MiB".
  SY_CHECK(
      world_size % cfg.parallel.tp == 0 && world_size % (cfg.parallel.ep * cfg.parallel.etp) == 0,
      "check_memory_fits: parallel.tp=" << cfg.parallel.tp << ", ep=" << cfg.parallel.ep << ", etp="
                                        << cfg.parallel.etp << " on " << world_size << " rank(s)");
  const plan::PlanLayout lay = plan::layout_of_config(cfg, world_size, budget.node_ranks);
  plan::MemoryInputs in;
  in.threads = omp_get_max_threads();  // the CPU model's attention tiles are per thread
  in.host_ranks = static_cast<double>(budget.node_ranks);
  if (side != MemorySide::kGpuDevice) {
    in.base_bytes = budget.in_use_bytes;
    const plan::TokenExtents t = plan::token_file_extents(cfg.data.path);
    // A split too short for one sequence: open_token_file names that problem, which comes first.
    const double window = static_cast<double>(cfg.model.seq_len) + 1;
    if (t.ok && (t.train < window || t.val < window)) return "";
    if (t.ok) {
      in.train_tokens = t.train;
      in.val_tokens = t.val;
    }
    char sizes[160];
    std::snprintf(sizes, sizeof sizes, " (/train %.0f and /val %.0f tokens)", in.train_tokens,
                  in.val_tokens);
    in.data_name = "'" + cfg.data.path + "'" + sizes;
  }
  // What `routing` needs on `side`.
  const auto priced = [&](const plan::RoutingStats& routing) {
    plan::MemoryEstimate est = plan::predict_memory(cfg, lay, routing, in);
    const auto is_host_data = [](const plan::MemoryTerm& t) { return t.host; };
    if (side == MemorySide::kGpuDevice) {
      std::erase_if(est.terms, is_host_data);
      if (budget.library_bytes > 0)
        est.terms.push_back({"the cuBLAS workspace (allocated with the model)",
                             "(not config-dependent)", budget.library_bytes});
    }
    if (side == MemorySide::kGpuHost) {  // the host data and what train_gpu.cpp stages on the host
      std::erase_if(est.terms, [&](const plan::MemoryTerm& t) { return !is_host_data(t); });
      est.terms.push_back(
          {"host copies of the parameters and AdamW moments (checkpoints, --resume)",
           "model.d_model, model.n_layers, moe.num_experts, moe.ffn_hidden, "
           "parallel.ep/tp (shard them)",
           3 * 4.0 * plan::local_param_elements(cfg, lay)});
      est.terms.push_back(
          {"the process (libraries, MPI, CUDA)", "(not config-dependent)", budget.in_use_bytes});
    }
    return est;
  };
  const plan::MemoryEstimate est = priced(plan::RoutingStats{});
  const std::vector<plan::IndexProblem> index = plan::index_problems(cfg, lay);
  const double need = est.total();
  if (index.empty() && need <= budget.bytes) {
    if (cfg.moe.capacity_factor || lay.ep == 1) return "";
    const double skewed = priced(untrained_skew(cfg, lay)).total();
    if (skewed <= budget.bytes) return "";
    char factor[16];
    std::snprintf(factor, sizeof factor, "%g", kUntrainedSkew);
    return std::string(
               "dropless expert parallelism: under an untrained router's skew (one rank's ") +
           "experts at " + factor + "x their share) the busiest rank may need " +
           plan::format_bytes(skewed) + ", more than the " + plan::format_bytes(budget.bytes) +
           " a rank has (" + budget.what + "; uniform routing needs " + plan::format_bytes(need) +
           "); moe.capacity_factor bounds its rows, and `switchyard plan --routing <run dir>` "
           "prices a run's measured loads";
  }

  const plan::MemoryTerm& big = est.largest();
  std::string msg;
  if (!index.empty()) {
    const plan::IndexProblem& p = index.front();
    // Exact up to 2^53 (the planner's arithmetic is double); past it, "about" in digits that hold.
    char v[64];
    std::snprintf(v, sizeof v, p.value < 0x1p53 ? "%.0f" : "about %.6e", p.value);
    // "moe.num_experts = ...", not "moe.num_experts: moe.num_experts = ...".
    msg = (p.what == p.key ? p.key : p.key + ": " + p.what) + " = " + v +
          " exceeds 2147483647, the 32-bit index the code uses; ";
  } else {
    msg = "not enough memory per rank: ";
  }
  msg += "this run needs " + plan::format_bytes(need) + " of memory per rank, more than the " +
         plan::format_bytes(budget.bytes) + " a rank has (" + budget.what +
         "). Largest term: " + big.name + " = " + plan::format_bytes(big.bytes) +
         "; shrink it with " + big.keys +
         " (`switchyard plan` lists every term and the layouts that fit)";
  if (!index.empty() && need <= budget.bytes)
    msg = index.front().key + ": " + index.front().what +
          " exceeds 2147483647, the 32-bit index the code uses (predicted memory " +
          plan::format_bytes(need) + " per rank, " + plan::format_bytes(budget.bytes) +
          " available: " + budget.what + ")";
  throw UsageError(msg);
}

std::string failure_text(const std::exception& e) {
  if (!dynamic_cast<const std::bad_alloc*>(&e)) return e.what();
  std::string text = std::string("out of memory (") + e.what() + ")";
  if (const std::optional<double> limit = address_space_limit())
    text += "; this process's address space is limited to " +
            std::to_string(static_cast<unsigned long long>(*limit) >> 10) +
            " KiB (ulimit -v), which libraries' and threads' mappings count against beside the "
            "memory the check before training predicted";
  return text;
}

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

int64_t max_over_ranks(const comm::Comm& comm, int64_t value, comm::Watchdog* wd) {
  if (comm.size() <= 1) return value;
  comm::WatchdogScope scope(wd, "all-reduce: peak memory per rank");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MAX, comm.get()));
  return value;
}

}  // namespace sy

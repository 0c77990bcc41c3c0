// `switchyard bench a2a` (columns and routing: a2a_bench.h).
//
// Per row: the routing is drawn, one layout is checked against a reference every rank builds on
// its own (it regenerates every rank's routing from the seed), one untimed dispatch + combine is
// checked element by element, then warm-up and timed iterations run. Each timed call starts after
// a barrier and counts as the slowest rank's time (MPI_Allreduce MAX), the row reports the median.
#include "src/bench/a2a_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "comm/watchdog.h"
#include "src/core/error.h"
#include "src/plan/plan.h"
#include "src/train/rank_memory.h"

namespace sy {

namespace {

using comm::A2aAlgo;
using comm::ExchangeHandle;
using comm::Internode;
using comm::TokenExchange;

// topk_idx[N*K] of EP rank `rank`: K distinct experts per token, expert e with weight
// (e + 1)^-skew. Deterministic in (seed, rank), so any rank can regenerate any other's.
std::vector<int32_t> make_topk(uint64_t seed, int rank, int64_t N, int E, int K, double skew) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(rank) * 7919u + 1u);
  std::vector<double> weight(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) weight[static_cast<size_t>(e)] = std::pow(e + 1.0, -skew);
  std::discrete_distribution<int> pick(weight.begin(), weight.end());
  std::vector<int32_t> topk(static_cast<size_t>(N * K));
  std::vector<char> used(static_cast<size_t>(E), 0);
  for (int64_t n = 0; n < N; ++n) {
    int32_t* slots = &topk[static_cast<size_t>(n * K)];
    int first_unused = 0;  // every expert below it is taken (this token's)
    for (int j = 0; j < K; ++j) {
      // Drawn again while taken, but not once half are: --top-k near --experts (16 Mi of 16 Mi)
      // drew 64 times per slot and scanned from expert 0 for each, for hours (QA).
      int e = pick(rng);
      for (int tries = 0; used[static_cast<size_t>(e)] && tries < 64 && 2 * j < E; ++tries)
        e = pick(rng);
      if (used[static_cast<size_t>(e)]) {  // very skewed, or most taken: the hottest unused one
        while (used[static_cast<size_t>(first_unused)]) ++first_unused;
        e = first_unused;
      }
      used[static_cast<size_t>(e)] = 1;
      slots[j] = e;
    }
    for (int j = 0; j < K; ++j) used[static_cast<size_t>(slots[j])] = 0;
  }
  return topk;
}

// Small integers (exact in fp32, also after the combine's sums): a row in the wrong place, a
// lost or a duplicated one changes them.
float value(int src, int64_t token, int64_t col) {
  return static_cast<float>((src * 131 + token * 7 + col) % 8191);
}
float expert_fn(float v, int q) {
  return v + static_cast<float>(q + 1);
}

struct Row {
  int64_t bytes = 0, tokens = 0;
  std::string algo, internode;
  double skew = 0;
  double dispatch_us = 0, combine_us = 0, layout_us = 0;
  double internode_bytes = 0, internode_messages = 0;  // mean per rank, one dispatch
  double transfer_us = 0, sync_us = 0;  // of a timed dispatch: mean over ranks and iterations
  int64_t wrong = 0;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The slowest rank's time of each iteration, then the median (us).
double slowest_median_us(std::vector<double> seconds) {
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, seconds.data(), static_cast<int>(seconds.size()),
                          MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return median(seconds) * 1e6;
}

// Wrong handle fields and elements of one layout + dispatch + combine on this rank. traffic[2]
// (=) the inter-node bytes and messages of the dispatch.
int64_t check(TokenExchange& ex, const ExchangeHandle& h, uint64_t seed, int me, int P, int64_t N,
              int E, int K, double skew, int64_t W, double traffic[2]) {
  const int L = E / P;
  // What this rank must receive: every source's tokens with an expert here, (source, token) order.
  struct Want {
    int src;
    int64_t token;
    std::vector<int32_t> local;
  };
  std::vector<Want> want;
  for (int src = 0; src < P; ++src) {
    const std::vector<int32_t> topk = make_topk(seed, src, N, E, K, skew);
    for (int64_t t = 0; t < N; ++t) {
      Want w{src, t, std::vector<int32_t>(static_cast<size_t>(K), -1)};
      bool held = false;
      for (int j = 0; j < K; ++j) {
        const int32_t e = topk[static_cast<size_t>(t * K + j)];
        if (e / L == me) {
          held = true;
          w.local[static_cast<size_t>(j)] = e % L;
        }
      }
      if (held) want.push_back(std::move(w));
    }
  }
  int64_t wrong = std::abs(h.num_recv - static_cast<int64_t>(want.size()));
  const auto n =
      static_cast<size_t>(std::min<int64_t>(h.num_recv, static_cast<int64_t>(want.size())));
  for (size_t i = 0; i < n; ++i) {
    wrong += h.recv_src_rank[i] != want[i].src || h.recv_src_token[i] != want[i].token;
    for (int j = 0; j < K; ++j) {
      wrong += h.recv_topk_local[i * K + static_cast<size_t>(j)] !=
               want[i].local[static_cast<size_t>(j)];
    }
  }

  std::vector<float> x(static_cast<size_t>(N * W));
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t c = 0; c < W; ++c) x[static_cast<size_t>(t * W + c)] = value(me, t, c);
  }
  std::vector<float> recv(static_cast<size_t>(h.num_recv * W), -1.f);
  ex.reset_stats();
  ex.dispatch(h, x, recv, W);
  traffic[0] = static_cast<double>(ex.stats().internode_bytes);
  traffic[1] = static_cast<double>(ex.stats().internode_messages);
  for (size_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < W; ++c) {
      wrong += recv[i * static_cast<size_t>(W) + static_cast<size_t>(c)] !=
               value(want[i].src, want[i].token, c);
    }
  }
  for (float& v : recv) v = expert_fn(v, me);
  std::vector<float> out(x.size(), -1.f);
  ex.combine(h, recv, out, W);
  const std::vector<int32_t> mine = make_topk(seed, me, N, E, K, skew);
  for (int64_t t = 0; t < N; ++t) {
    std::vector<int> ranks;
    for (int j = 0; j < K; ++j) ranks.push_back(mine[static_cast<size_t>(t * K + j)] / L);
    std::sort(ranks.begin(), ranks.end());
    ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
    for (int64_t c = 0; c < W; ++c) {
      float expect = 0;
      for (int q : ranks) expect += expert_fn(value(me, t, c), q);
      wrong += out[static_cast<size_t>(t * W + c)] != expect;
    }
  }
  return wrong;
}

Row run_row(TokenExchange& ex, const A2aBenchOptions& opt, int64_t N, double skew, uint64_t seed) {
  int P = 1, me = 0;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &P));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &me));
  const int E = ex.num_experts(), K = opt.top_k;
  const int64_t W = opt.width;
  const std::vector<int32_t> topk = make_topk(seed, me, N, E, K, skew);
  Row row;
  row.tokens = N;
  row.bytes = N * K * W * static_cast<int64_t>(sizeof(float));
  row.skew = skew;

  ExchangeHandle h;
  std::vector<double> layout_s;
  for (int i = 0; i < 3; ++i) {
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const double t0 = MPI_Wtime();
    ex.layout(topk, N, K, h);
    layout_s.push_back(MPI_Wtime() - t0);
  }
  row.layout_us = slowest_median_us(layout_s);

  // Correctness, untimed, and the traffic counters of that one dispatch.
  double traffic[2] = {0, 0};
  row.wrong = check(ex, h, seed, me, P, N, E, K, skew, W, traffic);
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, traffic, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  row.internode_bytes = traffic[0] / P;
  row.internode_messages = traffic[1] / P;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &row.wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));

  // Timing: input values do not matter any more.
  std::vector<float> x(static_cast<size_t>(N * W), 0.5f), recv(static_cast<size_t>(h.num_recv * W));
  std::vector<float> out(x.size());
  std::vector<double> dispatch_s, combine_s;
  double parts[2] = {0, 0};  // transfer, sync seconds of the timed dispatches
  for (int it = 0; it < opt.warmup + opt.iters; ++it) {
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const comm::ExchangeStats before = ex.stats();
    const double t0 = MPI_Wtime();
    ex.dispatch(h, x, recv, W);
    const double t1 = MPI_Wtime();
    if (it >= opt.warmup) {
      parts[0] += ex.stats().transfer_seconds - before.transfer_seconds;
      parts[1] += ex.stats().sync_seconds - before.sync_seconds;
    }
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const double t2 = MPI_Wtime();
    ex.combine(h, recv, out, W);
    const double t3 = MPI_Wtime();
    if (it >= opt.warmup) {
      dispatch_s.push_back(t1 - t0);
      combine_s.push_back(t3 - t2);
    }
  }
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, parts, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  const double timed = static_cast<double>(P) * opt.iters;  // (in int: past 2^31 at 4 ranks)
  row.transfer_us = parts[0] / timed * 1e6;
  row.sync_us = parts[1] / timed * 1e6;
  row.dispatch_us = slowest_median_us(dispatch_s);
  row.combine_us = slowest_median_us(combine_s);
  return row;
}

std::string prefixed(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line)) out += prefix + line + "\n";
  return out;
}

}  // namespace

int64_t run_a2a_bench(const A2aBenchOptions& opt, std::ostream& out) {
  int P = 1, me = 0;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &P));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &me));
  // Default: 2 experts per rank, or the fewest per rank that hold --top-k (1 rank, top-k 4).
  const int E = opt.experts > 0 ? opt.experts : P * std::max(2, (opt.top_k + P - 1) / P);
  // The options are the same on every rank: rank 0 says what is wrong, the others exit quietly.
  const auto bad = [me](const std::string& msg) { throw UsageError(msg, /*quiet=*/me != 0); };
  if (opt.ranks_per_node < 0 || (opt.ranks_per_node > 0 && P % opt.ranks_per_node != 0)) {
    bad("--ranks-per-node=" + std::to_string(opt.ranks_per_node) +
        " does not divide the world size " + std::to_string(P));
  }
  if (E % P != 0) {
    bad("--experts=" + std::to_string(E) + " is not divisible by the world size " +
        std::to_string(P));
  }
  // At most 1024: past that the draw of each token's experts and the hierarchical layout ran for
  // minutes per token (QA: --top-k 16777216 never finished; the GPU router takes at most 16).
  constexpr int kMaxBenchTopK = 1024;
  if (opt.top_k < 1 || opt.top_k > std::min(E, kMaxBenchTopK)) {
    bad("--top-k=" + std::to_string(opt.top_k) + " must be in [1, " +
        (E <= kMaxBenchTopK ? "experts=" + std::to_string(E) : std::to_string(kMaxBenchTopK)) +
        "]");
  }
  if (opt.min_bytes < 1 || opt.max_bytes < opt.min_bytes)
    bad("need 0 < --min-bytes <= --max-bytes");
  // Bounded so that a token's rows (top-k of width fp32) stay countable in int64 bytes: past
  // 2^59 the product wrapped to 0 and a division by it killed every rank with SIGFPE (QA).
  if (const int64_t most = (int64_t{1} << 58) / opt.top_k; opt.width < 1 || opt.width > most)
    bad("--width=" + std::to_string(opt.width) + " must be in [1, " + std::to_string(most) +
        "] (a token's --top-k rows of fp32 counted in bytes)");
  if (opt.iters < 1 || opt.warmup < 0) bad("need --iters >= 1 and --warmup >= 0");
  // Counted in int (the loop, and P x iters in the means): past it no iteration ran and the
  // table read 0 us and inf GB/s, exit 0 (QA).
  if (opt.iters > std::numeric_limits<int>::max() - opt.warmup)
    bad("--iters " + std::to_string(opt.iters) + " + --warmup " + std::to_string(opt.warmup) +
        " is past 2^31 - 1, the most iterations the bench counts");
  if (opt.algos.empty() || opt.skews.empty()) bad("--algos and --skew need at least one value");
  const int64_t row_bytes = opt.width * static_cast<int64_t>(sizeof(float));
  const auto tokens_of = [&](int64_t bytes) {
    return std::max<int64_t>(1, bytes / (opt.top_k * row_bytes));
  };
  {
    // The largest row's buffers on a rank: its input and output (N rows each), what it receives
    // and what the exchange stages to send -- each token once per rank holding one of its
    // experts, D ranks on average under uniform routing (D = P (1 - C(E-L, K) / C(E, K)), L
    // experts per rank) -- so (2 + 2D) N rows; measured 412 MiB per rank at 256 MiB, 2 ranks,
    // flat, where this gives 384 MiB (hierarchical and skewed rows take more). Past the smallest
    // share of host memory over the ranks the ranks were killed by the kernel (signal 9, no
    // message): refused first, by every rank alike.
    int64_t largest = opt.min_bytes;
    while (largest <= opt.max_bytes / 2) largest *= 2;
    const int L = E / P;
    double none = 1.0;  // a rank holds none of a token's K experts
    for (int i = 0; i < opt.top_k; ++i)
      none *= std::max(0.0, static_cast<double>(E - L - i) / static_cast<double>(E - i));
    const double D = P * (1.0 - none);
    const double tokens = static_cast<double>(tokens_of(largest));
    // The hierarchical exchange's buffer sets (its stages and the peers' windows): 1156 MB
    // measured at 256 MiB, 2 ranks on 2 nodes, where the rows alone give 384 MiB. And per token
    // it receives, the check's expectation (source, token, --top-k ids in a vector of their own:
    // ~200 + 16 K bytes with the handle's metadata): 2.98 GB measured for --width 1 at 64 MiB,
    // where the rows gave 100 MB (QA). Past these, ranks were killed by the kernel.
    const bool hier = std::find(opt.algos.begin(), opt.algos.end(), comm::A2aAlgo::kHierarchical) !=
                      opt.algos.end();
    const double need =
        (2.0 + 2.0 * D) * tokens * static_cast<double>(row_bytes) * (hier ? 3.0 : 1.0) +
        D * tokens * (200.0 + 16.0 * opt.top_k);
    const MemoryBudget budget = host_memory_budget(comm::Comm::borrow(MPI_COMM_WORLD));
    double smallest = budget.bytes;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &smallest, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD));
    if (need > smallest)
      bad("--max-bytes: the row of " + plan::format_bytes(static_cast<double>(largest)) +
          " per rank needs at least about " + plan::format_bytes(need) +
          " per rank (its input and output, the rows it receives and stages to send, the "
          "check's bookkeeping per token), more than the " +
          plan::format_bytes(smallest) + " a rank has (" +
          (smallest < budget.bytes ? std::string("the smallest over the ranks") : budget.what) +
          "); lower --max-bytes (or --width)");
  }

  comm::Watchdog watchdog(opt.timeout_s);
  comm::ExchangeOptions eo;
  eo.ep_comm = MPI_COMM_WORLD;
  eo.num_experts = E;
  if (opt.ranks_per_node > 0) {
    for (int p = 0; p < P; ++p) eo.node_of_ep_rank.push_back(p / opt.ranks_per_node);
  }
  eo.watchdog = &watchdog;
  struct Variant {
    std::string algo, internode;
    std::unique_ptr<TokenExchange> ex;
  };
  std::vector<Variant> variants;
  for (A2aAlgo algo : opt.algos) {
    if (algo == A2aAlgo::kFlat) {
      eo.algo = algo;
      variants.push_back({"flat", "mpi", comm::make_exchange(eo)});
      continue;
    }
    for (Internode inter : opt.internodes) {
      eo.algo = algo;
      eo.internode = inter;
      variants.push_back({"hier", comm::to_string(inter), comm::make_exchange(eo)});
    }
  }

  const int nodes = opt.ranks_per_node > 0 ? P / opt.ranks_per_node : 0;
  if (me == 0) {
    out << "# switchyard bench a2a: expert-parallel token exchange (time = dispatch, comb_us = "
           "its combine)\n# world "
        << P << " ranks";
    if (nodes > 0) out << " = " << nodes << " emulated nodes x " << opt.ranks_per_node;
    out << ", experts " << E << " (" << E / P << " per rank), top-k " << opt.top_k << ", rows of "
        << opt.width << " fp32 (" << row_bytes << " B), median of " << opt.iters
        << " iterations (slowest rank each), " << opt.warmup << " warm-up\n";
    for (const Variant& v : variants) {
      out << prefixed(v.ex->describe(), "# " + v.algo + "/" + v.internode + ": ");
    }
    // A row is whole tokens of --top-k rows: a size that is not one ran another size, unsaid
    // but for its bytes/rank column (QA: --max-bytes 4 ran 16384 B).
    for (int64_t bytes = opt.min_bytes; bytes <= opt.max_bytes; bytes *= 2)
      if (const int64_t run = tokens_of(bytes) * opt.top_k * row_bytes; run != bytes) {
        out << "# sizes run as whole tokens of " << opt.top_k << " x " << row_bytes
            << " B (at least one token): " << bytes << " B asked runs " << run
            << " B (bytes/rank gives each row's)\n";
        break;
      }
    out << "#\n";
    char line[256];
    std::snprintf(line, sizeof line,
                  "# %11s %7s %5s %5s %5s %10s %8s %8s %9s %9s %10s %10s %12s %6s %7s\n",
                  "bytes/rank", "tokens", "algo", "inter", "skew", "time_us", "algbw", "busbw",
                  "xfer_us", "sync_us", "comb_us", "layout_us", "inter_B/rank", "msgs", "#wrong");
    out << line;
    std::snprintf(line, sizeof line,
                  "# %11s %7s %5s %5s %5s %10s %8s %8s %9s %9s %10s %10s %12s %6s %7s\n", "(B)", "",
                  "", "", "", "(us)", "(GB/s)", "(GB/s)", "(us)", "(us)", "(us)", "(us)", "(B)",
                  "/rank", "");
    out << line << std::flush;
  }

  int64_t total_wrong = 0;
  uint64_t seed = opt.seed;
  for (int64_t bytes = opt.min_bytes; bytes <= opt.max_bytes; bytes *= 2) {
    const int64_t N = tokens_of(bytes);
    for (double skew : opt.skews) {
      ++seed;  // the same routing for every variant of a row
      for (Variant& v : variants) {
        const Row r = run_row(*v.ex, opt, N, skew, seed);
        total_wrong += r.wrong;
        if (me != 0) continue;
        const double algbw = static_cast<double>(r.bytes) / (r.dispatch_us * 1e-6) * 1e-9;
        const double busbw = algbw * (P - 1) / P;
        char line[256];
        std::snprintf(line, sizeof line,
                      "  %11lld %7lld %5s %5s %5.2f %10.1f %8.3f %8.3f %9.1f %9.1f %10.1f %10.1f "
                      "%12.0f %6.2f %7lld\n",
                      static_cast<long long>(r.bytes), static_cast<long long>(r.tokens),
                      v.algo.c_str(), v.internode.c_str(), r.skew, r.dispatch_us, algbw, busbw,
                      r.transfer_us, r.sync_us, r.combine_us, r.layout_us, r.internode_bytes,
                      r.internode_messages, static_cast<long long>(r.wrong));
        out << line << std::flush;
      }
    }
  }
  if (me == 0) {
    out << "# #wrong total: " << total_wrong << (total_wrong == 0 ? " OK" : " FAILED") << "\n";
  }
  return total_wrong;
}

}  // namespace sy

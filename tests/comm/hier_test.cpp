// The hierarchical token exchange on emulated nodes (EP group = world, node = rank / ranks per
// node, and a round-robin placement), over UCX and over the MPI fallback:
//   - against the naive reference of exchange_ref.h (exact integer values: bitwise);
//   - against the flat exchange on random real values: the same handle, bitwise the same
//     dispatched rows, the combine equal within 1e-6 relative (only the summation order
//     differs), for the forward and the adjoint usage, and the adjoint identity itself;
//   - dedup: inter-node bytes and messages counted and bounded;
//   - buffers that do not grow on a repeated exchange; interleaved handles (layers).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "comm/alltoall.h"
#include "comm/groups.h"
#include "common/mpi_util.h"
#include "exchange_ref.h"

namespace {

using sy::comm::A2aAlgo;
using sy::comm::ExchangeHandle;
using sy::comm::ExchangeOptions;
using sy::comm::Internode;
using sy::comm::make_exchange;
using sy::comm::TokenExchange;
using sy::test::Skew;
using sy::test::sum_over_world;

struct NodeLayout {
  int nodes = 1;
  bool round_robin = false;  // node = rank % nodes instead of rank / ranks_per_node
  std::vector<int> node_of(int P) const {
    std::vector<int> v(static_cast<size_t>(P));
    for (int p = 0; p < P; ++p)
      v[static_cast<size_t>(p)] = round_robin ? p % nodes : p / (P / nodes);
    return v;
  }
  std::string str(int P) const {
    return std::to_string(nodes) + "x" + std::to_string(P / nodes) + (round_robin ? " rr" : "");
  }
};

std::vector<NodeLayout> node_layouts(int P) {
  std::vector<NodeLayout> out;
  for (int G : sy::test::divisors(P)) out.push_back({G, false});
  if (P >= 4) out.push_back({2, true});
  return out;
}

std::unique_ptr<TokenExchange> make(A2aAlgo algo, Internode internode, const NodeLayout& nl,
                                    int E) {
  ExchangeOptions opt;
  opt.ep_comm = MPI_COMM_WORLD;
  opt.num_experts = E;
  opt.node_of_ep_rank = nl.node_of(sy::test::world_size());
  opt.algo = algo;
  opt.internode = internode;
  return make_exchange(opt);
}

const char* name(Internode i) {
  return sy::comm::to_string(i);
}

template <class T>
void hier_against_reference(unsigned seed) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  int64_t wrong = 0;
  std::string first;
  for (const NodeLayout& nl : node_layouts(P)) {
    for (Internode inter : {Internode::kUcx, Internode::kMpi}) {
      for (int L : {1, 2}) {
        auto ex = make(A2aAlgo::kHierarchical, inter, nl, P * L);
        for (int k : {1, 2, 4}) {
          for (Skew skew : sy::test::kAllSkews) {
            if (k != 2 && skew != Skew::kUniform) continue;
            const auto routing = sy::test::make_routing(seed++, me, P, P * L, k, skew);
            const int64_t w = sy::test::check_against_reference<T>(*ex, MPI_COMM_WORLD, routing,
                                                                   1 + seed % 11, &first);
            if (w)
              ADD_FAILURE() << nl.str(P) << " " << name(inter) << " L=" << L << " k=" << k
                            << " skew=" << name(skew) << ": " << w << " wrong; " << first;
            wrong += w;
          }
        }
      }
    }
  }
  EXPECT_EQ(sum_over_world(wrong), 0) << "wrong entries summed over all ranks and cases";
}

// What the hierarchical exchange needs of an EP group's nodes, by hand: as many of its ranks on
// every node it uses (node ids are labels, in any order).
TEST(HierExchange, EvenOverNodesByHand) {
  using sy::comm::even_over_nodes;
  EXPECT_TRUE(even_over_nodes(std::vector<int>{0, 0, 0, 0}));
  EXPECT_TRUE(even_over_nodes(std::vector<int>{0, 0, 1, 1, 2, 2}));
  EXPECT_TRUE(even_over_nodes(std::vector<int>{7, 3, 7, 3}));
  EXPECT_FALSE(even_over_nodes(std::vector<int>{0, 0, 0, 0, 1, 1}));  // 4 + 2
  EXPECT_FALSE(even_over_nodes(std::vector<int>{0, 1, 1}));
}

TEST(HierExchange, MatchesGatherReferenceFloat) {
  hier_against_reference<float>(100);
}
TEST(HierExchange, MatchesGatherReferenceDouble) {
  hier_against_reference<double>(700);
}

// Random real values: hierarchical vs flat on the same routing.
struct Compared {
  int64_t handle_diffs = 0, dispatch_diffs = 0;
  double combine_rel = 0;  // max |hier - flat| / max |flat| over both usages
  double adjoint_rel = 0;  // |<D x, y> - <x, C y>| / scale, summed over ranks (double)
};

Compared compare_with_flat(TokenExchange& hier, TokenExchange& flat,
                           const sy::test::Routing& routing, int64_t width, unsigned seed) {
  Compared c;
  ExchangeHandle hh, hf;
  hier.layout(routing.topk, routing.num_tokens, routing.top_k, hh);
  flat.layout(routing.topk, routing.num_tokens, routing.top_k, hf);
  c.handle_diffs += hh.num_recv != hf.num_recv;
  c.handle_diffs += hh.recv_src_rank != hf.recv_src_rank;
  c.handle_diffs += hh.recv_src_token != hf.recv_src_token;
  c.handle_diffs += hh.recv_topk_local != hf.recv_topk_local;
  // Leave together or not at all: a rank returning alone would strand the others in the
  // collectives below.
  if (sum_over_world(c.handle_diffs) != 0) return c;

  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  const auto N = static_cast<size_t>(routing.num_tokens * width);
  const auto M = static_cast<size_t>(hf.num_recv * width);
  // Forward: x -> recv (dispatch), y -> out (combine). Adjoint usage: the same calls on
  // gradients (combine of d_recv is dispatch's backward, dispatch of d_out is combine's).
  for (int usage = 0; usage < 2; ++usage) {
    std::vector<float> x(N), y(M);
    for (float& v : x) v = normal(rng);
    for (float& v : y) v = normal(rng);
    std::vector<float> rh(M), rf(M), oh(N), of(N);
    hier.dispatch(hh, x, rh, width);
    flat.dispatch(hf, x, rf, width);
    for (size_t i = 0; i < M; ++i) c.dispatch_diffs += rh[i] != rf[i];  // bitwise
    hier.combine(hh, y, oh, width);
    flat.combine(hf, y, of, width);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < N; ++i) {
      max_diff = std::max(max_diff, std::abs(static_cast<double>(oh[i]) - of[i]));
      max_ref = std::max(max_ref, std::abs(static_cast<double>(of[i])));
    }
    double both[2] = {max_diff, max_ref};
    MPI_Allreduce(MPI_IN_PLACE, both, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (both[1] > 0) c.combine_rel = std::max(c.combine_rel, both[0] / both[1]);
    // <dispatch(x), y> == <x, combine(y)> summed over ranks (exact up to rounding).
    double dots[3] = {0, 0, 0};
    for (size_t i = 0; i < M; ++i) dots[0] += static_cast<double>(rh[i]) * y[i];
    for (size_t i = 0; i < N; ++i) dots[1] += static_cast<double>(x[i]) * oh[i];
    for (size_t i = 0; i < M; ++i) dots[2] += std::abs(static_cast<double>(rh[i]) * y[i]);
    MPI_Allreduce(MPI_IN_PLACE, dots, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (dots[2] > 0) c.adjoint_rel = std::max(c.adjoint_rel, std::abs(dots[0] - dots[1]) / dots[2]);
  }
  return c;
}

TEST(HierExchange, SameRowsAsFlatAndCombineWithinTolerance) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  unsigned seed = 3000;
  int64_t handle_diffs = 0, dispatch_diffs = 0;
  for (const NodeLayout& nl : node_layouts(P)) {
    if (nl.nodes == 1 && P > 1) continue;  // covered by the reference test
    for (Internode inter : {Internode::kUcx, Internode::kMpi}) {
      const int E = 2 * P;
      auto hier = make(A2aAlgo::kHierarchical, inter, nl, E);
      auto flat = make(A2aAlgo::kFlat, inter, nl, E);
      for (int k : {1, 2, 4}) {
        for (Skew skew : {Skew::kUniform, Skew::kFirstNodeOnly, Skew::kSomeSendNothing}) {
          const auto routing = sy::test::make_routing(seed++, me, P, E, k, skew, 48);
          const Compared c = compare_with_flat(*hier, *flat, routing, 24, seed);
          const std::string what =
              nl.str(P) + " " + name(inter) + " k=" + std::to_string(k) + " skew=" + name(skew);
          EXPECT_LE(c.combine_rel, 1e-6) << what;
          EXPECT_LE(c.adjoint_rel, 1e-6) << what;
          handle_diffs += c.handle_diffs;
          dispatch_diffs += c.dispatch_diffs;
        }
      }
    }
  }
  EXPECT_EQ(sum_over_world(handle_diffs), 0) << "handle fields differing from flat's";
  EXPECT_EQ(sum_over_world(dispatch_diffs), 0) << "dispatched elements differing from flat's";
}

// Top-4 over 2 emulated nodes, uniform routing over distinct experts: a token whose experts sit
// on both nodes crosses once instead of once per remote rank. With one expert per rank:
// 2 x 2 ranks: flat sends every token to both remote ranks, hierarchical once (ratio 0.5);
// 2 x 4: flat ~2.0 remote ranks per token, hierarchical ~0.99 (ratio ~0.49).
TEST(HierExchange, InternodeBytesDeduplicatedAndOneMessagePerNode) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  if (P < 4 || P % 2 != 0) GTEST_SKIP() << "needs 2 emulated nodes of at least 2 ranks";
  for (int G : {2, P / 2}) {
    if (G < 2 || P % G != 0 || (G != 2 && P / G < 2)) continue;
    for (Internode inter : {Internode::kUcx, Internode::kMpi}) {
      const NodeLayout nl{G, false};
      auto hier = make(A2aAlgo::kHierarchical, inter, nl, P);
      auto flat = make(A2aAlgo::kFlat, inter, nl, P);
      // 64 tokens: enough that every rank reaches every other node.
      const auto routing = sy::test::make_routing(4242, me, P, P, 4, Skew::kUniform, 64, 64);
      ExchangeHandle hh, hf;
      hier->layout(routing.topk, routing.num_tokens, 4, hh);
      flat->layout(routing.topk, routing.num_tokens, 4, hf);
      const int64_t width = 16;
      std::vector<float> x(static_cast<size_t>(routing.num_tokens * width), 1.f);
      std::vector<float> r(static_cast<size_t>(hh.num_recv * width));
      hier->reset_stats();
      flat->reset_stats();
      hier->dispatch(hh, x, r, width);
      flat->dispatch(hf, x, r, width);
      const auto hs = hier->stats(), fs = flat->stats();
      const int64_t hier_bytes = sum_over_world(hs.internode_bytes);
      const int64_t flat_bytes = sum_over_world(fs.internode_bytes);
      const std::string what = nl.str(P) + " " + name(inter);
      EXPECT_GT(flat_bytes, 0) << what;
      // The 0.6 bound is the claim for 2 nodes; with more nodes dedup still never
      // sends more than flat.
      const double bound = G == 2 ? 0.6 : 1.0;
      EXPECT_LE(static_cast<double>(hier_bytes), bound * static_cast<double>(flat_bytes))
          << what << ": hierarchical " << hier_bytes << " vs flat " << flat_bytes;
      EXPECT_EQ(hs.internode_messages, G - 1) << what << " rank " << me;
      EXPECT_EQ(hs.calls, 1);
      // The combine sends the node's partial sums back: again once per node.
      hier->reset_stats();
      hier->combine(hh, r, x, width);
      EXPECT_EQ(hier->stats().internode_messages, G - 1) << what << " rank " << me;
      // Per rank it returns what it forwarded, not what it sent; over the group the same rows.
      EXPECT_EQ(sum_over_world(hier->stats().internode_bytes), hier_bytes) << what;
    }
  }
}

// The flat exchange's traffic counters (metrics' a2a_*_bytes) by hand from the routing: a token
// goes once to every other EP rank holding one of its experts; those rows count as intra-node
// bytes when that rank shares this rank's node, else as inter-node bytes and one message per such
// rank. The combine returns what this rank received, counted the same way: the rows every other
// rank sends here, learnt with a plain MPI_Alltoall of the hand counts. Every node layout
// (round-robin nodes too), 1 and 2 experts per rank, dropped slots.
TEST(FlatExchange, TrafficCountersByHandOnEmulatedNodes) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  unsigned seed = 600;
  for (const NodeLayout& nl : node_layouts(P)) {
    const std::vector<int> node = nl.node_of(P);
    for (int L : {1, 2}) {
      for (Skew skew : {Skew::kUniform, Skew::kDropped}) {
        auto flat = make(A2aAlgo::kFlat, Internode::kMpi, nl, P * L);
        const auto routing = sy::test::make_routing(seed++, me, P, P * L, 2, skew, 30, 10);
        std::vector<int> to(static_cast<size_t>(P), 0), from(static_cast<size_t>(P), 0);
        for (int64_t n = 0; n < routing.num_tokens; ++n) {
          std::vector<bool> hit(static_cast<size_t>(P), false);
          for (int j = 0; j < 2; ++j) {
            const int32_t e = routing.topk[static_cast<size_t>(n * 2 + j)];
            if (e >= 0) hit[static_cast<size_t>(e / L)] = true;
          }
          for (int p = 0; p < P; ++p) to[static_cast<size_t>(p)] += hit[static_cast<size_t>(p)];
        }
        MPI_Alltoall(to.data(), 1, MPI_INT, from.data(), 1, MPI_INT, MPI_COMM_WORLD);
        const int64_t width = 5, row = width * static_cast<int64_t>(sizeof(float));
        auto expected = [&](const std::vector<int>& rows) {
          sy::comm::ExchangeStats s;
          for (int p = 0; p < P; ++p) {
            const int64_t r = rows[static_cast<size_t>(p)];
            if (p == me || r == 0) continue;
            if (node[static_cast<size_t>(p)] == node[static_cast<size_t>(me)]) {
              s.intranode_bytes += r * row;
            } else {
              s.internode_bytes += r * row;
              ++s.internode_messages;
            }
          }
          return s;
        };
        ExchangeHandle h;
        flat->layout(routing.topk, routing.num_tokens, 2, h);
        std::vector<float> x(static_cast<size_t>(routing.num_tokens * width), 1.f);
        std::vector<float> r(static_cast<size_t>(h.num_recv * width));
        const std::string what = nl.str(P) + " L=" + std::to_string(L) + " " + name(skew);
        for (const bool dispatch : {true, false}) {
          flat->reset_stats();
          if (dispatch) {
            flat->dispatch(h, x, r, width);
          } else {
            flat->combine(h, r, x, width);
          }
          const sy::comm::ExchangeStats want = expected(dispatch ? to : from);
          const sy::comm::ExchangeStats& got = flat->stats();
          const std::string call = what + (dispatch ? " dispatch" : " combine");
          EXPECT_EQ(got.intranode_bytes, want.intranode_bytes) << call << " rank " << me;
          EXPECT_EQ(got.internode_bytes, want.internode_bytes) << call << " rank " << me;
          EXPECT_EQ(got.internode_messages, want.internode_messages) << call << " rank " << me;
        }
      }
    }
  }
}

TEST(HierExchange, BuffersDoNotGrowWhenSizesDoNot) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  const NodeLayout nl{P >= 2 ? 2 : 1, false};
  auto ex = make(A2aAlgo::kHierarchical, Internode::kUcx, nl, 2 * P);
  const auto routing = sy::test::make_routing(55, me, P, 2 * P, 2, Skew::kUniform);
  ExchangeHandle h;
  ex->layout(routing.topk, routing.num_tokens, 2, h);
  const int64_t width = 32;
  std::vector<float> x(static_cast<size_t>(routing.num_tokens * width), 2.f);
  std::vector<float> recv(static_cast<size_t>(h.num_recv * width)), out(x.size());
  ex->dispatch(h, x, recv, width);
  ex->combine(h, recv, out, width);
  const size_t bytes = ex->buffer_bytes();
  EXPECT_GT(bytes, 0u);
  for (int i = 0; i < 3; ++i) {
    ex->dispatch(h, x, recv, width);
    ex->combine(h, recv, out, width);
    EXPECT_EQ(ex->buffer_bytes(), bytes);
  }
  EXPECT_EQ(ex->stats().calls, 8);
}

// Two layers' handles alive at once, calls in a training step's order (forward A, forward B,
// backward B, backward A) plus back-to-back dispatches and combines of different widths: the
// alternating buffer sets must never let one call overwrite rows another still reads.
TEST(HierExchange, InterleavedHandlesAndWidths) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  for (Internode inter : {Internode::kUcx, Internode::kMpi}) {
    const NodeLayout nl{P >= 4 ? 2 : 1, false};
    auto ex = make(A2aAlgo::kHierarchical, inter, nl, 2 * P);
    auto flat = make(A2aAlgo::kFlat, inter, nl, 2 * P);
    const auto ra = sy::test::make_routing(61, me, P, 2 * P, 2, Skew::kUniform, 30);
    const auto rb = sy::test::make_routing(62, me, P, 2 * P, 4, Skew::kDropped, 50);
    ExchangeHandle ha, hb, fa, fb;
    ex->layout(ra.topk, ra.num_tokens, 2, ha);
    ex->layout(rb.topk, rb.num_tokens, 4, hb);
    flat->layout(ra.topk, ra.num_tokens, 2, fa);
    flat->layout(rb.topk, rb.num_tokens, 4, fb);
    int64_t wrong = 0;
    auto fill = [&](std::vector<double>& v, double base) {
      for (size_t i = 0; i < v.size(); ++i) v[i] = base + static_cast<double>(i % 977);
    };
    // (handle, width) sequence; each call is checked against flat on the same inputs.
    struct Call {
      bool dispatch, a;
      int64_t width;
    };
    const Call calls[] = {{true, true, 8},   {true, false, 3},  {false, false, 3},
                          {false, true, 8},  {true, true, 40},  {true, true, 2},
                          {true, false, 40}, {false, false, 5}, {false, false, 64},
                          {false, true, 1},  {true, false, 1}};
    for (const Call& c : calls) {
      const ExchangeHandle& h = c.a ? ha : hb;
      const ExchangeHandle& f = c.a ? fa : fb;
      const auto in_rows = c.dispatch ? h.num_tokens : h.num_recv;
      const auto out_rows = c.dispatch ? h.num_recv : h.num_tokens;
      std::vector<double> in(static_cast<size_t>(in_rows * c.width));
      fill(in, 1000.0 * me + static_cast<double>(c.width));
      std::vector<double> got(static_cast<size_t>(out_rows * c.width), -1), want(got.size(), -2);
      if (c.dispatch) {
        ex->dispatch(h, in, got, c.width);
        flat->dispatch(f, in, want, c.width);
      } else {
        ex->combine(h, in, got, c.width);
        flat->combine(f, in, want, c.width);
      }
      for (size_t i = 0; i < got.size(); ++i)
        wrong += std::abs(got[i] - want[i]) > 1e-9 * std::abs(want[i]);
    }
    EXPECT_EQ(sum_over_world(wrong), 0) << name(inter);
  }
}

// Many calls in a random order (the same on every rank), large uneven sizes and oversubscribed
// ranks that the OS preempts at random points: a missing barrier or a buffer set reused too early
// shows up as rows that differ from flat's.
TEST(HierExchange, StressRandomCallOrder) {
  const int P = sy::test::world_size(), me = sy::test::world_rank();
  if (P < 4) GTEST_SKIP() << "needs 2 nodes of at least 2 ranks";
  const NodeLayout nl{2, false};
  auto ex = make(A2aAlgo::kHierarchical, Internode::kUcx, nl, 2 * P);
  auto flat = make(A2aAlgo::kFlat, Internode::kUcx, nl, 2 * P);
  // Rank 0's tokens go everywhere, the others send few: node 0's forwarders work the longest.
  const auto ra = sy::test::make_routing(71, me, P, 2 * P, 4, Skew::kUniform, me == 0 ? 3000 : 20);
  const auto rb = sy::test::make_routing(72, me, P, 2 * P, 2, Skew::kFirstNodeOnly, 120);
  ExchangeHandle h[2], f[2];
  ex->layout(ra.topk, ra.num_tokens, 4, h[0]);
  ex->layout(rb.topk, rb.num_tokens, 2, h[1]);
  flat->layout(ra.topk, ra.num_tokens, 4, f[0]);
  flat->layout(rb.topk, rb.num_tokens, 2, f[1]);
  // All hierarchical calls first, then flat's: a flat call in between would synchronise every
  // rank and hide exactly the races this test is after.
  struct Call {
    bool dispatch;
    int which;
    int64_t width;
    std::vector<float> in, got;
  };
  std::mt19937 order(12345);  // same sequence on every rank
  std::vector<Call> calls(60);
  for (size_t c = 0; c < calls.size(); ++c) {
    Call& k = calls[c];
    k.dispatch = order() % 2 == 0;
    k.which = static_cast<int>(order() % 2);
    k.width = std::array<int64_t, 3>{1, 64, 256}[order() % 3];
    const ExchangeHandle& hk = h[k.which];
    k.in.resize(static_cast<size_t>((k.dispatch ? hk.num_tokens : hk.num_recv) * k.width));
    for (size_t i = 0; i < k.in.size(); ++i) {
      k.in[i] = static_cast<float>((i * 7 + c + static_cast<size_t>(me) * 13) % 1000);
    }
    k.got.assign(static_cast<size_t>((k.dispatch ? hk.num_recv : hk.num_tokens) * k.width), -1);
    if (k.dispatch) {
      ex->dispatch(hk, k.in, k.got, k.width);
    } else {
      ex->combine(hk, k.in, k.got, k.width);
    }
  }
  int64_t wrong = 0;
  for (Call& k : calls) {
    std::vector<float> want(k.got.size(), -2);
    if (k.dispatch) {
      flat->dispatch(f[k.which], k.in, want, k.width);
    } else {
      flat->combine(f[k.which], k.in, want, k.width);
    }
    for (size_t i = 0; i < want.size(); ++i) wrong += k.got[i] != want[i];  // small integers: exact
  }
  EXPECT_EQ(sum_over_world(wrong), 0);
}

TEST(HierExchange, DescribeNamesTheTransports) {
  const int P = sy::test::world_size();
  if (P < 2) GTEST_SKIP() << "one rank: one node";
  auto ucx = make(A2aAlgo::kHierarchical, Internode::kUcx, {2, false}, P);
  const std::string d = ucx->describe();
  EXPECT_NE(d.find("hierarchical"), std::string::npos) << d;
  EXPECT_NE(d.find("2 nodes x " + std::to_string(P / 2)), std::string::npos) << d;
  EXPECT_NE(d.find("UCX"), std::string::npos) << d;
  EXPECT_NE(d.find('/'), std::string::npos) << "no transport/device pair in: " << d;
  EXPECT_NE(d.find("(all on one host: emulated nodes)"), std::string::npos) << d;
  // One node is what it says: nothing emulated (its ranks share the host as any node's do).
  const std::string one = make(A2aAlgo::kHierarchical, Internode::kUcx, {1, false}, P)->describe();
  EXPECT_NE(one.find("1 node x " + std::to_string(P) + " EP ranks;"), std::string::npos) << one;
  EXPECT_NE(one.find("inter-node: none (one node)"), std::string::npos) << one;
  auto mpi = make(A2aAlgo::kHierarchical, Internode::kMpi, {2, false}, P);
  EXPECT_NE(mpi->describe().find("MPI_Ialltoallv"), std::string::npos) << mpi->describe();
  auto flat = make(A2aAlgo::kFlat, Internode::kMpi, {2, false}, P);
  EXPECT_NE(flat->describe().find("flat"), std::string::npos) << flat->describe();
}

}  // namespace

// comm/collectives.h against sums and layouts written out here: rank r contributes values that
// encode (r, i), so every expected element is a closed-form sum over the ranks or a known rank's
// value. Uneven counts (a rank with none), float, double and the integer types, a broadcast from
// the last rank, and every result bitwise the same on every rank.
#include "comm/collectives.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/mpi_util.h"

namespace {

using sy::comm::Comm;

// Rank r's value at i: exact in float, double and the integers for the sizes used here.
template <class T>
T value(int r, int64_t i) {
  return static_cast<T>(1000 * (r + 1) + i);
}
// sum over r < P of value(r, i) = 1000 P (P + 1) / 2 + P i.
template <class T>
T sum_of(int P, int64_t i) {
  return static_cast<T>(500 * P * (P + 1) + static_cast<int64_t>(P) * i);
}

// Rank r holds r % 3 elements (rank 0 none): uneven counts with an empty part.
std::vector<int64_t> uneven_counts(int P) {
  std::vector<int64_t> c(static_cast<size_t>(P));
  for (int r = 0; r < P; ++r) c[static_cast<size_t>(r)] = r % 3;
  return c;
}
int64_t offset_of(const std::vector<int64_t>& counts, int r) {
  int64_t o = 0;
  for (int q = 0; q < r; ++q) o += counts[static_cast<size_t>(q)];
  return o;
}

template <class T>
void check_all(const Comm& world) {
  const int P = world.size(), me = world.rank();
  // allreduce_sum, in place.
  std::vector<T> a(7);
  for (int64_t i = 0; i < 7; ++i) a[static_cast<size_t>(i)] = value<T>(me, i);
  sy::comm::allreduce_sum(std::span<T>(a), world, nullptr, "test");
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(a[static_cast<size_t>(i)], sum_of<T>(P, i)) << i;

  // reduce_scatter_sum: chunk c of 3 elements; element j of my chunk is the sum of every rank's
  // element me * 3 + j.
  std::vector<T> send(static_cast<size_t>(3 * P)), chunk(3);
  for (int64_t i = 0; i < 3 * P; ++i) send[static_cast<size_t>(i)] = value<T>(me, i);
  sy::comm::reduce_scatter_sum(std::span<const T>(send), std::span<T>(chunk), world, nullptr,
                               "test");
  for (int64_t j = 0; j < 3; ++j)
    EXPECT_EQ(chunk[static_cast<size_t>(j)], sum_of<T>(P, 3 * me + j)) << j;

  // allgather_inplace: chunk r (2 elements) is rank r's.
  std::vector<T> buf(static_cast<size_t>(2 * P), T(-1));
  for (int64_t j = 0; j < 2; ++j) buf[static_cast<size_t>(2 * me + j)] = value<T>(me, j);
  sy::comm::allgather_inplace(std::span<T>(buf), world, nullptr, "test");
  for (int r = 0; r < P; ++r)
    for (int64_t j = 0; j < 2; ++j)
      EXPECT_EQ(buf[static_cast<size_t>(2 * r + j)], value<T>(r, j)) << r << " " << j;

  // allgatherv and its adjoint reduce_scatter_v with uneven counts.
  const std::vector<int64_t> counts = uneven_counts(P);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  std::vector<T> mine(static_cast<size_t>(counts[static_cast<size_t>(me)]));
  for (size_t j = 0; j < mine.size(); ++j) mine[j] = value<T>(me, static_cast<int64_t>(j));
  std::vector<T> all(static_cast<size_t>(total), T(-1));
  sy::comm::allgatherv(std::span<const T>(mine), std::span<T>(all),
                       std::span<const int64_t>(counts), world, nullptr, "test");
  for (int r = 0; r < P; ++r)
    for (int64_t j = 0; j < counts[static_cast<size_t>(r)]; ++j)
      EXPECT_EQ(all[static_cast<size_t>(offset_of(counts, r) + j)], value<T>(r, j)) << r;

  std::vector<T> contrib(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) contrib[static_cast<size_t>(i)] = value<T>(me, i);
  std::vector<T> part(mine.size(), T(-1));
  sy::comm::reduce_scatter_v(std::span<const T>(contrib), std::span<T>(part),
                             std::span<const int64_t>(counts), world, nullptr, "test");
  for (size_t j = 0; j < part.size(); ++j)
    EXPECT_EQ(part[j], sum_of<T>(P, offset_of(counts, me) + static_cast<int64_t>(j))) << j;

  // broadcast from the last rank.
  std::vector<T> b(4);
  for (int64_t i = 0; i < 4; ++i) b[static_cast<size_t>(i)] = value<T>(me, i);
  sy::comm::broadcast(std::span<T>(b), P - 1, world, nullptr, "test");
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(b[static_cast<size_t>(i)], value<T>(P - 1, i)) << i;
}

TEST(Collectives, SumsGathersAndBroadcastByHand) {
  const Comm world(MPI_COMM_WORLD);
  check_all<float>(world);
  check_all<double>(world);
  check_all<int64_t>(world);
  check_all<int32_t>(world);
}

// The root's text, whatever the others hold: longer, shorter, empty.
TEST(Collectives, BroadcastStringSendsTheRootsText) {
  const Comm world(MPI_COMM_WORLD);
  const int me = world.rank(), P = world.size();
  const std::string mine(static_cast<size_t>(3 * me), static_cast<char>('a' + me));
  for (int root = 0; root < P; ++root) {
    const std::string got = sy::comm::broadcast_string(mine, root, world, nullptr, "test");
    EXPECT_EQ(got, std::string(static_cast<size_t>(3 * root), static_cast<char>('a' + root)))
        << "root " << root;
  }
  std::string with_nul("x\0y", 3);
  EXPECT_EQ(sy::comm::broadcast_string(me == 0 ? with_nul : "other", 0, world, nullptr, "test"),
            with_nul);
}

// Values that a float cannot hold: a double all-reduce must move and sum doubles.
TEST(Collectives, DoubleAllReduceKeepsDoublePrecision) {
  const Comm world(MPI_COMM_WORLD);
  const int P = world.size();
  std::vector<double> a = {1.0 + 1e-12 * (world.rank() + 1), 1e300};
  sy::comm::allreduce_sum(std::span<double>(a), world, nullptr, "test");
  EXPECT_NEAR(a[0], P + 1e-12 * P * (P + 1) / 2.0, 1e-14) << "a float all-reduce rounds this";
  EXPECT_DOUBLE_EQ(a[1], 1e300 * P) << "a float all-reduce overflows this";
}

}  // namespace

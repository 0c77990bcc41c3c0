#include "comm/collectives.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm {

template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<int64_t>() {
  return MPI_INT64_T;
}
template <>
MPI_Datatype mpi_type<int32_t>() {
  return MPI_INT32_T;
}
template <>
MPI_Datatype mpi_type<char>() {
  return MPI_CHAR;
}

namespace {

int as_count(size_t n, const char* what) {
  SY_CHECK(n <= static_cast<size_t>(INT_MAX),
           what << ": " << n << " elements exceed MPI's int count; split the call");
  return static_cast<int>(n);
}

}  // namespace

template <class T>
void allreduce_sum(std::span<T> data, const Comm& comm, Watchdog* watchdog, const char* what) {
  if (comm.size() <= 1 || data.empty()) return;
  const int n = as_count(data.size(), what);
  WatchdogScope scope(watchdog, std::string("all-reduce: ") + what);
  if (comm.rank() == 0) {
    MPI_CHECK(MPI_Reduce(MPI_IN_PLACE, data.data(), n, mpi_type<T>(), MPI_SUM, 0, comm.get()));
  } else {
    MPI_CHECK(MPI_Reduce(data.data(), nullptr, n, mpi_type<T>(), MPI_SUM, 0, comm.get()));
  }
  MPI_CHECK(MPI_Bcast(data.data(), n, mpi_type<T>(), 0, comm.get()));
}

template <class T>
void reduce_scatter_sum(std::span<const T> send, std::span<T> recv_chunk, const Comm& comm,
                        Watchdog* watchdog, const char* what) {
  const size_t chunk = recv_chunk.size();
  SY_CHECK(send.size() == chunk * static_cast<size_t>(comm.size()),
           what << ": send holds " << send.size() << " elements, expected " << comm.size()
                << " chunks of " << chunk);
  if (comm.size() <= 1) {
    std::copy(send.begin(), send.end(), recv_chunk.begin());
    return;
  }
  if (chunk == 0) return;
  const int n = as_count(chunk, what);
  WatchdogScope scope(watchdog, std::string("reduce-scatter: ") + what);
  MPI_CHECK(MPI_Reduce_scatter_block(send.data(), recv_chunk.data(), n, mpi_type<T>(), MPI_SUM,
                                     comm.get()));
}

template <class T>
void allgather_inplace(std::span<T> buf, const Comm& comm, Watchdog* watchdog, const char* what) {
  if (comm.size() <= 1 || buf.empty()) return;
  const size_t p = static_cast<size_t>(comm.size());
  SY_CHECK(buf.size() % p == 0,
           what << ": " << buf.size() << " elements are not " << p << " equal chunks");
  const int n = as_count(buf.size() / p, what);
  WatchdogScope scope(watchdog, std::string("all-gather: ") + what);
  MPI_CHECK(
      MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf.data(), n, mpi_type<T>(), comm.get()));
}

namespace {
// MPI's int counts and displacements of a variable-count collective.
void int_counts(std::span<const int64_t> counts, std::vector<int>& n, std::vector<int>& displ,
                const char* what) {
  n.resize(counts.size());
  displ.resize(counts.size());
  size_t at = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    SY_CHECK(counts[r] >= 0, what << ": negative count " << counts[r] << " of rank " << r);
    n[r] = as_count(static_cast<size_t>(counts[r]), what);
    displ[r] = as_count(at, what);
    at += static_cast<size_t>(counts[r]);
  }
}
}  // namespace

template <class T>
void allgatherv(std::span<const T> mine, std::span<T> all, std::span<const int64_t> counts,
                const Comm& comm, Watchdog* watchdog, const char* what) {
  SY_CHECK(static_cast<int>(counts.size()) == comm.size() &&
               static_cast<int64_t>(mine.size()) == counts[static_cast<size_t>(comm.rank())],
           what << ": counts do not match the communicator or this rank's part");
  if (comm.size() <= 1) {
    std::copy(mine.begin(), mine.end(), all.begin());
    return;
  }
  std::vector<int> n, displ;
  int_counts(counts, n, displ, what);
  SY_CHECK(all.size() >= static_cast<size_t>(displ.back()) + static_cast<size_t>(n.back()),
           what << ": output too small");
  WatchdogScope scope(watchdog, std::string("all-gather-v: ") + what);
  MPI_CHECK(MPI_Allgatherv(mine.data(), n[static_cast<size_t>(comm.rank())], mpi_type<T>(),
                           all.data(), n.data(), displ.data(), mpi_type<T>(), comm.get()));
}

template <class T>
void reduce_scatter_v(std::span<const T> all, std::span<T> mine, std::span<const int64_t> counts,
                      const Comm& comm, Watchdog* watchdog, const char* what) {
  SY_CHECK(static_cast<int>(counts.size()) == comm.size() &&
               static_cast<int64_t>(mine.size()) == counts[static_cast<size_t>(comm.rank())],
           what << ": counts do not match the communicator or this rank's part");
  if (comm.size() <= 1) {
    std::copy(all.begin(), all.begin() + static_cast<long>(mine.size()), mine.begin());
    return;
  }
  std::vector<int> n, displ;
  int_counts(counts, n, displ, what);
  WatchdogScope scope(watchdog, std::string("reduce-scatter-v: ") + what);
  MPI_CHECK(
      MPI_Reduce_scatter(all.data(), mine.data(), n.data(), mpi_type<T>(), MPI_SUM, comm.get()));
}

template <class T>
void broadcast(std::span<T> data, int root, const Comm& comm, Watchdog* watchdog,
               const char* what) {
  if (comm.size() <= 1 || data.empty()) return;
  const int n = as_count(data.size(), what);
  WatchdogScope scope(watchdog, std::string("broadcast: ") + what);
  MPI_CHECK(MPI_Bcast(data.data(), n, mpi_type<T>(), root, comm.get()));
}

#define SY_INSTANTIATE(T)                                                                       \
  template void allreduce_sum<T>(std::span<T>, const Comm&, Watchdog*, const char*);            \
  template void reduce_scatter_sum<T>(std::span<const T>, std::span<T>, const Comm&, Watchdog*, \
                                      const char*);                                             \
  template void allgather_inplace<T>(std::span<T>, const Comm&, Watchdog*, const char*);        \
  template void broadcast<T>(std::span<T>, int, const Comm&, Watchdog*, const char*);           \
  template void allgatherv<T>(std::span<const T>, std::span<T>, std::span<const int64_t>,       \
                              const Comm&, Watchdog*, const char*);                             \
  template void reduce_scatter_v<T>(std::span<const T>, std::span<T>, std::span<const int64_t>, \
                                    const Comm&, Watchdog*, const char*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
SY_INSTANTIATE(int64_t)
SY_INSTANTIATE(int32_t)
#undef SY_INSTANTIATE
template void broadcast<char>(std::span<char>, int, const Comm&, Watchdog*, const char*);

std::string broadcast_string(const std::string& text, int root, const Comm& comm,
                             Watchdog* watchdog, const char* what) {
  std::string out = comm.rank() == root ? text : std::string();
  int64_t size = static_cast<int64_t>(out.size());
  broadcast(std::span<int64_t>(&size, 1), root, comm, watchdog, what);
  out.resize(static_cast<size_t>(size));
  broadcast(std::span<char>(out.data(), out.size()), root, comm, watchdog, what);
  return out;
}

}  // namespace sy::comm

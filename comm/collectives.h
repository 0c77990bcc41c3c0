// The collectives the trainer uses outside the expert all-to-all, each bounded by the watchdog
// and each giving BITWISE the same result on every rank of the communicator. Replicated
// parameters and activations must stay identical across ranks (a tensor-parallel pair that
// drifts apart by one ulp computes different routes a few hundred steps later), and MPI does not
// promise that of MPI_Allreduce (Open MPI's recursive doubling adds in rank-dependent order for
// non-power-of-two sizes). So:
//   allreduce_sum      = MPI_Reduce to rank 0, then MPI_Bcast  (activations, small vectors)
//   reduce_scatter_sum = MPI_Reduce_scatter_block             (each chunk is reduced once)
//   allgather_inplace  = MPI_Allgather with MPI_IN_PLACE
// A communicator of size 1 makes each of them a no-op (or a copy). Counts are elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "comm/mpi.h"

namespace sy::comm {

class Watchdog;

template <class T>
MPI_Datatype mpi_type();  // float, double, int64_t, int32_t, char

// data[n] (=) sum over the ranks of comm of their data[n]; identical on every rank.
template <class T>
void allreduce_sum(std::span<T> data, const Comm& comm, Watchdog* watchdog, const char* what);

// recv_chunk[c] (=) sum over ranks of send[rank() * c .. (rank()+1) * c), c = recv_chunk.size();
// send holds size() * c elements.
template <class T>
void reduce_scatter_sum(std::span<const T> send, std::span<T> recv_chunk, const Comm& comm,
                        Watchdog* watchdog, const char* what);

// buf[size() * c] (=) every rank's chunk buf[r*c .. (r+1)*c) gathered in place.
template <class T>
void allgather_inplace(std::span<T> buf, const Comm& comm, Watchdog* watchdog, const char* what);

// all[sum(counts)] (=) every rank's `mine` (counts[r] elements from rank r) in rank order.
// counts[rank()] must equal mine.size().
template <class T>
void allgatherv(std::span<const T> mine, std::span<T> all, std::span<const int64_t> counts,
                const Comm& comm, Watchdog* watchdog, const char* what);

// mine[counts[rank()]] (=) sum over ranks of their all[offset_r .. offset_r + counts[r]) for
// r = rank(), offsets the prefix sums of counts. The adjoint of allgatherv.
template <class T>
void reduce_scatter_v(std::span<const T> all, std::span<T> mine, std::span<const int64_t> counts,
                      const Comm& comm, Watchdog* watchdog, const char* what);

// data (=) root's data on every rank.
template <class T>
void broadcast(std::span<T> data, int root, const Comm& comm, Watchdog* watchdog, const char* what);

// root's `text` (a config, a path, packed state) on every rank: its size, then its bytes. The
// other ranks' `text` is not read.
std::string broadcast_string(const std::string& text, int root, const Comm& comm,
                             Watchdog* watchdog, const char* what);

}  // namespace sy::comm

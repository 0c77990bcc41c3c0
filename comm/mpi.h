// MPI error checking and the communicator owner.
//
// Every MPI call in switchyard goes through MPI_CHECK. The communicators we create are set to
// MPI_ERRORS_RETURN, so a failing call comes back as a code and MPI_CHECK turns it into a
// std::runtime_error naming the call, file:line, the world rank and MPI's own message.
#pragma once

// Open MPI's mpi.h drags in the deprecated C++ bindings (which need libmpi_cxx) unless told not
// to; we use the C API only. Include MPI through this header, never <mpi.h> directly.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <string>

namespace sy::comm {

namespace detail {
[[noreturn]] void throw_mpi_error(int error_code, const char* call, const char* file, int line);
}  // namespace detail

// Rank in MPI_COMM_WORLD, or -1 when MPI is not initialized (or already finalized).
int world_rank();

// MPI's text for an error code ("MPI_ERR_RANK: invalid rank" and the like).
std::string mpi_error_string(int error_code);

// MPI for the lifetime of a command: MPI_Init_thread (MPI_THREAD_FUNNELED: only the main thread
// calls MPI; the watchdog thread only ever calls MPI_Abort) unless MPI is already initialized,
// and MPI_Finalize on destruction if this object initialized it. Works without mpirun (an MPI
// singleton of one rank). One per process, created in app/ before any communicator.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int world_rank() const { return rank_; }
  int world_size() const { return size_; }

 private:
  bool owns_ = false;
  int rank_ = 0, size_ = 1;
};

// Owner of one communicator. Frees it on destruction unless it is MPI_COMM_WORLD, MPI_COMM_SELF
// or MPI_COMM_NULL (those are not ours to free), or a borrowed one. Non-copyable, movable.
class Comm {
 public:
  Comm() = default;
  // Takes ownership of `comm` and sets MPI_ERRORS_RETURN on it, so errors come back to
  // MPI_CHECK. MPI_COMM_WORLD/SELF are wrapped without ownership and keep their handler.
  explicit Comm(MPI_Comm comm);
  ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  Comm(Comm&& other) noexcept;
  Comm& operator=(Comm&& other) noexcept;

  // MPI_Comm_dup(parent): a private context, so our messages never match the caller's.
  static Comm dup(MPI_Comm parent);
  // MPI_Comm_split(parent, color, key). color may be MPI_UNDEFINED (the result is then null).
  static Comm split(MPI_Comm parent, int color, int key);
  // A view of a caller's communicator, for the collectives below: neither freed nor given
  // another error handler. The caller keeps it alive while the view is used.
  static Comm borrow(MPI_Comm comm);

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm get() const { return comm_; }
  bool is_null() const { return comm_ == MPI_COMM_NULL; }

 private:
  void reset() noexcept;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = -1;
  int size_ = 0;
  bool borrowed_ = false;
};

// Owner of a committed MPI datatype of `width` contiguous `elem`s: one row of a token exchange.
// Counts and displacements given in such rows stay far inside MPI's int arguments where the same
// message counted in elements or bytes would not: an fp32 row of d_model 7168 is 28 672 bytes,
// so 75 000 rows already pass INT_MAX bytes. Throws std::runtime_error when `width` itself does
// not fit an int. Freed on destruction (MPI lets a pending non-blocking call finish with it).
class RowType {
 public:
  RowType(long long width, MPI_Datatype elem);
  ~RowType();
  RowType(const RowType&) = delete;
  RowType& operator=(const RowType&) = delete;

  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

}  // namespace sy::comm

// Checks the return code of an MPI call (the communicator must be in MPI_ERRORS_RETURN mode for
// the code to come back at all).
#define MPI_CHECK(call)                                                           \
  do {                                                                            \
    const int sy_mpi_rc_ = (call);                                                \
    if (sy_mpi_rc_ != MPI_SUCCESS)                                                \
      ::sy::comm::detail::throw_mpi_error(sy_mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)

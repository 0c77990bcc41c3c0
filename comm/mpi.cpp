#include "comm/mpi.h"

#include <climits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace sy::comm {

int world_rank() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return -1;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

std::string mpi_error_string(int error_code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(error_code, text, &len) != MPI_SUCCESS) {
    return "unknown MPI error code " + std::to_string(error_code);
  }
  return std::string(text, static_cast<size_t>(len));
}

namespace detail {
void throw_mpi_error(int error_code, const char* call, const char* file, int line) {
  std::ostringstream os;
  os << "rank " << world_rank() << ": " << file << ":" << line << ": " << call
     << " failed: " << mpi_error_string(error_code);
  throw std::runtime_error(os.str());
}
}  // namespace detail

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
      throw std::runtime_error("MPI_Init_thread failed: " + mpi_error_string(rc));
    owns_ = true;
  }
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

namespace {
bool owned(MPI_Comm comm) {
  return comm != MPI_COMM_NULL && comm != MPI_COMM_WORLD && comm != MPI_COMM_SELF;
}
}  // namespace

Comm::Comm(MPI_Comm comm) : comm_(comm) {
  if (comm_ == MPI_COMM_NULL) return;
  try {
    // World and self keep the handler their owner gave them (see install_abort_error_handler).
    if (owned(comm_)) MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
  } catch (...) {
    reset();
    throw;
  }
}

Comm::~Comm() {
  reset();
}

Comm::Comm(Comm&& other) noexcept
    : comm_(std::exchange(other.comm_, MPI_COMM_NULL)),
      rank_(std::exchange(other.rank_, -1)),
      size_(std::exchange(other.size_, 0)),
      borrowed_(std::exchange(other.borrowed_, false)) {}

Comm& Comm::operator=(Comm&& other) noexcept {
  if (this != &other) {
    reset();
    comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
    rank_ = std::exchange(other.rank_, -1);
    size_ = std::exchange(other.size_, 0);
    borrowed_ = std::exchange(other.borrowed_, false);
  }
  return *this;
}

void Comm::reset() noexcept {
  // A destructor cannot throw; after MPI_Finalize there is nothing left to free.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned(comm_) && !borrowed_ && !finalized) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
  rank_ = -1;
  size_ = 0;
  borrowed_ = false;
}

Comm Comm::dup(MPI_Comm parent) {
  MPI_Comm out = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_dup(parent, &out));
  return Comm(out);
}

Comm Comm::borrow(MPI_Comm comm) {
  Comm view;
  view.comm_ = comm;
  view.borrowed_ = true;
  if (comm == MPI_COMM_NULL) return view;
  MPI_CHECK(MPI_Comm_rank(comm, &view.rank_));
  MPI_CHECK(MPI_Comm_size(comm, &view.size_));
  return view;
}

RowType::RowType(long long width, MPI_Datatype elem) {
  if (width < 1 || width > INT_MAX)
    throw std::runtime_error("MPI row type of " + std::to_string(width) +
                             " elements: must be in [1, INT_MAX]");
  MPI_CHECK(MPI_Type_contiguous(static_cast<int>(width), elem, &type_));
  if (const int rc = MPI_Type_commit(&type_); rc != MPI_SUCCESS) {
    MPI_Type_free(&type_);
    detail::throw_mpi_error(rc, "MPI_Type_commit", __FILE__, __LINE__);
  }
}

RowType::~RowType() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (type_ != MPI_DATATYPE_NULL && !finalized) MPI_Type_free(&type_);
}

Comm Comm::split(MPI_Comm parent, int color, int key) {
  MPI_Comm out = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split(parent, color, key, &out));
  return Comm(out);
}

}  // namespace sy::comm

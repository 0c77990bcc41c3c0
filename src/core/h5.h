// HDF5 helpers: RAII owners for handles, a check that turns a failed call into an exception that
// carries HDF5's own message, and a guard that keeps HDF5's automatic error printing off the
// terminal. Header-only, and included only by code that links HDF5 (sy_data and later).
//
//   sy::h5::ErrorSilencer quiet;                       // for the scope of the calls
//   sy::h5::File f{H5_CHECK(H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT))};
//   H5_CHECK(H5Dread(...));
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sy::h5 {

// A failed HDF5 call. Callers that read user files turn it into a UsageError naming the file.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Switches HDF5's automatic error-stack printing off for its lifetime and restores the previous
// handler after: HDF5's spew must not reach the terminal, and our own message says what failed.
class ErrorSilencer {
 public:
  ErrorSilencer() {
    H5Eget_auto2(H5E_DEFAULT, &old_func_, &old_data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~ErrorSilencer() { H5Eset_auto2(H5E_DEFAULT, old_func_, old_data_); }
  ErrorSilencer(const ErrorSilencer&) = delete;
  ErrorSilencer& operator=(const ErrorSilencer&) = delete;

 private:
  H5E_auto2_t old_func_ = nullptr;
  void* old_data_ = nullptr;
};

// HDF5's automatic error printing off for the rest of the process, where a command starts:
// switchyard reports every HDF5 failure itself (H5_CHECK, ErrorSilencer), and HDF5 1.10.8 leaks
// the header of an object it failed to load (a damaged checkpoint: HDFGroup/hdf5#3790), so that
// closing the library -- at MPI_Finalize, or at exit -- printed "HDF5: infinite loop closing
// library" and a line of codes after the right message and exit code, as long as printing was on.
// Call it after MPI_Init: HDF5 started before MPI would close at exit, after MPI_Finalize.
inline void print_no_library_errors() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

// The descriptions on HDF5's current error stack, outermost (the API call) first: the first three
// frames, and the innermost -- the cause, where the stack is deeper ("...; H5C_load_entry:
// incorrect metadata checksum after all read attempts": a damaged file, which the fourth frame
// down did not say). The frames between are HDF5's internals.
inline std::string error_stack_message() {
  std::vector<std::string> frames;
  auto walk = [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->push_back(
        std::string(e->func_name ? e->func_name : "?") + ": " + (e->desc ? e->desc : "?"));
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk, &frames);
  if (frames.empty()) return "no HDF5 error message";
  std::string msg;
  for (size_t i = 0; i < frames.size(); ++i) {
    if (i >= 3 && i + 1 < frames.size()) continue;
    if (!msg.empty()) msg += i > 3 ? "; ...; " : "; ";
    msg += frames[i];
  }
  return msg;
}

// Why H5Fopen of a file that has HDF5's signature just failed, in words (call it right after:
// it reads the error stack): a truncated file says how much of it is there (HDF5's message gave
// "eof = 100000, sblock->base_addr = 0, stored_eof = 820115" among its frames), a file another
// process holds open for writing says so; anything else is "truncated or damaged" with HDF5's
// own message.
inline constexpr const char* kHeldOpenForWriting = "another process holds it open for writing";
inline std::string file_open_problem() {
  const std::string stack = error_stack_message();
  long long eof = -1, stored = -1;
  if (const size_t at = stack.find("truncated file: eof = "); at != std::string::npos) {
    std::sscanf(stack.c_str() + at, "truncated file: eof = %lld", &eof);
    if (const size_t s = stack.find("stored_eof = ", at); s != std::string::npos)
      std::sscanf(stack.c_str() + s, "stored_eof = %lld", &stored);
  }
  if (eof >= 0 && stored > eof)
    return "cannot be opened: truncated, " + std::to_string(eof) + " of its " +
           std::to_string(stored) + " bytes are there (a copy or a write cut short)";
  // HDF5's own file lock, held by another process writing the file (h5py's 'r+', a writer
  // still running): the file is in use, not damaged.
  if (stack.find("unable to lock file") != std::string::npos)
    return std::string("cannot be opened: ") + kHeldOpenForWriting +
           " (HDF5's file lock: " + stack + ")";
  return "cannot be opened: truncated or damaged (" + stack + ")";
}

// "1.10.8": the HDF5 library this process runs.
inline std::string library_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

// Why H5Dopen2 of `path` in `file` just failed, in words for a user's file: another kind of object
// where a dataset belongs, or a dataset this HDF5 cannot open -- a newer file format's layout or
// filter message (h5py's libver='latest' with HDF5 2.x), a damaged object header -- with HDF5's
// own message. Call it right after the failure (it reads the error stack).
inline std::string dataset_open_problem(hid_t file, const char* path) {
  const std::string stack = error_stack_message();
  H5O_info_t info{};
  if (H5Oget_info_by_name2(file, path, &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
      info.type != H5O_TYPE_DATASET)
    return info.type == H5O_TYPE_GROUP ? "is a group, not a dataset" : "is not a dataset";
  if (stack.find("incorrect metadata checksum") != std::string::npos)
    return "cannot be opened: its object header is damaged (" + stack + ")";
  return "cannot be opened by this build's HDF5 " + library_version() + " (" + stack +
         "): a file format newer than it reads (h5py's libver='latest'; rewrite with libver up "
         "to 'v114'), or a damaged object header";
}

// Why H5Dread of a dataset just failed, in words: HDF5's message, and what it usually means.
inline std::string dataset_read_problem() {
  return "cannot be read (" + error_stack_message() +
         "): a damaged chunk (its checksum does not match) or a filter this HDF5 lacks";
}

// Returns `value` (a handle or status) when it is >= 0, else throws h5::Error naming the call,
// the source location, the MPI rank (when MPI is up) and HDF5's own message.
template <class T>
T check(T value, const char* call, const char* file, int line) {
  if (value >= 0) return value;
  std::ostringstream os;
  os << call << " failed at " << file << ":" << line;
  int mpi_up = 0;
  MPI_Initialized(&mpi_up);
  if (mpi_up) {
    int finalized = 0, rank = 0;
    MPI_Finalized(&finalized);
    if (!finalized && MPI_Comm_rank(MPI_COMM_WORLD, &rank) == MPI_SUCCESS)
      os << " (rank " << rank << ")";
  }
  os << ": " << error_stack_message();
  throw Error(os.str());
}

// Owner of one HDF5 identifier; Close is the matching H5?close. Move-only.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: pass straight to H5* calls
  // Gives the identifier up without closing it (the caller closes it, checked).
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }
  void reset() {
    if (id_ >= 0) Close(id_);  // a close failure in a destructor has nowhere to go
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Dataspace = Handle<H5Sclose>;
using Datatype = Handle<H5Tclose>;
using Attribute = Handle<H5Aclose>;
using PropList = Handle<H5Pclose>;

}  // namespace sy::h5

// Evaluates an HDF5 call; on a negative result throws sy::h5::Error with the call's text,
// file:line, rank and HDF5's message. Usable as an expression: hid_t f = H5_CHECK(H5Fopen(...)).
#define H5_CHECK(call) ::sy::h5::check((call), #call, __FILE__, __LINE__)

// Internals shared by the checkpoint writer and reader (not for use outside src/ckpt): HDF5
// attribute helpers, the rank-agreement helpers that keep every rank on the same path through a
// collective operation, a small binary serializer for broadcasting state, and the manifest.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/core/h5.h"
#include "src/core/h5_attr.h"

namespace sy::comm {
class Watchdog;
}

namespace sy::ckpt::detail {

inline constexpr const char* kFormat = "switchyard-checkpoint";
inline constexpr int64_t kFormatVersion = 1;
inline constexpr const char* kRngGenerator = "philox4x32-10";

// ---- HDF5 attributes (src/core/h5_attr.h) ----------------------------------------------------

using h5::has_attr;
using h5::read_attr_f64;
using h5::read_attr_i64;
using h5::read_attr_string;
using h5::read_attr_u64;
using h5::write_attr;

// Whether every link of "a/b/c" exists below `loc` (H5Lexists needs each parent to exist).
bool path_exists(hid_t loc, const std::string& path);

// Every object of the file below the root ("." for the root itself first), in name order.
struct H5Object {
  std::string path;  // "model/embed", no leading '/'
  H5O_type_t type;
};
std::vector<H5Object> list_objects(hid_t file);

// File access through MPI-IO on `comm`, HDF5 1.10 file format (its metadata carries checksums).
h5::PropList mpio_fapl(MPI_Comm comm);
// Same format bounds, POSIX driver (one process).
h5::PropList serial_fapl();

// ---- agreement across ranks --------------------------------------------------------------------

// The ranks of one collective checkpoint operation and the watchdog that bounds every wait in it
// (parallel.timeout_s; null: unbounded, as in `ckpt info`). `what` arguments below name the work
// in the watchdog's message ("checkpoint 'd/step_00000010.h5': writing dataset /model/embed").
struct Coll {
  MPI_Comm comm = MPI_COMM_NULL;
  comm::Watchdog* watchdog = nullptr;
  const ReadProgress* progress = nullptr;  // long reads' progress lines (null: quiet)
};

// Runs `fn` on every rank (bounded by the watchdog as `what`: fn may make collective HDF5 calls),
// then the ranks agree on the outcome. When fn threw on any rank, every rank throws the error of
// the lowest failing rank, reported once: on rank 0, quiet elsewhere. CheckpointError and
// UsageError keep their type; anything else becomes Error(kExitOther, "<what> failed on rank R:
// <message>"). So all ranks leave a collective operation together, and a user reads one message.
void agree(const Coll& c, const std::string& what, const std::function<void()>& fn);
// Runs `fn` on rank 0 only, with the same error agreement.
void on_root(const Coll& c, const std::string& what, const std::function<void()>& fn);

// `s` of rank `root`, on every rank.
std::string bcast_string(const Coll& c, const std::string& s, int root, const std::string& what);
// Every rank's `mine`, in rank order.
std::vector<std::string> allgather_strings(const Coll& c, const std::string& mine,
                                           const std::string& what);

// The same without a watchdog (unbounded waits), for code that has none to pass.
void agree(MPI_Comm comm, const std::function<void()>& fn);
void on_root(MPI_Comm comm, const std::function<void()>& fn);
std::string bcast_string(MPI_Comm comm, const std::string& s, int root);

int comm_rank(MPI_Comm comm);
int comm_size(MPI_Comm comm);

// ---- a tiny serializer for broadcasting structs (same binary on every rank of one job) ---------

class Packer {
 public:
  void i64(int64_t v);
  void u64(uint64_t v);
  void f64(double v);
  void str(const std::string& s);
  void shape(const std::vector<int64_t>& s);
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

class Unpacker {
 public:
  explicit Unpacker(const std::string& bytes) : in_(bytes) {}
  int64_t i64();
  uint64_t u64();
  double f64();
  std::string str();
  std::vector<int64_t> shape();

 private:
  void take(void* dst, size_t n);
  const std::string& in_;
  size_t pos_ = 0;
};

void pack(Packer& p, const TrainState& s);
TrainState unpack_state(Unpacker& u);

// ---- manifest (root attribute `tensors`): one line "<path> <d0>,<d1>,..." per dataset ----------

struct ManifestEntry {
  std::string path;  // without the leading '/'
  std::vector<int64_t> shape;
};
std::string format_manifest(const std::vector<ManifestEntry>& entries);
// Throws std::runtime_error on a malformed line.
std::vector<ManifestEntry> parse_manifest(const std::string& text);

// The chunk shape of a tensor dataset: whole trailing dimensions, as many leading rows as fit in
// about 4 MiB (splitting a dimension further only when one row alone is larger), the rows of a
// split dimension shared evenly among its chunks (less than one row of padding per chunk).
std::vector<int64_t> chunk_shape(const std::vector<int64_t>& shape);

// Checks that `slab` selects inside `shape` with non-overlapping blocks; throws std::logic_error
// naming `path` otherwise.
void check_slab(const std::string& path, const std::vector<int64_t>& shape, const Slab& slab);

// Selects `slab` in the file dataspace `space` (H5S_SELECT_SET), or nothing when numel() == 0.
void select_slab(hid_t space, const Slab& slab);

// The memory dataspace of a rank's buffer for `slab` (null: the rank moves nothing): the slab's
// local shape, all selected, or nothing selected when it holds no element. The same elements in
// the same order as a flat space of numel(), but with a shape like the file selection's HDF5 maps
// whole runs to chunks; a flat one it mapped element by element (a 88.5 MiB checkpoint's write
// took 1.05 s of CPU, 0.37 s this way; QA).
h5::Dataspace memory_space(const Slab* slab);

}  // namespace sy::ckpt::detail

#include "src/ckpt/detail.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "comm/collectives.h"
#include "comm/watchdog.h"

namespace sy::ckpt::detail {

bool path_exists(hid_t loc, const std::string& path) {
  size_t pos = 0;
  while (true) {
    const size_t slash = path.find('/', pos);
    const std::string prefix = path.substr(0, slash);
    if (H5_CHECK(H5Lexists(loc, prefix.c_str(), H5P_DEFAULT)) <= 0) return false;
    if (slash == std::string::npos) return true;
    pos = slash + 1;
  }
}

namespace {
herr_t collect_object(hid_t, const char* name, const H5O_info_t* info, void* data) {
  try {
    static_cast<std::vector<H5Object>*>(data)->push_back({name, info->type});
    return 0;
  } catch (...) {
    return -1;  // no exception may cross HDF5's C frames
  }
}
}  // namespace

std::vector<H5Object> list_objects(hid_t file) {
  std::vector<H5Object> objects;
  H5_CHECK(H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, collect_object, &objects, H5O_INFO_BASIC));
  return objects;
}

h5::PropList mpio_fapl(MPI_Comm comm) {
  h5::PropList fapl{H5_CHECK(H5Pcreate(H5P_FILE_ACCESS))};
  H5_CHECK(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
  H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110));
  return fapl;
}

h5::PropList serial_fapl() {
  h5::PropList fapl{H5_CHECK(H5Pcreate(H5P_FILE_ACCESS))};
  H5_CHECK(H5Pset_fapl_sec2(fapl));
  return fapl;
}

// ---- agreement across ranks --------------------------------------------------------------------

int comm_rank(MPI_Comm comm) {
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &r));
  return r;
}
int comm_size(MPI_Comm comm) {
  int n = 0;
  MPI_CHECK(MPI_Comm_size(comm, &n));
  return n;
}

std::string bcast_string(const Coll& c, const std::string& s, int root, const std::string& what) {
  return comm::broadcast_string(s, root, comm::Comm::borrow(c.comm), c.watchdog,
                                ("rank " + std::to_string(root) + "'s " + what).c_str());
}

std::vector<std::string> allgather_strings(const Coll& c, const std::string& mine,
                                           const std::string& what) {
  const MPI_Comm comm = c.comm;
  comm::WatchdogScope scope(c.watchdog, "every rank's part: " + what);
  const int size = comm_size(comm);
  SY_CHECK(mine.size() < (size_t{1} << 31), "allgather of " << mine.size() << " bytes");
  int n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    displs[static_cast<size_t>(r)] = static_cast<int>(total);
    total += counts[static_cast<size_t>(r)];
  }
  SY_CHECK(total < (int64_t{1} << 31), "allgather of " << total << " bytes");
  std::string all(static_cast<size_t>(total), '\0');
  MPI_CHECK(MPI_Allgatherv(mine.data(), n, MPI_CHAR, all.data(), counts.data(), displs.data(),
                           MPI_CHAR, comm));
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r)
    out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                             static_cast<size_t>(counts[static_cast<size_t>(r)])));
  return out;
}

void agree(const Coll& c, const std::string& what, const std::function<void()>& fn) {
  enum Kind : int64_t { kNone, kCheckpoint, kUsage, kError, kOther };
  int64_t kind = kNone, code = kExitOther;
  std::string file, dataset, message;
  {
    comm::WatchdogScope scope(c.watchdog, what);
    try {
      fn();
    } catch (const CheckpointError& e) {
      kind = kCheckpoint;
      file = e.file();
      dataset = e.dataset();
      message = e.problem();
    } catch (const UsageError& e) {
      kind = kUsage;
      message = e.what();
    } catch (const Error& e) {  // a deliberate, worded error ("no space left ..."): kept as is
      kind = kError;
      code = e.code();
      message = e.what();
    } catch (const std::exception& e) {
      kind = kOther;
      message = e.what();
    }
  }
  const MPI_Comm comm = c.comm;
  const int rank = comm_rank(comm), size = comm_size(comm);
  int first = kind != kNone ? rank : size;
  {
    // A rank that failed says so while it waits: if the others never come (they are stuck in a
    // collective the failure left unmatched), the watchdog's message carries the reason.
    comm::WatchdogScope scope(
        c.watchdog, "the other ranks to finish " + what +
                        (kind != kNone ? " (this rank failed: " + message + ")" : std::string()));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm));
  }
  if (first == size) return;
  Packer p;
  p.i64(kind);
  p.i64(code);
  p.str(file);
  p.str(dataset);
  p.str(message);
  const std::string blob = bcast_string(c, p.bytes(), first, "the error of " + what);
  Unpacker u(blob);
  kind = u.i64();
  code = u.i64();
  file = u.str();
  dataset = u.str();
  message = u.str();
  const bool quiet = rank != 0;  // the same message on every rank: rank 0 reports it
  if (kind == kCheckpoint) throw CheckpointError(file, dataset, message, quiet);
  if (kind == kUsage) throw UsageError(message, quiet);
  if (kind == kError)
    throw Error(static_cast<ExitCode>(code),
                first == 0 ? message : message + " (rank " + std::to_string(first) + ")", quiet);
  throw Error(kExitOther, what + " failed on rank " + std::to_string(first) + ": " + message,
              quiet);
}

void on_root(const Coll& c, const std::string& what, const std::function<void()>& fn) {
  const bool root = comm_rank(c.comm) == 0;
  agree(c, what, [&] {
    if (root) fn();
  });
}

void agree(MPI_Comm comm, const std::function<void()>& fn) {
  agree(Coll{comm, nullptr}, "checkpoint", fn);
}
void on_root(MPI_Comm comm, const std::function<void()>& fn) {
  on_root(Coll{comm, nullptr}, "checkpoint", fn);
}
std::string bcast_string(MPI_Comm comm, const std::string& s, int root) {
  return bcast_string(Coll{comm, nullptr}, s, root, "checkpoint");
}

// ---- serializer --------------------------------------------------------------------------------

void Packer::i64(int64_t v) {
  out_.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void Packer::u64(uint64_t v) {
  out_.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void Packer::f64(double v) {
  out_.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void Packer::str(const std::string& s) {
  i64(static_cast<int64_t>(s.size()));
  out_ += s;
}
void Packer::shape(const std::vector<int64_t>& s) {
  i64(static_cast<int64_t>(s.size()));
  for (int64_t d : s) i64(d);
}

void Unpacker::take(void* dst, size_t n) {
  SY_CHECK(pos_ + n <= in_.size(), "unpacking past the end of a " << in_.size() << "-byte blob");
  std::memcpy(dst, in_.data() + pos_, n);
  pos_ += n;
}
int64_t Unpacker::i64() {
  int64_t v;
  take(&v, sizeof v);
  return v;
}
uint64_t Unpacker::u64() {
  uint64_t v;
  take(&v, sizeof v);
  return v;
}
double Unpacker::f64() {
  double v;
  take(&v, sizeof v);
  return v;
}
std::string Unpacker::str() {
  const int64_t n = i64();
  SY_CHECK(n >= 0 && pos_ + static_cast<size_t>(n) <= in_.size(), "bad string length " << n);
  std::string s = in_.substr(pos_, static_cast<size_t>(n));
  pos_ += static_cast<size_t>(n);
  return s;
}
std::vector<int64_t> Unpacker::shape() {
  const int64_t n = i64();
  SY_CHECK(n >= 0 && n < 64, "bad rank " << n);
  std::vector<int64_t> s(static_cast<size_t>(n));
  for (auto& d : s) d = i64();
  return s;
}

void pack(Packer& p, const TrainState& s) {
  p.i64(s.step);
  p.i64(s.tokens_seen);
  p.str(s.config_yaml);
  p.str(s.layout);
  p.i64(s.created_unix);
  p.i64(s.optim_step);
  p.f64(s.lr);
  p.u64(s.loader.seed);
  p.i64(s.loader.step);
  p.i64(s.loader.consumed);
  p.str(s.data_fingerprint);
  p.u64(s.rng.seed);
  p.u64(s.rng.offset);
  p.f64(s.best_val_loss);
  p.f64(s.last_val_loss);
  p.str(s.tokenizer);
  p.str(s.tokenizer_model);
  p.i64(s.tokenizer_vocab_size);
  p.str(s.written_by);
  p.i64(s.sealed ? 1 : 0);
  p.i64(s.consumed_derived ? 1 : 0);
  p.i64(static_cast<int64_t>(s.state_missing.size()));
  for (const auto& g : s.state_missing) p.str(g);
}

TrainState unpack_state(Unpacker& u) {
  TrainState s;
  s.step = u.i64();
  s.tokens_seen = u.i64();
  s.config_yaml = u.str();
  s.layout = u.str();
  s.created_unix = u.i64();
  s.optim_step = u.i64();
  s.lr = u.f64();
  s.loader.seed = u.u64();
  s.loader.step = u.i64();
  s.loader.consumed = u.i64();
  s.data_fingerprint = u.str();
  s.rng.seed = u.u64();
  s.rng.offset = u.u64();
  s.best_val_loss = u.f64();
  s.last_val_loss = u.f64();
  s.tokenizer = u.str();
  s.tokenizer_model = u.str();
  s.tokenizer_vocab_size = u.i64();
  s.written_by = u.str();
  s.sealed = u.i64() != 0;
  s.consumed_derived = u.i64() != 0;
  const int64_t missing = u.i64();
  SY_CHECK(missing >= 0 && missing < 16, "bad /state group count " << missing);
  for (int64_t i = 0; i < missing; ++i) s.state_missing.push_back(u.str());
  return s;
}

// ---- manifest and shapes -----------------------------------------------------------------------

std::string format_manifest(const std::vector<ManifestEntry>& entries) {
  std::string out;
  for (const auto& e : entries) {
    out += e.path + " ";
    for (size_t d = 0; d < e.shape.size(); ++d) {
      if (d) out += ',';
      out += std::to_string(e.shape[d]);
    }
    out += "\n";
  }
  return out;
}

std::vector<ManifestEntry> parse_manifest(const std::string& text) {
  std::vector<ManifestEntry> out;
  std::istringstream in(text);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    const size_t sp = line.rfind(' ');
    auto bad = [&] {
      throw std::runtime_error("manifest line " + std::to_string(line_no) + " '" + line +
                               "' is not '<path> <d0>,<d1>,...'");
    };
    if (sp == std::string::npos || sp == 0) bad();
    ManifestEntry e;
    e.path = line.substr(0, sp);
    std::istringstream dims(line.substr(sp + 1));
    for (std::string d; std::getline(dims, d, ',');) {
      if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) bad();
      e.shape.push_back(std::stoll(d));
    }
    if (e.shape.empty()) bad();
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<int64_t> chunk_shape(const std::vector<int64_t>& shape) {
  constexpr int64_t kTargetBytes = int64_t{4} << 20;
  std::vector<int64_t> chunk(shape);
  for (int64_t& d : chunk) d = std::max<int64_t>(d, 1);
  for (size_t d = 0; d < chunk.size(); ++d) {
    int64_t inner_bytes = 4;  // float32
    for (size_t i = d + 1; i < chunk.size(); ++i) inner_bytes *= chunk[i];
    if (inner_bytes * chunk[d] <= kTargetBytes) break;
    const int64_t most = std::clamp<int64_t>(kTargetBytes / inner_bytes, 1, chunk[d]);
    // As many chunks as `most` rows need, of equal rows: HDF5 stores the edge chunk whole, so 16
    // experts in chunks of 14 wrote 28 experts' bytes (a 291 MiB file for 178 MiB of tensors).
    const int64_t chunks = (chunk[d] + most - 1) / most;
    chunk[d] = (chunk[d] + chunks - 1) / chunks;
    if (inner_bytes <= kTargetBytes) break;  // rows of this dimension now fit the target
  }
  return chunk;
}

void check_slab(const std::string& path, const std::vector<int64_t>& shape, const Slab& slab) {
  const size_t nd = shape.size();
  SY_CHECK(
      slab.start.size() == nd && slab.stride.size() == nd && slab.count.size() == nd &&
          slab.block.size() == nd,
      "tensor " << path << ": slab has " << slab.start.size() << " dimensions, the tensor " << nd);
  for (size_t d = 0; d < nd; ++d) {
    const int64_t st = slab.start[d], sd = slab.stride[d], c = slab.count[d], b = slab.block[d];
    SY_CHECK(st >= 0 && sd >= 1 && c >= 0 && b >= 0,
             "tensor " << path << ": negative slab field in dimension " << d);
    if (c == 0 || b == 0) continue;
    SY_CHECK(c == 1 || b <= sd, "tensor " << path << ": slab blocks overlap in dimension " << d
                                          << " (block " << b << " > stride " << sd << ")");
    SY_CHECK(st + (c - 1) * sd + b <= shape[d], "tensor " << path << ": slab leaves the tensor "
                                                          << shape_string(shape) << " in dimension "
                                                          << d);
  }
}

void select_slab(hid_t space, const Slab& slab) {
  if (slab.numel() == 0) {
    H5_CHECK(H5Sselect_none(space));
    return;
  }
  auto h = [](const std::vector<int64_t>& v) { return std::vector<hsize_t>(v.begin(), v.end()); };
  const auto start = h(slab.start), stride = h(slab.stride), count = h(slab.count),
             block = h(slab.block);
  H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), stride.data(), count.data(),
                               block.data()));
}

h5::Dataspace memory_space(const Slab* slab) {
  if (!slab || slab->numel() == 0) {
    const hsize_t zero = 0;
    h5::Dataspace none{H5_CHECK(H5Screate_simple(1, &zero, nullptr))};
    H5_CHECK(H5Sselect_none(none));
    return none;
  }
  const std::vector<int64_t> local = slab->local_shape();
  const std::vector<hsize_t> dims(local.begin(), local.end());
  return h5::Dataspace{
      H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr))};
}

}  // namespace sy::ckpt::detail

namespace sy::ckpt {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d) s += ", ";
    s += std::to_string(shape[d]);
  }
  return s + "]";
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace sy::ckpt

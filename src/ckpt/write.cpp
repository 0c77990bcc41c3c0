// save_checkpoint: the collective write of one checkpoint file and its atomic commit.
//
// Every rank takes the same path through the HDF5 calls (parallel HDF5 requires that every
// metadata-changing call, such as creating a dataset or an attribute, is made by all ranks with
// the same arguments), so the plan of datasets is built from every rank's refs first and is
// identical everywhere. Data moves with one collective H5Dwrite per dataset and "round": a rank
// holding several parts of one tensor (say ZeRO-1 shards that are not one hyperslab) writes its
// r-th part in round r; ranks with fewer parts select nothing in that round.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <utility>

#include "comm/watchdog.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/detail.h"
#include "src/ckpt/files.h"
#include "src/ckpt/seal.h"
#include "src/core/build_id.h"
#include "src/core/durable_file.h"
#include "src/core/unique_fd.h"
#include "src/data/tokenizer_h5.h"

namespace sy::ckpt {

namespace {

namespace fs = std::filesystem;
using namespace detail;
using ::sy::files::free_bytes;
using ::sy::files::looks_like_disk_full;
using ::sy::files::mib;

struct PlannedTensor {
  std::string path;
  std::vector<int64_t> shape;
  int64_t rounds = 0;  // max over ranks of the number of writer parts
};

// One rank's view: per path (first-appearance order) its shape and its writer parts.
struct LocalTensor {
  std::string path;
  std::vector<int64_t> shape;
  std::vector<const TensorRef*> writer_parts;
};

std::vector<LocalTensor> group_local(const std::vector<TensorRef>& refs) {
  std::vector<LocalTensor> out;
  std::map<std::string, size_t> index;
  for (const auto& r : refs) {
    SY_CHECK(!r.path.empty() && r.path.front() != '/' && r.path.back() != '/',
             "tensor path '" << r.path << "' must be relative, like model/embed");
    SY_CHECK(!r.global_shape.empty(), "tensor " << r.path << " has no dimensions");
    check_slab(r.path, r.global_shape, r.slab);
    SY_CHECK(r.data != nullptr || r.slab.numel() == 0, "tensor " << r.path << ": null data");
    auto [it, fresh] = index.emplace(r.path, out.size());
    if (fresh) out.push_back({r.path, r.global_shape, {}});
    LocalTensor& t = out[it->second];
    SY_CHECK(t.shape == r.global_shape, "tensor " << r.path << " given with shapes "
                                                  << shape_string(t.shape) << " and "
                                                  << shape_string(r.global_shape));
    if (r.writer) t.writer_parts.push_back(&r);
  }
  return out;
}

// The plan (the manifest's order and the datasets') in an order the layout does not change:
// /model's tensors as merged, then /optim/m's and /optim/v's, each in /model's order. Under
// ZeRO-1 rank 0 holds the moments of some tensors only, so the merge listed the other ranks'
// later: the manifest differed from the one a run without ZeRO-1 writes (QA).
std::vector<PlannedTensor> in_model_order(std::vector<PlannedTensor> plan) {
  std::map<std::string, size_t> model_at;  // "layers/0/attn/wo" -> its place in /model
  for (size_t i = 0; i < plan.size(); ++i)
    if (plan[i].path.starts_with("model/")) model_at.emplace(plan[i].path.substr(6), i);
  const auto key = [&](size_t i) {
    const std::string& path = plan[i].path;
    if (path.starts_with("model/")) return std::pair<int, size_t>{0, i};
    const int group = path.starts_with("optim/m/") ? 1 : path.starts_with("optim/v/") ? 2 : 3;
    if (group == 3) return std::pair<int, size_t>{3, i};
    const auto at = model_at.find(path.substr(8));  // after "optim/m/"
    return std::pair<int, size_t>{group, at != model_at.end() ? at->second : plan.size() + i};
  };
  std::vector<size_t> order(plan.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  std::vector<PlannedTensor> out;
  out.reserve(plan.size());
  for (size_t i : order) out.push_back(std::move(plan[i]));
  return out;
}

// Merges every rank's tensors (ranks in order, each in its own order) into one plan, checking
// that the shapes agree and that the writer parts cover each tensor exactly (by element count).
std::vector<PlannedTensor> plan_tensors(const Coll& c, const std::vector<LocalTensor>& local) {
  Packer p;
  p.i64(static_cast<int64_t>(local.size()));
  for (const auto& t : local) {
    p.str(t.path);
    p.shape(t.shape);
    int64_t numel = 0;
    for (const auto* part : t.writer_parts) numel += part->slab.numel();
    p.i64(static_cast<int64_t>(t.writer_parts.size()));
    p.i64(numel);
  }
  const std::vector<std::string> all = allgather_strings(c, p.bytes(), "the tensor plan");

  std::vector<PlannedTensor> plan;
  std::vector<int64_t> written;  // elements the writer parts cover, per planned tensor
  std::map<std::string, size_t> index;
  std::vector<std::pair<int, std::string>> shape_clash;
  for (size_t rank = 0; rank < all.size(); ++rank) {
    Unpacker u(all[rank]);
    const int64_t n = u.i64();
    for (int64_t i = 0; i < n; ++i) {
      const std::string path = u.str();
      const std::vector<int64_t> shape = u.shape();
      const int64_t parts = u.i64(), numel = u.i64();
      auto [it, fresh] = index.emplace(path, plan.size());
      if (fresh) {
        plan.push_back({path, shape, 0});
        written.push_back(0);
      }
      PlannedTensor& t = plan[it->second];
      SY_CHECK(t.shape == shape, "tensor " << path << " has shape " << shape_string(t.shape)
                                           << " on one rank and " << shape_string(shape)
                                           << " on rank " << rank);
      t.rounds = std::max(t.rounds, parts);
      written[it->second] += numel;
    }
  }
  for (size_t i = 0; i < plan.size(); ++i)
    SY_CHECK(written[i] == numel_of(plan[i].shape),
             "tensor " << plan[i].path << " " << shape_string(plan[i].shape)
                       << ": the writer parts of all ranks hold " << written[i] << " of "
                       << numel_of(plan[i].shape)
                       << " elements (each element needs exactly one writer)");
  return in_model_order(std::move(plan));
}

h5::Group ensure_group(hid_t file, const std::string& path) {
  if (path_exists(file, path))
    return h5::Group{H5_CHECK(H5Gopen2(file, path.c_str(), H5P_DEFAULT))};
  h5::PropList lcpl{H5_CHECK(H5Pcreate(H5P_LINK_CREATE))};
  H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
  return h5::Group{H5_CHECK(H5Gcreate2(file, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT))};
}

// Creates the dataset `path` of `shape` and file type `type`, chunked with Fletcher32 (collective:
// every rank calls it alike).
h5::Dataset create_checked_dataset(hid_t file, const std::string& path,
                                   const std::vector<int64_t>& shape, hid_t type) {
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  h5::Dataspace space{
      H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr))};
  h5::PropList dcpl{H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
  if (numel_of(shape) > 0) {
    const std::vector<int64_t> c = chunk_shape(shape);
    const std::vector<hsize_t> chunk(c.begin(), c.end());
    H5_CHECK(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()));
    H5_CHECK(H5Pset_fletcher32(dcpl));
  }
  // Every element is written after: filling chunks first would write the file twice.
  H5_CHECK(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
  h5::PropList lcpl{H5_CHECK(H5Pcreate(H5P_LINK_CREATE))};
  H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
  return h5::Dataset{
      H5_CHECK(H5Dcreate2(file, path.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT))};
}

// SPEC 8's /tokenizer/model: rank 0 writes the bytes (the same on every rank), collectively.
void write_tokenizer_model(hid_t file, const std::string& model, bool writer, hid_t dxpl) {
  const auto n = static_cast<int64_t>(model.size());
  h5::Dataset ds = create_checked_dataset(file, kTokenizerModelPath, {n}, H5T_STD_U8LE);
  h5::Dataspace file_space{H5_CHECK(H5Dget_space(ds))};
  const hsize_t count = writer ? static_cast<hsize_t>(n) : 0;
  h5::Dataspace mem_space{H5_CHECK(H5Screate_simple(1, &count, nullptr))};
  if (!writer) {
    H5_CHECK(H5Sselect_none(file_space));
    H5_CHECK(H5Sselect_none(mem_space));
  }
  const char dummy = 0;
  H5_CHECK(
      H5Dwrite(ds, H5T_NATIVE_UINT8, mem_space, file_space, dxpl, writer ? model.data() : &dummy));
}

// Creates the dataset of `t` (chunked, Fletcher32) and writes every rank's parts collectively.
void write_tensor(hid_t file, const PlannedTensor& t, const LocalTensor* mine, hid_t dxpl) {
  h5::Dataset ds = create_checked_dataset(file, t.path, t.shape, H5T_IEEE_F32LE);

  for (int64_t round = 0; round < t.rounds; ++round) {
    const TensorRef* part = nullptr;
    if (mine && round < static_cast<int64_t>(mine->writer_parts.size()))
      part = mine->writer_parts[static_cast<size_t>(round)];
    h5::Dataspace file_space{H5_CHECK(H5Dget_space(ds))};
    const hsize_t n = part ? static_cast<hsize_t>(part->slab.numel()) : 0;
    const h5::Dataspace mem_space = memory_space(n > 0 ? &part->slab : nullptr);
    if (n > 0)
      select_slab(file_space, part->slab);
    else
      H5_CHECK(H5Sselect_none(file_space));
    const float dummy = 0.0f;  // HDF5 wants a buffer even when this rank writes nothing
    H5_CHECK(H5Dwrite(ds, H5T_NATIVE_FLOAT, mem_space, file_space, dxpl,
                      part && n > 0 ? part->data : &dummy));
  }
}

void write_state(hid_t file, const TrainState& s, const std::vector<PlannedTensor>& plan) {
  write_attr(file, "format", std::string(kFormat));
  write_attr(file, "format_version", kFormatVersion);
  write_attr(file, "step", s.step);
  write_attr(file, "tokens_seen", s.tokens_seen);
  write_attr(file, "config", s.config_yaml);
  write_attr(file, "layout", s.layout);
  write_attr(file, "created_unix", s.created_unix);
  if (!s.written_by.empty()) write_attr(file, "written_by", s.written_by);
  if (!s.tokenizer.empty()) write_attr(file, "tokenizer", s.tokenizer);
  if (s.tokenizer_vocab_size > 0) write_attr(file, "tokenizer_vocab_size", s.tokenizer_vocab_size);
  std::vector<ManifestEntry> manifest;
  for (const auto& t : plan) manifest.push_back({t.path, t.shape});
  write_attr(file, "tensors", format_manifest(manifest));

  h5::Group optim = ensure_group(file, "optim");
  write_attr(optim, "step", s.optim_step);
  write_attr(optim, "lr", s.lr);

  h5::Group data = ensure_group(file, "state/data");
  write_attr(data, "seed", s.loader.seed);
  write_attr(data, "next_step", s.loader.step);
  write_attr(data, "consumed_sequences", s.loader.consumed);
  if (!s.data_fingerprint.empty()) write_attr(data, "data_fingerprint", s.data_fingerprint);
  h5::Group rng = ensure_group(file, "state/rng");
  write_attr(rng, "generator", std::string(kRngGenerator));
  write_attr(rng, "seed", s.rng.seed);
  write_attr(rng, "offset", s.rng.offset);
  h5::Group train = ensure_group(file, "state/train");
  write_attr(train, "best_val_loss", s.best_val_loss);
  write_attr(train, "last_val_loss", s.last_val_loss);
}

// A generous bound on the file's size: the data, each chunk's Fletcher32 checksum and index
// entry, each dataset's object header, the attributes (the config twice over: attribute and heap),
// the tokenizer model, and a margin for HDF5's own free-space slack.
int64_t estimated_file_bytes(const std::vector<PlannedTensor>& plan, const TrainState& st) {
  int64_t bytes = (int64_t{1} << 20) + 2 * static_cast<int64_t>(st.config_yaml.size()) +
                  static_cast<int64_t>(st.tokenizer_model.size());
  for (const auto& t : plan) {
    const int64_t data = numel_of(t.shape) * 4;
    int64_t chunks = 1;
    const std::vector<int64_t> c = chunk_shape(t.shape);
    for (size_t d = 0; d < c.size(); ++d) chunks *= (t.shape[d] + c[d] - 1) / c[d];
    bytes += data + chunks * 64 + 4096;
  }
  return bytes + bytes / 50;
}

// What a failed write leaves in `dir`: "; the previous checkpoint and `latest` are kept", or,
// before the run's first checkpoint, that there is none (the advice to resume would start over).
std::string what_is_kept(const std::string& dir) {
  return files::list_step_files(dir).empty()
             ? "; no checkpoint of this run is in it yet (--resume auto would start at step 0)"
             : "; the previous checkpoint and `latest` are kept";
}

// Rank 0, before the write (the stale temp files removed): refuses a checkpoint that cannot fit,
// so a full disk is one clear message instead of a failure deep inside a collective write.
void check_free_space(const std::string& dir, const std::string& tmp_path, int64_t file_bytes,
                      int64_t need) {
  // Past the file size limit the write would fail half-way (EFBIG; SIGXFSZ is ignored), inside
  // HDF5, whose clean-up at exit then crashes on the file it could not close.
  if (const std::string why = ::sy::files::past_file_size_limit(file_bytes); !why.empty())
    throw Error(kExitOther, "checkpoint " + fs::path(tmp_path).stem().string() + " needs about " +
                                mib(file_bytes) + ", " + why + what_is_kept(dir) +
                                ". Raise the limit and resume with --resume auto");
  const int64_t avail = free_bytes(dir);
  if (avail < 0) return;  // unknown: the write itself will tell
  if (avail >= need) return;
  // The shortfall itself: rounded to 0.1 MiB the two could read alike ("2.6 MiB, 2.6 MiB are
  // free").
  const int64_t short_by = need - avail;
  const std::string shortfall = short_by < (int64_t{1} << 20)
                                    ? std::to_string((short_by + 1023) / 1024) + " KiB"
                                    : mib(short_by);
  throw Error(kExitOther, "no space left for checkpoint " + fs::path(tmp_path).stem().string() +
                              " in checkpoint.dir '" + dir + "': it needs about " + mib(need) +
                              ", " + mib(avail) + " are free (" + shortfall + " short)" +
                              what_is_kept(dir) +
                              ". Free some space and resume with --resume auto (to continue on "
                              "another disk, "
                              "move the checkpoints there and set checkpoint.dir to it, or resume "
                              "with --resume <file>)");
}

// One step of the write on this rank. An error that looks like a full disk is worded here, on
// the rank that saw it, so that the agreed error says so -- and so does this rank's watchdog
// message, should the others be stuck inside an HDF5 collective that the failure left unmatched.
void diagnosed(const std::string& tmp_path, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error&) {
    throw;  // worded already
  } catch (const std::exception& e) {
    const std::string dir = fs::path(tmp_path).parent_path().string();
    const int64_t avail = free_bytes(dir);
    if (!looks_like_disk_full(e.what(), avail)) throw;
    throw Error(kExitOther, "no space left on the device of checkpoint.dir '" + dir + "' (" +
                                (avail >= 0 ? mib(avail) : std::string("unknown")) +
                                " free) while writing " + fs::path(tmp_path).stem().string() +
                                "; the partial file is removed" + what_is_kept(dir) +
                                ". Cause: " + e.what());
  }
}

// Rank 0, right after the file is created: reserves its whole size on disk (fallocate without
// changing its length), so that a disk filling up during the write -- another job's output --
// cannot fail the collective write half-way on some ranks: a disk too full fails here, on one
// rank, before any collective write, and the ranks agree. A file system that cannot reserve
// (EOPNOTSUPP) is written without.
void reserve_space(const std::string& path, int64_t bytes) {
  const UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) throw std::runtime_error("opening " + path + ": " + std::strerror(errno));
  const int rc = ::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, bytes);
  const int err = errno;
  if (rc == 0 || err == EOPNOTSUPP || err == ENOSYS) return;
  throw std::runtime_error("reserving " + mib(bytes) + " for " + path + ": " + std::strerror(err));
}

// Rank 0 holds this much in a spare file while a checkpoint is written: room for what closing
// the file writes (its metadata), should the disk fill up during the write. Giving the partial
// file up then starts by freeing the spare, so the close cannot fail again on a full disk --
// differently on different ranks, which would leave some of them waiting in a collective.
int64_t spare_bytes(const std::vector<PlannedTensor>& plan) {
  return (int64_t{64} << 10) + 8192 * static_cast<int64_t>(plan.size());
}

void hold_spare(const std::string& path, int64_t bytes) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) throw std::runtime_error("creating " + path + ": " + std::strerror(errno));
  const int rc = ::fallocate(fd.get(), 0, 0, bytes);
  const int err = errno;
  fd.reset();
  if (rc == 0 || err == EOPNOTSUPP || err == ENOSYS) return;
  std::error_code ec;
  fs::remove(path, ec);
  throw std::runtime_error("holding " + mib(bytes) + " in " + path + ": " + std::strerror(err));
}

// Rank 0, after the close: gives back what the reservation holds beyond the file's end.
void release_reserve(const std::string& path, int64_t bytes) {
  const UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size < bytes &&
      ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size,
                  bytes - st.st_size) != 0) {
    // Not every file system punches holes; the blocks go with the next truncate or removal.
  }
}

// Every rank, after an agreed failure of the write: gives the partial file up without another
// failure. Closing an HDF5 file writes its metadata, which a full disk would refuse again (and
// differently on different ranks), so rank 0 first removes the spare and truncates the file to
// nothing, freeing their space; then every rank closes it, and rank 0 removes it. Never throws:
// the agreed error is what the caller reports.
void abandon_temp_file(const Coll& c, const std::string& label, const std::string& tmp_path,
                       const std::string& spare_path, hid_t& file) {
  try {
    on_root(c, label + ": giving up the partial file", [&] {
      std::error_code ec;
      fs::remove(spare_path, ec);
      if (::truncate(tmp_path.c_str(), 0) != 0) {
        // Gone or not ours to truncate: closing will tell.
      }
    });
  } catch (...) {
  }
  if (file >= 0) {
    comm::WatchdogScope scope(c.watchdog, label + ": closing the partial file (parallel HDF5)");
    H5Fclose(file);
    file = H5I_INVALID_HID;
  }
  try {
    on_root(c, label + ": removing the partial file", [&] {
      std::error_code ec;
      fs::remove(tmp_path, ec);
    });
  } catch (...) {
  }
}

// The collective part of a save: create the temp file, write every dataset and the attributes,
// flush, close -- agreeing after each step, so every rank sees any rank's failure at the same
// point and leaves together.
void write_file(const Coll& c, const std::string& label, const std::string& tmp_path,
                const std::string& spare_path, int64_t reserve_bytes,
                const std::vector<PlannedTensor>& plan,
                const std::map<std::string, const LocalTensor*>& mine, const TrainState& st,
                const std::function<void(const std::string&)>& stage) {
  const bool root = comm_rank(c.comm) == 0;
  hid_t file = H5I_INVALID_HID;
  h5::PropList dxpl;
  // One agreed step: every rank runs `fn`, failures are worded (diagnosed) and shared.
  auto step = [&](const std::string& what, const std::function<void()>& fn) {
    agree(c, label + ": " + what + " (parallel HDF5, collective)",
          [&] { diagnosed(tmp_path, fn); });
  };
  try {
    step("creating the file", [&] {
      h5::PropList fapl = mpio_fapl(c.comm);
      file = H5_CHECK(H5Fcreate(tmp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
      dxpl = h5::PropList{H5_CHECK(H5Pcreate(H5P_DATASET_XFER))};
      H5_CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
      stage("created");
      if (root) reserve_space(tmp_path, reserve_bytes);
    });
    for (const auto& t : plan) {
      step("writing dataset /" + t.path, [&] {
        auto it = mine.find(t.path);
        write_tensor(file, t, it == mine.end() ? nullptr : it->second, dxpl);
        stage("wrote " + t.path);
      });
    }
    if (!st.tokenizer_model.empty())
      step("writing /tokenizer/model",
           [&] { write_tokenizer_model(file, st.tokenizer_model, root, dxpl); });
    step("writing the attributes", [&] { write_state(file, st, plan); });
    // MPI_File_sync: on disk on every node.
    step("flushing the file to disk", [&] { H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL)); });
    step("closing the file", [&] {
      const hid_t id = std::exchange(file, H5I_INVALID_HID);  // released even when close fails
      H5_CHECK(H5Fclose(id));
      stage("closed");
    });
  } catch (...) {
    abandon_temp_file(c, label, tmp_path, spare_path, file);
    throw;
  }
}

}  // namespace

SaveResult save_checkpoint(MPI_Comm comm, const std::string& dir, const TrainState& state,
                           const std::vector<TensorRef>& tensors, const SaveOptions& options) {
  h5::ErrorSilencer quiet;
  const Coll c{comm, options.watchdog};
  const int rank = comm_rank(comm);
  auto stage = [&](const std::string& what) {
    if (options.on_stage) options.on_stage(what);
  };

  std::vector<LocalTensor> local;
  agree(c, "checkpoint: checking the tensors to save", [&] { local = group_local(tensors); });
  std::vector<PlannedTensor> plan;
  agree(c, "checkpoint: planning the datasets", [&] { plan = plan_tensors(c, local); });
  std::map<std::string, const LocalTensor*> mine;
  for (const auto& t : local) mine[t.path] = &t;

  // Rank 0's state (and clock) for everyone: attribute writes must be identical on all ranks.
  TrainState st = state;
  st.created_unix = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  st.written_by = build_name();
  {
    Packer p;
    pack(p, st);
    const std::string blob = bcast_string(c, p.bytes(), 0, "checkpoint: the state to save");
    Unpacker u(blob);
    st = unpack_state(u);
  }
  SY_CHECK(st.step >= 0, "checkpoint step " << st.step);

  const std::string final_path = (fs::path(dir) / checkpoint_file_name(st.step)).string();
  const std::string tmp_path = final_path + ".tmp";
  const std::string label = "checkpoint '" + final_path + "'";
  const std::string spare_path = tmp_path + files::kSpareSuffix;
  const int64_t need = estimated_file_bytes(plan, st), spare = spare_bytes(plan);
  SaveResult result;
  result.path = final_path;
  on_root(c, label + ": preparing checkpoint.dir", [&] {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir))
      throw UsageError("checkpoint.dir '" + dir + "' cannot be created: " + ec.message());
    // Before the room is counted (QA: on a tight disk every resume ran out of space).
    result.removed = files::remove_temp_files(dir);
    check_free_space(dir, tmp_path, need, need + spare);
    diagnosed(tmp_path, [&] { hold_spare(spare_path, spare); });
  });

  write_file(c, label, tmp_path, spare_path, need, plan, mine, st, stage);

  on_root(c, label + ": sealing and committing the file", [&] {
    try {
      release_reserve(tmp_path, need);
      seal_checkpoint(tmp_path);
      sy::files::commit_file(tmp_path, final_path);
    } catch (...) {
      std::error_code ec;
      fs::remove(spare_path, ec);
      fs::remove(tmp_path, ec);
      throw;
    }
    std::error_code ec;
    fs::remove(spare_path, ec);
    stage("renamed");
    // The file name and nothing else (SPEC 5): joined to the directory it is the file. The step
    // file is complete and in place by now, so a pointer that cannot be updated fails nothing: a
    // stale one is removed, and --resume auto then takes the newest step file.
    const std::string latest = (fs::path(dir) / "latest").string();
    try {
      sy::files::atomic_write_text(latest, checkpoint_file_name(st.step));
    } catch (const std::exception& e) {
      std::error_code gone;
      fs::remove(latest, gone);
      result.notes.push_back(latest + " could not be updated (" + e.what() + ")" +
                             (gone ? "; nor removed (" + gone.message() +
                                         "): --resume auto would take the step it names"
                                   : "; removed, so --resume auto takes the newest step file"));
    }
    stage("latest");
    for (std::string& old : files::rotate(dir, st.step, options.keep, result.notes))
      result.removed.push_back(std::move(old));
  });
  // Everyone reports what rank 0 did.
  Packer p;
  p.i64(static_cast<int64_t>(result.removed.size()));
  for (const auto& s : result.removed) p.str(s);
  p.i64(static_cast<int64_t>(result.notes.size()));
  for (const auto& s : result.notes) p.str(s);
  const std::string blob = bcast_string(c, p.bytes(), 0, label + ": the files rotated");
  if (rank != 0) {
    Unpacker u(blob);
    result.removed.resize(static_cast<size_t>(u.i64()));
    for (auto& s : result.removed) s = u.str();
    result.notes.resize(static_cast<size_t>(u.i64()));
    for (auto& s : result.notes) s = u.str();
  }
  return result;
}

}  // namespace sy::ckpt

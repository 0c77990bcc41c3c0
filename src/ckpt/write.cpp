// save_checkpoint: the collective write of one checkpoint file and its atomic commit.
//
// Every rank takes the same path through the HDF5 calls (parallel HDF5 requires that every
// metadata-changing call, such as creating a dataset or an attribute, is made by all ranks with
// the same arguments), so the plan of datasets is built from every rank's refs first and is
// identical everywhere. Data moves with one collective H5Dwrite per dataset and "round": a rank
// holding several parts of one tensor (say ZeRO-1 shards that are not one hyperslab) writes its
// r-th part in round r; ranks with fewer parts select nothing in that round.
#include <chrono>
#include <filesystem>
#include <map>

#include "src/ckpt/checkpoint.h"
#include "src/ckpt/detail.h"
#include "src/ckpt/files.h"
#include "src/data/tokenizer_h5.h"

namespace sy::ckpt {

namespace {

namespace fs = std::filesystem;
using namespace detail;

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

// Merges every rank's tensors (ranks in order, each in its own order) into one plan, checking
// that the shapes agree and that the writer parts cover each tensor exactly (by element count).
std::vector<PlannedTensor> plan_tensors(MPI_Comm comm, const std::vector<LocalTensor>& local) {
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
  const std::vector<std::string> all = allgather_strings(comm, p.bytes());

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
  return plan;
}

// The file being written: closed explicitly (checked) on success, by the destructor on error.
class OpenFile {
 public:
  explicit OpenFile(hid_t id) : id_(id) {}
  ~OpenFile() {
    if (id_ >= 0) H5Fclose(id_);  // error path: the .tmp file is abandoned anyway
  }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  operator hid_t() const { return id_; }  // NOLINT: pass straight to H5* calls
  void close() {
    const hid_t id = id_;
    id_ = H5I_INVALID_HID;
    H5_CHECK(H5Fclose(id));
  }

 private:
  hid_t id_;
};

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
    h5::Dataspace mem_space{H5_CHECK(H5Screate_simple(1, &n, nullptr))};
    if (part && n > 0) {
      select_slab(file_space, part->slab);
    } else {
      H5_CHECK(H5Sselect_none(file_space));
      H5_CHECK(H5Sselect_none(mem_space));
    }
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
  if (!s.tokenizer.empty()) write_attr(file, "tokenizer", s.tokenizer);
  std::vector<ManifestEntry> manifest;
  for (const auto& t : plan) manifest.push_back({t.path, t.shape});
  write_attr(file, "tensors", format_manifest(manifest));

  h5::Group optim = ensure_group(file, "optim");
  write_attr(optim, "step", s.optim_step);
  write_attr(optim, "lr", s.lr);

  h5::Group data = ensure_group(file, "state/data");
  write_attr(data, "seed", s.loader.seed);
  write_attr(data, "next_step", s.loader.step);
  h5::Group rng = ensure_group(file, "state/rng");
  write_attr(rng, "generator", std::string(kRngGenerator));
  write_attr(rng, "seed", s.rng.seed);
  write_attr(rng, "offset", s.rng.offset);
  h5::Group train = ensure_group(file, "state/train");
  write_attr(train, "best_val_loss", s.best_val_loss);
  write_attr(train, "last_val_loss", s.last_val_loss);
}

}  // namespace

SaveResult save_checkpoint(MPI_Comm comm, const std::string& dir, const TrainState& state,
                           const std::vector<TensorRef>& tensors, const SaveOptions& options) {
  h5::ErrorSilencer quiet;
  const int rank = comm_rank(comm);
  auto stage = [&](const std::string& what) {
    if (options.on_stage) options.on_stage(what);
  };

  std::vector<LocalTensor> local;
  agree(comm, [&] { local = group_local(tensors); });
  std::vector<PlannedTensor> plan;
  agree(comm, [&] { plan = plan_tensors(comm, local); });
  std::map<std::string, const LocalTensor*> mine;
  for (const auto& t : local) mine[t.path] = &t;

  // Rank 0's state (and clock) for everyone: attribute writes must be identical on all ranks.
  TrainState st = state;
  st.created_unix = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  {
    Packer p;
    pack(p, st);
    const std::string blob = bcast_string(comm, p.bytes(), 0);
    Unpacker u(blob);
    st = unpack_state(u);
  }
  SY_CHECK(st.step >= 0, "checkpoint step " << st.step);

  const std::string final_path = (fs::path(dir) / checkpoint_file_name(st.step)).string();
  const std::string tmp_path = final_path + ".tmp";
  on_root(comm, [&] {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir))
      throw UsageError("checkpoint.dir '" + dir + "' cannot be created: " + ec.message());
  });

  agree(comm, [&] {
    // Every rank runs the same HDF5 calls; an error here is the same everywhere (or a bug).
    h5::PropList fapl = mpio_fapl(comm);
    OpenFile file{H5_CHECK(H5Fcreate(tmp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl))};
    stage("created");
    h5::PropList dxpl{H5_CHECK(H5Pcreate(H5P_DATASET_XFER))};
    H5_CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
    for (const auto& t : plan) {
      auto it = mine.find(t.path);
      write_tensor(file, t, it == mine.end() ? nullptr : it->second, dxpl);
      stage("wrote " + t.path);
    }
    if (!st.tokenizer_model.empty())
      write_tokenizer_model(file, st.tokenizer_model, rank == 0, dxpl);
    write_state(file, st, plan);
    H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL));  // MPI_File_sync: on disk on every node
    file.close();
    stage("closed");
  });

  SaveResult result;
  result.path = final_path;
  on_root(comm, [&] {
    files::fsync_path(tmp_path);
    files::durable_rename(tmp_path, final_path);
    stage("renamed");
    files::atomic_write_text(dir, "latest", checkpoint_file_name(st.step) + "\n");
    stage("latest");
    result.removed = files::rotate(dir, st.step, options.keep, result.notes);
  });
  // Everyone reports what rank 0 did.
  Packer p;
  p.i64(static_cast<int64_t>(result.removed.size()));
  for (const auto& s : result.removed) p.str(s);
  p.i64(static_cast<int64_t>(result.notes.size()));
  for (const auto& s : result.notes) p.str(s);
  const std::string blob = bcast_string(comm, p.bytes(), 0);
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

// inspect / verify / load: reading a checkpoint in three passes.
//   1. structure (read_structure.h; rank 0 alone, POSIX driver, then broadcast): can the file be
//   opened, is it ours,
//      which version, the root/optim/state attributes, and for every manifest entry: present,
//      float32, the listed shape, Fletcher32 on. Rank 0 alone so that a damaged file gives one
//      answer instead of P ranks failing in different places of a collective open.
//   2. data (all ranks, independent reads): every chunk of every dataset is read by exactly one
//      rank, so HDF5 checks each chunk's Fletcher32 checksum once; independent I/O keeps a rank
//      that hits a bad chunk from leaving the others stuck in a collective call. The problems
//      are then gathered so every rank knows all of them.
//   3. slabs (all ranks, collective reads): each rank's refs, any layout.
// A checkpoint another tool wrote to SPEC 5 alone (neither the manifest nor the metadata
// checksum) is read by the schema: the datasets of the model its stored config describes stand
// for the manifest, /state may be missing, and the data pass reads unchunked data in row blocks
// (TrainState::sealed = false).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>

#include "comm/watchdog.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/detail.h"
#include "src/ckpt/read_structure.h"
#include "src/core/progress.h"

namespace sy::ckpt {

namespace {

using namespace detail;

std::string pack_info(const FileInfo& info) {
  Packer p;
  pack(p, info.state);
  p.str(info.metadata_problem);
  p.i64(static_cast<int64_t>(info.entries.size()));
  for (const auto& e : info.entries) {
    p.str(e.m.path);
    p.shape(e.m.shape);
    p.shape(e.chunk);
    p.i64(e.chunks);
    p.str(e.problem);
  }
  return p.bytes();
}

FileInfo unpack_info(const std::string& bytes) {
  Unpacker u(bytes);
  FileInfo info;
  info.state = unpack_state(u);
  info.metadata_problem = u.str();
  info.entries.resize(static_cast<size_t>(u.i64()));
  for (auto& e : info.entries) {
    e.m.path = u.str();
    e.m.shape = u.shape();
    e.chunk = u.shape();
    e.chunks = u.i64();
    e.problem = u.str();
  }
  return info;
}

std::string label_of(const std::string& file) {
  return "checkpoint '" + file + "'";
}

FileInfo structure_everywhere(const Coll& c, const std::string& file) {
  std::string bytes;
  on_root(c, label_of(file) + ": rank 0 reading its structure",
          [&] { bytes = pack_info(read_structure(file)); });
  return unpack_info(bcast_string(c, bytes, 0, label_of(file) + ": its structure"));
}

// The file opened on every rank through MPI-IO (collective).
h5::File open_parallel(const Coll& c, const std::string& file) {
  hid_t id = H5I_INVALID_HID;
  agree(c, label_of(file) + ": opening it (parallel HDF5, collective)", [&] {
    h5::PropList fapl = mpio_fapl(c.comm);
    id = H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl);
    if (id < 0)
      throw CheckpointError(file, "", "parallel open failed: " + h5::error_stack_message());
  });
  return h5::File{id};
}

// The progress lines of one pass on comm rank 0 (ReadProgress), counted in this rank's bytes.
class PassProgress {
 public:
  PassProgress(const Coll& c, std::string what, int64_t total_bytes)
      : say_(c.progress && c.progress->say && comm_rank(c.comm) == 0 ? &c.progress->say : nullptr),
        what_(std::move(what)),
        eta_(total_bytes, c.progress ? c.progress->every_s : 0.0) {}
  void add(int64_t bytes) {
    done_ += bytes;
    if (!say_) return;
    if (auto line = eta_.update(done_)) (*say_)(what_ + ": " + *line);
  }

 private:
  const std::function<void(const std::string&)>* say_;
  std::string what_;
  ProgressEta eta_;
  int64_t done_ = 0;
};

// Pass 2: this rank reads its share of the chunk rows of every healthy dataset.
void verify_data(const Coll& c, const std::string& file, FileInfo& info) {
  const int rank = comm_rank(c.comm), size = comm_size(c.comm);
  h5::File f = open_parallel(c, file);
  Packer problems;  // (entry index, message) of this rank
  int64_t n_problems = 0;
  std::vector<int64_t> non_finite(info.entries.size(), 0);  // values of this rank's rows
  std::vector<float> buf;
  // Units of work: slabs of chunk[0] rows of a dataset; rank r takes blocks [r*B/P, (r+1)*B/P).
  auto my_rows = [&](const EntryInfo& e, const auto& fn) {
    const int64_t rows = e.m.shape[0], rows_per = e.chunk[0];
    const int64_t blocks = (rows + rows_per - 1) / rows_per;
    for (int64_t b = blocks * rank / size; b < blocks * (rank + 1) / size; ++b)
      fn(b * rows_per, std::min(rows_per, rows - b * rows_per));
  };
  auto healthy = [](const EntryInfo& e) { return e.problem.empty() && e.chunks > 0; };
  int64_t total = 0;
  for (const EntryInfo& e : info.entries)
    if (healthy(e))
      my_rows(e,
              [&](int64_t, int64_t nr) { total += nr * (numel_of(e.m.shape) / e.m.shape[0]) * 4; });
  PassProgress progress(c, "verifying " + label_of(file), total);
  for (size_t i = 0; i < info.entries.size(); ++i) {
    const EntryInfo& e = info.entries[i];
    if (!healthy(e)) continue;
    try {
      h5::Dataset ds{H5_CHECK(H5Dopen2(f, e.m.path.c_str(), H5P_DEFAULT))};
      const int64_t row_numel = numel_of(e.m.shape) / e.m.shape[0];
      my_rows(e, [&](int64_t r0, int64_t nr) {
        Slab s = Slab::whole(e.m.shape);
        s.start[0] = r0;
        s.block[0] = nr;
        buf.resize(static_cast<size_t>(nr * row_numel));
        h5::Dataspace fs{H5_CHECK(H5Dget_space(ds))};
        select_slab(fs, s);
        const h5::Dataspace ms = memory_space(&s);
        if (H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf.data()) < 0)
          throw std::runtime_error("data does not verify (rows " + std::to_string(r0) + ".." +
                                   std::to_string(r0 + nr - 1) + "): " + h5::error_stack_message());
        non_finite[i] +=
            std::count_if(buf.begin(), buf.end(), [](float x) { return !std::isfinite(x); });
        progress.add(static_cast<int64_t>(buf.size()) * 4);
      });
    } catch (const std::exception& ex) {
      problems.i64(static_cast<int64_t>(i));
      problems.str(ex.what());
      ++n_problems;
    }
  }
  Packer p;
  p.i64(n_problems);
  Packer counts;
  for (const int64_t n : non_finite) counts.i64(n);
  const std::string mine = p.bytes() + problems.bytes() + counts.bytes();
  std::fill(non_finite.begin(), non_finite.end(), 0);  // now the sum over the ranks
  for (const std::string& theirs :
       allgather_strings(c, mine, label_of(file) + ": the verification of every chunk")) {
    Unpacker u(theirs);
    const int64_t n = u.i64();
    for (int64_t k = 0; k < n; ++k) {
      const auto i = static_cast<size_t>(u.i64());
      std::string msg = u.str();
      if (info.entries[i].problem.empty()) info.entries[i].problem = std::move(msg);
    }
    for (int64_t& sum : non_finite) sum += u.i64();
  }
  // A NaN or inf verifies (Fletcher32 covers the bytes, not what they mean), but no run writes
  // one: the trainer stops at a non-finite update before its checkpoint (SPEC 9). Such a tensor
  // is bad input for a resume, `sample` and `export` alike, and `--resume auto` passes it by.
  for (size_t i = 0; i < info.entries.size(); ++i)
    if (non_finite[i] > 0 && info.entries[i].problem.empty())
      info.entries[i].problem = "holds " + std::to_string(non_finite[i]) + " of " +
                                std::to_string(numel_of(info.entries[i].m.shape)) +
                                " values that are not finite (NaN or inf): a diverged run's, or a "
                                "changed file";
}

Inspection to_inspection(const std::string& file, const FileInfo& info) {
  Inspection ins;
  ins.file = file;
  ins.state = info.state;
  for (const auto& e : info.entries)
    ins.tensors.push_back({e.m.path, e.m.shape, e.chunks, e.problem});
  ins.metadata_problem = info.metadata_problem;
  return ins;
}

// Pass 3: collective hyperslab reads of every ref, checked against the manifest first.
void read_refs(const Coll& c, const std::string& file, const Inspection& ins,
               const std::vector<TensorRef>& refs) {
  const MPI_Comm comm = c.comm;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < ins.tensors.size(); ++i) index[ins.tensors[i].path] = i;
  // Per manifest entry, this rank's refs (its rounds).
  std::vector<std::vector<const TensorRef*>> mine(ins.tensors.size());
  agree(c, label_of(file) + ": matching the tensors to read", [&] {
    for (const auto& r : refs) {
      auto it = index.find(r.path);
      if (it == index.end())
        throw CheckpointError(file, dataset_name(r.path), "dataset missing (the model needs it)");
      const auto& t = ins.tensors[it->second];
      if (t.shape != r.global_shape)
        throw CheckpointError(file, dataset_name(r.path),
                              "shape " + shape_string(t.shape) + " in the checkpoint, the model " +
                                  "expects " + shape_string(r.global_shape) +
                                  " (was it written with another model config?)");
      check_slab(r.path, r.global_shape, r.slab);
      SY_CHECK(r.data != nullptr || r.slab.numel() == 0, "tensor " << r.path << ": null data");
      mine[it->second].push_back(&r);
    }
  });
  std::vector<int64_t> rounds(ins.tensors.size());
  for (size_t i = 0; i < rounds.size(); ++i) rounds[i] = static_cast<int64_t>(mine[i].size());
  {
    comm::WatchdogScope scope(c.watchdog, label_of(file) + ": every rank's read plan");
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, rounds.data(), static_cast<int>(rounds.size()),
                            MPI_INT64_T, MPI_MAX, comm));
  }

  h5::File f = open_parallel(c, file);
  h5::PropList dxpl{H5_CHECK(H5Pcreate(H5P_DATASET_XFER))};
  H5_CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
  int64_t total = 0;
  for (const auto& refs_of : mine)
    for (const TensorRef* r : refs_of) total += r->slab.numel() * 4;
  PassProgress progress(c, "reading " + label_of(file), total);
  // A failed read is remembered and the loop goes on, so that this rank keeps taking part in the
  // collective reads of the other datasets; the ranks agree on the outcome at the end.
  std::string first_error, error_dataset;
  for (size_t i = 0; i < ins.tensors.size(); ++i) {
    if (rounds[i] == 0) continue;
    h5::Dataset ds{H5Dopen2(f, ins.tensors[i].path.c_str(), H5P_DEFAULT)};
    comm::WatchdogScope scope(c.watchdog, label_of(file) + ": reading dataset " +
                                              dataset_name(ins.tensors[i].path) +
                                              " (parallel HDF5, collective)");
    for (int64_t round = 0; round < rounds[i]; ++round) {
      const TensorRef* r = round < static_cast<int64_t>(mine[i].size())
                               ? mine[i][static_cast<size_t>(round)]
                               : nullptr;
      try {
        if (ds.get() < 0) throw std::runtime_error("cannot open: " + h5::error_stack_message());
        const hsize_t n = r ? static_cast<hsize_t>(r->slab.numel()) : 0;
        h5::Dataspace fs{H5_CHECK(H5Dget_space(ds))};
        const h5::Dataspace ms = memory_space(n > 0 ? &r->slab : nullptr);
        float dummy = 0.0f;
        if (n > 0)
          select_slab(fs, r->slab);
        else
          H5_CHECK(H5Sselect_none(fs));
        if (H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, dxpl, n > 0 ? r->data : &dummy) < 0)
          throw std::runtime_error("read failed: " + h5::error_stack_message());
        progress.add(static_cast<int64_t>(n) * 4);
      } catch (const std::exception& e) {
        if (first_error.empty()) {
          first_error = e.what();
          error_dataset = dataset_name(ins.tensors[i].path);
        }
      }
    }
  }
  agree(c, label_of(file) + ": reading the tensors", [&] {
    if (!first_error.empty()) throw CheckpointError(file, error_dataset, first_error);
  });
}

}  // namespace

Inspection inspect_checkpoint(MPI_Comm comm, const std::string& file, comm::Watchdog* watchdog,
                              const ReadProgress& progress) {
  h5::ErrorSilencer quiet;
  const Coll c{comm, watchdog, &progress};
  FileInfo info = structure_everywhere(c, file);
  verify_data(c, file, info);
  return to_inspection(file, info);
}

void throw_if_bad(MPI_Comm comm, const Inspection& ins) {
  const bool quiet = comm_rank(comm) != 0;
  for (const auto& t : ins.tensors)
    if (!t.problem.empty()) throw CheckpointError(ins.file, dataset_name(t.path), t.problem, quiet);
  if (!ins.metadata_problem.empty())
    throw CheckpointError(ins.file, "", ins.metadata_problem, quiet);
}

TrainState verify_checkpoint(MPI_Comm comm, const std::string& file, comm::Watchdog* watchdog,
                             const ReadProgress& progress) {
  const Inspection ins = inspect_checkpoint(comm, file, watchdog, progress);
  throw_if_bad(comm, ins);
  return ins.state;
}

TrainState load_checkpoint(MPI_Comm comm, const std::string& file,
                           const std::vector<TensorRef>& tensors, const LoadOptions& options) {
  h5::ErrorSilencer quiet;
  const Coll c{comm, options.watchdog, &options.progress};
  FileInfo info = structure_everywhere(c, file);
  if (options.verify_all) verify_data(c, file, info);
  const Inspection ins = to_inspection(file, info);
  throw_if_bad(c.comm, ins);
  read_refs(c, file, ins, tensors);
  return ins.state;
}

std::vector<WholeTensor> read_model_tensors(MPI_Comm comm, const std::string& file,
                                            TrainState* state, std::vector<std::string>* notes,
                                            const ReadProgress& progress) {
  const Coll c{comm, nullptr, &progress};
  Inspection ins = inspect_checkpoint(comm, file, nullptr, progress);
  // The model's own tensors and the metadata (the config, the step) must verify; a damaged
  // tensor the model does not need is said, not fatal.
  for (auto& t : ins.tensors) {
    if (t.problem.empty() || t.path.starts_with("model/")) continue;
    if (notes)
      notes->push_back("dataset " + dataset_name(t.path) + " is damaged (" + t.problem +
                       "): the model reads, but this checkpoint cannot be resumed");
    t.problem.clear();
  }
  throw_if_bad(c.comm, ins);
  if (state) *state = ins.state;
  std::vector<WholeTensor> out;
  for (const auto& t : ins.tensors)
    if (t.path.starts_with("model/"))
      out.push_back({t.path, t.shape, std::vector<float>(static_cast<size_t>(numel_of(t.shape)))});
  std::vector<TensorRef> refs;
  for (auto& w : out) refs.push_back({w.path, w.shape, Slab::whole(w.shape), true, w.data.data()});
  h5::ErrorSilencer quiet;
  read_refs(c, file, ins, refs);
  return out;
}

}  // namespace sy::ckpt

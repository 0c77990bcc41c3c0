// Checkpoints (SPEC section 5): one HDF5 file per checkpoint, `<dir>/step_<8-digit step>.h5`,
// holding GLOBAL logical tensors written collectively with parallel HDF5, so that any parallel
// layout can read what any other layout wrote. The pointer file `<dir>/latest` names the newest
// complete checkpoint.
//
// Every rank of the job calls save/load/verify together (they are collective over `comm`). Each
// rank describes the part of each tensor it holds with a TensorRef: a sy::Slab of the global
// tensor and a buffer holding the slab's elements in row-major global order. A replicated tensor
// is held whole (Slab::whole) by several ranks; exactly one of them has writer = true.
//
//   std::vector<ckpt::TensorRef> refs = ...;               // params, optim/m/..., optim/v/...
//   ckpt::TrainState st;  st.step = 100; ...               // scalar state
//   ckpt::save_checkpoint(comm, cfg.checkpoint.dir, st, refs, {.keep = cfg.checkpoint.keep});
//   ...
//   ckpt::ResumePlan plan = ckpt::plan_resume(comm, "auto", cfg.checkpoint.dir);
//   if (!plan.path.empty()) st = ckpt::load_checkpoint(comm, plan.path, refs);   // fills refs
//
// Files on disk (besides SPEC 5's datasets and root attributes):
//   - every tensor dataset is chunked with HDF5's Fletcher32 filter: each chunk carries a checksum
//     that HDF5 (and so h5py, h5dump) verifies on every read. It works with collective parallel
//     writes in HDF5 1.10.8 (filtered parallel writes exist since 1.10.2).
//   - root attribute `tensors`: the manifest, one line "<path> <d0>,<d1>,..." per dataset, so a
//     deleted dataset or a changed shape is detected without knowing the model.
//   - root attribute `metadata_checksum` ("crc64:<16 hex digits>", written last, by rank 0, after
//     the parallel file is closed): a CRC-64 over every object of the file (path, kind, dataset
//     type and shape), every attribute of every object (name, type, value) but itself, and the
//     contents of any dataset without Fletcher32 -- whatever they are, so attributes that later
//     code adds are covered too. A flipped bit in the `config` string (kept in HDF5's global heap,
//     which has no checksum of its own), a hand-edited `step`, or a dataset deleted together with
//     its manifest line all fail verification (seal.h).
//   - /state/data (seed, next_step, consumed_sequences: the batch order's position, which a
//     resume with another train.global_batch continues from), /state/rng (generator, seed, offset),
//     /state/train (best_val_loss, last_val_loss); /optim attributes step and lr.
//   - the file format's own metadata checksums (HDF5 1.10 format: superblock v3, object header
//     v2) catch damage to the structure; Fletcher32 catches damage to the data.
//
// Atomicity: the file is written as `step_N.h5.tmp`, flushed (MPI_File_sync), closed, sealed
// (the metadata checksum), fsync'ed, renamed to `step_N.h5`, the directory fsync'ed, then
// `latest` is replaced the same way (tmp, fsync, rename). A crash at any point leaves the
// previous checkpoint and `latest` intact. Rotation (keep) removes older checkpoints only after
// the new one is complete.
//
// Failures (issue 15): before writing, rank 0 compares the free space of `dir` with the file's
// size (known from the tensor plan) and refuses with "no space left" when it cannot fit. The
// ranks agree after every collective step of the write (create, each dataset, attributes, flush,
// close), so an error on one rank -- a full disk -- ends the write on all of them together: the
// partial .tmp file is truncated (its space freed, so closing it cannot fail again), closed and
// removed, and every rank throws the same error (reported by rank 0, naming the failing rank).
// Every wait is bounded by the watchdog passed in the options (parallel.timeout_s): a rank that
// stops answering -- or a failure that leaves the others inside an HDF5 collective -- ends the
// job after the timeout with a message saying what was waited for.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/core/error.h"
#include "src/core/paths.h"
#include "src/core/slab.h"
#include "src/data/loader.h"
#include "src/data/tokenizer.h"
#include "src/model/params.h"

namespace sy::comm {
class Watchdog;
}

namespace sy::ckpt {

// A checkpoint that cannot be used: missing, truncated, corrupted, foreign, or not matching what
// the caller expects. A UsageError (exit code 2); what() names the file, and the dataset when one
// is at fault: "checkpoint 'run/step_00000010.h5', dataset /model/embed: ...".
class CheckpointError : public UsageError {
 public:
  // The start of `problem` for a file this process may not read (permissions; the text of
  // sy::unreadable_reason): not damage, so --resume auto stops there instead of skipping to an
  // older checkpoint.
  static constexpr const char* kUnreadable = kCannotBeRead;

  // quiet: every rank has the same error and another rank reports it (see sy::Error).
  CheckpointError(std::string file, std::string dataset, const std::string& problem,
                  bool quiet = false);
  const std::string& file() const { return file_; }
  const std::string& dataset() const { return dataset_; }  // "/model/embed", or "" (the file)
  const std::string& problem() const { return problem_; }

 private:
  std::string file_, dataset_, problem_;
};

// How messages name the object of a CheckpointError: "dataset /model/embed", or "the root group"
// for "/" (its attributes: the root object header).
inline std::string object_label(const std::string& dataset) {
  return dataset == "/" ? "the root group" : "dataset " + dataset;
}

// One rank's part of one global tensor. `path` is the SPEC 5 path without the leading '/'
// ("model/layers/0/attn/wqkv", "optim/m/layers/0/attn/wqkv": see moment_path). `data` holds
// slab.numel() floats in row-major global order: read by save (when writer), written by load.
struct TensorRef {
  std::string path;
  std::vector<int64_t> global_shape;
  Slab slab;
  bool writer = true;  // save: write this part (false for the extra copies of replicated parts)
  float* data = nullptr;
};

// The counter-based generator's position (Philox4x32-10: a stream is a pure function of its key
// and counter, so (seed, offset) is its whole state).
struct RngState {
  uint64_t seed = 0;
  uint64_t offset = 0;

  bool operator==(const RngState&) const = default;
};

// Everything of a checkpoint that is not a tensor.
struct TrainState {
  int64_t step = 0;          // optimizer steps completed; a resumed run continues at this step
  int64_t tokens_seen = 0;   // training tokens consumed so far
  std::string config_yaml;   // the resolved config (sy::to_yaml)
  std::string layout;        // layout_string(...): "dp=2,tp=1,ep=2,etp=1"
  int64_t created_unix = 0;  // set by save_checkpoint from rank 0's clock
  // Root attribute `written_by`: build_name() of the binary that wrote it, set by
  // save_checkpoint ("" from checkpoints written before it was stored, or by another tool). A
  // run that continues across an upgrade can tell which build wrote which steps.
  std::string written_by;
  // /optim attributes: the learning-rate schedule position.
  int64_t optim_step = 0;  // AdamW::step_count()
  double lr = 0.0;         // learning rate of the last update applied
  // /state
  LoaderState loader;  // /state/data: seed, next_step, consumed_sequences (the batch order's
                       // position: consumed_derived when the file has no such attribute)
  // /state/data's data_fingerprint: token_source_fingerprint of the token file trained on (not
  // written when empty; "" from checkpoints written before it was stored, or by another tool).
  std::string data_fingerprint;
  RngState rng;                                                     // /state/rng
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();  // /state/train
  double last_val_loss = std::numeric_limits<double>::quiet_NaN();
  // Read only: the /state groups a not-sealed file lacks ("state/data", "state/rng",
  // "state/train"); their fields above keep their defaults (the trainer takes the data order's
  // seed from the config; loader.consumed is derived, below). Empty for switchyard's files.
  std::vector<std::string> state_missing;
  // Read only: loader.consumed was not in the file (written before consumed_sequences, or by
  // another tool) and is step x the stored config's global_batch (-1: that did not parse).
  bool consumed_derived = false;
  // SPEC 8: the training data's tokenizer, root attribute `tokenizer` (not written when empty;
  // read back as "" from checkpoints written before it was stored), and for sentencepiece its
  // serialized model, written as the uint8 dataset /tokenizer/model (chunked, Fletcher32). Only
  // read_checkpoint_tokenizer reads the model back; inspect and load leave it empty.
  std::string tokenizer;
  std::string tokenizer_model;
  // The training data's vocabulary (its token file's root attribute `vocab_size`, at most the
  // model's), root attribute `tokenizer_vocab_size` (switchyard's addition; 0: not written, or a
  // checkpoint from before it). For ids imported without a tokenizer, the ids `sample` picks
  // among, as the evaluation sample did.
  int64_t tokenizer_vocab_size = 0;
  // Read only: false for a checkpoint written by another tool to SPEC 5 alone, without the
  // manifest (`tensors`) and the metadata checksum that switchyard adds. Such a file is read by
  // the schema: the /model and /optim datasets of the model its stored config describes, /state
  // optional; only HDF5's own checks cover it.
  bool sealed = true;
};

// "[256, 32]", and the element count of a shape (1 for a scalar's []).
std::string shape_string(const std::vector<int64_t>& shape);
int64_t numel_of(const std::vector<int64_t>& shape);

// "dp=2,tp=1,ep=2,etp=1"
std::string layout_string(int64_t dp, int64_t tp, int64_t ep, int64_t etp);

// "step_00000010.h5"; the step of such a name, or -1 when `name` is not one.
std::string checkpoint_file_name(int64_t step);
int64_t step_of_file_name(const std::string& name);

// ---- writing -----------------------------------------------------------------------------------

struct SaveOptions {
  // Keep this many newest checkpoints (checkpoint.keep); <= 0 keeps all.
  int64_t keep = 0;
  // Called on every rank as the write progresses ("created", "wrote <path>", "closed", and on
  // rank 0 "renamed", "latest"), for tests that crash a writer at a chosen point. A throw from it
  // is a failure of that rank's write (agreed like any other).
  std::function<void(const std::string& stage)> on_stage;
  // Bounds every wait of the save (null: unbounded).
  comm::Watchdog* watchdog = nullptr;
};

struct SaveResult {
  std::string path;                  // the checkpoint written
  std::vector<std::string> removed;  // stale *.tmp removed before the write, then rotated files
  std::vector<std::string> notes;    // things the trainer may want to log
};

// Collective over `comm`. Writes <dir>/step_<state.step>.h5 atomically (see top), updates
// <dir>/latest, rotates. Every rank passes its parts of every tensor it holds (the lists may
// differ between ranks; a tensor is the union of its writer parts, which must cover it exactly
// once: checked by element count). State and config come from rank 0. On failure every rank
// throws and no file named step_*.h5 or latest has changed. Once the file is in place, a latest
// that cannot be updated is a note, not a failure (removed when it cannot be: a stale pointer).
SaveResult save_checkpoint(MPI_Comm comm, const std::string& dir, const TrainState& state,
                           const std::vector<TensorRef>& tensors, const SaveOptions& options = {});

// ---- reading -----------------------------------------------------------------------------------

struct TensorStatus {
  std::string path;            // "model/embed"
  std::vector<int64_t> shape;  // as the manifest says
  int64_t chunks = 0;          // Fletcher32-checked chunks
  // Empty: present, float32, shape as listed, every chunk verifies, every value finite.
  std::string problem;
};

struct Inspection {
  std::string file;
  TrainState state;
  std::vector<TensorStatus> tensors;  // in manifest (write) order
  // Empty, or what is wrong with the file's metadata as a whole: its metadata checksum is
  // missing or does not match (the state above may then be wrong too).
  std::string metadata_problem;
  bool ok() const;  // no metadata problem and every tensor without problem
};

// Progress of the long reads below (every chunk verified, the tensors read), on comm rank 0
// (its share of the work, which the ranks split evenly): say("verifying 'f': 34% (4.1/12.0
// MiB), ETA 00:00:12") at most every `every_s` seconds, nothing for a read shorter than that.
// An empty `say` is quiet.
struct ReadProgress {
  std::function<void(const std::string&)> say;
  double every_s = 5.0;
};

// Collective. Opens `file`, checks the format attributes, the manifest and the metadata
// checksum, and reads every chunk of every dataset (in parallel: each rank a share) so that HDF5
// verifies its Fletcher32 checksum; a value that is not finite is a problem too. Problems with
// single datasets are reported per tensor; a file that cannot be used at all (missing, not HDF5,
// truncated, foreign, unknown format_version) throws CheckpointError. `watchdog` bounds the waits
// (null: unbounded).
Inspection inspect_checkpoint(MPI_Comm comm, const std::string& file,
                              comm::Watchdog* watchdog = nullptr,
                              const ReadProgress& progress = {});

// Throws CheckpointError naming the first bad dataset of an inspection (or its metadata). The
// inspection is the same on every rank, so every rank throws alike; rank 0 says it.
void throw_if_bad(MPI_Comm comm, const Inspection& ins);

// inspect_checkpoint, then throws CheckpointError naming the first bad dataset (or the metadata).
TrainState verify_checkpoint(MPI_Comm comm, const std::string& file,
                             comm::Watchdog* watchdog = nullptr, const ReadProgress& progress = {});

// Collective. Verifies the whole file, then fills every ref (any slab layout; the refs may differ
// between ranks, writer is ignored) with collective hyperslab reads. Throws CheckpointError when
// the file does not verify, a requested tensor is absent, or its shape differs from global_shape.
struct LoadOptions {
  // false: skip reading every chunk first (pass 2 of read.cpp) because the caller has just
  // verified the file (plan_resume or verify_checkpoint did); the structure is still checked,
  // and every chunk that is read is still checked by HDF5's Fletcher32 filter.
  bool verify_all = true;
  comm::Watchdog* watchdog = nullptr;  // bounds every wait (null: unbounded)
  ReadProgress progress;
};
TrainState load_checkpoint(MPI_Comm comm, const std::string& file,
                           const std::vector<TensorRef>& tensors, const LoadOptions& options = {});

// Collective. Verifies the file, then reads every /model tensor whole on every rank (export and
// tools). Returns them in manifest (write) order.
struct WholeTensor {
  std::string path;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// `state`, when given, receives the checkpoint's state. Damage outside /model (the optimizer
// state: a model can still be sampled and exported, not resumed) is not an error here: it goes
// to `notes` when given, one line each.
std::vector<WholeTensor> read_model_tensors(MPI_Comm comm, const std::string& file,
                                            TrainState* state = nullptr,
                                            std::vector<std::string>* notes = nullptr,
                                            const ReadProgress& progress = {});

// Collective. The checkpoint's tokenizer: name (root attribute `tokenizer`, "" when absent) and,
// when there is one, the bytes of /tokenizer/model (its checksums verified by the read). Throws
// CheckpointError naming the file, and /tokenizer/model when that is missing, malformed or
// damaged, or the root attribute tokenizer_vocab_size when it is below 1.
struct StoredTokenizer {
  std::string name;
  std::string model;
  int64_t vocab_size = 0;  // TrainState::tokenizer_vocab_size (0: not stored)
};
StoredTokenizer read_checkpoint_tokenizer(MPI_Comm comm, const std::string& file);

// Collective. A checkpoint's model as the commands that use it outside training read it (sample,
// ckpt export --format hf): its step, its stored config parsed (a bad one is a CheckpointError
// naming the root attribute), every /model tensor whole (read_model_tensors: checksums
// verified) and its tokenizer (a tokenizer_vocab_size past the model's is a CheckpointError).
struct CheckpointModel {
  int64_t step = 0;
  Config cfg;
  std::vector<WholeTensor> tensors;
  Tokenizer tokenizer = Tokenizer::bytes();
  std::vector<std::string> notes;  // read_model_tensors': damage the model does not need
  // The tensor of SPEC name `name` (no leading '/'), null when the checkpoint has none.
  const WholeTensor* find(const std::string& name) const;
};
CheckpointModel read_checkpoint_model(MPI_Comm comm, const std::string& file,
                                      const ReadProgress& progress = {});

// ---- resuming ----------------------------------------------------------------------------------

struct SkippedCheckpoint {
  std::string file;
  std::string reason;
};

struct ResumePlan {
  std::string path;                        // the checkpoint to load; empty: start from step 0
  std::vector<SkippedCheckpoint> skipped;  // newer candidates that did not verify, and why
  std::string message;                     // one line for the log saying what was chosen
  TrainState state;                        // of `path` (verified), when path is not empty
};

// Collective. `resume` is the --resume argument:
//   ""      no resume: path empty.
//   "auto"  the checkpoint `latest` names, else (or when it does not verify) the newest
//           step_*.h5 in `dir` that verifies, newest first; skipped ones are listed with their
//           reason. No checkpoint at all in `dir`: path empty (a fresh start). Checkpoints
//           present but none verifies: throws CheckpointError listing each and why (never a
//           silent restart from step 0 over a directory of damaged checkpoints).
//   a file  that file, verified; throws CheckpointError when it does not verify.
// `accept` (collective, optional) runs on each candidate that verified, before it is chosen: the
// trainer loads it there. A CheckpointError it throws counts as a failed verification ("auto"
// goes on to the next candidate); any other error ends the search.
using AcceptFn = std::function<void(const std::string& path, const TrainState& state)>;
ResumePlan plan_resume(MPI_Comm comm, const std::string& resume, const std::string& dir,
                       comm::Watchdog* watchdog = nullptr, const AcceptFn& accept = {},
                       const ReadProgress& progress = {});

// The newest-first candidates plan_resume("auto") tries: latest's target (when it holds a
// step_*.h5 file name, not a path), then every other step_*.h5 (no *.tmp) by decreasing root
// attribute created_unix (the write time; -1 where unreadable), ties by decreasing step. Not
// collective (reads the directory and each file's attribute).
struct ResumeCandidate {
  std::string path;
  int64_t step = 0;         // from the file name
  int64_t written_at = -1;  // created_unix; -1: cannot be read
  bool from_latest = false;
};
std::vector<ResumeCandidate> resume_candidates(const std::string& dir);

// ---- names and helpers --------------------------------------------------------------------------

// SPEC 5 "/optim/m/<same path as under /model>": ("m", "model/layers/0/attn/wqkv") ->
// "optim/m/layers/0/attn/wqkv". `moment` is "m" or "v"; param_name a ParamSpec name.
std::string moment_path(const std::string& moment, const std::string& param_name);

// Refs for a process that holds every parameter whole in the ParamTable's flat layout: the
// params under their names, and, when m and v are non-null, the moments under moment_path.
// writer = `writer` on all of them.
std::vector<TensorRef> whole_table_refs(const ParamTable& table, float* params, float* m, float* v,
                                        bool writer = true);

}  // namespace sy::ckpt

// The experiment config (SPEC section 7): one struct per YAML section, defaults here, documented
// key by key in configs/README.md. load_config() parses, applies `--set a.b=v` overrides, and
// validates; every problem is a UsageError (exit 2) naming the key path, the value and what is
// allowed, raised before any work is done.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/core/paths.h"

namespace sy {

struct RunConfig {
  std::string name = "run";
  uint64_t seed = 1234;
  std::string out_dir;  // empty -> "runs/<name>" (resolved by load_config)

  bool operator==(const RunConfig&) const = default;
};

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 64;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t seq_len = 64;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_embeddings = true;

  bool operator==(const ModelConfig&) const = default;
};

enum class AuxScope { kSequence, kMicroBatch };
enum class Score { kSoftmax, kSigmoid };  // p = softmax(z) | sigmoid(z) (SPEC section 1)

// moe.route_groups: R contiguous expert groups for group-limited routing (1 = off), or `nodes`:
// R = the number of nodes the expert layout spans, known only once the layout is (resolve it with
// the world's node count; until then `count` is meaningless).
struct RouteGroups {
  int64_t count = 1;
  bool nodes = false;

  bool operator==(const RouteGroups&) const = default;
};

struct MoeConfig {
  int64_t num_experts = 4;
  int64_t top_k = 2;
  int64_t ffn_hidden = 128;
  int64_t shared_experts = 0;
  bool norm_topk = true;
  std::optional<double> capacity_factor;  // nullopt = dropless
  double aux_loss_coeff = 1e-2;
  AuxScope aux_loss_scope = AuxScope::kSequence;
  double z_loss_coeff = 1e-3;  // 0 by default under score: sigmoid (set by the parser)
  double bias_update_rate = 0.0;
  int64_t overlap_chunks = 1;
  Score score = Score::kSoftmax;
  double gate_scale = 1.0;  // every gate is multiplied by it (DeepSeek-V3's routed scaling)
  RouteGroups route_groups;
  int64_t route_groups_topk = 1;  // M: groups a token may pick experts from (with R > 1)

  bool operator==(const MoeConfig&) const = default;
};

// auto (switchyard's default, beside SPEC 7's flat|hierarchical): hierarchical when any EP group
// spans nodes, else flat, one algorithm for the run; it is resolved (resolve_a2a) before stored.
enum class A2aKind { kAuto, kFlat, kHierarchical };
enum class InternodeKind { kUcx, kMpi };

struct ParallelConfig {
  int64_t tp = 1;
  int64_t ep = 1;
  int64_t etp = 1;
  int64_t ranks_per_node = 0;  // 0 = as MPI reports (MPI_COMM_TYPE_SHARED)
  A2aKind a2a = A2aKind::kAuto;
  InternodeKind internode = InternodeKind::kUcx;
  bool zero1 = false;
  double timeout_s = 300.0;      // a wait on other ranks longer than this ends the job (0 = never)
  std::string expert_placement;  // a placement file (`switchyard placement`); empty = contiguous

  bool operator==(const ParallelConfig&) const = default;
};

enum class Precision { kFp32, kBf16 };

struct TrainConfig {
  int64_t steps = 100;
  int64_t global_batch = 8;  // sequences per optimizer step
  int64_t micro_batch = 8;   // sequences per forward/backward on one data-parallel rank
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 10;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // 0 = no clipping
  Precision precision = Precision::kFp32;

  bool operator==(const TrainConfig&) const = default;
};

struct DataConfig {
  std::string path;  // token file written by `switchyard data prepare` (required)

  bool operator==(const DataConfig&) const = default;
};

struct EvalConfig {
  int64_t every = 50;  // 0 = only at the end
  int64_t sequences = 32;
  int64_t sample_tokens = 0;  // > 0: print (and save) a sample this long at each evaluation

  bool operator==(const EvalConfig&) const = default;
};

struct CheckpointConfig {
  std::string dir;    // empty -> "<run.out_dir>/checkpoints"
  int64_t every = 0;  // 0 = no periodic checkpoints
  int64_t keep = 3;

  bool operator==(const CheckpointConfig&) const = default;
};

struct LogConfig {
  int64_t every = 1;

  bool operator==(const LogConfig&) const = default;
};

enum class Device { kCpu, kCuda };

struct Config {
  RunConfig run;
  ModelConfig model;
  MoeConfig moe;
  ParallelConfig parallel;
  TrainConfig train;
  DataConfig data;
  EvalConfig eval;
  CheckpointConfig checkpoint;
  LogConfig log;
  Device device = Device::kCpu;

  bool operator==(const Config&) const = default;
};

// Parses `path` (YAML), applies `overrides` ("a.b=value", in order, each parsed as YAML scalar),
// fills defaults, resolves derived paths, validates. Throws UsageError naming the key path.
// Relative data.path is taken relative to the current directory (as a user typed it).
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// load_config in two parts: the file's text, read once (a pipe -- `<(...)`, /dev/stdin -- gives
// it only once: `train` read it twice and trained an empty config, every key at its default);
// then that text as the file `path` (UsageError naming the file or key).
// A job of several ranks reads it on each: a regular file only there (a FIFO gave its text to one
// rank while the others waited in open(2) until the start-up timed out; review).
std::string read_config_text(const std::string& path,
                             TextSource source = TextSource::kFileOrStream);
Config config_from_file_text(const std::string& text, const std::string& path,
                             const std::vector<std::string>& overrides = {});

// Same, from YAML text (tests, and a checkpoint's stored config; `source_name` is used in messages
// instead of a file name). Without validate_run_bounds: a stored config need not meet them.
Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                    const std::string& source_name = "<config>");

// A checkpoint's stored config (`source_name` names it): parse_config, except that a character
// YAML does not allow reads as U+FFFD. Older switchyards stored such bytes (a Latin-1 file name
// in data.path or run.name) before configs were checked for them; the model they describe must
// stay readable (sample, export, resume).
Config parse_stored_config(const std::string& yaml_text, const std::string& source_name);

// Validation of a Config built in code (load/parse call it). Checks single-process invariants
// (the world size is checked by the parallel layout code).
void validate_config(const Config& cfg);
// Bounds on how a run runs, not on what its model is (run.name stays under runs/,
// eval.sample_tokens at most 100000): load_config checks them for the config a command starts
// from; a checkpoint's stored config, from an earlier version, need not meet them (its model still
// loads for sample and ckpt export).
void validate_run_bounds(const Config& cfg);

// `moe.route_groups: nodes` resolved for an expert layout that spans `nodes` nodes: a copy with
// route_groups = nodes, checked by the rules of a numeric one (UsageError naming the keys and the
// node count). Any other config comes back as it is.
Config resolve_route_groups(const Config& cfg, int nodes);

// Whether `a2a` means the hierarchical all-to-all for an expert layout that does (or does not)
// span nodes, and a copy of `cfg` with parallel.a2a resolved that way: never auto, so the config
// a checkpoint stores (SPEC 5's resolved YAML) has one of SPEC 7's values.
bool a2a_is_hierarchical(A2aKind a2a, bool spans_nodes);
Config resolve_a2a(const Config& cfg, bool spans_nodes);

// SPEC 1's expert capacity, ceil(factor * tokens * top_k / experts), for a micro-batch of
// `tokens`: at least 1 for any factor > 0, at most `tokens` (an expert gets every token at most
// once, so a larger capacity drops nothing). A decimal factor (1.1, 1.25) is rarely exact in
// binary, so a product within 1e-9 of an integer >= 1 is that integer (1.1*10/11 = 1, not the
// 2 that ceil gives 1.0000000000000002). The trainer's drops and the planner's both use it.
int64_t moe_capacity(double factor, int64_t tokens, int64_t top_k, int64_t experts);

// The resolved config as YAML, every key present (printed at start, stored with the run).
std::string to_yaml(const Config& cfg);

// Every key path of the schema ("run.name", ..., "device"), in to_yaml order.
std::vector<std::string> config_key_paths();

// Enum spellings used in YAML, to_yaml and messages.
const char* to_string(AuxScope v);
const char* to_string(Score v);
const char* to_string(A2aKind v);
const char* to_string(InternodeKind v);
const char* to_string(Precision v);
const char* to_string(Device v);

}  // namespace sy

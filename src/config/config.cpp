// The config schema (SPEC section 7) as one table: every key path with the member it fills. The
// parser, the `--set` overrides, the unknown-key check and to_yaml all walk this table, so a key
// added here is parsed, overridable, checked and dumped at once. Range rules live in validate.cpp.
#include "src/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <span>
#include <string_view>
#include <system_error>
#include <variant>

#include "src/config/convert.h"
#include "src/config/yaml_load.h"
#include "src/config/yaml_scalar.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"
#include "src/core/printable.h"
#include "src/core/suggest.h"
#include "src/core/utf8.h"

namespace sy {

namespace {

using config_convert::Context;
using config_convert::convert;
using config_convert::describe;

template <class T>
using Accessor = T& (*)(Config&);
using Field =
    std::variant<Accessor<int64_t>, Accessor<uint64_t>, Accessor<double>, Accessor<bool>,
                 Accessor<std::string>, Accessor<std::optional<double>>, Accessor<AuxScope>,
                 Accessor<Score>, Accessor<RouteGroups>, Accessor<A2aKind>, Accessor<InternodeKind>,
                 Accessor<Precision>, Accessor<Device>>;

struct Key {
  std::string_view path;  // "section.key", or "key" for a top-level scalar
  Field field;
};

// A captureless lambda returning a reference to the member: decays to the Accessor alternative.
#define SY_KEY(path, member)                                          \
  Key {                                                               \
    path, +[](Config& c) -> decltype((c.member)) { return c.member; } \
  }

const Key kKeys[] = {
    SY_KEY("run.name", run.name),
    SY_KEY("run.seed", run.seed),
    SY_KEY("run.out_dir", run.out_dir),
    SY_KEY("model.vocab_size", model.vocab_size),
    SY_KEY("model.d_model", model.d_model),
    SY_KEY("model.n_layers", model.n_layers),
    SY_KEY("model.n_heads", model.n_heads),
    SY_KEY("model.seq_len", model.seq_len),
    SY_KEY("model.norm_eps", model.norm_eps),
    SY_KEY("model.rope_theta", model.rope_theta),
    SY_KEY("model.tie_embeddings", model.tie_embeddings),
    SY_KEY("moe.num_experts", moe.num_experts),
    SY_KEY("moe.top_k", moe.top_k),
    SY_KEY("moe.ffn_hidden", moe.ffn_hidden),
    SY_KEY("moe.shared_experts", moe.shared_experts),
    SY_KEY("moe.norm_topk", moe.norm_topk),
    SY_KEY("moe.capacity_factor", moe.capacity_factor),
    SY_KEY("moe.aux_loss_coeff", moe.aux_loss_coeff),
    SY_KEY("moe.aux_loss_scope", moe.aux_loss_scope),
    SY_KEY("moe.z_loss_coeff", moe.z_loss_coeff),
    SY_KEY("moe.bias_update_rate", moe.bias_update_rate),
    SY_KEY("moe.overlap_chunks", moe.overlap_chunks),
    SY_KEY("moe.score", moe.score),
    SY_KEY("moe.gate_scale", moe.gate_scale),
    SY_KEY("moe.route_groups", moe.route_groups),
    SY_KEY("moe.route_groups_topk", moe.route_groups_topk),
    SY_KEY("parallel.tp", parallel.tp),
    SY_KEY("parallel.ep", parallel.ep),
    SY_KEY("parallel.etp", parallel.etp),
    SY_KEY("parallel.ranks_per_node", parallel.ranks_per_node),
    SY_KEY("parallel.a2a", parallel.a2a),
    SY_KEY("parallel.internode", parallel.internode),
    SY_KEY("parallel.zero1", parallel.zero1),
    SY_KEY("parallel.timeout_s", parallel.timeout_s),
    SY_KEY("parallel.expert_placement", parallel.expert_placement),
    SY_KEY("train.steps", train.steps),
    SY_KEY("train.global_batch", train.global_batch),
    SY_KEY("train.micro_batch", train.micro_batch),
    SY_KEY("train.lr", train.lr),
    SY_KEY("train.min_lr", train.min_lr),
    SY_KEY("train.warmup_steps", train.warmup_steps),
    SY_KEY("train.weight_decay", train.weight_decay),
    SY_KEY("train.grad_clip", train.grad_clip),
    SY_KEY("train.precision", train.precision),
    SY_KEY("data.path", data.path),
    SY_KEY("eval.every", eval.every),
    SY_KEY("eval.sequences", eval.sequences),
    SY_KEY("eval.sample_tokens", eval.sample_tokens),
    SY_KEY("checkpoint.dir", checkpoint.dir),
    SY_KEY("checkpoint.every", checkpoint.every),
    SY_KEY("checkpoint.keep", checkpoint.keep),
    SY_KEY("log.every", log.every),
    SY_KEY("device", device),
};
#undef SY_KEY

template <class E>
struct Spelling {
  E value;
  const char* name;
};
constexpr Spelling<AuxScope> kAuxScopes[] = {{AuxScope::kSequence, "sequence"},
                                             {AuxScope::kMicroBatch, "micro_batch"}};
constexpr Spelling<Score> kScores[] = {{Score::kSoftmax, "softmax"}, {Score::kSigmoid, "sigmoid"}};
constexpr Spelling<A2aKind> kA2aKinds[] = {
    {A2aKind::kAuto, "auto"}, {A2aKind::kFlat, "flat"}, {A2aKind::kHierarchical, "hierarchical"}};
constexpr Spelling<InternodeKind> kInternodeKinds[] = {{InternodeKind::kUcx, "ucx"},
                                                       {InternodeKind::kMpi, "mpi"}};
constexpr Spelling<Precision> kPrecisions[] = {{Precision::kFp32, "fp32"},
                                               {Precision::kBf16, "bf16"}};
constexpr Spelling<Device> kDevices[] = {{Device::kCpu, "cpu"}, {Device::kCuda, "cuda"}};

std::span<const Spelling<AuxScope>> spellings(AuxScope) {
  return kAuxScopes;
}
std::span<const Spelling<Score>> spellings(Score) {
  return kScores;
}
std::span<const Spelling<A2aKind>> spellings(A2aKind) {
  return kA2aKinds;
}
std::span<const Spelling<InternodeKind>> spellings(InternodeKind) {
  return kInternodeKinds;
}
std::span<const Spelling<Precision>> spellings(Precision) {
  return kPrecisions;
}
std::span<const Spelling<Device>> spellings(Device) {
  return kDevices;
}

template <class E>
const char* spell(E v) {
  for (const auto& s : spellings(v))
    if (s.value == v) return s.name;
  return "?";
}

std::string_view section_of(std::string_view path) {
  const size_t dot = path.find('.');
  return dot == std::string_view::npos ? std::string_view{} : path.substr(0, dot);
}
std::string_view leaf_of(std::string_view path) {
  const size_t dot = path.find('.');
  return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

const Key* find_key(std::string_view path) {
  for (const Key& k : kKeys)
    if (k.path == path) return &k;
  return nullptr;
}

bool is_section(std::string_view name) {
  for (const Key& k : kKeys)
    if (section_of(k.path) == name) return true;
  return false;
}

// Names valid directly under `section` ("" = the root: section names and top-level keys).
std::vector<std::string> names_under(std::string_view section) {
  std::vector<std::string> out;
  for (const Key& k : kKeys) {
    const std::string name{section.empty()
                               ? (section_of(k.path).empty() ? k.path : section_of(k.path))
                               : leaf_of(k.path)};
    if (section.empty() || section_of(k.path) == section)
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

// " (from --set a=1; --set b=2)" for the overridden keys a message names (whole key paths), so a
// range error does not send the user to the file for a value the command line gave.
std::string set_origins(const std::string& message,
                        const std::map<std::string, std::string>& overridden) {
  const auto key_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  };
  std::string out;
  for (const auto& [path, text] : overridden)
    for (size_t at = message.find(path); at != std::string::npos; at = message.find(path, at + 1)) {
      const size_t end = at + path.size();
      const bool whole = (at == 0 || !(key_char(message[at - 1]) || message[at - 1] == '.')) &&
                         (end == message.size() || !key_char(message[end]));
      if (!whole) continue;
      out += (out.empty() ? " (from --set " : "; --set ") + shortened(text);
      break;
    }
  return out.empty() ? out : out + ")";
}

template <class E>
requires std::is_enum_v<E>
void convert(const YAML::Node& n, E& out, const std::string& path, const Context& ctx) {
  std::string allowed;
  for (const auto& s : spellings(out)) {
    if (n.IsScalar() && n.Scalar() == s.name) {
      out = s.value;
      return;
    }
    // Appended in two steps: GCC 12's -Wrestrict misfires on `("|" or "") + std::string`.
    if (!allowed.empty()) allowed += '|';
    allowed += s.name;
  }
  ctx.fail(path, "expected one of " + allowed + ", got " + describe(n), &n);
}

// ---- the tree: structure check, overrides, conversion ------------------------------------------

// " (did you mean 'moe.num_experts'?)" for a leaf name that is a key of one other section ("" when
// none is, or several are: `every`): a key put in the wrong section.
std::string other_section_hint(const std::string& leaf, const std::string& path) {
  std::vector<std::string_view> found;
  for (const Key& k : kKeys)
    if (leaf_of(k.path) == leaf && k.path != path) found.push_back(k.path);
  return found.size() == 1 ? " (did you mean '" + std::string(found[0]) + "'?)" : "";
}

// Every key must be in the schema and every section a mapping; duplicate keys are errors too
// (yaml-cpp would silently keep one of them).
void check_structure(const YAML::Node& map, const std::string& section, const Context& ctx) {
  std::set<std::string> seen;
  const std::vector<std::string> valid = names_under(section);
  for (const auto& kv : map) {
    const std::string where = section.empty() ? "" : section + ".";
    if (!kv.first.IsScalar())
      ctx.fail(where + "<key>", "keys must be plain names, got " + describe(kv.first), &kv.first);
    const std::string name = kv.first.Scalar();
    const std::string path = where + shortened(name);
    if (!seen.insert(name).second) ctx.fail(path, "duplicate key", &kv.first);
    if (std::find(valid.begin(), valid.end(), name) == valid.end()) {
      // A leaf key one level too high ("d_model:" at the top) or in another section
      // ("num_experts:" under model:) gets its full path suggested.
      std::string hint = other_section_hint(name, path);
      if (hint.empty()) hint = suggestion(name, valid);
      ctx.fail(path, "unknown key" + hint, &kv.first);
    }
    if (section.empty() && is_section(name)) {
      if (kv.second.IsNull()) continue;  // "model:" with nothing under it: all defaults
      if (!kv.second.IsMap())
        ctx.fail(path, "expected a mapping of " + name + ".* keys, got " + describe(kv.second),
                 &kv.second);
      check_structure(kv.second, name, ctx);
    }
  }
}

void apply_override(YAML::Node& root, const std::string& assignment, const std::string& source,
                    std::map<std::string, std::string>& overridden) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError("--set " + shortened(assignment) +
                     ": expected key.path=value, e.g. model.d_model=128");
  const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  if (!find_key(path)) {
    std::vector<std::string> all;
    for (const Key& k : kKeys) all.emplace_back(k.path);
    std::string hint = other_section_hint(std::string(leaf_of(path)), path);
    if (hint.empty()) hint = suggestion(path, all);
    const std::string what =
        is_section(path) ? "is a section; set its keys one by one" : "unknown key" + hint;
    throw UsageError("--set " + shortened(assignment) + ": " + shortened(path) + ": " + what);
  }
  if (const TextProblem p = yaml_text_problem(text); !p.what.empty())
    throw UsageError("--set " + shortened(assignment) + ": " + path + ": " + p.what + " at byte " +
                     std::to_string(p.offset + 1) +
                     " of the value; YAML text is UTF-8 without control characters other than "
                     "tab");
  YAML::Node value;
  const std::vector<YAML::Node> docs =
      load_yaml_documents(text, "--set " + shortened(assignment) + ": " + path + ": the value");
  if (docs.size() > 1)
    throw UsageError("--set " + shortened(assignment) + ": " + path + ": the value holds " +
                     std::to_string(docs.size()) +
                     " YAML documents ('---'), one value is expected; quote it to keep the text");
  if (!docs.empty()) value = docs.front();
  // A '#' first or after a blank starts a YAML comment: `run.name=a #b` would set "a", unsaid. In
  // a quoted value it is text.
  const bool quoted = value.IsScalar() && !plain_scalar(value);
  for (size_t i = 0; i < text.size() && !quoted; ++i)
    if (text[i] == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t'))
      throw UsageError("--set " + shortened(assignment) + ": " + path + ": '" +
                       shortened(text.substr(i)) +
                       "' is a YAML comment and would be dropped; quote the value to keep it "
                       "(--set '" +
                       path + "=\"" + shortened(text) + "\"')");
  const std::string section{section_of(path)};
  const std::string leaf{leaf_of(path)};
  if (section.empty()) {
    root[leaf] = value;
  } else {
    if (!root[section] || root[section].IsNull()) root[section] = YAML::Node(YAML::NodeType::Map);
    if (!root[section].IsMap())
      throw UsageError(source + ": " + section + ": expected a mapping of " + section +
                       ".* keys, got " + describe(root[section]));
    root[section][leaf] = value;
  }
  overridden[path] = assignment;
}

// ---- to_yaml -----------------------------------------------------------------------------------

// The shortest text that reads back to exactly v, with a mantissa dot when there is an exponent
// ("1.0e-05", not "1e-05"): YAML 1.1 readers such as PyYAML take "1e-05" for a string.
std::string format_double(double v) {
  std::string s = number_text(v);
  const size_t e = s.find('e');
  if (e != std::string::npos && s.find('.') == std::string::npos) s.insert(e, ".0");
  return s;
}

void emit(YAML::Emitter& out, Config& c, Accessor<double> f) {
  out << format_double(f(c));
}
void emit(YAML::Emitter& out, Config& c, Accessor<std::optional<double>> f) {
  if (f(c))
    out << format_double(*f(c));
  else
    out << YAML::Null;
}
void emit(YAML::Emitter& out, Config& c, Accessor<RouteGroups> f) {
  if (f(c).nodes)
    out << "nodes";
  else
    out << f(c).count;
}
template <class T>
void emit(YAML::Emitter& out, Config& c, Accessor<T> f) {
  if constexpr (std::is_enum_v<T>)
    out << spell(f(c));
  else
    out << f(c);
}

}  // namespace

const char* to_string(AuxScope v) {
  return spell(v);
}
const char* to_string(Score v) {
  return spell(v);
}
const char* to_string(A2aKind v) {
  return spell(v);
}
const char* to_string(InternodeKind v) {
  return spell(v);
}
const char* to_string(Precision v) {
  return spell(v);
}
const char* to_string(Device v) {
  return spell(v);
}

Config parse_stored_config(const std::string& yaml_text, const std::string& source_name) {
  return parse_config(replace_yaml_text_problems(yaml_text), {}, source_name);
}

std::vector<std::string> config_key_paths() {
  std::vector<std::string> out;
  for (const Key& k : kKeys) out.emplace_back(k.path);
  return out;
}

Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                    const std::string& source_name) {
  std::map<std::string, std::string> overridden;
  const Context ctx{source_name, overridden};

  YAML::Node root;
  const std::vector<YAML::Node> docs = load_yaml_documents(yaml_text, source_name);
  if (docs.size() > 1)
    throw UsageError(source_name + ": holds " + std::to_string(docs.size()) +
                     " YAML documents; a config is one mapping");
  if (!docs.empty()) root = docs[0];
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    throw UsageError(source_name + ": expected a mapping of sections (run:, model:, ...), got " +
                     describe(root));

  try {
    for (const auto& o : overrides) apply_override(root, o, source_name, overridden);
    check_structure(root, "", ctx);

    Config cfg;
    const YAML::Node& croot = root;  // const lookups never insert
    for (const Key& k : kKeys) {
      const std::string path{k.path};
      const std::string section{section_of(k.path)};
      // Copy-constructed, never assigned: yaml-cpp's Node::operator= throws on a missing key's
      // (invalid) node, and on a valid one it would rebind the tree.
      const YAML::Node sec = section.empty() ? croot : croot[section];
      if (!sec.IsDefined() || !sec.IsMap()) continue;  // section absent or empty: the defaults
      const YAML::Node node = sec[section.empty() ? path : std::string(leaf_of(k.path))];
      if (!node.IsDefined()) continue;  // key absent: keep the default
      std::visit([&](auto f) { convert(node, f(cfg), path, ctx); }, k.field);
    }

    // SPEC section 1: the z-loss is defined for softmax scores only, so its default is 0 under
    // sigmoid; a value the config sets explicitly is kept (and rejected by validate_config).
    if (cfg.moe.score == Score::kSigmoid) {
      const YAML::Node moe = croot["moe"];
      if (!moe.IsDefined() || !moe.IsMap() || !moe["z_loss_coeff"].IsDefined())
        cfg.moe.z_loss_coeff = 0.0;
    }
    if (cfg.run.out_dir.empty()) cfg.run.out_dir = "runs/" + cfg.run.name;
    if (cfg.checkpoint.dir.empty())
      cfg.checkpoint.dir = (std::filesystem::path(cfg.run.out_dir) / "checkpoints").string();
    try {
      validate_config(cfg);
    } catch (const UsageError& e) {
      throw UsageError(source_name + ": " + e.what() + set_origins(e.what(), overridden));
    }
    return cfg;
  } catch (const YAML::Exception& e) {
    // Defensive: every node shape is checked above, but a yaml-cpp surprise is still a bad config.
    throw UsageError(source_name + ": " + e.msg);
  }
}

std::string read_config_text(const std::string& path, TextSource source) {
  return read_text_file(path, "config file", "a YAML file", source);
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return config_from_file_text(read_config_text(path), path, overrides);
}

Config config_from_file_text(const std::string& text, const std::string& path,
                             const std::vector<std::string>& overrides) {
  Config cfg = parse_config(text, overrides, path);
  try {
    validate_run_bounds(cfg);
  } catch (const UsageError& e) {
    std::map<std::string, std::string> overridden;  // as parse_config's: the last --set wins
    for (const std::string& o : overrides) overridden[o.substr(0, o.find('='))] = o;
    throw UsageError(path + ": " + e.what() + set_origins(e.what(), overridden));
  }
  return cfg;
}

int64_t moe_capacity(double factor, int64_t tokens, int64_t top_k, int64_t experts) {
  const double x = factor * static_cast<double>(tokens) * static_cast<double>(top_k) /
                   static_cast<double>(experts);
  if (x >= static_cast<double>(tokens)) return tokens;  // also keeps 1e18 from overflowing
  const double r = std::round(x);
  if (r >= 1 && std::fabs(x - r) <= 1e-9 * r) return static_cast<int64_t>(r);
  return static_cast<int64_t>(std::ceil(x));
}

std::string to_yaml(const Config& cfg) {
  Config c = cfg;  // the accessors take a mutable Config; this copy is only read
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  out << YAML::BeginMap;
  std::string_view open_section;
  for (const Key& k : kKeys) {
    const std::string_view section = section_of(k.path);
    if (section != open_section) {
      if (!open_section.empty()) out << YAML::EndMap;
      if (!section.empty())
        out << YAML::Key << std::string(section) << YAML::Value << YAML::BeginMap;
      open_section = section;
    }
    out << YAML::Key << std::string(leaf_of(k.path)) << YAML::Value;
    std::visit([&](auto f) { emit(out, c, f); }, k.field);
  }
  if (!open_section.empty()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace sy

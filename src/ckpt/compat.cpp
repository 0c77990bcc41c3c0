#include "src/ckpt/compat.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <utility>

#include "src/config/config.h"
#include "src/core/error.h"

namespace sy::ckpt {

namespace {

// Scalar leaves of a YAML tree as "a.b" -> text; null -> "null"; a sequence as its flow text.
void flatten(const YAML::Node& node, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node)
      flatten(
          kv.second,
          prefix.empty() ? kv.first.as<std::string>() : prefix + "." + kv.first.as<std::string>(),
          out);
  } else if (node.IsNull()) {
    out[prefix] = "null";
  } else if (node.IsScalar()) {
    out[prefix] = node.Scalar();
  } else {
    YAML::Emitter e;
    e << YAML::Flow << node;
    out[prefix] = e.c_str();
  }
}

std::map<std::string, std::string> flat(const std::string& yaml, const char* which) {
  std::map<std::string, std::string> out;
  try {
    flatten(YAML::Load(yaml), "", out);
  } catch (const YAML::Exception& e) {
    throw UsageError(std::string(which) + " is not valid YAML: " + e.what());
  }
  return out;
}

}  // namespace

const std::vector<std::string>& model_shape_keys() {
  static const std::vector<std::string> keys = {
      "model.vocab_size",     "model.d_model",   "model.n_layers", "model.n_heads",
      "model.tie_embeddings", "moe.num_experts", "moe.ffn_hidden", "moe.shared_experts"};
  return keys;
}

std::vector<ConfigChange> changed_keys(const std::string& old_yaml, const std::string& new_yaml) {
  const auto a = flat(old_yaml, "the checkpoint's config");
  const auto b = flat(new_yaml, "the new config");
  std::map<std::string, std::pair<std::string, std::string>> keys;
  for (const auto& [k, v] : a) keys[k] = {v, "(absent)"};
  for (const auto& [k, v] : b) {
    auto [it, fresh] = keys.emplace(k, std::pair<std::string, std::string>{"(absent)", v});
    if (!fresh) it->second.second = v;
  }
  std::vector<ConfigChange> out;
  for (const auto& [k, v] : keys)
    if (v.first != v.second) out.push_back({k, v.first, v.second});
  return out;
}

ConfigDiff diff_configs(const std::string& checkpoint_yaml, const std::string& new_yaml) {
  ConfigDiff diff;
  const auto& shape_keys = model_shape_keys();
  for (ConfigChange& c : changed_keys(checkpoint_yaml, new_yaml)) {
    // Checkpoints written before runs resolved it store `a2a: auto`: whatever this run resolves
    // it to is no change the user made.
    if (c.key == "parallel.a2a" && c.old_value == "auto") continue;
    const bool shape = std::find(shape_keys.begin(), shape_keys.end(), c.key) != shape_keys.end();
    (shape ? diff.incompatible : diff.compatible).push_back(std::move(c));
  }
  return diff;
}

std::vector<ConfigChange> check_resume_config(const std::string& checkpoint_file,
                                              const std::string& checkpoint_yaml,
                                              const std::string& new_yaml) {
  // Another tool's checkpoint (SPEC 5 alone) may store its config in other words -- a key left
  // at its default, `True` for `true` -- that read as the same model: both sides are compared as
  // switchyard reads them (parse_config, then to_yaml: its own stored text reads back as it
  // was). A text it cannot read is compared as written, and the difference named.
  const auto as_read = [&](const std::string& yaml, const std::string& what) {
    try {
      return to_yaml(parse_stored_config(yaml, what));
    } catch (const UsageError&) {
      return yaml;
    }
  };
  ConfigDiff diff = diff_configs(as_read(checkpoint_yaml, "checkpoint '" + checkpoint_file + "'"),
                                 as_read(new_yaml, "the run's config"));
  if (!diff.incompatible.empty()) {
    std::string msg = "cannot resume from '" + checkpoint_file +
                      "': the config changes the model's shape, which a checkpoint cannot "
                      "follow:";
    for (const auto& c : diff.incompatible)
      msg += "\n  " + c.key + ": " + c.old_value + " in the checkpoint, " + c.new_value +
             " in the config";
    throw UsageError(msg);
  }
  return diff.compatible;
}

std::string describe_changes(const std::vector<ConfigChange>& changes) {
  std::string out;
  for (const auto& c : changes) out += c.key + ": " + c.old_value + " -> " + c.new_value + "\n";
  return out;
}

}  // namespace sy::ckpt

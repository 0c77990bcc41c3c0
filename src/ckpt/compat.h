// Resuming with a config that differs from the checkpoint's. Keys that decide the shapes or the
// meaning of the stored tensors (model_shape_keys) must match: a mismatch is refused naming the
// key. Everything else (steps, lr schedule, log and eval cadence, the parallel layout, paths) may
// change; the changes are listed so the trainer can report them.
#pragma once

#include <string>
#include <vector>

namespace sy::ckpt {

struct ConfigChange {
  std::string key;        // "model.d_model"
  std::string old_value;  // as in the checkpoint's config ("(absent)" when missing there)
  std::string new_value;  // as in the new config
};

struct ConfigDiff {
  std::vector<ConfigChange> incompatible;  // model-shape keys that differ
  std::vector<ConfigChange> compatible;    // every other key that differs
};

// Every scalar leaf ("section.key") whose value differs between two YAML texts, by key in
// alphabetical order, with both values ("(absent)" where a text lacks the key), no key exempted.
// Throws UsageError when either is not YAML. What diff_configs, the trainer's same-config check
// and bench train's unused parallel.* keys compare by.
std::vector<ConfigChange> changed_keys(const std::string& old_yaml, const std::string& new_yaml);

// model.vocab_size, model.d_model, model.n_layers, model.n_heads, model.tie_embeddings,
// moe.num_experts, moe.ffn_hidden, moe.shared_experts.
const std::vector<std::string>& model_shape_keys();

// Compares two configs as YAML text (sy::to_yaml output, or any YAML of the same schema) key by
// key ("section.key" paths of scalar leaves). Throws UsageError when either is not YAML.
ConfigDiff diff_configs(const std::string& checkpoint_yaml, const std::string& new_yaml);

// diff_configs, then throws UsageError naming every incompatible key with both values and the
// checkpoint file; returns the compatible changes.
std::vector<ConfigChange> check_resume_config(const std::string& checkpoint_file,
                                              const std::string& checkpoint_yaml,
                                              const std::string& new_yaml);

// "train.steps: 60 -> 100" per line.
std::string describe_changes(const std::vector<ConfigChange>& changes);

}  // namespace sy::ckpt

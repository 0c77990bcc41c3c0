// The parameter table: every parameter by its SPEC section 5 name ("model/layers/0/attn/wqkv"),
// with its global shape, its kind (which decides init and weight decay) and its offset in one
// flat buffer. Parameters, gradients and the AdamW moments all use this one layout, the way
// llm.c keeps one contiguous block, but every slice is found by name, never by magic index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace sy {

enum class ParamKind {
  kMatrix,  // Normal(0, init_std) init; AdamW with weight decay
  kGain,    // RMSNorm gain: init 1; AdamW without weight decay
  kBias,    // router load-balancing bias b: init 0; not trained by AdamW (SPEC 3 sign update)
};

struct ParamSpec {
  std::string name;            // SPEC section 5 path without the leading '/'
  std::vector<int64_t> shape;  // global logical shape
  ParamKind kind;
  double init_std = 0.0;  // kMatrix only
  size_t offset = 0;      // into the flat buffer (elements)
  size_t numel = 0;
};

class ParamTable {
 public:
  // Appends a parameter after the current last one.
  void add(std::string name, std::vector<int64_t> shape, ParamKind kind, double init_std = 0.0);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  size_t total_numel() const { return total_; }
  // Throws std::out_of_range naming `name` when absent.
  const ParamSpec& at(const std::string& name) const;
  bool contains(const std::string& name) const;

 private:
  std::vector<ParamSpec> specs_;
  size_t total_ = 0;
};

// The SPEC section 5 parameter set of the model described by `cfg`, in a fixed order:
// embed, [head], final_norm, then per layer attn_norm, attn/wqkv, attn/wo, moe_norm, moe/router,
// moe/bias, moe/w1, moe/w3, moe/w2, [moe/shared/w1, w3, w2].
ParamTable make_param_table(const Config& cfg);

// Name helpers so no caller formats these strings by hand.
std::string layer_param_name(int64_t layer, const std::string& leaf);  // "model/layers/<l>/<leaf>"

}  // namespace sy

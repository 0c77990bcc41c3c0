// The parameter table: every parameter by its SPEC section 5 name ("model/layers/0/attn/wqkv"),
// with its GLOBAL shape, the part of it this rank holds (a Slab), its kind (which decides init
// and weight decay) and where that part sits in this rank's flat local buffer. Parameters,
// gradients and the AdamW moments all use this one layout, the way llm.c keeps one contiguous
// block, but every slice is found by name, never by magic index.
//
// Sharding follows SPEC section 4 (Megatron-Core's MoE parallel folding):
//   attention wqkv [C,3C]  column-parallel over tp by heads   (each of q, k, v: C/tp columns)
//   attention wo   [C,C]   row-parallel over tp
//   shared experts         w1/w3 columns, w2 rows over tp (a dense MLP, like attention)
//   routed experts [E,..]  E/ep whole experts per EP rank, F split over etp
//   everything else        replicated (embedding, head, norms, router, bias)
// The local buffer holds the dense group (reduced over dp) first, then the expert group (reduced
// over edp), each padded to a multiple of its data-parallel size so that it splits into equal
// reduce-scatter chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/core/slab.h"

namespace sy {

class ExpertPlacement;

// One hyperslab of a parameter's local part, and where it starts inside that part (elements).
struct SlabPart {
  Slab slab;
  size_t local_offset = 0;
};

enum class ParamKind {
  kMatrix,  // Normal(0, init_std) init; AdamW with weight decay
  kGain,    // RMSNorm gain: init 1; AdamW without weight decay
  kBias,    // router load-balancing bias b: init 0; not trained by AdamW (SPEC 3 sign update)
};

// Which data-parallel group sums the gradient: dp (attention folding) or edp (expert folding).
enum class ParamGroup { kDense, kExpert };

// How a dense parameter relates to the tensor-parallel group.
enum class TpMode {
  kReplicated,   // same values on every tp rank, gradient computed identically on each
  kSharded,      // each tp rank holds a different part (its Slab)
  kPartialGrad,  // same values, but each tp rank's gradient covers only its share of the
                 // tokens (the router): summed over tp before the data-parallel reduction
};

// This rank's coordinates in both foldings (comm/groups.h RankCoords plus the sizes).
struct ShardLayout {
  int tp = 1, tp_rank = 0, dp = 1, dp_rank = 0;
  int ep = 1, ep_rank = 0, etp = 1, etp_rank = 0, edp = 1, edp_rank = 0;
};

struct ParamSpec {
  std::string name;            // SPEC section 5 path without the leading '/'
  std::vector<int64_t> shape;  // global logical shape
  ParamKind kind = ParamKind::kMatrix;
  double init_std = 0.0;  // kMatrix only
  ParamGroup group = ParamGroup::kDense;
  TpMode tp_mode = TpMode::kReplicated;
  Slab slab;                         // the part this rank holds (Slab::whole when not sharded)
  std::vector<int64_t> local_shape;  // slab.local_shape()
  // The part this rank holds as hyperslabs of the global tensor, in local order: {slab} except
  // for the routed experts under an expert placement (src/placement/placement.h), whose local
  // experts need not be consecutive: one part per run of consecutive logical experts, and `slab`
  // then gives only the local shape. Map local elements to global ones through these.
  std::vector<SlabPart> parts;
  // f(global_flat_index, local_flat_index, length) for every run of the local part (all parts).
  template <class F>
  void for_each_run(F&& f) const {
    for (const SlabPart& p : parts)
      p.slab.for_each_run(shape, [&](int64_t g, int64_t l, int64_t n) {
        f(g, l + static_cast<int64_t>(p.local_offset), n);
      });
  }
  // The one rank, among those holding identical copies of this part, that writes it to a
  // checkpoint (replicas of other data-parallel or tensor-parallel ranks do not).
  bool writer = true;
  // Counted in the global gradient norm by the rank whose reduce-scatter chunk holds it: false
  // only for the copies of a tp-replicated parameter on tp ranks other than 0.
  bool in_norm = true;
  size_t offset = 0;  // of the local part in the flat local buffer (elements)
  size_t numel = 0;   // local elements (slab.numel())
  size_t global_numel() const;
};

class ParamTable {
 public:
  // Appends a whole (unsharded) parameter after the current last one.
  void add(std::string name, std::vector<int64_t> shape, ParamKind kind, double init_std = 0.0);
  // Appends a parameter of which this rank holds `slab`.
  void add(ParamSpec spec);

  // Lays the local buffer out as [dense group | pad | expert group | pad], each group padded to
  // a multiple of its alignment (its data-parallel size), keeping specs() in their order.
  void layout_groups(size_t dense_align, size_t expert_align);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  size_t total_numel() const { return total_; }  // local elements, padding included
  // [first, first + size) of a group in the local buffer, padding included.
  struct Range {
    size_t first = 0, size = 0;
  };
  Range group_range(ParamGroup g) const { return g == ParamGroup::kDense ? dense_ : expert_; }

  // Throws std::out_of_range naming `name` when absent.
  const ParamSpec& at(const std::string& name) const;
  bool contains(const std::string& name) const;

  // The expert placement the routed experts follow (null: contiguous, expert i on EP rank
  // i / (E / ep)).
  const std::shared_ptr<const ExpertPlacement>& placement() const { return placement_; }
  void set_placement(std::shared_ptr<const ExpertPlacement> p) { placement_ = std::move(p); }

 private:
  std::vector<ParamSpec> specs_;
  std::shared_ptr<const ExpertPlacement> placement_;
  size_t total_ = 0;
  Range dense_, expert_;
};

// The SPEC section 5 parameter set of the model described by `cfg`, in a fixed order:
// embed, [head], final_norm, then per layer attn_norm, attn/wqkv, attn/wo, moe_norm, moe/router,
// moe/bias, moe/w1, moe/w3, moe/w2, [moe/shared/w1, w3, w2]; the local parts of the rank at
// `layout` (default: one rank holding everything), groups laid out by layout_groups(dp, edp).
// `placement` (null: contiguous) decides which experts each EP rank holds; its ep must be
// layout.ep.
ParamTable make_param_table(const Config& cfg, const ShardLayout& layout = {},
                            std::shared_ptr<const ExpertPlacement> placement = nullptr);

// Name helpers so no caller formats these strings by hand.
std::string layer_param_name(int64_t layer, const std::string& leaf);  // "model/layers/<l>/<leaf>"

}  // namespace sy

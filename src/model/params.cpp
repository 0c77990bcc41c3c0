#include "src/model/params.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/error.h"
#include "src/placement/placement.h"

namespace sy {

size_t ParamSpec::global_numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

void ParamTable::add(std::string name, std::vector<int64_t> shape, ParamKind kind,
                     double init_std) {
  ParamSpec s;
  s.name = std::move(name);
  s.slab = Slab::whole(shape);
  s.shape = std::move(shape);
  s.kind = kind;
  s.init_std = init_std;
  add(std::move(s));
}

void ParamTable::add(ParamSpec s) {
  SY_CHECK(s.slab.start.size() == s.shape.size(), s.name << ": slab rank differs from the shape");
  s.local_shape = s.slab.local_shape();
  s.numel = static_cast<size_t>(s.slab.numel());
  if (s.parts.empty()) s.parts.push_back({s.slab, 0});
  s.offset = total_;
  total_ += s.numel;
  (s.group == ParamGroup::kDense ? dense_ : expert_).size += s.numel;
  specs_.push_back(std::move(s));
}

void ParamTable::layout_groups(size_t dense_align, size_t expert_align) {
  SY_CHECK(dense_align > 0 && expert_align > 0, "alignments must be positive");
  size_t at = 0;
  auto place = [&](ParamGroup g, size_t align) {
    Range r;
    r.first = at;
    for (ParamSpec& s : specs_)
      if (s.group == g) {
        s.offset = at;
        at += s.numel;
      }
    // The group's own size padded: the expert group starts where the dense one ends, which need
    // not be a multiple of its alignment (dp < edp under tp > 1).
    r.size = (at - r.first + align - 1) / align * align;
    at = r.first + r.size;
    return r;
  };
  dense_ = place(ParamGroup::kDense, dense_align);
  expert_ = place(ParamGroup::kExpert, expert_align);
  total_ = at;
}

const ParamSpec& ParamTable::at(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return s;
  throw std::out_of_range("no parameter named '" + name + "'");
}

bool ParamTable::contains(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return true;
  return false;
}

std::string layer_param_name(int64_t layer, const std::string& leaf) {
  return "model/layers/" + std::to_string(layer) + "/" + leaf;
}

namespace {

// The routed-expert slab `s` (dimension 0 = experts) of a rank holding `experts` (ascending) in
// place of s's consecutive block: one part per run of consecutive experts.
std::vector<SlabPart> expert_parts(const Slab& s, const std::vector<int32_t>& experts) {
  const int64_t per_expert = s.numel() / static_cast<int64_t>(experts.size());
  std::vector<SlabPart> parts;
  for (size_t j = 0; j < experts.size();) {
    size_t n = 1;
    while (j + n < experts.size() && experts[j + n] == experts[j] + static_cast<int32_t>(n)) ++n;
    Slab run = s;
    run.start[0] = experts[j];
    run.block[0] = static_cast<int64_t>(n);
    run.stride[0] = static_cast<int64_t>(n);  // count[0] is 1
    parts.push_back({std::move(run), static_cast<size_t>(static_cast<int64_t>(j) * per_expert)});
    j += n;
  }
  return parts;
}

}  // namespace

ParamTable make_param_table(const Config& cfg, const ShardLayout& lay,
                            std::shared_ptr<const ExpertPlacement> placement) {
  const auto& m = cfg.model;
  const auto& moe = cfg.moe;
  const int64_t V = m.vocab_size, C = m.d_model, E = moe.num_experts, F = moe.ffn_hidden,
                S = moe.shared_experts;
  SY_CHECK(C % lay.tp == 0 && E % lay.ep == 0 && F % lay.etp == 0 && (S == 0 || F % lay.tp == 0),
           "layout does not divide the model (validate the layout first)");
  const int64_t Ct = C / lay.tp, Ft = F / lay.tp;   // tensor-parallel shares
  const int64_t Le = E / lay.ep, Fe = F / lay.etp;  // local experts, expert hidden share
  const int64_t tp_r = lay.tp_rank, ep_r = lay.ep_rank, etp_r = lay.etp_rank;
  // SPEC 2: Normal(0, 0.02) for matrices, output projections (wo, w2) scaled by 1/sqrt(2L).
  const double std = 0.02;
  const double out_std = std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  const bool world_rank0 = lay.dp_rank == 0 && lay.tp_rank == 0;

  SY_CHECK(!placement || (placement->ep() == lay.ep && placement->num_experts() == E &&
                          placement->num_layers() == m.n_layers),
           "the expert placement does not fit the model and layout");
  if (placement && placement->is_contiguous()) placement = nullptr;  // the default layout

  ParamTable t;
  t.set_placement(placement);
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamKind kind, double init_std,
                 ParamGroup group, TpMode mode, Slab slab,
                 const std::vector<int32_t>* experts = nullptr) {
    ParamSpec s;
    s.name = std::move(name);
    s.shape = std::move(shape);
    s.kind = kind;
    s.init_std = init_std;
    s.group = group;
    s.tp_mode = mode;
    s.slab = std::move(slab);
    if (experts) s.parts = expert_parts(s.slab, *experts);
    if (group == ParamGroup::kExpert) {
      s.writer = lay.edp_rank == 0;
      s.in_norm = true;
    } else if (mode == TpMode::kSharded) {
      s.writer = lay.dp_rank == 0;
      s.in_norm = true;
    } else {
      s.writer = world_rank0;
      s.in_norm = lay.tp_rank == 0;
    }
    t.add(std::move(s));
  };
  auto replicated = [&](std::string name, std::vector<int64_t> shape, ParamKind kind,
                        double init_std = 0.0, TpMode mode = TpMode::kReplicated) {
    Slab slab = Slab::whole(shape);
    add(std::move(name), std::move(shape), kind, init_std, ParamGroup::kDense, mode,
        std::move(slab));
  };
  // HDF5 wants stride >= block; for a dimension with one block the stride is irrelevant.
  auto slab = [](std::vector<int64_t> start, std::vector<int64_t> stride,
                 std::vector<int64_t> count, std::vector<int64_t> block) {
    for (size_t d = 0; d < stride.size(); ++d)
      if (count[d] == 1) stride[d] = std::max<int64_t>(block[d], 1);
    return Slab{std::move(start), std::move(stride), std::move(count), std::move(block)};
  };

  replicated("model/embed", {V, C}, ParamKind::kMatrix, std);
  if (!m.tie_embeddings) replicated("model/head", {V, C}, ParamKind::kMatrix, std);
  replicated("model/final_norm", {C}, ParamKind::kGain);
  for (int64_t l = 0; l < m.n_layers; ++l) {
    auto n = [l](const char* leaf) { return layer_param_name(l, leaf); };
    replicated(n("attn_norm"), {C}, ParamKind::kGain);
    // Heads h of tp rank r: output columns r*Ct .. of each of the q, k and v blocks.
    add(n("attn/wqkv"), {C, 3 * C}, ParamKind::kMatrix, std, ParamGroup::kDense, TpMode::kSharded,
        slab({0, tp_r * Ct}, {1, C}, {1, 3}, {C, Ct}));
    add(n("attn/wo"), {C, C}, ParamKind::kMatrix, out_std, ParamGroup::kDense, TpMode::kSharded,
        slab({tp_r * Ct, 0}, {Ct, 1}, {1, 1}, {Ct, C}));
    replicated(n("moe_norm"), {C}, ParamKind::kGain);
    replicated(n("moe/router"), {C, E}, ParamKind::kMatrix, std, TpMode::kPartialGrad);
    replicated(n("moe/bias"), {E}, ParamKind::kBias);
    // Under a placement the local experts are the placement's, not ep_r * Le ..
    const std::vector<int32_t>* experts =
        placement ? &placement->experts_on(static_cast<int>(l), static_cast<int>(ep_r)) : nullptr;
    add(n("moe/w1"), {E, C, F}, ParamKind::kMatrix, std, ParamGroup::kExpert, TpMode::kSharded,
        slab({ep_r * Le, 0, etp_r * Fe}, {Le, 1, Fe}, {1, 1, 1}, {Le, C, Fe}), experts);
    add(n("moe/w3"), {E, C, F}, ParamKind::kMatrix, std, ParamGroup::kExpert, TpMode::kSharded,
        slab({ep_r * Le, 0, etp_r * Fe}, {Le, 1, Fe}, {1, 1, 1}, {Le, C, Fe}), experts);
    add(n("moe/w2"), {E, F, C}, ParamKind::kMatrix, out_std, ParamGroup::kExpert, TpMode::kSharded,
        slab({ep_r * Le, etp_r * Fe, 0}, {Le, Fe, 1}, {1, 1, 1}, {Le, Fe, C}), experts);
    if (S > 0) {
      add(n("moe/shared/w1"), {S, C, F}, ParamKind::kMatrix, std, ParamGroup::kDense,
          TpMode::kSharded, slab({0, 0, tp_r * Ft}, {S, 1, Ft}, {1, 1, 1}, {S, C, Ft}));
      add(n("moe/shared/w3"), {S, C, F}, ParamKind::kMatrix, std, ParamGroup::kDense,
          TpMode::kSharded, slab({0, 0, tp_r * Ft}, {S, 1, Ft}, {1, 1, 1}, {S, C, Ft}));
      add(n("moe/shared/w2"), {S, F, C}, ParamKind::kMatrix, out_std, ParamGroup::kDense,
          TpMode::kSharded, slab({0, tp_r * Ft, 0}, {S, Ft, 1}, {1, 1, 1}, {S, Ft, C}));
    }
  }
  t.layout_groups(static_cast<size_t>(lay.dp), static_cast<size_t>(lay.edp));
  return t;
}

}  // namespace sy

#include "src/model/params.h"

#include <cmath>
#include <stdexcept>

namespace sy {

void ParamTable::add(std::string name, std::vector<int64_t> shape, ParamKind kind,
                     double init_std) {
  ParamSpec s;
  s.name = std::move(name);
  s.shape = std::move(shape);
  s.kind = kind;
  s.init_std = init_std;
  s.offset = total_;
  s.numel = 1;
  for (int64_t d : s.shape) s.numel *= static_cast<size_t>(d);
  total_ += s.numel;
  specs_.push_back(std::move(s));
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

ParamTable make_param_table(const Config& cfg) {
  const auto& m = cfg.model;
  const auto& moe = cfg.moe;
  const int64_t V = m.vocab_size, C = m.d_model, E = moe.num_experts, F = moe.ffn_hidden,
                S = moe.shared_experts;
  // SPEC 2: Normal(0, 0.02) for matrices, output projections (wo, w2) scaled by 1/sqrt(2L).
  const double std = 0.02;
  const double out_std = std / std::sqrt(2.0 * static_cast<double>(m.n_layers));

  ParamTable t;
  t.add("model/embed", {V, C}, ParamKind::kMatrix, std);
  if (!m.tie_embeddings) t.add("model/head", {V, C}, ParamKind::kMatrix, std);
  t.add("model/final_norm", {C}, ParamKind::kGain);
  for (int64_t l = 0; l < m.n_layers; ++l) {
    auto n = [l](const char* leaf) { return layer_param_name(l, leaf); };
    t.add(n("attn_norm"), {C}, ParamKind::kGain);
    t.add(n("attn/wqkv"), {C, 3 * C}, ParamKind::kMatrix, std);
    t.add(n("attn/wo"), {C, C}, ParamKind::kMatrix, out_std);
    t.add(n("moe_norm"), {C}, ParamKind::kGain);
    t.add(n("moe/router"), {C, E}, ParamKind::kMatrix, std);
    t.add(n("moe/bias"), {E}, ParamKind::kBias);
    t.add(n("moe/w1"), {E, C, F}, ParamKind::kMatrix, std);
    t.add(n("moe/w3"), {E, C, F}, ParamKind::kMatrix, std);
    t.add(n("moe/w2"), {E, F, C}, ParamKind::kMatrix, out_std);
    if (S > 0) {
      t.add(n("moe/shared/w1"), {S, C, F}, ParamKind::kMatrix, std);
      t.add(n("moe/shared/w3"), {S, C, F}, ParamKind::kMatrix, std);
      t.add(n("moe/shared/w2"), {S, F, C}, ParamKind::kMatrix, out_std);
    }
  }
  return t;
}

}  // namespace sy

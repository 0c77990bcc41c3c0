// The models the decoder tests run (tests/sample on the CPU, tests/gpu/sample on the GPU): a tiny
// config, weights spread so that logits and router scores have no near-ties between two
// implementations' rounding, and the model variants every decoder must handle.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/model/init.h"
#include "src/model/params.h"
#include "src/sample/decoder.h"
#include "src/sample/sampler.h"

namespace sy::test {

// The greedy token of a logit row (the first of equal maxima).
inline int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// seq_len 16: the decoders' window, so 40 generated tokens run well past it.
inline Config tiny_decoder_config(const std::vector<std::string>& overrides = {}) {
  std::vector<std::string> o = {"model.vocab_size=96", "model.d_model=32",  "model.n_layers=2",
                                "model.n_heads=4",     "model.seq_len=16",  "moe.num_experts=4",
                                "moe.top_k=2",         "moe.ffn_hidden=24", "data.path=x.h5"};
  o.insert(o.end(), overrides.begin(), overrides.end());
  return parse_config("run: {name: t}\n", o);
}

// Initialised weights, matrices scaled up (well-spread logits and router scores), and a non-zero
// router bias when asked.
inline std::vector<float> decoder_weights(const Config& cfg, bool bias) {
  const ParamTable table = make_param_table(cfg);
  std::vector<float> p(table.total_numel());
  init_params(p.data(), table, 77);
  for (const ParamSpec& s : table.specs())
    if (s.kind == ParamKind::kMatrix)
      for (size_t i = 0; i < s.numel; ++i) p[s.offset + i] *= 6.0f;
  if (bias)
    for (int64_t l = 0; l < cfg.model.n_layers; ++l) {
      const ParamSpec& s = table.at(layer_param_name(l, "moe/bias"));
      for (size_t i = 0; i < s.numel; ++i)
        p[s.offset + i] = 0.15f * static_cast<float>(i % 3) - 0.1f;
    }
  return p;
}

// The GPU decoder test's greedy run (tests/gpu/sample/test_cuda_decoder.cpp): a prefill of this
// prompt, then kGreedySteps tokens, each the argmax of the last logits, compared exactly with the
// GPU's (tests/margins/test_gpu_margins.cpp checks that no step's best two logits are near-ties).
inline std::vector<int32_t> greedy_prompt() {
  return {5, 17, 42};
}
inline constexpr int kGreedySteps = 40;

struct DecoderVariant {
  const char* name;
  std::vector<std::string> overrides;
  bool bias;
};

inline void PrintTo(const DecoderVariant& v, std::ostream* os) {
  *os << v.name;
}

// Routed experts only; shared experts with an untied head; gates not renormalised over the top-k;
// a router bias in the selection; sigmoid scores with a gate scale and group-limited selection
// (6 experts in 3 groups, the top-k from one) under a bias.
inline std::vector<DecoderVariant> decoder_variants() {
  return {
      {"routed", {}, false},
      {"shared_untied", {"moe.shared_experts=2", "model.tie_embeddings=false"}, false},
      {"no_norm_topk", {"moe.norm_topk=false", "moe.top_k=3"}, false},
      {"router_bias", {}, true},
      {"sigmoid_groups",
       {"moe.num_experts=6", "moe.score=sigmoid", "moe.gate_scale=2.5", "moe.route_groups=3",
        "moe.route_groups_topk=1"},
       true},
  };
}

// generate()'s ids, collected through its on_token (its result keeps their count only), which
// must agree with the count.
inline std::vector<int32_t> generated_ids(
    TokenDecoder& dec, std::span<const int32_t> prompt, const SampleOptions& o,
    const PickableIds& pickable, const std::function<void(int64_t, int64_t)>& on_prompt = {}) {
  std::vector<int32_t> ids;
  const GenerateResult r = generate(
      dec, prompt, o, pickable, [&](int32_t id) { ids.push_back(id); }, on_prompt);
  if (r.tokens != static_cast<int64_t>(ids.size()))
    throw std::logic_error("generate() counted " + std::to_string(r.tokens) + " tokens, gave " +
                           std::to_string(ids.size()));
  return ids;
}

}  // namespace sy::test

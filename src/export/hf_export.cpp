#include "src/export/hf_export.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "src/ckpt/checkpoint.h"
#include "src/ckpt/safetensors.h"
#include "src/config/config.h"
#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/data/tokenizer.h"

namespace sy {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// The checkpoint's /model tensors by SPEC name.
class Source {
 public:
  Source(const ckpt::CheckpointModel& model, std::string file)
      : model_(model), file_(std::move(file)) {}
  const ckpt::WholeTensor& at(const std::string& name) const {
    const ckpt::WholeTensor* t = model_.find(name);
    if (!t)
      throw ckpt::CheckpointError(file_, "/" + name,
                                  "dataset missing (the stored config needs it)");
    return *t;
  }

 private:
  const ckpt::CheckpointModel& model_;
  std::string file_;
};

// out[nc, nr] = scale * m[r0 .. r0+nr, c0 .. c0+nc]^T of a row-major matrix with `cols` columns:
// a block of a SPEC [in, out] matrix as a PyTorch [out, in] weight.
std::vector<float> transposed(const float* m, int64_t cols, int64_t r0, int64_t nr, int64_t c0,
                              int64_t nc, float scale = 1.0f) {
  std::vector<float> out(static_cast<size_t>(nr * nc));
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t c = 0; c < nc; ++c)
      out[static_cast<size_t>(c * nr + r)] = scale * m[(r0 + r) * cols + c0 + c];
  return out;
}

bool power_of_two(double g) {
  int e = 0;
  return g > 0 && std::frexp(g, &e) == 0.5;
}

// The files an export writes (config.json and model.safetensors always, the tokenizer's for a
// SentencePiece one). An export replaces all of them in its directory: those it does not write
// are an earlier export's and are removed, since transformers would load them with this one (a
// BPE tokenizer.model next to a byte-level model gives ids above its vocab).
const char* const kExportSet[] = {"config.json", "model.safetensors", "tokenizer.model",
                                  "tokenizer_config.json"};
// Files that are not switchyard's but that transformers reads with or instead of the export's (a
// tokenizer.json wins over tokenizer.model; an index or pytorch_model.bin names other weights):
// never removed; a directory holding one is refused.
const char* const kConflicting[] = {"tokenizer.json",
                                    "special_tokens_map.json",
                                    "added_tokens.json",
                                    "generation_config.json",
                                    "model.safetensors.index.json",
                                    "pytorch_model.bin",
                                    "pytorch_model.bin.index.json"};

// Refuses, before any work, an --output the export could not leave holding exactly its files.
void check_output_dir(const std::string& dir) {
  const std::string where = "--output '" + dir + "'";
  // The files go in `dir` itself (made with its parents where missing).
  if (const std::string problem = files::unwritable_output_dir((fs::path(dir) / "x").string());
      !problem.empty())
    throw UsageError(where + ": " + problem);
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  if (!fs::is_directory(dir, ec)) throw UsageError(where + " exists and is not a directory");
  for (const char* name : kExportSet) {
    const fs::path p = fs::path(dir) / name;
    if (fs::exists(p, ec) && !fs::is_regular_file(p, ec))
      throw UsageError(where + ": '" + p.string() +
                       "' is in the way (not a regular file); the export writes a file there");
    // An earlier export's file this one replaces or removes (immutable, another user's in a
    // sticky directory): said now, not after the work.
    if (const std::string why = files::unreplaceable_output(p.string()); !why.empty())
      throw UsageError(where + ": " + why);
  }
  std::string found;
  for (const char* name : kConflicting)
    if (fs::exists(fs::path(dir) / name, ec))
      found += std::string(found.empty() ? "" : ", ") + name;
  if (!found.empty())
    throw UsageError(where + " holds " + found +
                     ", which transformers would load together with or instead of the export's "
                     "files and which switchyard does not write: remove them, or export to "
                     "another directory");
}

struct Plan {
  bool mixtral = true;
  float routed_scale = 1.0f;          // gate_scale folded into the routed down_proj
  std::vector<std::string> problems;  // not representable exactly
};

// What the checkpoint needs that the architectures cannot say, and the architecture.
Plan plan_export(const Config& cfg, const Source& src, const std::string& file) {
  const MoeConfig& moe = cfg.moe;
  if (moe.score == Score::kSigmoid)
    throw UsageError(
        "checkpoint '" + file +
        "': moe.score: sigmoid cannot be exported: no transformers architecture with standard "
        "attention scores experts by sigmoid (DeepSeek-V3's does, with MLA attention), and a "
        "softmax router would be another model");
  Plan p;
  p.mixtral = moe.shared_experts == 0 && moe.norm_topk;
  // The router bias: the largest |b| over every layer, and how many layers have one (it said
  // the first layer's alone, which need not be the largest).
  float max_abs = 0.0f;
  int64_t biased = 0, worst = -1;
  for (int64_t l = 0; l < cfg.model.n_layers; ++l) {
    float layer_max = 0.0f;
    for (float v : src.at(layer_param_name(l, "moe/bias")).data)
      layer_max = std::max(layer_max, std::fabs(v));
    if (layer_max > 0.0f) ++biased;
    if (layer_max > max_abs) {
      max_abs = layer_max;
      worst = l;
    }
  }
  if (biased > 0) {
    std::ostringstream os;
    os << "a non-zero router bias in " << biased << " of " << cfg.model.n_layers
       << " layers (max |b| " << max_abs << " at /" << layer_param_name(worst, "moe/bias")
       << ", from moe.bias_update_rate): it enters the expert selection, which no "
          "architecture has; the export selects the top-k of p without it";
    p.problems.push_back(os.str());
  }
  // A capacity of at least every token (c k >= E: moe_capacity gives the tokens) drops nothing.
  if (moe.capacity_factor &&
      *moe.capacity_factor * static_cast<double>(moe.top_k) < static_cast<double>(moe.num_experts))
    p.problems.push_back("capacity dropping (moe.capacity_factor " +
                         number_text(*moe.capacity_factor) +
                         "): the architectures are dropless, so tokens the training dropped "
                         "reach their experts (as in `switchyard sample`, also dropless)");
  // Groups select nothing when every group is kept (M = R) or each holds one expert (R = E, and
  // M >= k): the top-k over all experts is then the model's own (SPEC 1). `nodes` resolved to a
  // count that only the run's layout knew.
  const int64_t R = moe.route_groups.count, M = moe.route_groups_topk;
  const bool groups_select = moe.route_groups.nodes || (R > 1 && M < R && R < moe.num_experts);
  if (groups_select)
    p.problems.push_back(
        "group-limited routing (moe.route_groups): the export selects the top-k over all "
        "experts");
  p.routed_scale = static_cast<float>(moe.gate_scale);
  if (!power_of_two(moe.gate_scale))
    p.problems.push_back("moe.gate_scale " + number_text(moe.gate_scale) +
                         " (not a power of two): folded into the routed experts' down_proj, each "
                         "weight rounded to float32 once");
  return p;
}

Json config_json(const Config& cfg, const Plan& p, const Tokenizer& tok) {
  const ModelConfig& m = cfg.model;
  const MoeConfig& moe = cfg.moe;
  const bool spm = tok.name() == kTokenizerSentencePiece;
  Json j;
  j["architectures"] = {p.mixtral ? "MixtralForCausalLM" : "Qwen2MoeForCausalLM"};
  j["model_type"] = p.mixtral ? "mixtral" : "qwen2_moe";
  j["vocab_size"] = m.vocab_size;
  j["hidden_size"] = m.d_model;
  j["num_hidden_layers"] = m.n_layers;
  j["num_attention_heads"] = m.n_heads;
  j["num_key_value_heads"] = m.n_heads;
  if (p.mixtral) j["head_dim"] = m.d_model / m.n_heads;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = m.seq_len;
  // `switchyard sample` past seq_len tokens attends over the last seq_len positions in every layer
  // (src/sample/decoder.h); a sliding window of seq_len keys (the query's own included) is that
  // mask, so generate() continues as sample does. Up to seq_len tokens it is the causal mask.
  j["rms_norm_eps"] = m.norm_eps;
  // rope_theta for transformers 4.x, rope_parameters for 5.x.
  j["rope_theta"] = m.rope_theta;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", m.rope_theta}};
  j["tie_word_embeddings"] = m.tie_embeddings;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["num_experts_per_tok"] = moe.top_k;
  if (p.mixtral) {
    j["intermediate_size"] = moe.ffn_hidden;
    j["num_local_experts"] = moe.num_experts;
    j["sliding_window"] = m.seq_len;
    j["router_jitter_noise"] = 0.0;
  } else {
    j["intermediate_size"] = moe.ffn_hidden;  // dense layers' MLP: there are none
    j["moe_intermediate_size"] = moe.ffn_hidden;
    j["shared_expert_intermediate_size"] = moe.shared_experts * moe.ffn_hidden;
    j["num_experts"] = moe.num_experts;
    j["norm_topk_prob"] = moe.norm_topk;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = Json::array();
    j["qkv_bias"] = true;  // zeros: what transformers 4.x, which always has them, expects
    // Every layer slides (transformers 4.x: layers >= max_window_layers; 5.x: layer_types).
    j["use_sliding_window"] = true;
    j["sliding_window"] = m.seq_len;
    j["max_window_layers"] = 0;
    j["layer_types"] =
        std::vector<std::string>(static_cast<size_t>(m.n_layers), "sliding_attention");
  }
  j["output_router_logits"] = false;
  j["router_aux_loss_coef"] = moe.aux_loss_coeff;
  // The model's own ids (switchyard's: SentencePiece's default bos 1, eos 2; a user's model may
  // have others or none: byte pieces 1 and 2 named as bos/eos stopped generate() at byte 0x01).
  const Tokenizer::SpecialPieces special = tok.special_pieces();
  const auto id_or_null = [](const Tokenizer::SpecialPiece& piece) {
    return piece.id >= 0 ? Json(piece.id) : Json(nullptr);
  };
  j["bos_token_id"] = spm ? id_or_null(special.bos) : Json(nullptr);
  j["eos_token_id"] = spm ? id_or_null(special.eos) : Json(nullptr);
  j["pad_token_id"] = nullptr;
  j["torch_dtype"] = "float32";
  j["dtype"] = "float32";
  return j;
}

std::vector<ckpt::WholeTensor> hf_tensors(const Config& cfg, const Plan& p, const Source& src) {
  const int64_t C = cfg.model.d_model, E = cfg.moe.num_experts, F = cfg.moe.ffn_hidden,
                S = cfg.moe.shared_experts;
  std::vector<ckpt::WholeTensor> out;
  auto add = [&](std::string name, std::vector<int64_t> shape, std::vector<float> data) {
    out.push_back({std::move(name), std::move(shape), std::move(data)});
  };
  add("model.embed_tokens.weight", src.at("model/embed").shape, src.at("model/embed").data);
  for (int64_t l = 0; l < cfg.model.n_layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    auto w = [&](const char* leaf) { return src.at(layer_param_name(l, leaf)).data.data(); };
    add(pre + "input_layernorm.weight", {C}, src.at(layer_param_name(l, "attn_norm")).data);
    const char* qkv[] = {"q_proj", "k_proj", "v_proj"};
    for (int64_t i = 0; i < 3; ++i)
      add(pre + "self_attn." + qkv[i] + ".weight", {C, C},
          transposed(w("attn/wqkv"), 3 * C, 0, C, i * C, C));
    if (!p.mixtral)
      for (const char* name : qkv)
        add(pre + "self_attn." + name + ".bias", {C}, std::vector<float>(static_cast<size_t>(C)));
    add(pre + "self_attn.o_proj.weight", {C, C}, transposed(w("attn/wo"), C, 0, C, 0, C));
    add(pre + "post_attention_layernorm.weight", {C}, src.at(layer_param_name(l, "moe_norm")).data);

    const std::string moe = pre + (p.mixtral ? "block_sparse_moe." : "mlp.");
    add(moe + "gate.weight", {E, C}, transposed(w("moe/router"), E, 0, C, 0, E));
    const char* names[3] = {"w1", "w3", "w2"};
    if (!p.mixtral) {
      names[0] = "gate_proj";
      names[1] = "up_proj";
      names[2] = "down_proj";
    }
    for (int64_t e = 0; e < E; ++e) {
      const std::string ex = moe + "experts." + std::to_string(e) + ".";
      add(ex + names[0] + ".weight", {F, C}, transposed(w("moe/w1") + e * C * F, F, 0, C, 0, F));
      add(ex + names[1] + ".weight", {F, C}, transposed(w("moe/w3") + e * C * F, F, 0, C, 0, F));
      add(ex + names[2] + ".weight", {C, F},
          transposed(w("moe/w2") + e * F * C, C, 0, F, 0, C, p.routed_scale));
    }
    if (p.mixtral) continue;
    // The S shared experts as one SwiGLU of hidden S*F, its down_proj doubled against the
    // sigmoid(0) = 0.5 gate.
    std::vector<float> gate(static_cast<size_t>(S * F * C)), up(gate.size()), down(gate.size());
    for (int64_t s = 0; s < S; ++s) {
      const auto g = transposed(w("moe/shared/w1") + s * C * F, F, 0, C, 0, F);
      const auto u = transposed(w("moe/shared/w3") + s * C * F, F, 0, C, 0, F);
      std::copy(g.begin(), g.end(), gate.begin() + s * F * C);
      std::copy(u.begin(), u.end(), up.begin() + s * F * C);
      const auto d = transposed(w("moe/shared/w2") + s * F * C, C, 0, F, 0, C, 2.0f);  // [C, F]
      for (int64_t c = 0; c < C; ++c)
        std::copy(d.begin() + c * F, d.begin() + (c + 1) * F, down.begin() + c * S * F + s * F);
    }
    add(moe + "shared_expert.gate_proj.weight", {S * F, C}, std::move(gate));
    add(moe + "shared_expert.up_proj.weight", {S * F, C}, std::move(up));
    add(moe + "shared_expert.down_proj.weight", {C, S * F}, std::move(down));
    add(moe + "shared_expert_gate.weight", {1, C}, std::vector<float>(static_cast<size_t>(C)));
  }
  add("model.norm.weight", {C}, src.at("model/final_norm").data);
  if (!cfg.model.tie_embeddings)
    add("lm_head.weight", src.at("model/head").shape, src.at("model/head").data);
  return out;
}

}  // namespace

HfExportReport export_hf(MPI_Comm comm, const std::string& checkpoint, const HfExportOptions& opt) {
  if (opt.output_dir.empty()) throw UsageError("ckpt export --format hf: no --output directory");
  check_output_dir(opt.output_dir);
  const ckpt::CheckpointModel model = ckpt::read_checkpoint_model(comm, checkpoint, opt.progress);
  const std::string source = "checkpoint '" + checkpoint + "'";
  const Config& cfg = model.cfg;
  const Tokenizer& tok = model.tokenizer;
  const Source src(model, checkpoint);
  const Plan plan = plan_export(cfg, src, checkpoint);
  if (!plan.problems.empty() && !opt.allow_approximate) {
    std::string msg = source + " cannot be exported exactly to a transformers architecture:";
    for (const auto& p : plan.problems) msg += "\n  - " + p;
    throw UsageError(msg + "\n(--allow-approximate writes the nearest model anyway)");
  }

  HfExportReport r;
  r.architecture = plan.mixtral ? "MixtralForCausalLM" : "Qwen2MoeForCausalLM";
  r.approximations = plan.problems;
  r.step = model.step;
  r.notes = model.notes;
  // sample picks among the tokenizer's ids only, less the control pieces no text encodes to
  // (<unk>, <s>, </s>; src/sample/sampler.h); generate() among all: the note says how to match.
  std::string control;
  for (int32_t id : tok.never_encoded_ids())
    control += (control.empty() ? "" : ", ") + std::to_string(id);
  const std::string tv = std::to_string(tok.vocab_size()),
                    mv = std::to_string(cfg.model.vocab_size);
  if (tok.vocab_size() < cfg.model.vocab_size)
    r.notes.push_back("model.vocab_size " + mv + " is more than the tokenizer's " + tv +
                      " ids: transformers' generate() can pick ids " + tv + ".." +
                      std::to_string(cfg.model.vocab_size - 1) +
                      ", which have no text (switchyard sample never does); pass it "
                      "suppress_tokens=" +
                      (control.empty() ? "" : "[" + control + "] + ") + "list(range(" + tv + ", " +
                      mv + ")) to sample as switchyard does");
  else if (!control.empty())
    r.notes.push_back("transformers' generate() can pick the tokenizer's control pieces, ids [" +
                      control +
                      "] (no token file holds them; switchyard sample never picks them); pass "
                      "it suppress_tokens=[" +
                      control + "] to sample as switchyard does");
  r.files = {"config.json", "model.safetensors"};
  if (!tok.model().empty()) {
    r.files.push_back("tokenizer.model");
    r.files.push_back("tokenizer_config.json");
  }
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  if (rank != 0) return r;  // rank 0 alone builds the transformers tensors and writes them

  const std::vector<ckpt::WholeTensor> out = hf_tensors(cfg, plan, src);
  r.tensors = static_cast<int64_t>(out.size());

  const auto in_output = [&](const char* name) {
    return (fs::path(opt.output_dir) / name).string();
  };
  try {
    // All files reach their names together once all are written, or none does (a full disk, a
    // file in the way): the staged .tmp files and the directories made for them are removed.
    files::StagedFiles staged(files::StagedFiles::kCreateParents);
    ckpt::stage_safetensors(
        staged, in_output("model.safetensors"), out,
        {{"format", "pt"}, {"source", checkpoint}, {"step", std::to_string(model.step)}});
    staged.stage_text(in_output("config.json"), config_json(cfg, plan, tok).dump(2) + "\n");
    if (!tok.model().empty()) {
      staged.stage_text(in_output("tokenizer.model"), tok.model());
      Json t;
      // Which class AutoTokenizer builds from tokenizer.model decides the ids. transformers 5's
      // LlamaTokenizer is BPE whatever the model's type: a unigram model's text came out as
      // other ids (+47..92 % loss), and a user model's leading spaces were merged. It keeps that
      // class for a Mixtral config only; for Qwen2-MoE it builds what tokenizer_class names.
      // PreTrainedTokenizerFast makes 5 convert the model by its own type (as it does for
      // Mixtral); transformers 4, which converts LlamaTokenizer by type, cannot load that class
      // without a tokenizer.json (LlamaTokenizerFast.from_pretrained(dir) does). README.
      t["tokenizer_class"] = plan.mixtral ? "LlamaTokenizer" : "PreTrainedTokenizerFast";
      t["add_bos_token"] = false;
      t["add_eos_token"] = false;
      // A user's model (`data prepare --tokenizer-model`) may put a "▁" in front of a text.
      t["add_prefix_space"] = tok.adds_dummy_prefix();
      t["legacy"] = true;
      // The model's own pieces; one it lacks is left out (named "<s>", transformers added it as
      // an id past vocab_size, and a text holding "</s>" crashed the model's embedding).
      const Tokenizer::SpecialPieces special = tok.special_pieces();
      for (const auto& [key, p] :
           {std::pair{"bos_token", special.bos}, std::pair{"eos_token", special.eos},
            std::pair{"unk_token", special.unk}})
        if (p.id >= 0) t[key] = p.piece;
      t["clean_up_tokenization_spaces"] = false;
      // No model_max_length: the model reads any length (RoPE, the sliding window), and seq_len
      // there made the tokenizer warn of "indexing errors" past it and truncation=True cut there.
      staged.stage_text(in_output("tokenizer_config.json"), t.dump(2) + "\n");
    }
    staged.commit();
    // Only now, with this export in place: an earlier export's files this one does not write.
    for (const char* name : kExportSet) {
      if (std::find(r.files.begin(), r.files.end(), name) != r.files.end()) continue;
      std::error_code ec;
      if (fs::remove(in_output(name), ec)) r.removed.push_back(name);
      if (ec)
        throw std::runtime_error("remove of the earlier export's '" + in_output(name) +
                                 "' failed: " + ec.message());
    }
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    files::throw_output_error("--output '" + opt.output_dir + "'", e.what());
  }
  return r;
}

}  // namespace sy

// A training run's checkpoint exported, as a user meets it: `ckpt export --format hf`
// (config.json and the tensor table against tables written here, the tensor values against the
// checkpoint's SPEC tensors; what no architecture represents refused by name), and what a failed
// export (nothing) or a repeated one (exactly its files) leaves behind.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <hdf5.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_runs.h"
#include "common/run_command.h"
#include "common/temp_dir.h"
#include "src/core/h5.h"

namespace {

namespace fs = std::filesystem;
using sy::test::run_command;
using namespace sy::test::cli;  // kBin, the texts, their token file, a run, its checkpoint

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// A safetensors file read by the format's definition: its JSON header, and every tensor's float32
// values by name (data_offsets count from the end of the header).
struct Safetensors {
  nlohmann::json header;
  std::map<std::string, std::vector<float>> values;
};
Safetensors read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  uint64_t n = 0;
  if (bytes.size() >= 8) std::memcpy(&n, bytes.data(), 8);
  Safetensors st;
  st.header = nlohmann::json::parse(bytes.substr(8, n));
  for (const auto& [name, v] : st.header.items()) {
    if (name == "__metadata__") continue;
    const auto off = v["data_offsets"].get<std::vector<uint64_t>>();
    std::vector<float> f((off[1] - off[0]) / sizeof(float));
    std::memcpy(f.data(), bytes.data() + 8 + n + off[0], f.size() * sizeof(float));
    st.values[name] = std::move(f);
  }
  return st;
}

// name -> shape of every tensor in a safetensors file (its JSON header), and the metadata.
std::map<std::string, std::vector<int64_t>> safetensors_table(const std::string& path,
                                                              nlohmann::json* meta) {
  const auto j = read_safetensors(path).header;
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      *meta = v;
      continue;
    }
    EXPECT_EQ(v["dtype"], "F32") << name;
    out[name] = v["shape"].get<std::vector<int64_t>>();
  }
  return out;
}

using TensorTable = std::map<std::string, std::vector<int64_t>>;

// The values of an HF export of tiny.yaml (d 32, L 2, E 4, F 64, S shared experts) against the
// checkpoint's SPEC tensors (`ckpt export` to safetensors), mapped here by hand: `y = x W` with W
// [in, out] is torch's weight [out, in] = W^T; q/k/v are wqkv's three column blocks; gate_proj is
// W1 and up_proj W3 (down(silu(gate x) * up x)); routed down_proj carries moe.gate_scale; the S
// shared experts are one SwiGLU of hidden S*F (expert s owns hidden rows s*F..), its down_proj
// doubled against Qwen2-MoE's shared_expert_gate of sigmoid(0) = 1/2.
void expect_hf_values(const std::string& ckpt, const std::string& hf, const std::string& moe, int S,
                      float gate_scale) {
  const std::string spec_file = hf + ".spec.safetensors";
  const auto r = run_command(kBin + " ckpt export " + ckpt + " --output " + spec_file);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto spec = read_safetensors(spec_file).values;
  const auto got = read_safetensors(hf + "/model.safetensors").values;
  const int C = 32, E = 4, F = 64;
  // got[name][row * cols + col] == scale * spec[from][at(row, col)] for every element.
  auto expect = [&](const std::string& name, int rows, int cols, const std::string& from, auto at,
                    float scale) {
    ASSERT_TRUE(got.count(name) && spec.count(from)) << name << " / " << from;
    const std::vector<float>& g = got.at(name);
    const std::vector<float>& w = spec.at(from);
    ASSERT_EQ(g.size(), static_cast<size_t>(rows) * cols) << name;
    int bad = 0;
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j)
        if (g[static_cast<size_t>(i) * cols + j] != scale * w[at(i, j)] && bad++ == 0)
          ADD_FAILURE() << name << "[" << i << "][" << j << "] is not " << scale << " x " << from;
    EXPECT_EQ(bad, 0) << name;
  };
  const auto at2 = [](int ld) {
    return [ld](int i, int j) { return static_cast<size_t>(i) * ld + j; };
  };
  const auto transposed = [](int ld, int col0) {
    return [ld, col0](int i, int j) { return static_cast<size_t>(j) * ld + col0 + i; };
  };
  const int V = spec.count("model/embed") ? static_cast<int>(spec.at("model/embed").size() / C) : 0;
  expect("model.embed_tokens.weight", V, C, "model/embed", at2(C), 1.0f);
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string w = "model/layers/" + std::to_string(l) + "/";
    expect(p + "input_layernorm.weight", 1, C, w + "attn_norm", at2(C), 1.0f);
    expect(p + "post_attention_layernorm.weight", 1, C, w + "moe_norm", at2(C), 1.0f);
    const char* qkv[] = {"q_proj", "k_proj", "v_proj"};
    for (int b = 0; b < 3; ++b)
      expect(p + "self_attn." + qkv[b] + ".weight", C, C, w + "attn/wqkv", transposed(3 * C, b * C),
             1.0f);
    expect(p + "self_attn.o_proj.weight", C, C, w + "attn/wo", transposed(C, 0), 1.0f);
    expect(p + moe + "gate.weight", E, C, w + "moe/router", transposed(E, 0), 1.0f);
    const bool mixtral = moe == "block_sparse_moe.";
    for (int e = 0; e < E; ++e) {
      const std::string x = p + moe + "experts." + std::to_string(e) + ".";
      const auto in_expert = [&](auto f, size_t size) {
        return [f, e, size](int i, int j) { return e * size + f(i, j); };
      };
      const size_t CF = static_cast<size_t>(C) * F;
      expect(x + (mixtral ? "w1" : "gate_proj") + ".weight", F, C, w + "moe/w1",
             in_expert(transposed(F, 0), CF), 1.0f);
      expect(x + (mixtral ? "w3" : "up_proj") + ".weight", F, C, w + "moe/w3",
             in_expert(transposed(F, 0), CF), 1.0f);
      expect(x + (mixtral ? "w2" : "down_proj") + ".weight", C, F, w + "moe/w2",
             in_expert(transposed(C, 0), CF), gate_scale);
    }
    if (S == 0) continue;
    const std::string sh = p + moe + "shared_expert.";
    const size_t CF = static_cast<size_t>(C) * F;
    // Hidden row h = s*F + f of the merged expert is expert s's hidden unit f.
    const auto in_shared = [&](int ld) {
      // F and CF are constants: used, not captured (clang: "not required to be captured").
      return [ld](int h, int c) { return (h / F) * CF + static_cast<size_t>(c) * ld + h % F; };
    };
    expect(sh + "gate_proj.weight", S * F, C, w + "moe/shared/w1", in_shared(F), 1.0f);
    expect(sh + "up_proj.weight", S * F, C, w + "moe/shared/w3", in_shared(F), 1.0f);
    expect(
        sh + "down_proj.weight", C, S * F, w + "moe/shared/w2",
        [](int c, int h) { return (h / F) * CF + static_cast<size_t>(h % F) * C + c; }, 2.0f);
  }
  expect("model.norm.weight", 1, C, "model/final_norm", at2(C), 1.0f);
  if (spec.count("model/head")) expect("lm_head.weight", V, C, "model/head", at2(C), 1.0f);
}

// The rows of tiny.yaml's layer `p` (d 32, E 4, F 64) both layouts share, under their names:
// norms, attention (Qwen2-MoE with zero q/k/v biases), the router and the routed experts with the
// layout's names for W1, W3, W2.
void add_layer_rows(TensorTable& table, const std::string& p, const std::string& moe, bool qkv_bias,
                    const char* w1, const char* w3, const char* w2) {
  table[p + "input_layernorm.weight"] = {32};
  table[p + "post_attention_layernorm.weight"] = {32};
  for (const char* w : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    table[p + "self_attn." + w + ".weight"] = {32, 32};
    if (qkv_bias && std::string(w) != "o_proj") table[p + "self_attn." + w + ".bias"] = {32};
  }
  table[p + moe + "gate.weight"] = {4, 32};
  for (int e = 0; e < 4; ++e) {
    const std::string x = p + moe + "experts." + std::to_string(e) + ".";
    table[x + w1 + ".weight"] = {64, 32};
    table[x + w3 + ".weight"] = {64, 32};
    table[x + w2 + ".weight"] = {32, 64};
  }
}

TEST(HfExport, MixtralConfigAndTensorsAsTheTablesSay) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string out = dir.file("run");
  // tiny.yaml: V 256, d 32, L 2, H 4, T 32, E 4, k 2, F 64; eps and theta set to non-defaults.
  train(prepare(dir), out, 2, "--set model.norm_eps=1e-6 --set model.rope_theta=5000");
  const std::string hf = dir.file("hf");
  const auto r =
      run_command(kBin + " ckpt export " + final_ckpt(out, 2) + " --format hf --output " + hf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "MixtralForCausalLM")) << r.output;

  const nlohmann::json want = nlohmann::json::parse(R"({
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 256,
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "head_dim": 8, "hidden_act": "silu", "max_position_embeddings": 32,
    "rms_norm_eps": 1e-6, "rope_theta": 5000.0,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0},
    "tie_word_embeddings": true, "attention_dropout": 0.0, "initializer_range": 0.02,
    "use_cache": true, "num_experts_per_tok": 2, "intermediate_size": 64, "num_local_experts": 4,
    "sliding_window": 32, "router_jitter_noise": 0.0, "output_router_logits": false,
    "router_aux_loss_coef": 0.01, "bos_token_id": null, "eos_token_id": null,
    "pad_token_id": null, "torch_dtype": "float32", "dtype": "float32"})");
  EXPECT_EQ(read_json(hf + "/config.json"), want);

  TensorTable table = {{"model.embed_tokens.weight", {256, 32}}, {"model.norm.weight", {32}}};
  for (int l = 0; l < 2; ++l)
    add_layer_rows(table, "model.layers." + std::to_string(l) + ".", "block_sparse_moe.", false,
                   "w1", "w3", "w2");
  nlohmann::json meta;
  EXPECT_EQ(safetensors_table(hf + "/model.safetensors", &meta), table);
  EXPECT_EQ(meta["format"], "pt");                    // transformers refuses safetensors without it
  EXPECT_FALSE(fs::exists(hf + "/tokenizer.model"));  // bytes: no SentencePiece files
  expect_hf_values(final_ckpt(out, 2), hf, "block_sparse_moe.", 0, 1.0f);
}

TEST(HfExport, QwenMoeForSharedExpertsAndUnnormalisedGates) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir, "--tokenizer bpe --vocab-size 300");
  const std::string out = dir.file("run");
  train(data, out, 2,
        "--set model.vocab_size=300 --set moe.shared_experts=2 --set moe.norm_topk=false "
        "--set model.tie_embeddings=false --set moe.gate_scale=0.5");
  const std::string hf = dir.file("hf");
  const auto r =
      run_command(kBin + " ckpt export " + final_ckpt(out, 2) + " --format hf --output " + hf);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const nlohmann::json want = nlohmann::json::parse(R"({
    "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "vocab_size": 300,
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "hidden_act": "silu", "max_position_embeddings": 32,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "tie_word_embeddings": false, "attention_dropout": 0.0, "initializer_range": 0.02,
    "use_cache": true, "num_experts_per_tok": 2, "intermediate_size": 64,
    "moe_intermediate_size": 64, "shared_expert_intermediate_size": 128, "num_experts": 4,
    "norm_topk_prob": false, "decoder_sparse_step": 1, "mlp_only_layers": [], "qkv_bias": true,
    "use_sliding_window": true, "sliding_window": 32, "max_window_layers": 0,
    "layer_types": ["sliding_attention", "sliding_attention"], "output_router_logits": false,
    "router_aux_loss_coef": 0.01, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": null,
    "torch_dtype": "float32", "dtype": "float32"})");
  EXPECT_EQ(read_json(hf + "/config.json"), want);

  TensorTable table = {{"model.embed_tokens.weight", {300, 32}},
                       {"model.norm.weight", {32}},
                       {"lm_head.weight", {300, 32}}};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_layer_rows(table, p, "mlp.", true, "gate_proj", "up_proj", "down_proj");
    table[p + "mlp.shared_expert.gate_proj.weight"] = {128, 32};
    table[p + "mlp.shared_expert.up_proj.weight"] = {128, 32};
    table[p + "mlp.shared_expert.down_proj.weight"] = {32, 128};
    table[p + "mlp.shared_expert_gate.weight"] = {1, 32};
  }
  nlohmann::json meta;
  EXPECT_EQ(safetensors_table(hf + "/model.safetensors", &meta), table);
  const auto tc = read_json(hf + "/tokenizer_config.json");
  // transformers 5 builds the class a Qwen2-MoE export names, and its LlamaTokenizer is BPE
  // whatever tokenizer.model is (tests/export/check_hf_transformers.py: a unigram model's ids
  // came out wrong): PreTrainedTokenizerFast converts the model by its own type.
  EXPECT_EQ(tc["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(tc["add_bos_token"], false);
  EXPECT_GT(fs::file_size(hf + "/tokenizer.model"), 1000u);
  expect_hf_values(final_ckpt(out, 2), hf, "mlp.", 2, 0.5f);
}

TEST(HfExport, RefusesWhatNoArchitectureRepresents) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir);
  const std::string out = dir.file("run");
  train(data, out, 3,
        "--set moe.capacity_factor=1.0 --set moe.bias_update_rate=0.01 --set moe.gate_scale=1.5");
  const std::string cmd =
      kBin + " ckpt export " + final_ckpt(out, 3) + " --format hf --output " + dir.file("hf");
  auto r = run_command(cmd);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  for (const char* what : {"router bias", "moe.capacity_factor 1)",
                           "moe.gate_scale 1.5 (not a power of two)", "--allow-approximate"})
    EXPECT_TRUE(contains(r.output, what)) << what << "\n" << r.output;
  // The bias named is the largest over the layers, read here from the checkpoint (it named the
  // first layer's, whatever the others held).
  {
    sy::h5::File f{H5Fopen(final_ckpt(out, 3).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
    ASSERT_GE(f.get(), 0);
    float best = -1.0f;
    int best_layer = -1;
    for (int l = 0; l < 2; ++l) {
      const std::string path = "/model/layers/" + std::to_string(l) + "/moe/bias";
      std::vector<float> b(4);  // tiny.yaml: 4 experts
      sy::h5::Dataset ds{H5Dopen2(f.get(), path.c_str(), H5P_DEFAULT)};
      ASSERT_GE(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, b.data()), 0);
      for (float v : b)
        if (std::fabs(v) > best) best = std::fabs(v), best_layer = l;
    }
    EXPECT_TRUE(contains(r.output, "router bias in 2 of 2 layers")) << r.output;
    EXPECT_TRUE(contains(r.output, "at /model/layers/" + std::to_string(best_layer) + "/moe/bias"))
        << r.output;
  }
  EXPECT_FALSE(fs::exists(dir.file("hf/config.json")));
  r = run_command(cmd + " --allow-approximate");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "approximate: capacity dropping")) << r.output;
  EXPECT_TRUE(fs::exists(dir.file("hf/config.json")));

  const std::string out2 = dir.file("run2");
  train(data, out2, 2, "--set moe.score=sigmoid");
  r = run_command(kBin + " ckpt export " + final_ckpt(out2, 2) +
                  " --format hf --allow-approximate" + " --output " + dir.file("hf2"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "moe.score: sigmoid")) << r.output;
}

// Group-limited routing selects nothing when every group is kept (M = R) or each group is one
// expert (R = E): the top-k over all experts is the model's own and exports exactly (QA: it was
// refused as "group-limited routing"). Two groups of two experts with one kept is refused.
TEST(HfExport, GroupsThatSelectNothingExportExactly) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir);
  const std::vector<std::pair<std::string, bool>> cases = {
      // tiny.yaml: E 4, k 2
      {"--set moe.route_groups=2 --set moe.route_groups_topk=2", true},
      {"--set moe.route_groups=4 --set moe.route_groups_topk=2", true},
      {"--set moe.route_groups=2 --set moe.route_groups_topk=1", false}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [sets, exact] = cases[i];
    const std::string out = dir.file("run" + std::to_string(i));
    train(data, out, 1, sets);
    const auto r = run_command(kBin + " ckpt export " + final_ckpt(out, 1) +
                               " --format hf --output " + dir.file("hf" + std::to_string(i)));
    EXPECT_EQ(r.exit_code, exact ? 0 : 2) << sets << "\n" << r.output;
    EXPECT_EQ(contains(r.output, "group-limited routing"), !exact) << sets << "\n" << r.output;
  }
}

// A capacity factor of at least E / k gives every expert room for every token (moe_capacity):
// nothing is dropped, and the export is exact. It was refused as "capacity dropping" (QA).
TEST(HfExport, ACapacityThatDropsNothingExportsExactly) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir);
  // tiny.yaml: E 4, k 2
  for (const auto& [factor, exact] :
       {std::pair{"2", true}, std::pair{"1e308", true}, std::pair{"1.99", false}}) {
    const std::string out = dir.file(std::string("run") + factor);
    train(data, out, 1, std::string("--set moe.capacity_factor=") + factor);
    const auto r = run_command(kBin + " ckpt export " + final_ckpt(out, 1) +
                               " --format hf --output " + dir.file(std::string("hf") + factor));
    EXPECT_EQ(r.exit_code, exact ? 0 : 2) << factor << "\n" << r.output;
    EXPECT_EQ(contains(r.output, "capacity dropping"), !exact) << factor << "\n" << r.output;
  }
}

// A model vocabulary larger than the tokenizer's (padded): sample picks among the 256 byte ids
// only, transformers' generate() among all 300; the export says so and how to match sample. One
// that fits its tokenizer gets no note.
TEST(HfExport, AVocabularyPastTheTokenizersIsSaid) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir);
  train(data, dir.file("run"), 2, "--set model.vocab_size=300");
  auto r = run_command(kBin + " ckpt export " + final_ckpt(dir.file("run"), 2) +
                       " --format hf --output " + dir.file("hf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "note: model.vocab_size 300 is more than the tokenizer's 256 ids"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "suppress_tokens=list(range(256, 300))")) << r.output;
  EXPECT_EQ(read_json(dir.file("hf") + "/config.json")["vocab_size"], 300);
  train(data, dir.file("run256"), 2);
  r = run_command(kBin + " ckpt export " + final_ckpt(dir.file("run256"), 2) +
                  " --format hf --output " + dir.file("hf256"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "note:")) << r.output;
}

// ---- what a failed export leaves: nothing ------------------------------------------------------

// The names in `dir` (files and directories, not recursive).
std::set<std::string> listing(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// `cmd` with writes limited to 64 KB (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it fails
// with EFBIG as on a full disk): fails for root too, unlike permission bits. PMIx's shared-memory
// store would hit the limit in MPI_Init; its hash store writes no file.
std::string with_file_size_limit(const std::string& cmd) {
  return "sh -c \"trap '' XFSZ; ulimit -f 128; PMIX_MCA_gds=hash exec " + cmd + "\"";
}

// An output that is a FIFO (or a device: /dev/full became a regular file) is refused before any
// work, and left as it is, by every command that writes a named file.
TEST(CkptExportFiles, AFifoAsAnOutputIsRefusedAndKept) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const std::string fifo = dir.file("out");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const std::vector<std::string> commands = {
      kBin + " ckpt export " + ckpt + " --output " + fifo,
      kBin + " data prepare --input " + dir.file("a.txt") + " --output " + fifo,
  };
  for (const std::string& cmd : commands) {
    const auto r = run_command(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "'" + fifo + "' is a FIFO")) << cmd << "\n" << r.output;
    struct stat st {};
    EXPECT_TRUE(::lstat(fifo.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) << cmd;
    EXPECT_FALSE(fs::exists(fifo + ".tmp")) << cmd;
  }
  // A directory where the token file is written first ("is the directory writable?" before).
  fs::create_directory(dir.file("t.h5.tmp"));
  const auto r = run_command(kBin + " data prepare --input " + dir.file("a.txt") + " --output " +
                             dir.file("t.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, dir.file("t.h5.tmp") + "', where the token file is written"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "is a directory: remove it")) << r.output;
}

// Weights that are not finite (a diverged run's, or an edited file) are no model: both formats
// refuse them as bad input (exit 2, SPEC 9), naming the tensor, where they were exported
// (exit 0). HDF5 rewrites the chunk's Fletcher32, so the checkpoint is otherwise sound.
TEST(CkptExportFiles, WeightsThatAreNotFiniteAreNotExported) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  {
    const hid_t f = H5Fopen(ckpt.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    const hid_t d = H5Dopen2(f, "model/embed", H5P_DEFAULT);
    ASSERT_GE(d, 0);
    const hid_t space = H5Dget_space(d);
    std::vector<float> v(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
    ASSERT_GE(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
    v[5] = INFINITY;
    ASSERT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
  }
  for (const std::string& to : {dir.file("m.safetensors"), dir.file("hf") + " --format hf"}) {
    const auto r = run_command(kBin + " ckpt export " + ckpt + " --output " + to);
    EXPECT_EQ(r.exit_code, 2) << to << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "/model/embed: holds 1 of")) << r.output;
    EXPECT_TRUE(contains(r.output, "not finite")) << r.output;
  }
  EXPECT_FALSE(fs::exists(dir.file("m.safetensors")));
  EXPECT_FALSE(fs::exists(dir.file("hf/model.safetensors")));
}

TEST(CkptExportFiles, ADirectoryAsTheSafetensorsOutputIsRefusedAndParentsAreMade) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const std::string cmd = kBin + " ckpt export " + ckpt + " --output ";
  fs::create_directories(dir.file("hf/base"));
  auto r = run_command(cmd + dir.file("hf/base"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--output '" + dir.file("hf/base") + "' is a directory"))
      << r.output;
  EXPECT_EQ(listing(dir.file("hf")), std::set<std::string>{"base"}) << "no base.tmp";
  EXPECT_TRUE(fs::is_empty(dir.file("hf/base")));
  // An empty name or one ending in '/' (a directory to be) is said before the work ("rename to
  // '' of '.tmp' failed" after it).
  r = run_command(cmd + "''");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--output is empty")) << r.output;
  r = run_command(cmd + dir.file("newdir/"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "ends in '/'")) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("newdir")));

  // A missing parent directory is made, as --format hf makes its directory.
  r = run_command(cmd + dir.file("new/sub/x.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(listing(dir.file("new/sub")), std::set<std::string>{"x.safetensors"});
  // One that cannot be made: the reason, and nothing made.
  std::ofstream(dir.file("afile")) << "x";
  r = run_command(cmd + dir.file("afile/sub/x.safetensors"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "Not a directory")) << r.output;
  // A directory no file can be created in (/proc: for root too) is said before the checkpoint is
  // read and verified (minutes for a large one), for both formats.
  for (const std::string& args :
       {std::string("/proc/sub/x.safetensors"), std::string("/proc/hf --format hf")}) {
    r = run_command(cmd + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "cannot create files in '/proc'")) << r.output;
    EXPECT_FALSE(contains(r.output, "verif")) << r.output;
  }

  // The checkpoint itself as the output (also through a link): refused, the checkpoint intact.
  // Before, the export replaced it with the safetensors file and exited 0.
  const std::string bytes = read_bytes(ckpt);
  fs::create_symlink(ckpt, dir.file("link.h5"));
  for (const std::string& out : {ckpt, dir.file("link.h5")}) {
    r = run_command(cmd + out);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "is the input file")) << r.output;
    EXPECT_EQ(read_bytes(ckpt), bytes) << out;
  }
}

TEST(CkptExportFiles, AFailedWriteLeavesNoTemporaryAndTheEarlierFiles) {
  sy::test::TempDir dir;
  const std::string cmd = kBin + " ckpt export " + two_step_checkpoint(dir);

  // safetensors: the old file survives, no .tmp, the reason is errno's.
  fs::create_directories(dir.file("st"));
  std::ofstream(dir.file("st/x.safetensors")) << "old";
  // Out of room is SPEC 9's "anything else" (exit 1), not bad input (2).
  auto r = run_command(with_file_size_limit(cmd + " --output " + dir.file("st/x.safetensors")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "File too large")) << r.output;
  EXPECT_EQ(listing(dir.file("st")), std::set<std::string>{"x.safetensors"});
  EXPECT_EQ(read_bytes(dir.file("st/x.safetensors")), "old");

  // hf into a new directory: the directory is not left behind either.
  r = run_command(with_file_size_limit(cmd + " --format hf --output " + dir.file("new/hf")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "File too large")) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("new"))) << r.output;

  // hf over an earlier export: its files unchanged, no .tmp.
  const std::string hf = dir.file("hf");
  r = run_command(cmd + " --format hf --output " + hf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string weights = read_bytes(hf + "/model.safetensors");
  fs::resize_file(hf + "/model.safetensors", 100);  // so that the failed export's would differ
  r = run_command(with_file_size_limit(cmd + " --format hf --output " + hf));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(listing(hf), (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_EQ(read_bytes(hf + "/model.safetensors"), weights.substr(0, 100));

  // A directory where the export writes a file: refused, naming it, nothing written.
  fs::remove(hf + "/model.safetensors");
  fs::create_directory(hf + "/model.safetensors");
  r = run_command(cmd + " --format hf --output " + hf);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, hf + "/model.safetensors")) << r.output;
  EXPECT_EQ(listing(hf), (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_TRUE(fs::is_empty(hf + "/model.safetensors"));
}

// A byte-level export over a SentencePiece one: the directory holds exactly the second export
// (transformers would otherwise load the BPE tokenizer for the byte model), and a user's file.
TEST(CkptExportFiles, AnExportReplacesAnEarlierExportsFilesOnly) {
  sy::test::TempDir dir;
  write_texts(dir);
  train(prepare(dir, "--tokenizer bpe --vocab-size 300"), dir.file("bpe"), 2,
        "--set model.vocab_size=300");
  train(prepare(dir), dir.file("bytes"), 2);
  const std::string hf = dir.file("hf");
  const std::string bpe =
      kBin + " ckpt export " + final_ckpt(dir.file("bpe"), 2) + " --format hf --output " + hf;
  const std::string bytes =
      kBin + " ckpt export " + final_ckpt(dir.file("bytes"), 2) + " --format hf --output " + hf;
  auto r = run_command(bpe);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(listing(hf), (std::set<std::string>{"config.json", "model.safetensors",
                                                "tokenizer.model", "tokenizer_config.json"}));
  std::ofstream(hf + "/README.md") << "my notes";
  r = run_command(bytes);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(
      contains(r.output, "removed an earlier export's tokenizer.model tokenizer_config.json"))
      << r.output;
  EXPECT_EQ(listing(hf), (std::set<std::string>{"config.json", "model.safetensors", "README.md"}));
  EXPECT_EQ(read_json(hf + "/config.json")["vocab_size"], 256);
  EXPECT_EQ(read_bytes(hf + "/README.md"), "my notes");

  // A file transformers would read with the export's, not switchyard's: refused, kept.
  std::ofstream(hf + "/tokenizer.json") << "{}";
  r = run_command(bpe);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "holds tokenizer.json")) << r.output;
  EXPECT_EQ(listing(hf), (std::set<std::string>{"config.json", "model.safetensors", "README.md",
                                                "tokenizer.json"}));
}

}  // namespace

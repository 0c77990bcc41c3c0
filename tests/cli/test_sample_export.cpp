// From a training run to text and to Hugging Face, as a user meets it: samples at evaluation,
// the final checkpoint carrying the final evaluation, `switchyard sample` (reproducible, greedy,
// every bad prompt or checkpoint an exit 2 with a clear message), SentencePiece token files
// flowing into checkpoints, and `ckpt export --format hf` (config.json and the tensor table
// against tables written here; what no architecture represents refused by name), and what a
// failed export (nothing) or a repeated one (exactly its files) leaves behind.
#include <gtest/gtest.h>
#include <iconv.h>

#include <algorithm>
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

#include "common/run_command.h"
#include "common/temp_dir.h"

#if defined(SWITCHYARD_HAVE_CUDA)
#include "kernels/cuda/check.h"
#endif

namespace {

namespace fs = std::filesystem;
using sy::test::run_command;
const std::string kBin = SWITCHYARD_BIN;
const std::string kSrc = SWITCHYARD_SOURCE_DIR;

// The command's stdout alone (the sample's text; its progress goes to stderr).
sy::test::CommandResult stdout_of(const std::string& cmd) {
  return run_command("(" + cmd + " 2>/dev/null)");
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Two small English texts, ~18 KB.
void write_texts(const sy::test::TempDir& dir) {
  std::ofstream a(dir.file("a.txt")), b(dir.file("b.txt"));
  for (int i = 0; i < 200; ++i) a << "the quick brown fox jumps over the lazy dog " << i << "\n";
  for (int i = 0; i < 200; ++i) b << "pack my box with five dozen liquor jugs " << i << "\n";
}

std::string prepare(const sy::test::TempDir& dir, const std::string& extra = "") {
  const std::string h5 = dir.file(extra.empty() ? "bytes.h5" : "spm.h5");
  const auto r = run_command(kBin + " data prepare --input " + dir.file("a.txt") + " " +
                             dir.file("b.txt") + " --output " + h5 + " " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return h5;
}

// Trains configs/tiny.yaml for `steps` steps with a checkpoint at the end; returns the output.
std::string train(const std::string& data, const std::string& out, int steps,
                  const std::string& sets = "") {
  const auto r = run_command(
      kBin + " train --config " + kSrc + "/configs/tiny.yaml --set data.path=" + data +
      " --set run.out_dir=" + out + " --set train.steps=" + std::to_string(steps) +
      " --set checkpoint.every=" + std::to_string(steps) + " --set log.every=100 " + sets);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output;
}

// Whether `text` is well-formed UTF-8, by glibc's iconv (another implementation than the one
// under test): it stops with EILSEQ or EINVAL at the first byte that is not.
bool valid_utf8(const std::string& text) {
  iconv_t cd = iconv_open("UTF-8", "UTF-8");
  if (cd == reinterpret_cast<iconv_t>(-1)) return false;
  std::string in = text, out(text.size() + 16, '\0');
  char* ip = in.data();
  char* op = out.data();
  size_t il = in.size(), ol = out.size();
  const bool ok = iconv(cd, &ip, &il, &op, &ol) != static_cast<size_t>(-1) && il == 0;
  iconv_close(cd);
  return ok;
}

std::string final_ckpt(const std::string& out, int steps) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08d.h5", steps);
  return out + "/checkpoints/" + name;
}

TEST(SampleCli, TrainSamplesAtEvalAndSampleCommandStreamsText) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir);
  const std::string out = dir.file("run");
  const std::string log =
      train(data, out, 4, "--set eval.every=2 --set eval.sample_tokens=64 --set eval.sequences=4");
  EXPECT_TRUE(contains(log, "sample at step 2")) << log;
  EXPECT_TRUE(contains(log, "sample at step 4")) << log;
  std::ifstream samples(out + "/samples.txt");
  const std::string st{std::istreambuf_iterator<char>(samples), std::istreambuf_iterator<char>()};
  EXPECT_TRUE(contains(st, "sample at step 2") && contains(st, "sample at step 4")) << st;
  // The log shows the samples' control bytes and bytes that are not UTF-8 (an untrained byte
  // model emits both) escaped, so that a terminal or `grep` takes the log for text; samples.txt
  // keeps the model's bytes.
  const auto control = [](const std::string& text) {
    return std::count_if(text.begin(), text.end(), [](char ch) {
      const auto c = static_cast<unsigned char>(ch);
      return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f;
    });
  };
  EXPECT_EQ(control(log), 0) << log;
  EXPECT_TRUE(valid_utf8(log)) << log;
  EXPECT_GT(control(st), 0) << "this seed's samples hold no control byte to show it\n" << st;

  // The final checkpoint carries the final evaluation: ckpt info shows metrics.jsonl's last
  // val_loss (it was written after it).
  double last_val = 0.0;
  std::ifstream m(out + "/metrics.jsonl");
  for (std::string line; std::getline(m, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("val_loss")) last_val = j["val_loss"].get<double>();
  }
  const std::string ckpt = final_ckpt(out, 4);
  auto r = run_command(kBin + " ckpt info " + ckpt + " --no-config");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  char want[64];
  std::snprintf(want, sizeof want, "val loss     last %.6f", last_val);
  EXPECT_TRUE(contains(r.output, want)) << want << "\n" << r.output;
  EXPECT_TRUE(contains(r.output, "tokenizer    bytes")) << r.output;

  // A fixed seed gives the same text twice; the text continues the prompt.
  const std::string cmd =
      kBin + " sample --checkpoint " + ckpt + " --prompt 'the quick' --tokens 40";
  const auto a = stdout_of(cmd + " --seed 5");
  const auto b = stdout_of(cmd + " --seed 5");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.output.rfind("the quick", 0), 0u) << a.output;
  EXPECT_GT(a.output.size(), std::string("the quick").size());
  r = run_command(cmd + " --seed 5");
  EXPECT_TRUE(contains(r.output, "tokens/s at 64 tokens")) << r.output;
  EXPECT_TRUE(contains(r.output, "without capacity dropping")) << r.output;
  // Temperature 0 is greedy: the same text as top-k 1, for any seed.
  const auto g0 = stdout_of(cmd + " --temperature 0 --seed 1");
  const auto g1 = stdout_of(cmd + " --top-k 1 --seed 2");
  ASSERT_EQ(g0.exit_code, 0) << g0.output;
  EXPECT_EQ(g0.output, g1.output);
}

TEST(SampleCli, BadPromptsAndCheckpointsExitTwo) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string out = dir.file("run");
  train(prepare(dir), out, 2);
  const std::string ckpt = final_ckpt(out, 2);
  const std::string s = kBin + " sample --checkpoint ";
  auto expect2 = [&](const std::string& args, const std::string& part) {
    const auto r = run_command(s + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, part)) << args << ": '" << part << "' not in\n" << r.output;
  };
  expect2(ckpt + " --prompt ''", "is empty");
  expect2(ckpt + " --prompt '" + std::string(33, 'x') + "'",
          "33 tokens (bytes), longer than the model's seq_len 32");
  expect2(ckpt, "no prompt");
  expect2(ckpt + " --prompt-file " + dir.file("missing.txt"), "missing.txt");
  expect2(ckpt + " --prompt-file " + dir.path().string(),
          "--prompt-file '" + dir.path().string() + "' is a directory");
  // --device cuda where it cannot run: the reason, before the checkpoint is read.
#if defined(SWITCHYARD_HAVE_CUDA)
  std::string no_gpu;
  if (sy::cuda::device_count(&no_gpu) == 0)
    expect2(ckpt + " --prompt x --device cuda", "--device cuda needs a usable CUDA GPU: " + no_gpu);
#else
  expect2(ckpt + " --prompt x --device cuda",
          "this switchyard was built without the CUDA backend (configure with "
          "-DSWITCHYARD_CUDA=ON)");
#endif
  expect2(ckpt + " --prompt x --device tpu", "--device 'tpu' is not one of cpu, cuda");
  expect2(ckpt + " --prompt x --temperature -1", "--temperature -1 must be");  // not -1.000000
  expect2(ckpt + " --prompt x --top-p 1.25", "--top-p 1.25 must be in (0, 1]");
  expect2(ckpt + " --prompt x --temperature inf", "must be finite and >= 0");
  expect2(ckpt + " --prompt x --seed -1", "--seed: expected an integer in [0, 2^64), got '-1'");
  expect2(ckpt + " --prompt x --seed 18446744073709551616", "--seed");
  expect2(dir.file("nope.h5") + " --prompt x", "not found");

  // Damage: bytes flipped in the middle of the file (tensor data), and a truncated copy.
  const auto size = static_cast<int64_t>(fs::file_size(ckpt));
  fs::copy_file(ckpt, dir.file("flipped.h5"));
  {
    std::fstream f(dir.file("flipped.h5"), std::ios::in | std::ios::out | std::ios::binary);
    for (int64_t off = size / 3; off < size / 3 + 64; ++off) {
      f.seekg(off);
      char c = 0;
      f.read(&c, 1);
      f.seekp(off);
      c = static_cast<char>(c ^ 0x5a);
      f.write(&c, 1);
    }
  }
  expect2(dir.file("flipped.h5") + " --prompt x", "flipped.h5");
  fs::copy_file(ckpt, dir.file("cut.h5"));
  fs::resize_file(dir.file("cut.h5"), static_cast<uintmax_t>(size / 2));
  expect2(dir.file("cut.h5") + " --prompt x", "cut.h5");
}

// Where a GPU is usable (CUDA build): `sample --device cuda` streams the same greedy text as
// --device cpu (the decoders' logits agree within 1e-4: tests/gpu/sample), and says which device
// ran. Not yet run on a GPU.
TEST(SampleCli, DeviceCudaGivesTheCpuGreedyText) {
#if !defined(SWITCHYARD_HAVE_CUDA)
  GTEST_SKIP() << "built without the CUDA backend (BadPromptsAndCheckpointsExitTwo checks the "
                  "refusal)";
#else
  std::string no_gpu;
  if (sy::cuda::device_count(&no_gpu) == 0)
    GTEST_SKIP() << "no usable CUDA device (" << no_gpu
                 << "); BadPromptsAndCheckpointsExitTwo checks the refusal";
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string out = dir.file("run");
  train(prepare(dir), out, 2);
  const std::string cmd = kBin + " sample --checkpoint " + final_ckpt(out, 2) +
                          " --prompt 'the quick' --tokens 48 --temperature 0 --device ";
  const auto cpu = stdout_of(cmd + "cpu");
  const auto gpu = stdout_of(cmd + "cuda");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  ASSERT_EQ(gpu.exit_code, 0) << gpu.output;
  EXPECT_EQ(gpu.output, cpu.output);
  const auto r = run_command(cmd + "cuda");
  EXPECT_TRUE(contains(r.output, "device cuda")) << r.output;
#endif
}

TEST(SampleCli, SentencePieceRunsCarryTheirTokenizer) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir, "--tokenizer bpe --vocab-size 300");
  const std::string out = dir.file("run");
  train(data, out, 2, "--set model.vocab_size=300");
  const std::string ckpt = final_ckpt(out, 2);
  auto r = run_command(kBin + " ckpt info " + ckpt + " --no-config");
  EXPECT_TRUE(contains(r.output, "tokenizer    sentencepiece")) << r.output;
  EXPECT_TRUE(contains(r.output, "at /tokenizer/model (verifies)")) << r.output;
  r = stdout_of(kBin + " sample --checkpoint " + ckpt +
                " --prompt 'pack my box' --tokens 10 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("pack my box", 0), 0u) << r.output;
  r = run_command(kBin + " sample --checkpoint " + ckpt + " --prompt \"$(printf 'ab\\377')\"");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "not valid UTF-8 at byte offset 2")) << r.output;

  // Imported ids have no text: a prompt cannot be encoded.
  std::string raw;
  for (int i = 0; i < 400; ++i) {
    const auto v = static_cast<uint16_t>(i % 50);
    raw.append(reinterpret_cast<const char*>(&v), 2);
  }
  std::ofstream(dir.file("train.bin"), std::ios::binary) << raw;
  std::ofstream(dir.file("val.bin"), std::ios::binary) << raw;
  r = run_command(kBin + " data import --format raw-uint16 " + dir.file("train.bin") + " " +
                  dir.file("val.bin") + " --output " + dir.file("imp.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  train(dir.file("imp.h5"), dir.file("imp"), 2);
  r = run_command(kBin + " sample --checkpoint " + final_ckpt(dir.file("imp"), 2) + " --prompt x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "'imported' has no text")) << r.output;
}

// `data import --format llmc` reads the 256-int32 header (magic, version, token count) and the
// tokens after it; read as bare uint16 the header's 512 words would become tokens too.
TEST(DataImportCli, LlmcShardsAreReadByTheirHeader) {
  const sy::test::TempDir dir;
  for (const char* name : {"train.bin", "val.bin"}) {
    std::vector<int32_t> header(256, 0);
    header[0] = 20240520;
    header[1] = 1;
    header[2] = 300;
    std::ofstream f(dir.file(name), std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), 1024);
    for (int i = 0; i < 300; ++i) {
      const auto v = static_cast<uint16_t>(i % 50);
      f.write(reinterpret_cast<const char*>(&v), 2);
    }
  }
  const auto r = run_command(kBin + " data import --format llmc " + dir.file("train.bin") + " " +
                             dir.file("val.bin") + " --output " + dir.file("imp.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "vocab_size 50 (largest id + 1), 300 train / 300 val tokens"))
      << r.output;
}

// ---- ckpt export --format hf --------------------------------------------------------------------

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
      return
          [ld, F, CF](int h, int c) { return (h / F) * CF + static_cast<size_t>(c) * ld + h % F; };
    };
    expect(sh + "gate_proj.weight", S * F, C, w + "moe/shared/w1", in_shared(F), 1.0f);
    expect(sh + "up_proj.weight", S * F, C, w + "moe/shared/w3", in_shared(F), 1.0f);
    expect(
        sh + "down_proj.weight", C, S * F, w + "moe/shared/w2",
        [F, C, CF](int c, int h) { return (h / F) * CF + static_cast<size_t>(h % F) * C + c; },
        2.0f);
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
  EXPECT_EQ(tc["tokenizer_class"], "LlamaTokenizer");
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
  for (const char* what : {"router bias", "moe.capacity_factor",
                           "moe.gate_scale 1.5 (not a power of two)", "--allow-approximate"})
    EXPECT_TRUE(contains(r.output, what)) << what << "\n" << r.output;
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

TEST(CkptExportFiles, ADirectoryAsTheSafetensorsOutputIsRefusedAndParentsAreMade) {
  sy::test::TempDir dir;
  write_texts(dir);
  train(prepare(dir), dir.file("run"), 2);
  const std::string cmd = kBin + " ckpt export " + final_ckpt(dir.file("run"), 2) + " --output ";
  fs::create_directories(dir.file("hf/base"));
  auto r = run_command(cmd + dir.file("hf/base"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--output '" + dir.file("hf/base") + "' is a directory"))
      << r.output;
  EXPECT_EQ(listing(dir.file("hf")), std::set<std::string>{"base"}) << "no base.tmp";
  EXPECT_TRUE(fs::is_empty(dir.file("hf/base")));

  // A missing parent directory is made, as --format hf makes its directory.
  r = run_command(cmd + dir.file("new/sub/x.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(listing(dir.file("new/sub")), std::set<std::string>{"x.safetensors"});
  // One that cannot be made: the reason, and nothing made.
  std::ofstream(dir.file("afile")) << "x";
  r = run_command(cmd + dir.file("afile/sub/x.safetensors"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "Not a directory")) << r.output;
}

TEST(CkptExportFiles, AFailedWriteLeavesNoTemporaryAndTheEarlierFiles) {
  sy::test::TempDir dir;
  write_texts(dir);
  train(prepare(dir), dir.file("run"), 2);
  const std::string cmd = kBin + " ckpt export " + final_ckpt(dir.file("run"), 2);

  // safetensors: the old file survives, no .tmp, the reason is errno's.
  fs::create_directories(dir.file("st"));
  std::ofstream(dir.file("st/x.safetensors")) << "old";
  auto r = run_command(with_file_size_limit(cmd + " --output " + dir.file("st/x.safetensors")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "File too large")) << r.output;
  EXPECT_EQ(listing(dir.file("st")), std::set<std::string>{"x.safetensors"});
  EXPECT_EQ(read_bytes(dir.file("st/x.safetensors")), "old");

  // hf into a new directory: the directory is not left behind either.
  r = run_command(with_file_size_limit(cmd + " --format hf --output " + dir.file("new/hf")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("new"))) << r.output;

  // hf over an earlier export: its files unchanged, no .tmp.
  const std::string hf = dir.file("hf");
  r = run_command(cmd + " --format hf --output " + hf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string weights = read_bytes(hf + "/model.safetensors");
  fs::resize_file(hf + "/model.safetensors", 100);  // so that the failed export's would differ
  r = run_command(with_file_size_limit(cmd + " --format hf --output " + hf));
  EXPECT_EQ(r.exit_code, 2) << r.output;
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

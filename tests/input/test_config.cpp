// The config (SPEC section 7): defaults, every key parsed, --set overrides, the to_yaml round trip,
// and every rejection: unknown keys, wrong types, out-of-range values, bad files. Every rejection
// must be a UsageError whose message names the key path (or the file) and the offending value.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <yaml-cpp/yaml.h>
#include <algorithm>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/temp_dir.h"
#include "input/config_test_util.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/core/paths.h"
#include "src/core/utf8.h"

namespace sy {
namespace {

using test::expect_usage_error;
using test::kMinimal;

const std::filesystem::path kRepo =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

TEST(Config, DefaultsWhenOnlyDataPathIsGiven) {
  const Config c = parse_config(kMinimal);
  EXPECT_EQ(c.run.name, "run");
  EXPECT_EQ(c.run.seed, 1234u);
  EXPECT_EQ(c.run.out_dir, "runs/run");
  EXPECT_EQ(c.model.vocab_size, 256);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.n_layers, 2);
  EXPECT_EQ(c.model.n_heads, 4);
  EXPECT_EQ(c.model.seq_len, 64);
  EXPECT_EQ(c.model.norm_eps, 1e-5);
  EXPECT_EQ(c.model.rope_theta, 10000.0);
  EXPECT_TRUE(c.model.tie_embeddings);
  EXPECT_EQ(c.moe.num_experts, 4);
  EXPECT_EQ(c.moe.top_k, 2);
  EXPECT_EQ(c.moe.ffn_hidden, 128);
  EXPECT_EQ(c.moe.shared_experts, 0);
  EXPECT_TRUE(c.moe.norm_topk);
  EXPECT_FALSE(c.moe.capacity_factor.has_value());
  EXPECT_EQ(c.moe.aux_loss_coeff, 1e-2);  // SPEC default
  EXPECT_EQ(c.moe.aux_loss_scope, AuxScope::kSequence);
  EXPECT_EQ(c.moe.z_loss_coeff, 1e-3);  // SPEC default
  EXPECT_EQ(c.moe.bias_update_rate, 0.0);
  EXPECT_EQ(c.moe.overlap_chunks, 1);
  EXPECT_EQ(c.parallel.tp, 1);
  EXPECT_EQ(c.parallel.ep, 1);
  EXPECT_EQ(c.parallel.etp, 1);
  EXPECT_EQ(c.parallel.ranks_per_node, 0);
  EXPECT_EQ(c.parallel.a2a, A2aKind::kAuto);
  EXPECT_EQ(c.parallel.internode, InternodeKind::kUcx);
  EXPECT_FALSE(c.parallel.zero1);
  EXPECT_EQ(c.train.steps, 100);
  EXPECT_EQ(c.train.global_batch, 8);
  EXPECT_EQ(c.train.micro_batch, 8);
  EXPECT_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.min_lr, 1e-4);
  EXPECT_EQ(c.train.warmup_steps, 10);
  EXPECT_EQ(c.train.weight_decay, 0.1);
  EXPECT_EQ(c.train.grad_clip, 1.0);
  EXPECT_EQ(c.train.precision, Precision::kFp32);
  EXPECT_EQ(c.data.path, "tokens.h5");
  EXPECT_EQ(c.eval.every, 50);
  EXPECT_EQ(c.eval.sequences, 32);
  EXPECT_EQ(c.checkpoint.dir, "runs/run/checkpoints");
  EXPECT_EQ(c.checkpoint.every, 0);
  EXPECT_EQ(c.checkpoint.keep, 3);
  EXPECT_EQ(c.log.every, 1);
  EXPECT_EQ(c.device, Device::kCpu);
}

// Every key set to a non-default value, so a key that is not read keeps its default and fails.
const char* kEveryKey = R"(
run: {name: exp1, seed: 7, out_dir: /tmp/out}
model:
  vocab_size: 300
  d_model: 48
  n_layers: 3
  n_heads: 6
  seq_len: 17
  norm_eps: 2.5e-6
  rope_theta: 500000
  tie_embeddings: false
moe:
  num_experts: 6
  top_k: 3
  ffn_hidden: 40
  shared_experts: 2
  norm_topk: no
  capacity_factor: 1.25
  aux_loss_coeff: 0.03
  aux_loss_scope: micro_batch
  z_loss_coeff: 0
  bias_update_rate: 0.001
  overlap_chunks: 2
parallel: {tp: 2, ep: 3, etp: 4, ranks_per_node: 8, a2a: hierarchical, internode: mpi, zero1: true,
           timeout_s: 60}
train:
  steps: 11
  global_batch: 12
  micro_batch: 3
  lr: 0.02
  min_lr: 0.002
  warmup_steps: 4
  weight_decay: 0.05
  grad_clip: 0
  precision: bf16
data: {path: /data/t.h5}
eval: {every: 5, sequences: 9}
checkpoint: {dir: /ckpt, every: 3, keep: 2}
log: {every: 2}
device: cuda
)";

TEST(Config, EveryKeyIsRead) {
  const Config c = parse_config(kEveryKey);
  EXPECT_EQ(c.run.name, "exp1");
  EXPECT_EQ(c.run.seed, 7u);
  EXPECT_EQ(c.run.out_dir, "/tmp/out");
  EXPECT_EQ(c.model.vocab_size, 300);
  EXPECT_EQ(c.model.d_model, 48);
  EXPECT_EQ(c.model.n_layers, 3);
  EXPECT_EQ(c.model.n_heads, 6);
  EXPECT_EQ(c.model.seq_len, 17);
  EXPECT_EQ(c.model.norm_eps, 2.5e-6);
  EXPECT_EQ(c.model.rope_theta, 500000.0);
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_EQ(c.moe.num_experts, 6);
  EXPECT_EQ(c.moe.top_k, 3);
  EXPECT_EQ(c.moe.ffn_hidden, 40);
  EXPECT_EQ(c.moe.shared_experts, 2);
  EXPECT_FALSE(c.moe.norm_topk);
  ASSERT_TRUE(c.moe.capacity_factor.has_value());
  EXPECT_EQ(*c.moe.capacity_factor, 1.25);
  EXPECT_EQ(c.moe.aux_loss_coeff, 0.03);
  EXPECT_EQ(c.moe.aux_loss_scope, AuxScope::kMicroBatch);
  EXPECT_EQ(c.moe.z_loss_coeff, 0.0);
  EXPECT_EQ(c.moe.bias_update_rate, 0.001);
  EXPECT_EQ(c.moe.overlap_chunks, 2);
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_EQ(c.parallel.ep, 3);
  EXPECT_EQ(c.parallel.etp, 4);
  EXPECT_EQ(c.parallel.ranks_per_node, 8);
  EXPECT_EQ(c.parallel.a2a, A2aKind::kHierarchical);
  EXPECT_EQ(c.parallel.internode, InternodeKind::kMpi);
  EXPECT_TRUE(c.parallel.zero1);
  EXPECT_EQ(c.parallel.timeout_s, 60.0);
  EXPECT_EQ(c.train.steps, 11);
  EXPECT_EQ(c.train.global_batch, 12);
  EXPECT_EQ(c.train.micro_batch, 3);
  EXPECT_EQ(c.train.lr, 0.02);
  EXPECT_EQ(c.train.min_lr, 0.002);
  EXPECT_EQ(c.train.warmup_steps, 4);
  EXPECT_EQ(c.train.weight_decay, 0.05);
  EXPECT_EQ(c.train.grad_clip, 0.0);
  EXPECT_EQ(c.train.precision, Precision::kBf16);
  EXPECT_EQ(c.data.path, "/data/t.h5");
  EXPECT_EQ(c.eval.every, 5);
  EXPECT_EQ(c.eval.sequences, 9);
  EXPECT_EQ(c.checkpoint.dir, "/ckpt");
  EXPECT_EQ(c.checkpoint.every, 3);
  EXPECT_EQ(c.checkpoint.keep, 2);
  EXPECT_EQ(c.log.every, 2);
  EXPECT_EQ(c.device, Device::kCuda);
}

TEST(Config, DerivedPathsFollowNameAndOutDir) {
  Config c = parse_config("run: {name: abc}\n" + kMinimal);
  EXPECT_EQ(c.run.out_dir, "runs/abc");
  EXPECT_EQ(c.checkpoint.dir, "runs/abc/checkpoints");
  c = parse_config("run: {out_dir: /x/y}\n" + kMinimal);
  EXPECT_EQ(c.checkpoint.dir, "/x/y/checkpoints");
}

TEST(Config, EmptySectionAndEmptyFileMeanDefaults) {
  const Config c = parse_config("model:\n" + kMinimal);
  EXPECT_EQ(c.model.d_model, 64);
  expect_usage_error([] { parse_config(""); }, {"data.path"});  // the only required key
}

TEST(Config, OverridesApplyInOrderAndBeatTheFile) {
  const Config c = parse_config(
      "model: {d_model: 32}\n" + kMinimal,
      {"model.d_model=128", "moe.capacity_factor=1.5", "moe.capacity_factor=null",
       "moe.norm_topk=false", "parallel.a2a=flat", "device=cuda", "data.path=/other.h5",
       "train.lr=3e-3", "run.name=x1", "eval.sequences=4", "eval.sequences=5"});
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_FALSE(c.moe.capacity_factor.has_value());
  EXPECT_FALSE(c.moe.norm_topk);
  EXPECT_EQ(c.parallel.a2a, A2aKind::kFlat);
  EXPECT_EQ(c.device, Device::kCuda);
  EXPECT_EQ(c.data.path, "/other.h5");
  EXPECT_EQ(c.train.lr, 3e-3);
  EXPECT_EQ(c.run.name, "x1");
  EXPECT_EQ(c.run.out_dir, "runs/x1");
  EXPECT_EQ(c.eval.sequences, 5);
  // A section the file does not have at all is created by the override.
  EXPECT_EQ(parse_config(kMinimal, {"checkpoint.keep=9"}).checkpoint.keep, 9);
}

TEST(Config, BadOverridesNameTheKey) {
  expect_usage_error([] { parse_config(kMinimal, {"model.d_modl=3"}); },
                     {"model.d_modl", "unknown key", "model.d_model"});
  expect_usage_error([] { parse_config(kMinimal, {"nosuch.key=3"}); }, {"nosuch.key"});
  expect_usage_error([] { parse_config(kMinimal, {"model=3"}); }, {"model", "section"});
  expect_usage_error([] { parse_config(kMinimal, {"model.d_model"}); },
                     {"model.d_model", "key.path=value"});
  expect_usage_error([] { parse_config(kMinimal, {"model.d_model=abc"}); },
                     {"model.d_model", "expected an integer, got 'abc'", "--set"});
  expect_usage_error([] { parse_config(kMinimal, {"run.name=[1,"}); }, {"run.name"});
  expect_usage_error([] { parse_config("model: 5\n" + kMinimal, {"model.d_model=8"}); },
                     {"model", "mapping"});
  // Text YAML would drop: a comment (run.name=a #b set "a") and a second document (the first
  // was taken). Quoted, the '#' is text; a '#' inside a word starts no comment.
  expect_usage_error([] { parse_config(kMinimal, {"run.name=a #b"}); },
                     {"run.name", "'#b' is a YAML comment", "--set 'run.name=\"a #b\"'"});
  expect_usage_error([] { parse_config(kMinimal, {"model.d_model=64 # wide"}); },
                     {"model.d_model", "'# wide' is a YAML comment"});
  expect_usage_error([] { parse_config(kMinimal, {"run.name=a\n---\nb"}); },
                     {"run.name", "2 YAML documents"});
  EXPECT_EQ(parse_config(kMinimal, {"run.name=\"a #b\""}).run.name, "a #b");
  EXPECT_EQ(parse_config(kMinimal, {"run.name=a#b"}).run.name, "a#b");
}

Config every_field_changed() {
  Config c = parse_config(kEveryKey);
  c.run.name = "name: with # odd 'chars' and \"quotes\"";
  c.run.seed = 18446744073709551615ull;  // the largest seed
  c.model.norm_eps = 0.1 + 0.2;          // not exactly representable in short decimal
  c.train.lr = 1.0 / 3.0;
  c.train.min_lr = 1e-300;
  c.data.path = "null";  // a string that looks like YAML null
  return c;
}

TEST(Config, ToYamlRoundTrips) {
  for (const Config& c :
       {parse_config(kMinimal), parse_config(kEveryKey), every_field_changed(),
        parse_config(kMinimal, {"moe.capacity_factor=2", "run.name=yes", "run.out_dir=''"})}) {
    const std::string y = to_yaml(c);
    const Config back = parse_config(y, {}, "<to_yaml>");
    EXPECT_TRUE(back == c) << y;
    EXPECT_EQ(to_yaml(back), y);
  }
}

TEST(Config, ToYamlFloatsAreYaml11Floats) {
  // PyYAML reads "1e-05" as a string; the dump must say "1.0e-05".
  const std::string y = to_yaml(parse_config(kMinimal, {"train.min_lr=1e-20"}));
  EXPECT_NE(y.find("norm_eps: 1.0e-05\n"), std::string::npos) << y;
  EXPECT_NE(y.find("min_lr: 1.0e-20\n"), std::string::npos) << y;
  EXPECT_NE(y.find("lr: 0.001\n"), std::string::npos) << y;
}

TEST(Config, ToYamlHasEveryKeyOnce) {
  const YAML::Node root = YAML::Load(to_yaml(parse_config(kEveryKey)));
  size_t leaves = 0;
  for (const auto& kv : root) leaves += kv.second.IsMap() ? kv.second.size() : 1;
  const std::vector<std::string> keys = config_key_paths();
  EXPECT_EQ(leaves, keys.size());
  // SPEC section 7's list (52 keys, counted by hand) plus switchyard's documented additions.
  const std::vector<std::string> additions = {"parallel.timeout_s"};
  EXPECT_EQ(keys.size(), 52u + additions.size());
  for (const auto& k : additions)
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  for (const auto& k : keys) {
    const size_t dot = k.find('.');
    const YAML::Node n =
        dot == std::string::npos ? root[k] : root[k.substr(0, dot)][k.substr(dot + 1)];
    EXPECT_TRUE(n.IsDefined()) << k;
  }
}

TEST(Config, UnknownKeysAreRejectedWithASuggestion) {
  expect_usage_error([] { parse_config("model: {d_modle: 64}\n" + kMinimal); },
                     {"model.d_modle", "unknown key", "did you mean 'd_model'"});
  expect_usage_error([] { parse_config("modle: {d_model: 64}\n" + kMinimal); },
                     {"modle", "did you mean 'model'"});
  expect_usage_error([] { parse_config("d_model: 64\n" + kMinimal); },
                     {"d_model", "did you mean 'model.d_model'"});
  expect_usage_error([] { parse_config("moe: {experts_count: 8}\n" + kMinimal); },
                     {"moe.experts_count", "unknown key"});
  // A key of another section, in a file and with --set (the file's said only "unknown key").
  expect_usage_error([] { parse_config("model: {num_experts: 8}\n" + kMinimal); },
                     {"model.num_experts", "did you mean 'moe.num_experts'"});
  expect_usage_error([] { parse_config(kMinimal, {"train.seed=1"}); },
                     {"train.seed", "did you mean 'run.seed'"});
  expect_usage_error([] { parse_config("model: {d_model: 64, d_model: 32}\n" + kMinimal); },
                     {"model.d_model", "duplicate"});
  expect_usage_error([] { parse_config("model: [1, 2]\n" + kMinimal); }, {"model", "a list"});
  expect_usage_error([] { parse_config("- a\n- b\n"); }, {"<config>", "mapping"});
  try {
    parse_config("foo: 1\n" + kMinimal);
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()).find("did you mean"), std::string::npos) << e.what();
  }
}

TEST(Config, WrongTypesNameKeyValueAndExpectation) {
  struct Case {
    std::string yaml, key, expect;
  };
  const std::vector<Case> cases = {
      {"model: {d_model: abc}", "model.d_model", "expected an integer, got 'abc'"},
      {"model: {d_model: 1.5}", "model.d_model", "expected an integer, got '1.5'"},
      {"model: {d_model: 64abc}", "model.d_model", "got '64abc'"},
      {"model: {d_model: }", "model.d_model", "got nothing"},
      {"model: {d_model: [64]}", "model.d_model", "got a list"},
      {"run: {seed: -1}", "run.seed", "non-negative integer"},
      // An integer out of range is said as such (it read "expected an integer").
      {"model: {d_model: 9223372036854775808}", "model.d_model",
       "expected an integer from -9223372036854775808 to 9223372036854775807, got "
       "'9223372036854775808'"},
      {"run: {seed: 18446744073709551616}", "run.seed",
       "expected an integer from 0 to 18446744073709551615"},
      {"model: {norm_eps: small}", "model.norm_eps", "expected a finite number, got 'small'"},
      {"model: {norm_eps: .nan}", "model.norm_eps", "finite number"},
      {"model: {tie_embeddings: maybe}", "model.tie_embeddings", "expected true or false"},
      {"moe: {capacity_factor: lots}", "moe.capacity_factor", "null (dropless) or a positive"},
      {"moe: {aux_loss_scope: batch}", "moe.aux_loss_scope", "sequence|micro_batch, got 'batch'"},
      {"parallel: {a2a: ring}", "parallel.a2a", "auto|flat|hierarchical"},
      {"parallel: {internode: nccl}", "parallel.internode", "ucx|mpi"},
      {"train: {precision: fp16}", "train.precision", "fp32|bf16"},
      {"device: gpu", "device", "cpu|cuda, got 'gpu'"},
      {"run: {name: {a: 1}}", "run.name", "expected a string, got a mapping"},
      // A quoted or !!str scalar is a string, as any YAML reader takes it: it was read as 64.
      {"model: {d_model: \"64\"}", "model.d_model",
       "expected an integer, got the string '64' (quoted or tagged)"},
      {"model: {d_model: !!str 64}", "model.d_model", "got the string '64'"},
      {"model: {norm_eps: '1e-5'}", "model.norm_eps", "got the string '1e-5'"},
      {"model: {tie_embeddings: \"true\"}", "model.tie_embeddings", "got the string 'true'"},
      {"moe: {capacity_factor: '1.25'}", "moe.capacity_factor", "got the string '1.25'"},
      {"moe: {route_groups: '2'}", "moe.route_groups", "got the string '2'"},
      // !!float 32 is 32.0 to every YAML reader (fuzz: an integer key read it as 32).
      {"model: {d_model: !!float 32}", "model.d_model",
       "expected an integer, got '32' (tagged !!float)"},
      // !!binary is bytes in base64, not the text (fuzz: run.name was the base64 text).
      {"run: {name: !!binary aGVsbG8=}", "run.name",
       "expected a string, got 'aGVsbG8=' (tagged !!binary)"},
      // "+-" was read as "-": +-64 as -64, +-0 as 0.
      {"eval: {every: +-0}", "eval.every", "expected an integer, got '+-0'"},
      {"model: {norm_eps: +-1e-5}", "model.norm_eps", "got '+-1e-5'"},
  };
  for (const auto& c : cases)
    expect_usage_error([&] { parse_config(c.yaml + "\n" + kMinimal, {}, "my.yaml"); },
                       {"my.yaml", c.key, c.expect, "(line 1)"}, c.yaml);
}

TEST(Config, SigmoidScoringHasNoZLossByDefault) {
  // SPEC section 1: under sigmoid the z-loss default is 0; softmax keeps 1e-3.
  EXPECT_EQ(parse_config(kMinimal, {"moe.score=sigmoid"}).moe.z_loss_coeff, 0.0);
  EXPECT_EQ(parse_config(kMinimal, {"moe.score=softmax"}).moe.z_loss_coeff, 1e-3);
  EXPECT_EQ(parse_config(kMinimal, {"moe.score=sigmoid", "moe.z_loss_coeff=0"}).moe.score,
            Score::kSigmoid);
  // Set explicitly with sigmoid: refused, naming both keys.
  expect_usage_error(
      [] { parse_config(kMinimal + "moe:\n  z_loss_coeff: 0.002\n", {"moe.score=sigmoid"}); },
      {"moe.z_loss_coeff: got 0.002", "moe.score: sigmoid"});
}

TEST(Config, RouteGroupsTakesACountOrNodes) {
  const Config n = parse_config(kMinimal, {"moe.route_groups=nodes", "moe.route_groups_topk=2"});
  EXPECT_TRUE(n.moe.route_groups.nodes);
  EXPECT_EQ(n.moe.route_groups_topk, 2);
  EXPECT_TRUE(parse_config(to_yaml(n)) == n);  // `nodes` survives the resolved dump
  const Config c = parse_config(kMinimal, {"moe.route_groups=2"});
  EXPECT_FALSE(c.moe.route_groups.nodes);
  EXPECT_EQ(c.moe.route_groups.count, 2);
  EXPECT_TRUE(parse_config(to_yaml(c)) == c);
  expect_usage_error([] { parse_config(kMinimal, {"moe.route_groups=racks"}); },
                     {"moe.route_groups", "an integer or 'nodes'", "'racks'"});
}

// `nodes` becomes the layout's node count, under the rules of a numeric count (4 experts top-2).
TEST(Config, RouteGroupsNodesResolvesToTheNodeCount) {
  const Config n = parse_config(kMinimal, {"moe.route_groups=nodes"});
  const Config r = resolve_route_groups(n, 2);
  EXPECT_FALSE(r.moe.route_groups.nodes);
  EXPECT_EQ(r.moe.route_groups.count, 2);
  EXPECT_EQ(resolve_route_groups(n, 1).moe.route_groups.count, 1);
  // Numeric counts are left alone whatever the nodes.
  const Config c = parse_config(kMinimal, {"moe.route_groups=2"});
  EXPECT_TRUE(resolve_route_groups(c, 4) == c);
  // 4 nodes of one expert each cannot hold a top-2 in one node; 3 nodes do not divide 4 experts.
  expect_usage_error([&] { resolve_route_groups(n, 4); },
                     {"moe.route_groups_topk: got 1", "the 4 nodes the expert layout spans"});
  expect_usage_error([&] { resolve_route_groups(n, 3); }, {"moe.num_experts: got 4", "3 nodes"});
  // M = 2 of 2 nodes; on one node (R = 1, plain top-k, as a numeric 1) M is not used.
  const Config n2 = parse_config(kMinimal, {"moe.route_groups=nodes", "moe.route_groups_topk=2"});
  EXPECT_EQ(resolve_route_groups(n2, 2).moe.route_groups.count, 2);
  EXPECT_EQ(resolve_route_groups(n2, 1).moe.route_groups.count, 1);
  const Config n4 = parse_config(kMinimal, {"moe.route_groups=nodes", "moe.route_groups_topk=4"});
  expect_usage_error([&] { resolve_route_groups(n4, 2); },
                     {"moe.route_groups_topk: got 4", "the 2 nodes"});
}

// `parallel.a2a: auto` (the default) is hierarchical exactly when the expert layout spans nodes;
// the resolved copy never says auto, and an explicit choice stays as it is.
TEST(Config, A2aAutoResolvesByWhetherTheExpertsSpanNodes) {
  const Config a = parse_config(kMinimal);
  ASSERT_EQ(a.parallel.a2a, A2aKind::kAuto);
  EXPECT_EQ(resolve_a2a(a, true).parallel.a2a, A2aKind::kHierarchical);
  EXPECT_EQ(resolve_a2a(a, false).parallel.a2a, A2aKind::kFlat);
  EXPECT_NE(to_yaml(resolve_a2a(a, false)).find("a2a: flat"), std::string::npos);
  for (bool spans : {false, true}) {
    const Config f = parse_config(kMinimal, {"parallel.a2a=flat"});
    const Config h = parse_config(kMinimal, {"parallel.a2a=hierarchical"});
    EXPECT_TRUE(resolve_a2a(f, spans) == f);
    EXPECT_TRUE(resolve_a2a(h, spans) == h);
    EXPECT_EQ(a2a_is_hierarchical(A2aKind::kFlat, spans), false);
    EXPECT_EQ(a2a_is_hierarchical(A2aKind::kHierarchical, spans), true);
    EXPECT_EQ(a2a_is_hierarchical(A2aKind::kAuto, spans), spans);
  }
}

TEST(Config, SyntaxErrorsGiveTheLine) {
  expect_usage_error(
      [] { parse_config("run:\n  name: a\nmodel:\n  d_model: [1, 2\n", {}, "s.yaml"); },
      {"s.yaml", "YAML syntax error at line"});
  expect_usage_error([] { parse_config("run: {name: a\n", {}, "s.yaml"); }, {"s.yaml", "line"});
  expect_usage_error([] { parse_config(kMinimal + "---\nrun: {name: b}\n", {}, "s.yaml"); },
                     {"s.yaml", "2 YAML documents"});
}

// A quote opened and not closed, in a file that ends with a newline (nearly all do): yaml-cpp read
// the rest of the file into the value, without an error (QA: `name: "tiny` trained the defaults
// under a run name of the whole file's text, exit 0). Refused where the text ends, saying what it
// likely is; single quotes, a --set value, and blank lines or CRLF at the end alike.
TEST(Config, AQuoteNotClosedIsASyntaxError) {
  const std::string rest = "model:\n  d_model: 32\n  n_layers: 1\n";
  for (const char* end : {"\n", "\n\n  \n", "\r\n"}) {
    for (const char* q : {"\"", "'"}) {
      const std::string text = "run:\n  name: " + std::string(q) + "tiny\n  seed: 7\n" + rest;
      expect_usage_error([&] { parse_config(text.substr(0, text.size() - 1) + end, {}, "q.yaml"); },
                         {"q.yaml: YAML syntax error at line", "a quote opened and not closed"});
    }
  }
  expect_usage_error([] { parse_config(kMinimal, {"run.name=\"abc\n"}, "q.yaml"); },
                     {"--set run.name=", "a quote opened and not closed"});
  // Closed quotes, and a file without the final newline, still read.
  EXPECT_EQ(parse_config("run:\n  name: \"tiny\"\n  seed: 7\n" + rest + kMinimal).run.seed, 7);
  const std::string closed = kMinimal + "run:\n  name: 'a b'\n";
  EXPECT_EQ(parse_config(closed.substr(0, closed.size() - 1)).run.name, "a b");
  // A double-quoted value left open that ends in a backslash (yaml-cpp: "unknown escape
  // character" once the newline is gone) is the same mistake (review).
  expect_usage_error([&] { parse_config(kMinimal + "run:\n  name: \"q3\\\n", {}, "q.yaml"); },
                     {"q.yaml: YAML syntax error", "a quote opened and not closed"});
  // A text that parses means what it says: a block scalar at the end keeps its trailing space,
  // as it does elsewhere in the file (review: the trimmed text was the one read, "x.h5").
  EXPECT_EQ(parse_config("data:\n  path: |-\n    x.h5 \n").data.path, "x.h5 ");
  EXPECT_EQ(parse_config("data:\n  path: |-\n    x.h5 \nrun:\n  seed: 1\n").data.path, "x.h5 ");
}

// What YAML 1.2 does not allow in a stream, which yaml-cpp read without a word (QA: a NUL in a
// run name became "\b ", and the run made a directory named with it; a byte 0xff and a NUL before
// junk in data.path were accepted too). Refused with the line and column; tabs, CRLF, a
// byte-order mark and UTF-8 text stay fine.
TEST(Config, ControlCharactersAndInvalidUtf8AreRefusedWithTheirPlace) {
  using namespace std::string_literals;
  expect_usage_error([] { parse_config("run:\n  name: a\0b\n"s + kMinimal, {}, "n.yaml"); },
                     {"n.yaml: a NUL byte at line 2, column 10"});
  expect_usage_error(
      [] {
        parse_config(kMinimal +
                         "run:\n  name: a\xff"
                         "b\n",
                     {}, "u.yaml");
      },
      {"u.yaml: byte 0xff, not UTF-8 at line 4, column 10"});
  expect_usage_error([] { parse_config("run: {name: a\bb}\n" + kMinimal, {}, "c.yaml"); },
                     {"c.yaml: the control character U+0008 at line 1, column 14"});
  expect_usage_error([] { parse_config(kMinimal, {"run.name=a\xc3"}); },
                     {"--set run.name=", "run.name: byte 0xc3, not UTF-8 at byte 2 of the value"});
  expect_usage_error([] { parse_config(kMinimal, {"run.name=a\x1b[31m"}); },
                     {"--set run.name=a\\x1B[31m: ",  // the byte escaped, not sent to the terminal
                      "run.name: the control character U+001B at byte 2 of the value"});
  expect_usage_error([] { parse_config(kMinimal, {"run.name=ab\ncd\x01"}); },
                     {"the control character U+0001 at byte 6 of the value"});
  const std::string fine = "\xef\xbb\xbfrun:\r\n  name: caf\xc3\xa9\t\xe6\x97\xa5\r\n" + kMinimal;
  EXPECT_EQ(parse_config(fine).run.name, "caf\xc3\xa9\t\xe6\x97\xa5");
  EXPECT_EQ(parse_config(kMinimal, {"run.name=na\xc3\xafve"}).run.name, "na\xc3\xafve");
}

// A checkpoint's stored config, written by an older switchyard that did not check the bytes,
// is read with each character YAML does not allow as U+FFFD (each byte of a broken sequence
// once); the user's own config still refuses them (above).
TEST(Config, AStoredConfigReadsBytesYamlDoesNotAllowAsReplacementCharacters) {
  using namespace std::string_literals;
  const std::string bad = "run:\n  name: caf\xe9\xc3-\0x\x1b\xc3\xa9\n"s + kMinimal;
  expect_usage_error([&] { parse_config(bad, {}, "b.yaml"); }, {"b.yaml: byte 0xe9"});
  const Config c = parse_stored_config(bad, "stored");
  EXPECT_EQ(c.run.name, "caf\xef\xbf\xbd\xef\xbf\xbd-\xef\xbf\xbdx\xef\xbf\xbd\xc3\xa9");
  size_t replaced = 0;
  EXPECT_EQ(replace_yaml_text_problems("a\xff\tb\r\n\xe6\x97\xa5", &replaced),
            "a\xef\xbf\xbd\tb\r\n\xe6\x97\xa5");
  EXPECT_EQ(replaced, 1u);
}

TEST(Config, FilesMissingEmptyOrDirectories) {
  test::TempDir dir;
  expect_usage_error([&] { load_config(dir.file("nope.yaml")); }, {"nope.yaml", "not found"});
  expect_usage_error([&] { load_config(dir.path().string()); }, {"is a directory"});
  std::ofstream(dir.file("empty.yaml")).flush();
  expect_usage_error([&] { load_config(dir.file("empty.yaml")); }, {"empty.yaml", "data.path"});
  std::ofstream(dir.file("ok.yaml")) << "model:\n  d_model: 96\n" << kMinimal;
  const Config c = load_config(dir.file("ok.yaml"), {"model.n_heads=3"});
  EXPECT_EQ(c.model.d_model, 96);
  EXPECT_EQ(c.model.n_heads, 3);
  std::ofstream(dir.file("bad.yaml")) << "model:\n  d_model: 96\n  n_heads: x\n" << kMinimal;
  expect_usage_error([&] { load_config(dir.file("bad.yaml")); },
                     {"bad.yaml", "model.n_heads", "'x'", "(line 3)"});
}

// read_text_file, which reads the config, prompt, cluster and placement files: each way a file
// cannot be read is said naming it; a FIFO (a shell's <(...), /dev/stdin) is read as it comes
// where one process reads the file, and refused where every rank does (one rank got the text,
// the others waited in open(2) until the job's timeout; review); a device is no text file (it
// read /dev/zero until memory ran out).
TEST(TextFile, EachProblemIsNamedAndAFifoIsReadWhereOneProcessReadsIt) {
  using namespace std::string_literals;
  test::TempDir dir;
  expect_usage_error([&] { read_text_file(dir.file("nope.yaml"), "cluster file", "x"); },
                     {"cluster file '" + dir.file("nope.yaml") + "' not found"});
  expect_usage_error(
      [&] { read_text_file(dir.path().string(), "--prompt-file", "a text file"); },
      {"--prompt-file '" + dir.path().string() + "' is a directory, expected a text file"});
  std::ofstream(dir.file("empty")).flush();
  EXPECT_EQ(read_text_file(dir.file("empty"), "config file", "x"), "");
  const std::string text = "a: 1\n\0b\xff\n"s;
  std::ofstream(dir.file("bytes"), std::ios::binary) << text;
  EXPECT_EQ(read_text_file(dir.file("bytes"), "config file", "x"), text);

  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Refused, in a child with an alarm: a reader that opened the FIFO would wait for a writer for
  // good, and the test with it.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(10);
    try {
      read_text_file(fifo, "expert placement file", "a placement");
    } catch (const UsageError& e) {
      const std::string want = "'" + fifo + "' is a FIFO, expected a placement (a regular file)";
      ::_exit(std::string(e.what()).find(want) != std::string::npos ? 0 : 3);
    }
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the regular-file read of a FIFO: status " << status << " (3: another message, 4: read, "
      << "signal 14: waited in open)";
  std::thread writer([&] { std::ofstream(fifo, std::ios::binary) << text; });
  // Whatever the read does, the writer is let go (a reader that never opened the FIFO left it
  // blocked in open, and the thread's destructor ended the whole test binary; review).
  struct Release {
    std::thread& t;
    const std::string& fifo;
    ~Release() {
      const int fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
      t.join();
      if (fd >= 0) ::close(fd);
    }
  } release{writer, fifo};
  EXPECT_EQ(read_text_file(fifo, "config file", "x", TextSource::kFileOrStream), text);

  expect_usage_error(
      [&] { read_text_file("/dev/zero", "cluster file", "a YAML file"); },
      {"cluster file '/dev/zero' is a device, expected a YAML file (a regular file)"});
  expect_usage_error(
      [&] {
        read_text_file("/dev/zero", "--prompt-file", "a text file", TextSource::kFileOrStream);
      },
      {"--prompt-file '/dev/zero' holds more than 64 MiB: not a text file"});
}

TEST(Config, ShippedConfigsLoad) {
  for (const char* name : {"tiny.yaml", "small.yaml"}) {
    const Config c = load_config((kRepo / "configs" / name).string());
    EXPECT_EQ(c.data.path, "data/licenses.h5") << name;
    EXPECT_TRUE(parse_config(to_yaml(c)) == c) << name;
  }
}

TEST(Config, ReferenceDocumentsEveryKey) {
  std::ifstream in(kRepo / "configs" / "README.md");
  ASSERT_TRUE(in) << "configs/README.md missing";
  std::stringstream text;
  text << in.rdbuf();
  for (const auto& k : config_key_paths()) {
    const std::string leaf = k.substr(k.find('.') + 1);
    EXPECT_NE(text.str().find("`" + leaf + "`"), std::string::npos) << k << " undocumented";
  }
}

TEST(Config, EnumSpellings) {
  EXPECT_STREQ(to_string(AuxScope::kMicroBatch), "micro_batch");
  EXPECT_STREQ(to_string(Score::kSigmoid), "sigmoid");
  EXPECT_STREQ(to_string(A2aKind::kHierarchical), "hierarchical");
  EXPECT_STREQ(to_string(InternodeKind::kMpi), "mpi");
  EXPECT_STREQ(to_string(Precision::kBf16), "bf16");
  EXPECT_STREQ(to_string(Device::kCuda), "cuda");
}

}  // namespace
}  // namespace sy

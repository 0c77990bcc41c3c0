// The config's bounds (SPEC section 7): every range rule, each bound accepted exactly and refused
// one past, the bounds of how a run runs (run.name under runs/, eval.sample_tokens) that only the
// config a command starts from must meet, and range messages that show the value and the --set
// that gave it.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/temp_dir.h"
#include "input/config_test_util.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/core/paths.h"

namespace sy {
namespace {

using test::expect_usage_error;
using test::kMinimal;

TEST(Config, EveryRangeRuleIsEnforced) {
  struct Case {
    std::vector<std::string> set;
    std::string key;
  };
  const std::vector<Case> cases = {
      {{"run.name=''"}, "run.name"},
      {{"model.vocab_size=1"}, "model.vocab_size"},
      {{"model.vocab_size=3000000000"}, "model.vocab_size"},
      {{"model.d_model=0"}, "model.d_model"},
      {{"model.n_layers=0"}, "model.n_layers"},
      {{"model.n_heads=-2"}, "model.n_heads"},
      {{"model.seq_len=0"}, "model.seq_len"},
      {{"model.norm_eps=0"}, "model.norm_eps"},
      {{"model.rope_theta=-1"}, "model.rope_theta"},
      {{"model.d_model=30"}, "model.d_model"},  // 30 % 4 != 0
      {{"model.d_model=36"}, "model.d_model"},  // head dim 9 is odd
      {{"moe.num_experts=0"}, "moe.num_experts"},
      {{"moe.top_k=0"}, "moe.top_k"},
      {{"moe.top_k=5"}, "moe.top_k"},  // > num_experts 4
      {{"moe.ffn_hidden=0"}, "moe.ffn_hidden"},
      {{"moe.shared_experts=-1"}, "moe.shared_experts"},
      {{"moe.capacity_factor=0"}, "moe.capacity_factor"},
      {{"moe.capacity_factor=-1.5"}, "moe.capacity_factor"},
      {{"moe.aux_loss_coeff=-0.1"}, "moe.aux_loss_coeff"},
      {{"moe.z_loss_coeff=-1e-3"}, "moe.z_loss_coeff"},
      {{"moe.bias_update_rate=-1"}, "moe.bias_update_rate"},
      {{"moe.overlap_chunks=0"}, "moe.overlap_chunks"},
      {{"moe.gate_scale=0"}, "moe.gate_scale"},
      {{"moe.route_groups=0"}, "moe.route_groups"},
      {{"moe.route_groups_topk=0"}, "moe.route_groups_topk"},
      {{"moe.route_groups=3"}, "moe.num_experts"},                                   // 4 % 3
      {{"moe.route_groups=2", "moe.route_groups_topk=3"}, "moe.route_groups_topk"},  // M > R
      {{"moe.route_groups=4", "moe.top_k=2"}, "moe.route_groups_topk"},       // M*E/R = 1 < k
      {{"moe.num_experts=128", "moe.route_groups=128"}, "moe.route_groups"},  // > 64 groups
      {{"moe.score=sigmoid", "moe.z_loss_coeff=1e-3"}, "moe.z_loss_coeff"},
      {{"parallel.tp=0"}, "parallel.tp"},
      {{"parallel.ep=0"}, "parallel.ep"},
      {{"parallel.etp=0"}, "parallel.etp"},
      {{"parallel.ranks_per_node=-1"}, "parallel.ranks_per_node"},
      {{"parallel.ep=3"}, "moe.num_experts"},  // 4 % 3
      {{"parallel.tp=3"}, "model.n_heads"},    // 4 % 3
      {{"parallel.etp=3"}, "moe.ffn_hidden"},  // 128 % 3
      {{"train.steps=-1"}, "train.steps"},
      {{"train.global_batch=0"}, "train.global_batch"},
      {{"train.micro_batch=0"}, "train.micro_batch"},
      {{"train.micro_batch=3"}, "train.global_batch"},   // 8 % 3
      {{"train.micro_batch=16"}, "train.global_batch"},  // 8 % 16
      {{"train.lr=0"}, "train.lr"},
      {{"train.min_lr=-1e-5"}, "train.min_lr"},
      {{"train.min_lr=0.01"}, "train.min_lr"},  // > lr 1e-3
      {{"train.warmup_steps=-1"}, "train.warmup_steps"},
      {{"train.weight_decay=-0.1"}, "train.weight_decay"},
      {{"train.grad_clip=-1"}, "train.grad_clip"},
      {{"train.precision=bf16"}, "train.precision"},  // device cpu
      {{"data.path="}, "data.path"},
      {{"data.path=''"}, "data.path"},
      {{"eval.every=-1"}, "eval.every"},
      {{"eval.sequences=0"}, "eval.sequences"},
      {{"eval.sample_tokens=-1"}, "eval.sample_tokens"},
      {{"checkpoint.every=-5"}, "checkpoint.every"},
      {{"checkpoint.keep=0"}, "checkpoint.keep"},
      {{"log.every=0"}, "log.every"},
      {{"model.seq_len=2147483648"}, "model.seq_len"},     // seq_len + 1 overflowed at 2^63 - 1
      {{"parallel.timeout_s=0.5"}, "parallel.timeout_s"},  // ended every run at MPI start
  };
  for (const auto& c : cases) {
    expect_usage_error([&] { parse_config(kMinimal, c.set, "base.yaml"); },
                       {"base.yaml", c.key + ": got "}, c.set[0]);
  }
  // The boundary values themselves are accepted.
  EXPECT_NO_THROW(
      parse_config(kMinimal, {"moe.top_k=4", "train.warmup_steps=1000", "train.steps=0",
                              "train.min_lr=1e-3", "train.micro_batch=8", "model.vocab_size=2",
                              "moe.z_loss_coeff=0", "eval.every=0", "train.grad_clip=0"}));
  EXPECT_NO_THROW(parse_config(kMinimal, {"train.precision=bf16", "device=cuda"}));
  // A core tag that says the type is the type: !!int 64 is 64.
  EXPECT_EQ(parse_config("model: {d_model: !!int 64}\n" + kMinimal).model.d_model, 64);
  // Group-limited routing at its bounds: M = R, and M * E / R == k.
  EXPECT_NO_THROW(parse_config(kMinimal, {"moe.route_groups=4", "moe.route_groups_topk=4"}));
  EXPECT_NO_THROW(parse_config(kMinimal, {"moe.route_groups=2", "moe.route_groups_topk=1"}));
}

// SPEC section 7's ranges at their exact bounds: the bound itself is accepted, one step past it is
// refused naming the key (a '<' written as '<=' shows on one side only).
TEST(Config, RangeBoundsAreAcceptedExactlyAndRefusedOnePast) {
  for (const std::vector<std::string>& set : std::vector<std::vector<std::string>>{
           {"parallel.timeout_s=0"},        // 0 disables the watchdog
           {"parallel.timeout_s=1000000"},  // the largest timeout
           {"parallel.timeout_s=1"},        // the smallest one
           {"model.seq_len=2147483647"},
           {"model.vocab_size=2147483647"},  // the largest int32 token id + 1
           {"moe.num_experts=64", "moe.route_groups=64", "moe.route_groups_topk=2"},  // 64 groups
           {"checkpoint.keep=1"},
           {"eval.sequences=1"},
           {"log.every=1"},
           {"parallel.ranks_per_node=0"},
           {"parallel.ranks_per_node=2147483647"},
           {"eval.sample_tokens=100000"},
           {"moe.gate_scale=3.4e38"},
           {"run.name=sweeps/lr1"},  // nests under runs/
           {"moe.shared_experts=0"},
           {"train.micro_batch=1"}})
    EXPECT_NO_THROW(parse_config(kMinimal, set)) << set[0];
  const std::vector<std::pair<std::string, std::string>> past = {
      {"parallel.timeout_s=1000000.5", "parallel.timeout_s"},
      {"parallel.timeout_s=-0.5", "parallel.timeout_s"},
      {"model.vocab_size=2147483648", "model.vocab_size"},
      {"checkpoint.keep=0", "checkpoint.keep"},
      {"eval.sequences=0", "eval.sequences"},
      // MPI counts ranks in int: 2^32 + 1 was taken as 1 (found by QA).
      {"parallel.ranks_per_node=4294967297", "parallel.ranks_per_node"},
      {"parallel.ranks_per_node=9223372036854775807", "parallel.ranks_per_node"},
      {"parallel.tp=2147483648", "parallel.tp"},
      // Infinite in fp32: exit 3 at step 1 for a config error.
      {"moe.gate_scale=1e300", "moe.gate_scale"},
  };
  // Pairs, not structured bindings: a lambda may capture those only from clang 16 on (Debian 12
  // ships clang 14).
  for (const auto& p : past)
    expect_usage_error([&] { parse_config(kMinimal, {p.first}, "base.yaml"); },
                       {p.second + ": got "}, p.first);
  expect_usage_error(
      [&] {
        parse_config(kMinimal, {"moe.num_experts=65", "moe.route_groups=65", "moe.top_k=1"});
      },
      {"moe.route_groups: got 65", "at most 64"}, "65 groups");
}

// How a run runs, not what its model is: refused for the config a command starts from
// (load_config), not for a checkpoint's stored config, which parse_config reads (a checkpoint of
// an earlier version with run.name ../x or a large eval.sample_tokens still samples and exports).
TEST(Config, RunBoundsAreTheStartingConfigsOnly) {
  test::TempDir dir;
  const std::string file = dir.file("c.yaml");
  std::ofstream(file) << kMinimal;
  for (const auto& p : std::vector<std::pair<std::string, std::string>>{
           // Rank 0 drew the sample while the others waited, SIGTERM unheard (1e9 ran minutes).
           {"eval.sample_tokens=100001", "eval.sample_tokens"},
           // runs/<name> outside runs/.
           {"run.name=../../escape", "run.name"},
           {"run.name=/abs/path", "run.name"}}) {
    const std::string& set = p.first;
    // The --set is named, as for every other key (QA: this check alone sent the user to the file).
    expect_usage_error([&] { load_config(file, {set}); },
                       {file, p.second + ": got ", "(from --set " + set}, set);
    EXPECT_NO_THROW(parse_config(kMinimal, {set}, "a stored config")) << set;
  }
  EXPECT_NO_THROW(load_config(file, {"eval.sample_tokens=100000", "run.name=sweeps/lr1"}));
  // A part of the name past a file name's 255 bytes (QA: a 10^6-byte name failed as run.out_dir,
  // echoed whole on one line): named, its value cut to its start and length.
  expect_usage_error([&] { load_config(file, {"run.name=x/" + std::string(256, 'a')}); },
                     {"run.name: got 'x/aaa", "... (258 characters)', expected at most 255 bytes"});
  EXPECT_NO_THROW(load_config(file, {"run.name=" + std::string(255, 'a') + "/b"}));
  // With run.out_dir set, the name names no directory: any of these is only a name.
  for (const std::string& name :
       {std::string("../../escape"), std::string("/abs/path"), std::string(256, 'a')})
    EXPECT_NO_THROW(load_config(file, {"run.name=" + name, "run.out_dir=" + dir.file("out")}))
        << name;
  // The --set that gave it is cut the same way (review: it was echoed whole, 100 KB on a line).
  try {
    load_config(file, {"run.name=" + std::string(100000, 'a')});
    ADD_FAILURE() << "a 100000-byte run.name was accepted";
  } catch (const UsageError& e) {
    EXPECT_LT(std::string(e.what()).size(), 1000u) << std::string(e.what()).substr(0, 300);
    EXPECT_NE(std::string(e.what()).find("(from --set run.name=aaa"), std::string::npos);
  }
  expect_usage_error(
      [&] { make_directories("run.out_dir", dir.file(std::string(100000, 'd'))); },
      {"run.out_dir '", "... (", "characters)' cannot be created: File name too long"});
}

TEST(Config, ValueInRangeMessageShowsTheValue) {
  expect_usage_error([] { parse_config(kMinimal, {"moe.top_k=5"}); },
                     {"moe.top_k: got 5", "moe.num_experts (4)"});
  expect_usage_error([] { parse_config(kMinimal, {"model.d_model=30"}); },
                     {"model.d_model: got 30", "model.n_heads (4)"});
}

// A range error names the --set that gave a value it names, and only those: the file's line is
// not where to look for a command-line value.
TEST(Config, RangeErrorsNameTheSetThatGaveTheValue) {
  expect_usage_error([] { parse_config(kMinimal, {"moe.gate_scale=0"}); },
                     {"moe.gate_scale: got 0", "(from --set moe.gate_scale=0)"});
  expect_usage_error(
      [] {
        parse_config(kMinimal, {"moe.num_experts=2", "moe.top_k=3", "run.seed=5"});
      },
      {"moe.top_k: got 3", "(from --set moe.num_experts=2; --set moe.top_k=3)"});
  try {
    parse_config("moe:\n  gate_scale: 0\n" + kMinimal, {"moe.top_k=2"});
    ADD_FAILURE() << "gate_scale 0 accepted";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()).find("--set"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sy

// Resuming with another config: model-shape keys are refused by name, everything else is listed.
#include <gtest/gtest.h>

#include "src/ckpt/compat.h"
#include "src/config/config.h"
#include "src/core/error.h"

namespace {

using namespace sy;

Config base() {
  Config c;
  c.data.path = "tokens.h5";
  c.run.out_dir = "runs/x";
  return c;
}

TEST(CkptCompat, SameConfigHasNoChanges) {
  const auto d = ckpt::diff_configs(to_yaml(base()), to_yaml(base()));
  EXPECT_TRUE(d.incompatible.empty());
  EXPECT_TRUE(d.compatible.empty());
}

// A checkpoint written before runs resolved `parallel.a2a: auto` stores auto; the resolved value
// of the resuming run is not a change to report. A change between resolved values is.
TEST(CkptCompat, AStoredA2aAutoIsNoChange) {
  Config run = resolve_a2a(base(), false);
  ASSERT_EQ(run.parallel.a2a, A2aKind::kFlat);
  EXPECT_TRUE(ckpt::check_resume_config("ck.h5", to_yaml(base()), to_yaml(run)).empty());
  const auto changes =
      ckpt::check_resume_config("ck.h5", to_yaml(resolve_a2a(base(), true)), to_yaml(run));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(ckpt::describe_changes(changes), "parallel.a2a: hierarchical -> flat\n");
}

// Another tool's checkpoint stores its config in its own words: keys left at their defaults,
// YAML's other spellings of a boolean. The same model: no shape change (it was refused as
// "model.tie_embeddings: (absent) in the checkpoint, true in the config"). A real change in
// those words is still refused, by name.
TEST(CkptCompat, AConfigInOtherWordsIsTheSameModel) {
  const std::string minimal =
      "data:\n  path: tokens.h5\nrun:\n  out_dir: runs/x\nmodel:\n  tie_embeddings: True\n";
  EXPECT_TRUE(ckpt::check_resume_config("ck.h5", minimal, to_yaml(base())).empty());
  Config untied = base();
  untied.model.tie_embeddings = false;
  try {
    ckpt::check_resume_config("ck.h5", minimal, to_yaml(untied));
    ADD_FAILURE() << "an untied head resumed from a tied one";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("model.tie_embeddings: true in the checkpoint, false"),
              std::string::npos)
        << e.what();
  }
}

TEST(CkptCompat, ScheduleCadenceAndLayoutChangesAreAllowedAndListed) {
  Config c = base();
  c.train.steps = 500;
  c.train.lr = 2e-3;
  c.log.every = 7;
  c.parallel.tp = 2;
  c.parallel.ep = 2;
  const auto changes = ckpt::check_resume_config("ck.h5", to_yaml(base()), to_yaml(c));
  std::vector<std::string> keys;
  for (const auto& ch : changes) keys.push_back(ch.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"log.every", "parallel.ep", "parallel.tp", "train.lr",
                                            "train.steps"}));
  EXPECT_EQ(changes.back().old_value, "100");
  EXPECT_EQ(changes.back().new_value, "500");
  EXPECT_NE(ckpt::describe_changes(changes).find("train.steps: 100 -> 500"), std::string::npos);
}

TEST(CkptCompat, EveryModelShapeKeyIsRefusedByName) {
  struct Case {
    const char* key;
    void (*change)(Config&);
  };
  const Case cases[] = {
      {"model.vocab_size", [](Config& c) { c.model.vocab_size = 512; }},
      {"model.d_model", [](Config& c) { c.model.d_model = 128; }},
      {"model.n_layers", [](Config& c) { c.model.n_layers = 3; }},
      {"model.n_heads", [](Config& c) { c.model.n_heads = 8; }},
      {"model.tie_embeddings", [](Config& c) { c.model.tie_embeddings = false; }},
      {"moe.num_experts", [](Config& c) { c.moe.num_experts = 8; }},
      {"moe.ffn_hidden", [](Config& c) { c.moe.ffn_hidden = 96; }},
      {"moe.shared_experts", [](Config& c) { c.moe.shared_experts = 1; }},
  };
  for (const auto& cs : cases) {
    Config c = base();
    cs.change(c);
    c.train.steps = 9;  // a compatible change alongside does not hide the incompatible one
    try {
      ckpt::check_resume_config("runs/x/step_00000010.h5", to_yaml(base()), to_yaml(c));
      ADD_FAILURE() << cs.key << " change accepted";
    } catch (const UsageError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(cs.key), std::string::npos) << msg;
      EXPECT_NE(msg.find("runs/x/step_00000010.h5"), std::string::npos) << msg;
      EXPECT_EQ(msg.find("train.steps"), std::string::npos) << msg;
    }
  }
  EXPECT_EQ(ckpt::model_shape_keys().size(), std::size(cases));
}

TEST(CkptCompat, NotYamlIsAUsageError) {
  EXPECT_THROW(ckpt::diff_configs("a: [1, 2", to_yaml(base())), UsageError);
}

}  // namespace

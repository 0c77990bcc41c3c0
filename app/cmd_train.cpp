// `switchyard train`: load the config, train.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/train/trainer.h"

namespace sy::app {

void add_train_command(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = root.add_subcommand("train", "Train a model from a YAML config");
  cmd->add_option("-c,--config", a->config, "Experiment config (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", a->overrides,
                  "Override a config key, e.g. --set moe.num_experts=8 (repeatable)");
  out.push_back({cmd, [a] {
                   const Config cfg = load_config(a->config, a->overrides);
                   train(cfg, std::cout);
                   return static_cast<int>(kExitOk);
                 }});
}

}  // namespace sy::app

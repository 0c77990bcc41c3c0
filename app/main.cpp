// switchyard: the command line. Parses arguments with CLI11 and calls into src/; turns the
// exception type into the exit code of SPEC section 9.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/core/error.h"
#include "src/data/tokens.h"
#include "src/train/trainer.h"

namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
};

struct PrepareArgs {
  std::vector<std::string> inputs;
  std::string output;
  double val_fraction = 0.1;
};

int run_train(const TrainArgs& a) {
  const sy::Config cfg = sy::load_config(a.config, a.overrides);
  sy::train(cfg, std::cout);
  return sy::kExitOk;
}

int run_prepare(const PrepareArgs& a) {
  sy::PrepareOptions opt;
  opt.inputs = a.inputs;
  opt.output = a.output;
  opt.val_fraction = a.val_fraction;
  const sy::PrepareReport r = sy::prepare_token_file(opt);
  std::cout << "wrote " << a.output << ": " << r.train_tokens << " train / " << r.val_tokens
            << " val tokens from " << a.inputs.size() << " file(s)\n";
  return sy::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"switchyard: a Mixture-of-Experts transformer trainer"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "switchyard 0.1.0");

  TrainArgs train_args;
  auto* train = app.add_subcommand("train", "Train a model from a YAML config");
  train->add_option("-c,--config", train_args.config, "Experiment config (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("--set", train_args.overrides,
                    "Override a config key, e.g. --set moe.num_experts=8 (repeatable)");

  PrepareArgs prep_args;
  auto* data = app.add_subcommand("data", "Token-file tools");
  data->require_subcommand(1);
  auto* prepare = data->add_subcommand(
      "prepare", "Turn text files into a byte-level token file (HDF5, SPEC section 8)");
  prepare->add_option("-i,--input", prep_args.inputs, "Text files, concatenated in order")
      ->required();
  prepare->add_option("-o,--output", prep_args.output, "Token file to write (.h5)")->required();
  prepare
      ->add_option("--val-fraction", prep_args.val_fraction,
                   "Fraction of each input (its end) held out for validation")
      ->check(CLI::Range(0.0, 0.9));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return sy::kExitUsage;
  }

  try {
    if (*train) return run_train(train_args);
    if (*prepare) return run_prepare(prep_args);
    return sy::kExitUsage;
  } catch (const sy::UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return sy::kExitUsage;
  } catch (const sy::NumericalError& e) {
    std::cerr << "numerical failure: " << e.what() << "\n";
    return sy::kExitNumerical;
  } catch (const std::exception& e) {
    std::cerr << "fatal: " << e.what() << "\n";
    return sy::kExitOther;
  }
}

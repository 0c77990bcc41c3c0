// `switchyard data prepare`: text files -> token file (SPEC section 8).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "src/core/error.h"
#include "src/data/tokens.h"

namespace sy::app {

void add_data_commands(CLI::App& root, std::vector<Command>& out) {
  auto opt = std::make_shared<PrepareOptions>();
  auto* data = root.add_subcommand("data", "Token-file tools");
  data->require_subcommand(1);
  auto* prepare = data->add_subcommand(
      "prepare", "Turn text files into a byte-level token file (HDF5, SPEC section 8)");
  prepare->add_option("-i,--input", opt->inputs, "Text files, concatenated in order")->required();
  prepare->add_option("-o,--output", opt->output, "Token file to write (.h5)")->required();
  prepare
      ->add_option("--val-fraction", opt->val_fraction,
                   "Fraction of each input (its end) held out for validation")
      ->check(CLI::Range(0.0, 0.9));
  out.push_back({prepare, [opt] {
                   const PrepareReport r = prepare_token_file(*opt);
                   std::cout << "wrote " << opt->output << ": " << r.train_tokens << " train / "
                             << r.val_tokens << " val tokens from " << opt->inputs.size()
                             << " file(s)\n"
                             << "unigram entropy: train " << r.train_unigram_nats << " nats, val "
                             << r.val_unigram_nats
                             << " nats (a trained model's val_loss must get below this)\n";
                   return static_cast<int>(kExitOk);
                 }});
}

}  // namespace sy::app

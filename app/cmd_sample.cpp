// `switchyard sample`: generate text (or ids) from a checkpoint (src/sample/run.h).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "app/validators.h"
#include "src/core/error.h"
#include "src/sample/run.h"

namespace sy::app {

void add_sample_command(CLI::App& root, std::vector<Command>& out) {
  auto req = std::make_shared<SampleRequest>();
  auto prompt = std::make_shared<std::string>();
  auto id_list = std::make_shared<std::string>();
  auto* cmd = root.add_subcommand(
      "sample",
      "Generate text from a checkpoint with its tokenizer, streaming it as it comes (one process, "
      "on the CPU or one GPU, key/value cache). Routing is the training routing without capacity "
      "dropping");
  cmd->add_option("-c,--checkpoint", req->checkpoint, "Checkpoint file (step_<N>.h5)")->required();
  auto* p = cmd->add_option("-p,--prompt", *prompt, "The text to continue");
  auto* pf = cmd->add_option("--prompt-file", req->prompt_file,
                             "Read the prompt from this file (- or /dev/stdin: standard input)")
                 ->excludes(p);
  auto* pi = cmd->add_option("--prompt-ids", *id_list,
                             "The prompt as token ids, one argument: whole numbers in [0, "
                             "model.vocab_size) separated by spaces or commas (\"3 17 4\", "
                             "\"3,17,4\"). Any tokenizer; the only prompt for a checkpoint of "
                             "imported ids (no text), whose continuation is printed as ids")
                 ->type_name("IDS")
                 ->excludes(p)
                 ->excludes(pf);
  cmd->add_option("-n,--tokens", req->options.tokens, "Tokens to generate, >= 1")
      ->capture_default_str()
      ->check(signed_64());
  cmd->add_option("-t,--temperature", req->options.temperature,
                  "Softmax temperature, >= 0; 0 = greedy (always the most likely token)")
      ->capture_default_str();
  cmd->add_option("--top-k", req->options.top_k,
                  "Sample among the k most likely tokens, >= 0 (0 = all)")
      ->capture_default_str()
      ->check(signed_64());
  cmd->add_option(
         "--top-p", req->options.top_p,
         "Sample among the most likely tokens whose probability reaches p, in (0, 1] (1 = all)")
      ->capture_default_str();
  cmd->add_option("--seed", req->options.seed, "Seed: the same seed gives the same text")
      ->capture_default_str()
      ->check(unsigned_64());
  cmd->add_option("--device", req->device,
                  "cpu, or cuda: decode on one GPU (CUDA build; not yet run on a GPU). Without the "
                  "CUDA backend or a usable GPU, cuda is exit 2 naming the reason")
      ->capture_default_str();
  out.push_back({cmd, [req, prompt, p, id_list, pi] {
                   if (p->count() > 0) req->prompt = *prompt;
                   if (pi->count() > 0) req->prompt_id_list = *id_list;
                   return run_with_mpi([&](const comm::MpiSession&) {
                     run_sample(MPI_COMM_WORLD, *req, std::cout, std::cerr);
                     return static_cast<int>(kExitOk);
                   });
                 }});
}

}  // namespace sy::app

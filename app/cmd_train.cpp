// `switchyard train`: load the config, train. And `switchyard guard -- mpirun ...`, which runs a
// launcher so that a SIGTERM or Ctrl-C reaches the ranks as a preemption (launch_guard.h).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "app/validators.h"
#include "comm/mpi.h"
#include "comm/watchdog.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/train/launch_guard.h"
#include "src/train/signals.h"
#include "src/train/trainer.h"

namespace sy::app {

void add_train_command(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    std::string resume;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = root.add_subcommand("train", "Train a model from a YAML config");
  cmd->add_option("-c,--config", a->config, "Experiment config (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", a->overrides,
                  "Override a config key, e.g. --set moe.num_experts=8 (repeatable)");
  cmd->add_option("--resume", a->resume,
                  "Continue from a checkpoint: 'auto' (the one checkpoint.dir's 'latest' names, "
                  "else the newest step_*.h5 there that verifies; a fresh start when there is "
                  "none) or a step_*.h5 file. Without it a run starts at step 0, and refuses a "
                  "checkpoint.dir that holds checkpoints")
      ->check(non_empty("give 'auto' or a checkpoint file"));
  out.push_back(
      {cmd, [a] {
         // MPI_Init waits for every rank of the job: one that never comes (a node that
         // stalls at start) held the others forever. Bounded by parallel.timeout_s, from
         // the config as read here before MPI (a config that does not load is reported
         // once MPI is up, by every rank alike; the default bounds this wait). The text
         // is read once, here: a pipe (`--config <(...)`) gives it only once.
         double init_timeout = ParallelConfig{}.timeout_s;
         std::optional<std::string> text;
         try {
           text = read_config_text(a->config, config_source());
           init_timeout = config_from_file_text(*text, a->config, a->overrides).parallel.timeout_s;
         } catch (const std::exception&) {
         }
         std::optional<comm::Watchdog> init_watch(
             std::in_place, init_timeout, [](const std::string& m) {
               // "rank -1: ..." before MPI knows the rank: the launcher's.
               std::fprintf(stderr, "rank %d%s\n", launcher_rank(), m.substr(m.find(':')).c_str());
               std::fflush(stderr);
               std::_Exit(kExitOther);
             });
         init_watch->arm("MPI start-up (MPI_Init: every rank of the job to start)");
         // Outlives MPI: MPI_Finalize waits for every rank, and one that stopped after
         // the run would hold it forever; after parallel.timeout_s this one leaves.
         std::optional<comm::Watchdog> finalize_watch;
         return run_with_mpi([&](const comm::MpiSession&) {
           init_watch.reset();
           // Read by every rank and agreed: an error every rank meets is one message
           // from rank 0, one rank's own is that rank's (load_config_on_every_rank).
           const Config cfg = load_config_on_every_rank(a->config, text, a->overrides);
           TrainOptions options;
           options.resume = a->resume;
           // main() installed them for the whole process (null: train() installs its
           // own for its duration).
           options.signals = PreemptionSignals::installed();
           train(cfg, std::cout, MPI_COMM_WORLD, options);
           finalize_watch.emplace(cfg.parallel.timeout_s, [](const std::string& m) {
             std::fprintf(stderr, "%s\n", m.c_str());
             std::fflush(stderr);
             std::_Exit(kExitOther);
           });
           finalize_watch->arm("the other ranks to finish the run (MPI_Finalize)");
           return static_cast<int>(kExitOk);
         });
       }});

  auto* guard = root.add_subcommand(
      "guard",
      "Run a launcher (mpirun ...) so that a SIGTERM, Ctrl-C (SIGINT) or SIGHUP -- to it or to "
      "this guard -- makes the ranks checkpoint and exit 75 instead of being killed: they are "
      "blocked in the launcher and passed on as SIGUSR1, which mpirun forwards to every rank, "
      "and the guard waits for the ranks (a second Ctrl-C kills them). Exits with the launcher's "
      "status. Example: switchyard guard -- mpirun -np 4 build/switchyard train --config c.yaml");
  auto command = std::make_shared<std::vector<std::string>>();
  guard->add_option("command", *command, "The launcher and its arguments (after --)");
  guard->prefix_command();
  out.push_back({guard, [guard, command] {
                   // After `--` the launcher and its arguments are `command`, in order, and
                   // CLI11 leaves the `--` in remaining(); without `--` it moves the launcher's
                   // options there, out of their order, so that form is refused.
                   std::vector<std::string> rest = guard->remaining();
                   if (!rest.empty() && !(rest.size() == 1 && rest[0] == "--")) {
                     std::string moved;
                     for (const auto& arg : rest) moved += " " + arg;
                     throw UsageError(
                         "guard: put the launcher after --, as in `switchyard guard -- mpirun "
                         "-np 4 ...`: without it, its options (" +
                         moved.substr(1) + ") cannot be passed on in their order");
                   }
                   if (command->empty())
                     throw UsageError("guard: no command given (switchyard guard -- mpirun ...)");
                   return run_guarded(*command, std::cerr);
                 }});
}

}  // namespace sy::app

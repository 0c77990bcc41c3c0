// `switchyard train`: load the config, train.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "comm/mpi.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/train/signals.h"
#include "src/train/trainer.h"

namespace sy::app {

namespace {
// This process's rank as mpirun or srun announce it, before MPI is initialized (-1: unknown).
int launcher_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "PMI_RANK"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return -1;
}
}  // namespace

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
                  "Continue from a checkpoint: 'auto' (the newest one in checkpoint.dir that "
                  "verifies; a fresh start when there is none) or a step_*.h5 file");
  out.push_back({cmd, [a] {
                   // The config is checked before MPI starts: every rank reads the same file and
                   // fails alike; only rank 0 (by the launcher's environment) says so.
                   std::optional<Config> cfg;
                   try {
                     cfg = load_config(a->config, a->overrides);
                   } catch (const UsageError& e) {
                     throw UsageError(e.what(), /*quiet=*/launcher_rank() > 0);
                   }
                   // Installed for the rest of the process: a SIGUSR1 that arrives after the
                   // last step must not kill a finished run (the job script reads its exit).
                   PreemptionSignals signals;
                   return run_with_mpi([&](const comm::MpiSession&) {
                     TrainOptions options;
                     options.resume = a->resume;
                     options.signals = &signals;
                     train(*cfg, std::cout, MPI_COMM_WORLD, options);
                     return static_cast<int>(kExitOk);
                   });
                 }});
}

}  // namespace sy::app

// switchyard: the command line. Parses arguments with CLI11, runs the chosen subcommand (one
// app/cmd_*.cpp each) and turns the exception type into the exit code of SPEC section 9.
#include <exception>
#include <iostream>
#include <optional>
#include <string_view>
#include <vector>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "src/core/error.h"
#include "src/train/signals.h"

int main(int argc, char** argv) {
  // `train`: the preemption handlers go in before anything else and stay until the process ends,
  // so a SIGUSR1/SIGTERM during start-up ends the run with 75 (not killed: 138) and one after the
  // last checkpoint leaves it to exit 0 (src/train/signals.h).
  std::optional<sy::PreemptionSignals> train_signals;
  if (argc > 1 && std::string_view(argv[1]) == "train")
    train_signals.emplace(sy::PreemptionSignals::Mode::kExitBeforeTraining,
                          sy::PreemptionSignals::Restore::kNever);

  CLI::App app{"switchyard: a Mixture-of-Experts transformer trainer"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "switchyard 0.1.0");

  std::vector<sy::app::Command> commands;
  sy::app::add_train_command(app, commands);
  sy::app::add_data_commands(app, commands);
  sy::app::add_ckpt_commands(app, commands);
  sy::app::add_bench_commands(app, commands);
  sy::app::add_plot_command(app, commands);
  sy::app::add_placement_command(app, commands);
  sy::app::add_sample_command(app, commands);
  sy::app::add_plan_command(app, commands);

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
    for (const auto& c : commands)
      if (c.selected->parsed()) return c.run();
    std::cerr << "error: no command given (see --help)\n";
    return sy::kExitUsage;
  } catch (const sy::Error& e) {
    sy::app::report_error(e);
    return e.code();
  } catch (const std::exception& e) {
    sy::app::report_error(e);
    return sy::kExitOther;
  }
}

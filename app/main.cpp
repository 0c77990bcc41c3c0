// switchyard: the command line. Parses arguments with CLI11, runs the chosen subcommand (one
// app/cmd_*.cpp each) and turns the exception type into the exit code of SPEC section 9.
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "src/core/error.h"
#include "src/core/suggest.h"
#include "src/train/signals.h"

namespace {

// A word where a (sub)command is expected that names none: says so with the closest name and the
// choices, since CLI11 says only "A subcommand is required". True when it reported one.
bool unknown_command(CLI::App& app, int argc, char** argv) {
  CLI::App* at = &app;
  int i = 1;
  for (; i < argc; ++i) {  // down the commands the words name
    CLI::App* next = nullptr;
    for (CLI::App* sub : at->get_subcommands({}))
      if (sub->get_name() == argv[i]) next = sub;
    if (!next) break;
    at = next;
  }
  const std::vector<CLI::App*> subs = at->get_subcommands({});
  if (i >= argc || argv[i][0] == '-' || subs.empty()) return false;
  std::vector<std::string> names;
  std::string list;
  for (const CLI::App* sub : subs) {
    names.push_back(sub->get_name());
    list += (list.empty() ? "" : ", ") + sub->get_name();
  }
  const std::string where = at == &app ? "" : " of '" + at->get_name() + "'";
  std::cerr << "error: unknown command '" << argv[i] << "'" << where
            << sy::suggestion(argv[i], names) << "; the commands" << where << " are " << list
            << " (see --help)\n";
  return true;
}

}  // namespace

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
    if (unknown_command(app, argc, argv)) return sy::kExitUsage;
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

// The subcommands of `switchyard`. Each app/cmd_*.cpp registers its subcommand(s) on the root
// CLI11 app and returns what to run when the user picked it; main.cpp parses the command line,
// runs the chosen command and turns exceptions into the exit codes of SPEC section 9.
// Commands stay thin: argument parsing here, the work in src/ (or comm/).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace sy::app {

// One runnable (sub)command: `selected` is the CLI11 subcommand whose use picks it (for nested
// commands such as `data prepare`, the innermost one); `run` returns the exit code.
struct Command {
  CLI::App* selected = nullptr;
  std::function<int()> run;
};

// Each adds its subcommands to `root` and appends what they run to `out`. Every subcommand has
// --help (CLI11 adds it) and a description.
void add_train_command(CLI::App& root, std::vector<Command>& out);   // cmd_train.cpp
void add_data_commands(CLI::App& root, std::vector<Command>& out);   // cmd_data.cpp
void add_ckpt_commands(CLI::App& root, std::vector<Command>& out);   // cmd_ckpt.cpp
void add_bench_commands(CLI::App& root, std::vector<Command>& out);  // cmd_bench.cpp
void add_plot_command(CLI::App& root, std::vector<Command>& out);    // cmd_plot.cpp
void add_plan_command(CLI::App& root, std::vector<Command>& out);    // cmd_plan.cpp
void add_sample_command(CLI::App& root, std::vector<Command>& out);  // cmd_sample.cpp

// cmd_placement.cpp
void add_placement_command(CLI::App& root, std::vector<Command>& out);

}  // namespace sy::app

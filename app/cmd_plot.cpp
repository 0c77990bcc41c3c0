// `switchyard plot <run dir>`: PNG charts of a run's metrics.jsonl through gnuplot (the work is in
// src/plot/plot.h).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/validators.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/plot/plot.h"

namespace sy::app {

void add_plot_command(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    std::string run_dir;
    PlotOptions opt;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = root.add_subcommand(
      "plot",
      "Draw PNG charts of a run with gnuplot: loss (train, validation), aux and z loss, tokens/s, "
      "the expert-load heatmap per layer and the dropped-token fraction; where the run spans "
      "nodes, the inter-node bytes per step; and from <run dir>/coactivation.h5 the "
      "co-activation heatmap per layer");
  cmd->add_option("run_dir", a->run_dir, "Run directory (holds metrics.jsonl)")->required();
  cmd->add_option("-o,--out", a->opt.out_dir, "Where the PNGs go (default: <run dir>/plots)");
  cmd->add_option("--gnuplot", a->opt.gnuplot, "gnuplot executable")->capture_default_str();
  cmd->add_option("--width", a->opt.width, "Chart width in pixels")
      ->capture_default_str()
      ->check(integer_in(200, 8000));
  cmd->add_option("--height", a->opt.height, "Height of a single-panel chart in pixels")
      ->capture_default_str()
      ->check(integer_in(150, 8000));
  out.push_back({cmd, [a] {
                   h5::print_no_library_errors();  // reads coactivation.h5
                   for (const auto& p : plot_run(a->run_dir, a->opt, std::cerr))
                     std::cout << p << "\n";
                   return static_cast<int>(kExitOk);
                 }});
}

}  // namespace sy::app

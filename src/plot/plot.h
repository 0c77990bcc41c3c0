// `switchyard plot <run dir>`: the pictures people look at during and after a run, as PNGs drawn
// by gnuplot (Debian's gnuplot-nox, pngcairo terminal) from <run dir>/metrics.jsonl:
//   loss.png          train loss (total and lm) and validation loss against the step
//   aux_z_loss.png    the aux load-balancing loss and the router z-loss (two panels)
//   tokens_per_s.png  throughput against the step
//   expert_load.png   per layer a heatmap: x = step, y = expert, colour = the expert's share of
//                     the layer's assignments in that logged step (uniform = 1/E): a collapsed
//                     router shows as one bright row and dark others
//   dropped_frac.png  the fraction of assignments dropped by the capacity limit
//   internode_bytes.png  where several nodes are emulated or real: the bytes the expert
//                     all-to-all sends between nodes per step, all ranks together (MB)
//   coactivation.png  from <run dir>/coactivation.h5 when there is one: per layer a heatmap of
//                     the share of tokens that chose both expert i and expert j (the diagonal,
//                     each expert's own load, is left blank so the pairs keep the colour scale)
// The data and the gnuplot script are written to a temporary directory and removed afterwards.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "src/placement/coactivation_file.h"
#include "src/plot/run_metrics.h"

namespace sy {

struct PlotOptions {
  std::string out_dir;              // empty: <run dir>/plots
  std::string gnuplot = "gnuplot";  // the executable
  int width = 1000, height = 560;   // pixels of each single-panel chart
};

// Renders the charts of `run_dir` and returns the PNG paths written. Every input (metrics.jsonl,
// coactivation.h5 where there is one) and the gnuplot executable are checked before the output
// directory is made or a chart written. Throws UsageError (exit 2) when run_dir or its
// metrics.jsonl is missing or holds no train line, coactivation.h5 cannot be read, or opt.gnuplot
// is not a program (check_gnuplot); std::runtime_error when the default gnuplot is not installed
// or gnuplot fails (its message included).
std::vector<std::string> plot_run(const std::string& run_dir, const PlotOptions& opt,
                                  std::ostream& log);

// Whether `gnuplot` (PlotOptions::gnuplot, --gnuplot) can be run: a path (one with a '/') must
// be an executable file, a bare name one in a directory of $PATH. UsageError (exit 2) naming
// --gnuplot for one that is missing, a directory or not executable (SPEC 9: the user named it);
// std::runtime_error (exit 1) when the default "gnuplot" is not installed. Callers check it
// before the work and before creating any output directory.
void check_gnuplot(const std::string& gnuplot);

// The same from metrics already read (tests, other callers); out_dir must be set.
std::vector<std::string> plot_metrics(const RunMetrics& m, const std::string& title,
                                      const PlotOptions& opt);

// The expert-load heatmap's columns of layer `layer`: the logged steps in order, consecutive ones
// averaged into bins so that there are at most `max_columns` (the chart's pixels: 20 000 steps of
// 8 x 64 experts took 45 s to plot, now 5 s; 100 000 over 5 minutes); each column spans its
// steps' cells (halfway to
// the neighbours). share[e] is NaN where no step of the bin logged expert e.
struct LoadColumn {
  double lo = 0, hi = 0;
  std::vector<double> share;  // [E]
};
std::vector<LoadColumn> expert_load_columns(const RunMetrics& m, int layer, int max_columns);

// coactivation.png from counts already read; out_dir must be set. Returns its path.
std::string plot_coactivation(const Coactivation& c, const std::string& title,
                              const PlotOptions& opt);

// A generic line chart (`switchyard plan --sweep`): every series against x, on the left axis or
// (right_axis) the right one, written to `png` with the charts' look. Throws as plot_run does
// when gnuplot is missing or fails.
struct XySeries {
  std::string title;
  std::vector<double> y;  // one value per x
  bool right_axis = false;
};
void plot_xy(const std::string& png, const std::string& title, const std::string& xlabel,
             const std::string& ylabel, const std::string& y2label, const std::vector<double>& x,
             const std::vector<XySeries>& series, const PlotOptions& opt);

}  // namespace sy

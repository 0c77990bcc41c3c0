#include "src/plot/plot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/paths.h"
#include "src/core/run_files.h"
#include "src/core/scratch_dir.h"
#include "src/core/subprocess.h"

namespace sy {

namespace {

namespace fs = std::filesystem;

// gnuplot string literal: single quotes, a quote inside doubled.
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// gnuplot writes each chart to "<png>.tmp" (staged_png), renamed over <png> once gnuplot
// succeeded: a plot stopped midway (a large run takes minutes) left an empty chart under the
// real name, over a good one of an earlier plot.
std::string staged_png(const std::string& png) {
  return png + ".tmp";
}

// Common look: white background, light grid, the run name in the title. The chart goes to its
// staged name (check_png renames it).
std::string header(const std::string& png, int w, int h) {
  std::ostringstream g;
  g << "set terminal pngcairo size " << w << "," << h
    << " noenhanced font 'DejaVu Sans,11' background '#ffffff'\n"
    << "set output " << gp_quote(staged_png(png)) << "\n"
    << "set grid lc rgb '#dddddd' lw 1\n"
    << "set border lc rgb '#555555'\n"
    << "set key top right opaque box lc rgb '#cccccc'\n"
    << "set xlabel 'step'\n";
  return g.str();
}

// Cell edges of a heatmap column per logged step: halfway to the neighbours (the first and last
// cells are as wide as their one neighbour gap), so uneven log intervals still tile the axis.
std::vector<std::pair<double, double>> step_cells(const std::vector<TrainPoint>& t) {
  std::vector<std::pair<double, double>> cells(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    const auto s = static_cast<double>(t[i].step);
    const double prev = i > 0 ? static_cast<double>(t[i - 1].step) : s;
    const double next = i + 1 < t.size() ? static_cast<double>(t[i + 1].step) : s;
    double lo = i > 0 ? 0.5 * (prev + s) : s - 0.5 * (next - s);
    double hi = i + 1 < t.size() ? 0.5 * (s + next) : s + 0.5 * (s - prev);
    if (t.size() == 1) {
      lo = s - 0.5;
      hi = s + 0.5;
    }
    cells[i] = {lo, hi};
  }
  return cells;
}

// Why the file at `path` cannot be run as a program ("no such file", "is a directory", "is not
// executable (Permission denied)"); "" when it can.
std::string program_problem(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return "no such file";
  if (fs::is_directory(st)) return "is a directory, not a program";
  if (::access(path.c_str(), X_OK) != 0)
    return std::string("is not executable (") + std::strerror(errno) + ")";
  return "";
}

// gnuplot ends with this process (run_captured): a plot stopped by SIGTERM left it running,
// writing its charts after the cleanup had removed the staged ones.
void run_gnuplot(const std::string& gnuplot, const std::string& script) {
  const Captured c = run_captured(shell_quote(gnuplot) + " " + shell_quote(script) + " 2>&1");
  if (c.exit_code == 127)
    throw std::runtime_error("plot: '" + gnuplot +
                             "' not found; install Debian's gnuplot-nox (jobs/deps.sh does)");
  if (c.exit_code != 0) {
    // A program that fails silently (--gnuplot /bin/false) ended the message at "(exit 1):".
    const bool silent = c.output.find_first_not_of(" \t\r\n") == std::string::npos;
    const std::string who =
        gnuplot == PlotOptions{}.gnuplot ? gnuplot : "gnuplot ('" + gnuplot + "')";
    throw std::runtime_error("plot: " + who + " failed (exit " + std::to_string(c.exit_code) + ")" +
                             (silent ? " and printed nothing" : ":\n" + c.output));
  }
}

// The staged charts of one gnuplot run, removed when the plot ends without publishing them
// (gnuplot failed, or a chart before them was empty): a published one is gone from there already.
class StagedCharts {
 public:
  explicit StagedCharts(std::vector<std::string> pngs) : pngs_(std::move(pngs)) {
    for (const auto& p : pngs_) on_interrupt_.emplace_back(staged_png(p));
  }
  ~StagedCharts() {
    std::error_code ec;
    for (const auto& p : pngs_) fs::remove(staged_png(p), ec);
  }
  StagedCharts(const StagedCharts&) = delete;
  StagedCharts& operator=(const StagedCharts&) = delete;

 private:
  std::vector<std::string> pngs_;
  std::vector<files::RemovedOnInterrupt> on_interrupt_;  // gnuplot's .png.tmp, on Ctrl-C
};

// Whether the file at `path` ends with a PNG's IEND chunk (length 0, "IEND", its fixed CRC): a
// PNG cut short by a full disk or the file size limit does not.
bool ends_as_png(const std::string& path) {
  static constexpr unsigned char kIend[12] = {0,   0,   0,    0,    'I',  'E',
                                              'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  std::ifstream f(path, std::ios::binary);
  f.seekg(-static_cast<std::streamoff>(sizeof kIend), std::ios::end);
  unsigned char tail[sizeof kIend] = {};
  f.read(reinterpret_cast<char*>(tail), sizeof tail);
  return f && std::equal(tail, tail + sizeof tail, kIend);
}

// gnuplot exits 0 when it could not write a PNG: a full disk leaves it empty (0 bytes) or cut
// short (the file size limit, a disk that fills midway). Every chart is checked; a whole one is
// renamed to its name, anything else removed and said (exit 1, as any output that failed), the
// chart of an earlier plot left as it was.
void check_png(const std::string& png) {
  const std::string staged = staged_png(png);
  std::error_code ec;
  const auto size = fs::file_size(staged, ec);
  if (ec) throw std::runtime_error("gnuplot did not write the chart " + png);
  if (size > 0 && ends_as_png(staged)) {
    files::commit_file(staged, png);
    return;
  }
  fs::remove(staged, ec);
  const std::string dir = fs::path(png).parent_path().string();
  const int64_t avail = files::free_bytes(dir.empty() ? "." : dir);
  // At the file size limit (ulimit -f) that is the cause; otherwise most likely the disk.
  const std::string limit = files::past_file_size_limit(static_cast<int64_t>(size) + 1);
  const std::string why =
      !limit.empty() ? "it reached the file size limit (ulimit -f) of " +
                           std::to_string(static_cast<int64_t>(size)) + " bytes"
                     : (avail >= 0 ? files::mib(avail) + " free there" : "free space unknown") +
                           ": a full disk or quota?";
  // Not "plot:" (`plan --png` draws too), and nothing of the user's is removed: the staged file
  // goes, an earlier chart stays (QA read "it is removed" as the earlier chart gone).
  throw Error(kExitOther,
              "gnuplot wrote the chart '" + png + "' " +
                  (size == 0 ? std::string("empty")
                             : "cut short (" + std::to_string(size) + " bytes, no PNG end)") +
                  " (" + why +
                  "): it is not kept, and an earlier file of that name is left as "
                  "it was");
}

}  // namespace

void check_gnuplot(const std::string& gnuplot) {
  if (gnuplot.empty()) throw UsageError("--gnuplot is empty; give the gnuplot executable");
  if (gnuplot.find('/') != std::string::npos) {
    if (const std::string why = program_problem(gnuplot); !why.empty())
      throw UsageError("--gnuplot '" + gnuplot + "': " + why);
    return;
  }
  // A bare name runs as /bin/sh finds it: the first executable of that name along $PATH (an
  // empty entry is the working directory).
  const char* env = std::getenv("PATH");
  const std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
  for (size_t begin = 0;;) {
    const size_t end = std::min(path.find(':', begin), path.size());
    const std::string dir = path.substr(begin, end - begin);
    if (program_problem((fs::path(dir.empty() ? "." : dir) / gnuplot).string()).empty()) return;
    if (end == path.size()) break;
    begin = end + 1;
  }
  if (gnuplot == PlotOptions{}.gnuplot)  // not installed: the machine's, not the user's
    throw std::runtime_error("plot: '" + gnuplot +
                             "' not found; install Debian's gnuplot-nox (jobs/deps.sh does)");
  throw UsageError("--gnuplot '" + gnuplot + "': not found in any directory of $PATH");
}

std::vector<LoadColumn> expert_load_columns(const RunMetrics& m, int layer, int max_columns) {
  const int L = m.num_layers(), E = m.num_experts();
  const size_t n = m.train.size(), columns = static_cast<size_t>(std::max(max_columns, 1));
  const size_t bin = std::max<size_t>(1, (n + columns - 1) / columns);
  const auto cells = step_cells(m.train);
  std::vector<LoadColumn> out;
  for (size_t first = 0; first < n; first += bin) {
    const size_t last = std::min(n, first + bin);
    LoadColumn c;
    c.lo = cells[first].first;
    c.hi = cells[last - 1].second;
    std::vector<int> count(static_cast<size_t>(E), 0);
    c.share.assign(static_cast<size_t>(E), 0.0);
    for (size_t i = first; i < last; ++i) {
      const auto& el = m.train[i].expert_load;
      if (static_cast<int>(el.size()) != L || layer >= L) continue;
      for (int e = 0; e < E && e < static_cast<int>(el[static_cast<size_t>(layer)].size()); ++e) {
        c.share[static_cast<size_t>(e)] += el[static_cast<size_t>(layer)][static_cast<size_t>(e)];
        ++count[static_cast<size_t>(e)];
      }
    }
    for (int e = 0; e < E; ++e)
      c.share[static_cast<size_t>(e)] =
          count[static_cast<size_t>(e)] > 0
              ? c.share[static_cast<size_t>(e)] / count[static_cast<size_t>(e)]
              : std::numeric_limits<double>::quiet_NaN();
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<std::string> plot_metrics(const RunMetrics& m, const std::string& title,
                                      const PlotOptions& opt) {
  SY_CHECK(!opt.out_dir.empty(), "plot_metrics needs an output directory");
  SY_CHECK(!m.train.empty(), "no train points");
  check_gnuplot(opt.gnuplot);
  make_directories("the plot directory", opt.out_dir);
  ScratchDir tmp("switchyard-plot-");
  const int W = opt.width, H = opt.height;
  auto png = [&](const char* name) { return (fs::path(opt.out_dir) / name).string(); };

  // ---- data files
  const std::string train_dat = tmp.file("train.dat"), eval_dat = tmp.file("eval.dat"),
                    load_dat = tmp.file("load.dat");
  {
    std::ofstream f(train_dat);
    f.precision(9);
    f << "# step loss lm_loss aux_loss z_loss tokens_per_s dropped_frac lr\n";
    for (const auto& t : m.train)
      f << t.step << ' ' << t.loss << ' ' << t.lm_loss << ' ' << t.aux_loss << ' ' << t.z_loss
        << ' ' << t.tokens_per_s << ' ' << t.dropped_frac << ' ' << t.lr << '\n';
  }
  {
    std::ofstream f(eval_dat);
    f.precision(9);
    f << "# step val_loss\n";
    for (const auto& e : m.eval) f << e.step << ' ' << e.val_loss << '\n';
  }
  const int L = m.num_layers(), E = m.num_experts();
  double max_share = 0;
  const auto cells = step_cells(m.train);
  {
    // One block per layer (separated by two blank lines, gnuplot's "index"): x_lo x_hi expert
    // share, at most one column per pixel of the chart.
    std::ofstream f(load_dat);
    f.precision(9);
    for (int l = 0; l < L; ++l) {
      f << "# layer " << l << "\n";
      for (const LoadColumn& c : expert_load_columns(m, l, W))
        for (int e = 0; e < E; ++e) {
          const double share = c.share[static_cast<size_t>(e)];
          if (std::isnan(share)) continue;
          f << c.lo << ' ' << c.hi << ' ' << e << ' ' << share << '\n';
          max_share = std::max(max_share, share);
        }
      f << "\n\n";
    }
  }

  // ---- the script
  std::ostringstream g;
  const std::string t = title.empty() ? std::string() : title + ": ";
  const bool has_eval = !m.eval.empty();
  g << header(png("loss.png"), W, H) << "set title " << gp_quote(t + "loss") << "\n"
    << "set ylabel 'loss (nats/token)'\n"
    << "plot " << gp_quote(train_dat)
    << " using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'train loss (lm + aux + z)', \\\n"
    << "     " << gp_quote(train_dat)
    << " using 1:3 with lines lw 1 dt 2 lc rgb '#6baed6' title 'train lm loss'";
  if (has_eval)
    g << ", \\\n     " << gp_quote(eval_dat)
      << " using 1:2 with linespoints lw 2 pt 7 ps 1.2 lc rgb '#d62728' title 'validation loss'";
  g << "\n\n";

  g << header(png("aux_z_loss.png"), W, H + H / 3) << "set multiplot layout 2,1 title "
    << gp_quote(t + "router losses (summed over layers)") << "\n"
    << "set title 'aux load-balancing loss'\nset ylabel 'aux'\nunset xlabel\n"
    << "plot " << gp_quote(train_dat)
    << " using 1:4 with lines lw 2 lc rgb '#2ca02c' title 'aux_loss'\n"
    << "set title 'router z-loss'\nset ylabel 'z'\nset xlabel 'step'\n"
    << "plot " << gp_quote(train_dat)
    << " using 1:5 with lines lw 2 lc rgb '#9467bd' title 'z_loss'\n"
    << "unset multiplot\n\n";

  g << header(png("tokens_per_s.png"), W, H) << "set title " << gp_quote(t + "throughput") << "\n"
    << "set ylabel 'tokens/s'\nset yrange [0:*]\n"
    << "plot " << gp_quote(train_dat)
    << " using 1:6 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#ff7f0e' title 'tokens/s'\n"
    << "set yrange [*:*]\n\n";

  g << header(png("dropped_frac.png"), W, H) << "set title "
    << gp_quote(t + "tokens dropped by the capacity limit") << "\n"
    << "set ylabel 'dropped fraction of assignments'\nset yrange [0:"
    << "*]\n"
    << "plot " << gp_quote(train_dat)
    << " using 1:7 with lines lw 2 lc rgb '#8c564b' title 'dropped_frac'\n"
    << "set yrange [*:*]\n\n";

  std::vector<std::string> written = {png("loss.png"), png("aux_z_loss.png"),
                                      png("tokens_per_s.png"), png("dropped_frac.png")};
  // Several nodes: the step's inter-node bytes (absent, -1, on one node).
  const std::string node_dat = tmp.file("internode.dat");
  bool has_internode = false;
  {
    std::ofstream f(node_dat);
    f.precision(9);
    f << "# step internode_MB\n";
    for (const auto& p : m.train)
      if (p.internode_bytes >= 0) {
        f << p.step << ' ' << p.internode_bytes / 1e6 << '\n';
        has_internode = true;
      }
  }
  if (has_internode) {
    g << header(png("internode_bytes.png"), W, H) << "set title "
      << gp_quote(t + "expert all-to-all between nodes (all ranks together)") << "\n"
      << "set ylabel 'inter-node MB per step'\nset yrange [0:*]\n"
      << "plot " << gp_quote(node_dat)
      << " using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#17becf' title 'inter-node MB'\n"
      << "set yrange [*:*]\n\n";
    written.push_back(png("internode_bytes.png"));
  }
  if (L > 0 && E > 0) {
    // One panel per layer, stacked; each panel ~ 60 px + 22 px per expert, capped.
    const int panel = std::clamp(90 + 22 * E, 240, 440);
    const int height = std::min(16000, 100 + panel * L);
    const double cbmax = std::max(max_share, 2.0 / E);
    char uniform[32];
    std::snprintf(uniform, sizeof uniform, "%.3g", 1.0 / E);
    g << header(png("expert_load.png"), W, height)
      << "set palette defined (0 '#000004', 0.25 '#3b0f70', 0.5 '#8c2981', 0.75 '#de4968', 0.9 "
         "'#fe9f6d', 1 '#fcfdbf')\n"
      << "set cbrange [0:" << cbmax << "]\nset cblabel 'share'\n"
      << "set yrange [-0.5:" << E - 0.5 << "]\nset ylabel 'expert'\nunset grid\nunset key\n"
      << "set ytics 0," << std::max(1, E / 16) << "," << E - 1 << "\n"
      << "set xrange [" << cells.front().first << ":" << cells.back().second << "]\n"
      << "set style fill solid 1.0 noborder\n"
      << "set tmargin 2\nset bmargin 3.5\n"
      << "set multiplot layout " << L << ",1 title "
      << gp_quote(t + "expert load per layer (share of its assignments; uniform = 1/E = " +
                  uniform + ")")
      << "\n";
    for (int l = 0; l < L; ++l) {
      g << "set title 'layer " << l << "' offset 0,-0.8\n"
        << "plot " << gp_quote(load_dat) << " index " << l
        << " using (($1+$2)/2):3:(($2-$1)/2):(0.5):4 with boxxyerror lc palette\n";
    }
    g << "unset multiplot\n";
    written.push_back(png("expert_load.png"));
  }
  const std::string script = tmp.file("plots.gp");
  {
    std::ofstream f(script);
    f << g.str();
  }
  const StagedCharts staged(written);
  run_gnuplot(opt.gnuplot, script);
  for (const auto& p : written) check_png(p);
  return written;
}

std::string plot_coactivation(const Coactivation& c, const std::string& title,
                              const PlotOptions& opt) {
  SY_CHECK(!opt.out_dir.empty(), "plot_coactivation needs an output directory");
  check_gnuplot(opt.gnuplot);
  make_directories("the plot directory", opt.out_dir);
  ScratchDir tmp("switchyard-plot-");
  const int L = c.num_layers, E = c.num_experts;
  const std::string dat = tmp.file("coactivation.dat"),
                    png = (fs::path(opt.out_dir) / "coactivation.png").string();
  double vmax = 0;
  {
    // One block per layer: row i, column j, percent of the tokens that chose both (i != j).
    std::ofstream f(dat);
    f.precision(9);
    const auto tokens = static_cast<double>(std::max<int64_t>(c.tokens, 1));
    for (int l = 0; l < L; ++l) {
      f << "# layer " << l << "\n";
      const int64_t* n = c.layer_counts(l);
      for (int i = 0; i < E; ++i)
        for (int j = 0; j < E; ++j) {
          if (i == j) continue;
          const double v = 100.0 * static_cast<double>(n[i * E + j]) / tokens;
          f << j << ' ' << i << ' ' << v << '\n';
          vmax = std::max(vmax, v);
        }
      f << "\n\n";
    }
  }
  const int cols = std::clamp(L, 1, 4), rows = (L + cols - 1) / cols;
  const int side = std::clamp(opt.width * 2 / 5, 300, 480);  // pixels per panel
  std::ostringstream g;
  const std::string t = title.empty() ? std::string() : title + ": ";
  g << header(png, side * cols, std::min(16000, 60 + side * rows))
    << "set palette defined (0 '#000004', 0.25 '#3b0f70', 0.5 '#8c2981', 0.75 '#de4968', 0.9 "
       "'#fe9f6d', 1 '#fcfdbf')\n"
    << "set cbrange [0:" << std::max(vmax, 1e-9) << "]\nset cblabel '% of tokens'\n"
    << "set xrange [-0.5:" << E - 0.5 << "]\nset yrange [" << E - 0.5 << ":-0.5]\n"
    << "set xlabel 'expert'\nset ylabel 'expert'\nset size ratio -1\nunset grid\nunset key\n"
    << "set xtics 0," << std::max(1, E / 8) << "," << E - 1 << "\nset ytics 0,"
    << std::max(1, E / 8) << "," << E - 1 << "\n"
    << "set style fill solid 1.0 noborder\n"
    << "set multiplot layout " << rows << "," << cols << " title "
    << gp_quote(t + "tokens choosing both experts (steps " + std::to_string(c.first_step + 1) +
                ".." + std::to_string(c.last_step) + ", " + std::to_string(c.tokens) +
                " tokens per layer)")
    << "\n";
  for (int l = 0; l < L; ++l)
    g << "set title 'layer " << l << "'\n"
      << "plot " << gp_quote(dat) << " index " << l
      << " using 1:2:(0.5):(0.5):3 with boxxyerror lc palette\n";
  g << "unset multiplot\n";
  const std::string script = tmp.file("coactivation.gp");
  std::ofstream(script) << g.str();
  const StagedCharts staged({png});
  run_gnuplot(opt.gnuplot, script);
  check_png(png);
  return png;
}

void plot_xy(const std::string& png, const std::string& title, const std::string& xlabel,
             const std::string& ylabel, const std::string& y2label, const std::vector<double>& x,
             const std::vector<XySeries>& series, const PlotOptions& opt) {
  std::error_code ec;
  if (fs::is_directory(png, ec))
    throw UsageError("'" + png + "' is a directory; give the PNG file to write");
  check_gnuplot(opt.gnuplot);  // before its directory is made
  ScratchDir tmp("switchyard-plot-");
  const fs::path parent = fs::path(png).parent_path();
  if (!parent.empty()) make_directories("'" + png + "': its directory", parent.string());
  if (const std::string problem = files::unwritable_output(png); !problem.empty())
    throw UsageError("'" + png + "': " + problem);
  const std::string dat = tmp.file("xy.dat");
  {
    std::ofstream f(dat);
    f.precision(9);
    for (size_t i = 0; i < x.size(); ++i) {
      f << x[i];
      for (const XySeries& s : series) f << ' ' << (i < s.y.size() ? s.y[i] : 0.0);
      f << '\n';
    }
  }
  static const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"};
  std::ostringstream g;
  g << header(png, opt.width, opt.height) << "set title " << gp_quote(title) << "\n"
    << "set xlabel " << gp_quote(xlabel) << "\nset ylabel " << gp_quote(ylabel) << "\n"
    << "set logscale x 2\nset yrange [0:*]\n";
  if (!y2label.empty())
    g << "set y2label " << gp_quote(y2label) << "\nset y2tics\nset ytics nomirror\n"
      << "set y2range [0:*]\n";
  g << "plot ";
  for (size_t k = 0; k < series.size(); ++k) {
    if (k > 0) g << ", \\\n     ";
    g << gp_quote(dat) << " using 1:" << k + 2 << " axes "
      << (series[k].right_axis ? "x1y2" : "x1y1") << " with linespoints lw 2 pt 7 lc rgb '"
      << kColours[k % 5] << "' title " << gp_quote(series[k].title);
  }
  g << "\n";
  const std::string script = tmp.file("xy.gp");
  {
    std::ofstream f(script);
    f << g.str();
  }
  const StagedCharts staged({png});
  run_gnuplot(opt.gnuplot, script);
  check_png(png);
}

std::vector<std::string> plot_run(const std::string& run_dir, const PlotOptions& opt,
                                  std::ostream& log) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    throw UsageError(run_dir + (fs::exists(run_dir, ec)
                                    ? ": not a directory; give the run directory (run.out_dir)"
                                    : ": no such run directory"));
  const std::string metrics = metrics_path(run_dir);
  if (!fs::exists(metrics, ec)) throw UsageError(metrics + ": missing (not a run directory?)");
  // Read as a text file: a FIFO there blocked the read forever, a directory read as empty.
  if (!fs::is_regular_file(metrics, ec))
    throw UsageError(metrics + ": is " +
                     (fs::is_directory(metrics, ec) ? "a directory" : what_is_at(metrics)) +
                     ", not a metrics file");
  const RunMetrics m = read_run_metrics(metrics);
  // Every input is read, and gnuplot found, before the directory is made and the first chart
  // drawn: a damaged coactivation.h5 was found after five charts had replaced the earlier ones
  // (a mixed set; under a new --out, five charts left behind by a plot that failed).
  const std::string coact = (fs::path(run_dir) / "coactivation.h5").string();
  std::optional<Coactivation> coactivation;
  if (fs::exists(coact, ec)) coactivation = read_coactivation(coact);
  check_gnuplot(opt.gnuplot);
  PlotOptions o = opt;
  if (o.out_dir.empty()) o.out_dir = (fs::path(run_dir) / "plots").string();
  make_directories(opt.out_dir.empty() ? "the plot directory" : "--out", o.out_dir);
  log << "plot: " << m.train.size() << " train points, " << m.eval.size() << " eval points";
  if (m.num_layers() > 0) log << ", expert load " << m.num_layers() << "x" << m.num_experts();
  if (m.skipped_lines > 0) log << ", " << m.skipped_lines << " unreadable lines skipped";
  log << "\n";
  std::string title = fs::path(run_dir).lexically_normal().filename().string();
  if (title.empty()) title = fs::path(run_dir).parent_path().filename().string();
  std::vector<std::string> written = plot_metrics(m, title, o);
  if (coactivation) written.push_back(plot_coactivation(*coactivation, title, o));
  return written;
}

}  // namespace sy

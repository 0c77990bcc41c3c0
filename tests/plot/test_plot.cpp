// switchyard plot: metrics.jsonl read back as a resumed run leaves it (the newest lines win, added
// keys and a cut-off last line tolerated), and the PNGs gnuplot draws from a synthetic run are
// real images of the requested size with something drawn in them.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "src/core/error.h"
#include "src/placement/coactivation_file.h"
#include "src/plot/plot.h"
#include "src/plot/run_metrics.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

// A train line as the trainer writes it (SPEC 6), plus a key a later version might add.
std::string train_line(int step, double loss, int L, int E, double skew) {
  std::ostringstream o;
  o << R"({"step":)" << step << R"(,"loss":)" << loss << R"(,"lm_loss":)" << loss - 0.05
    << R"(,"aux_loss":0.04,"z_loss":0.01,"lr":0.001,"grad_norm":0.5,"tokens_per_s":)"
    << 10000 + step << R"(,"step_ms":200,"a2a_ms":0,"dropped_frac":)"
    << 0.001 * static_cast<double>(step) << R"(,"future_key":[1,2],"expert_load":[)";
  for (int l = 0; l < L; ++l) {
    o << (l ? ",[" : "[");
    // Expert 0 takes `skew` of the assignments, the rest share the remainder evenly.
    for (int e = 0; e < E; ++e) o << (e ? "," : "") << (e == 0 ? skew : (1 - skew) / (E - 1));
    o << "]";
  }
  o << "]}";
  return o.str();
}

// A run that logged steps 10..100, crashed after 100 (half a line written), and resumed from a
// checkpoint at step 60: steps 70..100 are logged again with other values, then 110..150.
std::string resumed_run(int L, int E, bool with_eval) {
  std::ostringstream o;
  for (int s = 10; s <= 100; s += 10) {
    o << train_line(s, 5.0 - s * 0.01, L, E, 0.2) << "\n";
    if (with_eval && s % 50 == 0)
      o << R"({"step":)" << s << R"(,"val_loss":)" << 4.9 - s * 0.01 << "}\n";
  }
  o << R"({"step":110,"loss":3.)"
    << "\n";  // cut off by the crash
  for (int s = 70; s <= 150; s += 10) {
    o << train_line(s, 9.0 - s * 0.01, L, E, 0.2 + 0.004 * s) << "\n";
    if (with_eval && s % 50 == 0)
      o << R"({"step":)" << s << R"(,"val_loss":)" << 8.9 - s * 0.01 << "}\n";
  }
  return o.str();
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(PlotMetrics, ResumedRunKeepsTheNewestLines) {
  test::TempDir dir;
  write(dir.file("metrics.jsonl"), resumed_run(3, 4, true));
  const RunMetrics m = read_run_metrics(dir.file("metrics.jsonl"));
  // 10..60 from the first attempt, 70..150 from the resumed one: 15 points, increasing.
  ASSERT_EQ(m.train.size(), 15u);
  for (size_t i = 0; i < m.train.size(); ++i) EXPECT_EQ(m.train[i].step, 10 * (int64_t(i) + 1));
  EXPECT_DOUBLE_EQ(m.train[5].loss, 5.0 - 0.6);  // step 60: first attempt
  EXPECT_DOUBLE_EQ(m.train[6].loss, 9.0 - 0.7);  // step 70: the resumed run's line
  EXPECT_DOUBLE_EQ(m.train[14].dropped_frac, 0.15);
  EXPECT_EQ(m.skipped_lines, 1);
  ASSERT_EQ(m.eval.size(), 3u);  // 50 (first attempt), 100 (resumed), 150
  EXPECT_DOUBLE_EQ(m.eval[1].val_loss, 8.9 - 1.0);
  EXPECT_EQ(m.num_layers(), 3);
  EXPECT_EQ(m.num_experts(), 4);
  EXPECT_DOUBLE_EQ(m.train[14].expert_load[2][0], 0.2 + 0.004 * 150);
}

// A value that is not a number (null: how a NaN loss is written; a string) is no value, which the
// charts leave out, not 0, which drew a dip to zero; an absent key (an older trainer's) is 0.
TEST(PlotMetrics, AValueThatIsNotANumberIsLeftOutNotZero) {
  test::TempDir dir;
  write(dir.file("metrics.jsonl"), R"({"step":1,"loss":null,"aux_loss":"nan","lr":0.001}
{"step":2,"loss":4.5,"aux_loss":0.02,"lr":0.002,"dropped_frac":0}
)");
  const RunMetrics m = read_run_metrics(dir.file("metrics.jsonl"));
  ASSERT_EQ(m.train.size(), 2u);
  EXPECT_TRUE(std::isnan(m.train[0].loss));
  EXPECT_TRUE(std::isnan(m.train[0].aux_loss));
  EXPECT_DOUBLE_EQ(m.train[0].dropped_frac, 0.0);  // absent
  EXPECT_DOUBLE_EQ(m.train[0].lr, 0.001);
  EXPECT_DOUBLE_EQ(m.train[1].loss, 4.5);
  EXPECT_DOUBLE_EQ(m.train[1].dropped_frac, 0.0);
}

// The heatmap has at most one column per pixel: 10 logged steps in 4 columns are bins of 3, 3, 3
// and 1 steps, each the mean of its steps' shares, spanning their cells (steps 10, 20, ...: cell
// edges halfway between them); fewer steps than columns stay one per step.
TEST(PlotMetrics, TheExpertLoadHeatmapAveragesStepsIntoAtMostOneColumnPerPixel) {
  RunMetrics m;
  for (int i = 0; i < 10; ++i) {
    TrainPoint p;
    p.step = 10 * (i + 1);
    p.expert_load = {{0.1 * i, 1 - 0.1 * i}};  // one layer, two experts
    m.train.push_back(p);
  }
  const std::vector<LoadColumn> c = expert_load_columns(m, 0, 4);
  ASSERT_EQ(c.size(), 4u);
  EXPECT_DOUBLE_EQ(c[0].lo, 5);            // step 10's cell starts half a gap before it
  EXPECT_DOUBLE_EQ(c[0].hi, 35);           // step 30's ends halfway to 40
  EXPECT_NEAR(c[0].share[0], 0.1, 1e-12);  // (0 + 0.1 + 0.2) / 3
  EXPECT_NEAR(c[1].share[1], 0.6, 1e-12);  // 1 - (0.3 + 0.4 + 0.5) / 3
  EXPECT_NEAR(c[3].share[0], 0.9, 1e-12);  // the last bin: step 100 alone
  EXPECT_DOUBLE_EQ(c[3].hi, 105);
  const std::vector<LoadColumn> all = expert_load_columns(m, 0, 1000);
  ASSERT_EQ(all.size(), 10u);
  EXPECT_NEAR(all[7].share[0], 0.7, 1e-12);
}

TEST(PlotMetrics, ClearErrorsForMissingInput) {
  test::TempDir dir;
  std::ostringstream log;
  EXPECT_THROW(plot_run(dir.file("nope"), {}, log), UsageError);
  EXPECT_THROW(plot_run(dir.path().string(), {}, log), UsageError);  // no metrics.jsonl
  write(dir.file("metrics.jsonl"), "{\"step\":10,\"val_loss\":3.0}\n");
  try {
    plot_run(dir.path().string(), {}, log);
    FAIL() << "no train lines must be an error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no train lines"), std::string::npos) << e.what();
  }
  const auto message = [&](const std::string& run) {
    try {
      plot_run(run, {}, log);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // The metrics file given for the run directory; a metrics.jsonl that is a FIFO (the read
  // blocked forever) or a directory (read as empty).
  EXPECT_NE(message(dir.file("metrics.jsonl")).find("not a directory; give the run directory"),
            std::string::npos);
  test::TempDir fifo_run, dir_run;
  ASSERT_EQ(mkfifo(fifo_run.file("metrics.jsonl").c_str(), 0644), 0);
  EXPECT_NE(message(fifo_run.path().string()).find("is a FIFO, not a metrics file"),
            std::string::npos);
  fs::create_directory(dir_run.file("metrics.jsonl"));
  EXPECT_NE(message(dir_run.path().string()).find("is a directory, not a metrics file"),
            std::string::npos);
}

// An output directory with a file in its way is a usage error (exit 2) naming the flag and the
// path, for `--out`, a directory below a file, and the directory of a PNG (`plan --png`); before,
// std::filesystem's own error ended the command with exit 1.
TEST(PlotMetrics, AFileWhereTheOutputDirectoryGoesIsNamed) {
  test::TempDir dir;
  write(dir.file("metrics.jsonl"), resumed_run(2, 8, false));
  write(dir.file("afile"), "x");
  std::ostringstream log;
  for (const std::string& out : {dir.file("afile"), dir.file("afile") + "/below"}) {
    PlotOptions opt;
    opt.out_dir = out;
    try {
      plot_run(dir.path().string(), opt, log);
      FAIL() << out;
    } catch (const UsageError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("--out '" + out + "'"), std::string::npos) << what;
    }
  }
  try {
    plot_xy(dir.file("afile") + "/x.png", "t", "x", "y", "", {1, 2}, {}, {});
    FAIL() << "a PNG below a file";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("its directory '" + dir.file("afile") +
                                         "' is not a directory (a regular file is in the way)"),
              std::string::npos)
        << e.what();
  }
}

// gnuplot exits 0 when it cannot write its PNG: on a full disk every chart came out empty and
// plot said it wrote them (exit 0). A stand-in gnuplot that creates each `set output` file empty
// and exits 0, as the real one does there: the first chart is named, removed, and the error is
// exit 1 (an output that failed), not 2.
TEST(PlotMetrics, AnEmptyChartFromGnuplotIsAnErrorNotASuccess) {
  test::TempDir dir;
  write(dir.file("metrics.jsonl"), resumed_run(2, 8, false));
  const std::string fake = dir.file("fake-gnuplot");
  write(
      fake,
      "#!/bin/sh\n"
      "sed -n \"s/^set output '\\(.*\\)'$/\\1/p\" \"$1\" | while read -r f; do : > \"$f\"; done\n");
  fs::permissions(fake, fs::perms::owner_all);
  PlotOptions opt;
  opt.gnuplot = fake;
  std::ostringstream log;
  try {
    plot_run(dir.path().string(), opt, log);
    FAIL() << "empty charts were accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.code(), kExitOther) << what;
    EXPECT_NE(what.find("gnuplot wrote the chart '" + dir.file("plots/loss.png") + "' empty"),
              std::string::npos)
        << what;
    EXPECT_FALSE(fs::exists(dir.file("plots/loss.png")));
    EXPECT_FALSE(fs::exists(dir.file("plots/loss.png.tmp")));
  }
  // A gnuplot that stops midway (killed, or failing) leaves the charts of an earlier plot as they
  // were: it writes to <chart>.tmp, renamed only after it succeeded (it wrote the real names,
  // and a plot stopped during a long heatmap left them empty).
  write(dir.file("plots/loss.png"), "an earlier chart");
  write(fake,
        "#!/bin/sh\n"
        "sed -n \"s/^set output '\\(.*\\)'$/\\1/p\" \"$1\" | while read -r f; do : > \"$f\"; done\n"
        "exit 1\n");
  EXPECT_THROW(plot_run(dir.path().string(), opt, log), std::runtime_error);
  auto loss_chart = [&] {
    std::ifstream kept(dir.file("plots/loss.png"));
    return std::string(std::istreambuf_iterator<char>(kept), {});
  };
  EXPECT_EQ(loss_chart(), "an earlier chart");
  for (const auto& e : fs::directory_iterator(dir.file("plots")))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path() << " left behind";
  // A PNG cut short (the file size limit, a disk that fills midway; gnuplot still exits 0) is no
  // chart either: it was renamed over the earlier one.
  write(fake,
        "#!/bin/sh\n"
        "sed -n \"s/^set output '\\(.*\\)'$/\\1/p\" \"$1\" | while read -r f; do\n"
        "  printf '\\211PNG\\r\\n\\032\\n0123456789' > \"$f\"; done\n");
  try {
    plot_run(dir.path().string(), opt, log);
    FAIL() << "a chart cut short was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitOther) << e.what();
    EXPECT_NE(std::string(e.what()).find("gnuplot wrote the chart '" + dir.file("plots/loss.png") +
                                         "' cut short (18 bytes, no PNG end)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(loss_chart(), "an earlier chart");
  EXPECT_FALSE(fs::exists(dir.file("plots/loss.png.tmp")));
}

// Width and height from a PNG's IHDR chunk (bytes 16..23, big-endian), after checking the
// 8-byte signature; {0, 0} when the file is not a PNG.
std::pair<uint32_t, uint32_t> png_size(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  unsigned char h[24] = {};
  f.read(reinterpret_cast<char*>(h), sizeof h);
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!f || !std::equal(sig, sig + 8, h) || std::string(h + 12, h + 16) != "IHDR") return {0, 0};
  auto be32 = [&](int i) {
    return uint32_t(h[i]) << 24 | uint32_t(h[i + 1]) << 16 | uint32_t(h[i + 2]) << 8 | h[i + 3];
  };
  return {be32(16), be32(20)};
}

TEST(Plot, DrawsEveryChartOfASyntheticRun) {
  test::TempDir dir;
  write(dir.file("metrics.jsonl"), resumed_run(2, 8, true));
  PlotOptions opt;
  opt.out_dir = dir.file("charts");
  opt.width = 800;
  opt.height = 450;
  std::ostringstream log;
  const auto pngs = plot_run(dir.path().string(), opt, log);
  ASSERT_EQ(pngs.size(), 5u);
  for (const char* name :
       {"loss.png", "aux_z_loss.png", "tokens_per_s.png", "dropped_frac.png", "expert_load.png"}) {
    const std::string p = (fs::path(opt.out_dir) / name).string();
    SCOPED_TRACE(p);
    ASSERT_TRUE(fs::exists(p));
    const auto [w, h] = png_size(p);
    EXPECT_EQ(w, 800u);
    EXPECT_GE(h, 450u);
    // An empty white 800x450 PNG compresses to ~3 KB; axes, text and curves take far more.
    EXPECT_GT(fs::file_size(p), 12000u);
  }
  // The heatmap stacks one panel per layer, so it is taller than a single chart.
  EXPECT_GT(png_size((fs::path(opt.out_dir) / "expert_load.png").string()).second, 450u);
}

TEST(Plot, RunWithoutEvalOrExpertLoadStillPlots) {
  test::TempDir dir;
  std::ostringstream o;
  for (int s = 1; s <= 5; ++s)
    o << R"({"step":)" << s << R"(,"loss":)" << 5.0 / s << R"(,"tokens_per_s":)" << 1000 * s
      << "}\n";
  write(dir.file("metrics.jsonl"), o.str());
  std::ostringstream log;
  const auto pngs = plot_run(dir.path().string(), {}, log);
  EXPECT_EQ(pngs.size(), 4u);  // no expert_load in the lines: no heatmap
  for (const auto& p : pngs) EXPECT_EQ(png_size(p).first, 1000u) << p;
  EXPECT_TRUE(fs::exists(dir.file("plots/loss.png")));
}

// Issue 17: where the run spans nodes its lines carry internode_bytes, drawn per step; a run
// directory with coactivation.h5 gets the per-layer co-activation heatmap.
TEST(Plot, InterNodeBytesAndCoactivationWhereTheRunHasThem) {
  test::TempDir dir;
  std::ostringstream o;
  for (int s = 1; s <= 6; ++s)
    o << R"({"step":)" << s << R"(,"loss":)" << 5.0 / s << R"(,"internode_bytes":)"
      << 1000000 * (10 - s) << "}\n";
  write(dir.file("metrics.jsonl"), o.str());
  const RunMetrics m = read_run_metrics(dir.file("metrics.jsonl"));
  EXPECT_DOUBLE_EQ(m.train[2].internode_bytes, 7e6);
  Coactivation c;
  c.num_layers = 3;
  c.num_experts = 4;
  c.top_k = 2;
  c.tokens = 100;
  c.last_step = 6;
  for (int l = 0; l < 3; ++l)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) c.counts.push_back(i == j ? 50 : 10 * (i + j + l));
  write_coactivation(dir.file("coactivation.h5"), c);
  PlotOptions opt;
  opt.out_dir = dir.file("charts");
  std::ostringstream log;
  const auto pngs = plot_run(dir.path().string(), opt, log);
  EXPECT_EQ(pngs.size(), 6u);  // 4 charts, internode_bytes, coactivation (no expert load)
  for (const char* name : {"internode_bytes.png", "coactivation.png"}) {
    const std::string p = (fs::path(opt.out_dir) / name).string();
    SCOPED_TRACE(p);
    ASSERT_TRUE(fs::exists(p));
    EXPECT_GT(png_size(p).first, 0u);
    EXPECT_GT(fs::file_size(p), 12000u);
  }
  // Three layers side by side: three square panels of 400 px.
  EXPECT_EQ(png_size((fs::path(opt.out_dir) / "coactivation.png").string()).first, 1200u);

  // One node: no internode_bytes in the lines, no chart.
  write(dir.file("metrics.jsonl"), R"({"step":1,"loss":2.0})"
                                   "\n");
  EXPECT_DOUBLE_EQ(read_run_metrics(dir.file("metrics.jsonl")).train[0].internode_bytes, -1);
  fs::remove(dir.file("coactivation.h5"));
  EXPECT_EQ(plot_run(dir.path().string(), opt, log).size(), 4u);
}

}  // namespace
}  // namespace sy

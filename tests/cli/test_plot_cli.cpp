// `switchyard plot` and `plan --png` at the command line: inputs and the gnuplot executable are
// checked before any chart is drawn or any output directory made (QA: a damaged coactivation.h5
// was found after five charts had been replaced; a --gnuplot that does not exist was exit 1
// after the output directory was made).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/run_command.h"
#include "common/temp_dir.h"
#include "src/data/tokens.h"

namespace {

namespace fs = std::filesystem;
using sy::test::run_command;
const std::string kBin = SWITCHYARD_BIN;
const std::string kSrc = SWITCHYARD_SOURCE_DIR;

class PlotCli : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.file("run/plots"));
    std::ofstream m(dir_.file("run/metrics.jsonl"));
    for (int s = 1; s <= 3; ++s)
      m << R"({"step":)" << s << R"(,"loss":5,"lm_loss":5,"aux_loss":0.01,"z_loss":0,)"
        << R"("lr":0.001,"grad_norm":1,"tokens_per_s":100,"dropped_frac":0,)"
        << R"("expert_load":[[0.5,0.5]]})"
        << "\n";
    std::ofstream(dir_.file("run/plots/loss.png")) << "an earlier chart";
  }
  std::string plot(const std::string& args) {
    return kBin + " plot " + dir_.file("run") + " " + args;
  }
  std::string earlier_chart() {
    std::ifstream kept(dir_.file("run/plots/loss.png"));
    return std::string(std::istreambuf_iterator<char>(kept), {});
  }
  // A token file: an HDF5 file of switchyard's, but not a co-activation one.
  std::string token_file() {
    if (fs::exists(dir_.file("t.h5"))) return dir_.file("t.h5");
    std::ofstream(dir_.file("t.txt")) << "pack my box with five dozen liquor jugs\n";
    sy::PrepareOptions prep;
    prep.inputs = {dir_.file("t.txt")};
    prep.output = dir_.file("t.h5");
    sy::prepare_token_file(prep);
    return dir_.file("t.h5");
  }
  sy::test::TempDir dir_;
};

// A token file copied over coactivation.h5: five charts were rewritten, then exit 2 (a mixed set
// of charts); under a new --out the five were left there. Now refused before any chart.
TEST_F(PlotCli, ADamagedCoactivationFileIsRefusedBeforeAnyChart) {
  fs::copy_file(token_file(), dir_.file("run/coactivation.h5"));
  auto r = run_command(plot(""));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dir_.file("run/coactivation.h5")), std::string::npos) << r.output;
  EXPECT_TRUE(earlier_chart() == "an earlier chart") << "the earlier chart was replaced";
  for (const auto& e : fs::directory_iterator(dir_.file("run/plots")))
    EXPECT_EQ(e.path().filename(), "loss.png") << e.path() << " written";
  r = run_command(plot("--out " + dir_.file("new")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(fs::exists(dir_.file("new"))) << r.output;
}

// A --gnuplot the user named that cannot run is bad usage (exit 2) naming it, before the output
// directory is made: it was exit 1 ("'/nonexist' not found") with an empty directory left.
TEST_F(PlotCli, AGnuplotThatCannotRunIsRefusedBeforeAnyDirectory) {
  fs::create_directories(dir_.file("adir"));
  std::ofstream(dir_.file("noexec")) << "#!/bin/sh\nexit 0\n";
  ::chmod(dir_.file("noexec").c_str(), 0644);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/nonexist", "--gnuplot '/nonexist': no such file"},
      {dir_.file("adir"), "is a directory"},
      {dir_.file("noexec"), "is not executable"},
      {"no-such-gnuplot-here", "--gnuplot 'no-such-gnuplot-here': not found"},
  };
  for (const auto& [gnuplot, expect] : cases) {
    auto r = run_command(plot("--out " + dir_.file("new/charts") + " --gnuplot " + gnuplot));
    EXPECT_EQ(r.exit_code, 2) << gnuplot << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << gnuplot << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dir_.file("new"))) << gnuplot;
    r = run_command(kBin + " plan --config " + kSrc +
                    "/configs/tiny.yaml --set data.path=" + token_file() + " --cluster " + kSrc +
                    "/clusters/this-machine.yaml --sweep nodes=1,2 --png " +
                    dir_.file("new/sweep.png") + " --gnuplot " + gnuplot);
    EXPECT_EQ(r.exit_code, 2) << gnuplot << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << gnuplot << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dir_.file("new"))) << gnuplot;
  }
  EXPECT_TRUE(earlier_chart() == "an earlier chart") << "the earlier chart was replaced";
}

// A gnuplot that fails and prints nothing: the message ended at "(exit 1):".
TEST_F(PlotCli, AGnuplotThatFailsSilentlyIsSaidToHavePrintedNothing) {
  const auto r = run_command(plot("--gnuplot /bin/false"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("failed (exit 1) and printed nothing"), std::string::npos) << r.output;
  EXPECT_TRUE(earlier_chart() == "an earlier chart") << "the earlier chart was replaced";
}

// A command other than train stopped by SIGTERM (a job's end, `timeout`) or Ctrl-C leaves nothing
// of its own: `plot` left its scratch folder under $TMPDIR and gnuplot's staged charts for good.
// A stand-in gnuplot stages its chart, then waits; plot is stopped meanwhile. It still ends by
// the signal (143), the charts of an earlier plot as they were, and gnuplot ends with it (it ran
// on and wrote a chart after the cleanup: `late.png.tmp`, 2 s later).
TEST_F(PlotCli, AStoppedPlotLeavesNoScratchFolderNorStagedChart) {
  const sy::test::TempDir& dir = dir_;
  fs::create_directories(dir.file("tmp"));
  std::ofstream(dir.file("gnuplot")) << "#!/bin/sh\n"
                                        "sed -n \"s/^set output '\\(.*\\)'$/\\1/p\" \"$1\" |\n"
                                        "  while read -r f; do echo half > \"$f\"; done\n"
                                        "touch " +
                                            dir.file("staged") + "\nsleep 2\necho late > " +
                                            dir.file("run/plots/late.png.tmp") + "\n";
  fs::permissions(dir.file("gnuplot"), fs::perms::owner_all);
  const auto r = run_command(
      "TMPDIR=" + dir.file("tmp") + " " + kBin + " plot " + dir.file("run") + " --gnuplot " +
      dir.file("gnuplot") + " & pid=$!; i=0; while [ ! -e " + dir.file("staged") +
      " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done; kill -TERM $pid; wait $pid; "
      "echo \"exit $?\"; sleep 3");
  EXPECT_NE(r.output.find("exit 143"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir.file("staged"))) << "gnuplot never ran: " << r.output;
  EXPECT_TRUE(fs::is_empty(dir.file("tmp"))) << "a scratch folder is left";
  for (const auto& e : fs::directory_iterator(dir.file("run/plots")))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path() << " left behind";
  EXPECT_EQ(earlier_chart(), "an earlier chart");
}

}  // namespace

// Issue 15, items 3, 9 and 10: inputs and directories that cannot work are refused at start with
// exit 2 and a message naming the key (or file) and the reason -- not a hang, not a bare
// filesystem error after steps of work -- and messages stay readable.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "faults/faults_util.h"
#include "src/train/metrics.h"

namespace sy::test::faults {
namespace {

// Item 3: a FIFO blocked open() forever (and SIGTERM did not end it).
TEST_F(FaultTest, FifoAsDataPathIsRefused) {
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0644), 0) << std::strerror(errno);
  const auto r = run_command("timeout -k 5 60 " + train(path("run"), 2, "--set parallel.ep=1") +
                             " --set data.path=" + path("fifo"));
  EXPECT_EQ(r.exit_code, 2) << "124 = hung until `timeout` killed it\n" << r.output;
  EXPECT_NE(r.output.find("token file '" + path("fifo") + "' is not a regular file"),
            std::string::npos)
      << r.output;
}

// Item 9: found at start, before any step, naming the key and why.
TEST_F(FaultTest, UnusableDirectoriesAreRefusedAtStartNamingTheKey) {
  std::ofstream(path("a_file")) << "in the way\n";
  struct Case {
    std::string set, key, why;
  };
  const std::string too_long = path(std::string(300, 'd'));
  for (const Case& c :
       {Case{"--set checkpoint.dir=" + path("a_file"), "checkpoint.dir", "is not a directory"},
        Case{"--set checkpoint.dir=" + path("a_file") + "/sub", "checkpoint.dir",
             "cannot be created: Not a directory"},
        Case{"--set run.out_dir=" + path("a_file"), "run.out_dir", "is not a directory"},
        Case{"--set run.out_dir=" + too_long, "run.out_dir", "File name too long"}}) {
    const auto r = run_command(mpirun_command(2) + train(path("run"), 20, c.set));
    EXPECT_EQ(r.exit_code, 2) << c.set << "\n" << r.output;
    EXPECT_EQ(count(r.output, "error: "), 1u) << r.output;
    EXPECT_NE(r.output.find("error: " + c.key + " '"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.why), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "work began before the check";
  }
}

TEST_F(FaultTest, ReadOnlyCheckpointDirIsRefusedAtStart) {
  if (!can_mount_tmpfs()) GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN)";
  const std::string ck = path("ck");
  std::filesystem::create_directories(ck);
  Process job("unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs -o size=1m,ro tmpfs " +
                  ck + " && " + mpirun_command(2) +
                  train(path("run"), 20, "--set checkpoint.dir=" + ck) + "'",
              path("log"));
  EXPECT_EQ(job.wait(120), 2) << job.output();
  const std::string log = job.output();
  EXPECT_NE(log.find("error: checkpoint.dir '" + ck + "' is not writable"), std::string::npos)
      << log;
  EXPECT_NE(log.find("Read-only file system"), std::string::npos) << log;
  EXPECT_EQ(log.find("step "), std::string::npos) << log;
}

// Item 10: YAML nested too deep says so; an unknown key of megabytes is echoed shortened.
TEST_F(FaultTest, ConfigMessagesStayReadable) {
  {
    std::ofstream deep(path("deep.yaml"));
    deep << "run:\n  name: " << std::string(5000, '[') << std::string(5000, ']') << "\n";
    std::ofstream big(path("big.yaml"));
    big << "run:\n  name: x\n? " << std::string(2000000, 'k') << "\n: 1\n";
  }
  auto r = run_command(kBin + " train --config " + path("deep.yaml"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("nested too deep"), std::string::npos) << r.output;
  r = run_command(kBin + " train --config " + path("big.yaml"));
  EXPECT_EQ(r.exit_code, 2) << r.output.substr(0, 500);
  EXPECT_LT(r.output.size(), 1000u) << r.output.substr(0, 500);
  EXPECT_NE(r.output.find("(2000000 characters): unknown key"), std::string::npos)
      << r.output.substr(0, 500);
}

// Item 10: a failed metrics write names errno's reason.
TEST(FaultsMetrics, WriteFailureNamesTheReason) {
  MetricsWriter w("/dev/full", /*append=*/true);
  try {
    w.write(nlohmann::json{{"step", 1}});
    ADD_FAILURE() << "a write to /dev/full succeeded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(std::strerror(ENOSPC)), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sy::test::faults

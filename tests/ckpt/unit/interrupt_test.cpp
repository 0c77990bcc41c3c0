// src/core/interrupt.h: what a command other than train was writing is gone after a SIGINT,
// SIGTERM or SIGHUP ends it, and the process still ends by that signal. Each case runs in a
// forked child that installs the handlers, makes its files and signals itself; the parent looks
// at the files and at how the child ended.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "common/temp_dir.h"
#include "src/core/durable_file.h"
#include "src/core/interrupt.h"
#include "src/core/scratch_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace sy;

// Runs `body` in a child with the handlers installed, then raises `signo` there; returns the
// signal that ended the child (0 when it ended otherwise).
int child_signalled_by(int signo, const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    files::install_interrupt_cleanup();
    try {
      body();
    } catch (...) {
      _exit(3);
    }
    std::raise(signo);
    _exit(4);  // not reached: the default action ends the child
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(Interrupt, RegisteredFilesAndFoldersGoAndTheSignalStillEndsTheProcess) {
  test::TempDir dir;
  const std::string kept = dir.file("kept"), gone = dir.file("gone"), folder = dir.file("work");
  const std::string released = dir.file("released");
  const int sig = child_signalled_by(SIGTERM, [&] {
    std::ofstream(kept) << "not registered";
    std::ofstream(gone) << "registered";
    fs::create_directory(folder);
    std::ofstream(folder + "/a.dat") << "x";
    {
      files::RemovedOnInterrupt done(released);  // registered, then let go: no longer removed
      std::ofstream(released) << "finished";
    }
    static files::RemovedOnInterrupt f(gone), w(folder, files::RemovedOnInterrupt::kFolder),
        a(folder + "/a.dat");
  });
  EXPECT_EQ(sig, SIGTERM);
  EXPECT_EQ(read_all(kept), "not registered");
  EXPECT_EQ(read_all(released), "finished");
  EXPECT_FALSE(fs::exists(gone));
  EXPECT_FALSE(fs::exists(folder));
}

// A signal the process was started with ignored (a script's background job starts with SIGINT
// ignored, so Ctrl-C to the script leaves it running) stays ignored: the handlers took it over.
TEST(Interrupt, AnIgnoredSignalStaysIgnored) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::signal(SIGINT, SIG_IGN);
    files::install_interrupt_cleanup();
    std::raise(SIGINT);
    _exit(7);  // still running: it was ignored
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7) << "status " << status;
}

// A file being staged (an export, a placement): its .tmp is removed, the earlier output kept.
TEST(Interrupt, AStagedFileLeavesNoTemporaryAndTheEarlierOutputKept) {
  test::TempDir dir;
  const std::string out = dir.file("new/model.safetensors");
  const int sig = child_signalled_by(SIGINT, [&] {
    static files::StagedFiles staged(files::StagedFiles::kCreateParents);
    staged.stage_text(out, "half of it");
  });
  EXPECT_EQ(sig, SIGINT);
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  EXPECT_FALSE(fs::exists(dir.file("new"))) << "the folder it made for the output";

  fs::create_directory(dir.file("new"));
  files::atomic_write_text(out, "the earlier export");
  EXPECT_EQ(child_signalled_by(SIGHUP,
                               [&] {
                                 static files::StagedFiles staged;
                                 staged.stage_text(out, "half of the next");
                               }),
            SIGHUP);
  EXPECT_EQ(read_all(out), "the earlier export");
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

// plot's and bench train's scratch folder under $TMPDIR, with the files handed out.
TEST(Interrupt, AScratchFolderIsRemovedWithItsFiles) {
  test::TempDir dir;
  const std::string record = dir.file("where");
  const int sig = child_signalled_by(SIGTERM, [&] {
    static ScratchDir scratch("switchyard-test-");
    std::ofstream(scratch.file("plots.gp")) << "plot";
    std::ofstream(scratch.file("train.dat")) << "1 2";
    std::ofstream(record) << scratch.path().string();
  });
  EXPECT_EQ(sig, SIGTERM);
  const std::string folder = read_all(record);
  ASSERT_FALSE(folder.empty());
  EXPECT_FALSE(fs::exists(folder)) << folder;
}

}  // namespace

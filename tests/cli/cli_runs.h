// What the CLI tests of a training run's outputs share (test_sample_export.cpp and
// test_export.cpp): two small texts, their token file, a tiny.yaml run with a checkpoint at its
// end, and that checkpoint's path.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/run_command.h"
#include "common/temp_dir.h"

namespace sy::test::cli {

const std::string kBin = SWITCHYARD_BIN;
const std::string kSrc = SWITCHYARD_SOURCE_DIR;

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Two small English texts, ~18 KB.
inline void write_texts(const sy::test::TempDir& dir) {
  std::ofstream a(dir.file("a.txt")), b(dir.file("b.txt"));
  for (int i = 0; i < 200; ++i) a << "the quick brown fox jumps over the lazy dog " << i << "\n";
  for (int i = 0; i < 200; ++i) b << "pack my box with five dozen liquor jugs " << i << "\n";
}

inline std::string prepare(const sy::test::TempDir& dir, const std::string& extra = "") {
  const std::string h5 = dir.file(extra.empty() ? "bytes.h5" : "spm.h5");
  const auto r = sy::test::run_command(kBin + " data prepare --input " + dir.file("a.txt") + " " +
                                       dir.file("b.txt") + " --output " + h5 + " " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return h5;
}

// Trains configs/tiny.yaml for `steps` steps with a checkpoint at the end; returns the output.
inline std::string train(const std::string& data, const std::string& out, int steps,
                         const std::string& sets = "") {
  const auto r = sy::test::run_command(
      kBin + " train --config " + kSrc + "/configs/tiny.yaml --set data.path=" + data +
      " --set run.out_dir=" + out + " --set train.steps=" + std::to_string(steps) +
      " --set checkpoint.every=" + std::to_string(steps) + " --set log.every=100 " + sets);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output;
}

inline std::string final_ckpt(const std::string& out, int steps) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08d.h5", steps);
  return out + "/checkpoints/" + name;
}

// The texts written, their byte token file, and a 2-step run in dir/run: its final checkpoint.
inline std::string two_step_checkpoint(const sy::test::TempDir& dir) {
  write_texts(dir);
  train(prepare(dir), dir.file("run"), 2);
  return final_ckpt(dir.file("run"), 2);
}

}  // namespace sy::test::cli

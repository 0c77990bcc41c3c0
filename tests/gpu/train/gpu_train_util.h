// Helpers of the GPU trainer tests (test_gpu_train, run under mpirun): the licence token file
// shared by the ranks of one host, the tiny config on the GPU, and exact comparisons of
// parameters and checkpoints.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "common/mpi_util.h"
#include "common/temp_dir.h"
#include "common/train_util.h"
#include "gpu_mpi_util.h"
#include "kernels/cuda/check.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/model/params.h"
#include "src/train/trainer.h"

namespace sy::gputest {

// The folder holding configs/: $SWITCHYARD_SOURCE_DIR, set by CTest (tests/gpu/tests.cmake) and by
// the GPU bundle's env.sh (jobs/gpu_bundle.sh). Read at run time, never compiled in: the GPU
// machine runs these binaries from another path than the one they were built in.
inline std::string source_dir() {
  const char* dir = std::getenv("SWITCHYARD_SOURCE_DIR");
  if (dir == nullptr || *dir == '\0')
    throw std::runtime_error(
        "SWITCHYARD_SOURCE_DIR is not set: point it at the folder holding configs/ (ctest and the "
        "GPU bundle's env.sh set it)");
  return dir;
}

// Rank 0's temporary directory, known to every rank of MPI_COMM_WORLD (one host), holding a token
// file: source_dir()'s data/licenses.h5 when it is there (the GPU bundle carries it; the GPU
// machine's image need not have Debian's license texts), else one made from
// /usr/share/common-licenses (as the layout tests do). Collective.
class SharedRunDir {
 public:
  SharedRunDir() {
    std::vector<char> buf(4096, '\0');
    if (test::world_rank() == 0) {
      dir_ = std::make_unique<test::TempDir>();
      const std::filesystem::path made = std::filesystem::path(source_dir()) / "data/licenses.h5";
      if (std::filesystem::is_regular_file(made)) {
        std::filesystem::copy_file(made, dir_->file("licenses.h5"));
      } else {
        PrepareOptions opt;
        for (const auto& e : std::filesystem::directory_iterator("/usr/share/common-licenses"))
          if (e.is_regular_file() && !e.is_symlink()) opt.inputs.push_back(e.path().string());
        std::sort(opt.inputs.begin(), opt.inputs.end());
        opt.output = dir_->file("licenses.h5");
        prepare_token_file(opt);
      }
      const std::string root = dir_->path().string();
      std::copy(root.begin(), root.end(), buf.begin());
    }
    MPI_Bcast(buf.data(), static_cast<int>(buf.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
    root_ = buf.data();
  }
  // Rank 0's directory goes last, after every rank is done with it.
  ~SharedRunDir() { MPI_Barrier(MPI_COMM_WORLD); }
  SharedRunDir(const SharedRunDir&) = delete;
  SharedRunDir& operator=(const SharedRunDir&) = delete;

  const std::string& root() const { return root_; }
  std::string ckpt_dir(const std::string& run) const { return root_ + "/" + run + "/checkpoints"; }
  std::string ckpt(const std::string& run, int step) const {
    return ckpt_dir(run) + "/" + ckpt::checkpoint_file_name(step);
  }

  // configs/tiny.yaml on the GPU: 20 steps of 8 sequences in micro-batches of 2, a checkpoint
  // every 10 steps (5 kept), an evaluation every 10, then `set`.
  Config config(const std::string& run, const std::vector<std::string>& set = {}) const {
    std::vector<std::string> o = {"data.path=" + root_ + "/licenses.h5",
                                  "run.out_dir=" + root_ + "/" + run,
                                  "checkpoint.dir=" + ckpt_dir(run),
                                  "device=cuda",
                                  "train.steps=20",
                                  "train.global_batch=8",
                                  "train.micro_batch=2",
                                  "checkpoint.every=10",
                                  "checkpoint.keep=5",
                                  "eval.every=10",
                                  "eval.sequences=4",
                                  "log.every=1",
                                  "parallel.timeout_s=120"};
    o.insert(o.end(), set.begin(), set.end());
    return load_config(source_dir() + "/configs/tiny.yaml", o);
  }

 private:
  std::unique_ptr<test::TempDir> dir_;
  std::string root_;
};

// The names of the tensors whose bits differ (sizes included).
inline std::vector<std::string> differing(const std::map<std::string, std::vector<float>>& a,
                                          const std::map<std::string, std::vector<float>>& b) {
  std::vector<std::string> out;
  for (const auto& [name, va] : a) {
    const auto it = b.find(name);
    if (it == b.end() || it->second.size() != va.size() ||
        std::memcmp(it->second.data(), va.data(), va.size() * sizeof(float)) != 0)
      out.push_back(name);
  }
  if (a.size() != b.size()) out.push_back("(different tensor sets)");
  return out;
}

// A checkpoint's tensors as one flat buffer [params | m | v], each in make_param_table(cfg)'s
// layout, read on this rank alone: two checkpoints hold the same numbers iff these are bitwise
// equal.
inline std::vector<float> checkpoint_flat(const std::string& file) {
  const ckpt::TrainState st = ckpt::verify_checkpoint(MPI_COMM_SELF, file);
  const ParamTable t = make_param_table(parse_config(st.config_yaml, {}, file));
  const size_t P = t.total_numel();
  std::vector<float> all(3 * P, 0.0f);
  ckpt::load_checkpoint(MPI_COMM_SELF, file,
                        ckpt::whole_table_refs(t, all.data(), all.data() + P, all.data() + 2 * P));
  return all;
}

// ||got - want|| / ||want|| (infinite when the sizes differ).
inline double relative_l2(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Elements whose bits differ (the size difference counts too).
inline size_t bitwise_differences(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

// Trains on the first `ranks` ranks of the world; the others return an empty summary.
inline TrainSummary run_on(int ranks, const Config& cfg, const std::string& resume = "") {
  TrainOptions o;
  o.resume = resume;
  o.gather_params = true;
  o.check_replicas = true;
  return test::train_on_first(ranks, cfg, o);
}

// Multi-GPU runs against the 1-GPU run: losses within kLossTolerance (relative), final
// parameters within kParamTolerance (per tensor, ||a - b|| / ||b||, as
// tests/train/test_layouts.cpp).
constexpr double kLossTolerance = 1e-5;
constexpr double kParamTolerance = 1e-4;

// Skips the calling test unless it runs in the np=2 instance with a GPU of its own for each rank
// (as the trainer binds them: every GPU visible to both, or one per task).
#define SY_REQUIRE_TWO_GPU_RANKS()                                                  \
  do {                                                                              \
    if (::sy::test::world_size() != 2) GTEST_SKIP() << "runs in the np=2 instance"; \
    const std::string sy_why_ = ::sy::gputest::bind_gpu_of_own();                   \
    if (!sy_why_.empty()) GTEST_SKIP() << "2 ranks need a GPU each: " << sy_why_;   \
  } while (0)

// `two` (a run on both ranks, with gather_params and check_replicas) against `one` (the 1-GPU
// run): every rank checks its replicas; rank 0 every step's loss, the final val_loss and the
// gathered parameters.
inline void expect_matches_one_gpu(const TrainSummary& two, const TrainSummary& one,
                                   const std::string& what) {
  EXPECT_TRUE(two.diverged_replicas.empty())
      << what << ": replicas differ on rank " << test::world_rank() << ", first "
      << two.diverged_replicas.front();
  if (test::world_rank() != 0) return;
  ASSERT_EQ(two.step_losses.size(), one.step_losses.size()) << what;
  for (size_t i = 0; i < one.step_losses.size(); ++i)
    EXPECT_NEAR(two.step_losses[i], one.step_losses[i], kLossTolerance * one.step_losses[i])
        << what << ", step " << i + 1;
  EXPECT_NEAR(two.final_val_loss, one.final_val_loss, kLossTolerance * one.final_val_loss) << what;
  ASSERT_EQ(two.final_params.size(), one.final_params.size()) << what;
  for (const auto& [name, want] : one.final_params)
    EXPECT_LE(relative_l2(two.final_params.at(name), want), kParamTolerance)
        << what << ": " << name;
}

}  // namespace sy::gputest

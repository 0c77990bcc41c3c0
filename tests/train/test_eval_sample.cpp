// eval.sample_tokens' sample at an evaluation (src/train/eval_sample.h): rank 0 draws it alone,
// after a collective gather of the model, so nothing it does may end rank 0 by itself.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "comm/groups.h"
#include "common/temp_dir.h"
#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/model/init.h"
#include "src/model/params.h"
#include "src/train/eval_sample.h"
#include "src/train/signals.h"

namespace sy {
namespace {

// NaN parameters give non-finite logits, which the sampler refuses (NumericalError): a warning
// now. It was thrown on rank 0 alone, which ended while the other ranks waited for it in their
// next collective until the watchdog (parallel.timeout_s, 300 s by default). With the model's
// own parameters the sample is printed and appended to samples.txt.
TEST(EvalSample, ASampleThatCannotBeDrawnIsAWarningNotAThrow) {
  test::TempDir dir;
  {
    std::ofstream t(dir.file("t.txt"));
    for (int i = 0; i < 100; ++i) t << "the quick brown fox jumps over the lazy dog " << i << "\n";
  }
  PrepareOptions prep;
  prep.inputs = {dir.file("t.txt")};
  prep.output = dir.file("t.h5");
  prepare_token_file(prep);
  std::filesystem::create_directories(dir.file("run"));
  const Config cfg = load_config(
      std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml",
      {"data.path=" + prep.output, "run.out_dir=" + dir.file("run"), "eval.sample_tokens=8"});
  const TokenSource data =
      open_token_file(cfg.data.path, cfg.model.vocab_size, cfg.model.seq_len, /*scan=*/false);
  const EvalSampler sampler(cfg, data);
  const comm::ProcessGroups g(MPI_COMM_SELF, {1, 1, 1, 0});
  const ParamTable table = make_param_table(cfg);

  std::vector<float> params(table.total_numel(), std::numeric_limits<float>::quiet_NaN());
  std::ostringstream log;
  EXPECT_NO_THROW(sampler.sample(3, g, table, params.data(), log));
  EXPECT_NE(log.str().find("warning: no sample at step 3: "), std::string::npos) << log.str();
  EXPECT_FALSE(std::filesystem::exists(dir.file("run/samples.txt")));

  init_params(params.data(), table, cfg.run.seed);
  std::ostringstream good;
  sampler.sample(4, g, table, params.data(), good);
  EXPECT_NE(good.str().find("sample at step 4"), std::string::npos) << good.str();
  EXPECT_EQ(good.str().find("warning"), std::string::npos) << good.str();
  EXPECT_TRUE(std::filesystem::exists(dir.file("run/samples.txt")));

  // A preemption signal cuts the sample short: rank 0 drew all of eval.sample_tokens before the
  // run looked at it (1e9 tokens ran on for minutes after SIGTERM, found by QA).
  {
    PreemptionSignals signals;
    std::raise(SIGUSR1);
    std::ostringstream cut;
    EXPECT_NO_THROW(sampler.sample(5, g, table, params.data(), cut));
    EXPECT_NE(cut.str().find("warning: no sample at step 5: SIGUSR1 arrived: cut short"),
              std::string::npos)
        << cut.str();
  }
}

}  // namespace
}  // namespace sy

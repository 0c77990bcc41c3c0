// Whole processes: a rank SIGKILLed while a checkpoint is written leaves the previous checkpoint
// intact and `latest` on it; `switchyard ckpt info|export` on real checkpoints of the tiny model
// (written by ckpt_helper, 2 ranks, rows sharded), with the exported weights compared to the
// model's own initialisation (init_params), not to anything read from the file.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/run_command.h"
#include "common/temp_dir.h"
#include "src/config/config.h"
#include "src/core/h5.h"
#include "src/model/init.h"
#include "src/model/params.h"

namespace {

using sy::test::run_command;
namespace fs = std::filesystem;

const std::string kBin = SWITCHYARD_BIN;
const std::string kHelper = CKPT_HELPER;
const std::string kMpirun = SY_TEST_MPIRUN;
const std::string kTiny = std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml";

// One OpenMP thread per rank: ranks already share the cores, and spinning OpenMP workers of
// oversubscribed ranks slow a 1-second run to 20 seconds on a busy machine.
std::string helper(int np, const std::string& args) {
  return "env OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive " + kMpirun + " -np " + std::to_string(np) +
         " " + kHelper + " " + args;
}

// The whole file: SPEC 5's `latest` holds the file name, nothing else (no newline), so that a
// reader joining it to the directory finds the file.
std::string read_latest(const std::string& dir) {
  std::ifstream in(dir + "/latest", std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Kill {
  int rank;
  const char* stage;
  bool new_file_complete;  // killed after the rename: the new file exists (latest still old)
};

class CkptCrash : public testing::TestWithParam<Kill> {};

TEST_P(CkptCrash, KilledWriterLeavesThePreviousCheckpointAndLatest) {
  const Kill k = GetParam();
  sy::test::TempDir tmp;
  const std::string dir = tmp.file("ck");
  auto r = run_command(helper(2, "write --config " + kTiny + " --dir " + dir + " --step 10"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(helper(2, "write --config " + kTiny + " --dir " + dir +
                                " --step 20 --kill-rank " + std::to_string(k.rank) +
                                " --kill-at '" + k.stage + "'"));
  ASSERT_NE(r.exit_code, 0) << "the killed write succeeded?\n" << r.output;
  ASSERT_NE(r.output.find("killing itself"), std::string::npos) << r.output;

  EXPECT_EQ(read_latest(dir), "step_00000010.h5");
  EXPECT_EQ(fs::exists(dir + "/step_00000020.h5"), k.new_file_complete);
  r = run_command(
      helper(2, "check --config " + kTiny + " --file " + dir + "/step_00000010.h5 --step 10"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_command(helper(1, "plan --dir " + dir));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resume: " + dir + "/step_00000010.h5\n"), std::string::npos) << r.output;

  // The next save of the same step succeeds over whatever the crash left behind.
  r = run_command(helper(2, "write --config " + kTiny + " --dir " + dir + " --step 20"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_latest(dir), "step_00000020.h5");
  EXPECT_FALSE(fs::exists(dir + "/step_00000020.h5.tmp"));
  r = run_command(
      helper(2, "check --config " + kTiny + " --file " + dir + "/step_00000020.h5 --step 20"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

INSTANTIATE_TEST_SUITE_P(
    Stages, CkptCrash,
    testing::Values(Kill{1, "wrote model/layers/0/attn/wqkv", false},  // mid-data, not rank 0
                    Kill{0, "closed", false},   // file complete, not yet renamed
                    Kill{0, "renamed", true}),  // renamed, `latest` not yet updated
    [](const testing::TestParamInfo<Kill>& param_info) {
      return std::string(param_info.param.stage).substr(0, 5) + "_rank" +
             std::to_string(param_info.param.rank);
    });

// A checkpoint of the tiny model at step 10 in a fresh temp dir.
class CkptCli : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.file("ck");
    const auto r =
        run_command(helper(2, "write --config " + kTiny + " --dir " + dir_ + " --step 10"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    file_ = dir_ + "/step_00000010.h5";
  }
  sy::test::TempDir tmp_;
  std::string dir_, file_;
};

TEST_F(CkptCli, HelpOnEveryCkptCommand) {
  for (const std::string args : {"ckpt --help", "ckpt info --help", "ckpt export --help"}) {
    const auto r = run_command(kBin + " " + args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
  }
  EXPECT_EQ(run_command(kBin + " ckpt").exit_code, 2);
  EXPECT_EQ(run_command(kBin + " ckpt export " + file_).exit_code, 2) << "--output is required";
}

TEST_F(CkptCli, InfoListsStateConfigAndEveryTensorWithItsShape) {
  const auto r = run_command(kBin + " ckpt info " + file_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string want :
       {"step         10 (tokens seen 2560)", "layout       dp=2,tp=1,ep=1,etp=1",
        "optimizer    step 10, lr 0.003", "data loader  seed 1234, next step 10",
        "all checksums verify", "/model/embed", "[256, 32]", "/model/layers/1/moe/w2",
        "[4, 64, 32]", "/optim/v/layers/1/moe/router", "[32, 4]", "config", "d_model: 32"})
    EXPECT_NE(r.output.find(want), std::string::npos) << "missing '" << want << "'\n" << r.output;
  EXPECT_EQ(r.output.find("BAD"), std::string::npos) << r.output;
}

TEST_F(CkptCli, InfoOnADamagedCheckpointNamesTheDatasetAndExitsTwo) {
  {
    // Flip a byte in the middle of /model/layers/0/attn/wo's first chunk.
    sy::h5::File f{H5_CHECK(H5Fopen(file_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
    sy::h5::Dataset ds{H5_CHECK(H5Dopen2(f, "model/layers/0/attn/wo", H5P_DEFAULT))};
    sy::h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
    hsize_t offset[2];
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    H5_CHECK(H5Dget_chunk_info(ds, space, 0, offset, &mask, &addr, &size));
    std::fstream io(file_, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(addr + size / 2));
    io.put('\x42');
  }
  auto r = run_command(kBin + " ckpt info " + file_);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/model/layers/0/attn/wo"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("BAD"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("/model/embed"), std::string::npos) << "others still listed";
  r = run_command(kBin + " ckpt export " + file_ + " --output " + tmp_.file("x.safetensors"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("dataset /model/layers/0/attn/wo"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp_.file("x.safetensors")));

  std::ofstream(tmp_.file("text.h5")) << "not a checkpoint";
  r = run_command(kBin + " ckpt info " + tmp_.file("text.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("not an HDF5 file"), std::string::npos) << r.output;
  r = run_command(kBin + " ckpt info " + tmp_.file("absent.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("not found"), std::string::npos) << r.output;
}

TEST_F(CkptCli, ExportHoldsTheModelsInitialWeightsUnderSpecNames) {
  const std::string out = tmp_.file("tiny.safetensors");
  const auto r = run_command(kBin + " ckpt export " + file_ + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::ifstream in(out, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  const char* data = bytes.data() + 8 + n;

  // The reference: the tiny config's parameter table and initialisation (what ckpt_helper saved).
  const sy::Config cfg = sy::load_config(kTiny);
  const sy::ParamTable table = sy::make_param_table(cfg);
  std::vector<float> want(table.total_numel());
  sy::init_params(want.data(), table, cfg.run.seed);
  EXPECT_EQ(header.size(), table.specs().size() + 1) << "the /model tensors and __metadata__";
  EXPECT_EQ(header["__metadata__"]["step"], "10");
  for (const auto& s : table.specs()) {
    ASSERT_TRUE(header.contains(s.name)) << s.name;
    const auto& t = header[s.name];
    EXPECT_EQ(t["dtype"], "F32");
    EXPECT_EQ(t["shape"].get<std::vector<int64_t>>(), s.shape) << s.name;
    const auto off = t["data_offsets"].get<std::vector<uint64_t>>();
    ASSERT_EQ(off[1] - off[0], s.numel * sizeof(float)) << s.name;
    EXPECT_EQ(std::memcmp(data + off[0], want.data() + s.offset, s.numel * sizeof(float)), 0)
        << s.name << " differs from init_params";
  }
}

}  // namespace

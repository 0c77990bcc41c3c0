// Bad input at the command line (SPEC section 9): a table of malformed configs, overrides, token
// files and prepare inputs, each run through the real binary. Every one must exit with exactly 2
// (not 1, not a signal), print a message on stderr naming the key path or the file, and keep
// HDF5's own error dump off the terminal.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/file_text.h"
#include "common/other_user.h"
#include "common/temp_dir.h"
#include "common/tiny_tokens.h"
#include "src/data/tokens.h"

namespace {

using sy::test::read_file;
const std::string kBin = SWITCHYARD_BIN;

struct Result {
  int exit_code = -1;  // -1: killed by a signal (a crash)
  std::string err;     // stderr only; stdout is discarded
};

// A shell command's stderr and exit code.
Result run_shell(const std::string& command) {
  Result r;
  FILE* pipe = popen((command + " 2>&1 >/dev/null").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.err.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The switchyard command `args`; `prefix` runs in the same shell first (e.g. "ulimit -f 64;").
Result run(const std::string& args, const std::string& prefix = "") {
  return run_shell(prefix + kBin + " " + args);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A token file with one out-of-range id (300 with vocab_size 256) at /train[7], written with the
// HDF5 API so the defect is exactly the one stated.
void write_bad_token_file(const std::string& path) {
  std::vector<uint16_t> train(4000, 65), val(1000, 66);
  train[7] = 300;
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  for (const auto& [name, data] : {std::pair{"train", &train}, std::pair{"val", &val}}) {
    const hsize_t dims[1] = {data->size()};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t ds =
        H5Dcreate2(f, name, H5T_STD_U16LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, data->data());
    H5Dclose(ds);
    H5Sclose(space);
  }
  const hid_t scalar = H5Screate(H5S_SCALAR);
  const int64_t vocab = 256;
  const hid_t a = H5Acreate2(f, "vocab_size", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &vocab);
  H5Aclose(a);
  const hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, 5);
  const hid_t t = H5Acreate2(f, "tokenizer", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(t, str, "bytes");
  H5Aclose(t);
  H5Tclose(str);
  H5Sclose(scalar);
  H5Fclose(f);
}

struct Case {
  std::string label;
  std::string config;  // YAML written to <label>.yaml ("" = no config file written)
  std::string args;    // after the binary; {cfg} = that file, {dir} = the temp dir
  std::string expect;  // substring of stderr: the key path or the file name
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

TEST(CliBadInput, EveryMalformedInputExitsTwoNamingTheCulprit) {
  sy::test::TempDir dir;
  const std::string d = dir.path().string();

  // Valid inputs the defects are planted next to: a token file and a config that trains.
  std::string text;
  for (int i = 0; i < 100; ++i)
    text += "a small amount of valid training text, line " + std::to_string(i) + "\n";
  write_text(d + "/text.txt", text);
  write_text(d + "/empty.txt", "");
  write_text(d + "/not_hdf5.h5", "this is plain text, not HDF5\n");
  sy::PrepareOptions prep;
  prep.inputs = {d + "/text.txt"};
  prep.output = d + "/good.h5";
  sy::prepare_token_file(prep);
  write_bad_token_file(d + "/bad_token.h5");

  const std::string base = "run: {name: bad, out_dir: " + d +
                           "/out}\n"
                           "model: {d_model: 16, n_layers: 1, n_heads: 2, seq_len: 16}\n"
                           "moe: {num_experts: 4, top_k: 2, ffn_hidden: 16}\n"
                           "train: {steps: 1, global_batch: 4, micro_batch: 2, warmup_steps: 0}\n"
                           "eval: {every: 0, sequences: 2}\n";
  const std::string good_data = "data: {path: " + d + "/good.h5}\n";
  const std::string train = "train --config {cfg}";

  const std::vector<Case> cases = {
      // ---- config: keys and types ----
      {"unknown_key", base + good_data + "checkpoint: {kep: 2}\n", train, "checkpoint.kep"},
      {"unknown_nested", "model: {d_model: 16, dmodel: 3}\n" + good_data, train, "model.dmodel"},
      {"unknown_section", base + good_data + "optimizer: {lr: 1}\n", train, "optimizer"},
      {"section_not_map", base + good_data + "log: 5\n", train, "log"},
      {"duplicate_key", base + good_data + "data: {path: x.h5}\n", train, "data"},
      {"int_not_int", base + good_data, train + " --set model.d_model=abc", "model.d_model"},
      {"int_is_float", base + good_data, train + " --set train.steps=1.5", "train.steps"},
      {"bad_bool", base + good_data, train + " --set model.tie_embeddings=maybe",
       "model.tie_embeddings"},
      {"bad_enum", base + good_data, train + " --set moe.aux_loss_scope=batch",
       "moe.aux_loss_scope"},
      {"bad_device", base + good_data, train + " --set device=tpu", "device"},
      {"yaml_syntax", "model:\n  d_model: [16, 32\n" + good_data, train, "yaml_syntax.yaml"},
      {"yaml_tab_indent", "model:\n\td_model: 16\n", train, "yaml_tab_indent.yaml"},
      {"missing_config", "", "train --config {dir}/no_such.yaml", "no_such.yaml"},
      {"config_is_list", "- 1\n- 2\n", train, "config_is_list.yaml"},
      // ---- config: ranges and cross-key rules ----
      {"top_k_gt_experts", base + good_data, train + " --set moe.top_k=5", "moe.top_k"},
      {"d_model_heads", base + good_data, train + " --set model.n_heads=3", "model.d_model"},
      {"odd_head_dim", base + good_data, train + " --set model.d_model=18", "model.d_model"},
      {"batch_not_multiple", base + good_data, train + " --set train.micro_batch=3",
       "train.global_batch"},
      {"negative_warmup", base + good_data, train + " --set train.warmup_steps=-2",
       "train.warmup_steps"},
      {"min_lr_gt_lr", base + good_data, train + " --set train.lr=1e-4 --set train.min_lr=1e-3",
       "train.min_lr"},
      {"negative_eps", base + good_data, train + " --set model.norm_eps=-1", "model.norm_eps"},
      {"zero_capacity", base + good_data, train + " --set moe.capacity_factor=0",
       "moe.capacity_factor"},
      {"negative_coeff", base + good_data, train + " --set moe.z_loss_coeff=-0.1",
       "moe.z_loss_coeff"},
      {"vocab_one", base + good_data, train + " --set model.vocab_size=1", "model.vocab_size"},
      {"zero_eval_seqs", base + good_data, train + " --set eval.sequences=0", "eval.sequences"},
      {"ep_not_divisor", base + good_data, train + " --set parallel.ep=3", "moe.num_experts"},
      {"zero_keep", base + good_data, train + " --set checkpoint.keep=0", "checkpoint.keep"},
      {"empty_data_path", base, train, "data.path"},
      // ---- overrides ----
      {"set_unknown", base + good_data, train + " --set moe.topk=1", "moe.topk"},
      {"set_no_equals", base + good_data, train + " --set model.d_model", "model.d_model"},
      // ---- token files ----
      {"data_missing", base + "data: {path: " + d + "/absent.h5}\n", train, "absent.h5"},
      {"data_not_hdf5", base + "data: {path: " + d + "/not_hdf5.h5}\n", train, "not_hdf5.h5"},
      {"data_is_dir", base + "data: {path: " + d + "}\n", train, d},
      {"data_bad_token", base + "data: {path: " + d + "/bad_token.h5}\n", train, "bad_token.h5"},
      {"data_vocab_too_big", base + good_data, train + " --set model.vocab_size=100", "good.h5"},
      {"data_too_short", base + good_data, train + " --set model.seq_len=100000", "good.h5"},
      // ---- data prepare ----
      {"prepare_missing_input", "", "data prepare --input {dir}/nope.txt --output {dir}/o.h5",
       "nope.txt"},
      {"prepare_empty_input", "",
       "data prepare --input {dir}/text.txt {dir}/empty.txt --output {dir}/o.h5", "empty.txt"},
      {"prepare_no_out_dir", "", "data prepare --input {dir}/text.txt --output {dir}/no_dir/o.h5",
       "no_dir"},
  };
  ASSERT_GE(cases.size(), 15u);

  for (const auto& c : cases) {
    const std::string cfg = d + "/" + c.label + ".yaml";
    if (!c.config.empty()) write_text(cfg, c.config);
    const std::string args = replace_all(replace_all(c.args, "{cfg}", cfg), "{dir}", d);
    const Result r = run(args);
    EXPECT_EQ(r.exit_code, 2) << c.label << ": switchyard " << args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos)
        << c.label << ": stderr does not name '" << c.expect << "':\n"
        << r.err;
    EXPECT_EQ(r.err.find("HDF5-DIAG"), std::string::npos) << c.label << ": HDF5 spew\n" << r.err;
    EXPECT_LT(r.err.size(), 2000u) << c.label << ": a message, not a dump\n" << r.err;
  }
  // No case got as far as writing outputs.
  EXPECT_FALSE(std::filesystem::exists(d + "/out/metrics.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(d + "/o.h5"));
}

// dir/in.txt of ~400 KB (~800 KB of uint16 byte tokens): past a 256 KiB file size limit.
void write_text_past_the_limit(const sy::test::TempDir& dir) {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i) + " of the text\n";
  write_text(dir.file("in.txt"), text);
}

// dir/in.txt (write_text_past_the_limit) turned into the token file dir/d.h5.
bool prepare_tokens(const sy::test::TempDir& dir) {
  write_text_past_the_limit(dir);
  return run("data prepare --input " + dir.file("in.txt") + " --output " + dir.file("d.h5"))
             .exit_code == 0;
}

// A run from step 0 (no --resume, or an empty one from a script's unset variable) into a
// checkpoint.dir of an earlier run's checkpoints overwrote them as it went, exit 0; it is refused
// before any work, the checkpoints untouched, and --resume auto continues.
TEST(CliBadInput, AFreshRunDoesNotOverwriteAnEarlierRunsCheckpoints) {
  sy::test::TempDir dir;
  ASSERT_TRUE(prepare_tokens(dir));
  const std::string out = dir.file("run"), ckpt = out + "/checkpoints/step_00000002.h5";
  const std::string train = "train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
                            "/configs/tiny.yaml --set data.path=" + dir.file("d.h5") +
                            " --set run.out_dir=" + out + " --set checkpoint.every=2";
  ASSERT_EQ(run(train + " --set train.steps=2").exit_code, 0);
  const std::string before = read_file(ckpt);
  ASSERT_FALSE(before.empty());
  Result r = run(train + " --set train.steps=4 --set run.seed=99");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("holds 1 checkpoint(s) of an earlier run (newest " + ckpt),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("--resume auto"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(ckpt), before);
  r = run(train + " --set train.steps=4 --resume ''");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(ckpt), before);
  r = run(train + " --set train.steps=4 --resume auto");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/step_00000004.h5"));
}

// A token file another process holds open for writing (h5py's 'r+'; here this test, through
// HDF5): HDF5's file lock refuses the open, which is not damage. It was reported "truncated or
// damaged" with HDF5's frames.
TEST(CliBadInput, ATokenFileHeldOpenForWritingIsSaidToBeInUse) {
  sy::test::TempDir dir;
  ASSERT_EQ(sy::test::prepare_tiny_tokens(dir, kBin).exit_code, 0);
  const std::string tokens = dir.file("t.h5");
  const hid_t held = H5Fopen(tokens.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(held, 0);
  const Result r =
      run("train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
          "/configs/tiny.yaml --set data.path=" + tokens + " --set run.out_dir=" + dir.file("run"));
  H5Fclose(held);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("token file '" + tokens +
                       "': cannot be opened: another process holds it open for writing"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("damaged"), std::string::npos) << r.err;
}

// --resume auto where the checkpoint latest names is held open for writing by another process:
// not damage, so not skipped for an older one (which the run would then train over: review).
TEST(CliBadInput, ACheckpointHeldOpenForWritingIsNotSkippedByResumeAuto) {
  sy::test::TempDir dir;
  ASSERT_EQ(sy::test::prepare_tiny_tokens(dir, kBin).exit_code, 0);
  const std::string train = "train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
                            "/configs/tiny.yaml --set data.path=" + dir.file("t.h5") +
                            " --set run.out_dir=" + dir.file("run") +
                            " --set checkpoint.every=2 --set eval.every=0";
  ASSERT_EQ(run(train + " --set train.steps=4").exit_code, 0);
  const std::string four = dir.file("run/checkpoints/step_00000004.h5");
  const hid_t held = H5Fopen(four.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(held, 0);
  const Result r = run(train + " --set train.steps=6 --resume auto");
  H5Fclose(held);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("checkpoint " + four), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("another process holds it open for writing"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not skipped"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("run/checkpoints/step_00000006.h5")));
}

// A token file past the file size limit (ulimit -f): one message naming the file and the limit,
// exit 1, nothing left behind. It used to be SIGXFSZ (153) with the .tmp left, or a crash in
// HDF5's exit handlers (139) after pages of HDF5-DIAG.
TEST(CliBadInput, ATokenFilePastTheFileSizeLimitIsOneMessage) {
  sy::test::TempDir dir;
  write_text_past_the_limit(dir);
  const std::string out = dir.file("out.h5");
  const Result r =
      run("data prepare --input " + dir.file("in.txt") + " --output " + out, "ulimit -f 256; ");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("'" + out + "'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("file size limit (ulimit -f)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("HDF5"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
}

// A small token file under a limit it fits in is written: the room check asked for a MiB of
// metadata, and a 272 KB file "needed about 1.3 MiB" under a 1 MiB limit (QA).
TEST(CliBadInput, ASmallTokenFileUnderALimitItFitsIsWritten) {
  sy::test::TempDir dir;
  sy::test::write_file(dir.file("small.txt"), std::string(2000, 'x'));
  const std::string out = dir.file("small.h5");
  const Result r =
      run("data prepare --input " + dir.file("small.txt") + " --output " + out, "ulimit -f 1000; ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(out));
}

// The same write failing after the room check passed (a disk that filled meanwhile; the test
// hook skips the check): the same one message and exit 1, for prepare and import, where HDF5's
// clean-up at exit used to crash (139) after the message.
TEST(CliBadInput, ATokenFileWriteThatFailsMidWayIsOneMessage) {
  sy::test::TempDir dir;
  write_text_past_the_limit(dir);
  std::string raw;  // 200 000 uint16 ids
  for (int i = 0; i < 200000; ++i) raw += std::string{static_cast<char>(i % 251), '\0'};
  write_text(dir.file("train.bin"), raw);
  write_text(dir.file("val.bin"), raw);
  const std::string out = dir.file("out.h5");
  for (const std::string& args : {"data prepare --input " + dir.file("in.txt") + " --output " + out,
                                  "data import --format raw-uint16 " + dir.file("train.bin") + " " +
                                      dir.file("val.bin") + " --output " + out}) {
    const Result r = run(args, "ulimit -f 256; SWITCHYARD_TOKEN_FILE_NO_ROOM_CHECK=1 ");
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find("writing token file '" + out + "' failed: file size limit exceeded"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.err.find("Segmentation"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(out));
    EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  }
}

// An input this user may not read says so: HDF5 takes such a file for no HDF5 file at all, and
// the message was "not an HDF5 file (make one with `switchyard data prepare`)" for a good token
// file, and the same for a run's coactivation.h5. Needs root to run as another user (CI is).
TEST(CliBadInput, AnUnreadableInputSaysPermissionDenied) {
  sy::test::TempDir dir;
  const auto nobody = sy::test::as_nobody(
      dir.path(), kBin, std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml");
  if (!nobody) GTEST_SKIP() << "needs root and setpriv to run as another user";
  write_text_past_the_limit(dir);
  const std::string data = dir.file("d.h5"), run_dir = dir.file("run");
  ASSERT_EQ(run("data prepare --input " + dir.file("in.txt") + " --output " + data).exit_code, 0);
  const std::string train = "train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
                            "/configs/tiny.yaml --set data.path=" + data +
                            " --set run.out_dir=" + run_dir + " --set train.steps=";
  ASSERT_EQ(run(train + "2").exit_code, 0);
  ASSERT_EQ(std::system(("chown -R 65534:65534 " + dir.path().string() + " && chown 0:0 " + data +
                         " " + run_dir + "/coactivation.h5 && chmod 600 " + data + " " + run_dir +
                         "/coactivation.h5")
                            .c_str()),
            0);
  // As nobody, with the copies of the binary and the config it can reach.
  const auto as_nobody = [&](const std::string& args) {
    return run_shell(nobody->prefix + nobody->bin + " " + args);
  };
  Result r = as_nobody("train --config " + nobody->config + " --set data.path=" + data +
                       " --set train.steps=4 --set run.out_dir=" + dir.file("run2"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("token file '" + data + "': cannot be read: Permission denied"),
            std::string::npos)
      << r.err;
  r = as_nobody("placement --run " + run_dir + " --nodes 2 --output " + dir.file("p.yaml"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("coactivation.h5: cannot be read: Permission denied"), std::string::npos)
      << r.err;
  // Text inputs too: a prompt file and a data prepare input (their messages said only "cannot
  // be read"), and a missing prompt file is "not found".
  ASSERT_EQ(
      std::system(("cp " + dir.file("in.txt") + " " + dir.file("secret.txt") + " && chown 0:0 " +
                   dir.file("secret.txt") + " && chmod 600 " + dir.file("secret.txt"))
                      .c_str()),
      0);
  r = as_nobody("data prepare --input " + dir.file("secret.txt") + " --output " +
                dir.file("d2.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(
      r.err.find("input file '" + dir.file("secret.txt") + "' cannot be read: Permission denied"),
      std::string::npos)
      << r.err;
  r = as_nobody("sample --checkpoint " + run_dir + "/checkpoints/step_00000002.h5 --prompt-file " +
                dir.file("secret.txt"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--prompt-file '" + dir.file("secret.txt") +
                       "' cannot be read: Permission denied"),
            std::string::npos)
      << r.err;
  r = as_nobody("sample --checkpoint " + run_dir + "/checkpoints/step_00000002.h5 --prompt-file " +
                dir.file("absent.txt"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--prompt-file '" + dir.file("absent.txt") + "' not found"),
            std::string::npos)
      << r.err;
}

// An existing output owned by someone else in a sticky directory (a shared /tmp or scratch
// folder) cannot be replaced by the rename at the end of the work: `data prepare` tokenized its
// whole input and then failed with exit 1, `ckpt export` verified the checkpoint and failed with
// exit 2. Both are refused before the work now, exit 2 naming the owner, the file untouched. Needs
// root to run as another user (CI is).
TEST(CliBadInput, AnOutputThatCannotBeReplacedIsRefusedBeforeTheWork) {
  sy::test::TempDir dir;
  const auto nobody = sy::test::as_nobody(
      dir.path(), kBin, std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml");
  if (!nobody) GTEST_SKIP() << "needs root and setpriv to run as another user";
  ASSERT_TRUE(prepare_tokens(dir));
  const std::string run_dir = dir.file("run");
  ASSERT_EQ(run("train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
                "/configs/tiny.yaml --set data.path=" + dir.file("d.h5") +
                " --set run.out_dir=" + run_dir + " --set train.steps=2 --set checkpoint.every=2")
                .exit_code,
            0);
  const std::string shared = dir.file("shared");
  std::filesystem::create_directory(shared);
  write_text(shared + "/d.h5", "root's\n");
  write_text(shared + "/m.safetensors", "root's\n");
  std::filesystem::create_directory(shared + "/hf");  // an earlier hf export's folder
  write_text(shared + "/hf/model.safetensors", "root's\n");
  ASSERT_EQ(std::system(("chmod -R a+rX " + dir.path().string() + " && chmod 1777 " + shared + " " +
                         shared + "/hf")
                            .c_str()),
            0);
  const auto as_nobody = [&](const std::string& args) {
    return run_shell(nobody->prefix + nobody->bin + " " + args);
  };
  Result r =
      as_nobody("data prepare --input " + dir.file("in.txt") + " --output " + shared + "/d.h5");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("'" + shared +
                       "/d.h5' belongs to another user (uid 0) in the sticky "
                       "directory"),
            std::string::npos)
      << r.err;
  r = as_nobody("ckpt export " + run_dir + "/checkpoints/step_00000002.h5 --output " + shared +
                "/m.safetensors");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("'" + shared + "/m.safetensors' belongs to another user"), std::string::npos)
      << r.err;
  // An hf export replaces the earlier export's files in its folder: each one is asked about (it
  // did the work and then failed on the rename).
  r = as_nobody("ckpt export " + run_dir + "/checkpoints/step_00000002.h5 --format hf --output " +
                shared + "/hf");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("'" + shared + "/hf/model.safetensors' belongs to another user"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read_file(shared + "/d.h5"), "root's\n");
  EXPECT_EQ(read_file(shared + "/m.safetensors"), "root's\n");
  EXPECT_EQ(read_file(shared + "/hf/model.safetensors"), "root's\n");
  // A new name in the same folder is fine.
  r = as_nobody("data prepare --input " + dir.file("in.txt") + " --output " + shared + "/mine.h5");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The run's config.yaml is written whole or the run does not start: a stream nobody checked left
// it empty on a full disk (and `placement --run` then misread the run), or, as here, not
// written at all, and the run went on to exit 0.
TEST(CliBadInput, ARunsConfigThatCannotBeWrittenStopsTheRunNamingIt) {
  sy::test::TempDir dir;
  ASSERT_TRUE(prepare_tokens(dir));
  std::filesystem::create_directories(dir.file("run") + "/config.yaml");
  const Result r = run("train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
                       "/configs/tiny.yaml --set data.path=" + dir.file("d.h5") +
                       " --set run.out_dir=" + dir.file("run") + " --set train.steps=2");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("the run's config '" + dir.file("run") + "/config.yaml'"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("Is a directory"), std::string::npos) << r.err;
}

// Under a file size limit of a few MiB every MPI command failed inside MPI_Init with PMIx's
// "OUT-OF-RESOURCE" lines (its shared-memory store writes files of a few MiB), naming nothing,
// even a read-only `ckpt info`. switchyard keeps PMIx's data in process memory below 64 MiB, so
// they start; a user's own PMIX_MCA_gds is left alone. /bin/sh counts 512-byte blocks: 1 MB.
TEST(CliBadInput, MpiCommandsStartUnderASmallFileSizeLimit) {
  sy::test::TempDir dir;
  ASSERT_TRUE(prepare_tokens(dir));
  ASSERT_EQ(run("train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
                "/configs/tiny.yaml --set data.path=" + dir.file("d.h5") + " --set run.out_dir=" +
                dir.file("run") + " --set train.steps=2 --set checkpoint.every=2")
                .exit_code,
            0);
  const std::string ckpt = dir.file("run") + "/checkpoints/step_00000002.h5";
  const std::string limit = "unset PMIX_MCA_gds; ulimit -f 2000; ";
  Result r = run("ckpt info " + ckpt + " --no-config", limit);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("PMIX ERROR"), std::string::npos) << r.err;
  r = run("sample --checkpoint " + ckpt + " --prompt hi --tokens 3", limit);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// A checkpoint or an export past the file size limit: one message, exit 1, the previous
// checkpoint and `latest` kept, nothing half-written left. They were SIGXFSZ (153, no message,
// a .tmp left), or a crash in HDF5's clean-up at exit (139) after the failed checkpoint write.
// The limit is 6144 blocks (3 MiB in /bin/sh's 512-byte blocks, 6 MiB in bash's), the model's
// checkpoint ~40 MiB. (MPI's start-up keeps its job data in
// shared-memory files of a few MiB unless PMIx is told to keep them in its own memory.)
TEST(CliBadInput, CheckpointsAndExportsPastTheFileSizeLimitAreOneMessage) {
  namespace fs = std::filesystem;
  sy::test::TempDir dir;
  ASSERT_TRUE(prepare_tokens(dir));
  const std::string train = "train --config " + std::string(SWITCHYARD_SOURCE_DIR) +
                            "/configs/tiny.yaml --set data.path=" + dir.file("d.h5") +
                            " --set run.out_dir=" + dir.file("run") +
                            " --set checkpoint.every=2 --set model.d_model=128 "
                            "--set moe.ffn_hidden=512 --set moe.num_experts=8 --set train.steps=";
  ASSERT_EQ(run(train + "2").exit_code, 0);
  const std::string ckpts = dir.file("run") + "/checkpoints/";
  const std::string limit = "export PMIX_MCA_gds=hash; ulimit -f 6144; ";

  Result r = run(train + "4 --resume auto", limit);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("checkpoint step_00000004.h5 needs about"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("file size limit (ulimit -f)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the previous checkpoint and `latest` are kept"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(ckpts + "step_00000004.h5.tmp"));
  EXPECT_TRUE(fs::exists(ckpts + "step_00000002.h5"));
  std::ifstream latest(ckpts + "latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_00000002.h5");

  // A run's first checkpoint past the limit: there is no previous one to keep (it said there was,
  // and advised --resume auto, which starts over; found by QA).
  r = run(train + "2 --set run.out_dir=" + dir.file("first"), limit);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("no checkpoint of this run is in it yet"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("previous checkpoint"), std::string::npos) << r.err;

  for (const std::string& format : {std::string("safetensors"), std::string("hf")}) {
    const std::string out = dir.file("export-" + format);
    const std::string target = format == "hf" ? out : out + ".safetensors";
    r = run("ckpt export " + ckpts + "step_00000002.h5 --format " + format + " --output " + target,
            limit);
    EXPECT_EQ(r.exit_code, 1) << format << "\n" << r.err;
    EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(target)) << target;
    EXPECT_FALSE(fs::exists(target + ".tmp")) << target;
  }
}

}  // namespace

// From a training run to text, as a user meets it: samples at evaluation, the final checkpoint
// carrying the final evaluation, `switchyard sample` (reproducible, greedy, every bad prompt or
// checkpoint an exit 2 with a clear message), SentencePiece token files flowing into
// checkpoints, and imported llm.c shards. The exports: test_export.cpp.
#include <gtest/gtest.h>
#include <iconv.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_runs.h"
#include "common/damage.h"
#include "common/run_command.h"
#include "common/temp_dir.h"

#if defined(SWITCHYARD_HAVE_CUDA)
#include "kernels/cuda/check.h"
#endif

namespace {

namespace fs = std::filesystem;
using sy::test::run_command;
using namespace sy::test::cli;  // kBin, kSrc, the texts, their token file, a run, its checkpoint

// The command's stdout alone (the sample's text; its progress goes to stderr).
sy::test::CommandResult stdout_of(const std::string& cmd) {
  return run_command("(" + cmd + " 2>/dev/null)");
}

// Whether `text` is well-formed UTF-8, by glibc's iconv (another implementation than the one
// under test): it stops with EILSEQ or EINVAL at the first byte that is not.
bool valid_utf8(const std::string& text) {
  iconv_t cd = iconv_open("UTF-8", "UTF-8");
  if (cd == reinterpret_cast<iconv_t>(-1)) return false;
  std::string in = text, out(text.size() + 16, '\0');
  char* ip = in.data();
  char* op = out.data();
  size_t il = in.size(), ol = out.size();
  const bool ok = iconv(cd, &ip, &il, &op, &ol) != static_cast<size_t>(-1) && il == 0;
  iconv_close(cd);
  return ok;
}

TEST(SampleCli, TrainSamplesAtEvalAndSampleCommandStreamsText) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir);
  const std::string out = dir.file("run");
  const std::string log =
      train(data, out, 4, "--set eval.every=2 --set eval.sample_tokens=64 --set eval.sequences=4");
  EXPECT_TRUE(contains(log, "sample at step 2")) << log;
  EXPECT_TRUE(contains(log, "sample at step 4")) << log;
  std::ifstream samples(out + "/samples.txt");
  const std::string st{std::istreambuf_iterator<char>(samples), std::istreambuf_iterator<char>()};
  EXPECT_TRUE(contains(st, "sample at step 2") && contains(st, "sample at step 4")) << st;
  // The log shows the samples' control bytes and bytes that are not UTF-8 (an untrained byte
  // model emits both) escaped, so that a terminal or `grep` takes the log for text; samples.txt
  // keeps the model's bytes.
  const auto control = [](const std::string& text) {
    return std::count_if(text.begin(), text.end(), [](char ch) {
      const auto c = static_cast<unsigned char>(ch);
      return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f;
    });
  };
  EXPECT_EQ(control(log), 0) << log;
  EXPECT_TRUE(valid_utf8(log)) << log;
  EXPECT_GT(control(st), 0) << "this seed's samples hold no control byte to show it\n" << st;

  // The final checkpoint carries the final evaluation: ckpt info shows metrics.jsonl's last
  // val_loss (it was written after it).
  double last_val = 0.0;
  std::ifstream m(out + "/metrics.jsonl");
  for (std::string line; std::getline(m, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("val_loss")) last_val = j["val_loss"].get<double>();
  }
  const std::string ckpt = final_ckpt(out, 4);
  auto r = run_command(kBin + " ckpt info " + ckpt + " --no-config");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  char want[64];
  std::snprintf(want, sizeof want, "val loss     last %.6f", last_val);
  EXPECT_TRUE(contains(r.output, want)) << want << "\n" << r.output;
  EXPECT_TRUE(contains(r.output, "tokenizer    bytes")) << r.output;

  // A fixed seed gives the same text twice; the text continues the prompt.
  const std::string cmd =
      kBin + " sample --checkpoint " + ckpt + " --prompt 'the quick' --tokens 40";
  const auto a = stdout_of(cmd + " --seed 5");
  const auto b = stdout_of(cmd + " --seed 5");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.output.rfind("the quick", 0), 0u) << a.output;
  EXPECT_GT(a.output.size(), std::string("the quick").size());
  r = run_command(cmd + " --seed 5");
  EXPECT_TRUE(contains(r.output, "tokens/s at 64 tokens")) << r.output;
  EXPECT_TRUE(contains(r.output, "without capacity dropping")) << r.output;
  // Temperature 0 is greedy: the same text as top-k 1, for any seed.
  const auto g0 = stdout_of(cmd + " --temperature 0 --seed 1");
  const auto g1 = stdout_of(cmd + " --top-k 1 --seed 2");
  ASSERT_EQ(g0.exit_code, 0) << g0.output;
  EXPECT_EQ(g0.output, g1.output);
  // A prompt past seq_len (32 bytes) is read through the window the text is generated with.
  const std::string longer = "the quick brown fox jumps over the lazy dog";
  const auto l = stdout_of(kBin + " sample --checkpoint " + ckpt + " --prompt '" + longer +
                           "' --tokens 8 --temperature 0");
  ASSERT_EQ(l.exit_code, 0) << l.output;
  EXPECT_EQ(l.output.rfind(longer, 0), 0u) << l.output;
  EXPECT_GT(l.output.size(), longer.size());
}

// The evaluation sample of a run sharded over two ranks (experts on one, the other on the other;
// attention split in two) is the sample `switchyard sample` draws from the run's final
// checkpoint with the same prompt (the validation split's first 16 bytes), seed (run.seed) and
// temperature (1): the parameters gathered on rank 0 are the checkpoint's, whatever the layout.
TEST(SampleCli, TheEvalSampleOfAShardedRunIsItsCheckpointsSample) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir), out = dir.file("run");
  for (const std::string layout : {"--set parallel.ep=2", "--set parallel.tp=2"}) {
    fs::remove_all(out);
    const auto r =
        run_command(sy::test::mpirun(2) + " " + kBin + " train --config " + kSrc +
                    "/configs/tiny.yaml --set data.path=" + data + " --set run.out_dir=" + out +
                    " --set train.steps=3" + " --set checkpoint.every=3 --set eval.every=3" +
                    " --set eval.sample_tokens=48 --set eval.sequences=2 " + layout);
    ASSERT_EQ(r.exit_code, 0) << layout << "\n" << r.output;
    std::ifstream in(out + "/samples.txt", std::ios::binary);
    std::string header, text;
    ASSERT_TRUE(std::getline(in, header)) << layout;
    ASSERT_TRUE(contains(header, "sample at step 3 (the first 16 validation tokens, then 48"))
        << header;
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    ASSERT_GE(text.size(), 18u) << text;
    text.resize(text.size() - 1);  // samples.txt's blank line; `sample` ends its text with \n
    {
      std::ofstream p(dir.file("prompt.txt"), std::ios::binary);
      p << text.substr(0, 16);
    }
    const auto s =
        stdout_of(kBin + " sample --checkpoint " + final_ckpt(out, 3) + " --prompt-file " +
                  dir.file("prompt.txt") + " --tokens 48 --temperature 1 --seed 1234");
    ASSERT_EQ(s.exit_code, 0) << s.output;
    EXPECT_EQ(s.output, text) << layout;
  }
}

// A hangup (SIGHUP: the terminal closed) ends a command as it ends any program: 128 + 1. UCX's
// library took the signal for its debug mode before main ran, and `sample` went on generating.
TEST(SampleCli, AHangupEndsTheCommand) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const auto r = run_command("timeout 60 " + kBin + " sample --checkpoint " + ckpt +
                             " --prompt 'the' --tokens 100000000 >/dev/null 2>&1 & pid=$!; "
                             "sleep 2; kill -HUP $pid; wait $pid");
  EXPECT_EQ(r.exit_code, 129) << r.output;
}

// ... except under nohup, which starts it with SIGHUP ignored: that stays so. UCX's library
// constructor had replaced the SIG_IGN before main, and main then set the default: a logout
// ended `nohup switchyard ...`.
TEST(SampleCli, AHangupUnderNohupIsIgnored) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const auto r = run_command("timeout 60 nohup " + kBin + " sample --checkpoint " + ckpt +
                             " --prompt 'the' --tokens 100000000 >/dev/null 2>&1 & pid=$!; "
                             "sleep 2; kill -HUP $pid; sleep 1; kill -0 $pid && echo alive; "
                             "kill -TERM $pid; wait $pid");
  EXPECT_NE(r.output.find("alive"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_code, 143) << r.output;
}

TEST(SampleCli, BadPromptsAndCheckpointsExitTwo) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const std::string s = kBin + " sample --checkpoint ";
  auto expect2 = [&](const std::string& args, const std::string& part) {
    const auto r = run_command(s + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, part)) << args << ": '" << part << "' not in\n" << r.output;
  };
  expect2(ckpt + " --prompt ''", "is empty");
  expect2(ckpt, "no prompt");
  expect2(ckpt + " --prompt-file " + dir.file("missing.txt"), "missing.txt");
  expect2(ckpt + " --prompt-file " + dir.path().string(),
          "--prompt-file '" + dir.path().string() + "' is a directory");
  // --device cuda where it cannot run: the reason, before the checkpoint is read.
#if defined(SWITCHYARD_HAVE_CUDA)
  std::string no_gpu;
  if (sy::cuda::device_count(&no_gpu) == 0)
    expect2(ckpt + " --prompt x --device cuda", "--device cuda needs a usable CUDA GPU: " + no_gpu);
#else
  expect2(ckpt + " --prompt x --device cuda",
          "this switchyard was built without the CUDA backend (configure with "
          "-DSWITCHYARD_CUDA=ON)");
#endif
  expect2(ckpt + " --prompt x --device tpu", "--device 'tpu' is not one of cpu, cuda");
  expect2(ckpt + " --prompt x --temperature -1", "--temperature -1 must be");  // not -1.000000
  expect2(ckpt + " --prompt x --top-p 1.25", "--top-p 1.25 must be in (0, 1]");
  expect2(ckpt + " --prompt x --temperature inf", "must be finite and >= 0");
  expect2(ckpt + " --prompt x --seed -1", "--seed: expected an integer in [0, 2^64), got '-1'");
  expect2(ckpt + " --prompt x --seed 18446744073709551616", "--seed");
  expect2(dir.file("nope.h5") + " --prompt x", "not found");
  // The checkpoint directory's pointer file given as the checkpoint: the file it names.
  expect2(dir.file("run/checkpoints/latest") + " --prompt x",
          "pointer file: pass the file it names, '" + ckpt + "'");

  // Damage: bytes flipped inside a model tensor's data (the middle of the file, as this test
  // flipped before, is the optimizer state, which sample does not need: the next test), and a
  // truncated copy.
  const auto size = static_cast<int64_t>(fs::file_size(ckpt));
  fs::copy_file(ckpt, dir.file("flipped.h5"));
  const auto [addr, chunk] = sy::test::first_chunk(dir.file("flipped.h5"), "model/embed");
  for (int64_t off = addr + chunk / 3; off < addr + chunk / 3 + 64; ++off)
    sy::test::xor_byte(dir.file("flipped.h5"), off);
  expect2(dir.file("flipped.h5") + " --prompt x", "flipped.h5', dataset /model/embed");
  fs::copy_file(ckpt, dir.file("cut.h5"));
  fs::resize_file(dir.file("cut.h5"), static_cast<uintmax_t>(size / 2));
  expect2(dir.file("cut.h5") + " --prompt x", "cut.h5");
}

// A checkpoint this user cannot read says so (before: "not an HDF5 file (no HDF5 signature)",
// and "file not found" inside a directory it cannot enter). Root reads every file, so the
// command runs as nobody (setpriv); skipped where that cannot run the binary.
TEST(SampleCli, ACheckpointThatCannotBeReadSaysSo) {
  const std::string nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  if (run_command(nobody + kBin + " --version").exit_code != 0)
    GTEST_SKIP() << "cannot run the binary as nobody (not root, or its path is closed to others)";
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  fs::permissions(dir.path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const std::string open = dir.file("open.h5"), closed_dir = dir.file("closed");
  fs::copy_file(ckpt, open);
  fs::permissions(open, fs::perms::none);
  fs::create_directory(closed_dir);
  fs::copy_file(ckpt, closed_dir + "/c.h5");
  fs::permissions(closed_dir, fs::perms::owner_all);
  for (const std::string& file : {open, closed_dir + "/c.h5"}) {
    const auto r = run_command(nobody + kBin + " sample --checkpoint " + file + " --prompt x");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "'" + file + "': cannot be read: Permission denied"))
        << r.output;
  }
}

// Damage the model does not need (a chunk of the optimizer state) leaves it usable: sample and
// ckpt export work and say what is damaged; before, both refused the checkpoint. ckpt info and
// --resume still refuse it, which need the whole file.
TEST(SampleCli, DamagedOptimizerStateStillSamplesAndExports) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const std::string damaged = dir.file("damaged.h5");
  fs::copy_file(ckpt, damaged);
  const auto [addr, size] = sy::test::first_chunk(damaged, "optim/m/embed");
  sy::test::xor_byte(damaged, addr + size / 2);
  const std::string said = "dataset /optim/m/embed is damaged";
  auto r = run_command("{ " + kBin + " sample --checkpoint " + ckpt +
                       " --prompt the --tokens 16 --temperature 0 2>/dev/null; }");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string text = r.output;
  r = run_command(kBin + " sample --checkpoint " + damaged +
                  " --prompt the --tokens 16 --temperature 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "warning: " + said)) << r.output;
  EXPECT_TRUE(contains(r.output, text)) << r.output;  // the same model, the same greedy text
  r = run_command(kBin + " ckpt export " + damaged + " --output " + dir.file("m.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "note: " + said)) << r.output;
  r = run_command(kBin + " ckpt info --no-config " + damaged);
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

// Text that cannot be written (stdout on /dev/full, as on a full disk) ends the command with exit
// 1 saying so, and sample stops at once; before, both exited 0 with the output lost.
TEST(SampleCli, AnOutputThatCannotBeWrittenExitsOne) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  // stderr to the pipe, stdout to /dev/full (run_command adds its own 2>&1 after the group).
  auto r = run_command("{ " + kBin + " sample --checkpoint " + ckpt +
                       " --prompt x --tokens 1000000000 2>&1 >/dev/full; }");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "writing the generated text failed: No space left on device"))
      << r.output;
  r = run_command("{ " + kBin + " ckpt info " + ckpt + " 2>&1 >/dev/full; }");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "writing the standard output failed")) << r.output;
}

// `--prompt-file -` reads standard input, as most tools do (it was "'-' not found"); a count of
// one is "1 token".
TEST(SampleCli, APromptFileOfADashIsStandardInput) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const auto r = run_command("printf 'the' | " + kBin + " sample --checkpoint " + ckpt +
                             " --prompt-file - --tokens 1 --temperature 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "prompt 3 tokens;")) << r.output;
  EXPECT_TRUE(contains(r.output, "\nthe")) << r.output;
  EXPECT_TRUE(contains(r.output, "generated 1 token in ")) << r.output;
}

// A standard stream closed at start (`<&-`, `>&-`) reads as empty and fails to be written, as a
// closed one does: its number was taken by the next file a library opened (a pipe of UCX's or
// Open MPI's), and `--prompt-file /dev/stdin <&-` waited on that pipe for ever. --help and
// --version to a full disk are exit 1 as every other output is (they were exit 0).
TEST(SampleCli, AClosedStandardStreamIsNotAnotherFile) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  auto r = run_command("timeout 30 " + kBin + " sample --checkpoint " + ckpt +
                       " --prompt-file /dev/stdin <&-");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--prompt-file '/dev/stdin' is empty")) << r.output;
  r = run_command("{ timeout 60 " + kBin + " sample --checkpoint " + ckpt +
                  " --prompt x --tokens 5 2>&1 >&-; }");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "writing the generated text failed: Bad file descriptor"))
      << r.output;
  for (const std::string args : {"--help", "--version", "sample --help"}) {
    r = run_command("{ " + kBin + " " + args + " 2>&1 >/dev/full; }");
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "writing the standard output failed")) << args;
  }
}

// Where a GPU is usable (CUDA build): `sample --device cuda` streams the same greedy text as
// --device cpu (the decoders' logits agree within 1e-4: tests/gpu/sample), and says which device
// ran. Not yet run on a GPU.
TEST(SampleCli, DeviceCudaGivesTheCpuGreedyText) {
#if !defined(SWITCHYARD_HAVE_CUDA)
  GTEST_SKIP() << "built without the CUDA backend (BadPromptsAndCheckpointsExitTwo checks the "
                  "refusal)";
#else
  std::string no_gpu;
  if (sy::cuda::device_count(&no_gpu) == 0)
    GTEST_SKIP() << "no usable CUDA device (" << no_gpu
                 << "); BadPromptsAndCheckpointsExitTwo checks the refusal";
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string out = dir.file("run");
  train(prepare(dir), out, 2);
  const std::string cmd = kBin + " sample --checkpoint " + final_ckpt(out, 2) +
                          " --prompt 'the quick' --tokens 48 --temperature 0 --device ";
  const auto cpu = stdout_of(cmd + "cpu");
  const auto gpu = stdout_of(cmd + "cuda");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  ASSERT_EQ(gpu.exit_code, 0) << gpu.output;
  EXPECT_EQ(gpu.output, cpu.output);
  const auto r = run_command(cmd + "cuda");
  EXPECT_TRUE(contains(r.output, "device cuda")) << r.output;
#endif
}

// A resume on a token file of another tokenizer says so (the embeddings were trained on other
// ids); the same tokenizer in another file does not.
TEST(SampleCli, AResumeOnAnotherTokenizerWarns) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string bpe = prepare(dir, "--tokenizer bpe --vocab-size 300");
  const std::string bytes = prepare(dir);
  const std::string out = dir.file("run");
  train(bpe, out, 2, "--set model.vocab_size=300");
  const std::string resume = " --set model.vocab_size=300 --resume " + final_ckpt(out, 2);
  std::string log = train(bytes, out, 3, resume);
  EXPECT_TRUE(contains(log, "warning: the token file's tokenizer ('bytes') is not the one")) << log;
  EXPECT_TRUE(contains(log, "('sentencepiece, a ")) << log;
  fs::copy_file(bpe, dir.file("copy.h5"));
  log = train(dir.file("copy.h5"), out, 3, resume);
  EXPECT_FALSE(contains(log, "tokenizer ('")) << log;
}

TEST(SampleCli, SentencePieceRunsCarryTheirTokenizer) {
  sy::test::TempDir dir;
  write_texts(dir);
  const std::string data = prepare(dir, "--tokenizer bpe --vocab-size 300");
  const std::string out = dir.file("run");
  train(data, out, 2, "--set model.vocab_size=300");
  const std::string ckpt = final_ckpt(out, 2);
  auto r = run_command(kBin + " ckpt info " + ckpt + " --no-config");
  EXPECT_TRUE(contains(r.output, "tokenizer    sentencepiece")) << r.output;
  EXPECT_TRUE(contains(r.output, "at /tokenizer/model (verifies)")) << r.output;
  r = stdout_of(kBin + " sample --checkpoint " + ckpt +
                " --prompt 'pack my box' --tokens 10 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("pack my box", 0), 0u) << r.output;
  r = run_command(kBin + " sample --checkpoint " + ckpt + " --prompt \"$(printf 'ab\\377')\"");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "not valid UTF-8 at byte offset 2")) << r.output;

  // Imported ids have no text: a prompt cannot be encoded.
  std::string raw;
  for (int i = 0; i < 400; ++i) {
    const auto v = static_cast<uint16_t>(i % 50);
    raw.append(reinterpret_cast<const char*>(&v), 2);
  }
  std::ofstream(dir.file("train.bin"), std::ios::binary) << raw;
  std::ofstream(dir.file("val.bin"), std::ios::binary) << raw;
  r = run_command(kBin + " data import --format raw-uint16 " + dir.file("train.bin") + " " +
                  dir.file("val.bin") + " --output " + dir.file("imp.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  train(dir.file("imp.h5"), dir.file("imp"), 2);
  r = run_command(kBin + " sample --checkpoint " + final_ckpt(dir.file("imp"), 2) + " --prompt x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "'imported' has no text")) << r.output;
}

// `data import --format llmc` reads the 256-int32 header (magic, version, token count) and the
// tokens after it; read as bare uint16 the header's 512 words would become tokens too.
TEST(DataImportCli, LlmcShardsAreReadByTheirHeader) {
  const sy::test::TempDir dir;
  for (const char* name : {"train.bin", "val.bin"}) {
    std::vector<int32_t> header(256, 0);
    header[0] = 20240520;
    header[1] = 1;
    header[2] = 300;
    std::ofstream f(dir.file(name), std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), 1024);
    for (int i = 0; i < 300; ++i) {
      const auto v = static_cast<uint16_t>(i % 50);
      f.write(reinterpret_cast<const char*>(&v), 2);
    }
  }
  // The format's name in any case (review: "LLMC" was read as raw-uint16, then refused as an
  // llm.c shard with the advice to give --format llmc).
  for (const char* format : {"llmc", "LLMC"}) {
    const auto r =
        run_command(kBin + " data import --format " + format + " " + dir.file("train.bin") + " " +
                    dir.file("val.bin") + " --output " + dir.file(std::string(format) + ".h5"));
    ASSERT_EQ(r.exit_code, 0) << format << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "vocab_size 50 (largest id + 1), 300 train / 300 val tokens"))
        << r.output;
  }
}

// ---- ckpt export --format hf --------------------------------------------------------------------

}  // namespace

// A checkpoint written by another tool to SPEC section 5 alone -- the root attributes it lists,
// /model and /optim as plain contiguous float32 datasets, /optim's step and lr, no /state, and
// neither of the two attributes switchyard adds (the manifest `tensors`, `metadata_checksum`) --
// is read: `ckpt info` says it is not sealed, `train --resume` continues from it exactly as from
// the switchyard checkpoint it was copied from, and `sample` generates the same text. Before, all
// three refused it ("attribute 'tensors' missing"). A switchyard checkpoint that lost only one
// of the two attributes is still refused: that is damage, not another writer.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_runs.h"
#include "src/ckpt/seal.h"
#include "src/core/h5.h"
#include "src/core/h5_attr.h"

namespace {

using namespace sy::test::cli;

herr_t collect(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

// Copies what SPEC 5 lists of `ours` into `out`, the way h5py would write it (no filters, no
// chunks). `keep_manifest`: also copy `tensors` (a sealed file that lost its checksum).
// `skip`: a dataset not copied; `then`: more changes to the new file before it is closed.
void write_foreign_copy(const std::string& ours, const std::string& out, bool keep_manifest,
                        const std::string& skip = "",
                        const std::function<void(hid_t)>& then = nullptr) {
  using namespace sy::h5;
  File in{H5Fopen(ours.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  ASSERT_GE(in.get(), 0) << ours;
  File f{H5Fcreate(out.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)};
  ASSERT_GE(f.get(), 0) << out;
  for (const char* name : {"format", "config", "layout", "tokenizer"})
    write_attr(f.get(), name, read_attr_string(in.get(), name));
  for (const char* name : {"format_version", "step", "tokens_seen", "created_unix"})
    write_attr(f.get(), name, read_attr_i64(in.get(), name));
  if (keep_manifest) write_attr(f.get(), "tensors", read_attr_string(in.get(), "tensors"));

  std::vector<std::string> paths;
  H5Ovisit2(in.get(), H5_INDEX_NAME, H5_ITER_INC, collect, &paths, H5O_INFO_BASIC);
  PropList lcpl{H5Pcreate(H5P_LINK_CREATE)};
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  for (const std::string& p : paths) {
    if ((!p.starts_with("model/") && !p.starts_with("optim/")) || p == skip) continue;
    Dataset src{H5Dopen2(in.get(), p.c_str(), H5P_DEFAULT)};
    Dataspace space{H5Dget_space(src.get())};
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    std::vector<float> data(static_cast<size_t>(n));
    ASSERT_GE(H5Dread(src.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), 0);
    Dataset dst{H5Dcreate2(f.get(), p.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), H5P_DEFAULT,
                           H5P_DEFAULT)};
    ASSERT_GE(dst.get(), 0) << p;
    ASSERT_GE(H5Dwrite(dst.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), 0);
  }
  Group optim_in{H5Gopen2(in.get(), "optim", H5P_DEFAULT)};
  Group optim{H5Gopen2(f.get(), "optim", H5P_DEFAULT)};
  write_attr(optim.get(), "step", read_attr_i64(optim_in.get(), "step"));
  write_attr(optim.get(), "lr", read_attr_f64(optim_in.get(), "lr"));
  if (then) then(f.get());
}

// step -> loss of a run's train lines.
std::map<int64_t, double> losses(const std::string& metrics) {
  std::map<int64_t, double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

TEST(ForeignCheckpoint, ASpecOnlyCheckpointIsReadLikeTheOneItCopies) {
  sy::test::TempDir dir;
  const std::string ours = two_step_checkpoint(dir);
  const std::string foreign = dir.file("foreign.h5");
  write_foreign_copy(ours, foreign, /*keep_manifest=*/false);

  auto r = sy::test::run_command(kBin + " ckpt info --no-config " + foreign);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "not sealed: written by another tool")) << r.output;
  EXPECT_TRUE(contains(r.output, "/model/embed")) << r.output;
  // No /state in the copy: its lines say so (they printed the defaults, "seed 0, next step 0").
  for (const char* line :
       {"data loader  not stored (no /state/data)", "rng          not stored (no /state/rng)",
        "val loss     not stored (no /state/train)"})
    EXPECT_TRUE(contains(r.output, line)) << line << "\n" << r.output;
  r = sy::test::run_command(kBin + " ckpt info --no-config " + ours);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "data loader  seed ")) << r.output;
  EXPECT_FALSE(contains(r.output, "not stored")) << r.output;

  // Resumed from either file, steps 3 and 4 are the same (the same tensors, step and config).
  const std::string data = dir.file("bytes.h5");
  std::map<int64_t, double> from[2];
  for (int i = 0; i < 2; ++i) {
    const std::string out = dir.file(i == 0 ? "from_ours" : "from_foreign");
    r = sy::test::run_command(kBin + " train --config " + kSrc + "/configs/tiny.yaml --set " +
                              "data.path=" + data + " --set run.out_dir=" + out +
                              " --set train.steps=4 --set log.every=1 --resume " +
                              (i == 0 ? ours : foreign));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(contains(r.output, "written by another tool"), i == 1) << r.output;
    from[i] = losses(out + "/metrics.jsonl");
  }
  ASSERT_EQ(from[0].size(), 2u);
  EXPECT_EQ(from[0], from[1]);

  const std::string sample = " --prompt 'the quick' --tokens 24 --temperature 0 --checkpoint ";
  // stdout alone: the text (stderr names the file and the time taken)
  r = sy::test::run_command("{ " + kBin + " sample" + sample + ours + " 2>/dev/null; }");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto r2 =
      sy::test::run_command("{ " + kBin + " sample" + sample + foreign + " 2>/dev/null; }");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_EQ(r.output, r2.output);
}

// A /state/data without consumed_sequences (a file written before it, or by another tool): the
// data order's position is step x the stored global_batch (2 x 8), and ckpt info says it was
// derived, not stored.
TEST(ForeignCheckpoint, ADerivedDataPositionIsSaidToBeDerived) {
  sy::test::TempDir dir;
  const std::string ours = two_step_checkpoint(dir);
  const std::string foreign = dir.file("foreign.h5");
  write_foreign_copy(ours, foreign, /*keep_manifest=*/false, "", [](hid_t f) {
    sy::h5::PropList lcpl{H5Pcreate(H5P_LINK_CREATE)};
    H5Pset_create_intermediate_group(lcpl.get(), 1);
    sy::h5::Group g{H5Gcreate2(f, "state/data", lcpl.get(), H5P_DEFAULT, H5P_DEFAULT)};
    sy::h5::write_attr(g.get(), "seed", uint64_t{1234});
    sy::h5::write_attr(g.get(), "next_step", int64_t{2});
  });
  const auto r = sy::test::run_command(kBin + " ckpt info --no-config " + foreign);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "data loader  seed 1234, next step 2, sequences consumed 16 (not "
                       "stored: step x the stored global_batch)"))
      << r.output;
}

// What the stored config's model has decides what is read: a missing tensor is named (export
// wrote the rest and exited 0), an extra one is left alone (a declared 2^40 x 2^20 extra was
// read chunk by chunk: the command hung), a tensor never written is refused (it read back as
// zeros), and a negative step is refused (training stopped on an internal check).
TEST(ForeignCheckpoint, TheStoredConfigsModelDecidesWhatIsRead) {
  sy::test::TempDir dir;
  const std::string ours = two_step_checkpoint(dir);
  struct Case {
    std::string name, skip;
    std::function<void(hid_t)> then;
    int exit_code;
    std::string said;
  };
  auto create = [](hid_t f, const char* path, std::vector<hsize_t> dims, bool chunked) {
    sy::h5::Dataspace space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)};
    sy::h5::PropList dcpl{H5Pcreate(H5P_DATASET_CREATE)};
    if (chunked) {
      std::vector<hsize_t> chunk(dims.size(), 1);
      chunk.back() = 1024;
      H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    }
    sy::h5::Dataset d{
        H5Dcreate2(f, path, H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)};
    ASSERT_GE(d.get(), 0) << path;
  };
  const std::vector<Case> cases = {
      {"missing", "model/final_norm", nullptr, 2, "dataset /model/final_norm: dataset missing"},
      {"huge_extra", "",
       [&](hid_t f) {
         create(f, "model/huge", {hsize_t{1} << 40, hsize_t{1} << 20}, true);
       },
       0, ""},
      {"unwritten", "model/embed",
       [&](hid_t f) {
         create(f, "model/embed", {256, 32}, false);
       },
       2, "dataset /model/embed: never written"},
      {"negative_step", "", [](hid_t f) { sy::h5::write_attr(f, "step", int64_t{-5}); }, 2,
       "attribute 'step' is -5, expected >= 0"},
  };
  for (const Case& c : cases) {
    const std::string file = dir.file(c.name + ".h5");
    write_foreign_copy(ours, file, /*keep_manifest=*/false, c.skip, c.then);
    for (const std::string& cmd :
         {" ckpt info --no-config " + file,
          " ckpt export " + file + " --output " + dir.file(c.name + ".safetensors")}) {
      const auto r = sy::test::run_command("timeout 60 " + kBin + cmd);
      EXPECT_EQ(r.exit_code, c.exit_code) << c.name << cmd << "\n" << r.output;
      if (!c.said.empty()) {
        EXPECT_TRUE(contains(r.output, c.said)) << c.name << "\n" << r.output;
      }
    }
  }
  // The extra dataset is not exported either.
  const auto r = sy::test::run_command("grep -c model/huge " + dir.file("huge_extra.safetensors"));
  EXPECT_EQ(r.output, "0\n");
}

// An older switchyard stored a config's byte that is not UTF-8 (a Latin-1 file name in data.path
// or run.name) as it was. Since configs are checked for such bytes, `sample`, `ckpt info` of a
// file without a manifest and `ckpt export --format hf` refused its checkpoint ("byte 0xe9, not
// UTF-8", exit 2) though its model is readable: the byte reads as U+FFFD there.
TEST(ForeignCheckpoint, AStoredConfigWithAByteThatIsNotUtf8IsStillRead) {
  sy::test::TempDir dir;
  const std::string ours = two_step_checkpoint(dir);
  const std::string file = dir.file("latin1.h5");
  write_foreign_copy(ours, file, /*keep_manifest=*/false, "", [](hid_t f) {
    std::string config = sy::h5::read_attr_string(f, "config");
    const size_t at = config.find("name: ");
    ASSERT_NE(at, std::string::npos) << config;
    config.insert(at + 6, "caf\xe9-");
    sy::h5::write_attr(f, "config", config);
  });
  for (const std::string& cmd :
       {" ckpt info --no-config " + file,
        " sample --checkpoint " + file + " --prompt The --tokens 5",
        " ckpt export " + file + " --format hf --output " + dir.file("hf"),
        " ckpt export " + file + " --output " + dir.file("x.safetensors")}) {
    const auto r = sy::test::run_command("timeout 60 " + kBin + cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    EXPECT_FALSE(contains(r.output, "not UTF-8")) << cmd << "\n" << r.output;
  }
}

TEST(ForeignCheckpoint, OursWithoutItsChecksumIsStillRefused) {
  sy::test::TempDir dir;
  const std::string ours = two_step_checkpoint(dir);
  const std::string damaged = dir.file("damaged.h5");
  write_foreign_copy(ours, damaged, /*keep_manifest=*/true);
  const auto r = sy::test::run_command(kBin + " ckpt info --no-config " + damaged);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(contains(r.output, "written by another tool")) << r.output;
}

// A root attribute tokenizer_vocab_size (the training data's vocabulary, which `sample` picks
// ids from) that no vocabulary can have -- below 1, or past the stored model's 256 ids -- is
// refused naming it. Before, such a value was ignored and the model's 256 ids used instead.
TEST(ForeignCheckpoint, ATokenizerVocabularyNoModelCanHaveIsRefusedNamingIt) {
  sy::test::TempDir dir;
  const std::string ours = two_step_checkpoint(dir);
  const std::string sample = kBin + " sample --prompt 'the quick' --tokens 4 --checkpoint ";
  for (const int64_t v : {int64_t{0}, int64_t{-3}, int64_t{257}}) {
    const std::string file = dir.file("vocab" + std::to_string(v) + ".h5");
    write_foreign_copy(ours, file, /*keep_manifest=*/false, "",
                       [&](hid_t f) { sy::h5::write_attr(f, "tokenizer_vocab_size", v); });
    const auto r = sy::test::run_command(sample + file);
    EXPECT_EQ(r.exit_code, 2) << v << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "root attribute 'tokenizer_vocab_size' is " + std::to_string(v)))
        << r.output;
    EXPECT_TRUE(contains(r.output, file)) << r.output;
  }
  // The largest value that fits is read.
  const std::string fits = dir.file("vocab256.h5");
  write_foreign_copy(ours, fits, false, "",
                     [](hid_t f) { sy::h5::write_attr(f, "tokenizer_vocab_size", int64_t{256}); });
  const auto r = sy::test::run_command(sample + fits);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace

// A checkpoint says which build wrote it (root attribute `written_by`, what `--version` prints):
// `ckpt info` shows it ("not recorded" for a file without it: an older switchyard, another
// tool), and a resume from one another build wrote says so. Before, nothing told which binary
// had written a checkpoint, though a resume repeats steps bit for bit only under the same build.
TEST(ForeignCheckpoint, ACheckpointSaysWhichBuildWroteIt) {
  sy::test::TempDir dir;
  const std::string ours = two_step_checkpoint(dir);
  auto r = sy::test::run_command(kBin + " --version");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string version = r.output.substr(0, r.output.find('\n'));
  ASSERT_TRUE(version.starts_with("switchyard 0.")) << r.output;
  {
    sy::h5::File f{H5Fopen(ours.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
    ASSERT_GE(f.get(), 0) << ours;
    EXPECT_EQ(sy::h5::read_attr_string(f.get(), "written_by"), version);
  }
  r = sy::test::run_command(kBin + " ckpt info --no-config " + ours);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "\nwritten by   " + version + "\n")) << r.output;
  const std::string foreign = dir.file("foreign.h5");
  write_foreign_copy(ours, foreign, /*keep_manifest=*/false);
  r = sy::test::run_command(kBin + " ckpt info --no-config " + foreign);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "\nwritten by   not recorded (an older switchyard, or another "
                       "tool)\n"))
      << r.output;

  // Resumed by the build that wrote it: no word of it. From one that another build wrote (the
  // attribute rewritten and the file sealed again): a note naming both.
  const std::string data = dir.file("bytes.h5");
  const auto resume = [&](const std::string& from, const std::string& out) {
    return sy::test::run_command(kBin + " train --config " + kSrc + "/configs/tiny.yaml --set " +
                                 "data.path=" + data + " --set run.out_dir=" + out +
                                 " --set train.steps=3 --resume " + from);
  };
  r = resume(ours, dir.file("same"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "was written by")) << r.output;
  const std::string older = dir.file("older.h5");
  std::filesystem::copy_file(ours, older);
  const std::string other = "switchyard 0.0.9 (commit 0123456789ab)";
  {
    sy::h5::File f{H5Fopen(older.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)};
    ASSERT_GE(f.get(), 0) << older;
    sy::h5::write_attr(f.get(), "written_by", other);
  }
  sy::ckpt::detail::seal_checkpoint(older);
  r = resume(older, dir.file("upgraded"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(
      r.output, "note: " + older + " was written by " + other + "; this is " + version + "\n"))
      << r.output;
  sy::h5::File f{H5Fopen(final_ckpt(dir.file("upgraded"), 3).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  ASSERT_GE(f.get(), 0);
  EXPECT_EQ(sy::h5::read_attr_string(f.get(), "written_by"), version);
}

// A damaged checkpoint is never loaded silently: each kind of damage is refused on every rank
// with an error naming the file (and the dataset when one is at fault), and --resume auto falls
// back to the newest checkpoint that verifies, saying which one it skipped and why.
#include <hdf5.h>

#include <filesystem>
#include <fstream>

#include "ckpt_test_util.h"
#include "common/damage.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/detail.h"
#include "src/ckpt/seal.h"
#include "src/core/h5.h"

namespace {

using namespace sy;
using namespace sy::test;
namespace fs = std::filesystem;

const std::vector<int64_t> kShapeA = {6, 16};
const std::vector<int64_t> kShapeB = {64};

// Writes a checkpoint of two tensors (rows split over the ranks) at `step`; returns its path.
std::string write_good(const std::string& dir, int64_t step) {
  const int r = rank_of(), p = size_of();
  const Slab sa = rows_slab(kShapeA, r, p), sb = rows_slab(kShapeB, r, p);
  auto a = fill_slab("model/a", kShapeA, sa, static_cast<uint64_t>(step));
  auto b = fill_slab("model/b", kShapeB, sb, static_cast<uint64_t>(step));
  std::vector<ckpt::TensorRef> refs = {{"model/a", kShapeA, sa, true, a.data()},
                                       {"model/b", kShapeB, sb, true, b.data()}};
  ckpt::TrainState st;
  st.step = step;
  st.config_yaml = "run:\n  name: c\n";
  st.layout = ckpt::layout_string(p, 1, 1, 1);
  return ckpt::save_checkpoint(MPI_COMM_WORLD, dir, st, refs).path;
}

// Loads both tensors whole on every rank and counts wrong elements.
int64_t load_and_count_wrong(const std::string& file, int64_t step) {
  std::vector<float> a(static_cast<size_t>(6 * 16)), b(64);
  std::vector<ckpt::TensorRef> refs = {{"model/a", kShapeA, Slab::whole(kShapeA), true, a.data()},
                                       {"model/b", kShapeB, Slab::whole(kShapeB), true, b.data()}};
  ckpt::load_checkpoint(MPI_COMM_WORLD, file, refs);
  return sum_wrong(
      count_wrong("model/a", kShapeA, Slab::whole(kShapeA), a, static_cast<uint64_t>(step)) +
      count_wrong("model/b", kShapeB, Slab::whole(kShapeB), b, static_cast<uint64_t>(step)));
}

// Re-creates `dataset` with another shape (and valid checksums): only the manifest knows better.
void reshape_dataset(const std::string& file, const char* dataset) {
  h5::File f{H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
  H5_CHECK(H5Ldelete(f, dataset, H5P_DEFAULT));
  const hsize_t dims[2] = {8, 8};
  h5::Dataspace space{H5_CHECK(H5Screate_simple(2, dims, nullptr))};
  h5::PropList dcpl{H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
  H5_CHECK(H5Pset_chunk(dcpl, 2, dims));
  H5_CHECK(H5Pset_fletcher32(dcpl));
  h5::Dataset ds{
      H5_CHECK(H5Dcreate2(f, dataset, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT))};
  std::vector<float> zeros(64);
  H5_CHECK(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data()));
}

struct Damage {
  const char* name;
  void (*apply)(const std::string& file);
  const char* dataset;  // what the error must name ("" = the file as a whole)
  const char* words;    // a phrase the problem text must contain
};

const Damage kDamages[] = {
    {"flip a byte inside /model/b's data",
     [](const std::string& f) {
       const auto [addr, size] = first_chunk(f, "model/b");
       xor_byte(f, addr + size / 2);
     },
     "/model/b", "does not verify"},
    // How much of it is there, not HDF5's "eof = ..., sblock->base_addr = 0, stored_eof = ...".
    {"truncate to half", [](const std::string& f) { fs::resize_file(f, fs::file_size(f) / 2); }, "",
     "bytes are there (a copy or a write cut short)"},
    {"truncate the last byte",
     [](const std::string& f) { fs::resize_file(f, fs::file_size(f) - 1); }, "",
     "bytes are there (a copy or a write cut short)"},
    {"flip a byte of the superblock (its checksum)", [](const std::string& f) { xor_byte(f, 30); },
     "", "truncated or damaged"},
    {"delete /model/a",
     [](const std::string& f) {
       h5::File h{H5_CHECK(H5Fopen(f.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
       H5_CHECK(H5Ldelete(h, "model/a", H5P_DEFAULT));
     },
     "/model/a", "missing"},
    {"change /model/a's shape", [](const std::string& f) { reshape_dataset(f, "model/a"); },
     "/model/a", "the manifest says [6, 16]"},
    {"format_version 2",
     [](const std::string& f) {
       h5::File h{H5_CHECK(H5Fopen(f.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
       ckpt::detail::write_attr(h, "format_version", int64_t{2});
     },
     "", "format_version 2 is not supported"},
    {"a foreign HDF5 file",
     [](const std::string& f) {
       h5::File h{H5_CHECK(H5Fcreate(f.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
       const hsize_t n = 4;
       h5::Dataspace s{H5_CHECK(H5Screate_simple(1, &n, nullptr))};
       h5::Dataset d{H5_CHECK(
           H5Dcreate2(h, "train", H5T_STD_U16LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
     },
     "", "not a switchyard checkpoint"},
    {"a text file",
     [](const std::string& f) { std::ofstream(f, std::ios::trunc) << "hello, not HDF5\n"; }, "",
     "not an HDF5 file"},
    {"a missing file", [](const std::string& f) { fs::remove(f); }, "", "not found"},
};

class CkptDamage : public testing::TestWithParam<Damage> {};

TEST_P(CkptDamage, IsRefusedNamingFileAndDatasetAndResumeFallsBack) {
  const Damage& d = GetParam();
  SharedDir dir;
  const std::string good = write_good(dir.path(), 10);
  const std::string victim = write_good(dir.path(), 20);
  ASSERT_EQ(load_and_count_wrong(victim, 20), 0) << "the undamaged file must load";
  if (rank_of() == 0) {
    h5::ErrorSilencer quiet;
    d.apply(victim);
  }
  MPI_Barrier(MPI_COMM_WORLD);

  try {
    ckpt::verify_checkpoint(MPI_COMM_WORLD, victim);
    ADD_FAILURE() << d.name << ": verified";
  } catch (const ckpt::CheckpointError& e) {
    EXPECT_EQ(e.file(), victim) << d.name;
    EXPECT_EQ(e.dataset(), d.dataset) << d.name << ": " << e.what();
    EXPECT_NE(e.problem().find(d.words), std::string::npos) << d.name << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(victim), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_and_count_wrong(victim, 20), ckpt::CheckpointError) << d.name;

  // --resume auto: latest names the damaged file; the older one is taken, the skip explained.
  const ckpt::ResumePlan plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
  EXPECT_EQ(plan.path, good) << d.name;
  ASSERT_EQ(plan.skipped.size(), 1u) << d.name;
  EXPECT_EQ(plan.skipped[0].file, victim);
  EXPECT_NE(plan.skipped[0].reason.find(d.words), std::string::npos) << plan.skipped[0].reason;
  EXPECT_NE(plan.message.find("skipped " + victim), std::string::npos) << plan.message;
  EXPECT_EQ(load_and_count_wrong(plan.path, 10), 0);
  // An explicit --resume <file> does not fall back.
  EXPECT_THROW(ckpt::plan_resume(MPI_COMM_WORLD, victim, dir.path()), ckpt::CheckpointError);
}

INSTANTIATE_TEST_SUITE_P(Kinds, CkptDamage, testing::ValuesIn(kDamages),
                         [](const testing::TestParamInfo<Damage>& param_info) {
                           std::string n;
                           for (const char* c = param_info.param.name; *c; ++c)
                             n += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
                           return n;
                         });

TEST(CkptResume, AutoWithoutCheckpointsStartsFreshButRefusesWhenNoneVerifies) {
  SharedDir dir;
  ckpt::ResumePlan plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.file("absent"));
  EXPECT_TRUE(plan.path.empty());
  EXPECT_NE(plan.message.find("starting at step 0"), std::string::npos) << plan.message;
  plan = ckpt::plan_resume(MPI_COMM_WORLD, "", dir.path());
  EXPECT_TRUE(plan.path.empty());

  const std::string only = write_good(dir.path(), 3);
  if (rank_of() == 0) fs::resize_file(only, 100);
  MPI_Barrier(MPI_COMM_WORLD);
  try {
    ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
    ADD_FAILURE() << "a directory of damaged checkpoints was treated as empty";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(only), std::string::npos) << e.what();
  }
}

TEST(CkptResume, LatestNamingAMissingFileFallsBackToTheNewestStepFile) {
  SharedDir dir;
  write_good(dir.path(), 4);
  const std::string newest = write_good(dir.path(), 8);
  if (rank_of() == 0) std::ofstream(dir.file("latest"), std::ios::trunc) << "step_00000099.h5\n";
  MPI_Barrier(MPI_COMM_WORLD);
  const auto plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
  EXPECT_EQ(plan.path, newest);
  ASSERT_EQ(plan.skipped.size(), 1u);
  EXPECT_EQ(plan.skipped[0].file, dir.file("step_00000099.h5"));
}

// Without latest, the step files are tried newest written first: a run resumed from step 4 past
// a line's step 8 wrote step 6 after step 8, and auto takes step 6, naming step 8 as older. QA:
// it took step 8 (the highest), trained the abandoned line on and rotated step 6 away. The
// write times differ here by an edit of created_unix (resealed), not by a sleep.
TEST(CkptResume, WithoutLatestTheNewestWrittenIsResumedNotTheHighestStep) {
  SharedDir dir;
  write_good(dir.path(), 4);
  const std::string line_b = write_good(dir.path(), 8);
  const std::string own = write_good(dir.path(), 6);
  if (rank_of() == 0) {
    {
      h5::File f{H5_CHECK(H5Fopen(line_b.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
      const int64_t at = h5::read_attr_i64(f, "created_unix") - 100;
      H5_CHECK(H5Adelete(f, "created_unix"));
      h5::write_attr(f.get(), "created_unix", at);
    }
    ckpt::detail::seal_checkpoint(line_b);
    fs::remove(dir.file("latest"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const auto candidates = ckpt::resume_candidates(dir.path());
  ASSERT_EQ(candidates.size(), 3u);
  EXPECT_EQ(candidates[0].path, own);
  EXPECT_EQ(candidates[1].path, dir.file("step_00000004.h5"));
  EXPECT_EQ(candidates[2].path, line_b);
  const auto plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
  EXPECT_EQ(plan.path, own);
  EXPECT_TRUE(plan.skipped.empty());
  EXPECT_NE(plan.message.find("not the higher step_00000008.h5, written before it"),
            std::string::npos)
      << plan.message;
}

// What the message says of higher steps not tried (review): nothing where latest named the
// checkpoint (a stale latest's step 6 before a step 8 written after it was called "a line the
// run went back past"), and a higher step whose write time cannot be read (cut short: sorted
// last, so never tried, where the highest-step order had tried it and said it was damaged) is
// named as not tried.
TEST(CkptResume, HigherStepsNotTriedAreDescribedAsTheyAre) {
  SharedDir dir;
  write_good(dir.path(), 4);
  const std::string six = write_good(dir.path(), 6);
  const std::string eight = write_good(dir.path(), 8);
  if (rank_of() == 0) std::ofstream(dir.file("latest"), std::ios::trunc) << "step_00000006.h5\n";
  MPI_Barrier(MPI_COMM_WORLD);
  auto plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
  EXPECT_EQ(plan.path, six);
  EXPECT_EQ(plan.message.find("not the higher"), std::string::npos) << plan.message;
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank_of() == 0) {
    fs::remove(dir.file("latest"));
    fs::resize_file(eight, fs::file_size(eight) / 2);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
  EXPECT_EQ(plan.path, six);
  EXPECT_NE(plan.message.find("the higher step_00000008.h5 was not tried: when it was written "
                              "(root attribute created_unix) cannot be read"),
            std::string::npos)
      << plan.message;
  // The same file named by latest is tried first and skipped: said so, not "not tried" (review).
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank_of() == 0) std::ofstream(dir.file("latest"), std::ios::trunc) << "step_00000008.h5\n";
  MPI_Barrier(MPI_COMM_WORLD);
  plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
  EXPECT_EQ(plan.path, six);
  ASSERT_EQ(plan.skipped.size(), 1u);
  EXPECT_EQ(plan.skipped[0].file, eight);
  EXPECT_EQ(plan.message.find("not tried"), std::string::npos) << plan.message;
}

// latest holds a file name of its directory (SPEC 5): a path to another run's checkpoint, or
// junk, is not followed (before, --resume auto resumed the other run's checkpoint unasked).
TEST(CkptResume, LatestHoldingAPathOrJunkIsNotFollowed) {
  SharedDir dir, other;
  const std::string own = write_good(dir.path(), 4);
  const std::string foreign = write_good(other.path(), 8);
  for (const std::string& text :
       {"../" + fs::path(other.path()).filename().string() + "/step_00000008.h5", foreign,
        std::string("\x01\x02junk")}) {
    if (rank_of() == 0) std::ofstream(dir.file("latest"), std::ios::trunc) << text << "\n";
    MPI_Barrier(MPI_COMM_WORLD);
    const auto plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
    EXPECT_EQ(plan.path, own) << text;
    EXPECT_TRUE(plan.skipped.empty()) << text;
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

TEST(CkptRotation, KeepsTheNewestAfterEachCompleteWriteAndNothingOfOtherRuns) {
  SharedDir dir;
  const int r = rank_of(), p = size_of();
  const Slab sb = rows_slab(kShapeB, r, p);
  auto b = fill_slab("model/b", kShapeB, sb);
  std::vector<ckpt::TensorRef> refs = {{"model/b", kShapeB, sb, true, b.data()}};
  ckpt::TrainState st;
  // A crashed write of an earlier job left a temp file; a later step exists (an abandoned run).
  if (r == 0) {
    std::ofstream(dir.file("step_00000007.h5.tmp")) << "partial";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  ckpt::SaveOptions keep2;
  keep2.keep = 2;
  st.step = 50;
  ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), st, refs, keep2);
  std::vector<std::string> notes;
  for (int64_t step : {1, 2, 3, 4}) {
    st.step = step;
    const auto res = ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), st, refs, keep2);
    notes = res.notes;
    std::ifstream latest(dir.file("latest"));
    std::string name;
    latest >> name;
    EXPECT_EQ(name, ckpt::checkpoint_file_name(step));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step_00000003.h5", "step_00000004.h5",
                                             "step_00000050.h5"}));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("step_00000050.h5"), std::string::npos) << notes[0];
}

}  // namespace

namespace {

TEST(CkptDamageWithoutFullVerify, AChunkThatIsReadIsStillCheckedAndPlanStateIsTheFiles) {
  SharedDir dir;
  const std::string file = write_good(dir.path(), 30);
  const auto plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", dir.path());
  EXPECT_EQ(plan.path, file);
  EXPECT_EQ(plan.state.step, 30);

  std::vector<float> b(64);
  const std::vector<ckpt::TensorRef> refs = {
      {"model/b", kShapeB, Slab::whole(kShapeB), true, b.data()}};
  ckpt::LoadOptions fast;
  fast.verify_all = false;
  ckpt::load_checkpoint(MPI_COMM_WORLD, file, refs, fast);
  EXPECT_EQ(sum_wrong(count_wrong("model/b", kShapeB, Slab::whole(kShapeB), b, 30)), 0);

  if (rank_of() == 0) {
    const auto [addr, size] = first_chunk(file, "model/b");
    xor_byte(file, addr + 3);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // Only the last rank reads /model/b; every rank must report the failure.
  std::vector<ckpt::TensorRef> last_only;
  if (rank_of() == size_of() - 1) last_only = refs;
  try {
    ckpt::load_checkpoint(MPI_COMM_WORLD, file, last_only, fast);
    ADD_FAILURE() << "a corrupted chunk was loaded";
  } catch (const ckpt::CheckpointError& e) {
    EXPECT_EQ(e.dataset(), "/model/b") << e.what();
  }
}

}  // namespace

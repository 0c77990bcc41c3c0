// Checkpoints move GLOBAL tensors: written in one slab layout over the ranks, they read back
// bitwise in any other (and on any rank count). The reference is the seeded pattern of every
// global element, computed independently of the file.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>

#include "ckpt_test_util.h"
#include "src/ckpt/checkpoint.h"

namespace {

using namespace sy;
using namespace sy::test;

// The tensors of the tests: 2-D with a column count divisible by 2P for P <= 4, 1-D, 3-D (an
// expert stack), and one with fewer rows than ranks.
struct TensorSpec {
  std::string path;
  std::vector<int64_t> shape;
};
const std::vector<TensorSpec> kTensors = {
    {"model/a", {5, 24}},
    {"model/layers/0/moe/w1", {4, 3, 16}},
    {"model/norm", {40}},
    {"optim/m/a", {3, 8}},
};

// One layout: the parts (slabs, writer flags) that rank r of P holds of a tensor.
struct Part {
  Slab slab;
  bool writer;
};
using Layout = std::function<std::vector<Part>(const std::vector<int64_t>&, int, int)>;

const std::vector<std::pair<std::string, Layout>> kLayouts = {
    {"columns",
     [](const auto& s, int r, int p) {
       return std::vector<Part>{{cols_slab(s, r, p), true}};
     }},
    {"rows",
     [](const auto& s, int r, int p) {
       return std::vector<Part>{{rows_slab(s, r, p), true}};
     }},
    // Replicated: every rank holds it whole, only the last rank writes.
    {"replicated",
     [](const auto& s, int r, int p) {
       return std::vector<Part>{{Slab::whole(s), r == p - 1}};
     }},
    // Two disjoint row ranges per rank (as a ZeRO-1 shard that is not one hyperslab): rank r
    // holds pieces r and 2P-1-r of 2P row pieces, as two refs.
    {"two_parts",
     [](const auto& s, int r, int p) {
       std::vector<Part> parts;
       for (int piece : {r, 2 * p - 1 - r}) parts.push_back({rows_slab(s, piece, 2 * p), true});
       return parts;
     }},
};

// Buffers and refs of one layout on this rank; non-writer buffers hold NaN, so a copy that must
// not be written would show.
struct Held {
  std::vector<std::vector<float>> buffers;
  std::vector<ckpt::TensorRef> refs;
};

Held hold(const Layout& layout, bool fill, uint64_t version = 0) {
  Held h;
  const int r = rank_of(), p = size_of();
  std::vector<std::pair<const TensorSpec*, Part>> all;
  for (const auto& t : kTensors)
    for (auto& part : layout(t.shape, r, p)) all.push_back({&t, part});
  h.buffers.reserve(all.size());
  for (auto& [t, part] : all) {
    if (fill && part.writer)
      h.buffers.push_back(fill_slab(t->path, t->shape, part.slab, version));
    else
      h.buffers.push_back(std::vector<float>(static_cast<size_t>(part.slab.numel()),
                                             std::numeric_limits<float>::quiet_NaN()));
    h.refs.push_back({t->path, t->shape, part.slab, part.writer, h.buffers.back().data()});
  }
  return h;
}

int64_t wrong_in(const Held& h, uint64_t version = 0) {
  int64_t wrong = 0;
  for (size_t i = 0; i < h.refs.size(); ++i)
    wrong +=
        count_wrong(h.refs[i].path, h.refs[i].global_shape, h.refs[i].slab, h.buffers[i], version);
  return wrong;
}

ckpt::TrainState some_state(int64_t step) {
  ckpt::TrainState s;
  s.step = step;
  s.tokens_seen = step * 256;
  s.config_yaml = "run:\n  name: t\n";
  s.layout = ckpt::layout_string(size_of(), 1, 1, 1);
  return s;
}

TEST(CkptLayouts, EveryWriteLayoutReadsBackBitwiseInEveryReadLayout) {
  SharedDir dir;
  int64_t step = 0;
  for (const auto& [wname, wlayout] : kLayouts) {
    Held written = hold(wlayout, true, static_cast<uint64_t>(step));
    const auto res =
        ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), some_state(step), written.refs);
    for (const auto& [rname, rlayout] : kLayouts) {
      Held read = hold(rlayout, false);
      for (auto& r : read.refs) r.writer = true;  // reading ignores writer; every buffer checked
      ckpt::load_checkpoint(MPI_COMM_WORLD, res.path, read.refs);
      EXPECT_EQ(sum_wrong(wrong_in(read, static_cast<uint64_t>(step))), 0)
          << "written as " << wname << ", read as " << rname << " on " << size_of() << " ranks";
    }
    ++step;
  }
}

}  // namespace

namespace {

TEST(CkptLayouts, ScalarStateRoundTrips) {
  SharedDir dir;
  Held h = hold(kLayouts[1].second, true);
  ckpt::TrainState s;
  s.step = 1234567;
  s.tokens_seen = int64_t{1} << 40;
  s.config_yaml = "run:\n  name: \"x\\ty\"\nmodel:\n  d_model: 32\n";
  s.layout = ckpt::layout_string(2, 1, 2, 1);
  s.optim_step = 1234560;
  s.lr = 2.5e-4;
  s.loader = {~uint64_t{0} - 7, 1234567};  // a seed above INT64_MAX survives as unsigned
  s.rng = {42, uint64_t{1} << 63};
  s.best_val_loss = 3.25;  // last_val_loss stays NaN: "no evaluation yet"
  const auto res = ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), s, h.refs);
  EXPECT_EQ(res.path, dir.file("step_01234567.h5"));

  Held r = hold(kLayouts[0].second, false);
  const ckpt::TrainState got = ckpt::load_checkpoint(MPI_COMM_WORLD, res.path, r.refs);
  EXPECT_EQ(got.step, s.step);
  EXPECT_EQ(got.tokens_seen, s.tokens_seen);
  EXPECT_EQ(got.config_yaml, s.config_yaml);
  EXPECT_EQ(got.layout, "dp=2,tp=1,ep=2,etp=1");
  EXPECT_EQ(got.optim_step, s.optim_step);
  EXPECT_EQ(got.lr, s.lr);
  EXPECT_EQ(got.loader, s.loader);
  EXPECT_EQ(got.rng, s.rng);
  EXPECT_EQ(got.best_val_loss, 3.25);
  EXPECT_TRUE(std::isnan(got.last_val_loss));
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  EXPECT_LE(std::abs(got.created_unix - now), 60);
}

TEST(CkptLayouts, WritersThatDoNotCoverATensorAreABugAndWriteNothing) {
  SharedDir dir;
  // Replicated with no writer at all: zero of the elements covered.
  Held h = hold(kLayouts[2].second, true);
  for (auto& r : h.refs) r.writer = false;
  EXPECT_THROW(ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), some_state(3), h.refs),
               std::runtime_error);
  // Replicated with every rank writing: covered P times (only caught when P > 1).
  if (size_of() > 1) {
    Held twice = hold(kLayouts[2].second, true);
    for (auto& r : twice.refs) r.writer = true;
    EXPECT_THROW(ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), some_state(3), twice.refs),
                 std::runtime_error);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "a refused save left files";
}

TEST(CkptLayouts, ReadingAnAbsentTensorOrAnotherShapeIsRefusedNamingTheDataset) {
  SharedDir dir;
  Held h = hold(kLayouts[1].second, true);
  const auto res = ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), some_state(5), h.refs);

  std::vector<float> buf(5 * 24);
  // Only the last rank asks for the wrong shape: every rank must still throw the same error.
  std::vector<ckpt::TensorRef> refs;
  if (rank_of() == size_of() - 1)
    refs.push_back({"model/a", {24, 5}, Slab::whole({24, 5}), true, buf.data()});
  try {
    ckpt::load_checkpoint(MPI_COMM_WORLD, res.path, refs);
    ADD_FAILURE() << "a shape mismatch was loaded";
  } catch (const ckpt::CheckpointError& e) {
    EXPECT_EQ(e.dataset(), "/model/a");
    EXPECT_EQ(e.file(), res.path);
    EXPECT_NE(std::string(e.what()).find("[5, 24]"), std::string::npos) << e.what();
  }
  refs = {{"model/head", {5, 24}, Slab::whole({5, 24}), true, buf.data()}};
  try {
    ckpt::load_checkpoint(MPI_COMM_WORLD, res.path, refs);
    ADD_FAILURE() << "an absent tensor was loaded";
  } catch (const ckpt::CheckpointError& e) {
    EXPECT_EQ(e.dataset(), "/model/head");
    EXPECT_NE(e.problem().find("missing"), std::string::npos) << e.what();
  }
}

TEST(CkptLayouts, WholeTableRefsUseSpecNamesForTheMoments) {
  EXPECT_EQ(ckpt::moment_path("m", "model/layers/3/attn/wqkv"), "optim/m/layers/3/attn/wqkv");
  EXPECT_EQ(ckpt::moment_path("v", "model/embed"), "optim/v/embed");
  EXPECT_EQ(ckpt::checkpoint_file_name(42), "step_00000042.h5");
  EXPECT_EQ(ckpt::step_of_file_name("step_00000042.h5"), 42);
  EXPECT_EQ(ckpt::step_of_file_name("step_00000042.h5.tmp"), -1);
  EXPECT_EQ(ckpt::step_of_file_name("step_42.h5"), -1);
}

}  // namespace

namespace {

// The percent of a progress line ("verifying '...': 34% (0.0/0.0 MiB), ETA 00:00:00").
int percent_of(const std::string& line) {
  const size_t colon = line.rfind(": ");
  return colon == std::string::npos ? -1 : std::atoi(line.c_str() + colon + 2);
}

// Long reads say how far they are (every line here: every_s = 0), on rank 0 only, rising to
// 100%: the verification of every chunk, then the collective read of the tensors. At the
// default interval a read this short says nothing.
TEST(CkptLayouts, LongReadsSayHowFarTheyAreOnRankZero) {
  SharedDir dir;
  Held written = hold(kLayouts[1].second, true);
  const auto res = ckpt::save_checkpoint(MPI_COMM_WORLD, dir.path(), some_state(1), written.refs);
  std::vector<std::string> lines;
  ckpt::LoadOptions o;
  o.progress.say = [&](const std::string& l) { lines.push_back(l); };
  o.progress.every_s = 0;
  Held read = hold(kLayouts[0].second, false);
  ckpt::load_checkpoint(MPI_COMM_WORLD, res.path, read.refs, o);
  EXPECT_EQ(sum_wrong(wrong_in(read)), 0);
  std::vector<std::string> quiet;  // the same read at the default interval (collective)
  o.progress.say = [&](const std::string& l) { quiet.push_back(l); };
  o.progress.every_s = 5;
  ckpt::load_checkpoint(MPI_COMM_WORLD, res.path, read.refs, o);
  EXPECT_TRUE(quiet.empty()) << quiet.front();
  if (rank_of() != 0) {
    EXPECT_TRUE(lines.empty()) << lines.front();
    return;
  }
  const std::string verifying = "verifying checkpoint '" + res.path + "'";
  const std::string reading = "reading checkpoint '" + res.path + "'";
  size_t nv = 0;
  while (nv < lines.size() && lines[nv].rfind(verifying, 0) == 0) ++nv;
  // Rank 0 counts its own share of the chunks, which these small tensors leave empty on more
  // ranks than one (a tensor of 5 rows is one chunk); every rank reads a column block of each.
  if (size_of() == 1) {
    ASSERT_GT(nv, 0u) << (lines.empty() ? "no line" : lines.front());
  }
  ASSERT_LT(nv, lines.size()) << "no reading line";
  for (size_t i = nv; i < lines.size(); ++i) EXPECT_EQ(lines[i].rfind(reading, 0), 0u) << lines[i];
  for (const auto& [from, to] : {std::pair{size_t{0}, nv}, std::pair{nv, lines.size()}}) {
    if (from == to) continue;
    for (size_t i = from + 1; i < to; ++i)
      EXPECT_GE(percent_of(lines[i]), percent_of(lines[i - 1])) << lines[i];
    EXPECT_EQ(percent_of(lines[to - 1]), 100) << lines[to - 1];
  }
}

}  // namespace

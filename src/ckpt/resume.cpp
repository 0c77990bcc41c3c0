// Choosing the checkpoint to resume from (--resume auto|<file>).
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/ckpt/checkpoint.h"
#include "src/ckpt/detail.h"
#include "src/ckpt/files.h"

namespace sy::ckpt {

namespace {
namespace fs = std::filesystem;

std::string reason_of(const CheckpointError& e) {
  return e.dataset().empty() ? e.problem() : object_label(e.dataset()) + ": " + e.problem();
}

// When the checkpoint was written: its root attribute created_unix (SPEC 5, seconds), or -1
// where the file or the attribute cannot be read (such a file fails verification anyway).
int64_t written_at(const std::string& path) {
  h5::ErrorSilencer quiet;
  h5::PropList fapl = detail::serial_fapl();
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl);
  if (id < 0) return -1;
  h5::File f{id};
  try {
    return detail::has_attr(f, "created_unix") ? detail::read_attr_i64(f, "created_unix") : -1;
  } catch (const std::exception&) {
    return -1;
  }
}
}  // namespace

std::vector<std::string> resume_candidates(const std::string& dir) {
  std::vector<std::string> out;
  std::string latest_path;
  // SPEC 5: latest holds a file name of this directory. Anything else (a path to another run's
  // checkpoint, junk) is no pointer: the step files below are tried instead.
  if (const auto latest = files::read_latest(dir); latest && step_of_file_name(*latest) >= 0) {
    latest_path = (fs::path(dir) / *latest).string();
    out.push_back(latest_path);
  }
  // The others newest written first, not highest step first: after a resume from an older
  // checkpoint, the higher steps left in the directory are of the line the run went back past
  // (QA: with `latest` unreadable, auto trained that line on and rotated the newer model away).
  // Written in the same second: the higher step first.
  struct Written {
    int64_t at, step;
    std::string path;
  };
  std::vector<Written> rest;
  for (const files::StepFile& f : files::list_step_files(dir))
    if (f.path != latest_path) rest.push_back({written_at(f.path), f.step, f.path});
  std::sort(rest.begin(), rest.end(), [](const Written& a, const Written& b) {
    return a.at != b.at ? a.at > b.at : a.step > b.step;
  });
  for (const Written& w : rest) out.push_back(w.path);
  return out;
}

ResumePlan plan_resume(MPI_Comm comm, const std::string& resume, const std::string& dir,
                       comm::Watchdog* watchdog, const AcceptFn& accept,
                       const ReadProgress& progress) {
  const detail::Coll coll{comm, watchdog};
  ResumePlan plan;
  if (resume.empty()) {
    plan.message = "starting at step 0 (no --resume)";
    return plan;
  }
  if (resume != "auto") {
    plan.state = verify_checkpoint(comm, resume, watchdog, progress);
    if (accept) accept(resume, plan.state);
    plan.path = resume;
    plan.message = "resuming from " + resume + " (step " + std::to_string(plan.state.step) + ")";
    return plan;
  }

  // Rank 0 reads the directory: on a shared file system every rank must try the same list.
  std::vector<std::string> candidates, set_aside;
  {
    std::string packed;
    detail::on_root(coll, "--resume auto: rank 0 listing '" + dir + "'", [&] {
      detail::Packer p;
      for (const auto& list : {resume_candidates(dir), files::list_set_aside(dir)}) {
        p.i64(static_cast<int64_t>(list.size()));
        for (const auto& c : list) p.str(c);
      }
      packed = p.bytes();
    });
    const std::string bytes =
        detail::bcast_string(coll, packed, 0, "--resume auto: the checkpoints in '" + dir + "'");
    detail::Unpacker u(bytes);
    for (auto* list : {&candidates, &set_aside}) {
      list->resize(static_cast<size_t>(u.i64()));
      for (auto& c : *list) c = u.str();
    }
  }

  for (const auto& c : candidates) {
    try {
      plan.state = verify_checkpoint(comm, c, watchdog, progress);
      if (accept) accept(c, plan.state);
      plan.path = c;
      break;
    } catch (const CheckpointError& e) {
      // A checkpoint it may not read is not damaged: skipping it would resume from an older one
      // and write over it (with checkpoint.keep, remove it). Said, exit 2.
      if (e.dataset().empty() && e.problem().starts_with(CheckpointError::kUnreadable))
        throw UsageError("--resume auto: checkpoint " + c + " " + e.problem() +
                             "; not skipped (it is not damaged, and resuming from an older one "
                             "would train over it). Make it readable, or resume from another "
                             "checkpoint on purpose with --resume <file>",
                         /*quiet=*/detail::comm_rank(comm) != 0);
      plan.skipped.push_back({c, reason_of(e)});
    }
  }
  std::string skipped_text;
  for (const auto& s : plan.skipped) skipped_text += "\n  skipped " + s.file + ": " + s.reason;
  if (plan.path.empty()) {
    // Only checkpoints a numerical failure set aside (files::set_aside; with checkpoint.keep 1,
    // or a failure after the run's first checkpoint): the run got that far, so starting it over
    // is the user's call, as over a directory of damaged checkpoints.
    if (candidates.empty() && !set_aside.empty())
      throw UsageError("--resume auto: '" + dir + "' holds no checkpoint to resume, only " +
                           std::to_string(set_aside.size()) +
                           " set aside after a numerical failure (their weights gave a loss "
                           "that is not finite), the newest " +
                           set_aside.back() +
                           "; not starting over from step 0: remove them (or set another "
                           "checkpoint.dir) to start over, or resume one on purpose with "
                           "--resume <file>",
                       /*quiet=*/detail::comm_rank(comm) != 0);
    if (candidates.empty()) {
      plan.message = "--resume auto: no checkpoint in '" + dir + "'; starting at step 0";
      return plan;
    }
    throw UsageError("--resume auto: none of the " + std::to_string(candidates.size()) +
                         " checkpoints in '" + dir +
                         "' verifies (not starting over from step 0):" + skipped_text,
                     /*quiet=*/detail::comm_rank(comm) != 0);
  }
  plan.message = "--resume auto: resuming from " + plan.path + " (step " +
                 std::to_string(plan.state.step) + ")";
  // A higher step not tried because it was written before: a line of checkpoints the run went
  // back past with a resume from an older one. Named, so the choice is not a surprise.
  std::string passed;
  int64_t passed_step = plan.state.step;
  for (auto it = std::find(candidates.begin(), candidates.end(), plan.path); it != candidates.end();
       ++it) {
    const int64_t step = step_of_file_name(fs::path(*it).filename().string());
    if (step > passed_step) {
      passed_step = step;
      passed = *it;
    }
  }
  if (!passed.empty())
    plan.message += "; not the higher " + fs::path(passed).filename().string() +
                    ", written before it (a line of checkpoints the run went back past)";
  plan.message += skipped_text;
  return plan;
}

}  // namespace sy::ckpt

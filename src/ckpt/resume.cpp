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

std::vector<ResumeCandidate> resume_candidates(const std::string& dir) {
  std::vector<ResumeCandidate> out;
  std::string latest_path;
  // SPEC 5: latest holds a file name of this directory. Anything else (a path to another run's
  // checkpoint, junk) is no pointer: the step files below are tried instead.
  if (const auto latest = files::read_latest(dir); latest && step_of_file_name(*latest) >= 0) {
    latest_path = (fs::path(dir) / *latest).string();
    out.push_back({latest_path, step_of_file_name(*latest), written_at(latest_path), true});
  }
  // The others newest written first, not highest step first: after a resume from an older
  // checkpoint, the higher steps left in the directory are of the line the run went back past
  // (QA: with `latest` unreadable, auto trained that line on and rotated the newer model away).
  // Written in the same second: the higher step first.
  std::vector<ResumeCandidate> rest;
  for (const files::StepFile& f : files::list_step_files(dir))
    if (f.path != latest_path) rest.push_back({f.path, f.step, written_at(f.path), false});
  std::sort(rest.begin(), rest.end(), [](const ResumeCandidate& a, const ResumeCandidate& b) {
    return a.written_at != b.written_at ? a.written_at > b.written_at : a.step > b.step;
  });
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

namespace {

// What plan_resume says of the step files it did not try beside the one it resumed from `chosen`
// (not latest's: a run that resumed from an older checkpoint made latest name it on purpose):
// the highest step written before it (a line of checkpoints the run went back past), and the
// highest whose write time cannot be read (sorted last, so not tried: perhaps damaged).
std::string passed_over(const std::vector<ResumeCandidate>& candidates,
                        const ResumeCandidate& chosen) {
  if (chosen.from_latest || chosen.written_at < 0) return "";
  const ResumeCandidate *older = nullptr, *unknown = nullptr;
  // Those after it in the order tried: the ones before were tried (and skipped, said so).
  for (auto it = candidates.begin() + (&chosen - candidates.data()) + 1; it != candidates.end();
       ++it) {
    const ResumeCandidate& c = *it;
    if (c.step <= chosen.step) continue;
    const ResumeCandidate*& slot = c.written_at < 0 ? unknown : older;
    if (c.written_at < chosen.written_at && (!slot || c.step > slot->step)) slot = &c;
  }
  std::string out;
  if (older)
    out += "; not the higher " + fs::path(older->path).filename().string() +
           ", written before it (a line of checkpoints the run went back past)";
  if (unknown)
    out += "; the higher " + fs::path(unknown->path).filename().string() +
           " was not tried: when it was written (root attribute created_unix) cannot be read "
           "(damaged? `switchyard ckpt info` checks it)";
  return out;
}

}  // namespace

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
  std::vector<ResumeCandidate> candidates;
  std::vector<std::string> set_aside;
  {
    std::string packed;
    detail::on_root(coll, "--resume auto: rank 0 listing '" + dir + "'", [&] {
      detail::Packer p;
      const std::vector<ResumeCandidate> found = resume_candidates(dir);
      p.i64(static_cast<int64_t>(found.size()));
      for (const ResumeCandidate& c : found) {
        p.str(c.path);
        p.i64(c.step);
        p.i64(c.written_at);
        p.i64(c.from_latest ? 1 : 0);
      }
      const std::vector<std::string> aside = files::list_set_aside(dir);
      p.i64(static_cast<int64_t>(aside.size()));
      for (const std::string& a : aside) p.str(a);
      packed = p.bytes();
    });
    const std::string bytes =
        detail::bcast_string(coll, packed, 0, "--resume auto: the checkpoints in '" + dir + "'");
    detail::Unpacker u(bytes);
    candidates.resize(static_cast<size_t>(u.i64()));
    for (ResumeCandidate& c : candidates) {
      c.path = u.str();
      c.step = u.i64();
      c.written_at = u.i64();
      c.from_latest = u.i64() != 0;
    }
    set_aside.resize(static_cast<size_t>(u.i64()));
    for (std::string& a : set_aside) a = u.str();
  }

  const ResumeCandidate* chosen = nullptr;
  for (const ResumeCandidate& candidate : candidates) {
    const std::string& c = candidate.path;
    try {
      plan.state = verify_checkpoint(comm, c, watchdog, progress);
      if (accept) accept(c, plan.state);
      plan.path = c;
      chosen = &candidate;
      break;
    } catch (const CheckpointError& e) {
      // A checkpoint it may not read, or one another process holds open for writing (h5py's
      // 'r+'), is not damaged: skipping it would resume from an older one and write over it
      // (with checkpoint.keep, remove it). Said, exit 2.
      const bool unreadable = e.problem().starts_with(CheckpointError::kUnreadable),
                 in_use = e.problem().find(h5::kHeldOpenForWriting) != std::string::npos;
      if (e.dataset().empty() && (unreadable || in_use))
        throw UsageError(
            "--resume auto: checkpoint " + c + " " + e.problem() +
                "; not skipped (it is not damaged, and resuming from an older one "
                "would train over it). " +
                (in_use ? "Run again once that process has closed it" : "Make it readable") +
                ", or resume from another checkpoint on purpose with --resume <file>",
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
  plan.message += passed_over(candidates, *chosen);
  plan.message += skipped_text;
  return plan;
}

}  // namespace sy::ckpt

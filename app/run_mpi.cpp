#include "app/run_mpi.h"

#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <new>
#include <string>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/train/rank_memory.h"
#include "src/train/signals.h"

namespace sy::app {

void report_error(const std::exception& e) {
  if (const auto* err = dynamic_cast<const Error*>(&e)) {
    if (!err->quiet())
      std::cerr << (err->code() == kExitNumerical ? "numerical failure: " : "error: ") << e.what()
                << std::endl;
    return;
  }
  // Out of memory says so, and names an address-space limit (ulimit -v): the message was the bare
  // "fatal: std::bad_alloc".
  std::cerr << "fatal: " << failure_text(e) << std::endl;
}

namespace {
// Open MPI keeps its session files under orte_tmpdir_base, by default $TMPDIR (else /tmp): where
// no file can be made there, MPI_Init fails deep in PMIx ("OUT-OF-RESOURCE ... dstore") without
// naming either, and even `ckpt info` ends that way. Said first, as a note: orte_tmpdir_base may
// also come from an MCA parameter file this does not read, and then MPI starts well.
void note_unusable_mpi_temp_dir() {
  const char* base_env = std::getenv("OMPI_MCA_orte_tmpdir_base");
  const char* tmp_env = std::getenv("TMPDIR");
  std::string named, base;
  if (base_env && *base_env) {
    base = base_env;
    named = "OMPI_MCA_orte_tmpdir_base='" + base + "'";
  } else if (tmp_env && *tmp_env) {
    base = tmp_env;
    named = "TMPDIR='" + base + "'";
  } else {
    base = named = "/tmp";
  }
  // A folder that is not there is made by Open MPI (where its parent takes one).
  std::error_code ec;
  const std::string problem =
      std::filesystem::exists(base, ec) && !std::filesystem::is_directory(base, ec)
          ? std::string("is not a directory")
          : files::unwritable_output_dir(base + "/x");
  if (!problem.empty())
    std::cerr << "note: " << named << ": " << problem
              << "; Open MPI keeps its session files there, and MPI_Init fails where it cannot "
                 "(set TMPDIR to a writable directory)"
              << std::endl;
}

// PMIx's shared-memory store (gds ds12/ds21) writes files of a few MiB at MPI_Init: under a
// smaller file size limit (ulimit -f, a scheduler's) every MPI command, even `ckpt info`, failed
// there with PMIx's "OUT-OF-RESOURCE" lines and no word of the limit (measured: 4000 KiB fails,
// 8000 works). Its hash store keeps the same data in process memory: chosen below 64 MiB, unless
// the user chose a store. A variable of the environment, before MPI_Init reads it.
void keep_pmix_data_in_memory_under_a_small_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_FSIZE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
      limit.rlim_cur >= (rlim_t{64} << 20))
    return;
  ::setenv("PMIX_MCA_gds", "hash", /*overwrite=*/0);
}
}  // namespace

int run_with_mpi(const std::function<int(const comm::MpiSession&)>& work) {
  note_unusable_mpi_temp_dir();
  keep_pmix_data_in_memory_under_a_small_file_limit();
  comm::MpiSession mpi(nullptr, nullptr);
  // `train`: a stop that came while MPI started ends the run now (76), not in MPI_Init.
  if (const PreemptionSignals* s = PreemptionSignals::installed()) s->mpi_is_up();
  h5::print_no_library_errors();
  try {
    return work(mpi);
  } catch (const Error& e) {
    report_error(e);
    // A signal while this exits (MPI_Finalize waits for the others) keeps this exit code: it was
    // "stopped before training started" (76, run again), and a job script requeued a bad config.
    if (const PreemptionSignals* s = PreemptionSignals::installed()) s->start_up_over();
    if (e.quiet() && launcher_rank() > 0) return kExitOk;  // rank 0's to report: see run_mpi.h
    throw Error(e.code(), e.what(), /*quiet=*/true);       // reported; main() maps the exit code
  } catch (const std::exception& e) {
    report_error(e);
    if (const PreemptionSignals* s = PreemptionSignals::installed()) s->start_up_over();
    throw Error(kExitOther, e.what(), /*quiet=*/true);
  }
}

}  // namespace sy::app

#include "app/run_mpi.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/train/signals.h"

namespace sy::app {

void report_error(const std::exception& e) {
  if (const auto* err = dynamic_cast<const Error*>(&e)) {
    if (!err->quiet())
      std::cerr << (err->code() == kExitNumerical ? "numerical failure: " : "error: ") << e.what()
                << std::endl;
    return;
  }
  std::cerr << "fatal: " << e.what() << std::endl;
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
}  // namespace

int run_with_mpi(const std::function<int(const comm::MpiSession&)>& work) {
  note_unusable_mpi_temp_dir();
  comm::MpiSession mpi(nullptr, nullptr);
  try {
    return work(mpi);
  } catch (const Error& e) {
    report_error(e);
    if (e.quiet() && launcher_rank() > 0) return kExitOk;  // rank 0's to report: see run_mpi.h
    throw Error(e.code(), e.what(), /*quiet=*/true);       // reported; main() maps the exit code
  } catch (const std::exception& e) {
    report_error(e);
    throw Error(kExitOther, e.what(), /*quiet=*/true);
  }
}

}  // namespace sy::app

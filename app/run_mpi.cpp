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
// Open MPI keeps its session files under $TMPDIR (else /tmp): where no file can be made there,
// MPI_Init fails deep in PMIx ("OUT-OF-RESOURCE ... dstore") without naming either, and even
// `ckpt info` ends that way. Said first, in those terms.
void check_mpi_temp_dir() {
  const char* env = std::getenv("TMPDIR");
  const bool set = env && *env;
  const std::string base = set ? env : "/tmp";
  const std::string named = set ? "TMPDIR='" + base + "'" : std::string("/tmp");
  std::error_code ec;
  std::string problem;
  if (!std::filesystem::is_directory(base, ec))
    problem = "is not a directory";
  else
    problem = files::unwritable_output_dir(base + "/x");
  if (!problem.empty())
    throw UsageError(named + ": " + problem +
                     "; Open MPI keeps its session files there (set TMPDIR to a writable "
                     "directory)");
}
}  // namespace

int run_with_mpi(const std::function<int(const comm::MpiSession&)>& work) {
  check_mpi_temp_dir();
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

#include "app/run_mpi.h"

#include <iostream>

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

int run_with_mpi(const std::function<int(const comm::MpiSession&)>& work) {
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

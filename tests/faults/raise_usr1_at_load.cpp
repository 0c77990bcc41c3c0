// Preloaded (LD_PRELOAD) into `switchyard train` by signals_test.cpp: raises SIGUSR1 while the
// shared libraries initialize -- after the executable's .preinit_array, before main -- as a stop
// that mpirun forwards at once reaches a rank it has just started (libucs's and OpenBLAS's
// constructors run there). Only into that process: the daemon a singleton's MPI_Init starts
// would raise it too.
//   SY_TEST_RAISE=HUP           raises SIGHUP instead
//   SY_TEST_MPI_UP_FILE=<path>  MPI_Init_thread (wrapped here) writes <path> once it has returned
//   SY_TEST_STALL_S=<n>         after the signal, the start-up stalls n seconds (a peer that
//                               never comes)
#include <dlfcn.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <string_view>

namespace {

[[gnu::constructor]] void raise_a_stop_while_libraries_load() {
  ::unsetenv("LD_PRELOAD");
  const char* which = std::getenv("SY_TEST_RAISE");
  std::raise(which != nullptr && std::string_view(which) == "HUP" ? SIGHUP : SIGUSR1);
  if (const char* s = std::getenv("SY_TEST_STALL_S")) ::sleep(static_cast<unsigned>(std::atoi(s)));
}

}  // namespace

extern "C" int MPI_Init_thread(int* argc, char*** argv, int required, int* provided) {
  using Fn = int (*)(int*, char***, int, int*);
  const auto real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "MPI_Init_thread"));
  const int rc = real(argc, argv, required, provided);
  if (const char* path = std::getenv("SY_TEST_MPI_UP_FILE")) std::ofstream(path) << rc << "\n";
  return rc;
}

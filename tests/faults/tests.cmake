# The fault suite (issue 15: "nothing hangs, nothing is lost"). Included by tests/CMakeLists.txt
# (CMAKE_CURRENT_SOURCE_DIR = tests/). One process per test that starts `mpirun ... switchyard
# train` (up to 4 ranks) and makes one fault happen: a rank stopped during a checkpoint, a full
# disk (a private tmpfs where mounting is allowed, else skipped), one rank's write failing, a
# FIFO or an unusable directory as input, signals before and after training and to mpirun, a
# second run in the same directory, damaged checkpoint metadata. Label `faults`:
#   ctest -L faults
# The README's "Reliability" section lists each fault, what the trainer does, and its test.
file(GLOB sy_faults_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/faults/*_test.cpp)
add_executable(test_faults ${sy_faults_srcs})
# Preloaded into a train run: a SIGUSR1 while its libraries initialize, before main.
add_library(sy_test_raise_usr1 MODULE ${CMAKE_CURRENT_SOURCE_DIR}/faults/raise_usr1_at_load.cpp)
target_link_libraries(sy_test_raise_usr1 PRIVATE sy_warnings)
# Preloaded into train runs: a run's flock of its lock file slowed (two runs interleaved).
add_library(sy_test_slow_flock MODULE ${CMAKE_CURRENT_SOURCE_DIR}/faults/slow_flock.cpp)
target_link_libraries(sy_test_slow_flock PRIVATE sy_warnings ${CMAKE_DL_LIBS})
target_include_directories(test_faults PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_faults PRIVATE sy_train sy_ckpt nlohmann_json::nlohmann_json
                      GTest::gtest GTest::gtest_main sy_warnings)
target_compile_definitions(test_faults PRIVATE SWITCHYARD_BIN="$<TARGET_FILE:switchyard>"
                                               SWITCHYARD_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
                                               SWITCHYARD_RAISE_USR1_LIB="$<TARGET_FILE:sy_test_raise_usr1>"
                                               SWITCHYARD_SLOW_FLOCK_LIB="$<TARGET_FILE:sy_test_slow_flock>")
add_dependencies(test_faults switchyard sy_test_raise_usr1 sy_test_slow_flock)
# One value per property (gtest_discover_tests splits ';' lists into separate arguments).
gtest_discover_tests(test_faults DISCOVERY_TIMEOUT 60
  PROPERTIES LABELS faults ENVIRONMENT "OMP_NUM_THREADS=1" TIMEOUT 400)

# Checkpoint tests (issue 5). Included by tests/CMakeLists.txt (CMAKE_CURRENT_SOURCE_DIR = tests/).
#   test_ckpt_np{1,2,4}  the library under mpirun: layouts, corruption, rotation, resume choice,
#                        signals (tests/ckpt/mpi)
#   test_ckpt_unit       one process: config compatibility, safetensors format, and the process
#                        tests that run mpirun / switchyard themselves: a rank killed while
#                        writing, `switchyard ckpt info|export` (tests/ckpt/unit)
#   ckpt_h5py_schema     h5py finds every SPEC section 5 dataset with its shape
#   ckpt_safetensors     PyPI's safetensors loads `switchyard ckpt export` (skips without PyPI)
# All carry the label `ckpt`.

sy_mpi_gtest(test_ckpt DIRS ckpt/mpi DEPS sy_ckpt sy_train NPS 1 2 4)
if(NOT TARGET test_ckpt)
  return()
endif()
foreach(np 1 2 4)
  set_property(TEST test_ckpt_np${np} APPEND PROPERTY LABELS ckpt)
endforeach()

# The helper that writes real-model checkpoints (ckpt_helper.cpp says how).
add_executable(ckpt_helper ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/helper/ckpt_helper.cpp)
target_include_directories(ckpt_helper PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(ckpt_helper PRIVATE sy_ckpt sy_warnings)

# One process; the crash and CLI tests start mpirun and switchyard themselves.
sy_gtest(test_ckpt_unit DIRS ckpt/unit DEPS sy_ckpt nlohmann_json::nlohmann_json)
list(JOIN SY_MPIRUN " " sy_ckpt_mpirun)
target_compile_definitions(test_ckpt_unit PRIVATE
  SWITCHYARD_BIN="$<TARGET_FILE:switchyard>" CKPT_HELPER="$<TARGET_FILE:ckpt_helper>"
  SY_TEST_MPIRUN="${sy_ckpt_mpirun}" SWITCHYARD_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_dependencies(test_ckpt_unit switchyard ckpt_helper)

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
# (sy_gtest's wiring, with the `ckpt` label.)
file(GLOB sy_ckpt_unit_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/unit/*.cpp)
add_executable(test_ckpt_unit ${sy_ckpt_unit_srcs})
target_include_directories(test_ckpt_unit PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_ckpt_unit PRIVATE sy_ckpt nlohmann_json::nlohmann_json GTest::gtest
                      GTest::gtest_main sy_warnings)
# One value per property: gtest_discover_tests splits a ';' list into separate arguments, which
# shifts the properties after it (labels and environment get lost).
gtest_discover_tests(test_ckpt_unit DISCOVERY_TIMEOUT 60
  PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1" LABELS ckpt TIMEOUT 300)
list(JOIN SY_MPIRUN " " sy_ckpt_mpirun)
target_compile_definitions(test_ckpt_unit PRIVATE
  SWITCHYARD_BIN="$<TARGET_FILE:switchyard>" CKPT_HELPER="$<TARGET_FILE:ckpt_helper>"
  SY_TEST_MPIRUN="${sy_ckpt_mpirun}" SWITCHYARD_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_dependencies(test_ckpt_unit switchyard ckpt_helper)

# Real checkpoints for the Python checks, written by 2 ranks: the tiny model (tied embeddings),
# and a variant with an untied head and a shared expert, so /model/head and moe/shared/* appear.
set(sy_ckpt_fixture ${CMAKE_CURRENT_BINARY_DIR}/ckpt-fixture)
set(sy_ckpt_env "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1;OPENBLAS_CORETYPE=Haswell")
add_test(NAME ckpt_fixture_write
  COMMAND ${SY_MPIRUN} -np 2 $<TARGET_FILE:ckpt_helper> write
          --config ${CMAKE_SOURCE_DIR}/configs/tiny.yaml --dir ${sy_ckpt_fixture}/tied --step 10)
add_test(NAME ckpt_fixture_write_untied
  COMMAND ${SY_MPIRUN} -np 2 $<TARGET_FILE:ckpt_helper> write
          --config ${CMAKE_SOURCE_DIR}/configs/tiny.yaml --dir ${sy_ckpt_fixture}/untied --step 10
          --set model.tie_embeddings=false --set moe.shared_experts=1)
set_tests_properties(ckpt_fixture_write ckpt_fixture_write_untied PROPERTIES
  FIXTURES_SETUP ckpt_fixture LABELS ckpt ENVIRONMENT "${sy_ckpt_env}" TIMEOUT 120)

# Debian's python3-h5py (jobs/deps.sh --test), hence /usr/bin/python3, not a pyenv python3.
add_test(NAME ckpt_h5py_schema
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/check_h5py_schema.py
          ${sy_ckpt_fixture}/tied/step_00000010.h5 --fresh-init)
add_test(NAME ckpt_h5py_schema_untied
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/check_h5py_schema.py
          ${sy_ckpt_fixture}/untied/step_00000010.h5 --fresh-init)
add_test(NAME ckpt_safetensors
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ckpt/safetensors_test.sh $<TARGET_FILE:switchyard>
          ${sy_ckpt_fixture}/untied/step_00000010.h5 ${sy_ckpt_fixture})
set_tests_properties(ckpt_h5py_schema ckpt_h5py_schema_untied ckpt_safetensors PROPERTIES
  FIXTURES_REQUIRED ckpt_fixture LABELS ckpt ENVIRONMENT "${sy_ckpt_env}" TIMEOUT 300)
set_tests_properties(ckpt_safetensors PROPERTIES SKIP_RETURN_CODE 77)

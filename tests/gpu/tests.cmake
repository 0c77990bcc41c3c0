# The GPU suite (tests/gpu): every CUDA kernel against the CPU reference, the Philox init
# equality and the single-GPU model against Model<float>. Built only with the CUDA backend
# (cmake/cuda.cmake); every test is labelled `gpu` (ctest -L gpu) and reports SKIPPED with the
# reason when no GPU is usable. tests/gpu/CMakeLists.txt builds the kernel tests on their own
# (CUDA + GoogleTest source only) for the GPU machine; see tests/gpu/README.md.
if(NOT TARGET sy_cuda)
  return()
endif()

# sy_gpu_gtest(<target> <folder under tests/gpu, "" for its top> <libraries...>): one executable
# of the folder's test_*.cpp, each test its own ctest entry (nothing when the folder has none).
function(sy_gpu_gtest target folder)
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/${folder}test_*.cpp)
  if(NOT srcs)
    return()
  endif()
  add_executable(${target} ${srcs})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
  target_link_libraries(${target} PRIVATE ${ARGN} GTest::gtest GTest::gtest_main sy_warnings)
  # One value per property: gtest_discover_tests writes PROPERTIES out unquoted, so a ;-list
  # value would split into stray key/value pairs (and the label would silently not be set).
  gtest_discover_tests(${target} DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS gpu ENVIRONMENT OPENBLAS_CORETYPE=Haswell)
endfunction()

# sy_gpu_mpi_test(<target> <folder> SKIPPED <n> TIMEOUT <s> ENV <k=v...> LIBS <libraries...>):
# one executable of the folder's test_*.cpp with the MPI gtest main, run whole under mpirun at 1
# and 2 ranks (ctest entries <target>_np1, _np2). CTest reports it SKIPPED only when gtest's
# summary says `SKIPPED <n> tests`: n = every test that needs a GPU (keep it in step).
function(sy_gpu_mpi_test target folder)
  cmake_parse_arguments(arg "" "SKIPPED;TIMEOUT" "ENV;LIBS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/${folder}test_*.cpp)
  if(NOT srcs)
    return()
  endif()
  add_executable(${target} ${srcs} ${CMAKE_CURRENT_SOURCE_DIR}/common/mpi_gtest_main.cpp)
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}
                                                ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
  target_link_libraries(${target} PRIVATE ${arg_LIBS} GTest::gtest sy_warnings)
  set(env GTEST_COLOR=no OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ${arg_ENV})
  foreach(np 1 2)
    add_test(NAME ${target}_np${np} COMMAND ${SY_MPIRUN} -np ${np} $<TARGET_FILE:${target}>)
    set_tests_properties(${target}_np${np} PROPERTIES LABELS gpu TIMEOUT ${arg_TIMEOUT}
      SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\] ${arg_SKIPPED} tests" ENVIRONMENT "${env}")
  endforeach()
endfunction()

# Kernel tests: CUDA kernels against kernels/cpu (no src/ dependency, as in the standalone build).
sy_gpu_gtest(test_gpu_kernels "" sy_cuda_kernels sy_kernels)

# Model-level tests: the Philox init against src/model/init, the GPU model against Model<float>.
sy_gpu_gtest(test_gpu_model model/ sy_cuda)

# The GPU decoder of `switchyard sample --device cuda` against the CPU Decoder (src/sample).
if(TARGET sy_cuda_sample)
  sy_gpu_gtest(test_gpu_sample sample/ sy_sample sy_cuda_sample)
endif()

if(TARGET sy_nccl)
  # NCCL from MPI groups and the GPU expert exchange (sy_cuda: the MoE layer through the
  # exchange, test_moe_exchange.cpp, with sy_model's CPU layer); skipped with fewer GPUs than
  # ranks. Every test but Nccl.CudaAwareMpiIsAnswered (which needs no GPU) skips without one.
  sy_gpu_mpi_test(test_gpu_nccl nccl/ SKIPPED 9 TIMEOUT 300
                  LIBS sy_nccl sy_cuda sy_cuda_kernels sy_comm)
  # The GPU trainer (src/train/train_gpu.cpp) (configs/ found through $SWITCHYARD_SOURCE_DIR at
  # run time, so the binary runs from the GPU bundle of jobs/gpu_bundle.sh as well): at 1 rank
  # checkpoints, --resume and preemption on one GPU and the checkpoints' round trip through the
  # CPU trainer; at 2 ranks NCCL data, expert and tensor parallelism against one GPU (skipped
  # with fewer than 2 GPUs). Every test skips without a GPU.
  sy_gpu_mpi_test(test_gpu_train train/ SKIPPED 7 TIMEOUT 600
                  ENV OPENBLAS_CORETYPE=Haswell OMP_NUM_THREADS=1 SY_TEST_TIMEOUT_S=300
                      SWITCHYARD_SOURCE_DIR=${CMAKE_SOURCE_DIR}
                  LIBS sy_train sy_ckpt sy_comm)
endif()

# compute-sanitizer over the kernel (and layer) tests: the label gpu-sanitize.
include(${CMAKE_CURRENT_SOURCE_DIR}/gpu/sanitize.cmake)

# The GPU suite (tests/gpu): every CUDA kernel against the CPU reference, the Philox init
# equality and the single-GPU model against Model<float>. Built only with the CUDA backend
# (cmake/cuda.cmake); every test is labelled `gpu` (ctest -L gpu) and reports SKIPPED with the
# reason when no GPU is usable. tests/gpu/CMakeLists.txt builds the kernel tests on their own
# (CUDA + GoogleTest source only) for the GPU machine; see tests/gpu/README.md.
if(NOT TARGET sy_cuda)
  return()
endif()
# Kernel tests: CUDA kernels against kernels/cpu (no src/ dependency, as in the standalone build).
file(GLOB sy_gpu_kernel_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_*.cpp)
add_executable(test_gpu_kernels ${sy_gpu_kernel_tests})
target_include_directories(test_gpu_kernels PRIVATE ${CMAKE_SOURCE_DIR}
                                                    ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
target_link_libraries(test_gpu_kernels PRIVATE sy_cuda_kernels sy_kernels GTest::gtest
                                               GTest::gtest_main sy_warnings)
# One value per property: gtest_discover_tests writes PROPERTIES out unquoted, so a ;-list
# value would split into stray key/value pairs (and the label would silently not be set).
gtest_discover_tests(test_gpu_kernels DISCOVERY_TIMEOUT 60
                     PROPERTIES LABELS gpu ENVIRONMENT OPENBLAS_CORETYPE=Haswell)

# Model-level tests: the Philox init against src/model/init, the GPU model against Model<float>.
file(GLOB sy_gpu_model_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/model/test_*.cpp)
if(sy_gpu_model_tests)
  add_executable(test_gpu_model ${sy_gpu_model_tests})
  target_include_directories(test_gpu_model PRIVATE ${CMAKE_SOURCE_DIR}
                                                    ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
  target_link_libraries(test_gpu_model PRIVATE sy_cuda GTest::gtest GTest::gtest_main sy_warnings)
  gtest_discover_tests(test_gpu_model DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS gpu ENVIRONMENT OPENBLAS_CORETYPE=Haswell)
endif()

# The GPU decoder of `switchyard sample --device cuda` against the CPU Decoder (src/sample).
file(GLOB sy_gpu_sample_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/sample/test_*.cpp)
if(TARGET sy_cuda_sample AND sy_gpu_sample_tests)
  add_executable(test_gpu_sample ${sy_gpu_sample_tests})
  target_include_directories(test_gpu_sample PRIVATE ${CMAKE_SOURCE_DIR}
                                                     ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
  target_link_libraries(test_gpu_sample PRIVATE sy_sample sy_cuda_sample GTest::gtest
                                                GTest::gtest_main sy_warnings)
  gtest_discover_tests(test_gpu_sample DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS gpu ENVIRONMENT OPENBLAS_CORETYPE=Haswell)
endif()

# NCCL from MPI groups and the GPU expert exchange: under mpirun at 1 and 2 ranks (skipped with
# fewer GPUs than ranks).
file(GLOB sy_gpu_nccl_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/nccl/test_*.cpp)
if(TARGET sy_nccl AND sy_gpu_nccl_tests)
  add_executable(test_gpu_nccl ${sy_gpu_nccl_tests}
                               ${CMAKE_CURRENT_SOURCE_DIR}/common/mpi_gtest_main.cpp)
  target_include_directories(test_gpu_nccl PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  # sy_cuda: the MoE layer through the exchange (test_moe_exchange.cpp), with sy_model's CPU layer
  target_link_libraries(test_gpu_nccl PRIVATE sy_nccl sy_cuda sy_cuda_kernels sy_comm GTest::gtest
                                              sy_warnings)
  foreach(np 1 2)
    add_test(NAME test_gpu_nccl_np${np} COMMAND ${SY_MPIRUN} -np ${np}
                                                $<TARGET_FILE:test_gpu_nccl>)
    # Skipped (not passed) when every rank skipped: gtest's summary line then reads SKIPPED. The
    # count is every test but Nccl.CudaAwareMpiIsAnswered (which needs no GPU): keep it in step.
    set_tests_properties(test_gpu_nccl_np${np} PROPERTIES LABELS gpu TIMEOUT 300
      SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\] 8 tests"
      ENVIRONMENT "GTEST_COLOR=no;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  endforeach()
endif()

# The GPU trainer (src/train/train_gpu.cpp) under mpirun (configs/ found through
# $SWITCHYARD_SOURCE_DIR at run time, so the binary runs from the GPU bundle of
# jobs/gpu_bundle.sh as well): at 1 rank checkpoints, --resume and
# preemption on one GPU and the checkpoints' round trip through the CPU trainer; at 2 ranks
# NCCL data, expert and tensor parallelism against one GPU (skipped with fewer than 2 GPUs). The SKIP pattern counts
# every test of the executable: CTest reports SKIPPED only when all of them were.
file(GLOB sy_gpu_train_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/train/test_*.cpp)
if(TARGET sy_nccl AND sy_gpu_train_tests)
  add_executable(test_gpu_train ${sy_gpu_train_tests}
                                ${CMAKE_CURRENT_SOURCE_DIR}/common/mpi_gtest_main.cpp)
  target_include_directories(test_gpu_train PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}
                                                    ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
  target_link_libraries(test_gpu_train PRIVATE sy_train sy_ckpt sy_comm GTest::gtest sy_warnings)
  foreach(np 1 2)
    add_test(NAME test_gpu_train_np${np} COMMAND ${SY_MPIRUN} -np ${np}
                                                 $<TARGET_FILE:test_gpu_train>)
    set_tests_properties(test_gpu_train_np${np} PROPERTIES LABELS gpu TIMEOUT 600
      SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\] 7 tests"
      ENVIRONMENT "GTEST_COLOR=no;OPENBLAS_CORETYPE=Haswell;OMP_NUM_THREADS=1;SY_TEST_TIMEOUT_S=300;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;SWITCHYARD_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  endforeach()
endif()

# compute-sanitizer over the kernel (and layer) tests: the label gpu-sanitize.
include(${CMAKE_CURRENT_SOURCE_DIR}/gpu/sanitize.cmake)

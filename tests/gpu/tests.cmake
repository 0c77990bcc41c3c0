# The GPU suite (tests/gpu): every CUDA kernel against the CPU reference, the Philox init
# equality and the single-GPU model against Model<float>. Built only with the CUDA backend
# (cmake/cuda.cmake); every test is labelled `gpu` (ctest -L gpu) and reports SKIPPED with the
# reason when no GPU is usable. tests/gpu/CMakeLists.txt builds the kernel tests on their own
# (CUDA + GoogleTest source only) for the GPU machine; see tests/gpu/README.md.
if(NOT TARGET sy_cuda)
  return()
endif()
file(GLOB sy_gpu_test_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_*.cpp
     ${CMAKE_CURRENT_SOURCE_DIR}/gpu/model/test_*.cpp)
add_executable(test_gpu ${sy_gpu_test_srcs})
target_include_directories(test_gpu PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}
                                            ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
target_link_libraries(test_gpu PRIVATE sy_cuda sy_kernels sy_model sy_optim GTest::gtest
                                       GTest::gtest_main sy_warnings)
# One value per property: gtest_discover_tests writes PROPERTIES out unquoted, so a ;-list
# value would split into stray key/value pairs (and the label would silently not be set).
gtest_discover_tests(test_gpu DISCOVERY_TIMEOUT 60
                     PROPERTIES LABELS gpu ENVIRONMENT OPENBLAS_CORETYPE=Haswell)
if(TARGET sy_nccl)
  target_link_libraries(test_gpu PRIVATE sy_nccl)
endif()

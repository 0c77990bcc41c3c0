# The CUDA backend: -DSWITCHYARD_CUDA=ON|OFF|AUTO (included by the top-level CMakeLists.txt after
# the CPU libraries).
#   ON   nvcc, cuBLAS, cuRAND and NCCL are required (configure fails without them)
#   AUTO the backend is built when nvcc is found (NCCL then optional)
#   OFF  nothing of it is built
# What it builds:
#   sy_cuda_kernels  kernels/cuda/*.cu|*.cpp: the kernels, cuBLAS GEMMs and the Philox init.
#             Targets that link it get SWITCHYARD_HAVE_CUDA.
#   sy_cuda   src/model/cuda_*.cu: the single-GPU model on top of them (and of sy_model).
#   sy_cuda_sample  src/sample/cuda_*.cu: the GPU decoder of `switchyard sample --device cuda`;
#             sy_sample links it (and so sees SWITCHYARD_HAVE_CUDA).
#   sy_nccl   comm/nccl.cpp, comm/gpu_exchange.cpp: NCCL communicators from MPI ones and the GPU
#             expert all-to-all (SWITCHYARD_HAVE_NCCL), when NCCL is found.
# sy_bench links sy_cuda so that `switchyard bench moe-layer` can run on a GPU.
set(SY_CUDA_ENABLED OFF)
if(SWITCHYARD_CUDA STREQUAL "OFF")
  return()
endif()
if(NOT SWITCHYARD_CUDA MATCHES "^(ON|AUTO)$")
  message(FATAL_ERROR "SWITCHYARD_CUDA must be ON, OFF or AUTO, not '${SWITCHYARD_CUDA}'")
endif()

# nvcc in the usual place is found even when it is not on PATH (CI machines: /usr/local/cuda).
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(SWITCHYARD_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SWITCHYARD_CUDA=ON but no nvcc was found (set CUDACXX or "
                        "CMAKE_CUDA_COMPILER, or use -DSWITCHYARD_CUDA=AUTO|OFF)")
  endif()
  message(STATUS "switchyard: nvcc not found, CUDA backend not built")
  return()
endif()

# sm_80 (A100) and sm_90 (H100/H200); override with -DCMAKE_CUDA_ARCHITECTURES=...
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
enable_language(CUDA)
# C++20 for .cu files too (they include src/ headers). CMake 3.25 does not know nvcc's C++20 flag
# (nvcc has had -std=c++20 since 12.0): tell it, so CUDA_STANDARD 20 works.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)
find_package(CUDAToolkit REQUIRED)

# NCCL ships no CMake package: find the library and the header beside the toolkit.
find_library(SY_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib
             /usr/local/cuda/lib64)
find_path(SY_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
if(SWITCHYARD_CUDA STREQUAL "ON" AND (NOT SY_NCCL_LIBRARY OR NOT SY_NCCL_INCLUDE_DIR))
  message(FATAL_ERROR "SWITCHYARD_CUDA=ON but NCCL was not found (libnccl.so / nccl.h; "
                      "looked in ${CUDAToolkit_LIBRARY_DIR} and /usr/local/cuda)")
endif()
set(SY_CUDA_ENABLED ON)
message(STATUS "switchyard: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${SY_NCCL_LIBRARY})")

# Warnings for .cu files: nvcc takes the host compiler's through -Xcompiler, and its own device
# diagnostics become errors with -Werror all-warnings. (sy_warnings' flags are not nvcc flags.)
add_library(sy_cuda_warnings INTERFACE)
target_compile_options(sy_cuda_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>)
if(SWITCHYARD_WERROR)
  target_compile_options(sy_cuda_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>
    $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()

# The kernels know nothing of the model (kernels/ rule), so they are their own library and build
# without src/; the model on top of them is sy_cuda.
file(GLOB sy_cuda_kernel_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu
     ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cpp)
add_library(sy_cuda_kernels STATIC ${sy_cuda_kernel_srcs})
target_include_directories(sy_cuda_kernels PUBLIC ${CMAKE_SOURCE_DIR})
# sy_kernels: the CPU's RoPE angle table (cpu::rope_table), which the GPU's RopeTable uploads.
target_link_libraries(sy_cuda_kernels PUBLIC CUDA::cudart CUDA::cublas CUDA::curand sy_kernels
                      PRIVATE sy_cuda_warnings)
target_compile_definitions(sy_cuda_kernels PUBLIC SWITCHYARD_HAVE_CUDA)
# --expt-relaxed-constexpr: philox.h's inline constexpr constants are read in device code.
target_compile_options(sy_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)

file(GLOB sy_cuda_model_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/model/cuda_*.cu
     ${CMAKE_SOURCE_DIR}/src/model/cuda_*.cpp)
if(NOT sy_cuda_model_srcs)
  set(sy_cuda_model_srcs ${CMAKE_SOURCE_DIR}/cmake/empty.cpp)
endif()
add_library(sy_cuda STATIC ${sy_cuda_model_srcs})
target_include_directories(sy_cuda PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(sy_cuda PUBLIC sy_cuda_kernels sy_model sy_optim PRIVATE sy_cuda_warnings)
target_compile_options(sy_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)

# The GPU decoder needs only the header-only parts of src/sample (decoder.h's TokenDecoder), so it
# builds without sy_sample, which links it.
file(GLOB sy_cuda_sample_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/sample/cuda_*.cu)
if(sy_cuda_sample_srcs)
  add_library(sy_cuda_sample STATIC ${sy_cuda_sample_srcs})
  target_include_directories(sy_cuda_sample PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(sy_cuda_sample PUBLIC sy_cuda PRIVATE sy_cuda_warnings)
  target_compile_options(sy_cuda_sample PRIVATE
                         $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
  target_link_libraries(sy_sample PUBLIC sy_cuda_sample)
endif()

if(SY_NCCL_LIBRARY AND SY_NCCL_INCLUDE_DIR AND EXISTS ${CMAKE_SOURCE_DIR}/comm/nccl.cpp)
  add_library(sy_nccl STATIC ${CMAKE_SOURCE_DIR}/comm/nccl.cpp
                             ${CMAKE_SOURCE_DIR}/comm/gpu_exchange.cpp)
  target_include_directories(sy_nccl PUBLIC ${CMAKE_SOURCE_DIR} ${SY_NCCL_INCLUDE_DIR})
  target_link_libraries(sy_nccl PUBLIC ${SY_NCCL_LIBRARY} CUDA::cudart MPI::MPI_C sy_comm
                        sy_cuda_kernels PRIVATE sy_warnings)
  target_compile_definitions(sy_nccl PUBLIC SWITCHYARD_HAVE_NCCL)
  # The GPU model's expert parallelism moves rows through comm/gpu_exchange.
  target_link_libraries(sy_cuda PUBLIC sy_nccl)
endif()

# `switchyard bench moe-layer` runs the CUDA layer when it is built in.
target_link_libraries(sy_bench PUBLIC sy_cuda)
# `device: cuda` in the trainer (src/train/train_gpu.cpp); data-parallel over NCCL when found.
target_link_libraries(sy_train PUBLIC sy_cuda)
if(TARGET sy_nccl)
  target_link_libraries(sy_train PUBLIC sy_nccl)
endif()

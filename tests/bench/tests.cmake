# The PyTorch cross-check of switchyard's loss (tests/bench/torch_crosscheck.py). PyTorch is a
# multi-GB install that CI does not carry, so the test reports SKIPPED (exit 77) where the Python
# below cannot import torch. Point it at one that can with
#   cmake -DSWITCHYARD_TORCH_PYTHON=/opt/torchenv/bin/python ...
set(SWITCHYARD_TORCH_PYTHON "python3" CACHE STRING
    "Python interpreter with torch, numpy, pyyaml, h5py for the PyTorch cross-check test")
# A Python check run with that interpreter against the switchyard binary (also used by
# tests/export/tests.cmake).
function(sy_torch_test name script label timeout)
  add_test(NAME ${name}
           COMMAND ${SWITCHYARD_TORCH_PYTHON} ${CMAKE_SOURCE_DIR}/${script}
                   --switchyard $<TARGET_FILE:switchyard> --source ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES
    SKIP_RETURN_CODE 77 LABELS "${label};torch" TIMEOUT ${timeout}
    ENVIRONMENT "OPENBLAS_CORETYPE=Haswell;OMP_NUM_THREADS=2")
endfunction()
sy_torch_test(bench_torch_loss_crosscheck tests/bench/torch_crosscheck.py bench 600)

# test_bench (tests/bench/*.cpp, declared in tests/CMakeLists.txt) reads configs/tiny.yaml.
if(TARGET test_bench)
  target_compile_definitions(test_bench PRIVATE SWITCHYARD_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
endif()

# bench train with device: cuda without a GPU (or without the CUDA backend): exit 2 and why.
add_test(NAME bench_train_cuda_without_gpu
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_train_no_gpu.sh
                 $<TARGET_FILE:switchyard> ${CMAKE_SOURCE_DIR})
set_tests_properties(bench_train_cuda_without_gpu PROPERTIES
  LABELS bench SKIP_RETURN_CODE 77 TIMEOUT 60)

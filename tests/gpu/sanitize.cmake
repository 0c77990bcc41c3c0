# The ctest label gpu-sanitize: compute-sanitizer's memcheck (out-of-bounds and misaligned
# accesses), racecheck (shared-memory races in the block reductions and scans) and initcheck
# (reads of device memory never written) over the GPU kernel tests, and memcheck over the layer
# and init tests of test_gpu_model when that target exists. Each reports SKIPPED (exit 77) when
# compute-sanitizer is not found or no GPU is usable (tests/gpu/sanitize.sh). HugeShapes (9 GB
# buffers) and the DeviceBuffer ordering tests (1 GiB of legacy-stream memsets) are left out.
# initcheck runs them all too: cuBLAS's workspace is ours and zeroed (CublasHandle), and so is
# cub's sort scratch, so their reads of memory they never wrote are not reported.
# Note: `ctest -L gpu` is a regex and also selects this label; `ctest -L '^gpu$'` does not.
set(sy_sanitize_script ${CMAKE_CURRENT_LIST_DIR}/sanitize.sh)
set(sy_sanitize_skip "HugeShapes.*:DeviceBuffer.*")
foreach(tool memcheck racecheck initcheck)
  set(filter "-${sy_sanitize_skip}")
  add_test(NAME gpu_sanitize_${tool}_kernels
           COMMAND ${sy_sanitize_script} ${tool} $<TARGET_FILE:test_gpu_kernels> ${filter})
  set_tests_properties(gpu_sanitize_${tool}_kernels PROPERTIES LABELS gpu-sanitize TIMEOUT 600
                       SKIP_RETURN_CODE 77 ENVIRONMENT "OPENBLAS_CORETYPE=Haswell;OMP_NUM_THREADS=1")
endforeach()
if(TARGET test_gpu_model)
  add_test(NAME gpu_sanitize_memcheck_model
           COMMAND ${sy_sanitize_script} memcheck $<TARGET_FILE:test_gpu_model>
                   "CudaMoeLayer.*:CudaModel.Init*:GpuProbe.*")
  set_tests_properties(gpu_sanitize_memcheck_model PROPERTIES LABELS gpu-sanitize TIMEOUT 600
                       SKIP_RETURN_CODE 77 ENVIRONMENT "OPENBLAS_CORETYPE=Haswell;OMP_NUM_THREADS=1")
endif()

#!/usr/bin/env bash
# Build everything with warnings as errors, check formatting and run the whole test suite (what
# CI runs, via .ci/run): a CPU-only build that runs every test, then, where nvcc is installed, a
# CUDA build whose GPU tests run (and report SKIPPED with the reason when there is no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/deps.sh --test
bash jobs/check_format.sh
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
jobs=$(nproc)

cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON -DSWITCHYARD_CUDA=OFF >/dev/null
cmake --build build-test -j"$jobs"
(cd build-test && ctest --output-on-failure -j"$jobs" --timeout 600)

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cmake -S . -B build-test-cuda -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON \
    -DSWITCHYARD_CUDA=ON >/dev/null
  cmake --build build-test-cuda -j"$jobs"
  (cd build-test-cuda && ctest --output-on-failure -L gpu --no-tests=ignore --timeout 600)
fi

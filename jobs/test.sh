#!/usr/bin/env bash
# Build everything with warnings as errors, check formatting and run the whole test suite (what
# CI runs, via .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/deps.sh --test
bash jobs/check_format.sh
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON >/dev/null
cmake --build build-test -j"$(nproc)"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
cd build-test && ctest --output-on-failure -j"$(nproc)" --timeout 600

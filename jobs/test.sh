#!/usr/bin/env bash
# Build everything with warnings as errors, check formatting and run the whole test suite (what
# CI runs, via .ci/run): a CPU-only build that runs every test, then, where nvcc is installed, a
# CUDA build whose GPU tests run (and report SKIPPED with the reason when there is no GPU).
#
#   bash jobs/test.sh               (no arguments)
#   bash jobs/test.sh -h | --help   this text
set -euo pipefail
case ${1:-} in
  "") ;;
  -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
  *) echo "test.sh: unknown argument '$1': it takes none (see --help)" >&2; exit 2 ;;
esac
# The script's real folder, not a symlink's.
cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.."
bash jobs/deps.sh --test
bash jobs/check_format.sh
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
jobs=$(nproc)

# Totals over both CTest runs, printed last as one "N passed, N failed, N skipped" line: the GPU
# run alone ends with "100% tests passed" although without a GPU every one of its tests skipped.
passed=0 failed=0 skipped=0
run_ctest() {  # build dir, ctest arguments...
  local dir=$1 rc=0 total bad skip disabled
  shift
  (cd "$dir" && ctest "$@") 2>&1 | tee "$dir/ctest.log" || rc=$?
  total=$(grep -oE 'tests failed out of [0-9]+' "$dir/ctest.log" | grep -oE '[0-9]+$' || echo 0)
  bad=$(grep -oE '[0-9]+ tests failed out of' "$dir/ctest.log" | grep -oE '^[0-9]+' || echo 0)
  # ctest's "out of N" counts skipped tests but not disabled ones: only the skipped come off it
  # (taking the disabled off too counted them as not passed twice). Both count as skipped.
  skip=$(grep -cE '\(Skipped\)$' "$dir/ctest.log" || true)
  disabled=$(grep -cE '\(Disabled\)$' "$dir/ctest.log" || true)
  passed=$((passed + total - bad - skip)) failed=$((failed + bad))
  skipped=$((skipped + skip + disabled))
  if [ "$rc" -ne 0 ]; then
    echo "switchyard: $passed passed, $failed failed, $skipped skipped"
    exit "$rc"
  fi
}

cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON -DSWITCHYARD_CUDA=OFF >/dev/null
cmake --build build-test -j"$jobs"
run_ctest build-test --output-on-failure -j"$jobs" --timeout 600

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cmake -S . -B build-test-cuda -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON \
    -DSWITCHYARD_CUDA=ON >/dev/null
  cmake --build build-test-cuda -j"$jobs"
  run_ctest build-test-cuda --output-on-failure -L gpu --no-tests=ignore --timeout 600
fi
echo "switchyard: $passed passed, $failed failed, $skipped skipped"

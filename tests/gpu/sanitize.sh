#!/usr/bin/env bash
# compute-sanitizer over a GPU test binary: the ctest label gpu-sanitize (tests/gpu/sanitize.cmake).
#   sanitize.sh <tool: memcheck|racecheck|initcheck|synccheck> <test binary> [gtest filter]
# Exits 77 -- CTest's SKIP_RETURN_CODE -- with the reason when compute-sanitizer is not found
# ($COMPUTE_SANITIZER, then PATH, then /usr/local/cuda/bin) or no GPU is usable (the binary's
# GpuProbe test skips); otherwise the sanitizer's exit code (1 on any reported error).
set -u
tool="$1"
bin="$2"
filter="${3:-*}"
san="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || true)}"
[ -z "$san" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && san=/usr/local/cuda/bin/compute-sanitizer
if [ -z "$san" ] || [ ! -x "$san" ]; then
  echo "SKIPPED: compute-sanitizer not found (set COMPUTE_SANITIZER or put it on PATH)"
  exit 77
fi
probe="$("$bin" --gtest_filter='GpuProbe.*' 2>&1)"
if ! grep -q '^\[       OK \] GpuProbe' <<<"$probe"; then
  echo "SKIPPED: no usable GPU: $(grep -m1 -o 'no usable CUDA device.*' <<<"$probe")"
  exit 77
fi
echo "$san --tool $tool on $(basename "$bin") --gtest_filter=$filter"
exec "$san" --tool "$tool" --error-exitcode 1 --print-limit 50 "$bin" --gtest_filter="$filter"

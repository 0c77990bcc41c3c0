#!/usr/bin/env bash
# Fails when a C++/CUDA source differs from the checked-in .clang-format style, listing the files.
set -euo pipefail
cd "$(dirname "$0")/.."
# The file list first: a git that fails (no work tree: a tarball) must fail the check, not pass it
# with no file looked at.
files=$(git ls-files -co --exclude-standard -- '*.cpp' '*.h' '*.cu' '*.cuh') ||
  { echo "check_format: git ls-files failed: run it in a git checkout" >&2; exit 1; }
[ -n "$files" ] || { echo "check_format: no C++ or CUDA file found" >&2; exit 1; }
bad=()
while IFS= read -r f; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done <<<"$files"
if ((${#bad[@]})); then
  echo "not clang-formatted (run: clang-format -i <file>):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi

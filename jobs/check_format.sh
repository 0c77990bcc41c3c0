#!/usr/bin/env bash
# Fails when a C++/CUDA source differs from the checked-in .clang-format style, listing the files.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=()
while IFS= read -r f; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files -co --exclude-standard -- '*.cpp' '*.h' '*.cu' '*.cuh')
if ((${#bad[@]})); then
  echo "not clang-formatted (run: clang-format -i <file>):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi

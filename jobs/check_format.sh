#!/usr/bin/env bash
# Fails when a C++/CUDA source differs from the checked-in .clang-format style, listing the files.
#
#   bash jobs/check_format.sh               (no arguments)
#   bash jobs/check_format.sh -h | --help   this text
#
# Exit 0: all formatted; 1: files to reformat (listed); 2: it cannot check (no clang-format, a
# .clang-format it cannot read, no git checkout, a bad argument).
set -euo pipefail
case ${1:-} in
  "") ;;
  -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
  *) echo "check_format.sh: unknown argument '$1': it takes none (see --help)" >&2; exit 2 ;;
esac
# Without it every file failed the check below (exit 127) and was listed as misformatted.
command -v clang-format >/dev/null ||
  { echo "check_format.sh: clang-format not found (bash jobs/deps.sh --test installs it)" >&2; exit 2; }
# The script's real folder, not a symlink's.
cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.."
# The file list first: a git that fails (no work tree: a tarball) must fail the check, not pass it
# with no file looked at.
files=$(git ls-files -co --exclude-standard -- '*.cpp' '*.h' '*.cu' '*.cuh') ||
  { echo "check_format.sh: git ls-files failed: run it in a git checkout" >&2; exit 2; }
[ -n "$files" ] || { echo "check_format.sh: no C++ or CUDA file found" >&2; exit 1; }
bad=()
while IFS= read -r f; do
  [ -e "$f" ] || continue  # tracked but deleted in the work tree: no format to check
  err=$(clang-format --dry-run -Werror "$f" 2>&1 >/dev/null) && continue
  # A formatting difference is reported as -Wclang-format-violations; anything else (a
  # .clang-format it cannot parse, an unreadable file) is no verdict on the file's format.
  if ! grep -q -- '-Wclang-format-violations' <<<"$err"; then
    echo "check_format.sh: clang-format cannot check $f:" >&2
    head -n 5 <<<"$err" | sed 's/^/  /' >&2
    exit 2
  fi
  bad+=("$f")
done <<<"$files"
if ((${#bad[@]})); then
  echo "not clang-formatted (run: clang-format -i <file>):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi

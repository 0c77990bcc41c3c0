#!/usr/bin/env bash
# Exports a checkpoint with `switchyard ckpt export` and loads it with PyPI's safetensors in a
# private venv under the build tree (created once; Debian's numpy and h5py are visible in it).
# Exits 77 (CTest: skipped) with a message when safetensors cannot be installed (no PyPI).
# usage: safetensors_test.sh <switchyard> <step_N.h5> <work-dir>
set -euo pipefail
bin=$1 ckpt=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
venv=$work/ckpt-venv
mkdir -p "$work"
if ! "$venv/bin/python" -c "import safetensors, numpy, h5py" 2>/dev/null; then
  rm -rf "$venv"
  if ! /usr/bin/python3 -m venv --system-site-packages "$venv" ||
     ! "$venv/bin/pip" install -q --disable-pip-version-check safetensors; then
    echo "SKIPPED: could not create a venv with PyPI's safetensors (offline?)" >&2
    rm -rf "$venv"
    exit 77
  fi
fi
out=$work/export.safetensors
rm -f "$out"
"$bin" ckpt export "$ckpt" --output "$out"
"$venv/bin/python" "$here/check_safetensors.py" "$out" "$ckpt"

#!/usr/bin/env bash
# `switchyard bench train` with device: cuda on a machine without a usable GPU (CI), or from a
# build without the CUDA backend: exit 2 and a message that says why, before touching the data
# (the token file named here does not exist).
#   bash tests/bench/bench_train_no_gpu.sh <switchyard> <source dir>
set -uo pipefail
bin=$1 src=$2
out=$("$bin" bench train --config "$src/configs/tiny.yaml" --set device=cuda \
  --set data.path=/nonexistent/tokens.h5 --no-torch 2>&1)
rc=$?
echo "$out"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIPPED: this machine has a GPU"; exit 77
fi
[ "$rc" -eq 2 ] || { echo "FAIL: exit $rc, expected 2"; exit 1; }
grep -Eq "needs a usable CUDA GPU|built without the CUDA backend" <<<"$out" ||
  { echo "FAIL: the message does not say why"; exit 1; }
echo "PASS: exit 2 with the reason"

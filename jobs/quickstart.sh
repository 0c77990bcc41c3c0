#!/usr/bin/env bash
# From a fresh Debian 12 machine: install dependencies, build, make the token file from the
# licence texts every Debian ships (/usr/share/common-licenses), and train configs/small.yaml on
# the CPU. Extra arguments go to `switchyard train` (e.g. --set train.steps=50). Run again, it
# continues the run in runs/small from its newest checkpoint (--resume auto, unless a --resume is
# given), or says it is complete: a run from step 0 would refuse the checkpoints already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
[ -f data/licenses.h5 ] || bash data/make_licenses.sh build/switchyard data/licenses.h5
resume=(--resume auto)
for a in "$@"; do
  case $a in --resume | --resume=*) resume=() ;; esac
done
./build/switchyard train --config configs/small.yaml "${resume[@]}" "$@"

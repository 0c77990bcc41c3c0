#!/usr/bin/env bash
# From a fresh Debian 12 machine: install dependencies, build, make the token file from the
# licence texts every Debian ships (/usr/share/common-licenses), and train configs/small.yaml on
# the CPU. Extra arguments go to `switchyard train` (e.g. --set train.steps=50; a --config of
# yours replaces configs/small.yaml). Run again, it continues the run in runs/small from its
# newest checkpoint (--resume auto, unless a --resume is given), or says it is complete: a run
# from step 0 would refuse the checkpoints already there.
#
#   bash jobs/quickstart.sh [switchyard train arguments ...]
#   bash jobs/quickstart.sh -h | --help   this text (anywhere, before anything is installed or
#                                         built); the trainer's options: build/switchyard train --help
set -euo pipefail
for a in "$@"; do
  case $a in
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
  esac
done
# The script's real folder, not a symlink's.
cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.."
bash jobs/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
[ -f data/licenses.h5 ] || bash data/make_licenses.sh build/switchyard data/licenses.h5
# The default config and --resume auto, each unless the arguments give their own (two of either
# were refused by the trainer: "At Most 1 required but received 2").
config=(--config configs/small.yaml) resume=(--resume auto)
for a in "$@"; do
  case $a in
    -c | --config | --config=*) config=() ;;
    --resume | --resume=*) resume=() ;;
  esac
done
./build/switchyard train "${config[@]}" "${resume[@]}" "$@"

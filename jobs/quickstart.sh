#!/usr/bin/env bash
# From a fresh Debian 12 machine: install dependencies, build, make the token file from the
# licence texts every Debian ships (/usr/share/common-licenses), and train configs/small.yaml on
# the CPU. Extra arguments go to `switchyard train` (e.g. --set train.steps=50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
[ -f data/licenses.h5 ] || bash data/make_licenses.sh build/switchyard data/licenses.h5
./build/switchyard train --config configs/small.yaml "$@"

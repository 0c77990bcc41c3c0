#!/usr/bin/env bash
# Installs switchyard's build and test dependencies from Debian's packages (Debian 12, as root),
# only those that are missing. Sourced by quickstart.sh and test.sh.
set -euo pipefail
SWITCHYARD_DEBS=(build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin       # MPI ranks (parallelism), and what parallel HDF5 is built on
  libhdf5-openmpi-dev              # token files and checkpoints (parallel HDF5)
  libyaml-cpp-dev                  # experiment configs
  libopenblas-dev                  # CPU GEMM
  libucx-dev                       # inter-node all-to-all transport
  libcli11-dev                     # command line
  nlohmann-json3-dev               # metrics.jsonl
  libgtest-dev googletest          # tests (googletest also ships the sources for GPU-only builds)
)
missing=()
for p in "${SWITCHYARD_DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "switchyard: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

#!/usr/bin/env bash
# Installs switchyard's dependencies from Debian's packages (Debian 12, as root), only those that
# are missing. `deps.sh` installs what building and running need; `deps.sh --test` adds what the
# test suite needs on top (a one-machine SLURM cluster, h5py for the checkpoint schema check).
set -euo pipefail
SWITCHYARD_DEBS=(build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin       # MPI ranks (parallelism), and what parallel HDF5 is built on
  libhdf5-openmpi-dev              # token files and checkpoints (parallel HDF5)
  libyaml-cpp-dev                  # experiment configs
  libopenblas-dev                  # CPU GEMM
  libucx-dev                       # inter-node all-to-all transport
  libcli11-dev                     # command line
  libsentencepiece-dev             # data prepare --tokenizer bpe|unigram (SentencePiece models)
  nlohmann-json3-dev               # metrics.jsonl
  gnuplot-nox                      # switchyard plot (PNG charts of a run)
  libmetis-dev                     # switchyard placement (graph partitioning of experts)
  libgtest-dev googletest          # tests (googletest also ships the sources for GPU-only builds)
)
if [ "${1:-}" = "--test" ]; then
  SWITCHYARD_DEBS+=(
    slurm-wlm munge                # the SLURM preemption/requeue test (one-node cluster)
    python3-h5py python3-numpy     # reads checkpoints from Python as a user would
    python3-venv python3-pip       # a private venv for PyPI's safetensors (export check)
    clang-format                   # the formatting check
    sentencepiece                  # spm_encode: the tokenizer test's independent encoder
  )
fi
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

#!/usr/bin/env bash
# Installs switchyard's dependencies from Debian's packages (Debian 12, as root), only those that
# are missing. `deps.sh` installs what building and running need; `deps.sh --test` adds what the
# test suite needs on top (a one-machine SLURM cluster, h5py for the checkpoint schema check).
#
#   bash jobs/deps.sh [--test]
#   bash jobs/deps.sh -h | --help   this text
set -euo pipefail
# Its options: anything else is refused (a typo such as --tests was ignored, and the test
# packages silently not installed).
with_test=0
for a in "$@"; do
  case $a in
    --test) with_test=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "deps.sh: unknown argument '$a' (see --help)" >&2; exit 2 ;;
  esac
done
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
if ((with_test)); then
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

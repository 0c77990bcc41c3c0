#!/usr/bin/env bash
# Packs what the bare GPU machine needs to run switchyard's CUDA build into one archive (issue 14
# item 7). That machine has CUDA 13 (nvcc, cuBLAS, cuRAND, compute-sanitizer), the driver,
# PyTorch and NCCL as the Python wheel nvidia-nccl-cu13, and none of Debian's Open MPI, HDF5,
# yaml-cpp, OpenBLAS or UCX; it cannot install anything and takes at most 64 MiB of files.
#
#   bash jobs/gpu_bundle.sh [--no-build] [--build-dir DIR] [--out FILE] [--max-mib N]
#
# 1. builds the CUDA tree for sm_90 (DIR, default build-bundle; -j$SY_JOBS, default 2) with
#    -ffile-prefix-map, so no source path of this checkout is compiled into a binary (checked
#    below with strings: the GPU machine has another checkout path);
# 2. stages under .device/stage/switchyard-gpu/ (.device/ is git-ignored):
#      bin/      switchyard, the GPU test binaries, Open MPI's orterun/mpirun and orted,
#                host-python (python3 with the machine's own library path, for PyTorch)
#      lib/      every shared library they and the Open MPI and PMIx plugins load that is neither
#                glibc, libstdc++/libgcc_s, the CUDA toolkit's (cudart, cuBLAS, cuRAND), NCCL
#                nor the driver's, found with ldd (49 for the binaries today); lib/ucx: UCX's
#                shared-memory module
#      openmpi/  Open MPI's plugins (lib/openmpi3, less those needing InfiniBand, OFI, PSM or
#                OpenSHMEM libraries), their libmca_common_* (lib), help files (share/openmpi)
#                and Debian's openmpi-mca-params.conf (etc)
#      pmix/     PMIx's plugins and help files (mpirun's process manager)
#      configs/, clusters/h200.yaml, data/licenses.h5, bench/*.py, jobs/gpu_check.sh,
#      jobs/gpu_compare_metrics.py
#      ref/      the CPU run of configs/small.yaml, 100 steps, that gpu_check.sh stage d compares
#                the GPU's losses with (made here with the bundle's own binary)
#      env.sh    OPAL_* / PMIx relocation, OMPI_MCA_ess_singleton_isolated=1 (one rank without
#                mpirun), LD_LIBRARY_PATH = lib + NCCL's wheel + /usr/local/cuda/lib64
#      MANIFEST.txt  commit, build flags, each carried library with its Debian package and size
# 3. packs .device/switchyard-gpu.tar.xz (FILE) and fails when it exceeds --max-mib (default 40),
#    leaving nothing new at FILE: the device call carries it together with the rest of the
#    working tree, 64 MiB in all.
#
# On the GPU machine (jobs/README.md "The GPU machine"): run(carry=[".device/switchyard-gpu.tar.xz"],
#   command="bash jobs/gpu_check.sh --archive .device/switchyard-gpu.tar.xz").
# Rehearsed here, with the system copies of everything carried hidden: jobs/gpu_rehearse.sh.
set -euo pipefail

root=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.." && pwd)  # the real one, not a symlink's
build=$root/build-bundle
out=$root/.device/switchyard-gpu.tar.xz
do_build=1
max_mib=40
# An option's value, or one line and exit 2 (a missing one ended the script with "$2: unbound
# variable", exit 1).
need_value() {  # <option> <its arguments...>
  # (Not the next option: `--out --archive x` made a folder named --archive.)
  [[ -n ${2:-} && $2 != --* ]] || { echo "gpu_bundle.sh: $1 needs a value (see --help)" >&2; exit 2; }
}
while (($#)); do
  case $1 in
    --no-build) do_build=0 ;;
    --build-dir) need_value "$@"; build=$(realpath -m -- "$2"); shift ;;
    --out) need_value "$@"; out=$(realpath -m -- "$2"); shift ;;
    --max-mib)
      need_value "$@"
      [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "gpu_bundle.sh: --max-mib $2: expected a number of MiB" >&2; exit 2; }
      max_mib=$2
      shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "gpu_bundle.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "gpu_bundle: $*"; }
die() { echo "gpu_bundle: error: $*" >&2; exit 1; }

readonly binaries=(switchyard tests/test_gpu_kernels tests/test_gpu_model tests/test_gpu_nccl
                   tests/test_gpu_train tests/test_gpu_sample)
readonly multiarch=/usr/lib/x86_64-linux-gnu
readonly ompi_lib=$multiarch/openmpi/lib   # Debian's Open MPI: libmca_common_*, openmpi3/ plugins
readonly pmix_root=$multiarch/pmix2
# What the GPU machine has: glibc, the C++ runtime, the CUDA toolkit's libraries (from
# /usr/local/cuda/lib64), NCCL (the nvidia-nccl-cu13 wheel) and the driver's.
readonly not_carried='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libcurand|libnccl|libcuda|libnvidia-[a-z-]+)\.so'
# Open MPI plugins left out: their libraries (InfiniBand verbs, libfabric, PSM, netlink,
# OpenSHMEM) serve networks and APIs a one-GPU machine does not have; carrying them would add
# ~10 MB. Open MPI skips a missing component.
readonly plugin_needs_dropped='^(libibverbs|libfabric|libefa|libpsm2|libpsm_infinipath|libinfinipath|librdmacm|libnl-3|libnl-route-3|liboshmem|libmca_common_ofi|libmca_common_verbs)\.so'

# ---- 1. build -------------------------------------------------------------------------------
if ((do_build)); then
  say "configuring $build (CUDA, sm_90, source paths mapped away)"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON \
    -DSWITCHYARD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    "-DCMAKE_CXX_FLAGS=-ffile-prefix-map=$root/=" \
    "-DCMAKE_CUDA_FLAGS=-Xcompiler=-ffile-prefix-map=$root/=" >/dev/null
  say "building (-j${SY_JOBS:-2}; the first CUDA build takes a while on 2 cores)"
  cmake --build "$build" -j"${SY_JOBS:-2}" --target switchyard test_gpu_kernels test_gpu_model \
    test_gpu_nccl test_gpu_train test_gpu_sample
fi
for b in "${binaries[@]}"; do
  [ -x "$build/$b" ] || die "$build/$b is missing (build without --no-build first)"
done

# ---- 2. stage -------------------------------------------------------------------------------
stage_root=$root/.device/stage
B=$stage_root/switchyard-gpu
rm -rf "$stage_root"
mkdir -p "$B"/{bin,lib/ucx,openmpi/lib/openmpi3,openmpi/share,openmpi/etc,pmix/lib/pmix,pmix/share} \
  "$B"/{configs,clusters,data,ref,bench,jobs}

say "binaries"
for b in "${binaries[@]}"; do
  strip --strip-unneeded -o "$B/bin/$(basename "$b")" "$build/$b"
done
# No path of this checkout or its build folder may be baked in (the GPU machine's checkout lives
# elsewhere): tests get configs/ from $SWITCHYARD_SOURCE_DIR at run time.
# (grep reads all of strings' output: `grep -q` would stop at the first match, strings would die
# of SIGPIPE and pipefail would turn the match into "not found".)
baked=""
for f in "$B"/bin/*; do
  hits=$(strings "$f" | grep -F -e "$root" -e "$build" | head -n 2 | tr '\n' ' ') || true
  [ -z "$hits" ] || baked+=" $(basename "$f") ($hits)"
done
[ -z "$baked" ] || die "build-time paths compiled into:$baked"

say "Open MPI and PMIx runtime"
cp -a /usr/bin/orterun /usr/bin/orted "$B/bin/"
ln -s orterun "$B/bin/mpirun"
plugins=()
for p in "$ompi_lib"/openmpi3/*.so; do
  if ldd "$p" | awk '{print $1}' | grep -Eq "$plugin_needs_dropped"; then continue; fi
  cp "$p" "$B/openmpi/lib/openmpi3/"
  plugins+=("$B/openmpi/lib/openmpi3/$(basename "$p")")
done
cp -rL /usr/share/openmpi "$B/openmpi/share/openmpi"
cp -L /etc/openmpi/*.conf /etc/openmpi/openmpi-default-hostfile "$B/openmpi/etc/" 2>/dev/null || true
cp -L "$pmix_root"/lib/pmix/*.so "$B/pmix/lib/pmix/"
cp -rL "$pmix_root"/share/* "$B/pmix/share/"
cp -L "$multiarch"/ucx/libuct_cma.so.0 "$B/lib/ucx/"

# Every library ldd resolves for the binaries and plugins, by the name the loader asks for.
say "libraries (ldd)"
declare -A carried=()
collect() {  # <file>...: adds each dependency that is not on the GPU machine
  local f name path
  for f in "$@"; do
    while read -r name path; do
      [ -n "$path" ] || continue
      [[ $name =~ $not_carried ]] && continue
      [ -z "${carried[$name]:-}" ] || continue
      carried[$name]=$(readlink -f "$path")
    done < <(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
  done
}
roots=("$B"/bin/switchyard "$B"/bin/test_gpu_* "$B"/bin/orterun "$B"/bin/orted "${plugins[@]}"
       "$B"/pmix/lib/pmix/*.so "$B"/lib/ucx/*.so.0)
collect "${roots[@]}"
# The files whose libraries were collected, relative to the bundle (gpu_rehearse.sh reads it).
printf '%s\n' "${roots[@]#"$B"/}" >"$B/ldd-roots.txt"
for name in "${!carried[@]}"; do
  case $name in
    libmca_common_*) dest=$B/openmpi/lib/$name ;;  # Open MPI's own helpers, beside its plugins
    *) dest=$B/lib/$name ;;
  esac
  cp -L "${carried[$name]}" "$dest"
done
# A copied library's own dependencies are in the closure already (ldd lists them all), except
# for what the dropped plugins alone needed.
leftover=$(for f in "$B"/lib/*.so* "$B"/openmpi/lib/*.so*; do
             LD_LIBRARY_PATH=$B/lib:$B/openmpi/lib ldd "$f" | awk '$2 == "=>" {print $1}'
           done | sort -u | grep -Ev "$not_carried" | while read -r n; do
             [ -e "$B/lib/$n" ] || [ -e "$B/openmpi/lib/$n" ] || echo "$n"
           done || true)
[ -z "$leftover" ] || die "libraries needed by carried libraries but not carried: $leftover"

say "configs, data, scripts"
cp "$root"/configs/*.yaml "$B/configs/"
cp "$root"/clusters/h200.yaml "$B/clusters/"  # stage f: the planner beside the measured step
cp "$root"/bench/torch_moe.py "$root"/bench/torch_moe_layer.py "$B/bench/"
cp "$root"/jobs/gpu_check.sh "$root"/jobs/gpu_compare_metrics.py "$B/jobs/"
licences=()  # as data/make_licenses.sh: the texts, not their symlinks
for f in /usr/share/common-licenses/*; do [ -f "$f" ] && [ ! -L "$f" ] && licences+=("$f"); done
"$build/switchyard" data prepare --output "$B/data/licenses.h5" --input "${licences[@]}" >/dev/null

# The CPU reference for stage d: the losses of every step of configs/small.yaml on the CPU. It
# is kept in .device/ref/ and made again only when what it depends on changed: the sources of the
# CPU trainer (everything under kernels/cpu, comm, src, app and cmake but the benchmarks and the
# CUDA backend), the config and the texts (100 steps: seconds on idle cores, many minutes on busy ones).
# Its settings are the ones stage d repeats with device: cuda (gpu_check.sh reads ref/small.args),
# so that every step and evaluation of the GPU run has its twin here.
ref_args=(--set train.steps=100 --set log.every=1 --set eval.every=50 --set checkpoint.every=0)
ref_dir=$root/.device/ref
ref_files=$(cd "$root" && git ls-files -co --exclude-standard kernels/cpu comm src app cmake \
  CMakeLists.txt) || die "git ls-files failed in $root: the CPU reference's key needs the sources"
ref_key=$( (cd "$root" && grep -Ev '^src/bench/|cuda|nccl|gpu_' <<<"$ref_files" | xargs sha256sum
  sha256sum "$root/configs/small.yaml" "${licences[@]}" | cut -d' ' -f1
  echo "${ref_args[*]}") | sha256sum | cut -c1-16)
if [ "$(cat "$ref_dir/key" 2>/dev/null)" = "$ref_key" ] && [ -s "$ref_dir/metrics.jsonl" ]; then
  say "CPU reference run: reusing $ref_dir (same CPU trainer sources, config and texts)"
else
  say "CPU reference run: configs/small.yaml, 100 steps, fp32 (a minute or more on 2 cores)"
  rm -rf "$ref_dir"
  mkdir -p "$ref_dir"
  OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} \
    "$build/switchyard" train --config "$root/configs/small.yaml" \
    --set "data.path=$B/data/licenses.h5" --set "run.out_dir=$ref_dir/run" --set device=cpu \
    --set train.precision=fp32 "${ref_args[@]}" >"$ref_dir/run.log" 2>&1 ||
    die "the CPU reference run failed: $(tail -n 5 "$ref_dir/run.log")"
  cp "$ref_dir/run/metrics.jsonl" "$ref_dir/metrics.jsonl"
  echo "$ref_key" >"$ref_dir/key"
fi
cp "$ref_dir/metrics.jsonl" "$B/ref/small-cpu-fp32.metrics.jsonl"
printf '%s\n' "${ref_args[@]}" >"$B/ref/small.args"

# ---- env.sh and helpers -----------------------------------------------------------------------
echo "$not_carried" >"$B/not-carried.regex"  # what the GPU machine has (gpu_rehearse.sh reads it)
cat >"$B/env.sh" <<'EOF'
# Sourced by jobs/gpu_check.sh (or by hand): the bundle's runtime for switchyard and its tests.
# Open MPI 4.1 and PMIx are relocated to this folder: Debian's layout is not prefix-relative, so
# every directory is named; one rank runs without mpirun or orted (singleton, isolated).
SY_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SY_BUNDLE
export SY_HOST_LD_LIBRARY_PATH=${SY_HOST_LD_LIBRARY_PATH-${LD_LIBRARY_PATH-}}  # for python3 & co
export OPAL_PREFIX=$SY_BUNDLE/openmpi
export OPAL_BINDIR=$SY_BUNDLE/bin
export OPAL_LIBDIR=$SY_BUNDLE/openmpi/lib
export OPAL_PKGLIBDIR=$SY_BUNDLE/openmpi/lib/openmpi3
export OPAL_DATADIR=$SY_BUNDLE/openmpi/share
export OPAL_PKGDATADIR=$SY_BUNDLE/openmpi/share/openmpi
export OPAL_SYSCONFDIR=$SY_BUNDLE/openmpi/etc
export PMIX_PREFIX=$SY_BUNDLE/pmix
export PMIX_MCA_mca_base_component_path=$SY_BUNDLE/pmix/lib/pmix
export OMPI_MCA_ess_singleton_isolated=1
# mpirun looks for ssh or rsh even for one node and stops (exit 243) where neither is there, as
# on the bare GPU machine: no launch agent, the ranks are local children of mpirun.
export OMPI_MCA_plm_rsh_agent=
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
export SWITCHYARD_SOURCE_DIR=$SY_BUNDLE  # configs/ for the GPU trainer tests
# Open MPI's shared-memory transport without cross-process memory attach (CMA can be refused in
# VMs and containers; single copies through the shared segment work everywhere).
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
# NCCL: the nvidia-nccl-cu13 wheel's library folder (bin/nccl-wheel-lib).
SY_NCCL_LIB=${SY_NCCL_LIB:-$("$SY_BUNDLE/bin/nccl-wheel-lib")}
export SY_NCCL_LIB
export LD_LIBRARY_PATH=$SY_BUNDLE/lib:$SY_BUNDLE/openmpi/lib${SY_NCCL_LIB:+:$SY_NCCL_LIB}:/usr/local/cuda/lib64${SY_HOST_LD_LIBRARY_PATH:+:$SY_HOST_LD_LIBRARY_PATH}
export PATH=$SY_BUNDLE/bin:$PATH
EOF
cat >"$B/bin/nccl-wheel-lib" <<'EOF'
#!/usr/bin/env bash
# Prints the folder holding libnccl.so.2 of the nvidia-nccl-cu13 wheel, or nothing: the wheel of
# the machine's Python (SY_PYTHON, run with the host's library path), else the first found in the
# usual Python prefixes. env.sh takes NCCL from it; gpu_rehearse.sh hides the toolkit's copy
# when it finds one.
lib=$(LD_LIBRARY_PATH=${SY_HOST_LD_LIBRARY_PATH-${LD_LIBRARY_PATH-}} timeout 60 "${SY_PYTHON:-python3}" -c \
  'import nvidia.nccl as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null)
if [ -z "$lib" ] || [ ! -e "$lib/libnccl.so.2" ]; then
  lib=""
  for d in /opt/*/.venv/lib/python3*/site-packages/nvidia/nccl/lib \
    /usr/local/lib/python3*/dist-packages/nvidia/nccl/lib /usr/lib/python3/dist-packages/nvidia/nccl/lib; do
    [ -e "$d/libnccl.so.2" ] && { lib=$d; break; }
  done
fi
[ -z "$lib" ] || echo "$lib"
EOF
chmod +x "$B/bin/nccl-wheel-lib"
cat >"$B/bin/host-python" <<'EOF'
#!/usr/bin/env bash
# python3 with the machine's own library path: PyTorch must load its own cuBLAS and NCCL, not
# the bundle's LD_LIBRARY_PATH (gpu_check.sh's `switchyard bench train --python` points here).
export LD_LIBRARY_PATH=${SY_HOST_LD_LIBRARY_PATH-}
[ -n "$LD_LIBRARY_PATH" ] || unset LD_LIBRARY_PATH
exec "${SY_PYTHON:-python3}" "$@"
EOF
chmod +x "$B/bin/host-python"

{
  echo "switchyard GPU bundle (jobs/gpu_bundle.sh)"
  echo "commit: $(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet HEAD -- . ':!.device' || echo ' + uncommitted changes')"
  echo "made: $(date -u '+%F %T') UTC on $(hostname) ($(grep -m1 PRETTY_NAME /etc/os-release | cut -d'"' -f2), glibc $(ldd --version | head -n 1 | awk '{print $NF}'))"
  echo "build: $(grep -E '^CMAKE_CUDA_ARCHITECTURES|^CMAKE_BUILD_TYPE' "$build/CMakeCache.txt" | tr '\n' ' ')"
  echo "nvcc: $(/usr/local/cuda/bin/nvcc --version | tail -n 1)"
  echo
  echo "carried libraries (lib/, openmpi/lib/): name <- source (Debian package) bytes"
  for name in $(printf '%s\n' "${!carried[@]}" | sort); do
    src=${carried[$name]}
    pkg=""
    for q in "$src" "${src/#\/usr\/lib\//\/lib\/}"; do  # merged /usr: dpkg may know either
      [ -n "$pkg" ] || pkg=$(dpkg -S "$q" 2>/dev/null | head -n 1 | cut -d: -f1 || true)
    done
    echo "  $name <- $src (${pkg:-?}) $(stat -c %s "$src")"
  done
  echo
  all_plugins=("$ompi_lib"/openmpi3/*.so)
  echo "Open MPI plugins: ${#plugins[@]} of ${#all_plugins[@]}"
  echo "sizes: $(du -sb "$B"/bin | cut -f1) bytes bin, $(du -sb "$B"/lib | cut -f1) lib, $(du -sb "$B"/openmpi | cut -f1) openmpi, $(du -sb "$B"/pmix | cut -f1) pmix"
} >"$B/MANIFEST.txt"

# ---- 3. pack --------------------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
say "packing $(du -sh "$B" | cut -f1) into $out (xz)"
tar -C "$stage_root" -cf - switchyard-gpu | xz -9 -T"${SY_JOBS:-2}" >"$out.tmp"
# The size before the archive goes into place: one over --max-mib was left at --out after the
# error, for the next device call to carry.
bytes=$(stat -c %s "$out.tmp")
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
if ! awk -v b="$bytes" -v m="$max_mib" 'BEGIN {exit !(b <= m * 1048576)}'; then
  rm -f "$out.tmp"
  die "the archive is $mib MiB, over --max-mib $max_mib: not written to $out (an archive already there is an earlier one)"
fi
mv "$out.tmp" "$out"
say "$out: $mib MiB ($bytes bytes), ${#carried[@]} libraries, ${#plugins[@]} Open MPI plugins"

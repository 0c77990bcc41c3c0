#!/usr/bin/env bash
# Rehearses the GPU machine here, without a GPU (issue 14 item 7): runs the bundle of
# jobs/gpu_bundle.sh with this machine's own copies of everything the bundle carries hidden, so
# whatever works here works on the bare GPU machine (whose glibc is newer: 2.39 vs 2.36).
#
#   sudo bash jobs/gpu_rehearse.sh [--archive .device/switchyard-gpu.tar.xz] [--out DIR]
#
# In a private mount namespace (unshare -m; mount --make-rprivate /) it bind-mounts an empty file
# over the real path of every system library the bundle carries, and of every one its binaries
# and plugins load here that the GPU machine does not have (so a library the bundle misses fails
# here as it would there), over Open MPI's orterun and orted, over ssh and rsh (mpirun must
# need no launch agent there), and over NCCL's library when a
# nvidia-nccl wheel can stand in for it; and an empty folder over Open MPI's, PMIx's and UCX's
# plugin, help and config folders. Then, from the unpacked bundle with its env.sh:
#   1. switchyard without the bundle's library path must fail to start (the hiding works);
#   2. it trains configs/tiny.yaml on the CPU, learning (last loss >= 1 nat below the first);
#   3. 2 ranks through the bundle's mpirun (parallel.ep=2) give the 1-rank losses (1e-5);
#   4. jobs/gpu_check.sh (this checkout's, run as on the GPU machine) runs every stage: a PASSes
#      (ldd), b skips every GPU test with its reason (no test fails), c-f SKIP with theirs (no
#      GPU, no compute-sanitizer, no torch; never FAIL or INCOMPLETE), none hangs, f still gives
#      the planner's prediction (clusters/h200.yaml), results.tar.gz comes back whole (stage d's
#      CPU reference in it, no temporary left); no Open MPI help text or component is missing
#      from any log.
# NCCL: SY_PYTHON=<a python3 with the nvidia-nccl-cu13 wheel> takes it from the wheel, as the GPU
# machine does (python3 -m venv .device/venv && .device/venv/bin/pip install --no-deps
# nvidia-nccl-cu13); otherwise the CUDA toolkit's copy here stands in.
# Exit 0 when all of that holds, 1 otherwise, 77 when it cannot run here (not root, no unshare).
# Needs root: mount namespaces. Outputs (gpu_check's files, the runs' logs) go to --out
# (default .device/rehearse-out): a new or empty folder, or one an earlier rehearsal wrote (it
# leaves the file .gpu_rehearse-out in it); any other folder with files in it is refused (exit 2).
# Of an earlier rehearsal's files only those it writes are removed, never a file of yours.
set -uo pipefail

root=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.." && pwd)  # the real one, not a symlink's
archive=$root/.device/switchyard-gpu.tar.xz
out=$root/.device/rehearse-out
# An option's value, or one line and exit 2 (a missing one failed only the $(realpath ...), and
# the script went on with an empty path).
need_value() {  # <option> <its arguments...>
  # (Not the next option: `--out --archive x` made a folder named --archive.)
  [[ -n ${2:-} && $2 != --* ]] || { echo "gpu_rehearse.sh: $1 needs a value (see --help)" >&2; exit 2; }
}
while (($#)); do
  case $1 in
    --archive) need_value "$@"; archive=$(realpath -m -- "$2"); shift ;;
    --out) need_value "$@"; out=$(realpath -m -- "$2"); shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "gpu_rehearse.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# The output folder: only one of its own, never a folder of someone's files (`rm -f "$out"/*`
# emptied whatever --out named). Its files: the runs' logs here and gpu_check.sh's outputs.
readonly out_marker=.gpu_rehearse-out
readonly out_files=(no-bundle-path.log tiny-1rank.log tiny-2ranks.log gpu_check.stdout summary.txt
                    a.log b.log c.log d.log e.log f.log results.tar.gz .results.tar.gz.part)
if [ -e "$out" ] && [ ! -d "$out" ]; then
  echo "gpu_rehearse.sh: --out $out is not a folder" >&2
  exit 2
fi
# (The default folder is this script's own, also from before the marker.)
if [ -d "$out" ] && [ ! -e "$out/$out_marker" ] && [ "$out" != "$root/.device/rehearse-out" ] &&
  [ -n "$(ls -A "$out")" ]; then
  echo "gpu_rehearse.sh: --out $out has files in it and is not an earlier rehearsal's output (no $out_marker): name a new or empty folder" >&2
  exit 2
fi
if ! { mkdir -p "$out" && : >"$out/$out_marker"; }; then
  echo "gpu_rehearse.sh: cannot write to --out $out" >&2
  exit 2
fi

if [ "${SY_REHEARSE_INSIDE:-}" != 1 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root (mount namespaces)"; exit 77; }
  command -v unshare >/dev/null || { echo "SKIPPED: unshare not found"; exit 77; }
  [ -f "$archive" ] || { echo "FAIL: no bundle at $archive: make it with jobs/gpu_bundle.sh"; exit 1; }
  exec unshare -m env SY_REHEARSE_INSIDE=1 bash "$0" --archive "$archive" --out "$out"
fi

fails=0
check() {  # <what> <0 = holds>
  if [ "$2" = 0 ]; then echo "REHEARSAL ok:   $1"; else echo "REHEARSAL FAIL: $1"; fails=$((fails + 1)); fi
}

mount --make-rprivate / || { echo "FAIL: mount --make-rprivate /"; exit 1; }
tmp=$(mktemp -d /tmp/switchyard-rehearse-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for f in "${out_files[@]}"; do rm -f "${out:?}/$f"; done  # an earlier rehearsal's: only these
tar -C "$tmp" -xJf "$archive" || { echo "FAIL: cannot unpack $archive"; exit 1; }
B=$tmp/switchyard-gpu
: >"$tmp/empty"
mkdir "$tmp/empty-dir"

# ---- hide the system copies ------------------------------------------------------------------
declare -A hide=()
# Every system library the binaries and plugins load here, but what the GPU machine has (glibc,
# the C++ runtime, CUDA, NCCL, the driver: the bundle's not-carried.regex); a library the bundle
# should carry but does not then fails to load, as it would there.
not_carried=$(cat "$B/not-carried.regex")
while read -r name path; do
  [[ $name =~ $not_carried ]] || hide[$(readlink -f "$path")]=1
done < <(while read -r f; do  # the files the bundle collected libraries for
           env -u LD_LIBRARY_PATH ldd "$B/$f" 2>/dev/null
         done <"$B/ldd-roots.txt" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u)
# And the system copy of everything the bundle carries.
search=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-pthread
        /usr/lib/x86_64-linux-gnu/hdf5/openmpi /usr/lib/x86_64-linux-gnu/openmpi/lib
        /usr/lib/x86_64-linux-gnu/pmix2/lib)
for f in "$B"/lib/*.so* "$B"/openmpi/lib/*.so*; do
  name=$(basename "$f")
  for d in "${search[@]}"; do
    [ -e "$d/$name" ] && hide[$(readlink -f "$d/$name")]=1
  done
done
hide[$(readlink -f /usr/bin/orterun)]=1
hide[$(readlink -f /usr/bin/orted)]=1
# No ssh or rsh there either (Debian's openmpi-bin brings ssh here): mpirun must not need one.
for agent in ssh rsh; do
  path=$(command -v "$agent" || true)
  [ -n "$path" ] && hide[$(readlink -f "$path")]=1
done
# NCCL: on the GPU machine only the Python wheel has it. Hide the toolkit's copy when a wheel
# is there to take its place (found as env.sh finds it).
wheel_nccl=$("$B/bin/nccl-wheel-lib")
if [ -n "$wheel_nccl" ]; then
  for f in /usr/local/cuda/lib/libnccl.so* /usr/local/cuda/lib64/libnccl.so*; do
    [ -e "$f" ] && hide[$(readlink -f "$f")]=1
  done
  nccl_note="NCCL from the wheel at $wheel_nccl (the toolkit's copy hidden)"
else
  nccl_note="NCCL from the CUDA toolkit here (no nvidia-nccl wheel importable by python3; the GPU machine's env.sh uses its wheel)"
fi
for f in "${!hide[@]}"; do
  mount --bind "$tmp/empty" "$f" || { echo "FAIL: cannot hide $f"; exit 1; }
done
hidden_dirs=(/usr/lib/x86_64-linux-gnu/openmpi /usr/share/openmpi /etc/openmpi
             /usr/lib/x86_64-linux-gnu/pmix2 /usr/lib/x86_64-linux-gnu/ucx)
for d in "${hidden_dirs[@]}"; do
  [ -d "$d" ] && { mount --bind "$tmp/empty-dir" "$d" || { echo "FAIL: cannot hide $d"; exit 1; }; }
done
echo "rehearsal: hid ${#hide[@]} system files (libraries, orterun, orted, ssh) and ${#hidden_dirs[@]} folders; $nccl_note"

# python3, tar and the other tools of this machine need some of the hidden libraries (libz,
# libexpat, ...): they take the bundle's copies, the same Debian files (on the GPU machine the
# host's own are there).
export SY_HOST_LD_LIBRARY_PATH=$B/lib
# shellcheck source=/dev/null
source "$B/env.sh"

# ---- 1. the hiding works ---------------------------------------------------------------------
env -u LD_LIBRARY_PATH "$B/bin/switchyard" --help >"$out/no-bundle-path.log" 2>&1
rc=$?
check "without the bundle's library path switchyard does not start (exit $rc: $(head -c 120 "$out/no-bundle-path.log" | tr '\n' ' '))" \
  "$( ((rc != 0)) && echo 0 || echo 1)"

# ---- 2. CPU training from the bundle ---------------------------------------------------------
tiny=(train --config "$B/configs/tiny.yaml" --set "data.path=$B/data/licenses.h5" --set log.every=1
      --set checkpoint.every=0)
timeout 300 "$B/bin/switchyard" "${tiny[@]}" --set "run.out_dir=$tmp/tiny1" >"$out/tiny-1rank.log" 2>&1
rc=$?
losses() { python3 -c '
import json, sys
l = [json.loads(x) for x in open(sys.argv[1])]
print(" ".join(repr(j["loss"]) for j in l if "loss" in j))' "$1" 2>/dev/null; }
l1=$(losses "$tmp/tiny1/metrics.jsonl")
read -r first _ <<<"$l1"
last=${l1##* }
learned=$(python3 -c "import sys; print(0 if float(sys.argv[2]) <= float(sys.argv[1]) - 1.0 else 1)" "${first:-nan}" "${last:-nan}" 2>/dev/null || echo 1)
check "configs/tiny.yaml trains on the CPU from the bundle (exit $rc; loss ${first:-?} -> ${last:-?})" \
  "$( ((rc == 0)) && echo "$learned" || echo 1)"

# ---- 3. two ranks through the bundle's mpirun ------------------------------------------------
timeout 300 mpirun -np 2 --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
  "$B/bin/switchyard" "${tiny[@]}" --set parallel.ep=2 --set "run.out_dir=$tmp/tiny2" \
  >"$out/tiny-2ranks.log" 2>&1
rc=$?
l2=$(losses "$tmp/tiny2/metrics.jsonl")
# every step's four losses and the val_loss within 1e-5 of the 1-rank run's (stage d's comparer)
python3 "$B/jobs/gpu_compare_metrics.py" --ref "$tmp/tiny1/metrics.jsonl" \
  --run "$tmp/tiny2/metrics.jsonl" --rtol 1e-5 --label "ep=2 vs 1 rank" >>"$out/tiny-2ranks.log" 2>&1
same=$?
check "mpirun -np 2 (parallel.ep=2) from the bundle trains tiny.yaml with the 1-rank losses (exit $rc, $(wc -w <<<"$l2") steps)" \
  "$( ((rc == 0)) && echo "$same" || echo 1)"

# ---- 4. the GPU machine's script ---------------------------------------------------------------
timeout 900 bash "$root/jobs/gpu_check.sh" --bundle "$B" --out "$out" >"$out/gpu_check.stdout" 2>&1
rc=$?
cat "$out/summary.txt"
stage() { grep -E "^STAGE $1: " "$out/summary.txt" | head -n 1; }
check "gpu_check.sh exits 0 (no stage failed) without a GPU (exit $rc)" "$rc"
check "stage a PASSes: every carried file resolves (ldd)" "$(stage a | grep -q ': PASS ' && echo 0 || echo 1)"
check "stage b SKIPs: no test failed, the GPU ones skipped: $(stage b | cut -c1-90)" \
  "$(stage b | grep -q ': SKIP no GPU: passed [0-9]*, skipped [1-9][0-9]*, failed 0 .*no usable CUDA device' && echo 0 || echo 1)"
# Every skipped test says why: gtest prints "<file>:<line>: Skipped" and then the reason.
skipped=$(grep -cE '^\[  SKIPPED \] [^ ]+ \([0-9]+ ms\)$' "$out/b.log")
reasons=$(grep -A1 ': Skipped$' "$out/b.log" | grep -cvE ': Skipped$|^--$|^ *$')
check "every one of the $skipped skipped GPU tests gives its reason ($reasons reasons)" \
  "$( ((skipped > 0 && skipped == reasons)) && echo 0 || echo 1)"
for s in c d e f; do
  check "stage $s SKIPs with a reason: $(stage $s | cut -c1-150)" \
    "$(stage $s | grep -Eq ": SKIP .{10,}" && echo 0 || echo 1)"
done
# results.tar.gz, made after every stage: whole, with what stage d leaves even without a GPU.
tar_list=$(tar -tzf "$out/results.tar.gz" 2>&1)
check "results.tar.gz comes back with stage d's CPU reference, no temporary archive left" \
  "$([[ $'\n'$tar_list$'\n' == *$'\n'results/small-cpu-fp32.metrics.jsonl$'\n'* ]] &&
     [ ! -e "$out/.results.tar.gz.part" ] && echo 0 || echo 1)"
# The bundle's planner predicted gpu-medium on clusters/h200.yaml (CPU only): stage f's figures.
check "stage f carries the planner's prediction: $(stage f | grep -o 'planner ([^)]*): [^(]*')" \
  "$(stage f | grep -Eq 'planner \(clusters/h200.yaml\): step [0-9.]+ ms, memory [0-9.]+ GiB' && echo 0 || echo 1)"
# Open MPI found its help texts and components (relocated): no "Sorry!" fallback, no load error.
problems=$(grep -lE "Sorry! You were supposed to get help|unable to open mca_|component_repository_open" \
  "$out"/*.log "$out"/gpu_check.stdout 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
check "no missing Open MPI help text or component in any log${problems:+ (in $problems)}" \
  "$([ -z "$problems" ] && echo 0 || echo 1)"

if ((fails)); then echo "REHEARSAL: $fails check(s) failed; logs in $out"; exit 1; fi
echo "REHEARSAL: all checks hold; logs in $out"

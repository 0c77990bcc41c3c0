#!/usr/bin/env bash
# The GPU machine's validation run (issue 14 item 8), from the bundle of jobs/gpu_bundle.sh:
#
#   bash jobs/gpu_check.sh --archive .device/switchyard-gpu.tar.xz [--stages abcdef] [--out DIR]
#   bash jobs/gpu_check.sh --bundle DIR ...          (an unpacked bundle, e.g. in the rehearsal)
#
# Stages, each ending in one verdict line `STAGE <x>: PASS|FAIL|SKIP|INCOMPLETE <why>` (also
# collected in $OUT/summary.txt), so a run cut short still tells what passed. INCOMPLETE: the
# stage's time ran out before it saw all it checks, and nothing it saw was wrong (not a failure);
#   a  nvidia-smi (device, driver, memory), the NCCL library's version, and ldd of every carried
#      binary, library and plugin (nothing "not found", no "error while loading");
#   b  the GPU tests: kernels, model, NCCL at 1 rank and at 2 ranks through the bundle's mpirun
#      (the 2-rank ones skip on one GPU, saying so), then the 1-GPU trainer (GpuResume, the
#      slowest: last, so it cannot starve the NCCL runs); a binary still running at its limit or
#      at the stage's end is a FAIL ("timed out ... in <test>"): the budget is sized for them, and
#      a hang cut by the stage's end must not pass for lack of time (not INCOMPLETE);
#   c  compute-sanitizer memcheck, racecheck and initcheck on the kernel tests (0 errors), each
#      in chunks, most intricate first: the router, layout and MoE-row kernels in fp32, the
#      dense and decode ops in fp32, the bf16 instantiations, the rest; a chunk cut by the tool's
#      time with no error seen makes the stage INCOMPLETE, naming where it was cut and the
#      chunks not started;
#   d  configs/small.yaml with device: cuda, fp32 then bf16, 100 steps, against the CPU run
#      carried in ref/ (jobs/gpu_compare_metrics.py). Runs that differ only in summation order
#      agree to ~1e-8 until a near-tied routing flip (step 10-36 in CPU runs with other BLAS
#      kernels or layouts), then drift apart chaotically: 10-step means up to 7 % apart, val_loss
#      up to 6 % (measured on the CPU, jobs/README.md). So: fp32 steps 1-10 per step within 1e-3
#      (CudaModel's tolerance), later steps by 10-step means (loss and lm_loss 0.15, aux_loss
#      0.25, z_loss 0.4), val_loss 0.1; bf16 steps 1-5 within 3e-2, 10-step means
#      0.15/0.15/0.3/0.5, val_loss within 0.1 of the CPU's and of the GPU fp32 run's (the bf16
#      figures are guesses the first GPU run calibrates: the comparer prints its errors);
#   e  `switchyard bench moe-layer` and bench/torch_moe_layer.py on bench/results/README.md's
#      shapes (bf16 first; fp32 and the other shapes while the stage's time lasts);
#   f  `switchyard bench train --config configs/gpu-medium.yaml` with the PyTorch peer on the GPU,
#      and where a step goes (CUDA events by part); beside it, `switchyard plan`'s step time and
#      memory for the same config on clusters/h200.yaml. A peer cut by its --torch-timeout is
#      noted, not a failure; one that crashed is.
# The stages run in the order a b d e f c (the sanitizers, the slowest, last). Every stage runs
# under `timeout` within its own budget (seconds, SY_BUDGET_<x> overrides; the defaults add up
# to 445 s, so a device call of timeout_s=480 leaves time for a second call on a fresh machine);
# a stage that cannot run here (no GPU, no compute-sanitizer, no torch) reports SKIP with the
# reason, never hangs.
#
# The stages' commands (the torch probe and nvidia-smi too) run under `timeout -k 3` (SIGKILL 3 s
# after SIGTERM), so a command that ignores SIGTERM overruns its stage by 3 s at most.
#
# Output ($OUT, else .device/check-out): summary.txt, a.log ... f.log, results.tar.gz (stage c's
# whole sanitizer reports, stage d's metrics.jsonl files and stage e/f's tables): 8 files. The
# logs are written as the stages run, and results.tar.gz is made again after every stage (under a
# temporary name, then renamed), so a call killed part-way still returns the finished stages'
# results. Exit 0 when no stage failed (INCOMPLETE and SKIP are not failures).
set -uo pipefail

here=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")" && pwd)  # the real one, not a symlink's
archive="" bundle="" stages=abcdef
out=${OUT:-}
# An option's value, or one line and exit 2 (a missing one ended the script with "$2: unbound
# variable", exit 1).
need_value() {  # <option> <its arguments...>
  # (Not the next option: `--out --archive x` made a folder named --archive.)
  [[ -n ${2:-} && $2 != --* ]] || { echo "gpu_check.sh: $1 needs a value (see --help)" >&2; exit 2; }
}
while (($#)); do
  case $1 in
    --archive) need_value "$@"; archive=$2; shift ;;
    --bundle) need_value "$@"; bundle=$2; shift ;;
    --stages) need_value "$@"; stages=$2; shift ;;
    --out) need_value "$@"; out=$2; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# Letters that are no stage ran nothing and passed ("no stage failed", exit 0).
not_stages=$(tr -d abcdef <<<"$stages")
if [ -n "$not_stages" ]; then
  echo "gpu_check.sh: --stages $stages: '$not_stages' is no stage (the stages are a b c d e f, lowercase)" >&2
  exit 2
fi
# The budgets, whole seconds, checked before anything runs (SY_BUDGET_a=abc ended the script
# with "abc: unbound variable" after the summary's first line).
for s in a b c d e f; do
  var=SY_BUDGET_$s
  if [ -n "${!var:-}" ] && ! [[ ${!var} =~ ^(0|[1-9][0-9]{0,5})$ ]]; then  # "08": no octal
    echo "gpu_check.sh: $var='${!var}': expected whole seconds (0 .. 999999)" >&2
    exit 2
  fi
done
[ -n "$out" ] || out=$here/../.device/check-out
mkdir -p "$out" && out=$(cd "$out" && pwd)
summary=$out/summary.txt
: >"$summary"
t_start=$SECONDS

if [ -z "$bundle" ]; then
  [ -n "$archive" ] || archive=$here/../.device/switchyard-gpu.tar.xz
  [ -f "$archive" ] || { echo "gpu_check.sh: no bundle: $archive (make it with jobs/gpu_bundle.sh)" | tee -a "$summary"; exit 2; }
  unpack=${TMPDIR:-/tmp}/switchyard-gpu-check
  rm -rf "$unpack" && mkdir -p "$unpack"
  # tar needs the xz program; Python's lzma module stands in where it is missing.
  tar -C "$unpack" -xJf "$archive" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$unpack" ||
    { echo "gpu_check.sh: cannot unpack $archive" | tee -a "$summary"; exit 2; }
  bundle=$unpack/switchyard-gpu
fi
[ -f "$bundle/env.sh" ] || { echo "gpu_check.sh: $bundle is not a bundle (no env.sh)" | tee -a "$summary"; exit 2; }
# shellcheck source=/dev/null
source "$bundle/env.sh"
B=$SY_BUNDLE
work=${TMPDIR:-/tmp}/switchyard-gpu-work
rm -rf "$work" && mkdir -p "$work/results"

failed=0 incomplete=""
verdict() {  # <stage> PASS|FAIL|SKIP|INCOMPLETE <why...>
  local s=$1 v=$2
  shift 2
  [ "$v" = FAIL ] && failed=1
  [ "$v" = INCOMPLETE ] && incomplete+=" $s"
  echo "STAGE $s: $v $* ($((SECONDS - stage_t0)) s)" | tee -a "$summary"
}
note() { echo "$*" | tee -a "$summary"; }
budget() {  # <stage> <default seconds>
  local var=SY_BUDGET_$1
  echo "${!var:-$2}"
}
left() { echo $((stage_deadline - SECONDS)); }
# run_for <max seconds> <cmd...>: the command under timeout, never past the stage's deadline.
# capped=1 after a call the stage's deadline cut shorter than asked (a 124 then means "out of
# the stage's time", not "this command hangs"); ran_for = the limit it ran under (0: not run).
run_for() {
  local max=$1 l
  shift
  l=$(left)
  capped=0
  ((max > l)) && { max=$l; capped=1; }
  ran_for=$((max > 0 ? max : 0))
  ((max > 0)) || { echo "(no time left in this stage for: $*)"; return 124; }
  timeout -k 3 "$max" "$@"
}
# cut_at_stage_end <rc>: whether the last run_for ended because the stage's time ran out (a
# verdict of INCOMPLETE), not because the command hung past its own limit (a FAIL).
cut_at_stage_end() { (($1 == 124 || $1 == 137)) && ((capped)); }
begin() {  # <stage> <default budget> <title>
  stage_t0=$SECONDS
  stage_deadline=$((SECONDS + $(budget "$1" "$2")))
  log=$out/$1.log
  {
    echo "=== stage $1: $3 (budget $(budget "$1" "$2") s) ==="
    echo "bundle: $B"
    head -n 2 "$B/MANIFEST.txt"
  } >"$log"
}
want() { [[ $stages == *$1* ]]; }
# pack_results: $OUT/results.tar.gz from what the stages so far left in $work/results, written
# whole under a temporary name and renamed, so a call killed at any moment returns the last one.
pack_results() {
  tar -C "$work" -czf "$out/.results.tar.gz.part" results 2>/dev/null &&
    mv -f "$out/.results.tar.gz.part" "$out/results.tar.gz"
  rm -f "$out/.results.tar.gz.part"
}

# GPU present? (the reason is reported by the stages that need one)
gpu_line=""
if command -v nvidia-smi >/dev/null 2>&1 &&
  gpu_line=$(timeout -k 3 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) &&
  [ -n "$gpu_line" ]; then
  have_gpu=1
else
  have_gpu=0
  if command -v nvidia-smi >/dev/null 2>&1; then no_gpu="nvidia-smi: ${gpu_line:-no GPU}"; else no_gpu="nvidia-smi not found"; fi
  no_gpu=$(head -n 1 <<<"$no_gpu")
  gpu_line=""
fi
note "gpu_check: $(head -n 2 "$B/MANIFEST.txt" | tail -n 1); GPU: ${gpu_line:-none ($no_gpu)}; stages $stages"

# ---- a: the machine and the libraries ------------------------------------------------------
# nccl_version: "NCCL <version> (<library>; wheel nvidia-nccl-cu13 <version>)" for the libnccl
# the binaries load (ldd), else the wheel env.sh chose: the library's own ncclGetVersion (no GPU
# needed), else the version string inside it; "unknown" where neither answers, never an error.
nccl_version() {
  local lib v="" wheel
  lib=$(ldd "$B/bin/test_gpu_nccl" "$B/bin/switchyard" 2>/dev/null | awk '$1 ~ /^libnccl/ && $3 ~ /^\// {print $3; exit}')
  [ -n "$lib" ] || lib=${SY_NCCL_LIB:+$SY_NCCL_LIB/libnccl.so.2}
  if [ -n "$lib" ] && [ -e "$lib" ]; then
    v=$(run_for 10 "$B/bin/host-python" -c '
import ctypes, sys
v = ctypes.c_int()
if ctypes.CDLL(sys.argv[1]).ncclGetVersion(ctypes.byref(v)) != 0: sys.exit(1)
v = v.value  # major*10000 + minor*100 + patch since 2.9, major*1000 + minor*100 + patch before
print("%d.%d.%d" % ((v // 10000, v // 100 % 100, v % 100) if v >= 10000 else (v // 1000, v // 100 % 10, v % 100)))
' "$lib" 2>/dev/null)
    [ -n "$v" ] || v=$(run_for 10 grep -aoE -m1 'NCCL version [0-9]+\.[0-9]+\.[0-9]+(\+cuda[0-9.]+)?' "$lib" 2>/dev/null |
      head -n 1 | sed 's/^NCCL version //')
  fi
  wheel=$(run_for 10 "$B/bin/host-python" -c \
    'import importlib.metadata as m; print(m.version("nvidia-nccl-cu13"))' 2>/dev/null)
  echo "NCCL ${v:-version unknown} (${lib:-no libnccl found}; wheel nvidia-nccl-cu13 ${wheel:-not installed})"
}
if want a; then
  begin a 20 "nvidia-smi and ldd"
  {
    echo "--- nvidia-smi"
    if ((have_gpu)); then run_for 15 nvidia-smi; else echo "$no_gpu"; fi
    echo "--- NCCL from: ${SY_NCCL_LIB:-(no nvidia-nccl wheel found by python3)}"
  } >>"$log" 2>&1
  nccl=$(nccl_version)
  echo "$nccl" >>"$log"
  echo "--- ldd" >>"$log"
  n=0 bad=""
  for f in "$B"/bin/switchyard "$B"/bin/test_gpu_* "$B"/bin/orterun "$B"/bin/orted "$B"/lib/*.so* \
    "$B"/lib/ucx/*.so* "$B"/openmpi/lib/*.so* "$B"/openmpi/lib/openmpi3/*.so "$B"/pmix/lib/pmix/*.so; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    r=$(ldd "$f" 2>&1)
    echo "$f" >>"$log"
    printf '    %s\n' "${r//$'\n'/$'\n'    }" >>"$log"
    # "not found" on the machine; "error while loading" (an unreadable copy) in the rehearsal.
    if grep -q -e "not found" -e "error while loading" <<<"$r"; then
      bad+=" $(basename "$f"): $(grep -e "not found" -e "error while loading" <<<"$r" |
        sed -E 's/.*error while loading shared libraries: //; s/^[[:space:]]+//; s/ =>.*//' |
        paste -sd, -);"
    fi
  done
  gpu_note="GPU: ${gpu_line:-none ($no_gpu)}; ${nccl%% (*}"
  if [ -n "$bad" ]; then verdict a FAIL "ldd: unresolved in$bad $gpu_note"
  else verdict a PASS "ldd: all $n binaries, libraries and plugins resolve; $gpu_note"; fi
  pack_results
fi

# ---- b: the GPU tests ------------------------------------------------------------------------
# gtest_counts <log part>: "passed skipped failed" from gtest's summary lines.
gtest_counts() {
  local p s f
  p=$(grep -Eo '^\[  PASSED  \] [0-9]+' "$1" | awk '{s += $NF} END {print s + 0}')
  s=$(grep -Eo '^\[  SKIPPED \] [0-9]+ test' "$1" | awk '{s += $(NF-1)} END {print s + 0}')
  f=$(grep -Eo '^\[  FAILED  \] [0-9]+ test' "$1" | awk '{s += $(NF-1)} END {print s + 0}')
  echo "$p $s $f"
}
# gtest_cut <log part>: where a run cut short was, "in <the test it had started> (<n> tests
# passed before)" (gtest prints its summary only at the end).
gtest_cut() {
  local at n
  at=$(grep -E '^\[ RUN      \]' "$1" | tail -n 1 | awk '{print $NF}')
  n=$(grep -c '^\[       OK \]' "$1")
  echo "in ${at:-?} ($n tests passed before)"
}
# gtest_failed <log part>: the failed tests' names, at most 4, then "..." when there are more.
gtest_failed() {
  grep -E '^\[  FAILED  \] [A-Za-z0-9_/]+\.' "$1" | awk '{sub(/,$/, "", $4); print $4}' | awk '!seen[$0]++' |
    awk 'NR <= 4 {printf "%s%s", (NR > 1 ? ", " : ""), $0} NR == 5 {printf ", ..."}'
}
if want b; then
  begin b 120 "GPU tests"
  export GTEST_COLOR=no OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} SY_TEST_TIMEOUT_S=120
  tp=0 ts=0 tf=0 problems="" reasons=""
  # Each binary's limit, all capped by the stage's deadline (they add up to more than it: the
  # last gets what is left). The NCCL runs, the only multi-process part, come before the slow
  # trainer tests (GpuResume: a dozen 20-step runs with checkpoints) so those cannot starve them.
  for t in "test_gpu_kernels:45" "test_gpu_model:30" "test_gpu_sample:20" "test_gpu_nccl:20" \
    "mpirun2:test_gpu_nccl:30" "test_gpu_train:60"; do
    name=${t%:*} secs=${t##*:}
    part=$work/b-$name.log
    case $name in
      mpirun2:*) bin=${name#mpirun2:}; cmd=(mpirun -np 2 --oversubscribe --bind-to none "$B/bin/$bin") ;;
      *) cmd=("$B/bin/$name") ;;
    esac
    echo "--- ${cmd[*]}" >>"$log"
    run_for "$secs" "${cmd[@]}" >"$part" 2>&1
    rc=$?
    cat "$part" >>"$log"
    read -r p s f < <(gtest_counts "$part")
    tp=$((tp + p)) ts=$((ts + s)) tf=$((tf + f))
    failed_names=$(gtest_failed "$part")
    if ((rc == 124 || rc == 137)); then  # at its own limit or the stage's end: see the header
      problems+=" $name timed out after ${ran_for}s $(gtest_cut "$part")${failed_names:+, failed: $failed_names};"
    elif ((rc != 0)); then problems+=" $name exit $rc${failed_names:+: $failed_names};"
    elif ((p + s + f == 0)); then problems+=" $name ran no test;"; fi
    # The distinct skip reasons of each binary (gtest prints one after each test's "Skipped").
    r=$(grep -A1 ": Skipped$" "$part" | grep -v -e ": Skipped$" -e "^--$" | sed 's/^ *//' |
      sort | uniq -c | sort -rn | head -n 2 | awk '{n = $1; $1 = ""; printf "%s x%d |", $0, n}')
    [ -n "$r" ] && reasons+=" $name:${r% |};"
  done
  counts="passed $tp, skipped $ts, failed $tf"
  if ((tf > 0)) || [ -n "$problems" ]; then verdict b FAIL "$counts;$problems"
  elif ((!have_gpu)); then verdict b SKIP "no GPU: $counts (the passed ones need none):$reasons"
  elif ((tp == 0)); then verdict b SKIP "every test skipped ($counts):$reasons"
  else verdict b PASS "$counts (skips:${reasons:- none})"; fi
  pack_results
fi

# ---- d: small.yaml on the GPU against the CPU run --------------------------------------------
# train_gpu <name> <precision> <seconds>: the CPU reference's command (its settings in
# ref/small.args, written by gpu_bundle.sh) with device: cuda.
train_gpu() {
  local name=$1 prec=$2 secs=$3 ref_args
  mapfile -t ref_args <"$B/ref/small.args"
  echo "--- switchyard train configs/small.yaml device=cuda precision=$prec ${ref_args[*]}" >>"$log"
  run_for "$secs" "$B/bin/switchyard" train --config "$B/configs/small.yaml" \
    --set "data.path=$B/data/licenses.h5" --set "run.out_dir=$work/d-$name" --set device=cuda \
    --set "train.precision=$prec" "${ref_args[@]}" >"$work/d-$name.log" 2>&1
  local rc=$?
  tail -n 25 "$work/d-$name.log" >>"$log"
  return $rc
}
no_gpu_reason() {  # <log>: switchyard's "needs a usable CUDA GPU: ..." line (the trainer's device
  # selection: "local rank R of this node has no usable CUDA GPU: ..."), if that is why it stopped
  grep -m1 -Eo "(needs (a usable CUDA GPU|a CUDA GPU|the CUDA backend)|local rank [0-9]+ of this node has no usable CUDA GPU)[^\"]*" "$1"
}
# The comparer's settings (jobs/gpu_compare_metrics.py --help; the drift they rest on, measured
# between CPU runs that differ only in summation order, in jobs/README.md: the first routing
# flip at step 10-36, then 10-step means apart by up to 7 % (loss), 10 % (aux), 16 % (z) and
# val_loss by up to 6 %). fp32: steps 1-10 per step at CudaModel's 1e-3; after them 10-step
# means and val_loss at about twice that drift: a check that the GPU learns this model as the
# CPU does; the kernels' own precision is stage b's.
cmp_fp32=(--strict-steps 10 --rtol 1e-3 --window 10
          --window-rtol "loss=0.15,lm_loss=0.15,aux_loss=0.25,z_loss=0.4" --ref-val-rtol 0.1)
# bf16 against the CPU's fp32: steps 1-5 at TenStepsMatchCpuBf16's 3e-2, then the fp32 windows
# but wider for the small aux and z terms (a guess: the first GPU run's calibration table sets
# them), and val_loss near the GPU fp32 run's.
cmp_bf16=(--strict-steps 5 --rtol 3e-2 --window 10
          --window-rtol "loss=0.15,lm_loss=0.15,aux_loss=0.3,z_loss=0.5" --ref-val-rtol 0.1)
if want d; then
  begin d 60 "configs/small.yaml on the GPU vs the CPU"
  ref=$B/ref/small-cpu-fp32.metrics.jsonl
  train_gpu fp32 fp32 30
  rc=$?
  if ((rc == 2)) && why=$(no_gpu_reason "$work/d-fp32.log"); then
    verdict d SKIP "switchyard exit 2: $why"
  elif cut_at_stage_end "$rc"; then
    verdict d INCOMPLETE "fp32 run cut at the stage's end after ${ran_for}s (no verdict on it)"
  elif ((rc != 0)); then
    verdict d FAIL "fp32 run exit $rc: $(grep -m1 -iE "error|what" "$work/d-fp32.log" | cut -c1-200)"
  else
    r32=$("$B/bin/host-python" "$B/jobs/gpu_compare_metrics.py" --ref "$ref" \
      --run "$work/d-fp32/metrics.jsonl" "${cmp_fp32[@]}" --label fp32 2>&1)
    ok32=$?
    echo "$r32" >>"$log"
    train_gpu bf16 bf16 30
    rc=$?
    if cut_at_stage_end "$rc"; then
      rbf="bf16 run cut at the stage's end after ${ran_for}s (no verdict on it)"
      okbf=3  # not the comparer's 2 (a missing or unreadable metrics file: a FAIL)
    elif ((rc != 0)); then
      rbf="FAIL bf16: run exit $rc: $(grep -m1 -iE "error|what" "$work/d-bf16.log" | cut -c1-160)"
      okbf=1
    else
      rbf=$("$B/bin/host-python" "$B/jobs/gpu_compare_metrics.py" --ref "$ref" \
        --run "$work/d-bf16/metrics.jsonl" "${cmp_bf16[@]}" --label bf16 \
        --val-ref "$work/d-fp32/metrics.jsonl" --val-rtol 0.1 2>&1)
      okbf=$?
      echo "$rbf" >>"$log"
    fi
    msg="$(echo "$r32" | tail -n 1); $(echo "$rbf" | tail -n 1)"
    if ((ok32 == 0 && okbf == 0)); then verdict d PASS "$msg"
    elif ((ok32 == 0 && okbf == 3)); then verdict d INCOMPLETE "$msg"
    else verdict d FAIL "$msg"; fi
  fi
  for n in fp32 bf16; do
    [ -f "$work/d-$n/metrics.jsonl" ] && cp "$work/d-$n/metrics.jsonl" "$work/results/small-gpu-$n.metrics.jsonl"
  done
  cp "$ref" "$work/results/"
  pack_results
fi

# ---- e: one MoE layer against PyTorch --------------------------------------------------------
# Whether the machine's Python has torch with a GPU (asked once; import and CUDA start are slow:
# up to 90 s, never past the stage's deadline; a probe cut short counts as no torch).
torch_state=""
torch_ok() {
  if [ -z "$torch_state" ]; then
    run_for 90 "$B/bin/host-python" -c \
      'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' >/dev/null 2>&1
    case $? in
      0) torch_state=yes ;;
      124 | 137) torch_state="no (the torch probe was cut after ${ran_for}s$( ((capped)) && echo ", the stage's time left"))" ;;
      *) torch_state="no (host-python cannot import torch or sees no GPU)" ;;
    esac
  fi
  [ "$torch_state" = yes ]
}
if want e; then
  begin e 70 "bench moe-layer vs PyTorch"
  shapes=("--tokens 8192 --d 2048 --ffn 1408 --experts 16 --top-k 2 --precision bf16"
          "--tokens 8192 --d 2048 --ffn 1408 --experts 16 --top-k 2 --precision fp32"
          "--tokens 8192 --d 2048 --ffn 512 --experts 64 --top-k 6 --precision bf16"
          "--tokens 2048 --d 2048 --ffn 1408 --experts 16 --top-k 2 --precision bf16")
  torch_ok
  rows=0 res="" skip_reason="" fail=""
  for shape in "${shapes[@]}"; do
    # A shape takes ~10-20 s with both sides; starting one that the deadline then cuts short
    # would read as a failure.
    (($(left) > 35)) || { res+=" out of time before '$shape';"; break; }
    echo "--- switchyard bench moe-layer $shape" | tee -a "$work/results/moe-layer.txt" >>"$log"
    # shellcheck disable=SC2086
    run_for 20 "$B/bin/switchyard" bench moe-layer $shape >"$work/e-sy.log" 2>&1
    rc=$?
    tee -a "$work/results/moe-layer.txt" <"$work/e-sy.log" >>"$log"
    if ((rc == 2)) && why=$(no_gpu_reason "$work/e-sy.log"); then skip_reason="switchyard exit 2: $why"; break; fi
    ((rc == 124 && capped)) && { res+=" out of time in '$shape';"; break; }
    ((rc == 0)) || { fail+=" bench moe-layer $shape: exit $rc;"; continue; }
    rows=$((rows + 1))
    # impl what ms TFLOP/s vs_dense
    line=$(grep -E "^switchyard-cuda +(layer_fwd_bwd|expert_gemms)" "$work/e-sy.log" |
      awk '{printf "%s %s ms %s TFLOP/s (%s of dense); ", $2, $3, $4, $5}')
    if [ "$torch_state" = yes ]; then
      echo "--- bench/torch_moe_layer.py $shape" | tee -a "$work/results/moe-layer.txt" >>"$log"
      # shellcheck disable=SC2086
      run_for 30 "$B/bin/host-python" "$B/bench/torch_moe_layer.py" $shape >"$work/e-pt.log" 2>&1
      rc=$?
      tee -a "$work/results/moe-layer.txt" <"$work/e-pt.log" >>"$log"
      if ((rc == 124 && capped)); then res+=" PyTorch out of time in '$shape';"
      elif ((rc != 0)); then fail+=" torch_moe_layer.py $shape: exit $rc;"; fi
      line+=$(grep -E "^torch-[a-z]+ +layer_fwd_bwd" "$work/e-pt.log" |
        awk '{printf "%s %s ms; ", $1, $3}')
    fi
    res+=" [$shape] $line"
  done
  if [ -n "$skip_reason" ]; then verdict e SKIP "$skip_reason; PyTorch: $torch_state"
  elif [ -n "$fail" ]; then verdict e FAIL "$fail$res"
  elif ((rows == 0)); then verdict e INCOMPLETE "0 shapes (out of time);$res PyTorch: $torch_state"
  else verdict e PASS "$rows shapes;$res PyTorch: $torch_state"; fi
  pack_results
fi

# ---- f: the GPU training benchmark -----------------------------------------------------------
if want f; then
  begin f 100 "bench train configs/gpu-medium.yaml"
  # The peer gets 50 of the 100 s (--torch-timeout): a slow one is cut and noted, and switchyard's
  # table still prints, instead of the stage's limit killing both.
  args=(bench train --config "$B/configs/gpu-medium.yaml" --set "data.path=$B/data/licenses.h5"
        --steps 8 --warmup 2 --torch-script "$B/bench/torch_moe.py" --torch-timeout 50)
  if torch_ok; then args+=(--python "$B/bin/host-python"); else args+=(--no-torch); fi
  # The planner's prediction for the same config on one H200 (clusters/h200.yaml, CPU only, a
  # second): the first GPU figures are its calibration.
  plan_args=(plan --config "$B/configs/gpu-medium.yaml" --set "data.path=$B/data/licenses.h5"
             --cluster "$B/clusters/h200.yaml" --ranks 1 --this)
  echo "--- switchyard ${plan_args[*]}" >>"$log"
  run_for 10 "$B/bin/switchyard" "${plan_args[@]}" >"$work/f-plan.log" 2>&1
  tee -a "$log" <"$work/f-plan.log" >"$work/results/plan-gpu-medium-h200.txt"
  planned=$(awk '/^  step / {s = $2} /^  memory per rank / {m = $4} END {if (s != "" && m != "") printf "step %s ms, memory %s GiB", s, m}' "$work/f-plan.log")
  planned="planner (clusters/h200.yaml): ${planned:-no prediction, see f.log}"
  echo "--- switchyard ${args[*]}" >>"$log"
  run_for 100 "$B/bin/switchyard" "${args[@]}" >"$work/f.log" 2>&1
  rc=$?
  cat "$work/f.log" >>"$log"
  cp "$work/f.log" "$work/results/bench-train-gpu-medium.txt"
  val() { grep -m1 -E "^$1 " "$work/f.log" | sed -E "s#^$1 +##"; }  # <row name regex>
  if ((rc == 2)) && why=$(no_gpu_reason "$work/f.log"); then verdict f SKIP "switchyard exit 2: $why; $planned"
  elif cut_at_stage_end "$rc"; then
    verdict f INCOMPLETE "cut at the stage's end after ${ran_for}s; $planned"
  elif ((rc != 0)); then verdict f FAIL "exit $rc: $(grep -m1 -iE "error|what" "$work/f.log" | cut -c1-200)"
  else
    peer=$(grep -m1 "^PyTorch peer: " "$work/f.log")
    # The largest part of a step: the first row under the "where a GPU step goes" header.
    top=$(awk '/^# where a GPU step goes/ {f = 1; getline; next} f && NF {print; exit}' "$work/f.log" |
      sed -E 's/ +/ /g')
    msg="tokens/s $(val "tokens/s"), MFU $(val "MFU \(dense bf16 peak\)"), step $(val "step time, median \(ms\)") ms, peak GPU memory $(val "peak GPU memory \(GiB\)") GiB ($planned), vs PyTorch $(val "switchyard / PyTorch") (${peer:-no PyTorch peer line}); largest part of a step: ${top:-none measured}"
    # With torch on the machine the comparison is part of the stage's result, unless the peer
    # ran out of its --torch-timeout ("PyTorch peer: timed out after 50 s (--torch-timeout)",
    # src/bench/train_bench.cpp): then switchyard's figures stand alone. A peer that failed
    # ("failed: exit code N", unreadable output) or did not run is a FAIL.
    if ! torch_ok || [ -n "$(val "switchyard / PyTorch")" ]; then verdict f PASS "$msg"
    elif [[ $peer == "PyTorch peer: timed out"* ]]; then verdict f PASS "PyTorch peer timed out: $msg"
    else verdict f FAIL "$msg"; fi
  fi
  pack_results
fi

# ---- c: compute-sanitizer --------------------------------------------------------------------
# Each tool runs test_gpu_kernels in chunks, most intricate kernels first, so that a tool cut by
# its time (the sanitizers slow kernels 10-100x: each is expected to be cut) has seen those:
#   router  the router, the capacity layout and the MoE rows in fp32 (warp-level top-k, group-
#           limited selection, block scans: where review found the lse never stored);
#   dense   the dense and decode ops in fp32, GradNorm and CurandPhilox;
#   bf16    the bf16 instantiations of the typed suites (*/1);
#   rest    what the chunks above leave of the tool's set (GpuProbe, Poison, CudaError today).
# Never HugeShapes (9 GB buffers) or the DeviceBuffer ordering tests (1 GiB memsets): too big for
# the shadow memory and too slow under it (tests/gpu/sanitize.cmake). memcheck and initcheck take
# all the other tests (cuBLAS's workspace and cub's sort scratch are ours and zeroed); racecheck
# only those of the kernels with shared memory (block reductions, scans), sanitize.cmake's set.
san_skip="HugeShapes.*:DeviceBuffer.*"
san_router="RouterTies.*:RouterVariantsTies.*:RouterLse.*:Shapes/Router.*:Cases/MoeLayout.*"
san_router+=":Shapes/RouterLossShapes.*:Rules/RouterVariants.*:Shapes/RouterSigmoidAux.*"
san_router+=":MoeRows/0.*:PlanRows.*"
san_race_all="*DenseOps*:*Router*:*MoeRows*:*MoeLayout*:GradNorm*:PlanRows*"
san_chunks() {  # <tool>: its chunks in the order they run, one "<name> <gtest filter>" a line
  local dense bf16 all
  if [ "$1" = racecheck ]; then
    dense="DenseOps/0.*:GradNorm.*" bf16="DenseOps/1.*:MoeRows/1.*" all=$san_race_all
  else
    dense="DenseOps/0.*:DecodeOps/0.*:DecodeOpsChecks.*:GradNorm.*:CurandPhilox.*"
    bf16="*/1.*-$san_skip" all="*"
  fi
  printf '%s\n' "router $san_router" "dense $dense" "bf16 $bf16" \
    "rest $all-$san_router:$dense:${bf16%%-*}:$san_skip"
}
if want c; then
  begin c 75 "compute-sanitizer on the kernel tests"
  san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if ((!have_gpu)); then verdict c SKIP "no GPU ($no_gpu)"
  elif [ ! -x "$san" ]; then verdict c SKIP "compute-sanitizer not found"
  else
    res="" bad=0 cut=0 refused="" c_budget=$(budget c 75)
    min_chunk=5  # a chunk after a tool's first starts only with this many seconds of its share left
    tool_end=-1
    for t in memcheck:30 racecheck:20 initcheck:20; do
      tool=${t%%:*} secs=${t#*:}
      mapfile -t chunks < <(san_chunks "$tool")
      report=$work/results/c-$tool.log  # the whole report travels in results.tar.gz
      : >"$report"
      # Each tool's share of the stage's budget (SY_BUDGET_c scales them); a tool done early
      # leaves the rest of its share to the next. The shares count from the first chunk, the clock
      # read just before it: SECONDS counts whole seconds, so a second that ticked during the
      # set-up or a fork in between took a whole second from a share -- all of a 1 s one (a flaky
      # test at SY_BUDGET_c=3).
      ((tool_end >= 0)) || tool_end=$SECONDS
      tool_end=$((tool_end + secs * c_budget / 75))
      tres="" not_started="" stop=0 first=1
      for ch in "${chunks[@]}"; do
        cname=${ch%% *} filter=${ch#* }
        l=$((tool_end - SECONDS))
        if ((stop || l <= 0 || (!first && l < min_chunk))); then not_started+=", $cname"; stop=1; continue; fi
        first=0
        part=$work/c-$tool-$cname.log
        echo "--- $tool $cname, --gtest_filter=$filter" | tee -a "$report" >>"$log"
        run_for "$l" "$san" --tool "$tool" --error-exitcode 99 "$B/bin/test_gpu_kernels" \
          "--gtest_filter=$filter" >"$part" 2>&1
        rc=$?
        tail -n 40 "$part" >>"$log"
        cat "$part" >>"$report"
        errs=$(grep -Eo 'ERROR SUMMARY: [0-9]+' "$part" | tail -n 1 | awk '{print $NF}')
        read -r p s f < <(gtest_counts "$part")
        failed_names=$(gtest_failed "$part")
        # A sanitizer cut by its time is no finding: the chunk is cut (the rest not started),
        # unless it had reported an error or a test had failed before the cut.
        if ((rc == 124 || rc == 137)); then  # what it saw before the cut, and where it was
          seen=$(grep -cE '^========= (Invalid|Uninitialized|Error|Program hit)' "$part")
          tres+=", $cname timed out after ${ran_for}s $(gtest_cut "$part"), $seen errors reported${failed_names:+, failed: $failed_names}"
          if ((seen > 0)) || [ -n "$failed_names" ]; then bad=1; else cut=1; fi
          stop=1
        elif ! grep -q '^\[       OK \]' "$part" && refused=$(grep -m1 -i "device not supported" "$part"); then
          # The sanitizer cannot attach to this device (seen on some virtualised machines): the
          # other chunks and tools would say the same.
          res+=" $tool: $(sed -E 's/^=+ *//' <<<"$refused" | cut -c1-100);"
          break 2
        elif [ -z "$errs" ]; then
          tres+=", $cname no summary (exit $rc: $(grep -m1 -i error "$part" | cut -c1-100))"; bad=1
        elif ((errs > 0 || rc != 0)); then
          tres+=", $cname $errs errors (exit $rc${failed_names:+, failed: $failed_names})"; bad=1
        elif ((p + s + f == 0)); then  # a filter that matches nothing checks nothing
          if [ "$cname" = rest ]; then tres+=", rest none left"
          else tres+=", $cname ran no test (its filter matches none)"; bad=1; fi
        else tres+=", $cname 0 errors ($p tests)"; fi
      done
      ((stop)) && cut=1
      if [ -z "$tres" ]; then res+=" $tool: not run (no time left);"
      else res+=" $tool: ${tres#, }${not_started:+; not started: ${not_started#, }};"; fi
    done
    if ((bad)); then verdict c FAIL "$res"
    elif [ -n "$refused" ]; then verdict c SKIP "compute-sanitizer refused the device:$res"
    elif ((cut)); then verdict c INCOMPLETE "out of time, no error seen:$res"
    else verdict c PASS "$res"; fi
  fi
  pack_results
fi

# ---- results ---------------------------------------------------------------------------------
pack_results
for f in "$out"/*.log; do  # at most 8 MiB a file comes back whole
  [ -e "$f" ] || continue  # no stage ran: no log (the pattern itself is no file)
  [ "$(stat -c %s "$f")" -le 8388608 ] || { tail -c 8388608 "$f" >"$f.tmp" && mv "$f.tmp" "$f"; }
done
note "gpu_check: done in $((SECONDS - t_start)) s; $( ((failed)) && echo "some stage FAILED" || echo "no stage failed")${incomplete:+; INCOMPLETE (out of time):$incomplete}; files in $out"
exit "$failed"

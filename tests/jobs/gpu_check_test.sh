#!/usr/bin/env bash
# jobs/gpu_check.sh's verdicts (issue 14 item 8) on a stand-in bundle: stub switchyard and test
# binaries that behave as the real ones do without a GPU (gtest SKIPPED lines, exit 2 with
# "needs a usable CUDA GPU", the trainer with "local rank 0 of this node has no usable CUDA
# GPU"), a stub nvidia-smi that finds no driver, and a library whose dependency is missing.
# Checks:
#   1. without a GPU every stage ends in a verdict line, a PASS (ldd) and b-f SKIP with their
#      reasons, exit 0, at most 8 files written; stage a names the NCCL version (unknown here);
#   2. a failing test (typed-test names too), an unresolved library and a trainer error are FAILs
#      (exit 1); stage b runs the NCCL binaries before the trainer tests;
#   3. a hanging test binary is cut at the stage's budget (FAIL "timed out"), not waited for;
#   4. on a (stand-in) GPU machine where everything works every stage PASSes with its figures
#      (stage a with the NCCL library's version, stage f with the planner's step time and memory
#      beside the measured ones); stage d PASSes GPU runs that drift from the CPU's after their
#      strict steps as summation order makes them, and FAILs one whose window mean moves;
#   5. stage c runs each sanitizer in chunks in priority order (router/layout/MoE rows in fp32,
#      dense/decode in fp32, bf16, the rest), with their gtest filters; a chunk whose filter
#      matches no test is a FAIL; a compute-sanitizer error is a FAIL, in the second chunk too,
#      and the tool's whole report (all chunks) comes back in results.tar.gz; a chunk cut at the
#      tool's time names the test it was in, what it saw before and the chunks not started: a
#      FAIL when that was an error, else INCOMPLETE (exit 0); a tool done early leaves its time
#      to the next; a sanitizer that refuses the device is a SKIP; a run killed in stage c still
#      leaves the earlier stages' results.tar.gz;
#   6. with PyTorch on the machine, stage f FAILs when the comparison with it is missing or the
#      peer crashed, PASSes noting a peer cut by its --torch-timeout, a PyTorch run that stage
#      e's own deadline cuts short is "out of time", not a FAIL, and a torch probe slower than
#      the stage's time is cut at it.
#
#   bash tests/jobs/gpu_check_test.sh <source dir>
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
tmp=$(mktemp -d /tmp/switchyard-gpu-check-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
B=$tmp/bundle
mkdir -p "$B"/{bin,lib,openmpi/lib/openmpi3,pmix/lib/pmix,jobs,ref,configs,data,bench} "$tmp/path"
cp "$src/jobs/gpu_check.sh" "$src/jobs/gpu_compare_metrics.py" "$B/jobs/"
printf 'stand-in bundle\ncommit: test\n' >"$B/MANIFEST.txt"
cat >"$B/env.sh" <<'EOF'
SY_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SY_BUNDLE SY_HOST_LD_LIBRARY_PATH=${LD_LIBRARY_PATH-}
export PATH=$SY_BUNDLE/bin:$PATH
EOF
cat >"$B/bin/switchyard" <<'EOF'
#!/usr/bin/env bash
if [ "$1" = plan ]; then  # the planner needs no GPU
  printf 'layout dp=1 tp=1 ep=1 etp=1 mb=64 on 1 ranks (1 node(s) of 1)\n  step 213.61 ms, 613615 tokens/s\n'
  printf '  memory per rank 64.68 GiB of 131.32 GiB\n'
  exit 0
fi
if [ -n "${FAKE_GPU:-}" ]; then  # a GPU machine where everything works
  case "$1 $2" in
    "bench moe-layer")
      sleep "${FAKE_BENCH_SLEEP:-0}"
      echo "# impl                  what                          ms   TFLOP/s    vs_dense"
      echo "switchyard-cuda         layer_fwd_bwd              1.000     400.0       0.700" ;;
    "bench train")
      printf '%-28s %14s\n' "step time, median (ms)" 436.9 "tokens/s" 300000 "MFU (dense bf16 peak)" "30.1 %" \
        "peak GPU memory (GiB)" "65.00"
      case ${FAKE_PEER:-} in  # as src/bench/train_bench.cpp reports the peer
        timeout) echo "PyTorch peer: timed out after 50 s (--torch-timeout)" ;;
        crash) echo "PyTorch peer: failed: exit code 1" ;;
        *) echo "PyTorch peer: skipped (--no-torch)" ;;
      esac
      printf '\n# where a GPU step goes: CUDA events\n%-28s %10s %8s\n' part ms share
      printf '%-28s %10.2f %7.1f%%\n' "MoE expert GEMMs" 300 60 "attention core" 200 40 ;;
    *)  # train (after FAKE_TRAIN_SLEEP seconds): the CPU reference's losses, as a GPU run that
      # matches it would log; with
      # FAKE_DRIFT=<after step>:<relative>[:<bias>] each loss is off by +-relative (alternating
      # steps) after that step, plus bias (relative, every step) after it
      sleep "${FAKE_TRAIN_SLEEP:-0}"
      for a in "$@"; do case $a in run.out_dir=*) out=${a#*=} ;; esac; done
      mkdir -p "$out" && python3 -c '
import json, sys
start, rel, bias = (list(map(float, sys.argv[2].split(":"))) + [0.0, 0.0])[:3]
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "loss" in j and j["step"] > start:
        f = 1 + bias + (rel if j["step"] % 2 else -rel)
        for k in ("loss", "lm_loss", "aux_loss", "z_loss"):
            j[k] *= f
    print(json.dumps(j))' "$SY_BUNDLE/ref/small-cpu-fp32.metrics.jsonl" "${FAKE_DRIFT:-1e9}" >"$out/metrics.jsonl" ;;
  esac
  exit 0
fi
if [ -n "${FAKE_TRAIN_ERROR:-}" ] && [ "$1" = train ]; then
  echo "switchyard: error: rank 0: CUDA error 700 (an illegal memory access)" >&2; exit 1
fi
case "$1 $2" in
  "bench moe-layer") echo "error: bench moe-layer needs a CUDA GPU, and none is usable here: cudaGetDeviceCount: stub" >&2 ;;
  train\ *) echo "error: device: cuda: local rank 0 of this node has no usable CUDA GPU: cudaGetDeviceCount: stub" >&2 ;;
  *) echo "error: device: cuda needs a usable CUDA GPU: cudaGetDeviceCount: stub" >&2 ;;
esac
exit 2
EOF
cat >"$B/bin/test_gpu_stub" <<'EOF'
#!/usr/bin/env bash
if [ -n "${FAKE_HANG:-}" ]; then  # one test passes, the next hangs
  printf '[ RUN      ] Gpu.A\n[       OK ] Gpu.A (1 ms)\n[ RUN      ] Gpu.Slow\n'
  sleep 100
fi
if [ -n "${FAKE_GPU:-}" ]; then echo "[  PASSED  ] 2 tests."; exit 0; fi
name=$(basename "$0")
echo "[==========] Running 2 tests from 1 test suite."
for t in A B; do
  echo "[ RUN      ] Gpu.$t"
  echo "tests/gpu/$name.cpp:10: Skipped"
  echo "no usable CUDA device (cudaGetDeviceCount: stub)"
  echo "[  SKIPPED ] Gpu.$t (0 ms)"
done
if [ -n "${FAKE_FAIL:-}" ] && [ "$name" = test_gpu_model ]; then
  echo "[ RUN      ] Shapes/Gpu.Fails/2"
  echo "tests/gpu/$name.cpp:20: Failure"
  echo "[  FAILED  ] Shapes/Gpu.Fails/2, where GetParam() = 2 (3 ms)"
  echo "[ RUN      ] DenseOps/1.Matmul"
  echo "[  FAILED  ] DenseOps/1.Matmul, where TypeParam = __nv_bfloat16 (2 ms)"
  echo "[  PASSED  ] 0 tests."
  echo "[  SKIPPED ] 2 tests, listed below:"
  echo "[  FAILED  ] 2 tests, listed below:"
  echo "[  FAILED  ] Shapes/Gpu.Fails/2, where GetParam() = 2"
  echo "[  FAILED  ] DenseOps/1.Matmul, where TypeParam = __nv_bfloat16"
  exit 1
fi
echo "[  PASSED  ] 0 tests."
echo "[  SKIPPED ] 2 tests, listed below:"
EOF
for t in test_gpu_kernels test_gpu_model test_gpu_sample test_gpu_train test_gpu_nccl; do
  cp "$B/bin/test_gpu_stub" "$B/bin/$t"
done
rm "$B/bin/test_gpu_stub"
cat >"$B/bin/mpirun" <<'EOF'
#!/usr/bin/env bash
exec "${@: -1}"
EOF
cat >"$B/bin/host-python" <<'EOF'
#!/usr/bin/env bash
if [ -n "${FAKE_TORCH:-}" ]; then  # torch with a GPU: the probe succeeds (slow: hangs), the layer
  # bench hangs
  [ "$1" = -c ] && [[ $2 == *torch* ]] && { [ "$FAKE_TORCH" = slow ] && sleep 100; exit 0; }
  case $1 in *torch_moe_layer.py) sleep 100 ;; esac
fi
exec python3 "$@"
EOF
cat >"$tmp/path/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
[ -n "${FAKE_GPU:-}" ] && { echo "NVIDIA H200, 580.159.03, 143771 MiB"; exit 0; }
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
exit 9
EOF
cat >"$tmp/path/compute-sanitizer" <<'EOF'
#!/usr/bin/env bash
# Appends "<tool> <gtest filter>" to $FAKE_SAN_LOG, then runs as a clean chunk would: one test of
# the suite its filter names first passes. FAKE_SAN_*_IN=<start of a filter> picks the chunks.
tool="" filter=""
while (($#)); do case $1 in --tool) tool=$2; shift ;; --gtest_filter=*) filter=${1#*=} ;; esac; shift; done
[ -n "${FAKE_SAN_LOG:-}" ] && echo "$tool $filter" >>"$FAKE_SAN_LOG"
chunk_is() { [ -n "$1" ] && [[ $filter == "$1"* ]]; }
suite=${filter%%.*}
if [ -n "${FAKE_SAN_HANG:-}" ] || chunk_is "${FAKE_SAN_HANG_IN:-}"; then  # one test passes, one error
  # (not when clean or in FAKE_SAN_HANG_IN's chunk), the next hangs
  printf '[ RUN      ] %s.A\n[       OK ] %s.A (5 ms)\n[ RUN      ] %s.B\n' "$suite" "$suite" "$suite"
  [ "${FAKE_SAN_HANG:-clean}" = clean ] || printf '========= Invalid __global__ read of size 4 bytes\n=========     at k()\n'
  sleep 100
fi
if [ -n "${FAKE_SAN_REFUSE:-}" ]; then  # as on a machine whose device the sanitizer cannot use
  printf '========= Error: Device not supported\n[ RUN      ] Gpu.A\ntests/gpu/x.cpp:1: Failure\nCUDA error 999\n'
  printf '[  FAILED  ] Gpu.A (1 ms)\n========= ERROR SUMMARY: 1 error\n'
  exit 99
fi
errors=${FAKE_SAN_ERRORS:-0}
chunk_is "${FAKE_SAN_ERRORS_IN:-}" && errors=2
if chunk_is "${FAKE_SAN_EMPTY_IN:-}"; then echo "[  PASSED  ] 0 tests."  # the filter matches no test
else printf '[ RUN      ] %s.A\n[       OK ] %s.A (5 ms)\n[  PASSED  ] 1 test.\n' "$suite" "$suite"; fi
echo "========= ERROR SUMMARY: $errors errors"
[ "$errors" = 0 ] || exit 99
EOF
chmod +x "$B"/bin/* "$tmp/path/nvidia-smi" "$tmp/path/compute-sanitizer"
# A CPU reference of 40 steps (stage d's strict steps and then windows) and two evaluations.
python3 -c '
import json, math
for s in range(1, 41):
    loss = 3 + 2 * math.exp(-s / 20)
    print(json.dumps({"step": s, "loss": loss, "lm_loss": 0.98 * loss, "aux_loss": 0.015 * loss,
                      "z_loss": 0.005 * loss}))
    if s % 20 == 0:
        print(json.dumps({"step": s, "val_loss": 0.9 * loss}))' >"$B/ref/small-cpu-fp32.metrics.jsonl"
printf '%s\n' --set train.steps=40 --set log.every=1 >"$B/ref/small.args"
# A real shared library, for ldd, and one whose dependency is gone.
echo 'int sy_stub(void) { return 1; }' >"$tmp/stub.c"
gcc -shared -fPIC -o "$B/lib/libsystub.so" "$tmp/stub.c" || { echo "FAIL: no C compiler"; exit 1; }
gcc -shared -fPIC -o "$tmp/libsymissing.so" "$tmp/stub.c"
echo 'int sy_stub(void); int sy_uses(void) { return sy_stub(); }' >"$tmp/uses.c"
gcc -shared -fPIC -o "$tmp/libsybroken.so" "$tmp/uses.c" -Wl,--no-as-needed -L"$tmp" -lsymissing
rm "$tmp/libsymissing.so"
# A stand-in NCCL that answers ncclGetVersion as NCCL 2.28.9 does.
mkdir -p "$tmp/nccl"
echo 'int ncclGetVersion(int *v) { *v = 22809; return 0; }' >"$tmp/nccl.c"
gcc -shared -fPIC -o "$tmp/nccl/libnccl.so.2" "$tmp/nccl.c"

# fails, fail, has
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fails=0  # the failed checks, counted by fail (lib.sh)
run_check() {  # <out dir> <env...> [--stages x]: gpu_check.sh on the stand-in bundle; sets rc, sum
  local o=$1 envs=() more=()
  shift
  while (($#)); do
    case $1 in --*) more=("$@"); break ;; *) envs+=("$1") ;; esac
    shift
  done
  env PATH="$tmp/path:/usr/bin:/bin" TMPDIR="$tmp" "${envs[@]}" \
    timeout 120 bash "$src/jobs/gpu_check.sh" --bundle "$B" --out "$o" "${more[@]}" >"$o.stdout" 2>&1
  rc=$?
  sum=$(cat "$o/summary.txt" 2>/dev/null)
}
line() { grep -E "^STAGE $1: " <<<"$sum"; }
# Whether archive $1 lists the file $2. Not `tar -t | grep -q`: grep quits at the first match,
# tar's next name then dies of SIGPIPE, and pipefail fails the check (seen under load).
in_archive() { [[ $'\n'$(tar -tzf "$1")$'\n' == *$'\n'"$2"$'\n'* ]]; }

# 1. no GPU: every stage says why it skipped.
run_check "$tmp/out1"
((rc == 0)) || fail "no GPU: exit $rc: $sum"
line a | grep -q ": PASS ldd: all .* resolve; GPU: none (nvidia-smi: NVIDIA-SMI has failed" || fail "no GPU: a: $(line a)"
line b | grep -q ": SKIP no GPU: passed 0, skipped 12, failed 0 (the passed ones need none): test_gpu_kernels: no usable CUDA device (cudaGetDeviceCount: stub) x2;" ||
  fail "no GPU: b: $(line b)"
line c | grep -q ": SKIP no GPU" || fail "no GPU: c: $(line c)"
line d | grep -q ": SKIP switchyard exit 2: local rank 0 of this node has no usable CUDA GPU: cudaGetDeviceCount: stub" ||
  fail "no GPU: d: $(line d)"
line f | grep -q ": SKIP switchyard exit 2: needs a usable CUDA GPU: cudaGetDeviceCount: stub; planner (clusters/h200.yaml): step 213.61 ms, memory 64.68 GiB (" || fail "no GPU: f: $(line f)"
line e | grep -q ": SKIP switchyard exit 2: needs a CUDA GPU.*PyTorch: no" || fail "no GPU: e: $(line e)"
grep -q "^NCCL version unknown (no libnccl found; wheel nvidia-nccl-cu13 " "$tmp/out1/a.log" ||
  fail "no GPU: a.log names no NCCL: $(grep -m1 ^NCCL "$tmp/out1/a.log")"
n=$(find "$tmp/out1" -type f | wc -l)
((n <= 8)) || fail "no GPU: $n files written, more than 8"

# 2. failures are FAILs.
cp "$tmp/libsybroken.so" "$B/lib/"
run_check "$tmp/out2" FAKE_FAIL=1 FAKE_TRAIN_ERROR=1
((rc == 1)) || fail "failures: exit $rc"
line a | grep -q ": FAIL ldd: unresolved in libsybroken.so: libsymissing.so; GPU: none" || fail "failures: a: $(line a)"
line b | grep -q ": FAIL passed 0, skipped 12, failed 2; test_gpu_model exit 1: Shapes/Gpu.Fails/2, DenseOps/1.Matmul;" ||
  fail "failures: b: $(line b)"
# the NCCL binaries (1 rank, then mpirun's 2) before the trainer tests, which could starve them
order=$(grep -E '^--- ' "$tmp/out2/b.log" | sed -E 's#.*/##' | paste -sd' ' -)
[ "$order" = "test_gpu_kernels test_gpu_model test_gpu_sample test_gpu_nccl test_gpu_nccl test_gpu_train" ] ||
  fail "failures: b's order: $order"
line d | grep -q ": FAIL fp32 run exit 1: switchyard: error: rank 0: CUDA error 700" || fail "failures: d: $(line d)"
rm "$B/lib/libsybroken.so"

# 3. a hang is cut at the stage's budget.
start=$SECONDS
run_check "$tmp/out3" FAKE_HANG=1 SY_BUDGET_b=4
((SECONDS - start < 60)) || fail "hang: took $((SECONDS - start)) s"
line b | grep -q ": FAIL .*test_gpu_kernels timed out after [0-9]s in Gpu.Slow (1 tests passed before);" ||
  fail "hang: b: $(line b)"
((rc == 1)) || fail "hang: exit $rc"

# 4. a GPU machine where everything works: every stage PASSes, naming its figures.
run_check "$tmp/out4" FAKE_GPU=1 SY_NCCL_LIB="$tmp/nccl"
((rc == 0)) || fail "GPU: exit $rc: $sum"
line a | grep -q ": PASS ldd: .*GPU: NVIDIA H200, 580.159.03, 143771 MiB; NCCL 2.28.9 (" || fail "GPU: a: $(line a)"
line b | grep -q ": PASS passed 12, skipped 0, failed 0" || fail "GPU: b: $(line b)"
clean="router 0 errors (1 tests), dense 0 errors (1 tests), bf16 0 errors (1 tests), rest 0 errors (1 tests)"
line c | grep -qF ": PASS  memcheck: $clean; racecheck: $clean; initcheck: $clean;" || fail "GPU: c: $(line c)"
line d | grep -q ": PASS PASS fp32: 40 steps; 1-10 x 4 losses within rtol 0.001 (worst 0.0e+00); 3 windows of 10 steps within loss 0.15, lm_loss 0.15, aux_loss 0.25, z_loss 0.4 (.*); val_loss within 0.1 (worst 0.0e+00); PASS bf16: 40 steps; 1-5 x 4 losses within rtol 0.03 (worst 0.0e+00); 4 windows of 10 steps within loss 0.15, lm_loss 0.15, aux_loss 0.3, z_loss 0.5 (.*); val_loss within 0.1 (worst 0.0e+00), val_loss within 0.1 of --val-ref (worst 0.0e+00)" ||
  fail "GPU: d: $(line d)"
line e | grep -q ": PASS 4 shapes; \[--tokens 8192 .* --precision bf16\] layer_fwd_bwd 1.000 ms 400.0 TFLOP/s (0.700 of dense); " ||
  fail "GPU: e: $(line e)"
line f | grep -q ": PASS tokens/s 300000, MFU 30.1 %, step 436.9 ms, peak GPU memory 65.00 GiB (planner (clusters/h200.yaml): step 213.61 ms, memory 64.68 GiB), vs PyTorch  (PyTorch peer: skipped (--no-torch)); largest part of a step: MoE expert GEMMs 300.00 60.0%" ||
  fail "GPU: f: $(line f)"
in_archive "$tmp/out4/results.tar.gz" results/small-gpu-bf16.metrics.jsonl || fail "GPU: no metrics in results.tar.gz"
n=$(find "$tmp/out4" -type f | wc -l)
((n <= 8)) || fail "GPU: $n files written, more than 8"

# 4b. Stage d: GPU runs that drift from the CPU's after step 10 by +-10 % a step (alternating, as
# runs that differ in summation order do) pass; a 20 % shift of the means after step 10 fails.
run_check "$tmp/out4b" FAKE_GPU=1 FAKE_DRIFT=10:0.1 --stages d
line d | grep -q ": PASS PASS fp32: 40 steps; .*PASS bf16: 40 steps;" || fail "GPU drift: d: $(line d)"
run_check "$tmp/out4c" FAKE_GPU=1 FAKE_DRIFT=10:0.03:0.2 --stages d
line d | grep -q ": FAIL FAIL fp32: .*loss mean over steps 11-20: .* (rel. error 2.0[0-9]e-01 > 0.15)" ||
  fail "GPU shifted: d: $(line d)"
((rc == 1)) || fail "GPU shifted: exit $rc"

# 4d. A GPU run cut by the stage's end (not by its own 30 s) is INCOMPLETE: no verdict on it.
run_check "$tmp/out4d" FAKE_GPU=1 FAKE_TRAIN_SLEEP=100 SY_BUDGET_d=3 --stages d
line d | grep -q ": INCOMPLETE fp32 run cut at the stage's end after [0-9]*s (no verdict on it)" ||
  fail "GPU cut: d: $(line d)"
((rc == 0)) || fail "GPU cut: exit $rc"

# 5. Stage c runs each tool in chunks, most intricate kernels first: the router, layout and
# MoE-row kernels in fp32, the dense and decode ops in fp32 (with GradNorm, CurandPhilox), the
# bf16 instantiations, then what is left of the tool's set; racecheck only the suites with shared
# memory; never HugeShapes or DeviceBuffer. A chunk whose filter matches no test is no check.
router="RouterTies.*:RouterVariantsTies.*:RouterLse.*:Shapes/Router.*:Cases/MoeLayout.*:Shapes/RouterLossShapes.*:Rules/RouterVariants.*:Shapes/RouterSigmoidAux.*:MoeRows/0.*:PlanRows.*"
dense="DenseOps/0.*:DecodeOps/0.*:DecodeOpsChecks.*:GradNorm.*:CurandPhilox.*"
skip="HugeShapes.*:DeviceBuffer.*"
race="*DenseOps*:*Router*:*MoeRows*:*MoeLayout*:GradNorm*:PlanRows*"
all_tools=("router $router" "dense $dense" "bf16 */1.*-$skip" "rest *-$router:$dense:*/1.*:$skip")
racecheck=("router $router" "dense DenseOps/0.*:GradNorm.*" "bf16 DenseOps/1.*:MoeRows/1.*"
           "rest $race-$router:DenseOps/0.*:GradNorm.*:DenseOps/1.*:MoeRows/1.*:$skip")
want_order=$(for t in memcheck racecheck initcheck; do
  if [ $t = racecheck ]; then printf "$t %s\n" "${racecheck[@]#* }"; else printf "$t %s\n" "${all_tools[@]#* }"; fi
done)
run_check "$tmp/out5o" FAKE_GPU=1 FAKE_SAN_LOG="$tmp/san5o.log" FAKE_SAN_EMPTY_IN="$race-" --stages c
[ "$(cat "$tmp/san5o.log")" = "$want_order" ] ||
  fail "sanitizer chunks: ran $(cat "$tmp/san5o.log"), not in the order $want_order"
line c | grep -qF ": PASS  memcheck: $clean; racecheck: router 0 errors (1 tests), dense 0 errors (1 tests), bf16 0 errors (1 tests), rest none left; initcheck: $clean;" ||
  fail "sanitizer chunks: c: $(line c)"
((rc == 0)) || fail "sanitizer chunks: exit $rc"
grep -q -- "^--- racecheck bf16, --gtest_filter=DenseOps/1.\*:MoeRows/1.\*$" "$tmp/out5o/c.log" ||
  fail "sanitizer chunks: c.log names no chunk's filter"
run_check "$tmp/out5n" FAKE_GPU=1 FAKE_SAN_EMPTY_IN="RouterTies" --stages c
line c | grep -qF ": FAIL  memcheck: router ran no test (its filter matches none), dense 0 errors (1 tests)," ||
  fail "sanitizer empty chunk: c: $(line c)"
((rc == 1)) || fail "sanitizer empty chunk: exit $rc"

# 5a. A sanitizer error is a FAIL, and the tool's whole report (all its chunks) comes back in
# results.tar.gz; an error in the second chunk fails the stage, the chunks after it still run.
run_check "$tmp/out5" FAKE_GPU=1 FAKE_SAN_ERRORS=3 --stages c
line c | grep -q ": FAIL  memcheck: router 3 errors (exit 99), dense 3 errors (exit 99)," || fail "sanitizer: c: $(line c)"
((rc == 1)) || fail "sanitizer: exit $rc"
in_archive "$tmp/out5/results.tar.gz" results/c-memcheck.log ||
  fail "sanitizer: the report is not in results.tar.gz"
tar -xzf "$tmp/out5/results.tar.gz" -C "$tmp/out5" results/c-initcheck.log
[ "$(grep -c "ERROR SUMMARY: 3 errors" "$tmp/out5/results/c-initcheck.log" 2>/dev/null)" = 4 ] ||
  fail "sanitizer: c-initcheck.log holds not all 4 chunks' reports"
run_check "$tmp/out5s" FAKE_GPU=1 FAKE_SAN_ERRORS_IN="DenseOps/0" --stages c
line c | grep -qF ": FAIL  memcheck: router 0 errors (1 tests), dense 2 errors (exit 99), bf16 0 errors (1 tests), rest 0 errors (1 tests); racecheck: router 0 errors (1 tests), dense 2 errors (exit 99)," ||
  fail "sanitizer error in chunk 2: c: $(line c)"
((rc == 1)) || fail "sanitizer error in chunk 2: exit $rc"

# 5b. A sanitizer run cut at its time says how far it got, and which chunks it never started.
run_check "$tmp/out5b" FAKE_GPU=1 FAKE_SAN_HANG=1 SY_BUDGET_c=3 --stages c
# (SY_BUDGET_c=3 of the default 75 gives memcheck 30 * 3 / 75 = 1 s, racecheck and initcheck 0.)
line c | grep -qF ": FAIL  memcheck: router timed out after 1s in RouterTies.B (1 tests passed before), 1 errors reported; not started: dense, bf16, rest; racecheck: not run (no time left); initcheck: not run (no time left);" ||
  fail "sanitizer hang: c: $(line c)"
((rc == 1)) || fail "sanitizer hang: exit $rc"

# 5c. ... but a cut one that reported no error is INCOMPLETE, no failure: it found nothing yet.
run_check "$tmp/out5c" FAKE_GPU=1 FAKE_SAN_HANG=clean SY_BUDGET_c=3 --stages c
line c | grep -qF ": INCOMPLETE out of time, no error seen: memcheck: router timed out after 1s in RouterTies.B (1 tests passed before), 0 errors reported; not started: dense, bf16, rest; racecheck: not run (no time left); initcheck: not run" ||
  fail "sanitizer cut: c: $(line c)"
((rc == 0)) || fail "sanitizer cut: exit $rc"
grep -q "no stage failed; INCOMPLETE (out of time): c;" <<<"$sum" || fail "sanitizer cut: summary: $sum"

# 5c2. SY_BUDGET_c=15: memcheck 6 s, racecheck 4, initcheck 4; a tool done early leaves the rest
# of its time to the next. memcheck's chunks are done at once, racecheck's bf16 chunk hangs and
# gets racecheck's 4 s and what memcheck left (5-10 s: without that it would not start, a chunk
# after a tool's first needs 5 s left); initcheck then has ~4 s: its first chunk only.
# INCOMPLETE, naming the chunks not started.
run_check "$tmp/out5h" FAKE_GPU=1 FAKE_SAN_HANG_IN="DenseOps/1" FAKE_SAN_LOG="$tmp/san5h.log" SY_BUDGET_c=15 --stages c
line c | grep -qE ": INCOMPLETE out of time, no error seen: memcheck: router 0 errors \(1 tests\), dense 0 errors \(1 tests\), bf16 0 errors \(1 tests\), rest 0 errors \(1 tests\); racecheck: router 0 errors \(1 tests\), dense 0 errors \(1 tests\), bf16 timed out after ([5-9]|10)s in DenseOps/1.B \(1 tests passed before\), 0 errors reported; not started: rest; initcheck: router 0 errors \(1 tests\); not started: dense, bf16, rest; \(" ||
  fail "sanitizer cut in chunk 3: c: $(line c)"
((rc == 0)) || fail "sanitizer cut in chunk 3: exit $rc"
[ "$(cut -d' ' -f1 "$tmp/san5h.log" | uniq -c | awk '{print $1 $2}' | paste -sd' ')" = "4memcheck 3racecheck 1initcheck" ] ||
  fail "sanitizer cut in chunk 3: ran $(cat "$tmp/san5h.log")"

# 5d. A sanitizer that cannot use the device is a SKIP, and the other tools are not tried.
run_check "$tmp/out5d" FAKE_GPU=1 FAKE_SAN_REFUSE=1 --stages c
line c | grep -q ": SKIP compute-sanitizer refused the device: memcheck: Error: Device not supported; (" ||
  fail "sanitizer refused: c: $(line c)"
((rc == 0)) || fail "sanitizer refused: exit $rc"

# 5e. A call killed during stage c (the device tool's limit) still returns stage d's results,
# whole (results.tar.gz is made after every stage, under a temporary name, then renamed).
mkdir -p "$tmp/out5e"
env PATH="$tmp/path:/usr/bin:/bin" TMPDIR="$tmp" FAKE_GPU=1 FAKE_SAN_HANG=clean SY_BUDGET_c=10 \
  setsid bash "$src/jobs/gpu_check.sh" --bundle "$B" --out "$tmp/out5e" --stages dc >"$tmp/out5e.stdout" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q -- "^--- memcheck" "$tmp/out5e/c.log" 2>/dev/null && break; sleep 0.3; done
kill -KILL -- -"$pid"
wait "$pid" 2>/dev/null
in_archive "$tmp/out5e/results.tar.gz" results/small-gpu-fp32.metrics.jsonl ||
  fail "killed: no stage d metrics in results.tar.gz ($(find "$tmp/out5e" -type f -printf "%f " ))"
[ ! -e "$tmp/out5e/.results.tar.gz.part" ] || fail "killed: a partial results archive is left"

# 6. PyTorch there: f without the comparison is a FAIL; e's PyTorch run, cut short by the stage's
# deadline (38 s: one shape starts with more than 35 s left, switchyard takes 12 of them, so
# PyTorch gets the remaining ~25 instead of its 30), is out of time. Each side has 2 s or more to
# spare: SECONDS counts whole seconds, and the torch probe before the first shape may cross one
# (with a budget of 36, a probe that did left 35 and no shape started: a flake under load).
run_check "$tmp/out6" FAKE_GPU=1 FAKE_TORCH=1 FAKE_BENCH_SLEEP=12 SY_BUDGET_e=38 --stages ef
line f | grep -q ": FAIL tokens/s 300000" || fail "PyTorch: f: $(line f)"
line e | grep -q ": PASS 1 shapes;.* PyTorch out of time in '--tokens 8192" || fail "PyTorch: e: $(line e)"
# A peer cut by its own --torch-timeout leaves switchyard's figures standing; a crashed one fails.
run_check "$tmp/out6b" FAKE_GPU=1 FAKE_TORCH=1 FAKE_PEER=timeout --stages f
line f | grep -q ": PASS PyTorch peer timed out: tokens/s 300000.*(PyTorch peer: timed out after 50 s" ||
  fail "PyTorch timeout: f: $(line f)"
run_check "$tmp/out6c" FAKE_GPU=1 FAKE_TORCH=1 FAKE_PEER=crash --stages f
line f | grep -q ": FAIL tokens/s 300000.*(PyTorch peer: failed: exit code 1)" || fail "PyTorch crash: f: $(line f)"
# A torch probe that hangs is cut at the stage's deadline, not after its own 90 s.
start=$SECONDS
run_check "$tmp/out6d" FAKE_GPU=1 FAKE_TORCH=slow SY_BUDGET_e=3 --stages e
((SECONDS - start < 30)) || fail "slow torch: took $((SECONDS - start)) s"
line e | grep -q ": INCOMPLETE 0 shapes (out of time); out of time before .* PyTorch: no (the torch probe was cut after [0-9]*s, the stage's time left)" ||
  fail "slow torch: e: $(line e)"

if ((fails)); then echo "$fails check(s) failed"; exit 1; fi
echo "PASS: gpu_check.sh passes a working GPU machine, skips with reasons without a GPU, fails failures, cuts hangs at the budget (a cut sanitizer: INCOMPLETE), keeps results when killed"

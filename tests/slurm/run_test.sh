#!/usr/bin/env bash
# The SLURM preemption test (issue 5 item 6): a one-node cluster on localhost, jobs/train.sbatch
# submitted with 4 tasks, SIGUSR1 sent mid-run (`scancel --signal=USR1`, what `--signal=USR1@<s>`
# does before a time limit), the job requeues itself, resumes and finishes.
#
#   run_test.sh mechanics <source-dir>
#       with tests/slurm/fake_switchyard.sh as the trainer: the cluster, the job script's signal
#       and requeue handling, and the resume all work (no dependence on the real trainer).
#   run_test.sh train <source-dir> <switchyard>
#       the real trainer on configs/tiny.yaml: the requeued run finishes with the same loss, bit
#       for bit, as an uninterrupted run of the same job script. Skips (77) while
#       `switchyard train --help` does not list --resume.
#
# Exit: 0 pass, 1 fail, 77 skipped (not root, SLURM/munge not installed, no --resume yet).
# Everything lives in a temp dir (SY_KEEP_TMP=1 keeps it); the daemons are stopped on exit.
set -uo pipefail
mode=${1:?mode}
src=$(cd "${2:?source dir}" && pwd)
bin=${3:-}
here=$src/tests/slurm

skip() { echo "SKIPPED: $*"; exit 77; }
fail() {
  echo "FAIL: $*"
  [ -n "${tmp:-}" ] && for f in "$tmp"/job-*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }; done
  [ -n "${tmp:-}" ] && cluster_log_tail "$tmp/cluster"
  exit 1
}

[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd launches the job's tasks)"
for c in munged mungekey slurmctld slurmd sbatch scontrol squeue scancel sinfo srun; do
  command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || skip "$c not installed (apt-get install slurm-wlm munge)"
done
PATH=$PATH:/usr/sbin
case $mode in
  mechanics) trainer=$here/fake_switchyard.sh ;;
  train)
    [ -x "$bin" ] || fail "switchyard binary '$bin' not found"
    trainer=$bin ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac

# shellcheck source=cluster.sh
source "$here/cluster.sh"
tmp=$(mktemp -d /tmp/switchyard-slurm-XXXXXX)
chmod 755 "$tmp"
cleanup() {
  if [ -n "${SLURM_CONF:-}" ]; then
    # shellcheck disable=SC2046  # one job id per word
    scancel --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  cluster_stop
  [ "${SY_KEEP_TMP:-0}" = 1 ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

cluster_start "$tmp/cluster" || fail "the cluster did not start"
echo "cluster up ($(sinfo -h -o '%P %D %t %c'))"

# wait_for <seconds> <what> <command...>: polls the command every 0.2 s.
wait_for() {
  local limit=$1 what=$2
  shift 2
  for _ in $(seq $((limit * 5))); do "$@" && return 0; sleep 0.2; done
  fail "timed out after ${limit}s waiting for $what"
}
job_field() { scontrol show job "$1" -o 2>/dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }
job_state_is() { [ "$(job_field "$1" JobState)" = "$2" ]; }
job_restarted() { [ "$(job_field "$1" Restarts)" = "$2" ]; }
has_line() { grep -qE "$1" "$2" 2>/dev/null; }  # has_line <regex> <file>
metrics_step_at_least() {  # <metrics.jsonl> <n>: a train line of step >= n was logged
  local last
  last=$(grep -o '"step": *[0-9]*' "$1" 2>/dev/null | grep -o '[0-9]*$' | sort -n | tail -n 1)
  [ -n "$last" ] && ((last >= $2))
}
job_done() { case $(job_field "$1" JobState) in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) return 0 ;; esac; return 1; }

# submit <name> <train args...>: jobs/train.sbatch as a user submits it; prints the job id.
submit() {
  local name=$1
  shift
  sbatch --parsable --job-name="$name" --chdir="$src" --output="$tmp/job-$name.out" \
    --export="ALL,SY_BIN=$trainer,SY_ROOT=$src" "$src/jobs/train.sbatch" \
    --config "$src/configs/tiny.yaml" "$@"
}

# release <id>: lets a requeued job start now instead of after SLURM's ~2 minute hold. Not
# sooner than 2 s after the requeue: slurmd refuses a job credential created in the same second
# as the old run's revocation ("Job credential revoked"), which SLURM's hold normally avoids.
release() {
  local id=$1
  job_state_is "$id" PENDING || return 0
  sleep 2
  scontrol update jobid="$id" StartTime=now 2>/dev/null || true
}

# Lets a requeued job start and waits until it runs again.
release_and_wait_running() {
  local id=$1
  for _ in $(seq 600); do
    job_state_is "$id" RUNNING && return 0
    release "$id"
    sleep 0.2
  done
  fail "job $id did not run again within 120s (state $(job_field "$id" JobState))"
}

# Same, then waits for the job to finish.
release_and_wait() {
  local id=$1 limit=$2
  for _ in $(seq $((limit * 5))); do
    job_done "$id" && return 0
    release "$id"
    sleep 0.2
  done
  fail "job $id did not finish within ${limit}s (state $(job_field "$id" JobState))"
}

# preempt <id> <scancel flags> <restarts after> <progress-check...>: waits for progress, signals
# the job with `scancel <flags> <id>`, waits for the job to requeue itself.
preempt() {
  local id=$1 flags=$2 restarts=$3
  shift 3
  wait_for 120 "job $id to make progress" "$@"
  echo "preempting job $id: scancel $flags"
  # shellcheck disable=SC2086
  scancel $flags "$id" || fail "scancel $flags failed"
  wait_for 120 "job $id to requeue" job_restarted "$id" "$restarts"
}

check_job_ok() {  # <id> <name> <number of requeues>
  local id=$1 name=$2
  [ "$(job_field "$id" JobState)" = COMPLETED ] || fail "job $id ended $(job_field "$id" JobState)"
  [ "$(job_field "$id" ExitCode)" = 0:0 ] || fail "job $id exit code $(job_field "$id" ExitCode)"
  grep -q "requeueing job $id" "$tmp/job-$name.out" || fail "the job script did not requeue"
  grep -q "job $id start 2 " "$tmp/job-$name.out" || fail "no second start in the job log"
  [ "$(grep -c "requeueing job $id" "$tmp/job-$name.out")" = "$3" ] || fail "expected $3 requeues"
}

if [ "$mode" = mechanics ]; then
  run=$tmp/run
  id=$(submit mech --set "run.out_dir=$run" --set train.steps=40) || fail "sbatch failed"
  echo "submitted job $id"
  # SIGUSR1 to the tasks (what --signal=USR1@<s> sends before the time limit) ...
  preempt "$id" --signal=USR1 1 has_line "^step 5$" "$run/steps.log"
  release_and_wait_running "$id"
  # ... then SIGUSR1 to the batch shell only (--signal=B:USR1@<s>): the script passes it on.
  preempt "$id" "--batch --signal=USR1" 2 has_line "^step 2[0-9]$" "$run/steps.log"
  release_and_wait "$id" 120
  check_job_ok "$id" mech 2
  [ "$(cat "$run/done" 2>/dev/null)" = "final 40" ] || fail "the resumed run did not finish (done: $(cat "$run/done" 2>/dev/null))"
  resumed=$(grep -o "^resumed at step [0-9]*" "$run/steps.log" | grep -o "[0-9]*$" | tr '\n' ' ')
  [ "$(echo $resumed | wc -w)" = 2 ] || fail "expected two resumes, got '$resumed'"
  # Steps 1..40 exactly once across the three runs: nothing lost, nothing repeated.
  expected=$(seq 1 40 | sed 's/^/step /')
  got=$(grep "^step " "$run/steps.log")
  [ "$got" = "$expected" ] || fail "steps not 1..40 exactly once: $(echo $got | tr '\n' ' ')"
  echo "PASS: job $id was preempted twice (SIGUSR1 to the tasks, then to the batch shell), requeued itself, resumed at steps $resumed and finished step 40"

  # A plain `scancel` cancels for good: the trainer checkpoints, the script does not requeue.
  run=$tmp/cancel
  id=$(submit cancel --set "run.out_dir=$run" --set train.steps=400) || fail "sbatch failed"
  wait_for 120 "job $id to make progress" has_line "^step 3$" "$run/steps.log"
  scancel "$id" || fail "scancel failed"
  wait_for 120 "job $id to end" job_done "$id"
  sleep 3  # a requeue by the script would show by now
  [ "$(job_field "$id" JobState)" = CANCELLED ] || fail "cancelled job $id is $(job_field "$id" JobState)"
  [ "$(job_field "$id" Restarts)" = 0 ] || fail "cancelled job $id was requeued"
  [ -s "$run/checkpoint" ] || fail "the cancelled run wrote no checkpoint"
  has_line "job $id is ending .*not requeued" "$tmp/job-cancel.out" || fail "the job log does not say it was not requeued"
  echo "PASS: scancel ended job $id after its checkpoint (step $(cat "$run/checkpoint")), not requeued"

  # A preemption under PreemptMode=REQUEUE (a job of the higher partition needs the node): SLURM
  # requeues the job itself; the script says so and does not try a second requeue.
  run=$tmp/preempted
  id=$(submit preempted --set "run.out_dir=$run" --set train.steps=40) || fail "sbatch failed"
  wait_for 120 "job $id to make progress" has_line "^step 3$" "$run/steps.log"
  sbatch --parsable -p high -n 8 --output=/dev/null --wrap "sleep 1" >/dev/null ||
    fail "sbatch of the preempting job failed"
  wait_for 120 "job $id to be requeued by SLURM" job_restarted "$id" 1
  release_and_wait "$id" 120
  [ "$(job_field "$id" JobState)" = COMPLETED ] || fail "preempted job $id ended $(job_field "$id" JobState)"
  has_line "SLURM requeued job $id itself" "$tmp/job-preempted.out" ||
    fail "the job log does not say SLURM requeued it"
  ! has_line "requeue failed" "$tmp/job-preempted.out" || fail "the script tried a second requeue"
  got=$(grep "^step " "$run/steps.log")
  [ "$got" = "$(seq 1 40 | sed 's/^/step /')" ] || fail "steps not 1..40 exactly once: $(echo $got | tr '\n' ' ')"
  echo "PASS: job $id was preempted by a higher partition, requeued by SLURM, resumed and finished step 40"

  # A start stopped before training (a --time shorter than start-up plus the warning margin):
  # requeued once, and after a second such start in a row the job ends (exit 1), not requeued
  # again (75 for it requeued without end).
  run=$tmp/early
  id=$(FAKE_START_S=600 submit early --set "run.out_dir=$run" --set train.steps=40) || fail "sbatch failed"
  started_times() { [ "$(grep -c . "$run/started" 2>/dev/null)" -ge "$1" ]; }
  wait_for 120 "job $id's trainer to start" started_times 1
  preempt "$id" --signal=USR1 1 true
  has_line "stopped before training started, nothing written; requeueing job $id" "$tmp/job-early.out" ||
    fail "the first early stop was not requeued as one"
  release_and_wait_running "$id"
  wait_for 120 "job $id's trainer to start again" started_times 2
  scancel --signal=USR1 "$id" || fail "scancel failed"
  wait_for 120 "job $id to end" job_done "$id"
  sleep 3
  [ "$(job_field "$id" JobState)" = FAILED ] || fail "job $id is $(job_field "$id" JobState), expected FAILED"
  [ "$(job_field "$id" Restarts)" = 1 ] || fail "job $id was requeued $(job_field "$id" Restarts) times"
  has_line "before training, as the start before it was .*not requeued" "$tmp/job-early.out" ||
    fail "the job log does not say why it was not requeued"
  echo "PASS: job $id, stopped twice before training, was requeued once and then ended"

  # A stop as the tasks start, before their handlers are in (a time-limit warning or a preemption
  # landing on a requeued job's start): it killed the tasks, exit 138, the job not requeued (QA).
  # The script holds it until the step is SY_START_HOLD_S old; the tasks then stop as they
  # should (76 here: before training) and the job is requeued.
  run=$tmp/starting
  id=$(FAKE_NO_HANDLER_S=1 FAKE_START_S=600 submit starting --set "run.out_dir=$run" \
    --set train.steps=40) || fail "sbatch failed"
  wait_for 120 "job $id's step to start" has_line "job $id start 1 at" "$tmp/job-starting.out"
  scancel --batch --signal=USR1 "$id" || fail "scancel failed"
  wait_for 120 "job $id to requeue" job_restarted "$id" 1
  has_line "while the tasks start" "$tmp/job-starting.out" || fail "the stop was not held"
  has_line "stopped before training started, nothing written; requeueing job $id" "$tmp/job-starting.out" ||
    fail "the held stop did not end the start as one before training"
  ! has_line "exited with 138" "$tmp/job-starting.out" || fail "a task died of the stop"
  scancel "$id" 2>/dev/null
  echo "PASS: job $id, stopped as its tasks started, was requeued (the stop held until they could take it)"

  # A hold that is not whole seconds is refused before srun (bash could not compute "0.5", and the
  # first stop then ended the batch shell, the tasks never told).
  id=$(SY_START_HOLD_S=0.5 submit badhold --set "run.out_dir=$tmp/badhold") || fail "sbatch failed"
  wait_for 120 "job $id to end" job_done "$id"
  [ "$(job_field "$id" ExitCode)" = 2:0 ] || fail "job $id exit code $(job_field "$id" ExitCode), expected 2:0"
  has_line "SY_START_HOLD_S='0.5': expected whole seconds" "$tmp/job-badhold.out" ||
    fail "the job log does not name SY_START_HOLD_S"
  echo "PASS: job $id with SY_START_HOLD_S=0.5 ended at once, exit 2, naming it"
  exit 0
fi

# ---- train: the real trainer --------------------------------------------------------------------
tokens=$tmp/tokens.h5
"$bin" data prepare --input /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 \
  --output "$tokens" >/dev/null || fail "data prepare failed"
# About 20 ms per step on 4 ranks sharing 2 cores: long enough (~4 s) for the signal to land
# mid-run, short enough for CI.
steps=200
common=(--set "data.path=$tokens" --set "train.steps=$steps" --set train.global_batch=256
        --set train.micro_batch=64 --set log.every=1 --set eval.every=0
        --set checkpoint.every=100 --set checkpoint.keep=2)

id=$(submit ref "${common[@]}" --set "run.out_dir=$tmp/ref") || fail "sbatch failed"
echo "submitted the uninterrupted reference job $id"
wait_for 300 "reference job $id" job_done "$id"
[ "$(job_field "$id" JobState)" = COMPLETED ] || fail "reference job ended $(job_field "$id" JobState)"

id=$(submit pre "${common[@]}" --set "run.out_dir=$tmp/pre") || fail "sbatch failed"
echo "submitted job $id (to be preempted)"
preempt "$id" --signal=USR1 1 metrics_step_at_least "$tmp/pre/metrics.jsonl" 40
release_and_wait "$id" 300
check_job_ok "$id" pre 1
grep -q "resum" "$tmp/job-pre.out" || fail "the requeued run did not say it resumed"

# Every step's loss of the preempted-and-resumed run equals the reference's, bit for bit (the
# last logged line of each step counts: steps between the last checkpoint and the signal are
# logged twice when the signal's checkpoint is not the newest).
/usr/bin/python3 - "$tmp/ref/metrics.jsonl" "$tmp/pre/metrics.jsonl" "$steps" <<'EOF' || fail "losses differ"
import json, sys
def losses(path):
    out = {}
    for line in open(path):
        j = json.loads(line)
        if "loss" in j:
            out[j["step"]] = j["loss"]
    return out
ref, pre, steps = losses(sys.argv[1]), losses(sys.argv[2]), int(sys.argv[3])
if sorted(pre) != sorted(ref) or max(ref) != steps:
    sys.exit(f"steps differ: reference {sorted(ref)}, preempted {sorted(pre)}")
bad = [s for s in ref if ref[s] != pre[s]]
if bad:
    sys.exit("loss differs at steps %s (e.g. %r vs %r)" % (bad, ref[bad[0]], pre[bad[0]]))
print(f"all {len(ref)} step losses equal; final loss {ref[steps]!r}")
EOF
echo "PASS: job $id was preempted, requeued itself, resumed and matched the uninterrupted run"

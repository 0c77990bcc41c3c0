#!/usr/bin/env bash
# jobs/train.sbatch's own arguments and environment without a cluster, as sbatch_gpu_test.sh runs
# it: the job's variables set by hand, a stand-in `srun` that records its arguments and exits
# $FAKE_SRUN_RC, a stand-in `scontrol`. Checks:
#   - outside a SLURM job (no SLURM_JOB_ID): one line saying so, exit 2, srun not started (it
#     failed, and the end blamed the trainer: "train exited with 1");
#   - -h/--help (anywhere) prints the script's usage, exit 0, srun not started;
#   - a --resume of the user's (--resume FILE, --resume=FILE) is passed alone, no second one
#     (the trainer refused two), on a requeued start (SLURM_RESTART_COUNT=1) too (it was swapped
#     for --resume auto, a fine-tune turned into a run from random weights where no checkpoint had
#     been written); a start from it that is stopped (75 or 76) is not requeued (it would begin
#     at FILE again), and says how to continue;
#   - a relative SY_BIN is the job's starting directory's, not SY_ROOT's;
#   - the start line is shell-quoted.
#
#   bash tests/jobs/sbatch_args_test.sh <source dir>
# shellcheck disable=SC2015  # `check && check || fail`: fail is meant to run when either does not hold
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
tmp=$(mktemp -d /tmp/switchyard-sbatch-args-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/caller"
fakebin="$tmp/caller/sy2"  # never run (srun is the stand-in); the script checks it exists
printf '#!/bin/sh\nexit 0\n' >"$fakebin"
chmod +x "$fakebin"
# fails, fail, has; SLURM's srun, scontrol and squeue stood in for
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fails=0  # the failed checks, counted by fail (lib.sh)
slurm_stand_ins "$tmp/bin"

# job: sbatch_job (lib.sh) from $tmp/caller.
job() { job_cwd="$tmp/caller" sbatch_job "$@"; }

# Outside SLURM.
job outside SLURM_JOB_ID= -- --config configs/tiny.yaml
((rc == 2)) || fail "outside SLURM: exit $rc, expected 2: $out"
has "$out" "train.sbatch: not inside a SLURM job: submit it with sbatch (or run jobs/local.sh on one machine)" ||
  fail "outside SLURM: message: $out"
has "$out" "train exited" && fail "outside SLURM: blames the trainer: $out"
[ -z "$srun" ] || fail "outside SLURM: srun ran: $srun"

# --help.
for h in -h --help; do
  job "help$h" -- --config configs/tiny.yaml "$h"
  ((rc == 0)) || fail "$h: exit $rc: $out"
  has "$out" "sbatch jobs/train.sbatch --config" || fail "$h: no usage: $out"
  has "$out" "SBATCH" && fail "$h: #SBATCH lines in the usage: $out"
  [ -z "$srun" ] || fail "$h: srun ran: $srun"
done
job help_outside SLURM_JOB_ID= -- --help
((rc == 0)) && has "$out" "sbatch jobs/train.sbatch --config" || fail "--help outside SLURM: exit $rc: $out"

# The user's --resume.
job resume_file -- --config configs/tiny.yaml --resume ckpt/step_10.h5
((rc == 0)) || fail "resume_file: exit $rc: $out"
[ "$srun" = "SRUN --mpi=pmix $fakebin train --config configs/tiny.yaml --resume ckpt/step_10.h5" ] ||
  fail "resume_file: srun got: $srun"
job resume_eq -- --config configs/tiny.yaml --resume=ckpt/step_10.h5
[ "$srun" = "SRUN --mpi=pmix $fakebin train --config configs/tiny.yaml --resume=ckpt/step_10.h5" ] ||
  fail "resume_eq: exit $rc, srun got: $srun"
job resume_requeued SLURM_RESTART_COUNT=1 -- --resume ckpt/step_10.h5 --config configs/tiny.yaml
[ "$srun" = "SRUN --mpi=pmix $fakebin train --resume ckpt/step_10.h5 --config configs/tiny.yaml" ] ||
  fail "resume_requeued: exit $rc, srun got: $srun"
job resume_stopped_early FAKE_SRUN_RC=76 \
  'FAKE_SCONTROL_SHOW=JobId=42 JobName=sy JobState=RUNNING Reason=None Restarts=0\n' \
  -- --config configs/tiny.yaml --resume ckpt/step_10.h5
((rc == 76)) || fail "resume_stopped_early: exit $rc, expected 76: $out"
has "$srun" "REQUEUE" && fail "resume_stopped_early: requeued: $out"
has "$out" "switchyard: stopped before training started, nothing written; not requeued" ||
  fail "resume_stopped_early: message: $out"
has "$out" "not requeued" || fail "resume_stopped_early: message: $out"
job resume_preempted FAKE_SRUN_RC=75 \
  'FAKE_SCONTROL_SHOW=JobId=42 JobName=sy JobState=RUNNING Reason=None Restarts=0\n' \
  -- --config configs/tiny.yaml --resume ckpt/step_10.h5
((rc == 75)) || fail "resume_preempted: exit $rc, expected 75: $out"
has "$srun" "REQUEUE" && fail "resume_preempted: requeued to begin at the file again: $out"
has "$out" "Resubmit with --resume auto in place of --resume ckpt/step_10.h5" ||
  fail "resume_preempted: message: $out"
# A line about the job says "switchyard:" as the script's other job lines do (it said
# "train.sbatch: preempted" where a requeued job's says "switchyard: preempted").
has "$out" "switchyard: preempted" || fail "resume_preempted: prefix: $out"
# SLURM's own requeue of a start from FILE stopped before training: beginning at FILE again is
# right, no advice to resubmit with auto (review: it would train from step 0).
job resume_requeued_by_slurm_early FAKE_SRUN_RC=76 \
  'FAKE_SCONTROL_SHOW=JobId=42 JobName=sy JobState=RUNNING Reason=None Restarts=1\n' \
  -- --config configs/tiny.yaml --resume /other/run/step_100.h5
has "$out" "its next start begins at your --resume /other/run/step_100.h5 again" ||
  fail "resume_requeued_by_slurm_early: message: $out"
has "$out" "resubmit with --resume auto" && fail "resume_requeued_by_slurm_early: advises auto: $out"
# A job ending (scancel) after a start from FILE: how to go on names FILE's replacement (75) or
# the same command (76), not the generic "resubmit this script".
job resume_ending_75 FAKE_SRUN_RC=75 \
  'FAKE_SCONTROL_SHOW=JobId=42 JobName=sy JobState=COMPLETING Reason=None Restarts=0\n' \
  -- --config configs/tiny.yaml --resume ckpt/step_10.h5
((rc == 75)) && has "$out" "Resubmit with --resume auto in place of --resume ckpt/step_10.h5" ||
  fail "resume_ending_75: exit $rc: $out"
job resume_ending_76 FAKE_SRUN_RC=76 \
  'FAKE_SCONTROL_SHOW=JobId=42 JobName=sy JobState=COMPLETING Reason=None Restarts=0\n' \
  -- --config configs/tiny.yaml --resume ckpt/step_10.h5
((rc == 76)) && has "$out" "not requeued. Resubmit the same command" ||
  fail "resume_ending_76: exit $rc: $out"
job no_resume -- --config configs/tiny.yaml
[ "$srun" = "SRUN --mpi=pmix $fakebin train --config configs/tiny.yaml --resume auto" ] ||
  fail "no_resume: exit $rc, srun got: $srun"

# SY_BIN relative to the job's starting directory (the submission directory), not SY_ROOT.
job relative SY_BIN=./sy2 -- --config configs/tiny.yaml
((rc == 0)) || fail "SY_BIN=./sy2: exit $rc: $out"
has "$srun" "$fakebin train" || fail "SY_BIN=./sy2: srun got: $srun"
job relative_missing SY_BIN=./nope -- --config configs/tiny.yaml
((rc == 2)) && has "$out" "$tmp/caller/nope not found" || fail "SY_BIN=./nope: exit $rc: $out"

# The start line, shell-quoted.
job quoted -- --config configs/tiny.yaml --set "run.name=a b"
has "$out" "$fakebin train --config configs/tiny.yaml --set run.name=a\\ b --resume auto" ||
  fail "the start line is not shell-quoted: $out"

if ((fails)); then echo "$fails check(s) failed"; exit 1; fi
echo "PASS: train.sbatch refuses to run outside SLURM, has --help, passes a --resume of the user's as it is (a start from it not requeued), takes SY_BIN relative to where the job starts and quotes its start line"

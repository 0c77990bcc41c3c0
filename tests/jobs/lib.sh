# What the jobs/ tests share (sourced): counting failed checks, and SLURM's commands stood in for.
# shellcheck shell=bash

fails=0  # (the tests set it again after sourcing)
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
has() { [[ $1 == *"$2"* ]]; }

# slurm_stand_ins <dir>: srun (appends "SRUN <its arguments>" to $FAKE_SRUN_LOG and exits with
# $FAKE_SRUN_RC, default 0), scontrol (`show` prints $FAKE_SCONTROL_SHOW, `requeue N` appends
# "REQUEUE N" to $FAKE_SRUN_LOG) and squeue (prints nothing) into <dir>.
slurm_stand_ins() {
  cat >"$1/srun" <<'EOS'
#!/usr/bin/env bash
echo "SRUN $*" >>"$FAKE_SRUN_LOG"
exit "${FAKE_SRUN_RC:-0}"
EOS
  cat >"$1/scontrol" <<'EOS'
#!/usr/bin/env bash
case $1 in
  show) printf '%b' "${FAKE_SCONTROL_SHOW:-}" ;;
  requeue) echo "REQUEUE $2" >>"$FAKE_SRUN_LOG" ;;
esac
EOS
  printf '#!/bin/sh\nexit 0\n' >"$1/squeue"
  chmod +x "$1/srun" "$1/scontrol" "$1/squeue"
}

# sbatch_job <name> <env assignments...> -- <train.sbatch arguments...>: runs $src/jobs/train.sbatch
# from ${job_cwd:-$tmp} as a one-node SLURM job of 2 tasks per node (the assignments add to and
# override SLURM's variables), with ${job_bin:-$fakebin} as its switchyard and the stand-ins of
# $tmp/bin first on PATH; sets out (its output), srun (the stand-in's log) and rc.
# shellcheck disable=SC2154  # tmp, src and fakebin: set by the test that sources this file
sbatch_job() {
  local name=$1
  shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  : >"$tmp/$name.srun"
  (cd "${job_cwd:-$tmp}" && env -i PATH="$tmp/bin:/usr/bin:/bin" HOME="$tmp" SY_ROOT="$src" \
    SY_BIN="${job_bin:-$fakebin}" FAKE_SRUN_LOG="$tmp/$name.srun" SLURM_JOB_ID=42 \
    SLURM_JOB_NUM_NODES=1 SLURM_NTASKS_PER_NODE=2 "${envs[@]}" \
    timeout 20 bash "$src/jobs/train.sbatch" "$@") >"$tmp/$name.out" 2>&1
  # shellcheck disable=SC2034  # read by the tests that source this file
  rc=$?
  # shellcheck disable=SC2034
  out=$(cat "$tmp/$name.out")
  # shellcheck disable=SC2034
  srun=$(cat "$tmp/$name.srun")
}

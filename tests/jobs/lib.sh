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

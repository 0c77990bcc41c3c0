#!/usr/bin/env bash
# switchyard training on this machine under mpirun, resuming from the newest checkpoint.
#
#   jobs/local.sh [-n RANKS] [switchyard train arguments ...]
#   jobs/local.sh -n 4 --config configs/tiny.yaml --set parallel.ep=2 --set train.micro_batch=2
#
# Adds `--resume auto` (unless a --resume is given), so running the same command again after an
# interruption continues from the newest checkpoint that verifies in checkpoint.dir. Stop a run
# cleanly with Ctrl-C, or SIGUSR1, SIGTERM or SIGHUP to this script, to `switchyard guard` or to
# mpirun: the trainer finishes its step, writes a checkpoint and exits 75 (76 when the signal
# came before training started: nothing to write); this script then says how to go on.
# mpirun runs under `switchyard guard`, which keeps Open MPI's mpirun from answering a SIGTERM
# by killing the ranks a second later (src/train/launch_guard.h).
#
# Runs from the repository root: relative paths in the arguments (--config, data.path,
# run.out_dir, checkpoint.dir) are the root's, wherever the script is started.
# Environment: SY_BIN (default build/switchyard), SY_CONFIG (default configs/small.yaml when no
# --config is given), SY_NP (default 4, or -n), SY_MPIRUN_ARGS (extra mpirun arguments).
set -uo pipefail

# The signals are trapped first thing, before the line below says how to stop the run (its USR1
# killed this script, and the run went on with nobody to report). One that comes before the guard
# is started is passed on once it is, when it is the guard (not this shell's fork of it, which
# shows this shell's traps) and has its handlers in (before, it would die of it).
guard_pid=
pending=
# shellcheck disable=SC2317  # invoked by the traps below
pass_on() {
  if [ -z "$guard_pid" ]; then
    pending=$1
    return
  fi
  local num exe mask i
  num=$(kill -l "$1")
  for ((i = 0; i < 100; i++)); do
    # The executable first, then the handlers: read the other way round, an exec between the
    # two showed this shell's traps as the guard's (QA: 2 of 272 early stops killed the guard).
    exe=$(readlink "/proc/$guard_pid/exe") || break
    mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$guard_pid/status" 2>/dev/null) || break
    [ "$exe" != "$(readlink "/proc/$$/exe")" ] && (((0x${mask:-0} >> (num - 1)) & 1)) && break
    sleep 0.02
  done
  kill "-$1" "$guard_pid" 2>/dev/null
}
trap 'pass_on TERM' TERM HUP
# Ctrl-C: the first asks for the checkpoint (as SIGTERM); a second kills the run now, for ranks
# that do not stop (the guard here ignores SIGINT, as a script's background job does).
# shellcheck disable=SC2317  # invoked by the trap below
kill_tree() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done
  kill -KILL "$1" 2>/dev/null
}
interrupts=0
# shellcheck disable=SC2317  # invoked by the trap below
on_interrupt() {
  interrupts=$((interrupts + 1))
  if ((interrupts == 1)); then
    pass_on TERM
  elif [ -z "$guard_pid" ]; then
    exit 130  # nothing started yet
  else
    echo "local.sh: Ctrl-C again: killing the run now (the checkpoints written so far are kept)"
    kill_tree "$guard_pid"
  fi
}
trap on_interrupt INT
trap 'pass_on USR1' USR1

cd "$(dirname "$0")/.." || exit 1

np=${SY_NP:-4}
if [ "${1:-}" = -n ] || [ "${1:-}" = --np ]; then
  np=${2:?"-n needs a rank count"}
  shift 2
fi
SY_BIN=${SY_BIN:-build/switchyard}
[ -x "$SY_BIN" ] || { echo "local.sh: $SY_BIN not found; build first (see README.md)" >&2; exit 2; }

args=("$@")
has_config=0 has_resume=0
for a in "$@"; do
  case $a in
    -c | --config | --config=*) has_config=1 ;;
    --resume | --resume=*) has_resume=1 ;;
  esac
done
((has_config)) || args=(--config "${SY_CONFIG:-configs/small.yaml}" "${args[@]}")
((has_resume)) || args+=(--resume auto)

# No binding and yielding waits: ranks may outnumber cores (a laptop, CI), and a spinning rank
# steals the core another rank needs (MACHINE-NOTES: 21 ms -> 9 ms per all-to-all at 8 on 2).
flags=(--bind-to none --mca mpi_yield_when_idle 1)
((np > $(nproc))) && flags+=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}

echo "local.sh (pid $$; kill -USR1 $$ stops it with a checkpoint): mpirun -np $np ${flags[*]} $SY_BIN train ${args[*]}"
# In the background, so that this shell passes a signal on instead of dying of it.
# shellcheck disable=SC2086
"$SY_BIN" guard -- mpirun -np "$np" "${flags[@]}" ${SY_MPIRUN_ARGS:-} "$SY_BIN" train "${args[@]}" &
guard_pid=$!
[ -z "$pending" ] || pass_on "$pending"
while :; do
  wait "$guard_pid"
  rc=$?
  ((rc > 128)) || break  # a real exit status
  kill -0 "$guard_pid" 2>/dev/null && continue  # a trapped signal interrupted `wait`
  # 127: already reaped; bash 5.2 also gave -1 for one (QA: local.sh exited 255 where the guard
  # had died of a SIGTERM to the whole job, 143).
  if wait "$guard_pid" 2>/dev/null; then
    rc=0
  else
    r=$?
    ((r == 127 || r < 0 || r > 255)) || rc=$r
  fi
  break
done
if ((rc == 75)); then
  echo "local.sh: stopped by a signal after writing a checkpoint; run the same command again to resume"
elif ((rc == 76)); then
  echo "local.sh: stopped by a signal before training started: nothing was written; run the same command again"
fi
exit "$rc"

#!/usr/bin/env bash
# switchyard training on this machine under mpirun, resuming from the newest checkpoint.
#
#   jobs/local.sh [-n RANKS] [switchyard train arguments ...]
#   jobs/local.sh -n 4 --config configs/tiny.yaml --set parallel.ep=2 --set train.micro_batch=2
#   jobs/local.sh -h | --help      this text; the trainer's own options: build/switchyard train --help
#
# -n (or --np) comes first, with a positive whole number of ranks; every other argument goes to
# `switchyard train`, except -h/--help anywhere (train's help printed once per rank helps nobody).
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
# Environment: SY_BIN (default build/switchyard in the repository; a path relative to the
# directory the script is started from, or a command name found on PATH), SY_CONFIG (default
# configs/small.yaml when no --config is given), SY_NP (default 4, or -n), SY_MPIRUN_ARGS (extra
# mpirun arguments).
set -uo pipefail

# Its own help before anything starts (passed on, --help printed train's help once per rank).
for a in "$@"; do
  case $a in
    -h | --help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
  esac
done

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

# The rank count: a positive whole number (0 made mpirun start one rank per core, "abc" ended the
# script with "unbound variable", "2x" and "-1" with Open MPI's banners).
np=${SY_NP:-4} np_from=SY_NP
case ${1:-} in
  -n | --np) np=${2-} np_from=$1; shift $(($# >= 2 ? 2 : 1)) ;;
  --np=* | -n=*) np=${1#*=} np_from=${1%%=*}; shift ;;
  -n[0-9]*) np=${1#-n} np_from=-n; shift ;;
esac
if ! [[ $np =~ ^[0-9]{1,6}$ ]] || ((10#$np == 0)); then
  echo "local.sh: $np_from needs a positive whole number of ranks, got '$np'" >&2
  exit 2
fi
np=$((10#$np))
# Later, train would refuse it ("unknown option '-n'") after mpirun started the default count.
prev=""
for a in "$@"; do
  case $prev in --set | -c | --config | --resume) prev=$a; continue ;; esac  # a value
  if [[ $a == -n || $a == --np || $a == --np=* || $a == -n=* || $a =~ ^-n[0-9] ]]; then
    echo "local.sh: $a: the rank count comes first and once, before the train arguments:" \
      "jobs/local.sh -n N --config ..." >&2
    exit 2
  fi
  prev=$a
done

# SY_BIN before the cd below: a relative path is the caller's (./sy2 was looked for in the
# repository root), a bare name a command on PATH (as train.sbatch takes it); the message names
# the path actually checked.
root=$(dirname "$(dirname "$(realpath "${BASH_SOURCE[0]}")")")  # the real one, not a symlink's
bin=${SY_BIN:-$root/build/switchyard}
if [[ $bin == */* ]]; then
  bin=$(realpath -m -- "$bin")
  if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    echo "local.sh: $bin not found or not executable; build first (see README.md) or set SY_BIN" >&2
    exit 2
  fi
else
  found=$(type -P -- "$bin") ||
    { echo "local.sh: $bin not found on PATH; build first (see README.md) or set SY_BIN to its path" >&2; exit 2; }
  bin=$found
fi
SY_BIN=$bin
cd "$root" || exit 1

args=("$@")
has_config=0 has_resume=0 resume_arg="" prev=""
for a in "$@"; do
  case $a in
    -c | --config | --config=*) has_config=1 ;;
    --resume) has_resume=1 ;;
    --resume=*) has_resume=1 resume_arg=${a#*=} ;;
  esac
  [ "$prev" = --resume ] && resume_arg=$a
  prev=$a
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

# Shell-quoted, so that the line can be pasted back into a shell.
# shellcheck disable=SC2086  # word-split, as mpirun gets them
printf -v cmd_line '%q ' mpirun -np "$np" "${flags[@]}" ${SY_MPIRUN_ARGS:-} "$SY_BIN" train "${args[@]}"
echo "local.sh (pid $$; kill -USR1 $$ stops it with a checkpoint): ${cmd_line% }"
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
if ((rc == 75)) && ((has_resume)) && [ "$resume_arg" != auto ]; then
  # The same command again would start from that file again, not from the checkpoint just written.
  echo "local.sh: stopped by a signal after writing a checkpoint; run the command again with --resume auto in place of --resume $resume_arg to continue from it"
elif ((rc == 75)); then
  echo "local.sh: stopped by a signal after writing a checkpoint; run the same command again to resume"
elif ((rc == 76)); then
  echo "local.sh: stopped by a signal before training started: nothing was written; run the same command again"
fi
exit "$rc"

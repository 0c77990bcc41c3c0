#!/usr/bin/env bash
# A stand-in for `switchyard train` with the same job-facing behaviour, for testing the SLURM
# mechanics (cluster, jobs/train.sbatch, signal, requeue, resume) without the real trainer:
#   train ... --set run.out_dir=D [--set train.steps=N] --resume auto
#   - one "step" every 0.2 s; rank 0 (SLURM_PROCID) appends "step <k>" to D/steps.log
#   - SIGUSR1/SIGTERM: finish the step, write D/checkpoint (the step); rank 0 exits 75, the
#     others 0 (the real trainer's ranks do so, app/run_mpi.h: the job's code is rank 0's)
#   - --resume auto: continue after D/checkpoint when it exists ("resumed at step k")
#   - at the end: rank 0 writes D/done with "final <N>", exit 0
#   - FAKE_NO_HANDLER_S=<s>: SIGUSR1 kills it for that long first (a task before its main)
#   - FAKE_START_S=<s>: a start-up of that long first; a signal during it ends every rank with 76
#     (the real trainer's "stopped before training started": nothing written)
#   train --help: prints a usage line that includes --resume
set -u
[ "${1:-}" = train ] || { echo "fake switchyard: only 'train'" >&2; exit 2; }
shift
out="" steps=20 resume=""
while (($#)); do
  case $1 in
    --help) echo "Usage: switchyard train --config FILE [--set k=v] [--resume auto|FILE]"; exit 0 ;;
    --set) case $2 in run.out_dir=*) out=${2#*=} ;; train.steps=*) steps=${2#*=} ;; esac; shift ;;
    --resume) resume=$2; shift ;;
    --config) shift ;;
  esac
  shift
done
[ -n "$out" ] || { echo "fake switchyard: --set run.out_dir=... required" >&2; exit 2; }
rank=${SLURM_PROCID:-0}
mkdir -p "$out"
stop=""
# FAKE_NO_HANDLER_S=<s>: no handler that long first, as a real task while the loader maps its
# libraries: SIGUSR1 then kills it (138).
sleep "${FAKE_NO_HANDLER_S:-0}"
trap 'stop=USR1' USR1
trap 'stop=TERM' TERM

# The handlers are in: a test may signal now (rank 0 says so in D/started, one line per start).
((rank == 0)) && echo start >>"$out/started"
for _ in $(seq $(( ${FAKE_START_S:-0} * 5 ))); do
  sleep 0.2
  if [ -n "$stop" ]; then
    echo "fake switchyard rank $rank: SIG$stop before training started, exit 76"
    exit 76
  fi
done

step=0
if [ "$resume" = auto ] && [ -f "$out/checkpoint" ]; then
  step=$(cat "$out/checkpoint")
  ((rank == 0)) && echo "resumed at step $step" >>"$out/steps.log"
fi
while ((step < steps)); do
  sleep 0.2
  step=$((step + 1))
  ((rank == 0)) && echo "step $step" >>"$out/steps.log"
  if [ -n "$stop" ]; then
    # Later signals are ignored, as the real trainer does once it is stopping. The ignore also
    # passes to `mv`: a second SIGTERM (srun's "forcing job termination" in a preemption) killed
    # it once, and the requeued run found no checkpoint and started over at step 1.
    trap '' USR1 TERM
    ((rank == 0)) && { echo "$step" >"$out/checkpoint.tmp"; mv "$out/checkpoint.tmp" "$out/checkpoint"; }
    code=$(( rank == 0 ? 75 : 0 ))
    echo "fake switchyard rank $rank: SIG$stop after step $step, checkpoint written, exit $code"
    exit "$code"
  fi
done
((rank == 0)) && echo "final $step" >"$out/done"
exit 0

#!/usr/bin/env bash
# jobs/train.sbatch's GPU handling (issue 14 item 9) without a cluster: the script runs as SLURM
# would run it, with the job's environment variables set by hand and a stand-in `srun` on PATH
# that records its arguments and exits with $FAKE_SRUN_RC. Checks:
#   - GPUs allocated (SLURM_GPUS_ON_NODE=4, --gpus-per-task=1): `--set device=cuda` is passed
#     before the user's arguments, the start line names the GPUs and the NCCL/UCX settings;
#   - a `--set device=cpu` of the user's is left to win (no device=cuda added);
#   - no GPUs: the CPU command line is exactly as before (no device, no GPU note);
#   - more ranks than GPUs on a node: a warning;
#   - srun's exit code passes through (2 stays 2);
#   - after exit 75 (a stand-in `scontrol` reports the job): still RUNNING (SIGUSR1) -> the script
#     requeues it, also when an array's first element lists its siblings too; COMPLETING with
#     Restarts up (SLURM requeued it) -> no second requeue; COMPLETING otherwise (scancel) -> not
#     requeued, exit 75. The real cluster test (tests/slurm) runs the last two for real.
#
#   bash tests/jobs/sbatch_gpu_test.sh <source dir>
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
tmp=$(mktemp -d /tmp/switchyard-sbatch-gpu-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/fake"
fakebin="$tmp/fake/switchyard"  # never run (srun is the stand-in); the script checks it exists
printf '#!/bin/sh\nexit 0\n' >"$fakebin"
chmod +x "$fakebin"
# fails, fail, has; SLURM's srun, scontrol and squeue stood in for
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fails=0  # the failed checks, counted by fail (lib.sh)
slurm_stand_ins "$tmp/bin"

# job: sbatch_job (lib.sh), the switchyard $SY_BIN_FOR_TEST where a check sets it.
job() { job_bin="${SY_BIN_FOR_TEST:-$fakebin}" sbatch_job "$@"; }

job gpus SLURM_NTASKS_PER_NODE=4 SLURM_GPUS_ON_NODE=4 SLURM_GPUS_PER_TASK=1 \
  NCCL_IB_HCA=mlx5_0:1,mlx5_1:1 NCCL_SOCKET_IFNAME=ib0 UCX_NET_DEVICES=mlx5_0:1 UCX_TLS=rc,sm,self \
  -- --config configs/tiny.yaml --set parallel.ep=4
((rc == 0)) || fail "gpus: exit $rc: $out"
has "$srun" "$fakebin train --set device=cuda --config configs/tiny.yaml --set parallel.ep=4 --resume auto" ||
  fail "gpus: srun did not get device=cuda before the user's arguments: $srun"
has "$out" "1 node(s) x 4 rank(s), 4 GPU(s) per node (--gpus-per-task=1)" || fail "gpus: start line: $out"
for v in NCCL_IB_HCA=mlx5_0:1,mlx5_1:1 NCCL_SOCKET_IFNAME=ib0 UCX_NET_DEVICES=mlx5_0:1 UCX_TLS=rc,sm,self; do
  has "$out" "$v" || fail "gpus: the start line does not show $v: $out"
done
has "$out" "warning" && fail "gpus: unexpected warning: $out"

job user_device SLURM_NTASKS_PER_NODE=2 SLURM_GPUS_ON_NODE=2 SLURM_GPUS_PER_NODE=2 \
  -- --config configs/tiny.yaml --set device=cpu
((rc == 0)) || fail "user_device: exit $rc"
has "$srun" "device=cuda" && fail "user_device: device=cuda added over the user's device=cpu: $srun"
has "$out" "(--gpus-per-node=2)" || fail "user_device: start line: $out"

job cpu SLURM_NTASKS_PER_NODE=4 -- --config configs/tiny.yaml
((rc == 0)) || fail "cpu: exit $rc"
[ "$srun" = "SRUN --mpi=pmix $fakebin train --config configs/tiny.yaml --resume auto" ] ||
  fail "cpu: the CPU command line changed: $srun"
has "$out" "GPU" && fail "cpu: a GPU note without GPUs: $out"

# `sbatch -n 6 --nodes=2` over the script's `--ntasks-per-node=4`: SLURM_NTASKS_PER_NODE keeps the
# directive's 4, the allocation is 3 a node. The start line says what SLURM placed, and the
# trainer is not handed a ranks-per-node count (it groups the ranks by host): before, it got
# parallel.ranks_per_node=4, which does not divide 6 ranks (exit 2), or with -n 4 made one
# "node" of two hosts.
job ntasks SLURM_JOB_NUM_NODES=2 SLURM_NTASKS_PER_NODE=4 "SLURM_TASKS_PER_NODE=3(x2)" \
  -- --config configs/tiny.yaml
((rc == 0)) || fail "ntasks: exit $rc"
has "$out" "2 node(s) x 3(x2) rank(s)" || fail "ntasks: start line: $out"
has "$srun" "ranks_per_node" && fail "ntasks: the trainer was handed a ranks-per-node count: $srun"

# --gres=gpu:2: neither --gpus-per-task nor --gpus-per-node to name (the line said "()").
job gres SLURM_NTASKS_PER_NODE=2 SLURM_GPUS_ON_NODE=2 -- --config configs/tiny.yaml
has "$out" "2 GPU(s) per node;" || fail "gres: start line: $out"

job oversubscribed SLURM_NTASKS_PER_NODE=8 SLURM_GPUS_ON_NODE=4 -- --config configs/tiny.yaml
has "$out" "warning: 8 ranks per node but 4 GPU(s)" || fail "oversubscribed: no warning: $out"

job exit_code SLURM_NTASKS_PER_NODE=1 SLURM_GPUS_ON_NODE=1 FAKE_SRUN_RC=2 -- --config configs/tiny.yaml
((rc == 2)) || fail "exit_code: srun's 2 came back as $rc"

# Exit 75 (a checkpoint written after a signal): what comes next depends on the job's state.
running='JobId=42 JobName=sy JobState=RUNNING Reason=None Restarts=0 ArrayJobId=42 ArrayTaskId=0\n'
sibling='JobId=43 JobName=sy JobState=PENDING Reason=None Restarts=0 ArrayJobId=42 ArrayTaskId=1\n'
# after_75 <name> <what scontrol shows> <requeue: yes|no> <exit code> <log text>
after_75() {
  job "$1" SLURM_NTASKS_PER_NODE=1 FAKE_SRUN_RC=75 "FAKE_SCONTROL_SHOW=$2" -- --config configs/tiny.yaml
  if [ "$3" = yes ]; then
    has "$srun" "REQUEUE 42" || fail "$1: not requeued: $out"
  else
    has "$srun" "REQUEUE" && fail "$1: requeued (again): $out"
  fi
  ((rc == $4)) || fail "$1: exit $rc, expected $4: $out"
  has "$out" "$5" || fail "$1: log: $out"
}
after_75 usr1_array "$running$sibling" yes 0 "requeueing job 42"
after_75 cancelled 'JobId=42 JobName=sy JobState=COMPLETING Reason=None Restarts=0\n' no 75 \
  "job 42 is ending (COMPLETING"
after_75 slurm_requeued 'JobId=42 JobName=sy JobState=COMPLETING Reason=None Restarts=1\n' no 0 \
  "SLURM requeued job 42 itself"

# A binary that is not there: one line naming it and exit 2, before srun (which printed one
# execve error per task).
SY_BIN_FOR_TEST="$tmp/nope/switchyard" job missing_bin SLURM_NTASKS_PER_NODE=2 -- --config configs/tiny.yaml
((rc == 2)) || fail "missing_bin: exit $rc: $out"
has "$out" "$tmp/nope/switchyard not found" || fail "missing_bin: message: $out"
[ -z "$srun" ] || fail "missing_bin: srun ran: $srun"
# A command name found on PATH is a binary too (srun finds it there).
cp "$fakebin" "$tmp/bin/switchyard-on-path"
SY_BIN_FOR_TEST=switchyard-on-path job on_path SLURM_NTASKS_PER_NODE=2 -- --config configs/tiny.yaml
((rc == 0)) || fail "on_path: exit $rc: $out"
has "$srun" "switchyard-on-path train" || fail "on_path: srun did not run it: $srun"

if ((fails)); then echo "$fails check(s) failed"; exit 1; fi
echo "PASS: train.sbatch passes device=cuda with GPUs (not over the user's choice), logs GPUs and network settings, leaves the CPU path unchanged, and after exit 75 requeues only a job still running"

#!/usr/bin/env python3
"""Predicted against measured: `switchyard plan --this` beside `switchyard train` for layouts
that run on this machine (1-8 ranks, emulated nodes, flat and hierarchical all-to-all, ZeRO-1 on
and off, dropless and dropping routing).

For every layout it trains the config for --steps steps under mpirun, with its final evaluation
and a checkpoint after the last step (what any run may do: the memory check counts both), reads
metrics.jsonl (the median step_ms and a2a_ms of the steps after the first --skip, rank 0's
a2a_internode_bytes per step), takes the job's peak memory from the kernel (the largest resident
set of any rank over the whole run, end included: the train lines' peak_mem_bytes stop before the
final evaluation and checkpoint) and asks the planner for the same layout, with uniform routing
and with the routing the run measured (--routing <run dir>). Prints one markdown table (README's
validation table) and, with --json, the raw numbers.

    python3 bench/plan_validate.py --bin build/switchyard --data data/licenses.h5

Timings need an idle machine (other jobs on the cores make every measured time longer); bytes
and memory do not depend on the load. Standard library only.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# (name, ranks, overrides): the layouts. ranks_per_node emulates nodes on this host.
LAYOUTS = [
    ("1 rank", 1, []),
    ("dp=2", 2, []),
    ("ep=2 flat", 2, ["parallel.ep=2", "parallel.a2a=flat"]),
    ("dp=2 ep=2 zero1", 4, ["parallel.ep=2", "parallel.zero1=true"]),
    ("ep=4, 2 nodes, flat", 4, ["parallel.ep=4", "parallel.ranks_per_node=2", "parallel.a2a=flat"]),
    ("ep=4, 2 nodes, hier/ucx", 4,
     ["parallel.ep=4", "parallel.ranks_per_node=2", "parallel.a2a=hierarchical",
      "parallel.internode=ucx"]),
    ("ep=4, 2 nodes, hier/mpi, dropping", 4,
     ["parallel.ep=4", "parallel.ranks_per_node=2", "parallel.a2a=hierarchical",
      "parallel.internode=mpi", "moe.capacity_factor=1.0"]),
    ("tp=2 ep=2 zero1", 4, ["parallel.tp=2", "parallel.ep=2", "parallel.zero1=true"]),
    ("ep=8, 4 nodes, hier/ucx, zero1", 8,
     ["parallel.ep=8", "parallel.ranks_per_node=2", "parallel.a2a=hierarchical",
      "parallel.zero1=true"]),
    ("ep=8, 4 nodes, flat, dropping", 8,
     ["parallel.ep=8", "parallel.ranks_per_node=2", "parallel.a2a=flat",
      "moe.capacity_factor=1.25"]),
]


def run(cmd, env=None, check=True):
    # errors="replace": a run's output may hold bytes that are not UTF-8 (the byte model's samples).
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace")
    if check and done.returncode != 0:
        sys.exit(f"failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stdout[-3000:]}\n"
                 f"{done.stderr[-3000:]}")
    return done


def run_peak(cmd, env):
    """Runs cmd (mpirun and its ranks) to the end; the largest resident set, in bytes, of it and
    every process under it (the kernel's ru_maxrss of the reaped tree, as wait4 reports it)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                 f"{out.decode(errors='replace')[-3000:]}")
    return usage.ru_maxrss * 1024  # Linux: KiB


def mpirun_prefix(ranks, env):
    """mpirun with the flags these machines need (README, jobs/local.sh), forwarding the
    variables of `env` that the ranks read."""
    cmd = ["mpirun", "-np", str(ranks), "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1",
           "--oversubscribe"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    for var in ("UCX_TLS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE"):
        if var in env:
            cmd += ["-x", var]
    return cmd


def set_args(sets):
    """["--set", s] for every config override s."""
    return [a for s in sets for a in ("--set", s)]


def metrics_lines(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


def measured(run_dir, skip, peak_bytes):
    train = [l for l in metrics_lines(run_dir) if "loss" in l and "step_ms" in l]
    timed = [l for l in train if l["step"] > skip] or train
    return {
        "step_ms": statistics.median(l["step_ms"] for l in timed),
        "a2a_ms": statistics.median(l["a2a_ms"] for l in timed),
        "a2a_internode_bytes": statistics.mean(l.get("a2a_internode_bytes", 0) for l in timed),
        "peak_mem_bytes": peak_bytes,
        "train_lines_peak_mem_bytes": max(l.get("peak_mem_bytes", 0) for l in train),
    }


def plan_json(args, cluster, ranks, sets, routing="uniform"):
    """`switchyard plan --this --json` for the config's own layout on `ranks` ranks."""
    cmd = [args.bin, "plan", "--config", args.config, "--cluster", cluster, "--ranks", str(ranks),
           "--this", "--json", "--routing", routing] + set_args(sets)
    return json.loads(run(cmd).stdout)[0]


def add_common_args(ap):
    """The arguments both plan scripts take."""
    ap.add_argument("--bin", default="build/switchyard")
    ap.add_argument("--config", default="configs/small.yaml")
    ap.add_argument("--data", default="data/licenses.h5")


def ratio(p, m):
    return f"{p / m:.2f}" if m else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    ap.add_argument("--cluster", default="clusters/this-machine.yaml")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--micro-batch", type=int, default=2,
                    help="train.micro_batch of every layout (dp * micro_batch must divide the "
                         "global batch at 8 ranks)")
    ap.add_argument("--skip", type=int, default=2, help="steps left out of the medians")
    ap.add_argument("--only", default="", help="comma-separated layout numbers (1-based)")
    ap.add_argument("--json", default="", help="also write the raw numbers here")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    work = tempfile.mkdtemp(prefix="plan-validate-")
    chosen = [int(x) for x in args.only.split(",") if x] or range(1, len(LAYOUTS) + 1)
    rows = []
    for i in chosen:
        name, ranks, extra = LAYOUTS[i - 1]
        out = os.path.join(work, f"layout{i}")
        sets = [f"data.path={args.data}", f"run.out_dir={out}", f"train.steps={args.steps}",
                f"train.micro_batch={args.micro_batch}",
                "log.every=1", "eval.every=0", "eval.sequences=1",
                f"checkpoint.every={args.steps}"] + extra
        env = dict(os.environ)
        env.setdefault("UCX_TLS", "tcp,self")  # emulated nodes: the "network" is TCP
        env["OMP_NUM_THREADS"] = str(max(1, cores // ranks))
        env.setdefault("OPENBLAS_CORETYPE", "Haswell")
        cmd = mpirun_prefix(ranks, env) + [args.bin, "train", "--config", args.config] + set_args(sets)
        print(f"[{i}/{len(LAYOUTS)}] {name}: {ranks} rank(s)", file=sys.stderr, flush=True)
        m = measured(out, args.skip, run_peak(cmd, env))
        plan_sets = [s for s in sets if not s.startswith("run.out_dir")]
        p = plan_json(args, args.cluster, ranks, plan_sets)
        pr = plan_json(args, args.cluster, ranks, plan_sets, routing=out)
        rows.append({"layout": name, "ranks": ranks, "measured": m, "predicted": p,
                     "predicted_measured_routing": pr})
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    print("| layout | ranks | step ms pred (uniform; measured routing) / meas | a2a ms pred "
          "(uniform; measured routing) / meas | inter-node B/step pred (uniform; measured "
          "routing) / meas | peak MiB/rank pred (uniform; measured routing) / meas |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        m, p, pr = r["measured"], r["predicted"], r["predicted_measured_routing"]
        mib = 1048576.0
        print(f"| {r['layout']} | {r['ranks']} "
              f"| {p['step_ms']:.0f}; {pr['step_ms']:.0f} / {m['step_ms']:.0f} "
              f"({ratio(p['step_ms'], m['step_ms'])}; {ratio(pr['step_ms'], m['step_ms'])}) "
              f"| {p['a2a_ms']:.0f}; {pr['a2a_ms']:.0f} / {m['a2a_ms']:.0f} "
              f"({ratio(p['a2a_ms'], m['a2a_ms'])}; {ratio(pr['a2a_ms'], m['a2a_ms'])}) "
              f"| {p['a2a_internode_bytes']:.0f}; {pr['a2a_internode_bytes']:.0f} / "
              f"{m['a2a_internode_bytes']:.0f} "
              f"({ratio(p['a2a_internode_bytes'], m['a2a_internode_bytes'])}; "
              f"{ratio(pr['a2a_internode_bytes'], m['a2a_internode_bytes'])}) "
              f"| {p['memory_bytes'] / mib:.0f}; {pr['memory_bytes'] / mib:.0f} / "
              f"{m['peak_mem_bytes'] / mib:.0f} "
              f"({ratio(p['memory_bytes'], m['peak_mem_bytes'])}; "
              f"{ratio(pr['memory_bytes'], m['peak_mem_bytes'])}) |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

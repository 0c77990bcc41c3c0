#!/usr/bin/env python3
"""Measures this machine with switchyard's own benches and writes a cluster file for
`switchyard plan` (clusters/README.md explains every key):

  compute   `switchyard bench train`'s GEMM table (cblas_sgemm on the config's own shapes): the
            rate of each product against its smallest dimension m, fitted to
            rate = gemm_flops * m / (m + gemm_half_dim) (1/rate is linear in 1/m); its optimizer
            time gives mem_bandwidth (8 bytes per parameter for zeroing and the norm, 28 per
            AdamW update).
  intra     `switchyard bench a2a` flat on one node of 4 ranks (MPI over shared memory): time
            against the bytes a rank sends to the others after deduplication, fitted to
            alpha * (P - 1) + bytes / beta.
  inter     `switchyard bench a2a` hierarchical on 2 emulated nodes x 2 ranks, UCX over TCP:
            the inter-node stage (xfer_us) against its bytes (inter_B/rank), one message per
            other node; the `internode: mpi` leg the same (inter_mpi).
  memory    a 1-rank `switchyard train` of the config: its peak_mem_bytes minus every term the
            planner predicts except the process itself = base_bytes.

    python3 bench/plan_calibrate.py --bin build/switchyard --data data/licenses.h5 \\
        --out clusters/this-machine.yaml

Run it on an idle machine: other jobs on the cores slow every bench. Standard library only.
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plan_validate import add_common_args, mpirun_prefix, run  # noqa: E402


def linear_fit(xs, ys):
    """Least squares y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    return my - b * mx, b


def gemm_and_optimizer(args, sets):
    out = run([args.bin, "bench", "train", "--config", args.config, "--steps", "3", "--warmup",
               "1", "--no-torch"] + sum((["--set", s] for s in sets), [])).stdout
    xs, ys, optimizer_ms = [], [], None
    for line in out.splitlines():
        f = line.split()
        if line.startswith("  optimizer (ms)"):
            optimizer_ms = float(f[-1])
        # product M N K op calls threaded per-core (the product name may hold spaces)
        if len(f) >= 8 and f[-4] in ("NN", "NT", "TN", "TT") and f[-7].isdigit():
            m = min(int(f[-7]), int(f[-6]), int(f[-5]))
            rate = max(float(f[-2]), float(f[-1])) * 1e9
            xs.append(1.0 / m)
            ys.append(1.0 / rate)
    if not xs or optimizer_ms is None:
        sys.exit("could not read the GEMM table or the optimizer time of `bench train`:\n" + out)
    a, b = linear_fit(xs, ys)
    peak = 1.0 / a if a > 0 else 1.0 / min(ys)
    half = max(0.0, b * peak)
    return peak, half, optimizer_ms * 1e-3, len(xs)


def a2a_rows(text):
    """(bytes/rank, algo, inter, time_us, xfer_us, inter_B) per row of `bench a2a`."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 15 and f[0].isdigit():
            rows.append((int(f[0]), f[2], f[3], float(f[5]), float(f[8]), float(f[12])))
    return rows


def hit_probability(E, K, s):
    """P(a token's K distinct experts, uniform over E, include one of s given experts)."""
    miss = 1.0
    for j in range(K):
        miss *= max(0.0, (E - s - j) / (E - j))
    return 1.0 - miss


def links(args):
    env = dict(os.environ, OMP_NUM_THREADS="1", UCX_TLS="tcp,self")
    common = ["--min-bytes", "1M", "--max-bytes", "16M", "--iters", "10", "--warmup", "3",
              "--top-k", "4"]
    # intra: 4 ranks on one node, flat. experts 8 (2 per rank), top-4: a rank sends a token to
    # each other rank holding one of its experts.
    P, E, K, W = 4, 8, 4, 1024
    out = run(mpirun_prefix(P, env) + [args.bin, "bench", "a2a", "--ranks-per-node", str(P),
                                        "--algos", "flat"] + common, env=env).stdout
    xs, ys = [], []
    for bytes_rank, algo, _, time_us, _, _ in a2a_rows(out):
        tokens = bytes_rank / (K * W * 4)
        sent = tokens * (P - 1) * hit_probability(E, K, E // P) * W * 4
        xs.append(sent)
        ys.append(time_us * 1e-6)
    a, b = linear_fit(xs, ys)
    intra = (1.0 / b if b > 0 else xs[-1] / ys[-1], max(0.0, a / (P - 1)))
    # inter: 2 emulated nodes x 2 ranks, hierarchical, both legs; one message per other node.
    out = run(mpirun_prefix(4, env) + [args.bin, "bench", "a2a", "--ranks-per-node", "2",
                                        "--algos", "hier", "--internode", "ucx,mpi"] + common,
              env=env).stdout
    fits = {}
    for leg in ("ucx", "mpi"):
        pts = [(r[5], r[4] * 1e-6) for r in a2a_rows(out) if r[2] == leg and r[5] > 0]
        a, b = linear_fit([p[0] for p in pts], [p[1] for p in pts])
        fits[leg] = (1.0 / b if b > 0 else pts[-1][0] / pts[-1][1], max(0.0, a))
    return intra, fits["ucx"], fits["mpi"]


def plan_json(args, cluster, ranks, sets):
    cmd = [args.bin, "plan", "--config", args.config, "--cluster", cluster, "--ranks", str(ranks),
           "--this", "--json"] + sum((["--set", s] for s in sets), [])
    return json.loads(run(cmd).stdout)[0]


def base_memory(args, sets, cluster_text):
    work = tempfile.mkdtemp(prefix="plan-calibrate-")
    out = os.path.join(work, "run")
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
    run(mpirun_prefix(1, env) + [args.bin, "train", "--config", args.config, "--set", f"run.out_dir={out}",
                     "--set", "train.steps=3", "--set", "eval.every=0", "--set", "log.every=1",
                     "--set", "eval.sequences=1"] + sum((["--set", s] for s in sets), []), env=env)
    peak = max(json.loads(l).get("peak_mem_bytes", 0)
               for l in open(os.path.join(out, "metrics.jsonl")) if l.strip())
    zero = os.path.join(work, "zero-base.yaml")  # the cluster with base_bytes 0
    with open(zero, "w") as f:
        f.write(cluster_text)
    predicted = plan_json(args, zero, 1, sets)["memory_bytes"]
    return max(0.0, peak - predicted), peak


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    ap.add_argument("--out", default="clusters/this-machine.yaml")
    ap.add_argument("--nodes", type=int, default=4, help="emulated nodes the file offers")
    ap.add_argument("--ranks-per-node", type=int, default=2)
    args = ap.parse_args()
    sets = [f"data.path={args.data}"]

    print("timing GEMMs and the optimizer (bench train)", file=sys.stderr, flush=True)
    peak, half, optimizer_s, shapes = gemm_and_optimizer(args, sets)
    print("timing the all-to-all (bench a2a)", file=sys.stderr, flush=True)
    intra, inter, inter_mpi = links(args)

    def cluster_text(base, mem_bw):
        return (f"name: this-machine\noverlaps_comm: false\none_host: true\n"
                f"nodes: {args.nodes}\nranks_per_node: {args.ranks_per_node}\nmemory_bytes: 0\n"
                f"base_bytes: {base:.4g}\ncompute:\n  gemm_flops: {peak:.4g}\n"
                f"  gemm_half_dim: {half:.4g}\n  mem_bandwidth: {mem_bw:.4g}\nlinks:\n"
                f"  intra: {{bandwidth: {intra[0]:.4g}, latency_s: {intra[1]:.3g}}}\n"
                f"  inter: {{bandwidth: {inter[0]:.4g}, latency_s: {inter[1]:.3g}}}\n"
                f"  inter_mpi: {{bandwidth: {inter_mpi[0]:.4g}, latency_s: {inter_mpi[1]:.3g}}}\n")

    # mem_bandwidth: the optimizer pass streams 8 + 28 bytes per parameter of the 1-rank run.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cluster_text(0, 1e10))
        provisional = f.name
    params = plan_json(args, provisional, 1, sets)["memory_terms"]["parameters"] / 4
    mem_bw = 36 * params / optimizer_s
    print("measuring the process's own memory (1-rank train)", file=sys.stderr, flush=True)
    with open(provisional, "w") as f:
        f.write(cluster_text(0, mem_bw))
    base, peak_rss = base_memory(args, sets, open(provisional).read())
    os.unlink(provisional)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    header = (
        f"# This machine, measured by bench/plan_calibrate.py on {datetime.date.today()} "
        f"(commit {commit}):\n"
        f"#   {os.cpu_count()} cores, every emulated node on this host (one_host: compute and\n"
        f"#   memory shared by the ranks of a run; memory_bytes 0 = host memory / ranks).\n"
        f"#   gemm_flops, gemm_half_dim: fit of {shapes} GEMM shapes of `switchyard bench train "
        f"--config {args.config}`.\n"
        f"#   mem_bandwidth: its optimizer pass, {optimizer_s * 1e3:.1f} ms over "
        f"{params:.0f} parameters x 36 bytes.\n"
        f"#   intra: `bench a2a` flat, 4 ranks on one node; inter / inter_mpi: `bench a2a`\n"
        f"#   hierarchical, 2 emulated nodes x 2 ranks, UCX over TCP / MPI (its inter-node stage).\n"
        f"#   base_bytes: a 1-rank train of {args.config} peaked at {peak_rss / 2**20:.1f} MiB.\n")
    with open(args.out, "w") as f:
        f.write(header + cluster_text(base, mem_bw))
    print(f"wrote {args.out}", file=sys.stderr)
    print(open(args.out).read())


if __name__ == "__main__":
    main()

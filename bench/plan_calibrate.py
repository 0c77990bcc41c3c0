#!/usr/bin/env python3
"""Measures this machine with switchyard's own benches and writes a cluster file for
`switchyard plan` (clusters/README.md explains every key):

  compute   the host's figures with every core running a one-thread rank (what the ranks of a
            multi-rank run on this host do), from `switchyard bench train` at several
            micro-batches (1, 2, 4, 8, 16), alone on every core and as one one-thread copy per
            core at once: the GEMM tables' per-core column (cblas_sgemm on the config's own
            shapes at every row count the planner is asked about, one single-threaded call per
            core at once) fitted to rate = gemm_flops * m / (m + gemm_half_dim) against the
            smallest dimension m (1/rate is linear in 1/m); the copies' optimizer time gives
            mem_bandwidth (8 bytes per parameter for zeroing and the norm, 28 per AdamW
            update); what their forward + backward take beyond the GEMMs the fit predicts,
            against the planner's elementwise bytes and its layer x micro-batch passes (least
            squares), gives elementwise_bandwidth and layer_overhead_s; a copy's step against
            the alone run's gives thread_efficiency (one rank split over every core).
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
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plan_validate import (add_common_args, metrics_lines, mpirun_prefix, plan_json,  # noqa: E402
                           run, set_args)


def linear_fit(xs, ys):
    """Least squares y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    return my - b * mx, b


def bench_train_cmd(args, sets, micro_batch):
    return [args.bin, "bench", "train", "--config", args.config, "--steps", "5", "--warmup", "1",
            "--no-torch", "--set", f"train.micro_batch={micro_batch}"] + set_args(sets)


def parse_bench_train(out):
    """The GEMM table's points (1/m, 1/rate with one single-threaded call per core at once: the
    host's rate for ranks of one thread) and the forward, backward, optimizer and step medians
    (seconds) of `switchyard bench train`'s output."""
    points, times = [], {}
    for line in out.splitlines():
        f = line.split()
        for key, label in (("forward", "  forward (ms)"), ("backward", "  backward (ms)"),
                           ("optimizer", "  optimizer (ms)"), ("step", "step time, median (ms)")):
            if line.startswith(label):
                times[key] = float(f[-1]) * 1e-3
        # product M N K op calls threaded per-core (the product name may hold spaces)
        if len(f) >= 8 and f[-4] in ("NN", "NT", "TN", "TT") and f[-7].isdigit():
            m = min(int(f[-7]), int(f[-6]), int(f[-5]))
            points.append((1.0 / m, 1.0 / (float(f[-1]) * 1e9)))
    if not points or len(times) != 4:
        sys.exit("could not read the GEMM table or the times of `bench train`:\n" + out)
    return points, times


def bench_train(args, sets, micro_batch, cores):
    """At one micro-batch: `bench train` alone on every core (one rank of `cores` threads: its
    GEMM table and its times), then `cores` copies of it at once, one thread each (what every
    rank of a multi-rank run does on this host: the median copy's times)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(cores))
    points, threaded = parse_bench_train(run(bench_train_cmd(args, sets, micro_batch), env=env).stdout)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(bench_train_cmd(args, sets, micro_batch), env=env, text=True,
                              errors="replace", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(cores)]
    copies = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"bench train failed (exit {p.returncode}):\n{out[-3000:]}\n{err[-3000:]}")
        copies.append(parse_bench_train(out)[1])
    copy = {k: statistics.median(c[k] for c in copies) for k in copies[0]}
    return points, threaded, copy


def gemm_fit(points):
    """rate = gemm_flops * m / (m + gemm_half_dim): 1/rate is linear in 1/m."""
    a, b = linear_fit([p[0] for p in points], [p[1] for p in points])
    peak = 1.0 / a if a > 0 else 1.0 / min(p[1] for p in points)
    return peak, max(0.0, b * peak)


def two_term_fit(rows):
    """Least squares y = u x1 + v x2 (no intercept) with u, v >= 0, over rows (x1, x2, y)."""
    s11 = sum(r[0] * r[0] for r in rows)
    s22 = sum(r[1] * r[1] for r in rows)
    s12 = sum(r[0] * r[1] for r in rows)
    s1y = sum(r[0] * r[2] for r in rows)
    s2y = sum(r[1] * r[2] for r in rows)
    det = s11 * s22 - s12 * s12
    if det > 0:
        u, v = (s1y * s22 - s2y * s12) / det, (s2y * s11 - s1y * s12) / det
        if u >= 0 and v >= 0:
            return u, v
    # one term alone, whichever fits better
    u1 = max(0.0, s1y / s11) if s11 > 0 else 0.0
    v2 = max(0.0, s2y / s22) if s22 > 0 else 0.0
    err1 = sum((r[2] - u1 * r[0]) ** 2 for r in rows)
    err2 = sum((r[2] - v2 * r[1]) ** 2 for r in rows)
    return (u1, 0.0) if err1 <= err2 else (0.0, v2)


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


def base_memory(args, sets, cluster):
    """What a 1-rank train of the config peaks at beyond the planner's terms for it on `cluster`
    (a file with base_bytes 0): base_bytes; and that peak."""
    work = tempfile.mkdtemp(prefix="plan-calibrate-")
    try:
        out = os.path.join(work, "run")
        env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
        run(mpirun_prefix(1, env) + [args.bin, "train", "--config", args.config, "--set",
                                     f"run.out_dir={out}", "--set", "train.steps=3", "--set",
                                     "eval.every=0", "--set", "log.every=1", "--set",
                                     "eval.sequences=1"] + set_args(sets), env=env)
        peak = max(l.get("peak_mem_bytes", 0) for l in metrics_lines(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    predicted = plan_json(args, cluster, 1, sets)["memory_bytes"]
    return max(0.0, peak - predicted), peak


def cpu_model():
    """The CPU's name from /proc/cpuinfo, or "this CPU"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "this CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    ap.add_argument("--out", default="clusters/this-machine.yaml")
    ap.add_argument("--nodes", type=int, default=4, help="emulated nodes the file offers")
    ap.add_argument("--ranks-per-node", type=int, default=2)
    ap.add_argument("--micro-batches", default="1,2,4,8,16",
                    help="train.micro_batch values `bench train` runs at (comma-separated)")
    args = ap.parse_args()
    sets = [f"data.path={args.data}"]
    cores = os.cpu_count() or 1
    # The OpenBLAS kernels bench/plan_validate.py trains with (and the tests use), unless set:
    # on an AVX-512 CPU OpenBLAS's own pick multiplies at other rates.
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
    kernels = os.environ["OPENBLAS_CORETYPE"] or "OpenBLAS's own pick"
    cpu = cpu_model()

    micro_batches = [int(x) for x in args.micro_batches.split(",") if x]
    runs = {}
    for i, mb in enumerate(micro_batches):
        print(f"[{i + 1}/{len(micro_batches)}] bench train at micro-batch {mb}: alone on "
              f"{cores} threads, then {cores} copies of one thread at once",
              file=sys.stderr, flush=True)
        runs[mb] = bench_train(args, sets, mb, cores)
    points = [p for pts, _, _ in runs.values() for p in pts]
    peak, half = gemm_fit(points)
    # A copy runs on one core: the host's streaming rate is `cores` times its optimizer's.
    optimizer_s = statistics.median(c["optimizer"] for _, _, c in runs.values()) / cores
    # One rank on every core against the copies: its threads' share of a linear speed-up.
    ratios = {mb: c["step"] / (cores * t["step"]) for mb, (_, t, c) in runs.items()}
    efficiency = min(1.0, statistics.median(ratios.values())) if cores > 1 else 1.0
    print("thread efficiency per micro-batch (a copy's step / (cores x the threaded step)): " +
          ", ".join(f"{mb}: {r:.3f}" for mb, r in ratios.items()), file=sys.stderr)
    print("timing the all-to-all (bench a2a)", file=sys.stderr, flush=True)
    intra, inter, inter_mpi = links(args)

    def cluster_text(base, mem_bw, ew_bw, overhead, thread_efficiency):
        return (f"name: this-machine\noverlaps_comm: false\none_host: true\ncores: {cores}\n"
                f"thread_efficiency: {thread_efficiency:.3g}\n"
                f"nodes: {args.nodes}\nranks_per_node: {args.ranks_per_node}\nmemory_bytes: 0\n"
                f"base_bytes: {base:.4g}\ncompute:\n  gemm_flops: {peak:.4g}\n"
                f"  gemm_half_dim: {half:.4g}\n  mem_bandwidth: {mem_bw:.4g}\n"
                f"  elementwise_bandwidth: {ew_bw:.4g}\n  layer_overhead_s: {overhead:.4g}\n"
                f"links:\n"
                f"  intra: {{bandwidth: {intra[0]:.4g}, latency_s: {intra[1]:.3g}}}\n"
                f"  inter: {{bandwidth: {inter[0]:.4g}, latency_s: {inter[1]:.3g}}}\n"
                f"  inter_mpi: {{bandwidth: {inter_mpi[0]:.4g}, latency_s: {inter_mpi[1]:.3g}}}\n")

    # A provisional file with unit rates: the planner's terms at 1 rank (on every core, at the
    # host's figures: thread_efficiency 1 here) give the parameters (for mem_bandwidth: the
    # optimizer streams 8 + 28 bytes per parameter), the GEMM time at each micro-batch, the
    # elementwise bytes (elementwise seconds x 1e10 B/s) and the layer x micro-batch count (the
    # fixed cost's seconds at 1 s each).
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cluster_text(0, 1e10, 1e10, 1.0, 1.0))
        provisional = f.name
    params = plan_json(args, provisional, 1, sets)["memory_terms"]["parameters"] / 4
    mem_bw = 36 * params / optimizer_s
    # What a one-thread copy's forward + backward take beyond the predicted GEMMs (in host
    # seconds: a copy has 1 / cores of the host), against the elementwise bytes and the layer
    # passes: elementwise_bandwidth and layer_overhead_s.
    rows = []
    for mb, (_, _, c) in runs.items():
        terms = plan_json(args, provisional, 1, sets + [f"train.micro_batch={mb}"])[
            "compute_terms_ms"]
        gemm_s = (terms["attention"] + terms["experts"] + terms["dense"]) * 1e-3
        rows.append((terms["elementwise"] * 1e-3 * 1e10, terms["fixed per layer"] * 1e-3,
                     (c["forward"] + c["backward"]) / cores - gemm_s, mb, gemm_s))
    inv_bw, overhead = two_term_fit(rows)
    ew_bw = 1.0 / inv_bw if inv_bw > 0 else 1e15
    print("micro-batch: a copy's forward+backward ms / cores = GEMMs predicted + the rest (fit)",
          file=sys.stderr)
    for b, n, y, mb, g in rows:
        print(f"  {mb:3d}: {(y + g) * 1e3:7.1f} = {g * 1e3:6.1f} + {y * 1e3:6.1f} "
              f"(fit {(b * inv_bw + n * overhead) * 1e3:6.1f})", file=sys.stderr)
    print("measuring the process's own memory (1-rank train)", file=sys.stderr, flush=True)
    with open(provisional, "w") as f:
        f.write(cluster_text(0, mem_bw, ew_bw, overhead, 1.0))
    base, peak_rss = base_memory(args, sets, provisional)
    os.unlink(provisional)

    # The binary's own commit (its --version), not the working directory's (QA: "?" outside a
    # checkout, another commit with a --bin from elsewhere).
    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout
    commit = version.split("(commit ")[1].split(")")[0] if "(commit " in version else "?"
    mbs = ",".join(str(mb) for mb in micro_batches)
    header = (
        f"# This machine, measured by bench/plan_calibrate.py on {datetime.date.today()} "
        f"(commit {commit}):\n"
        f"#   {cpu}, {cores} cores, OpenBLAS kernels: {kernels} (OPENBLAS_CORETYPE).\n"
        f"#   Every emulated node on this host (one_host: compute and\n"
        f"#   memory shared by the ranks of a run; memory_bytes 0 = host memory / ranks).\n"
        f"#   Compute figures are the host's with every core running a one-thread rank.\n"
        f"#   gemm_flops, gemm_half_dim: fit of {len(points)} GEMM shapes of `switchyard bench "
        f"train --config {args.config}` at micro-batches {mbs} (its per-core column).\n"
        f"#   mem_bandwidth: the optimizer pass of {cores} one-thread copies of it at once, "
        f"{optimizer_s * cores * 1e3:.1f} ms each over {params:.0f} parameters x 36 bytes.\n"
        f"#   elementwise_bandwidth, layer_overhead_s: those copies' forward + backward beyond\n"
        f"#   the GEMMs the fit predicts, against the elementwise bytes and the layer passes\n"
        f"#   (least squares over the micro-batches).\n"
        f"#   thread_efficiency: a copy's step / ({cores} x the step of one {cores}-thread "
        f"run), median over the micro-batches.\n"
        f"#   intra: `bench a2a` flat, 4 ranks on one node; inter / inter_mpi: `bench a2a`\n"
        f"#   hierarchical, 2 emulated nodes x 2 ranks, UCX over TCP / MPI (its inter-node stage).\n"
        f"#   base_bytes: a 1-rank train of {args.config} peaked at {peak_rss / 2**20:.1f} MiB.\n")
    with open(args.out, "w") as f:
        f.write(header + cluster_text(base, mem_bw, ew_bw, overhead, efficiency))
    print(f"wrote {args.out}", file=sys.stderr)
    print(open(args.out).read())


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Runs `switchyard bench a2a` several times and prints the markdown table of comm/README.md.

One run of the bench already reports, per row, the median over its --iters of the slowest rank's
dispatch; on a small shared machine whole runs still differ by 10-30 %, so this script runs the
command --runs times (interleaving nothing: every run is the full sweep) and prints, per row, the
median of the run medians with their range, bold where hierarchical beats flat.

    python3 bench/a2a_table.py --runs 5 -- UCX_TLS=tcp,self mpirun ... switchyard bench a2a ...

Everything after `--` is the command (leading NAME=VALUE words become its environment). Standard
library only.
"""
import argparse
import collections
import os
import statistics
import subprocess
import sys


def parse_rows(text):
    """{(bytes, skew, 'flat/mpi'|'hier/ucx'|'hier/mpi'): (time_us, inter_B, msgs)} of one run."""
    rows = {}
    for line in text.splitlines():
        f = line.split()
        # bytes tokens algo inter skew time algbw busbw xfer sync comb layout inter_B msgs #wrong
        if len(f) < 15 or not f[0].isdigit():
            continue
        if int(f[14]) != 0:
            sys.exit(f"a row came back wrong (#wrong {f[14]}): {line.strip()}")
        rows[(int(f[0]), float(f[4]), f[2] + "/" + f[3])] = (float(f[5]), int(f[12]),
                                                              f"{float(f[13]):g}")
    return rows


def run_once(command):
    env = dict(os.environ)
    words = list(command)
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    done = subprocess.run(words, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the bench failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_rows(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of the command (default 5)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the bench command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the bench command after --")
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    times = collections.defaultdict(list)
    volume = {}
    for i in range(args.runs):
        for key, (time_us, inter_b, msgs) in run_once(command).items():
            times[key].append(time_us)
            volume[key] = (inter_b, msgs)
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr, flush=True)

    algos = [("flat/mpi", "flat (MPI/UCX-TCP)"), ("hier/ucx", "hier, UCX put"),
             ("hier/mpi", "hier, MPI")]
    present = [(a, title) for a, title in algos if any(k[2] == a for k in times)]
    print(f"dispatch time in us: median of {args.runs} runs (range of the run medians)\n")
    print("| bytes/rank | skew | " + " | ".join(t for _, t in present) +
          " | inter B/rank flat -> hier | msgs/rank flat -> hier |")
    print("|---:|---:|" + "---:|" * len(present) + "---:|---:|")
    wins = collections.Counter()
    rows = sorted({(k[0], k[1]) for k in times})
    for size, skew in rows:
        flat = times.get((size, skew, "flat/mpi"))
        cells = []
        for algo, _ in present:
            t = times.get((size, skew, algo))
            if not t:
                cells.append("-")
                continue
            med = statistics.median(t)
            text = f"{med:.0f} ({min(t):.0f}-{max(t):.0f})"
            if algo != "flat/mpi" and flat and med < statistics.median(flat):
                text = f"**{med:.0f}** ({min(t):.0f}-{max(t):.0f})"
                wins[algo] += 1
            cells.append(text)
        flat_v = volume.get((size, skew, "flat/mpi"), ("-", "-"))
        hier_v = next((volume[(size, skew, a)] for a in ("hier/ucx", "hier/mpi")
                       if (size, skew, a) in volume), ("-", "-"))
        label = f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size / 2**10:g} KiB"
        print(f"| {label} | {skew:g} | " + " | ".join(cells) +
              f" | {flat_v[0]} -> {hier_v[0]} | {flat_v[1]} -> {hier_v[1]} |")
    for algo, title in present[1:]:
        print(f"\n{title} beats flat in {wins[algo]} of {len(rows)} rows", end="")
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compares the losses of a run's metrics.jsonl with a reference run's (jobs/gpu_check.sh stage d).

    gpu_compare_metrics.py --ref cpu.jsonl --run gpu.jsonl --rtol 1e-3 [--label fp32]
                           [--val-ref gpu-fp32.jsonl --val-rtol 0.02]

Every train line of the reference (SPEC 6: `step, loss, lm_loss, aux_loss, z_loss`, ...) must
have a line of the same step in the run, and each of its four losses must agree within
|run - ref| <= rtol * |ref| (relative, per value; NaN never agrees). The eval lines' val_loss are
compared the same way at the steps both runs evaluated. With --val-ref, the run's val_loss must
also be within --val-rtol of that second run's (the bf16 run learns as the fp32 one does). A
resumed run's repeated step counts once (its last line, as the trainer's own readers do).

Prints a table of the largest relative errors and one verdict line; exit 0 pass, 1 fail,
2 missing or unreadable input.
"""

import argparse
import json
import math
import sys

LOSS_KEYS = ("loss", "lm_loss", "aux_loss", "z_loss")


def read_metrics(path):
    """(train lines by step, val_loss by step); the last line of a step wins."""
    train, val = {}, {}
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    j = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{n}: not JSON ({e})") from None
                if "val_loss" in j:
                    val[int(j["step"])] = float(j["val_loss"])
                elif "loss" in j:
                    train[int(j["step"])] = j
    except OSError as e:
        print(f"gpu_compare_metrics: {e}", file=sys.stderr)
        sys.exit(2)
    return train, val


def rel_err(got, ref):
    got, ref = float(got), float(ref)
    if math.isnan(got) or math.isnan(ref) or math.isinf(got) or math.isinf(ref):
        return math.inf
    if ref == 0.0:
        return 0.0 if got == 0.0 else math.inf
    return abs(got - ref) / abs(ref)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="reference metrics.jsonl (the CPU run)")
    ap.add_argument("--run", required=True, help="metrics.jsonl to check")
    ap.add_argument("--rtol", type=float, required=True, help="relative tolerance per loss")
    ap.add_argument("--label", default="run", help="name of the run in the verdict line")
    ap.add_argument("--val-ref", help="a second run whose val_loss the run must match")
    ap.add_argument("--val-rtol", type=float, default=0.02, help="tolerance against --val-ref")
    args = ap.parse_args()

    ref_train, ref_val = read_metrics(args.ref)
    run_train, run_val = read_metrics(args.run)
    if not ref_train:
        print(f"gpu_compare_metrics: {args.ref} has no train lines", file=sys.stderr)
        sys.exit(2)

    problems = []
    missing = sorted(set(ref_train) - set(run_train))
    if missing:
        problems.append(f"{len(missing)} reference steps missing from the run "
                        f"(first {missing[0]}, run has {len(run_train)} train lines)")
    worst = {}  # key -> (rel err, step, got, ref)
    first_bad = None
    for step in sorted(set(ref_train) & set(run_train)):
        for key in LOSS_KEYS:
            if key not in ref_train[step]:
                continue
            if key not in run_train[step]:
                problems.append(f"step {step} has no {key} in the run")
                continue
            got, ref = run_train[step][key], ref_train[step][key]
            e = rel_err(got, ref)
            if key not in worst or e > worst[key][0]:
                worst[key] = (e, step, got, ref)
            if e > args.rtol and first_bad is None:
                first_bad = (step, key, got, ref, e)
    if first_bad:
        step, key, got, ref, e = first_bad
        problems.append(f"{key} at step {step}: {got!r} vs {ref!r} (rel. error {e:.2e} > "
                        f"{args.rtol:g}; first of the steps outside)")
    for step in sorted(set(ref_val) & set(run_val)):
        e = rel_err(run_val[step], ref_val[step])
        worst_v = worst.get("val_loss")
        if worst_v is None or e > worst_v[0]:
            worst["val_loss"] = (e, step, run_val[step], ref_val[step])
        if e > args.rtol:
            problems.append(f"val_loss at step {step}: {run_val[step]!r} vs {ref_val[step]!r} "
                            f"(rel. error {e:.2e} > {args.rtol:g})")
    if ref_val and not set(ref_val) & set(run_val):
        problems.append("no evaluation step in common with the reference")
    if args.val_ref:
        _, other_val = read_metrics(args.val_ref)
        common = sorted(set(other_val) & set(run_val))
        if not common:
            problems.append(f"no evaluation step in common with {args.val_ref}")
        for step in common:
            e = rel_err(run_val[step], other_val[step])
            key = "val_loss vs --val-ref"
            if key not in worst or e > worst[key][0]:
                worst[key] = (e, step, run_val[step], other_val[step])
            if e > args.val_rtol:
                problems.append(f"val_loss at step {step}: {run_val[step]!r} vs --val-ref "
                                f"{other_val[step]!r} (rel. {e:.2e} > {args.val_rtol:g})")

    print(f"{'value':<22} {'max rel. error':>14} {'at step':>8} {'run':>14} {'reference':>14}")
    for key, (e, step, got, ref) in worst.items():
        print(f"{key:<22} {e:>14.3e} {step:>8} {float(got):>14.6g} {float(ref):>14.6g}")
    n = len(set(ref_train) & set(run_train))
    if problems:
        print(f"FAIL {args.label}: " + "; ".join(problems))
        sys.exit(1)
    print(f"PASS {args.label}: {n} steps x {len(LOSS_KEYS)} losses within rtol {args.rtol:g}"
          + (f", val_loss within {args.val_rtol:g} of --val-ref" if args.val_ref else ""))


if __name__ == "__main__":
    main()

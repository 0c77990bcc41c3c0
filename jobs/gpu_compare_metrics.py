#!/usr/bin/env python3
"""Compares the losses of a run's metrics.jsonl with a reference run's (jobs/gpu_check.sh stage d).

    gpu_compare_metrics.py --ref cpu.jsonl --run gpu.jsonl --rtol 1e-3 [--label fp32]
        [--strict-steps 10 --window 10 --window-rtol loss=0.15,lm_loss=0.15,aux_loss=0.25,z_loss=0.4]
        [--ref-val-rtol 0.1] [--val-ref gpu-fp32.jsonl --val-rtol 0.1]

Every train line of the reference (SPEC 6: `step, loss, lm_loss, aux_loss, z_loss`, ...) must
have a line of the same step in the run. Without --strict-steps each of its four losses must agree
within |run - ref| <= rtol * |ref| at every step (relative, per value; NaN never agrees): the check
of runs that should be equal up to rounding for their whole length (jobs/gpu_rehearse.sh, 1e-5).

Two runs that differ only in the order of their floating-point sums (the GPU against the CPU, or 2
ranks against 1) agree to ~1e-8 for 10 to 36 steps (jobs/README.md); then a near-tied routing
decision flips and they drift apart chaotically, by a few percent per step, while learning alike. With
--strict-steps N only steps 1..N are checked per step (at --rtol); after N, the mean of each loss
over each window of --window steps (N+1..N+W, N+W+1..N+2W, ...; the steps both runs have, a last
window may be shorter) must be within --window-rtol of the reference's mean (a loss not named
there: --rtol). A kernel bug shows within a few steps or moves every window's mean.

The eval lines' val_loss are compared at the steps both runs evaluated, within --ref-val-rtol
(default --rtol). With --val-ref, the run's val_loss must also be within --val-rtol of that second
run's (the bf16 run learns as the fp32 one does). A resumed run's repeated step counts once (its
last line, as the trainer's own readers do).

Prints a calibration table (the worst per-step error of the strict part, the per-step errors after
it, each window's error per loss, the steps where the runs first part by 1e-5 ... 1e-2, each
val_loss) and one verdict line; exit 0 pass, 1 fail, 2 missing or unreadable input or bad usage.
"""

import argparse
import json
import math
import sys

LOSS_KEYS = ("loss", "lm_loss", "aux_loss", "z_loss")
ONSETS = (1e-5, 1e-4, 1e-3, 1e-2)  # the calibration's "first step off by more than"


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


def usage(msg):
    print(f"gpu_compare_metrics: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_window_rtol(text):
    """'loss=2e-2,z_loss=1e-1' -> {key: tolerance}; a bad key or number is a usage error."""
    tols = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in LOSS_KEYS:
            usage(f"--window-rtol: '{part}' is not <loss>=<tolerance> with <loss> one of "
                  f"{', '.join(LOSS_KEYS)}")
        try:
            tols[key] = float(value)
        except ValueError:
            usage(f"--window-rtol: '{value}' of {key} is not a number")
    return tols


def span(steps):
    return f"{steps[0]}-{steps[-1]}" if steps else "none"


class Comparison:
    """The run against the reference: problems found and the calibration table's rows."""

    def __init__(self, args, ref, run):
        self.args = args
        (self.ref_train, self.ref_val), (self.run_train, self.run_val) = ref, run
        self.problems = []
        self.common = sorted(set(self.ref_train) & set(self.run_train))
        n = args.strict_steps
        self.strict = [s for s in self.common if n is None or s <= n]
        self.late = [s for s in self.common if n is not None and s > n]

    def value(self, train, step, key):
        return float(train[step][key])

    def per_step(self, steps, checked):
        """{key: (worst rel. error, step, run, ref)} over `steps`; with `checked`, the first value
        outside --rtol is a problem."""
        worst, first_bad = {}, None
        for step in steps:
            for key in LOSS_KEYS:
                if key not in self.ref_train[step]:
                    continue
                if key not in self.run_train[step]:
                    self.problems.append(f"step {step} has no {key} in the run")
                    continue
                got, ref = self.run_train[step][key], self.ref_train[step][key]
                e = rel_err(got, ref)
                if key not in worst or e > worst[key][0]:
                    worst[key] = (e, step, got, ref)
                if checked and e > self.args.rtol and first_bad is None:
                    first_bad = (step, key, got, ref, e)
        if first_bad:
            step, key, got, ref, e = first_bad
            self.problems.append(f"{key} at step {step}: {got!r} vs {ref!r} (rel. error {e:.2e} "
                                 f"> {self.args.rtol:g}; first of the steps outside)")
        return worst

    def onsets(self):
        """For each of ONSETS, the first step at which some loss is off by more than it."""
        first = {}
        for step in self.common:
            e = max((rel_err(self.run_train[step][k], self.ref_train[step][k]) for k in LOSS_KEYS
                     if k in self.ref_train[step] and k in self.run_train[step]), default=0.0)
            for t in ONSETS:
                if e > t and t not in first:
                    first[t] = step
        return first

    def windows(self):
        """[(steps, {key: (rel. error of the mean, run mean, ref mean)})] after --strict-steps."""
        n, w = self.args.strict_steps, self.args.window
        out = []
        if n is None or not self.late:
            return out
        start = n + 1
        while start <= self.late[-1]:
            steps = [s for s in self.late if start <= s < start + w]
            start += w
            if not steps:
                continue
            errs = {}
            for key in LOSS_KEYS:
                have = [s for s in steps if key in self.ref_train[s] and key in self.run_train[s]]
                if not have:
                    continue
                got = sum(self.value(self.run_train, s, key) for s in have) / len(have)
                ref = sum(self.value(self.ref_train, s, key) for s in have) / len(have)
                errs[key] = (rel_err(got, ref), got, ref)
            out.append((steps, errs))
        return out

    def val_rows(self, other_val, tol, what):
        """[(step, run, other, rel. error)] at the evaluations both have; outside `tol`: a problem."""
        rows = []
        for step in sorted(set(other_val) & set(self.run_val)):
            e = rel_err(self.run_val[step], other_val[step])
            rows.append((step, self.run_val[step], other_val[step], e))
            if e > tol:
                self.problems.append(f"val_loss at step {step}: {self.run_val[step]!r} vs {what}"
                                     f"{other_val[step]!r} (rel. error {e:.2e} > {tol:g})")
        return rows


def print_worst(title, worst):
    print(title)
    print(f"  {'value':<22} {'max rel. error':>14} {'at step':>8} {'run':>14} {'reference':>14}")
    for key, (e, step, got, ref) in worst.items():
        print(f"  {key:<22} {e:>14.3e} {step:>8} {float(got):>14.6g} {float(ref):>14.6g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="reference metrics.jsonl (the CPU run)")
    ap.add_argument("--run", required=True, help="metrics.jsonl to check")
    ap.add_argument("--rtol", type=float, required=True,
                    help="relative tolerance per loss and step (of the first --strict-steps)")
    ap.add_argument("--label", default="run", help="name of the run in the verdict line")
    ap.add_argument("--strict-steps", type=int, metavar="N",
                    help="check steps 1..N per step, later ones by window means (default: all "
                         "per step)")
    ap.add_argument("--window", type=int, default=10, metavar="W",
                    help="steps per window after --strict-steps (default 10)")
    ap.add_argument("--window-rtol", default="", metavar="loss=A,lm_loss=B,aux_loss=C,z_loss=D",
                    help="relative tolerance of each loss's window mean (a loss not named: --rtol)")
    ap.add_argument("--ref-val-rtol", type=float, metavar="R",
                    help="tolerance of val_loss against --ref (default --rtol)")
    ap.add_argument("--val-ref", help="a second run whose val_loss the run must match")
    ap.add_argument("--val-rtol", type=float, default=0.02, help="tolerance against --val-ref")
    args = ap.parse_args()
    if args.strict_steps is not None and args.strict_steps < 0:
        usage(f"--strict-steps: got {args.strict_steps}, expected >= 0")
    if args.window < 1:
        usage(f"--window: got {args.window}, expected >= 1")
    window_tols = parse_window_rtol(args.window_rtol)
    if window_tols and args.strict_steps is None:
        usage("--window-rtol needs --strict-steps (without it every step is checked at --rtol)")
    window_rtol = {k: window_tols.get(k, args.rtol) for k in LOSS_KEYS}
    ref_val_rtol = args.rtol if args.ref_val_rtol is None else args.ref_val_rtol

    c = Comparison(args, read_metrics(args.ref), read_metrics(args.run))
    if not c.ref_train:
        usage(f"{args.ref} has no train lines")
    missing = sorted(set(c.ref_train) - set(c.run_train))
    if missing:
        c.problems.append(f"{len(missing)} reference steps missing from the run "
                          f"(first {missing[0]}, run has {len(c.run_train)} train lines)")

    strict_worst = c.per_step(c.strict, checked=True)
    n = args.strict_steps
    if n is None:
        print_worst(f"every step ({span(c.strict)}), rtol {args.rtol:g}:", strict_worst)
    else:
        print_worst(f"steps {span(c.strict)}, each step within rtol {args.rtol:g}:", strict_worst)
        if c.late:
            print_worst(f"steps {span(c.late)}, each step (not checked; the runs may drift apart):",
                        c.per_step(c.late, checked=False))
    onsets = c.onsets()
    print("first step off by more than: " + ", ".join(
        f"{t:g}: {onsets.get(t, 'none')}" for t in ONSETS))

    windows = c.windows()
    worst_window = None  # (share of its tolerance, key, steps, rel. error)
    bad_windows = []
    if windows:
        print(f"windows of {args.window} steps after step {n}: relative error of each loss's mean")
        print(f"  {'steps':<10}" + "".join(f" {k:>10}" for k in LOSS_KEYS))
        for steps, errs in windows:
            label = span(steps) + ("" if len(steps) == args.window else f" ({len(steps)})")
            print(f"  {label:<10}" + "".join(
                f" {errs[k][0]:>10.2e}" if k in errs else f" {'-':>10}" for k in LOSS_KEYS))
            for key, (e, got, ref) in errs.items():
                share = e / window_rtol[key] if window_rtol[key] > 0 else math.inf
                if worst_window is None or share > worst_window[0]:
                    worst_window = (share, key, span(steps), e)
                if e > window_rtol[key]:
                    bad_windows.append(f"{key} mean over steps {span(steps)}: {got:.6g} vs "
                                       f"{ref:.6g} (rel. error {e:.2e} > {window_rtol[key]:g})")
        print(f"  {'tolerance':<10}" + "".join(f" {window_rtol[k]:>10.2e}" for k in LOSS_KEYS))
        print(f"  {'worst':<10}" + "".join(
            f" {max((e[k][0] for _, e in windows if k in e), default=0.0):>10.2e}"
            for k in LOSS_KEYS))
    if bad_windows:
        c.problems.append(f"{len(bad_windows)} window mean(s) outside: " + "; ".join(bad_windows[:4])
                          + ("; ..." if len(bad_windows) > 4 else ""))

    ref_rows = c.val_rows(c.ref_val, ref_val_rtol, "")
    if c.ref_val and not ref_rows:
        c.problems.append("no evaluation step in common with the reference")
    other_rows = []
    if args.val_ref:
        _, other_val = read_metrics(args.val_ref)
        other_rows = c.val_rows(other_val, args.val_rtol, "--val-ref ")
        if not other_rows:
            c.problems.append(f"no evaluation step in common with {args.val_ref}")
    for title, rows, tol in (("the reference", ref_rows, ref_val_rtol),
                             ("--val-ref", other_rows, args.val_rtol)):
        if rows:
            print(f"val_loss against {title} (rtol {tol:g}):")
            print(f"  {'step':>8} {'run':>14} {title[:14]:>14} {'rel. error':>12}")
            for step, got, ref, e in rows:
                print(f"  {step:>8} {got:>14.6g} {ref:>14.6g} {e:>12.3e}")

    if c.problems:
        print(f"FAIL {args.label}: " + "; ".join(c.problems))
        sys.exit(1)
    val_worst = max((r[3] for r in ref_rows), default=0.0)
    other_worst = max((r[3] for r in other_rows), default=0.0)
    if n is None:
        msg = f"{len(c.common)} steps x {len(LOSS_KEYS)} losses within rtol {args.rtol:g}"
        if ref_val_rtol != args.rtol:
            msg += f", val_loss within {ref_val_rtol:g}"
    else:
        msg = (f"{len(c.common)} steps; {span(c.strict)} x {len(LOSS_KEYS)} losses within rtol "
               f"{args.rtol:g} (worst {max((w[0] for w in strict_worst.values()), default=0.0):.1e})")
        if windows:
            tols = ", ".join(f"{k} {window_rtol[k]:g}" for k in LOSS_KEYS)
            share, key, steps, e = worst_window
            msg += (f"; {len(windows)} windows of {args.window} steps within {tols} (worst {key} "
                    f"{e:.1e} at {steps}, {share:.2f} of its tolerance)")
        if ref_rows:
            msg += f"; val_loss within {ref_val_rtol:g} (worst {val_worst:.1e})"
    if args.val_ref:
        msg += f", val_loss within {args.val_rtol:g} of --val-ref"
        if n is not None:
            msg += f" (worst {other_worst:.1e})"
    print(f"PASS {args.label}: {msg}")


if __name__ == "__main__":
    main()

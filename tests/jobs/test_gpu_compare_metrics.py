#!/usr/bin/env python3
"""jobs/gpu_compare_metrics.py (gpu_check.sh stage d's verdict) on hand-made metrics.jsonl files:
identical runs and runs within the tolerance pass; a loss just outside it, a missing step, a NaN,
a val_loss outside it and a bf16 run whose val_loss strays from the fp32 one's fail; a missing
file is a usage error (exit 2). With --strict-steps (stage d's settings): a run that drifts after
the strict steps, per step by more than --rtol but with window means within --window-rtol, passes
(and fails the every-step check); one window mean outside, a strict step outside, a NaN after the
strict steps fail, naming what; --ref-val-rtol sets val_loss's tolerance; bad options exit 2.

    python3 tests/jobs/test_gpu_compare_metrics.py <source dir>
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

SRC = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(SRC, "jobs", "gpu_compare_metrics.py")


def scaled(key, factor, first, last=None):
    """An edit for metrics()/long_metrics(): `key` times `factor` at steps first..last (NaN:
    the value becomes NaN)."""
    def edit(j):
        if first <= j["step"] <= (first if last is None else last):
            j[key] *= factor
    return edit


def metrics(steps=10, scale=1.0, val=(5, 10), val_scale=1.0, edit=None):
    """Lines of a made-up run: loss 5 - 0.2 step (its parts lm = 0.98, aux = 0.015, z = 0.005 of
    it), times `scale`; val_loss 4 - 0.1 step at `val` steps, times `val_scale`."""
    lines = []
    for s in range(1, steps + 1):
        loss = (5.0 - 0.2 * s) * scale
        j = {"step": s, "loss": loss, "lm_loss": 0.98 * loss, "aux_loss": 0.015 * loss,
             "z_loss": 0.005 * loss, "lr": 1e-3, "grad_norm": 1.0}
        if edit:
            edit(j)
        lines.append(j)
        if s in val:
            lines.append({"step": s, "val_loss": (4.0 - 0.1 * s) * val_scale})
    return lines


def long_metrics(steps=40, drift_after=None, drift=0.0, val=(20, 40), val_scale=1.0, edit=None):
    """A longer made-up run: loss 3 + 2 exp(-step / 20) (parts as metrics()); after step
    `drift_after` each loss is off by +-`drift` relative, alternating from step to step (a chaotic
    drift whose 10-step means stay close); val_loss 0.9 of the loss at `val` steps."""
    lines = []
    for s in range(1, steps + 1):
        loss = 3.0 + 2.0 * math.exp(-s / 20.0)
        f = 1.0
        if drift_after is not None and s > drift_after:
            f += drift if s % 2 else -drift
        j = {"step": s, "loss": loss * f, "lm_loss": 0.98 * loss * f, "aux_loss": 0.015 * loss * f,
             "z_loss": 0.005 * loss * f, "lr": 1e-3, "grad_norm": 1.0}
        if edit:
            edit(j)
        lines.append(j)
        if s in val:
            lines.append({"step": s, "val_loss": 0.9 * loss * val_scale})
    return lines


# Strict steps and window tolerances of the shape stage d uses (its own values: gpu_check.sh).
STAGE_D = ("--strict-steps", "10",
           "--window-rtol", "loss=2e-2,lm_loss=2e-2,aux_loss=5e-2,z_loss=1e-1")


class CompareMetrics(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, lines):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            for j in lines:
                f.write(json.dumps(j) + "\n")
        return path

    def run_cmp(self, ref, run, rtol, *extra):
        r = subprocess.run([sys.executable, SCRIPT, "--ref", ref, "--run", run, "--rtol", str(rtol),
                            *extra], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    def test_identical_runs_pass(self):
        ref = self.write("ref.jsonl", metrics())
        rc, out = self.run_cmp(ref, self.write("run.jsonl", metrics()), 1e-3)
        self.assertEqual(rc, 0, out)
        self.assertIn("PASS run: 10 steps x 4 losses", out)

    def test_within_and_just_outside_the_tolerance(self):
        ref = self.write("ref.jsonl", metrics())
        rc, out = self.run_cmp(ref, self.write("in.jsonl", metrics(scale=1 + 0.9e-3)), 1e-3)
        self.assertEqual(rc, 0, out)
        rc, out = self.run_cmp(ref, self.write("out.jsonl", metrics(scale=1 + 1.1e-3)), 1e-3)
        self.assertEqual(rc, 1, out)
        self.assertIn("FAIL", out)
        self.assertIn("at step 1", out)

    def test_one_component_at_one_step_fails(self):
        ref = self.write("ref.jsonl", metrics())
        run = self.write("run.jsonl", metrics(edit=scaled("z_loss", 1.05, 7)))
        rc, out = self.run_cmp(ref, run, 3e-2)
        self.assertEqual(rc, 1, out)
        self.assertIn("z_loss at step 7", out)

    def test_nan_and_missing_steps_fail(self):
        ref = self.write("ref.jsonl", metrics())
        nan = self.write("nan.jsonl", metrics(edit=scaled("loss", float("nan"), 3)))
        rc, out = self.run_cmp(ref, nan, 1.0)
        self.assertEqual(rc, 1, out)
        rc, out = self.run_cmp(ref, self.write("short.jsonl", metrics(steps=8)), 1e-3)
        self.assertEqual(rc, 1, out)
        self.assertIn("2 reference steps missing", out)

    def test_a_repeated_step_counts_once_its_last_line(self):
        ref = self.write("ref.jsonl", metrics())
        lines = metrics()
        stale = dict(lines[2], loss=99.0)
        run = self.write("resumed.jsonl", lines[:3] + [stale] + lines[:3] + lines[3:])
        rc, out = self.run_cmp(ref, run, 1e-3)
        self.assertEqual(rc, 0, out)

    def test_val_loss_and_the_fp32_run(self):
        ref = self.write("ref.jsonl", metrics())
        rc, out = self.run_cmp(ref, self.write("val.jsonl", metrics(val_scale=1.01)), 1e-3)
        self.assertEqual(rc, 1, out)
        self.assertIn("val_loss at step 5", out)
        fp32 = self.write("fp32.jsonl", metrics())
        near = self.write("bf16.jsonl", metrics(scale=1.01, val_scale=1.015))
        rc, out = self.run_cmp(ref, near, 3e-2, "--val-ref", fp32, "--val-rtol", "0.02")
        self.assertEqual(rc, 0, out)
        far = self.write("bf16-far.jsonl", metrics(scale=1.01, val_scale=1.025))
        rc, out = self.run_cmp(ref, far, 3e-2, "--val-ref", fp32, "--val-rtol", "0.02")
        self.assertEqual(rc, 1, out)
        self.assertIn("--val-ref", out)

    def test_missing_file_is_a_usage_error(self):
        ref = self.write("ref.jsonl", metrics())
        rc, out = self.run_cmp(ref, os.path.join(self.dir.name, "nope.jsonl"), 1e-3)
        self.assertEqual(rc, 2, out)

    def test_drift_after_the_strict_steps_within_the_windows_passes(self):
        ref = self.write("ref.jsonl", long_metrics())
        run = self.write("drift.jsonl", long_metrics(drift_after=10, drift=0.03))
        rc, out = self.run_cmp(ref, run, 1e-3, *STAGE_D)
        self.assertEqual(rc, 0, out)
        self.assertIn("PASS run: 40 steps; 1-10 x 4 losses within rtol 0.001", out)
        self.assertIn("3 windows of 10 steps within loss 0.02, lm_loss 0.02, aux_loss 0.05, "
                      "z_loss 0.1", out)
        # the calibration table: the per-step drift it did not check, each window's error
        self.assertRegex(out, r"steps 11-40, each step \(not checked.*\n.*\n  loss +3\.000e-02")
        self.assertIn("first step off by more than: 1e-05: 11, 0.0001: 11, 0.001: 11, 0.01: 11",
                      out)
        self.assertRegex(out, r"\n  21-30 +[0-9.e-]+ ")
        # the old every-step check fails the same run at its first drifting step
        rc, out = self.run_cmp(ref, run, 1e-3)
        self.assertEqual(rc, 1, out)
        self.assertIn("at step 11", out)

    def test_one_window_mean_outside_fails_naming_it(self):
        ref = self.write("ref.jsonl", long_metrics())
        run = self.write("run.jsonl", long_metrics(drift_after=10, drift=0.03,
                                                   edit=scaled("z_loss", 1.15, 21, 30)))
        rc, out = self.run_cmp(ref, run, 1e-3, *STAGE_D)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"FAIL run: 1 window mean\(s\) outside: z_loss mean over steps "
                              r"21-30: .* \(rel\. error 1\.50e-01 > 0\.1\)$")

    def test_a_strict_step_outside_fails(self):
        ref = self.write("ref.jsonl", long_metrics())
        run = self.write("run.jsonl", long_metrics(drift_after=10, drift=0.03,
                                                   edit=scaled("lm_loss", 1 + 2e-3, 5)))
        rc, out = self.run_cmp(ref, run, 1e-3, *STAGE_D)
        self.assertEqual(rc, 1, out)
        self.assertIn("lm_loss at step 5", out)

    def test_a_nan_after_the_strict_steps_fails(self):
        ref = self.write("ref.jsonl", long_metrics())
        nan = self.write("nan.jsonl", long_metrics(edit=scaled("loss", float("nan"), 33)))
        rc, out = self.run_cmp(ref, nan, 1e-3, *STAGE_D)
        self.assertEqual(rc, 1, out)
        self.assertIn("loss mean over steps 31-40: nan", out)

    def test_ref_val_rtol(self):
        ref = self.write("ref.jsonl", long_metrics())
        run = self.write("run.jsonl", long_metrics(val_scale=1.01))
        rc, out = self.run_cmp(ref, run, 1e-3, *STAGE_D)  # default: --rtol
        self.assertEqual(rc, 1, out)
        self.assertIn("val_loss at step 20", out)
        rc, out = self.run_cmp(ref, run, 1e-3, *STAGE_D, "--ref-val-rtol", "2e-2")
        self.assertEqual(rc, 0, out)
        self.assertIn("val_loss within 0.02 (worst 1.0e-02)", out)
        rc, out = self.run_cmp(ref, run, 1e-3, *STAGE_D, "--ref-val-rtol", "5e-3")
        self.assertEqual(rc, 1, out)
        self.assertIn("> 0.005", out)
        # without --strict-steps as well
        rc, out = self.run_cmp(ref, run, 1e-3, "--ref-val-rtol", "2e-2")
        self.assertEqual(rc, 0, out)
        self.assertIn("PASS run: 40 steps x 4 losses within rtol 0.001, val_loss within 0.02", out)

    def test_bad_window_options_are_usage_errors(self):
        ref = self.write("ref.jsonl", long_metrics())
        for extra in (("--window-rtol", "loss=1e-2"), ("--strict-steps", "10", "--window-rtol",
                                                      "los=1e-2"),
                      ("--strict-steps", "10", "--window", "0"), ("--strict-steps", "-1")):
            rc, out = self.run_cmp(ref, ref, 1e-3, *extra)
            self.assertEqual(rc, 2, f"{extra}: {out}")


if __name__ == "__main__":
    unittest.main(verbosity=2)

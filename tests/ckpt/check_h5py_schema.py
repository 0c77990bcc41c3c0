#!/usr/bin/python3
"""Reads a switchyard checkpoint with h5py, as a user would, and checks it against SPEC section 5:
the root attributes, every /model, /optim/m and /optim/v dataset with its shape (derived here
from the stored config with SPEC's formulas, not from switchyard's code), float32, every chunk
readable (h5py verifies the Fletcher32 checksums), and the SPEC 2 initial values of the RMSNorm
gains (1) and router biases (0) for a checkpoint of freshly initialised weights.

usage: check_h5py_schema.py <step_N.h5> [--fresh-init]
"""
import re
import sys

import h5py
import numpy as np


def parse_config(text):
    """The resolved config is two-level YAML ('section:' then '  key: value'); no PyYAML needed."""
    cfg, section = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^(\w+):\s*(.*)$", line)
        if m:
            section = m.group(1)
            cfg[section] = {} if not m.group(2) else m.group(2)
            continue
        m = re.match(r"^\s+(\w+):\s*(.*)$", line)
        if m and isinstance(cfg.get(section), dict):
            cfg[section][m.group(1)] = m.group(2).strip().strip('"')
    return cfg


def expected_datasets(cfg):
    m, moe = cfg["model"], cfg["moe"]
    V, C, L = int(m["vocab_size"]), int(m["d_model"]), int(m["n_layers"])
    E, F, S = int(moe["num_experts"]), int(moe["ffn_hidden"]), int(moe["shared_experts"])
    tied = m["tie_embeddings"] == "true"
    model = {"embed": (V, C), "final_norm": (C,)}
    if not tied:
        model["head"] = (V, C)
    for l in range(L):
        p = f"layers/{l}/"
        model.update({p + "attn_norm": (C,), p + "attn/wqkv": (C, 3 * C), p + "attn/wo": (C, C),
                      p + "moe_norm": (C,), p + "moe/router": (C, E), p + "moe/bias": (E,),
                      p + "moe/w1": (E, C, F), p + "moe/w3": (E, C, F), p + "moe/w2": (E, F, C)})
        if S > 0:
            model.update({p + "moe/shared/w1": (S, C, F), p + "moe/shared/w3": (S, C, F),
                          p + "moe/shared/w2": (S, F, C)})
    out = {}
    for name, shape in model.items():
        for group in ("/model/", "/optim/m/", "/optim/v/"):
            out[group + name] = shape
    return out, tied


def main():
    path = sys.argv[1]
    fresh = "--fresh-init" in sys.argv[2:]
    errors = []
    with h5py.File(path, "r") as f:
        a = f.attrs
        if a.get("format") != "switchyard-checkpoint":
            errors.append(f"root attribute format = {a.get('format')!r}")
        if a.get("format_version") != 1:
            errors.append(f"root attribute format_version = {a.get('format_version')!r}")
        for key in ("step", "tokens_seen", "created_unix"):
            if key not in a or not np.issubdtype(np.asarray(a[key]).dtype, np.integer):
                errors.append(f"root attribute {key} missing or not an integer")
        if not re.fullmatch(r"dp=\d+,tp=\d+,ep=\d+,etp=\d+", str(a.get("layout"))):
            errors.append(f"root attribute layout = {a.get('layout')!r}")
        cfg = parse_config(a["config"])
        for key in ("step", "lr"):
            if key not in f["optim"].attrs:
                errors.append(f"/optim attribute {key} missing")
        if "state" not in f or len(f["state"]) == 0:
            errors.append("/state is missing or empty")

        want, tied = expected_datasets(cfg)
        found = {}
        f.visititems(lambda name, obj: found.__setitem__("/" + name, obj)
                     if isinstance(obj, h5py.Dataset) else None)
        for name, shape in want.items():
            if name not in found:
                errors.append(f"{name} missing")
                continue
            d = found[name]
            if d.shape != shape:
                errors.append(f"{name}: shape {d.shape}, SPEC says {shape}")
            if d.dtype != np.dtype("<f4"):
                errors.append(f"{name}: dtype {d.dtype}, SPEC says float32 little-endian")
            data = d[...]  # reads every chunk: h5py/HDF5 verify each Fletcher32 checksum
            if not np.all(np.isfinite(data)):
                errors.append(f"{name}: non-finite values")
            if fresh and name.startswith("/model/"):
                if name.endswith("norm") and not np.all(data == 1.0):
                    errors.append(f"{name}: RMSNorm gains must start at 1 (SPEC 2)")
                if name.endswith("moe/bias") and not np.all(data == 0.0):
                    errors.append(f"{name}: router bias must start at 0 (SPEC 2)")
        for name in found:
            if (name.startswith("/model/") or name.startswith("/optim/")) and name not in want:
                errors.append(f"{name}: not a SPEC section 5 dataset of this config")
        if tied and "/model/head" in found:
            errors.append("/model/head present although tie_embeddings is true")

    if errors:
        print(f"{path}: {len(errors)} problem(s):")
        for e in errors:
            print("  " + e)
        return 1
    print(f"{path}: all {len(want)} SPEC section 5 datasets present with their shapes "
          f"(tie_embeddings {'true' if tied else 'false'}, shared_experts "
          f"{cfg['moe']['shared_experts']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

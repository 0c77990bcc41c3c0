#!/usr/bin/env python3
"""Loads `switchyard ckpt export`'s file with PyPI's safetensors and compares every tensor, bit
for bit, with the /model datasets of the checkpoint as h5py reads them.

usage: check_safetensors.py <file.safetensors> <step_N.h5>
"""
import sys

import h5py
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def main():
    st_path, h5_path = sys.argv[1], sys.argv[2]
    tensors = load_file(st_path)
    errors = []
    with h5py.File(h5_path, "r") as f:
        model = {}
        f["model"].visititems(lambda name, obj: model.__setitem__("model/" + name, obj[...])
                              if isinstance(obj, h5py.Dataset) else None)
        step = int(f.attrs["step"])
    if set(tensors) != set(model):
        errors.append(f"names differ: only in safetensors {sorted(set(tensors) - set(model))}, "
                      f"only in the checkpoint {sorted(set(model) - set(tensors))}")
    for name in sorted(set(tensors) & set(model)):
        t, m = tensors[name], model[name]
        if t.dtype != np.float32 or t.shape != m.shape:
            errors.append(f"{name}: {t.dtype} {t.shape}, checkpoint float32 {m.shape}")
        elif not np.array_equal(t.view(np.uint32), m.view(np.uint32)):
            errors.append(f"{name}: values differ")
    with safe_open(st_path, framework="np") as g:
        meta = g.metadata() or {}
    if meta.get("step") != str(step):
        errors.append(f"metadata step = {meta.get('step')!r}, checkpoint step {step}")
    if errors:
        print("\n".join(errors))
        return 1
    print(f"safetensors loaded {len(tensors)} tensors equal to the checkpoint's /model datasets")
    return 0


if __name__ == "__main__":
    sys.exit(main())

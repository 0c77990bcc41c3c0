"""What the Python checks that drive the switchyard binary share (tests/bench/torch_crosscheck.py,
tests/export/check_hf_transformers.py): their command line, running a command, skipping where a
module is missing, and the licence texts the default run trains on."""
import argparse
import importlib
import os
import subprocess
import sys


# Modules whose pip package has another name.
PIP_NAMES = {"google.protobuf": "protobuf", "yaml": "pyyaml"}


def require(*modules):
    """Imports the modules, or exits 77 (CTest SKIP_RETURN_CODE) naming the one that is missing."""
    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as e:
        pip = " ".join(PIP_NAMES.get(m, m) for m in modules)
        print(f"SKIP: {e} (pip install {pip} to run this check)")
        sys.exit(77)


def parse_args(extra=None):
    """--switchyard BIN --source DIR, plus what `extra(parser)` adds."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--source", required=True)
    if extra:
        extra(ap)
    return ap.parse_args()


def run(cmd):
    """The command's stdout; exits with its output when it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def licence_texts():
    """The files data/make_licenses.sh prepares: /usr/share/common-licenses without symlinks."""
    lic = "/usr/share/common-licenses"
    return sorted(os.path.join(lic, f) for f in os.listdir(lic)
                  if os.path.isfile(os.path.join(lic, f)) and not os.path.islink(os.path.join(lic, f)))

"""Shared pytest setup: quiet TensorFlow logs, import hflib from this checkout."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from hflib.quiet import import_tensorflow  # noqa: E402

import_tensorflow()          # TensorFlow without its start-up log lines

# MNIST for tests and notebook runs: HFLIB_DATA_DIR if set, else the shared copy beside the checkout
# (test code may name it; the library never does).
_SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
if not os.environ.get("HFLIB_DATA_DIR") and _SHARED_MNIST.is_dir():
    os.environ["HFLIB_DATA_DIR"] = str(_SHARED_MNIST)

"""Import TensorFlow without its start-up log lines (layer 4 helper for notebooks and the CLI).

TensorFlow prints several lines when it is first imported (oneDNN, CUDA stubs, and on a machine
without a GPU an ``E0000 … failed call to cuInit`` line that students take for a broken install).
Those lines are written before TensorFlow's logging honours ``TF_CPP_MIN_LOG_LEVEL``, so they are
silenced here by pointing file descriptor 2 at /dev/null for the import and the first device query
only. Afterwards stderr is restored and ``TF_CPP_MIN_LOG_LEVEL=2`` hides TensorFlow's INFO and
WARNING lines; its errors, and every Python warning (hflib's own included), still show.
"""
from __future__ import annotations

import os
import sys

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"


def import_tensorflow():
    """Import TensorFlow quietly (a no-op when it is already imported); returns the module."""
    os.environ.setdefault(LOG_LEVEL_ENV, "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
        tf.config.list_physical_devices()    # the device scan logs once, here, too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf

"""One call at the top of every course notebook: quiet TensorFlow, lecture plot style, seeds.

    import hflib
    QUICK = hflib.notebook.setup()

It imports TensorFlow without its start-up log lines (see `hflib.quiet`), switches on the large
fonts of `hflib.plotting.use_lecture_style`, seeds NumPy's and TensorFlow's global generators,
and returns whether quick mode (``HFLIB_QUICK=1``) is on.
"""
from __future__ import annotations

import os

from .quiet import import_tensorflow

QUICK_ENV = "HFLIB_QUICK"
_TRUE_WORDS = {"1", "true", "yes"}


def quick_mode():
    """True when ``HFLIB_QUICK`` is "1", "true" or "yes" (any case)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE_WORDS


def setup(seed=0):
    """Prepare a notebook session; returns the quick-mode flag."""
    tf = import_tensorflow()
    import numpy as np

    from . import plotting

    plotting.use_lecture_style()
    np.random.seed(seed)
    tf.random.set_seed(seed)
    return quick_mode()

"""Synthetic data sets: the noisy sine of report §V.A and a small teacher-network classification task."""

from __future__ import annotations

import numpy as np

from .. import checks

__all__ = ["make_sine_data", "make_teacher_data"]


def make_sine_data(n=2000, noise=0.1, seed=0, dtype="float32"):
    """Sine regression data of report §V.A: ``x ~ N(0,1)``, ``y = sin x + noise·N(0,1)``.

    Returns ``(x, y)``, each of shape (n, 1), deterministic for a given seed.
    """
    n = checks.integer(n, "n", low=1)
    noise = checks.number(noise, "noise", low=0.0)
    dtype = checks.float_dtype(dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return x.astype(dtype), y.astype(dtype)


def make_teacher_data(n=1000, dim=20, classes=10, hidden=30, seed=0, dtype="float64"):
    """A synthetic classification task: x ~ N(0, I), labels sampled from a random tanh teacher
    network's softmax (Gumbel-max). Small, always available, and its GGN has full rank."""
    from ..models import mlp

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(dtype)
    teacher = mlp((dim, hidden, classes), activation="tanh", seed=seed + 1, dtype=dtype)
    logits = np.asarray(teacher(x))
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1).astype(np.int64)
    return x, y

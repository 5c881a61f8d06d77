"""Shared setups of the loop tests (test_training, test_checkpoints, test_history).

Compiling an HF update costs seconds, running one on the tiny float64 sine net milliseconds, so the
tests share a few updaters: `fresh(kind, copy)` returns updater number `copy` of `kind`, built on
first use and afterwards put back to its initial state (every variable an update changes). Two
copies of one kind are separate objects built the same way, as two processes would build them.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from hflib import data, models
from hflib.baselines import FirstOrder
from hflib.optimizer import HessianFree

F64 = "float64"
BATCH = 50
N = 200                     # examples of the small sine set: 4 updates per epoch


def sine_data():
    return data.make_sine_data(n=N, seed=3, dtype=F64)


def build(kind, seed=2, **options):
    """A new updater on a new 1-8-1 float64 ReLU net (the same initial weights every time)."""
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=5)
    if kind == "hf":
        return HessianFree(model, "squared_error", **{"initial_damping": 1.0, "max_iters": 40, **options}, seed=seed)
    if kind in ("adam", "sgd"):
        rate = options.pop("learning_rate", 0.01 if kind == "adam" else 0.05)
        return FirstOrder(model, "squared_error", kind, learning_rate=rate, seed=seed, **options)
    raise ValueError(kind)


_POOL = {}


def fresh(kind="hf", copy=0):
    """Updater `copy` of `kind` in its initial state (compiled once per session)."""
    if (kind, copy) not in _POOL:
        updater = build(kind)
        _POOL[(kind, copy)] = (updater, [tf.identity(v) for v in updater.state_variables()],
                               getattr(updater, "config", None))
    updater, initial, config = _POOL[(kind, copy)]
    for variable, value in zip(updater.state_variables(), initial):
        variable.assign(value)
    if config is not None:
        assert updater.config == config, "a test changed the shared updater's configuration"
    return updater


def weights_bytes(model):
    """The trainable weights as raw bytes: equality is bitwise."""
    return [v.numpy().tobytes() for v in model.trainable_variables]


def same(a, b):
    """Equality of record values with NaN == NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_records_equal(got, want, skip=("time",)):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert set(g) == set(w), f"record {i}: keys differ: {sorted(set(g) ^ set(w))}"
        for k in w:
            if k not in skip:
                assert same(g[k], w[k]), f"record {i}, {k!r}: {g[k]!r} != {w[k]!r}"


def assert_same_state(a, b):
    """Two updaters hold bit-identical state (model, λ, warm start, optimizer slots, counter)."""
    for va, vb in zip(a.state_variables(), b.state_variables()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())


def spy_on_batches(monkeypatch, updater):
    """Record a fingerprint (the first input) of every batch `updater.step` receives."""
    seen, step = [], updater.step

    def spying(x, y):
        seen.append(float(np.asarray(x)[0, 0]))
        return step(x, y)

    monkeypatch.setattr(updater, "step", spying)
    return seen


@pytest.fixture()
def deterministic_ops():
    """TensorFlow's deterministic kernels for the duration of a test."""
    from tensorflow.python.framework import config as tf_config
    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_on:
        tf_config.disable_op_determinism()

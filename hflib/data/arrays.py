"""Arrays into batches: a `tf.data` pipeline and deterministic (stratified) subsets for quick mode."""

from __future__ import annotations

import numpy as np

from .. import checks

__all__ = ["make_dataset", "subset"]


def make_dataset(
    x, y, batch_size, *, shuffle=True, seed=0, drop_remainder=False, repeat=False
):
    """A ``tf.data.Dataset`` of ``(x, y)`` mini-batches.

    Shuffles with ``seed`` (a new order each epoch), batches, optionally
    repeats forever, and prefetches.
    """
    import tensorflow as tf

    batch_size = checks.integer(batch_size, "batch_size", low=1)
    for value, name in ((shuffle, "shuffle"), (drop_remainder, "drop_remainder"),
                        (repeat, "repeat")):
        checks.boolean(value, name)
    if seed is not None:
        seed = checks.integer(seed, "seed")
    n = _matching_length(x, y)

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def subset(x, y, n, seed=0):
    """A deterministic subset of ``n`` examples, in their original order.

    Stratified by class when ``y`` holds class labels (an integer vector or
    one-hot rows), uniformly random otherwise. Used for quick mode.
    """
    total = _matching_length(x, y)
    n = checks.integer(n, "n", low=1)
    if n > total:
        raise ValueError(f"n must be at most the {total} examples, got {n}")
    rng = np.random.default_rng(seed)
    labels = _class_labels(y)
    if labels is None:
        idx = rng.choice(total, size=n, replace=False)
    else:
        idx = _stratified_indices(labels, n, rng)
    idx = np.sort(idx)
    return np.asarray(x)[idx], np.asarray(y)[idx]



def _class_labels(y):
    """Integer class labels of ``y`` (int vector or one-hot rows), or None."""
    y = np.asarray(y)
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        return y
    if y.ndim == 2 and y.shape[1] > 1 and np.all((y == 0) | (y == 1)) and np.all(
        y.sum(axis=1) == 1
    ):
        return y.argmax(axis=1)
    return None


def _stratified_indices(labels, n, rng):
    """``n`` indices, each class sampled in proportion to its size."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(int)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[: n - take.sum()]] += 1
    picks = [
        rng.choice(np.flatnonzero(inverse == k), size=take[k], replace=False)
        for k in range(len(classes))
    ]
    return np.concatenate(picks)


def _matching_length(x, y):
    nx, ny = len(x), len(y)
    if nx != ny:
        raise ValueError(f"x and y must have the same length, got {nx} and {ny}")
    if nx == 0:
        raise ValueError("x and y must not be empty")
    return nx

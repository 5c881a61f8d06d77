"""Parameter vectors θ ∈ R^d kept as lists of tensors, one per trainable variable.

HF never needs θ as one flat array: every CG operation is a sum over the
variables. `flatten`/`unflatten` exist for the dense checks (d×d matrices use
the same order: variables in `model.trainable_variables` order, each raveled
row-major).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def flatten(tensors) -> tf.Tensor:
    """Concatenate a list of tensors into one vector of length d."""
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten(vector, like) -> list[tf.Tensor]:
    """Split a length-d vector into tensors shaped like the list `like`."""
    shapes = [tuple(t.shape) for t in like]
    sizes = [int(np.prod(s)) for s in shapes]
    vector = tf.convert_to_tensor(vector)
    if vector.shape.rank != 1 or vector.shape[0] != sum(sizes):
        raise ValueError(
            f"vector: expected shape ({sum(sizes)},) to match the variables, got {vector.shape}")
    parts = tf.split(vector, sizes)
    return [tf.reshape(p, s) for p, s in zip(parts, shapes)]


def dot(a, b) -> tf.Tensor:
    """⟨a, b⟩ summed over all tensors of the two lists."""
    return tf.add_n([tf.reduce_sum(x * y) for x, y in zip(a, b)])


def axpy(alpha, x, y) -> list[tf.Tensor]:
    """alpha·x + y, tensor by tensor."""
    return [alpha * xi + yi for xi, yi in zip(x, y)]


def scale(alpha, x) -> list[tf.Tensor]:
    return [alpha * xi for xi in x]


def multiply(a, b) -> list[tf.Tensor]:
    """Elementwise a ⊙ b."""
    return [x * y for x, y in zip(a, b)]


def zeros_like(x) -> list[tf.Tensor]:
    return [tf.zeros_like(t) for t in x]


def norm(x) -> tf.Tensor:
    return tf.sqrt(dot(x, x))


def all_finite(x) -> tf.Tensor:
    """True when every entry of every tensor is finite."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in x])


def check_like(v, variables, name="v") -> list[tf.Tensor]:
    """Validate that `v` is a list of tensors shaped like `variables`; return it as tensors."""
    if isinstance(v, (tf.Tensor, np.ndarray)) or not isinstance(v, (list, tuple)):
        raise TypeError(
            f"{name}: expected a list of {len(variables)} tensors shaped like "
            f"model.trainable_variables, got {type(v).__name__}")
    if len(v) != len(variables):
        raise ValueError(f"{name}: expected {len(variables)} tensors (one per trainable variable), got {len(v)}")
    out = []
    for i, (vi, var) in enumerate(zip(v, variables)):
        vi = tf.convert_to_tensor(vi, dtype=var.dtype)
        if tuple(vi.shape) != tuple(var.shape):
            raise ValueError(f"{name}[{i}]: expected shape {tuple(var.shape)} like variable "
                             f"{getattr(var, 'path', getattr(var, 'name', i))}, got {tuple(vi.shape)}")
        out.append(vi)
    return out

"""Plain Keras 3 models used in the report's experiments and beyond.

Every model outputs *logits* (or the identity output for regression): there is
no final activation, because the matching loss applies φ itself. Models are
built on creation, so ``trainable_variables`` exist at once, and are
deterministic for a given ``seed`` (each layer gets its own seeded
initializer).
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = [
    "mlp",
    "sine_mlp",
    "mnist_mlp",
    "mnist_cnn",
    "deep_autoencoder",
    "sparse_init",
    "count_params",
]


def mlp(sizes, activation="relu", seed=0, dtype="float32", name="mlp"):
    """A dense network with layer widths ``sizes``, e.g. (3, 5, 4, 3).

    Hidden layers use ``activation``; the last layer is linear.
    """
    sizes = _layer_sizes(sizes)
    widths = sizes[1:]
    activations = [activation] * (len(widths) - 1) + [None]
    return _dense_stack(sizes[0], widths, activations, seed, dtype, name)


def sine_mlp(hidden=(15, 15), activation="relu", seed=0, dtype="float32"):
    """1-15-15-1 regression network of report §V.A (d = 286)."""
    return mlp((1, *hidden, 1), activation, seed, dtype, name="sine_mlp")


def mnist_mlp(hidden=800, activation="relu", seed=0, dtype="float32"):
    """784-800-10 classifier of report §V.B (d = 636,010); ``hidden`` may be a tuple."""
    hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    return mlp((784, *hidden, 10), activation, seed, dtype, name="mnist_mlp")


def mnist_cnn(seed=0, dtype="float32"):
    """Small MNIST CNN (report §VI suggests CNNs): three stride-2 3×3 convs, Dense 64, Dense 10."""
    seeds = _layer_seeds(seed, 5)
    layers = [keras.Input(shape=(28, 28, 1), dtype=dtype)]
    for i, filters in enumerate((16, 32, 64)):
        layers.append(
            keras.layers.Conv2D(
                filters,
                3,
                strides=2,
                padding="same",
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[i]),
                dtype=dtype,
                name=f"conv_{i + 1}",
            )
        )
    layers += [
        keras.layers.Flatten(dtype=dtype, name="flatten"),
        _dense(64, "relu", seeds[3], dtype, "dense_1"),
        _dense(10, None, seeds[4], dtype, "logits"),
    ]
    return keras.Sequential(layers, name="mnist_cnn")


def deep_autoencoder(sizes=(784, 1000, 500, 250, 30), seed=0, dtype="float32"):
    """Martens (2010) deep autoencoder, e.g. 784-1000-500-250-30-250-500-1000-784.

    Sigmoid hidden units, a linear code layer (``sizes[-1]``) and a linear
    output of width ``sizes[0]``: logits for a sigmoid cross-entropy loss.
    """
    sizes = _layer_sizes(sizes)
    encoder = list(sizes[1:])
    decoder = list(reversed(sizes[:-1]))
    widths = encoder + decoder
    activations = (
        ["sigmoid"] * (len(encoder) - 1) + [None] + ["sigmoid"] * (len(decoder) - 1) + [None]
    )
    return _dense_stack(sizes[0], widths, activations, seed, dtype, "deep_autoencoder")


def sparse_init(model, nonzero=15, seed=0):
    """Martens' (2010) sparse initialisation, in place; returns ``model``.

    Each unit of each Dense layer gets ``nonzero`` incoming weights drawn from
    N(0, 1) (all of them when the fan-in is smaller); the rest and all biases
    are zero.
    """
    if isinstance(nonzero, bool) or not isinstance(nonzero, (int, np.integer)):
        raise TypeError(f"nonzero must be an int, got {nonzero!r}")
    if nonzero < 1:
        raise ValueError(f"nonzero must be >= 1, got {nonzero}")
    rng = np.random.default_rng(seed)
    for layer in _dense_layers(model):
        if not layer.built:
            raise ValueError(f"sparse_init needs a built model; layer {layer.name} is not")
        fan_in, units = layer.kernel.shape
        kernel = _sparse_kernel(int(fan_in), int(units), int(nonzero), rng)
        layer.kernel.assign(kernel.astype(layer.kernel.dtype))
        if layer.bias is not None:
            layer.bias.assign(np.zeros(layer.bias.shape, dtype=layer.bias.dtype))
    return model


def count_params(model):
    """Number of trainable parameters d (the length of the parameter vector θ)."""
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _dense_stack(input_dim, widths, activations, seed, dtype, name):
    """A built Sequential of Dense layers with one seeded initializer each."""
    seeds = _layer_seeds(seed, len(widths))
    layers = [keras.Input(shape=(input_dim,), dtype=dtype)]
    for i, (width, act, s) in enumerate(zip(widths, activations, seeds)):
        layer_name = "output" if i == len(widths) - 1 else f"dense_{i + 1}"
        layers.append(_dense(width, act, s, dtype, layer_name))
    return keras.Sequential(layers, name=name)


def _dense(units, activation, seed, dtype, name):
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        bias_initializer="zeros",
        dtype=dtype,
        name=name,
    )


def _layer_seeds(seed, count):
    """``count`` distinct, reproducible int31 seeds derived from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    state = np.random.SeedSequence(int(seed)).generate_state(count)
    return [int(s) & 0x7FFFFFFF for s in state]


def _layer_sizes(sizes):
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs an input and an output width, got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"sizes must be positive ints, got {sizes}")
    return tuple(int(s) for s in sizes)


def _dense_layers(model):
    """Dense layers of ``model``, including those of nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            yield layer
        elif hasattr(layer, "layers"):
            yield from _dense_layers(layer)


def _sparse_kernel(fan_in, units, nonzero, rng):
    """A (fan_in, units) kernel with ``nonzero`` N(0,1) entries per column."""
    values = rng.standard_normal((fan_in, units))
    if nonzero >= fan_in:
        return values
    keep = np.argpartition(rng.random((fan_in, units)), nonzero - 1, axis=0)[:nonzero]
    kernel = np.zeros((fan_in, units))
    np.put_along_axis(kernel, keep, np.take_along_axis(values, keep, axis=0), axis=0)
    return kernel

"""Input and option checks shared by every layer (the math core and everything above it).

Each check raises a `ValueError` or `TypeError` whose message starts with the argument's name and
says what was expected, and returns the value in the form the caller needs. NumPy scalars count as
numbers; booleans never do.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

# Keras layers that behave differently in training (random masks or batch statistics); HF's
# curvature products assume a deterministic network, so `deterministic_layers` refuses them.
STOCHASTIC_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                     "GaussianDropout", "AlphaDropout", "BatchNormalization", "ActivityRegularization")


# ------------------------------------------------------------------ numbers and options
def _describe(value):
    return f"{value!r} ({type(value).__name__})" if isinstance(value, (bool, np.bool_)) else repr(value)


def number(value, name, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in [low, high] (open ends if asked); returned as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name}: expected a number {'>' if low_open else '≥'} {low:g}, got {value:g}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name}: expected a number {'<' if high_open else '≤'} {high:g}, got {value:g}")
    return value


def positive(value, name):
    """A finite number > 0 (λ, ε, a learning rate, …)."""
    return number(value, name, low=0.0, low_open=True)


def factor(value, name):
    """The LM factor r of eq. (26): a finite number > 1."""
    return number(value, name, low=1.0, low_open=True)


def integer(value, name, *, low=None, high=None):
    """An integer in [low, high]; returned as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {_describe(value)}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name}: expected an integer ≥ {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name}: expected an integer ≤ {high}, got {value}")
    return value


def optional_integer(value, name, *, low=None):
    """None, or an integer ≥ low."""
    return None if value is None else integer(value, name, low=low)


def optional_positive(value, name):
    """None, or a finite number > 0."""
    return None if value is None else positive(value, name)


def boolean(value, name):
    """True or False (NumPy booleans too); refuses strings such as "no"."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def choice(value, name, options):
    """One of `options` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {tuple(options)}, got {value!r}")
    return value


def float_dtype(dtype, name="dtype"):
    """A NumPy floating dtype from a name or dtype ("float32", np.float64, …)."""
    if dtype is None:
        raise TypeError(f"{name}: expected a floating dtype, got None")
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{name}: expected a floating dtype, got {dtype!r}") from e
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"{name}: expected a floating dtype, got {dt}")
    return dt


# ------------------------------------------------------------------ models and data
def trainable_variables(model):
    """The model's trainable variables (Keras variables), refusing a model without any."""
    variables = list(getattr(model, "trainable_variables", None) or [])
    if not variables:
        raise ValueError("model: expected a built Keras model with trainable variables, found none "
                         "(build it with keras.Input or call it once on data)")
    return variables


def model_dtype(model):
    """The dtype of the model's parameters (that of its first trainable variable)."""
    return trainable_variables(model)[0].dtype


def inputs(x, name="x", dtype=None):
    """A batch of inputs as a tensor: floating point, with a leading batch axis, not empty.

    With `dtype` (the model's), inputs of another float dtype are cast to it, as Keras does when it
    calls a layer, so float64 NumPy data can feed a float32 model; integers are refused.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"{name}: expected floating-point inputs, got {x.dtype.name}; "
                        f"cast them first (for images: x.astype('float32') / 255)")
    if x.shape.rank is None or x.shape.rank == 0:
        raise ValueError(f"{name}: expected a batch with a leading batch axis, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: empty batch (0 examples)")
    if dtype is not None and x.dtype != dtype:
        x = tf.cast(x, dtype)
    return x


def labels(loss, y, x, model):
    """Validate targets `y` for `loss` against the batch `x` and the model's output width, eagerly
    (shape, batch length, class-id range, [0, 1] for sigmoid targets); returns `y` as a tensor."""
    import tensorflow as tf

    y = tf.convert_to_tensor(y)
    width = model.output_shape[-1]
    loss.targets(y, tf.zeros([x.shape[0], width], model_dtype(model)))
    if y.dtype.is_floating and y.dtype != model_dtype(model):
        y = tf.cast(y, model_dtype(model))          # one compiled update per model dtype, not per label dtype
    return y


def same_length(x, y, name="data"):
    """Inputs and targets with the same number of examples; returns that number."""
    nx, ny = int(x.shape[0]), int(y.shape[0])
    if nx != ny:
        raise ValueError(f"{name}: x has {nx} examples but y has {ny}")
    return nx


def deterministic_layers(model, who):
    """Refuse layers whose output depends on the `training` flag (dropout, noise, batch statistics):
    the curvature products of `who` need the same deterministic network in every product."""
    for layer in _all_layers(model):
        kind = type(layer).__name__
        if kind in STOCHASTIC_LAYERS or kind.startswith("Random"):
            raise ValueError(
                f"model: layer {layer.name!r} ({kind}) behaves differently in training, but {who} needs a "
                f"deterministic network (G·v, ρ and the line search must all see the same function). "
                f"Remove it, or train this model with hflib.FirstOrder (which passes training=True)")


def outputs_logits(model, loss):
    """Refuse a model whose last layer already applies the matching loss's φ (softmax or sigmoid):
    the loss applies φ itself, so φ would be applied twice."""
    import keras

    phi = {"softmax_cross_entropy": "softmax", "sigmoid_cross_entropy": "sigmoid"}.get(loss.name)
    if phi is None or not getattr(model, "layers", None):
        return
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    names = {getattr(activation, "__name__", None)}
    if isinstance(last, keras.layers.Softmax):
        names.add("softmax")
    if phi in names:
        raise ValueError(
            f"model: its last layer {last.name!r} applies {phi}, and the loss {loss.name!r} applies {phi} to the "
            f"model's outputs itself, so it would be applied twice. Make the model output logits "
            f"(activation=None on the last layer)")


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)

"""Diagonal preconditioners for CG (report §III.E; Martens 2010 §4.7; Chapelle & Erhan 2011).

Each returns the diagonal M (a list shaped like the variables) and CG applies
y = M⁻¹ r = r ⊘ M. All share the damped power form

    M = (D + λ)^α,   α = 0.75,

and differ in the curvature diagonal D:

* ``martens``: D = (1/N) Σ_i g_i ⊙ g_i with **per-example** gradients g_i, the
  diagonal of the empirical Fisher (Martens 2010).
* ``report``: D = ḡ ⊙ ḡ, the square of the *batch-mean* gradient, as the
  report's code does. It is not the Fisher diagonal (cross terms g_i⊙g_j remain).
* ``chapelle_erhan``: an unbiased estimate of diag(G): with S Sᵀ = H_{L∘φ} and
  Rademacher vectors v_i, E[(Σ_i J_iᵀ S_i v_i)²] = Σ_i diag(J_iᵀ H_i J_i), so
  D = (1/B)(J ᵀ S v)² costs one reverse pass per sample.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from . import losses as _losses
from . import checks
from .checks import inputs as check_inputs, trainable_variables

NAMES = ("martens", "report", "chapelle_erhan", "none")
ALPHA = 0.75


def damped_power(diagonal, damping, alpha=ALPHA):
    """M = (D + λ)^α elementwise."""
    if not tf.is_tensor(damping):
        damping = checks.positive(damping, "damping")
    # tf.cast(python_float, float64) would round λ to float32 first; tf.constant keeps it exact
    def lam(dtype):
        return tf.cast(damping, dtype) if tf.is_tensor(damping) else tf.constant(damping, dtype)
    return [tf.pow(dd + lam(dd.dtype), alpha) for dd in diagonal]


# ------------------------------------------------------------------ curvature diagonals
def empirical_fisher_diagonal(model, loss, x, y, chunk_size=None, max_examples=None):
    """(1/N) Σ_i g_i ⊙ g_i from per-example gradients g_i, never a Python loop over examples.

    Sequential models of Dense and Conv2D layers (and deterministic layers without
    weights between them) take the exact per-layer rule of `_layerwise_fisher_diagonal`:
    one forward and one reverse pass for the errors δ, then per layer the squared
    per-example gradients, summed over the whole batch (about two gradients of cost).
    Other models fall back to vectorised (pfor) per-example Jacobians, about one
    gradient per example, so `max_examples` (if set) averages over the first that
    many examples only — an unbiased estimate when the batch is shuffled; the exact
    rule ignores it and always uses every example.

    chunk_size: examples per chunk (memory bound). Default: 125 for pfor; for the exact
      rule as many as keep each chunk's per-example gradients and patches under
      `CHUNK_ENTRIES` entries per layer.
    """
    loss = _losses.get(loss)
    x = check_inputs(x)
    y = tf.convert_to_tensor(y)
    trainable_variables(model)
    if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size: expected an integer ≥ 1 or None, got {chunk_size!r}")
    if max_examples is not None and not (isinstance(max_examples, int) and max_examples >= 1):
        raise ValueError(f"max_examples: expected an integer ≥ 1 or None, got {max_examples!r}")
    if has_exact_rule(model):
        return _layerwise_fisher_diagonal(model, loss, x, y, chunk_size)
    if max_examples is not None:
        x, y = x[:max_examples], y[:max_examples]
    return _fisher_diagonal_pfor(model, loss, x, y, chunk_size or 125)


# deterministic layers without weights: the exact rule runs them as they are
_PASS_THROUGH = tuple(getattr(keras.layers, name) for name in (
    "Identity", "Flatten", "Reshape", "Permute", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D"))
CHUNK_ENTRIES = 2 ** 18      # entries of a chunk's per-example gradients (or patches) per layer
_FEW_CHANNELS = 8             # below: patches from the examples-as-channels layout (faster, measured)


def has_exact_rule(model):
    """True when `empirical_fisher_diagonal` uses the exact per-layer rule (else the pfor fallback):
    a Sequential model, each layer used once, made of Dense layers on vectors, Conv2D layers
    (channels_last, 'same'/'valid', dilation 1, one group) and `_PASS_THROUGH` layers.
    Exact types only: a subclass may change `call`. LoRA or quantised layers fall back."""
    if not isinstance(model, keras.Sequential):
        return False
    layers = model.layers
    if len({id(layer) for layer in layers}) != len(layers):
        return False
    return all(_is_linear_layer(layer) or (type(layer) in _PASS_THROUGH and not layer.weights)
               for layer in layers)


def _is_linear_layer(layer):
    """A Dense or Conv2D layer whose pre-activation this module can rebuild: z = patches · W + b."""
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        return False
    if type(layer) is keras.layers.Dense:
        return _input_rank(layer) == 2
    if type(layer) is keras.layers.Conv2D:
        return (layer.data_format == "channels_last" and layer.padding in ("same", "valid")
                and tuple(layer.dilation_rate) == (1, 1) and layer.groups == 1)
    return False


def _input_rank(layer):
    try:
        return len(layer.input.shape)
    except (AttributeError, ValueError):
        return None


def _pre_activation(layer, a):
    """The layer's linear part z = conv(a, W) + b or a W + b, in its compute dtype."""
    kernel = tf.cast(layer.kernel, layer.compute_dtype)
    if type(layer) is keras.layers.Dense:
        z = tf.matmul(a, kernel)
    else:
        z = tf.nn.convolution(a, kernel, strides=layer.strides, padding=layer.padding.upper())
    return z + tf.cast(layer.bias, layer.compute_dtype) if layer.use_bias else z


def _patches(layer, a):
    """(B, P, K): the K = kh·kw·C_in inputs each of the P output positions sees (Dense: P = 1),
    ordered like the kernel's leading axes, so that z_i(p) = patch_i(p) · W."""
    if type(layer) is keras.layers.Dense:
        return tf.expand_dims(a, 1)
    kh, kw = layer.kernel_size
    c_in = a.shape[-1]

    def extract(images):
        return tf.image.extract_patches(images, sizes=[1, kh, kw, 1], strides=[1, *layer.strides, 1],
                                        rates=[1, 1, 1, 1], padding=layer.padding.upper())
    b, h, w = tf.unstack(tf.shape(a)[:3])
    if c_in >= _FEW_CHANNELS:
        return tf.reshape(extract(a), [b, -1, kh * kw * c_in])
    # few channels: extract from one image with the examples as channels (a long innermost axis)
    p = extract(tf.reshape(tf.transpose(a, [1, 2, 0, 3]), [1, h, w, -1]))    # (1, H', W', kh·kw·B·C_in)
    p = tf.reshape(p, [-1, kh * kw, b, c_in])                                  # (P, kh·kw, B, C_in)
    return tf.reshape(tf.transpose(p, [2, 0, 1, 3]), [b, -1, kh * kw * c_in])


def _layerwise_fisher_diagonal(model, loss, x, y, chunk_size=None):
    """Martens' diagonal by layers (report §III.E). With zero probes added to every pre-activation,
    one reverse pass of Σ_i ℓ_i gives δ_i(p) = ∂ℓ_i/∂z_i(p); the per-example gradients are
    g_i(W) = Σ_p patch_i(p) ⊗ δ_i(p) and g_i(b) = Σ_p δ_i(p)."""
    with tf.GradientTape() as tape:
        z, records = probed_forward(model, x, tape)
        total = tf.reduce_sum(loss.per_example(z, loss.targets(y, z)))
    deltas = tape.gradient(total, [probe for _, _, probe in records])
    return fisher_diagonal_from_deltas(model, records, deltas, chunk_size)


def probed_forward(model, x, tape):
    """The forward pass of a model with `has_exact_rule`, layer by layer, with a zero probe added to
    each trainable Dense/Conv2D pre-activation and watched on `tape`. Returns the outputs and the
    records (layer, layer input, probe); ∂(Σ_i ℓ_i)/∂probe is the per-example error δ."""
    records = []
    a = x
    for layer in model.layers:
        if not (_is_linear_layer(layer) and layer.trainable_weights):
            a = layer(a)
            continue
        a = tf.cast(a, layer.compute_dtype)
        z = _pre_activation(layer, a)
        probe = tf.zeros_like(z)
        tape.watch(probe)
        records.append((layer, a, probe))
        a = layer.activation(z + probe)
    return a, records


def fisher_diagonal_from_deltas(model, records, deltas, chunk_size=None):
    """(1/N) Σ_i g_i ⊙ g_i from the records of `probed_forward` and the per-example errors δ_i of
    the summed loss (one per record), as a list shaped like the variables."""
    n = tf.cast(tf.shape(deltas[0])[0], deltas[0].dtype)
    by_variable = {}
    for (layer, a, _), delta in zip(records, deltas):
        delta = tf.reshape(delta, [tf.shape(delta)[0], -1, delta.shape[-1]])      # (B, P, C_out)
        kernel = _squared_gradient_sum(layer, a, delta, chunk_size)
        by_variable[id(layer.kernel)] = tf.reshape(kernel, layer.kernel.shape) / n
        if layer.use_bias:
            by_variable[id(layer.bias)] = tf.reduce_sum(tf.square(tf.reduce_sum(delta, axis=1)), axis=0) / n
    return [by_variable[id(v)] for v in model.trainable_variables]


def _squared_gradient_sum(layer, a, delta, chunk_size=None):
    """Σ_i (Σ_p patch_i(p) δ_i(p)ᵀ)², (K, C_out). With one position (Dense, or a convolution with
    a 1×1 output) this is (a²)ᵀ(δ²), one product; otherwise the per-example gradients are formed
    chunk by chunk (a batched product per chunk of examples)."""
    positions = delta.shape[1]
    if positions == 1:
        patches = tf.squeeze(_patches(layer, a), 1)        # reshapes, no copies
        return tf.matmul(tf.square(patches), tf.square(tf.squeeze(delta, 1)), transpose_a=True)
    k = math.prod(layer.kernel.shape[:-1])
    c_out = delta.shape[-1]
    chunk = chunk_size or max(1, CHUNK_ENTRIES // (k * max(c_out, positions or 1)))
    n = tf.shape(a)[0]

    def body(start, total):
        patches = _patches(layer, a[start:start + chunk])
        g = tf.matmul(patches, delta[start:start + chunk], transpose_a=True)      # (chunk, K, C_out)
        return start + chunk, total + tf.reduce_sum(tf.square(g), axis=0)

    total = tf.zeros([k, c_out], delta.dtype)
    return tf.while_loop(lambda start, _: start < n, body, (tf.constant(0), total))[1]


def _fisher_diagonal_pfor(model, loss, x, y, chunk_size):
    variables = model.trainable_variables
    n = x.shape[0]
    total = [tf.zeros_like(v) for v in variables]
    for start in range(0, n, chunk_size):
        xs, ys = x[start:start + chunk_size], y[start:start + chunk_size]
        with tf.GradientTape() as tape:
            z = model(xs)
            per_example = loss.per_example(z, loss.targets(ys, z))
        jac = tape.jacobian(per_example, variables)
        total = [t + tf.reduce_sum(tf.square(j), axis=0) for t, j in zip(total, jac)]
    return [t / n for t in total]


def batch_gradient_squared(gradient):
    """ḡ ⊙ ḡ for the batch-mean gradient (the report's preconditioner)."""
    return [tf.square(g) for g in gradient]


def ggn_diagonal_estimate(model, loss, x, y=None, samples=1, seed=(0, 0)):
    """Chapelle–Erhan estimate of diag(G) for the batch mean, averaged over `samples` draws.

    Each draw costs one reverse pass; `y` is unused (H_{L∘φ} does not depend on it).
    """
    loss = _losses.get(loss)
    x = check_inputs(x)
    variables = trainable_variables(model)
    seed = tf.convert_to_tensor(seed, tf.int32)
    with tf.GradientTape(persistent=True) as tape:
        z = model(x)
    batch = tf.cast(tf.shape(z)[0], z.dtype)
    z_const = tf.stop_gradient(z)
    total = [tf.zeros_like(v) for v in variables]
    for s in range(samples):
        v = rademacher(tf.shape(z), seed + s, z.dtype)
        jtsv = tape.gradient(z, variables, output_gradients=loss.sqrt_output_hessian_product(z_const, v))
        total = [t + tf.square(g) for t, g in zip(total, jtsv)]
    return [t / (batch * samples) for t in total]


def rademacher(shape, seed, dtype):
    """Random ±1 entries (E[v vᵀ] = I), stateless given `seed` (shape [2])."""
    bits = tf.random.stateless_uniform(shape, seed=seed, minval=0, maxval=2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, dtype)


# ------------------------------------------------------------------ the preconditioners
def martens(model, loss, x, y, damping, alpha=ALPHA):
    """Martens' M = (diag(Σ_i g_i⊙g_i)/N + λ)^α."""
    return damped_power(empirical_fisher_diagonal(model, loss, x, y), damping, alpha)


def report(gradient, damping, alpha=ALPHA):
    """The report's variant M = (ḡ⊙ḡ + λ)^α from the batch-mean gradient ḡ (not the Fisher diagonal)."""
    return damped_power(batch_gradient_squared(gradient), damping, alpha)


def chapelle_erhan(model, loss, x, y, damping, alpha=ALPHA, samples=1, seed=(0, 0)):
    """Chapelle & Erhan's M = (diag(G)_estimate + λ)^α."""
    return damped_power(ggn_diagonal_estimate(model, loss, x, y, samples, seed), damping, alpha)


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
def empirical_fisher_diagonal(model, loss, x, y, chunk_size=125, max_examples=None):
    """(1/N) Σ_i g_i ⊙ g_i from per-example gradients g_i, never a Python loop over examples.

    For stacks of Dense layers the per-example gradient of a kernel is the outer
    product a_i δ_iᵀ of the layer input and the back-propagated error, so
    Σ_i g_i² = (a²)ᵀ(δ²): one matrix product per layer. Other models fall back
    to vectorised (pfor) per-example Jacobians over chunks of `chunk_size`
    examples; that costs about one gradient per example, so `max_examples`
    (if set) averages over the first that many examples only — an unbiased
    estimate when the batch is shuffled. The Dense-stack path always uses all.
    """
    loss = _losses.get(loss)
    x = check_inputs(x)
    y = tf.convert_to_tensor(y)
    trainable_variables(model)
    if _is_dense_stack(model):
        return _fisher_diagonal_dense(model, loss, x, y)
    if max_examples is not None:
        x, y = x[:max_examples], y[:max_examples]
    return _fisher_diagonal_pfor(model, loss, x, y, chunk_size)


def _is_dense_stack(model):
    """A Sequential model whose only trainable layers are Dense layers acting on vectors."""
    if not isinstance(model, keras.Sequential):
        return False
    for layer in model.layers:
        if layer.trainable_weights and not isinstance(layer, keras.layers.Dense):
            return False
        if isinstance(layer, keras.layers.Dense) and len(layer.input.shape) != 2:
            return False
    return True


def _fisher_diagonal_dense(model, loss, x, y):
    inputs, errors, dense = [], [], []
    with tf.GradientTape() as tape:
        a = x
        for layer in model.layers:
            if not isinstance(layer, keras.layers.Dense):
                a = layer(a)
                continue
            pre = tf.matmul(tf.cast(a, layer.kernel.dtype), layer.kernel)
            if layer.use_bias:
                pre = pre + layer.bias
            probe = tf.zeros_like(pre)       # ∂ℓ_i/∂probe = δ_i, row by row
            tape.watch(probe)
            inputs.append(a)
            errors.append(probe)
            dense.append(layer)
            a = layer.activation(pre + probe)
        total = tf.reduce_sum(loss.per_example(a, loss.targets(y, a)))
    deltas = tape.gradient(total, errors)
    n = tf.cast(tf.shape(x)[0], deltas[0].dtype)
    by_variable = {}
    for layer, a, delta in zip(dense, inputs, deltas):
        d2 = tf.square(delta)
        by_variable[id(layer.kernel)] = tf.matmul(tf.square(a), d2, transpose_a=True) / n
        if layer.use_bias:
            by_variable[id(layer.bias)] = tf.reduce_sum(d2, axis=0) / n
    return [by_variable[id(v)] for v in model.trainable_variables]


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


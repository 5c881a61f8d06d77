"""Shared builders and independent dense oracles for the core tests.

(`tests/conftest.py` belongs to the data/model tests; the core tests import from here.)

Everything is float64. The "independent" oracles below deliberately avoid
`hflib.curvature`: the Jacobian comes straight from `tf.GradientTape.jacobian`
of the logits, and the Hessian of the batch loss from a double tape on a *flat*
parameter tensor pushed through `model.stateless_call`, so that a bug in the
library's flatten order or variable handling cannot cancel out.
"""
from __future__ import annotations

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402

F64 = "float64"
NETS = ("tanh", "relu", "sigmoid", "conv")
# (case id, loss name): softmax cross-entropy is exercised with integer ids and with one-hot rows
LOSS_CASES = {
    "softmax_int": "softmax_cross_entropy",
    "softmax_onehot": "softmax_cross_entropy",
    "squared_error": "squared_error",
    "sigmoid_ce": "sigmoid_cross_entropy",
}
M = 3  # outputs of every test net
BATCH = {"tanh": 7, "relu": 7, "sigmoid": 7, "conv": 4}


def mlp(activation, seed=0, sizes=(3, 5, 4, 3)):
    """A tiny float64 MLP, e.g. 3-5-4-3, linear output layer (the loss owns φ)."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((sizes[0],), dtype=F64)]
    for width in sizes[1:-1]:
        layers.append(keras.layers.Dense(width, activation=activation, dtype=F64))
    layers.append(keras.layers.Dense(sizes[-1], dtype=F64))
    return keras.Sequential(layers)


def conv_net(seed=0, pool="max"):
    """6x6x1 → Conv2D(2, 3x3, tanh) → 2x2 pooling → Flatten → Dense(3); d = 20 + 27 = 47."""
    keras.utils.set_random_seed(seed)
    pooling = keras.layers.MaxPooling2D if pool == "max" else keras.layers.AveragePooling2D
    return keras.Sequential([
        keras.Input((6, 6, 1), dtype=F64),
        keras.layers.Conv2D(2, 3, activation="tanh", dtype=F64),
        pooling(2, dtype=F64),
        keras.layers.Flatten(dtype=F64),
        keras.layers.Dense(M, dtype=F64),
    ])


def linear_model(seed=0):
    """A single Dense layer 3 → 3 (z = xW + b): the network function is linear in θ."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,), dtype=F64), keras.layers.Dense(M, dtype=F64)])


def build_net(kind, seed=0):
    return conv_net(seed) if kind == "conv" else mlp(kind, seed)


def inputs(kind, n=None, seed=1):
    rng = np.random.default_rng(seed)
    n = BATCH[kind] if n is None else n
    shape = (n, 6, 6, 1) if kind == "conv" else (n, 3)
    return rng.normal(size=shape)


def labels(case, n, seed=2, m=M):
    """Targets for one loss case: int ids, one-hot rows, real targets or targets in [0, 1]."""
    rng = np.random.default_rng(seed)
    if case == "softmax_int":
        return rng.integers(0, m, size=n).astype(np.int32)
    if case == "softmax_onehot":
        return np.eye(m)[rng.integers(0, m, size=n)]
    if case == "squared_error":
        return rng.normal(scale=2.0, size=(n, m))
    if case == "sigmoid_ce":
        return rng.uniform(size=(n, m))
    raise KeyError(case)


def flat_vars(model):
    return np.concatenate([np.ravel(v.numpy()) for v in model.trainable_variables])


def n_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def random_direction(model, seed=3):
    """A random v as a list shaped like the variables, plus its flat numpy form."""
    rng = np.random.default_rng(seed)
    v = [tf.constant(rng.normal(size=tuple(w.shape))) for w in model.trainable_variables]
    return v, np.concatenate([t.numpy().ravel() for t in v])


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# ------------------------------------------------------------------ independent oracles
def independent_jacobian(model, x):
    """J of the logits, (batch, m, d), from tf.GradientTape.jacobian (no hflib involved)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        z = model(x)
    parts = tape.jacobian(z, model.trainable_variables)
    b, m = z.shape
    return np.concatenate([np.reshape(p.numpy(), (b, m, -1)) for p in parts], axis=-1), z.numpy()


def forward_mode_ggn_vp(model, loss, x, v, order="eq34"):
    """G·v by a forward-mode JVP (tf.autodiff.ForwardAccumulator) then a reverse-mode VJP: an
    implementation independent of hflib's cached linearisation (which transposes the VJP)."""
    loss = hflib.losses.get(loss)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        with tf.autodiff.ForwardAccumulator([w.value for w in variables], v) as acc:
            z = model(x)
            yhat = loss.phi(z)
        u, out = (acc.jvp(yhat), z) if order == "eq34" else (acc.jvp(z), yhat)
    u = tf.stop_gradient(u) / tf.cast(tf.shape(z)[0], z.dtype)
    return tape.gradient(out, variables, output_gradients=u)


def _stateless_loss(model, loss, x, y):
    """f(θ_flat): the batch loss as a function of one flat parameter tensor."""
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    sizes = [int(np.prod(s)) for s in shapes]
    non_trainable = [v.value for v in model.non_trainable_variables]
    loss = hflib.losses.get(loss)

    def f(theta):
        pieces = tf.split(theta, sizes)
        trainable = [tf.reshape(p, s) for p, s in zip(pieces, shapes)]
        z, _ = model.stateless_call(trainable, non_trainable, x)
        return loss.value(z, y)

    return f


def independent_hessian(model, loss, x, y):
    """∇²f by a double tape on a flat parameter tensor through `model.stateless_call`."""
    f = _stateless_loss(model, loss, tf.constant(x), y)
    theta = tf.constant(flat_vars(model))
    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            value = f(theta)
        g = inner.gradient(value, theta)
    return outer.jacobian(g, theta).numpy()


def independent_gradient(model, loss, x, y):
    f = _stateless_loss(model, loss, tf.constant(x), y)
    theta = tf.constant(flat_vars(model))
    with tf.GradientTape() as tape:
        tape.watch(theta)
        value = f(theta)
    return tape.gradient(value, theta).numpy(), float(value)


def fd_hessian(model, loss, x, y, eps=1e-5):
    """Central differences of the (stateless) gradient, column by column."""
    f = _stateless_loss(model, loss, tf.constant(x), y)

    @tf.function
    def grad(theta):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            value = f(theta)
        return tape.gradient(value, theta)

    theta = flat_vars(model)
    d = theta.size
    cols = []
    for j in range(d):
        e = np.zeros(d)
        e[j] = eps
        cols.append((grad(tf.constant(theta + e)).numpy() - grad(tf.constant(theta - e)).numpy()) / (2 * eps))
    h = np.stack(cols, axis=1)
    return 0.5 * (h + h.T)


def output_hessians(loss, z):
    """Per-example H_{L∘φ}(z) from the loss's own dense `hessian` (checked in test_losses)."""
    return hflib.losses.get(loss).output_hessian(tf.constant(z)).numpy()


# ------------------------------------------------------------------ cached problems
@functools.lru_cache(maxsize=None)
def net_and_batch(net):
    """One model and input batch per net kind, shared by all loss cases (and test modules)."""
    return build_net(net), inputs(net)


@functools.lru_cache(maxsize=None)
def net_jacobian(net):
    model, x = net_and_batch(net)
    return independent_jacobian(model, x)


class Problem:
    """One (net, loss case): model, batch and lazily computed dense matrices."""

    def __init__(self, net, case):
        self.net, self.case, self.loss = net, case, LOSS_CASES[case]
        self.model, self.x = net_and_batch(net)
        self.y = labels(case, self.x.shape[0])
        self.d = n_params(self.model)

    @property
    def jacobian(self):
        return net_jacobian(self.net)

    @functools.cached_property
    def G_independent(self):
        """(1/B) Σ J_iᵀ H_i J_i assembled in numpy."""
        jac, z = self.jacobian
        h = output_hessians(self.loss, z)
        return np.einsum("bmi,bmn,bnj->ij", jac, h, jac) / jac.shape[0]

    @functools.cached_property
    def G(self):
        return hflib.dense_ggn(self.model, self.loss, self.x, self.y).numpy()

    @functools.cached_property
    def H(self):
        return hflib.dense_hessian(self.model, self.loss, self.x, self.y).numpy()

    @functools.cached_property
    def H_independent(self):
        return independent_hessian(self.model, self.loss, self.x, self.y)


@functools.lru_cache(maxsize=None)
def problem(net, case):
    return Problem(net, case)


# ------------------------------------------------------------------ linear algebra for CG tests
def random_spd(n, cond, seed):
    """Q diag(λ) Qᵀ with eigenvalues log-spaced in [1, cond]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigs = np.logspace(0, np.log10(cond), n)
    a = (q * eigs) @ q.T
    return 0.5 * (a + a.T)


def quad_phi(a, b, x):
    """φ(x) = ½ xᵀA x − bᵀx."""
    return 0.5 * x @ a @ x - b @ x


def numpy_pcg(a, b, iters, minv=None, x0=None):
    """Textbook PCG in numpy. Returns (iterates, φ values, index of a non-positive dᵀAd or None)."""
    x = np.zeros_like(b) if x0 is None else np.array(x0, np.float64)
    minv = (lambda r: r) if minv is None else minv
    r = b - a @ x
    y = minv(r)
    d = y.copy()
    rz = r @ y
    xs, phis = [x.copy()], [quad_phi(a, b, x)]
    for i in range(1, iters + 1):
        ad = a @ d
        dad = d @ ad
        if not dad > 0:
            return xs, phis, i
        alpha = rz / dad
        x = x + alpha * d
        r = r - alpha * ad
        y = minv(r)
        rz_new = r @ y
        d = y + (rz_new / rz) * d
        rz = rz_new
        xs.append(x.copy())
        phis.append(quad_phi(a, b, x))
    return xs, phis, None


def matvec_of(a):
    a_t = tf.constant(a)
    return lambda v: tf.linalg.matvec(a_t, v)

"""Curvature-vector products and their dense oracles (report §III.C and §III.F).

Throughout, f(θ) = (1/B) Σ_i L_{y_i}(φ(R_{x_i}(θ))) is the batch mean (eq. 5),
z = R_x(θ) are the logits and J = J_{R_x} their Jacobian with respect to θ.

* `ggn_vector_product`  G·v = (1/B) Σ J_iᵀ H_{L∘φ} J_i v  (eq. 39 without λ),
  one forward-mode JVP and one reverse-mode VJP, in the order of eq. (34) or (37).
* `hessian_vector_product`  exact H·v (Pearlmutter 1994, forward-over-reverse).
* `linearize`  the forward pass done once per batch; every G·v above and in CG uses it.
* `dense_jacobian`, `dense_ggn`, `dense_hessian`  explicit matrices for small
  models, flattened in `hflib.flatten` order.
* `DampedGGN`  G + λI as a `tf.linalg.LinearOperator` (eq. 20).
"""
from __future__ import annotations

import tensorflow as tf

from . import checks
from . import losses as _losses
from .checks import trainable_variables
from .damping import tikhonov
from .vectors import check_like, flatten, unflatten

MAX_DENSE_PARAMS = 5000
ORDERS = ("eq34", "eq37")


# ------------------------------------------------------------------ input checks
def primals(model):
    """The underlying tf.Variables, as `tf.autodiff.ForwardAccumulator` requires."""
    return [v.value for v in trainable_variables(model)]


def _checked(model, loss, x, y, v=None):
    """The loss object, x as a tensor of the model's dtype, y and v checked (y's shape and range
    eagerly: inside the compiled products only shapes are checked)."""
    loss = _losses.get(loss)
    variables = trainable_variables(model)
    x = checks.inputs(x, dtype=variables[0].dtype)
    y = None if y is None else checks.labels(loss, y, x, model)
    v = None if v is None else check_like(v, variables)
    return loss, x, y, v


def _batch_size(z):
    return tf.cast(tf.shape(z)[0], z.dtype)


# ------------------------------------------------------------------ the gradient
def loss_and_gradient(model, loss, x, y, training=False):
    """f(θ) and ∇f(θ) on the batch (eqs. 5 and 9), in-graph and unchecked: the one gradient that
    the HF update, the baselines and `gradient` all use (`training` is Keras' flag)."""
    with tf.GradientTape() as tape:
        value = loss.value(model(x, training=training), y)
    return value, tape.gradient(value, model.trainable_variables)


def gradient(model, loss, x, y):
    """∇f(θ) on the batch (eq. 9, averaged as in eq. 5), as a list shaped like the variables."""
    loss, x, y, _ = _checked(model, loss, x, y)
    return _gradient(model, loss, x, y)


@tf.function(reduce_retracing=True)
def _gradient(model, loss, x, y):
    return loss_and_gradient(model, loss, x, y)[1]


# ------------------------------------------------------------------ products
class Linearization:
    """The network linearised at θ on one batch, for all G·v products of an update.

    The forward pass runs once (build it inside a `tf.function`); each `ggn_vp` then costs
    one JVP and one VJP that reuse the recorded activations. The VJP is `tape.gradient` on a
    persistent tape, and the JVP is the transpose of that linear VJP, which the graph
    optimiser prunes down to the tangent propagation alone. With targets `y` the loss and the
    gradient come from the same pass.
    """

    def __init__(self, model, loss, x, y=None, forward=None):
        self.loss = _losses.get(loss)
        self.variables = model.trainable_variables
        self._tape = tf.GradientTape(persistent=True)
        with self._tape:
            if forward is None:
                self.z, self.extra = model(x), None
            else:
                self.z, self.extra = forward(x, self._tape)
            self.yhat = self.loss.phi(self.z)
            self.value = None if y is None else self.loss.value(self.z, y)
        self._z_const = tf.stop_gradient(self.z)
        self._inv_batch = 1.0 / _batch_size(self.z)

    def gradient(self, also=()):
        """∇f(θ) from the same forward pass (needs `y`); with `also`, the gradients of f with
        respect to those tensors too, from the same reverse pass."""
        if not also:
            return self._tape.gradient(self.value, self.variables)
        return self._tape.gradient(self.value, [self.variables, list(also)])

    def vjp(self, w, through_phi=False):
        """J_Rᵀ w for a cotangent w on the logits z (or J_{φ∘R}ᵀ w on ŷ = φ(z)), summed over the batch."""
        return self._tape.gradient(self.yhat if through_phi else self.z, self.variables, output_gradients=w)

    def jvp(self, v):
        """J_R v, as the transpose of the linear map w ↦ J_Rᵀ w."""
        w = tf.zeros_like(self.z)
        with tf.GradientTape() as outer:
            outer.watch(w)
            jt_w = self.vjp(w)
        return outer.gradient(jt_w, w, output_gradients=v)

    def ggn_vp(self, v, order="eq34"):
        """G·v = (1/B) J_Rᵀ H_{L∘φ} J_R v (eq. 39 without λ).

        ``order="eq34"``: u = H_{L∘φ} J_R v = J_φ J_R v = J_{φ∘R} v, then J_Rᵀ u.
        ``order="eq37"``: u = J_R v, then J_{φ∘R}ᵀ u = J_Rᵀ J_φᵀ u. For a matching loss
        H_{L∘φ} = J_φ = J_φᵀ (eq. 38), so both give the same product.
        """
        u = self.jvp(v)
        if order == "eq34":
            return self.vjp(self.loss.output_hessian_product(self._z_const, u) * self._inv_batch)
        return self.vjp(u * self._inv_batch, through_phi=True)


def linearize(model, loss, x, y=None, forward=None) -> Linearization:
    """Record the forward pass once; see `Linearization`. Call inside `tf.function`. `forward`
    (x, tape) ↦ (logits, extra) may replace `model(x)` by an equivalent pass that records more
    (e.g. `preconditioners.probed_forward`); `extra` is kept as `Linearization.extra`."""
    return Linearization(model, loss, x, y, forward)


def ggn_vector_product(model, loss, x, y, v, order="eq34"):
    """G·v for the batch mean (eq. 39 without λ), never forming G; `v` and the result are lists
    shaped like the variables. `y` is only validated: H_{L∘φ} does not depend on the targets.
    ``order`` is eq. (34) or eq. (37); see `Linearization.ggn_vp`."""
    checks.choice(order, "order", ORDERS)
    loss, x, _, v = _checked(model, loss, x, y, v)
    return _ggn_vector_product(model, loss, x, v, order)


@tf.function(reduce_retracing=True)
def _ggn_vector_product(model, loss, x, v, order):
    return linearize(model, loss, x).ggn_vp(v, order)


def hessian_vector_product(model, loss, x, y, v):
    """Exact H·v of the batch loss by forward-over-reverse differentiation (Pearlmutter)."""
    loss, x, y, v = _checked(model, loss, x, y, v)
    return _hessian_vector_product(model, loss, x, y, v)


@tf.function(reduce_retracing=True)
def _hessian_vector_product(model, loss, x, y, v):
    with tf.autodiff.ForwardAccumulator([w.value for w in model.trainable_variables], v) as acc:
        g = loss_and_gradient(model, loss, x, y)[1]
    return acc.jvp(g)


# These compiled helpers trace once per model, loss and batch shape: a new model means a new trace, by
# design. TensorFlow's "triggered tf.function retracing" warning (counted per Python function) would only
# be noise when a notebook or a study builds several models (issue 13.3).
for _compiled in (_gradient, _ggn_vector_product, _hessian_vector_product):
    _compiled._omit_frequent_tracing_warning = True


# ------------------------------------------------------------------ dense oracles
def _check_small(model):
    d = sum(int(tf.size(v)) for v in trainable_variables(model))
    if d > MAX_DENSE_PARAMS:
        raise ValueError(f"model: dense curvature matrices are for small models (d ≤ {MAX_DENSE_PARAMS}), "
                         f"this one has d = {d}; use the matrix-free products instead")
    return d


def dense_jacobian(model, x):
    """J_{R_x} for every example: shape (batch, m, d), columns in `flatten` order."""
    _check_small(model)
    x = checks.inputs(x, dtype=checks.model_dtype(model))
    variables = trainable_variables(model)
    with tf.GradientTape() as tape:
        z = model(x)
    jac = tape.jacobian(z, variables)
    batch, m = z.shape[0], z.shape[-1]
    return tf.concat([tf.reshape(j, [batch, m, -1]) for j in jac], axis=-1)


def dense_ggn(model, loss, x, y):
    """G = (1/B) Σ_i J_iᵀ H_{L∘φ}(z_i) J_i, eq. (15) averaged as in eq. (39), shape (d, d)."""
    _check_small(model)
    loss, x, _, _ = _checked(model, loss, x, y)
    jac = dense_jacobian(model, x)
    z = model(x)
    return tf.einsum("bmi,bmn,bnj->ij", jac, loss.output_hessian(z), jac) / _batch_size(z)


def dense_hessian(model, loss, x, y):
    """The exact Hessian of the batch loss f, shape (d, d), in `flatten` order."""
    _check_small(model)
    loss, x, y, _ = _checked(model, loss, x, y)
    variables = trainable_variables(model)
    with tf.GradientTape() as outer:
        g = flatten(loss_and_gradient(model, loss, x, y)[1])
    rows = outer.jacobian(g, variables)
    return tf.concat([tf.reshape(r, [g.shape[0], -1]) for r in rows], axis=-1)


# ------------------------------------------------------------------ linear operator
class DampedGGN(tf.linalg.LinearOperator):
    """G + λI on one batch (eq. 20) acting on flat vectors of length d.

    Self-adjoint, and positive definite for λ > 0, so it can be handed to
    `tf.linalg.experimental.conjugate_gradient` as well as to `hflib.pcg`.
    """

    def __init__(self, model, loss, x, y, damping, order="eq34", name="DampedGGN"):
        self.damping = checks.positive(damping, "damping")
        self.order = checks.choice(order, "order", ORDERS)
        self.model = model
        self.loss, self.x, self.y, _ = _checked(model, loss, x, y)
        self._variables = trainable_variables(model)
        self._d = sum(int(tf.size(v)) for v in self._variables)
        super().__init__(dtype=self._variables[0].dtype, is_self_adjoint=True,
                         is_positive_definite=True, is_square=True, name=name)

    def _shape(self):
        return tf.TensorShape([self._d, self._d])

    def _shape_tensor(self):
        return tf.constant([self._d, self._d], dtype=tf.int32)

    def _matvec_flat(self, v):
        def ggn(u):
            return flatten(_ggn_vector_product(self.model, self.loss, self.x, unflatten(u, self._variables),
                                               self.order))
        return tikhonov(ggn, self.damping)(v)

    def _matmul(self, x, adjoint=False, adjoint_arg=False):
        x = tf.linalg.adjoint(x) if adjoint_arg else x
        columns = tf.unstack(x, axis=-1)
        return tf.stack([self._matvec_flat(c) for c in columns], axis=-1)

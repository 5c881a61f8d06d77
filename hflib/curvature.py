"""Curvature-vector products and their dense oracles (report §III.C and §III.F).

Throughout, f(θ) = (1/B) Σ_i L_{y_i}(φ(R_{x_i}(θ))) is the batch mean (eq. 5),
z = R_x(θ) are the logits and J = J_{R_x} their Jacobian with respect to θ.

* `ggn_vector_product`  G·v = (1/B) Σ J_iᵀ H_{L∘φ} J_i v  (eq. 39 without λ),
  one forward-mode JVP and one reverse-mode VJP, in the order of eq. (34) or (37).
* `hessian_vector_product`  exact H·v (Pearlmutter 1994, forward-over-reverse).
* `linearize`  the same G·v with the forward pass done once per batch, for CG.
* `dense_jacobian`, `dense_ggn`, `dense_hessian`  explicit matrices for small
  models, flattened in `hflib.flatten` order.
* `DampedGGN`  G + λI as a `tf.linalg.LinearOperator` (eq. 20).
"""
from __future__ import annotations

import tensorflow as tf

from . import losses as _losses
from .vectors import check_like, flatten, unflatten

MAX_DENSE_PARAMS = 5000
ORDERS = ("eq34", "eq37")


# ------------------------------------------------------------------ input checks
def trainable_variables(model):
    """The model's trainable variables (Keras variables), refusing a model without any."""
    variables = list(getattr(model, "trainable_variables", None) or [])
    if not variables:
        raise ValueError("model: expected a built Keras model with trainable variables, found none "
                         "(build it with keras.Input or call it once on data)")
    return variables


def primals(model):
    """The underlying tf.Variables, as `tf.autodiff.ForwardAccumulator` requires."""
    return [v.value for v in trainable_variables(model)]


def check_inputs(x, name="x"):
    """Convert a batch of inputs to a tensor, refusing integer dtypes and empty batches."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"{name}: expected floating-point inputs, got {x.dtype.name}; "
                        f"cast them first (for images: x.astype('float32') / 255)")
    if x.shape.rank is None or x.shape.rank == 0:
        raise ValueError(f"{name}: expected a batch with a leading batch axis, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: empty batch (0 examples)")
    return x


def _check_labels(model, loss, x, y, variables):
    """Validate `y` eagerly (shape and range); inside the compiled products only shapes are checked."""
    loss.targets(y, tf.zeros([x.shape[0], model.output_shape[-1]], variables[0].dtype))


def _checked_product_inputs(model, loss, x, y, v):
    """The loss object, x as a tensor and v as tensors, after checking all of them (and y)."""
    loss = _losses.get(loss)
    x = check_inputs(x)
    variables = trainable_variables(model)
    v = check_like(v, variables)
    _check_labels(model, loss, x, y, variables)
    return loss, x, v


def _batch_size(z):
    return tf.cast(tf.shape(z)[0], z.dtype)


# ------------------------------------------------------------------ products
def gradient(model, loss, x, y):
    """∇f(θ) on the batch (eq. 9, averaged as in eq. 5), as a list shaped like the variables."""
    loss = _losses.get(loss)
    x = check_inputs(x)
    _check_labels(model, loss, x, y, trainable_variables(model))
    return _gradient(model, loss, x, y)


@tf.function(reduce_retracing=True)
def _gradient(model, loss, x, y):
    with tf.GradientTape() as tape:
        value = loss.value(model(x), y)
    return tape.gradient(value, model.trainable_variables)


def ggn_vector_product(model, loss, x, y, v, order="eq34"):
    """G·v for the batch mean (eq. 39 without λ), never forming G.

    ``order="eq34"``: u = J_{φ∘R} v by forward mode, then J_Rᵀ (A u) by reverse mode.
    ``order="eq37"``: u = J_R v by forward mode, then J_{φ∘R}ᵀ (Aᵀ u) by reverse mode.
    For the matching losses in `hflib.losses`, A = I (eq. 38), so both give
    Jᵀ H_{L∘φ} J v. `v` and the result are lists shaped like the variables.
    """
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
    loss, x, v = _checked_product_inputs(model, loss, x, y, v)
    return _ggn_vector_product(model, loss, x, v, order)


@tf.function(reduce_retracing=True)
def _ggn_vector_product(model, loss, x, v, order):
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        with tf.autodiff.ForwardAccumulator([w.value for w in variables], v) as acc:
            z = model(x)
            yhat = loss.phi(z)
        if order == "eq34":
            u, out = acc.jvp(yhat), z          # u = J_{φ∘R} v; back through R only
        else:
            u, out = acc.jvp(z), yhat          # u = J_R v; back through φ∘R
    u = tf.stop_gradient(u) / _batch_size(z)
    return tape.gradient(out, variables, output_gradients=u)


def hessian_vector_product(model, loss, x, y, v):
    """Exact H·v of the batch loss by forward-over-reverse differentiation (Pearlmutter)."""
    loss, x, v = _checked_product_inputs(model, loss, x, y, v)
    return _hessian_vector_product(model, loss, x, y, v)


@tf.function(reduce_retracing=True)
def _hessian_vector_product(model, loss, x, y, v):
    variables = model.trainable_variables
    with tf.autodiff.ForwardAccumulator([w.value for w in variables], v) as acc:
        with tf.GradientTape() as tape:
            value = loss.value(model(x), y)
        g = tape.gradient(value, variables)
    return acc.jvp(g)


class Linearization:
    """The network linearised at θ on one batch, for all CG iterations of an update.

    Build it inside a `tf.function`. The forward pass runs once; `ggn_vp`
    then costs one JVP and one VJP that reuse the recorded activations:
    the VJP is `tape.gradient` on a persistent tape, and the JVP is obtained as
    the transpose of that (linear) VJP, which the graph optimiser prunes down to
    the tangent propagation alone. The loss and gradient come for free.
    """

    def __init__(self, model, loss, x, y):
        self.loss = _losses.get(loss)
        self.variables = model.trainable_variables
        self._tape = tf.GradientTape(persistent=True)
        with self._tape:
            self.z = model(x)
            self.value = self.loss.value(self.z, y)
        self._z_const = tf.stop_gradient(self.z)
        self._inv_batch = 1.0 / _batch_size(self.z)

    def gradient(self):
        """∇f(θ) from the same forward pass."""
        return self._tape.gradient(self.value, self.variables)

    def vjp(self, w):
        """J_Rᵀ w for a cotangent w on the logits (summed over the batch)."""
        return self._tape.gradient(self.z, self.variables, output_gradients=w)

    def jvp(self, v):
        """J_R v, as the transpose of the linear map w ↦ J_Rᵀ w."""
        w = tf.zeros_like(self.z)
        with tf.GradientTape() as outer:
            outer.watch(w)
            jt_w = self.vjp(w)
        return outer.gradient(jt_w, w, output_gradients=v)

    def ggn_vp(self, v):
        """G·v = (1/B) J_Rᵀ H_{L∘φ} J_R v (eq. 39 without λ)."""
        u = self.loss.output_hessian_product(self._z_const, self.jvp(v))
        return self.vjp(u * self._inv_batch)


def linearize(model, loss, x, y) -> Linearization:
    """Record the forward pass once; see `Linearization`. Call inside `tf.function`."""
    return Linearization(model, loss, x, y)


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
    x = check_inputs(x)
    variables = trainable_variables(model)
    with tf.GradientTape() as tape:
        z = model(x)
    jac = tape.jacobian(z, variables)
    batch, m = z.shape[0], z.shape[-1]
    return tf.concat([tf.reshape(j, [batch, m, -1]) for j in jac], axis=-1)


def dense_ggn(model, loss, x, y):
    """G = (1/B) Σ_i J_iᵀ H_{L∘φ}(z_i) J_i, eq. (15) averaged as in eq. (39), shape (d, d)."""
    loss = _losses.get(loss)
    jac = dense_jacobian(model, x)
    z = model(check_inputs(x))
    loss.targets(y, z)
    h = loss.output_hessian(z)
    return tf.einsum("bmi,bmn,bnj->ij", jac, h, jac) / _batch_size(z)


def dense_hessian(model, loss, x, y):
    """The exact Hessian of the batch loss f, shape (d, d), in `flatten` order."""
    loss = _losses.get(loss)
    _check_small(model)
    x = check_inputs(x)
    variables = trainable_variables(model)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = loss.value(model(x), y)
        g = flatten(inner.gradient(value, variables))
    rows = outer.jacobian(g, variables)
    return tf.concat([tf.reshape(r, [g.shape[0], -1]) for r in rows], axis=-1)


# ------------------------------------------------------------------ linear operator
class DampedGGN(tf.linalg.LinearOperator):
    """G + λI on one batch (eq. 20) acting on flat vectors of length d.

    Self-adjoint, and positive definite for λ > 0, so it can be handed to
    `tf.linalg.experimental.conjugate_gradient` as well as to `hflib.pcg`.
    """

    def __init__(self, model, loss, x, y, damping, order="eq34", name="DampedGGN"):
        if not damping > 0:
            raise ValueError(f"damping: expected λ > 0, got {damping}")
        if order not in ORDERS:
            raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
        self.model, self.loss, self.order = model, _losses.get(loss), order
        self.x, self.y = check_inputs(x), y
        self.damping = float(damping)
        self._variables = trainable_variables(model)
        self._d = sum(int(tf.size(v)) for v in self._variables)
        super().__init__(dtype=self._variables[0].dtype, is_self_adjoint=True,
                         is_positive_definite=True, is_square=True, name=name)

    def _shape(self):
        return tf.TensorShape([self._d, self._d])

    def _shape_tensor(self):
        return tf.constant([self._d, self._d], dtype=tf.int32)

    def _matvec_flat(self, v):
        gv = _ggn_vector_product(self.model, self.loss, self.x,
                                 unflatten(v, self._variables), self.order)
        return flatten(gv) + self.damping * v

    def _matmul(self, x, adjoint=False, adjoint_arg=False):
        x = tf.linalg.adjoint(x) if adjoint_arg else x
        columns = tf.unstack(x, axis=-1)
        return tf.stack([self._matvec_flat(c) for c in columns], axis=-1)

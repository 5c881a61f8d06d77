"""Matching losses L∘φ (report §II.B and §II.D, eqs. 3–4 and 10).

The model returns z = R_x(θ) (logits); the output nonlinearity φ belongs to the
loss. For each loss here the gradient of L_y∘φ with respect to z is
φ(z) − y, i.e. eq. (10) holds with A = I and b = −y, so by eq. (38) the Hessian
H_{L∘φ}(z) = J_φ(z) is symmetric positive semidefinite and independent of y.

Conventions (per example, the batch value is the mean over examples, eq. 5):

=========================  ============  =====================================
name                       φ             L_y(ŷ)
=========================  ============  =====================================
``softmax_cross_entropy``  softmax       −Σ_j y_j log ŷ_j
``squared_error``          identity      ½ Σ_j (ŷ_j − y_j)²
``sigmoid_cross_entropy``  sigmoid       −Σ_j [y_j log ŷ_j + (1−y_j) log(1−ŷ_j)]
=========================  ============  =====================================

Note the ½ in the squared error: it makes H_{L∘φ} = I exactly.
"""
from __future__ import annotations

import abc

import tensorflow as tf

__all__ = ["MatchingLoss", "SoftmaxCrossEntropy", "SquaredError", "SigmoidCrossEntropy", "get", "names"]


class MatchingLoss(abc.ABC):
    """A loss L_y∘φ on logits z of shape (batch, m)."""

    name: str = ""

    # --- to be provided by each loss -------------------------------------------------
    @abc.abstractmethod
    def phi(self, z):
        """The output nonlinearity ŷ = φ(z), eq. (2)."""

    @abc.abstractmethod
    def per_example(self, z, targets):
        """L_y(φ(z)) for each example, shape (batch,)."""

    @abc.abstractmethod
    def output_hessian_product(self, z, u):
        """H_{L∘φ}(z)·u for each example (eqs. 30–32, 38); z, u of shape (batch, m)."""

    @abc.abstractmethod
    def output_hessian(self, z):
        """Dense H_{L∘φ}(z) for each example, shape (batch, m, m)."""

    @abc.abstractmethod
    def sqrt_output_hessian_product(self, z, v):
        """S(z)·v for a factor with S Sᵀ = H_{L∘φ}(z) (Chapelle & Erhan 2011)."""

    def targets(self, y, z):
        """Validate labels `y` against logits `z` and return float targets (batch, m)."""
        y = tf.convert_to_tensor(y)
        m = z.shape[-1]
        if y.shape.rank == 1 and m == 1:
            y = y[:, None]
        if y.shape.rank != 2 or (y.shape[-1] is not None and y.shape[-1] != m):
            raise ValueError(f"y: expected targets of shape (batch, {m}) for {self.name}, got {tuple(y.shape)}")
        _check_batch(y, z)
        return tf.cast(y, z.dtype)

    # --- shared ----------------------------------------------------------------------
    def value(self, z, y):
        """Mean loss over the batch, eq. (5)."""
        return tf.reduce_mean(self.per_example(z, self.targets(y, z)))

    def __call__(self, z, y):
        return self.value(z, y)

    def residual(self, z, y):
        """∂(L_y∘φ)/∂z = φ(z) − y for each example: eq. (10) with A = I, b = −y."""
        return self.phi(z) - self.targets(y, z)

    def __repr__(self):
        return f"hflib.losses.get({self.name!r})"


class SoftmaxCrossEntropy(MatchingLoss):
    """Softmax + cross-entropy; labels are integer class ids (batch,) or one-hot (batch, m)."""

    name = "softmax_cross_entropy"

    def phi(self, z):
        return tf.nn.softmax(z, axis=-1)

    def targets(self, y, z):
        y = tf.convert_to_tensor(y)
        m = z.shape[-1]
        if y.dtype.is_integer:
            if y.shape.rank != 1:
                raise ValueError(f"y: integer class ids must have shape (batch,), got {tuple(y.shape)}")
            _check_batch(y, z)
            if tf.executing_eagerly() and y.shape[0]:
                lo, hi = int(tf.reduce_min(y)), int(tf.reduce_max(y))
                if lo < 0 or hi >= m:
                    raise ValueError(f"y: class ids must lie in [0, {m}), got values in [{lo}, {hi}]")
            return tf.one_hot(y, m, dtype=z.dtype)
        return super().targets(y, z)

    def per_example(self, z, targets):
        return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=z)

    def output_hessian_product(self, z, u):
        p = self.phi(z)
        return p * u - p * tf.reduce_sum(p * u, axis=-1, keepdims=True)  # (diag p − p pᵀ) u

    def output_hessian(self, z):
        p = self.phi(z)
        return tf.linalg.diag(p) - p[:, :, None] * p[:, None, :]

    def sqrt_output_hessian_product(self, z, v):
        # S = diag(√p) − p √pᵀ satisfies S Sᵀ = diag(p) − p pᵀ because Σ p = 1.
        p = self.phi(z)
        s = tf.sqrt(p)
        return s * v - p * tf.reduce_sum(s * v, axis=-1, keepdims=True)


class SquaredError(MatchingLoss):
    """Identity + ½‖ŷ − y‖²; targets (batch, m), or (batch,) when m = 1."""

    name = "squared_error"

    def phi(self, z):
        return z

    def per_example(self, z, targets):
        return 0.5 * tf.reduce_sum(tf.square(z - targets), axis=-1)

    def output_hessian_product(self, z, u):
        return u

    def output_hessian(self, z):
        batch, m = tf.shape(z)[0], z.shape[-1]
        return tf.eye(m, batch_shape=[batch], dtype=z.dtype)

    def sqrt_output_hessian_product(self, z, v):
        return v


class SigmoidCrossEntropy(MatchingLoss):
    """Elementwise sigmoid + binary cross-entropy; targets in [0, 1], shape (batch, m)."""

    name = "sigmoid_cross_entropy"

    def phi(self, z):
        return tf.sigmoid(z)

    def targets(self, y, z):
        t = super().targets(y, z)
        if tf.executing_eagerly() and t.shape[0]:
            lo, hi = float(tf.reduce_min(t)), float(tf.reduce_max(t))
            if lo < 0 or hi > 1:
                raise ValueError(f"y: sigmoid cross-entropy targets must lie in [0, 1], got [{lo}, {hi}]")
        return t

    def per_example(self, z, targets):
        return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=z), axis=-1)

    def output_hessian_product(self, z, u):
        p = self.phi(z)
        return p * (1 - p) * u

    def output_hessian(self, z):
        p = self.phi(z)
        return tf.linalg.diag(p * (1 - p))

    def sqrt_output_hessian_product(self, z, v):
        p = self.phi(z)
        return tf.sqrt(p * (1 - p)) * v


_LOSSES = {cls.name: cls for cls in (SoftmaxCrossEntropy, SquaredError, SigmoidCrossEntropy)}
_INSTANCES: dict[str, MatchingLoss] = {}


def names() -> list[str]:
    """The names `get` accepts."""
    return sorted(_LOSSES)


def get(name) -> MatchingLoss:
    """Return the matching loss called `name` (or `name` itself if it already is one)."""
    if isinstance(name, MatchingLoss):
        return name
    if not isinstance(name, str):
        raise TypeError(f"loss: expected a name out of {names()} or a MatchingLoss, got {type(name).__name__}")
    if name not in _LOSSES:
        raise ValueError(f"loss: unknown loss {name!r}; known losses are {names()}")
    # One shared (stateless) instance per name: the compiled products take the loss as a
    # tf.function argument, and a fresh instance per call would retrace them every call.
    if name not in _INSTANCES:
        _INSTANCES[name] = _LOSSES[name]()
    return _INSTANCES[name]


def _check_batch(y, z):
    if y.shape[0] is not None and z.shape[0] is not None and y.shape[0] != z.shape[0]:
        raise ValueError(f"y: expected {z.shape[0]} targets to match the batch of inputs, got {y.shape[0]}")


"""The per-batch quantities of one HF update (layer 2), on one device or under a `tf.distribute`
strategy, behind one interface.

An update needs, on its batch: f and ∇f on the gradient batch, f(θ) and f(θ + δ) on the
curvature batch, G·v (from one linearisation), and a curvature diagonal for the preconditioner.
`OneDevice` and `Replicated` provide the data terms; `Objective` adds the L2 weight-decay term
½·w‖θ‖² with its gradient w·θ and curvature w·I (Martens 2010), so every quantity the update sees
is that of the same objective. All are batch means and are built inside the update's
`tf.function`; they receive what they need, never the optimizer.
"""
from __future__ import annotations

import tensorflow as tf

from . import preconditioners as _pre
from .curvature import linearize, loss_and_gradient
from .vectors import axpy, dot


def loss_at(model, loss, delta, x, y):
    """f(θ + δ) on (x, y) without touching the variables (Keras' stateless call)."""
    values = [v.value + d for v, d in zip(model.trainable_variables, delta)]
    z, _ = model.stateless_call(values, [v.value for v in model.non_trainable_variables], x)
    return loss.value(z, y)


def curvature_part(x, y, size):
    """The first `size` examples (the curvature batch), or the whole batch when `size` is None."""
    return (x, y) if size is None else (x[:size], y[:size])


class OneDevice:
    """Batch means on one device: the curvature batch is linearised once (one forward pass) and
    every G·v reuses it; when the curvature batch is the whole batch, f and ∇f come from the same
    pass."""

    def __init__(self, model, loss, x, y, curvature_batch_size=None, fisher_examples=None, fisher=False):
        self.model, self.loss, self.x, self.y = model, loss, x, y
        self.xc, self.yc = curvature_part(x, y, curvature_batch_size)
        self.separate = curvature_batch_size is not None
        self.fisher_examples = fisher_examples
        # Martens' diagonal from the gradient's own reverse pass: the linearisation's forward pass
        # carries the probes of the exact per-layer rule (same function, one reverse pass saved)
        self.fused = fisher and not self.separate and _pre.has_exact_rule(model)
        forward = (lambda x, tape: _pre.probed_forward(model, x, tape)) if self.fused else None
        self.lin = linearize(model, loss, self.xc, self.yc, forward)
        self._deltas = None

    def loss_and_gradient(self):
        if self.fused:
            grad, deltas = self.lin.gradient(also=[probe for _, _, probe in self.lin.extra])
            batch = tf.cast(tf.shape(self.x)[0], grad[0].dtype)
            self._deltas = [d * batch for d in deltas]           # ∂ℓ_i/∂probe_i of the summed loss
            return self.lin.value, grad
        if not self.separate:
            return self.lin.value, self.lin.gradient()
        return loss_and_gradient(self.model, self.loss, self.x, self.y)

    def curvature_loss(self):
        return self.lin.value

    def ggn_vp(self, v):
        return self.lin.ggn_vp(v)

    def loss_at(self, delta):
        return loss_at(self.model, self.loss, delta, self.xc, self.yc)

    def fisher_diagonal(self):
        if self.fused:
            if self._deltas is None:
                self.loss_and_gradient()
            return _pre.fisher_diagonal_from_deltas(self.model, self.lin.extra, self._deltas)
        return _pre.empirical_fisher_diagonal(self.model, self.loss, self.x, self.y,
                                              max_examples=self.fisher_examples)

    def ggn_diagonal_estimate(self, seed):
        return _pre.ggn_diagonal_estimate(self.model, self.loss, self.xc, self.yc, seed=seed)


class Replicated:
    """The same batch means under a `tf.distribute` strategy. Every replica computes each quantity
    on its share of the batch and an all-reduce forms the weighted sum, so CG, backtracking, the
    line search and λ see identical numbers on every replica. MirroredStrategy allows no all-reduce
    inside a replica's loop, so CG runs in cross-replica context and each G·v is one
    `strategy.run`; each replica linearises its share once per update (the first `strategy.run`)
    and every later G·v reuses that linearisation, as on one device."""

    def __init__(self, strategy, model, loss, x, y, curvature_batch_size=None, fisher_examples=None):
        self.strategy, self.model, self.loss, self.x, self.y = strategy, model, loss, x, y
        self.xc, self.yc = curvature_part(x, y, curvature_batch_size)
        self.separate = curvature_batch_size is not None
        self.fisher_examples = fisher_examples
        self._lins = {}                      # replica id -> (its Linearization, its share of the batch)
        self._curvature_loss = self._reduce(self.strategy.run(self._linearize_share))

    def _share(self, x, y):
        """This replica's slice of the batch and its weight n_replica / n."""
        ctx = tf.distribute.get_replica_context()
        n = tf.shape(x)[0]
        i, replicas = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
        lo, hi = i * n // replicas, (i + 1) * n // replicas
        dtype = self.model.trainable_variables[0].dtype
        return x[lo:hi], y[lo:hi], tf.cast(hi - lo, dtype) / tf.cast(n, dtype)

    def _linearize_share(self):
        x, y, weight = self._share(self.xc, self.yc)
        lin = linearize(self.model, self.loss, x, y)
        self._lins[_replica_id()] = (lin, weight)
        return lin.value * weight

    def _reduce(self, per_replica):
        return tf.nest.map_structure(lambda t: self.strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None),
                                     per_replica)

    def _on_linearization(self, fn, *args):
        """Σ_replicas weight · fn(the replica's Linearization, *args)."""
        def local(*args):
            lin, weight = self._lins[_replica_id()]
            return tf.nest.map_structure(lambda t: t * weight, fn(lin, *args))
        return self._reduce(self.strategy.run(local, args=args))

    def _mean(self, fn, x, y, *args):
        """Σ_replicas (n_replica / n) · fn(shard, *args): the batch mean of per-shard means."""
        def on_replica(*args):
            xs, ys, weight = self._share(x, y)
            return tf.nest.map_structure(lambda t: t * weight, fn(xs, ys, *args))
        return self._reduce(self.strategy.run(on_replica, args=args))

    def loss_and_gradient(self):
        if not self.separate:
            return self._on_linearization(lambda lin: (lin.value, lin.gradient()))
        return self._mean(lambda x, y: loss_and_gradient(self.model, self.loss, x, y), self.x, self.y)

    def curvature_loss(self):
        return self._curvature_loss

    def ggn_vp(self, v):
        return self._on_linearization(lambda lin, v: lin.ggn_vp(v), v)

    def loss_at(self, delta):
        return self._mean(lambda x, y, d: loss_at(self.model, self.loss, d, x, y), self.xc, self.yc, delta)

    def fisher_diagonal(self):
        return self._mean(lambda x, y: _pre.empirical_fisher_diagonal(
            self.model, self.loss, x, y, max_examples=self.fisher_examples), self.x, self.y)

    def ggn_diagonal_estimate(self, seed):
        return self._mean(lambda x, y, s: _pre.ggn_diagonal_estimate(self.model, self.loss, x, y, seed=s),
                          self.xc, self.yc, seed)


def _replica_id():
    """The current replica's index as a Python int (to find its linearisation)."""
    return tf.distribute.get_replica_context()._replica_id_in_sync_group


class Objective:
    """f + ½·w‖θ‖² on a batch (`OneDevice` or `Replicated`): the L2 term enters the loss, the
    gradient (+ w·θ), G·v (+ w·v) and the curvature diagonal (+ w) exactly. With w = 0 it passes
    the data terms through unchanged."""

    def __init__(self, batch, weight_decay, variables):
        self.batch, self.w = batch, weight_decay
        self.theta = [v.value for v in variables]

    def _penalty(self, delta=None):
        theta = self.theta if delta is None else [t + d for t, d in zip(self.theta, delta)]
        return 0.5 * self.w * dot(theta, theta)

    def loss_and_gradient(self):
        """(data loss, objective, ∇objective) on the gradient batch."""
        value, grad = self.batch.loss_and_gradient()
        if not self.w:
            return value, value, grad
        return value, value + self._penalty(), axpy(self.w, self.theta, grad)

    def curvature_loss(self):
        value = self.batch.curvature_loss()
        return value + self._penalty() if self.w else value

    def loss_at(self, delta):
        value = self.batch.loss_at(delta)
        return value + self._penalty(delta) if self.w else value

    def ggn_vp(self, v):
        gv = self.batch.ggn_vp(v)
        return axpy(self.w, v, gv) if self.w else gv

    def _plus_w(self, diagonal):
        return [d + self.w for d in diagonal] if self.w else diagonal

    def fisher_diagonal(self):
        return self._plus_w(self.batch.fisher_diagonal())

    def ggn_diagonal_estimate(self, seed):
        return self._plus_w(self.batch.ggn_diagonal_estimate(seed))

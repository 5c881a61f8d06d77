"""Choosing the step along CG's iterates: Martens' (2010) CG backtracking and the Armijo line search.

Neither is in the report's Algorithm 1; both are switchable in `HFConfig`. Each is a compiled
`tf.while_loop` over a loss function `loss_at(δ) = f(θ + δ)` that the caller provides, so they
can be tested on hand-made functions.

* `backtrack`: CG's last iterate overfits the batch it was fitted on, so walk back over the
  iterates saved at i = ⌈5·1.3ʲ⌉ while the loss keeps decreasing, and keep the best.
* `armijo`: the largest rate t = shrinkᵏ (k ≤ max_tries) with
  f(θ + t p) ≤ f(θ) + c·t·∇fᵀp (sufficient decrease); t = 0 (reject the step) if none qualifies.
"""
from __future__ import annotations

import tensorflow as tf

from . import checks
from .vectors import scale

ARMIJO_C = 1e-2          # Martens 2010
ARMIJO_SHRINK = 0.8
ARMIJO_MAX_TRIES = 60


def backtrack(loss_at, saved, saved_phi, p, f_p, phi_p):
    """Martens' CG backtracking.

    Args:
      loss_at: δ ↦ f(θ + δ) (a scalar tensor), δ a list shaped like `p`.
      saved: the saved iterates, a list of tensors each stacked along axis 0 (earliest first),
        as `CGResult.saved`; may hold zero iterates.
      saved_phi: φ at each saved iterate, shape (n_saved,).
      p, f_p, phi_p: CG's last iterate, f(θ + p) and φ(p).
    Returns:
      (p*, f(θ + p*), φ(p*), index) where index is the position of p* in `saved`, or −1 when
      the last iterate is kept. Walking stops at the first saved iterate that is not better
      (a non-finite loss counts as worse than any finite one).
    """
    n_saved = tf.shape(saved_phi)[0]

    def cond(j, best, f_best, phi_best, index, go_on):
        return go_on & (j >= 0)

    def body(j, best, f_best, phi_best, index, go_on):
        candidate = [s[j] for s in saved]
        f_c = loss_at(candidate)
        # a finite loss beats a non-finite one (NaN compares False)
        better = (f_c < f_best) | (tf.math.is_finite(f_c) & ~tf.math.is_finite(f_best))
        pick = lambda a, b: tf.where(better, a, b)
        return (j - 1, [pick(c, q) for c, q in zip(candidate, best)], pick(f_c, f_best),
                pick(saved_phi[j], phi_best), pick(j, index), better)

    state = (n_saved - 1, list(p), f_p, phi_p, tf.constant(-1), tf.constant(True))
    _, best, f_best, phi_best, index, _ = tf.while_loop(cond, body, state)
    return best, f_best, phi_best, index


def armijo(loss_at, p, f_0, f_p, slope, c=ARMIJO_C, shrink=ARMIJO_SHRINK, max_tries=ARMIJO_MAX_TRIES):
    """Armijo backtracking line search along p, starting at t = 1 (where f(θ + p) = f_p is known).

    Args:
      loss_at: δ ↦ f(θ + δ).
      p: the direction (a list of tensors); f_0 = f(θ); f_p = f(θ + p); slope = ∇fᵀp (< 0 for descent).
      c ∈ (0, 1), shrink ∈ (0, 1), max_tries ≥ 0 shrinks: Martens' 1e-2, 0.8 and 60.
    Returns:
      (t, f(θ + t p)); t = 0 and f_0 when no rate t = shrinkᵏ, k ≤ max_tries, passes the test
      or the loss there is not finite.
    """
    c = checks.number(c, "armijo_c", low=0.0, high=1.0, low_open=True, high_open=True)
    shrink = checks.number(shrink, "armijo_shrink", low=0.0, high=1.0, low_open=True, high_open=True)
    max_tries = checks.integer(max_tries, "armijo_max_tries", low=0)
    c = tf.cast(c, f_0.dtype)

    def sufficient(t, f_t):
        return (f_t <= f_0 + c * t * slope) & tf.math.is_finite(f_t)

    def cond(k, t, f_t):
        return (k < max_tries) & ~sufficient(t, f_t)

    def body(k, t, f_t):
        t = t * shrink
        return k + 1, t, loss_at(scale(t, p))

    _, t, f_t = tf.while_loop(cond, body, (tf.constant(0), tf.ones_like(f_0), f_p))
    accept = sufficient(t, f_t)
    return tf.where(accept, t, tf.zeros_like(t)), tf.where(accept, f_t, f_0)

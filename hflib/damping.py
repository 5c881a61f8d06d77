"""Tikhonov damping and the Levenberg–Marquardt rule (report §III.D, eqs. 20–26).

The reduction ratio compares what the loss really did with what the quadratic
model promised:

    ρ = (f(θ + p) − f(θ)) / (q(p) − q(0)).                              (25)

Both numerator and denominator are negative for a good step, so ρ ≈ 1 when the
model is trusted. (Eq. 25 as printed has f(θ_k) − f(θ_{k+1}) on top, which
flips the sign; we follow Martens.) The LM rule (26) then moves λ by a factor r:
ρ < ¼ → λ·r, ρ > ¾ → λ/r, otherwise unchanged. A NaN ρ, or a loss that went
up (Martens takes ρ = −∞ then), counts as ρ < ¼.

Which quadratic goes in the denominator differs between implementations:
Martens' code uses the *undamped* q (his comment admits doubt), others use the
damped one. With CG's φ(p) = q_λ(p) − q_λ(0) in hand, the undamped value is
φ(p) − ½λ‖p‖², so both are free; see `model_reduction`.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from . import checks
from .vectors import axpy, dot

RULES = ("damped", "undamped")


def tikhonov(product, damping):
    """v ↦ (G + λI) v from v ↦ G v (eq. 20): the one place where λI is added. Works on a
    single tensor or on a list of tensors shaped like the variables."""
    def damped(v):
        gv = product(v)
        if isinstance(v, (list, tuple)):
            return axpy(damping, v, gv)
        return damping * v + gv
    return damped


def model_reduction(phi, p, damping, denominator="damped"):
    """q(p) − q(0) from CG's φ(p) = ½pᵀ(G+λI)p + ∇fᵀp: damped as is, undamped minus ½λ‖p‖²."""
    checks.choice(denominator, "denominator", RULES)
    if denominator == "damped":
        return phi
    return phi - 0.5 * damping * dot(p, p)


def reduction_ratio(f_old, f_new, q_reduction):
    """ρ of eq. (25), Martens' sign convention; −∞ when the loss went up, NaN stays NaN."""
    f_old, f_new, q_reduction = (_as_tensor(t) for t in (f_old, f_new, q_reduction))
    dtype = q_reduction.dtype
    f_old, f_new = tf.cast(f_old, dtype), tf.cast(f_new, dtype)
    rho = (f_new - f_old) / q_reduction
    went_up = f_new > f_old
    return tf.where(went_up, tf.constant(-math.inf, dtype), rho)


def _as_tensor(value):
    """Python and NumPy numbers become float64 tensors (not TensorFlow's default float32)."""
    if isinstance(value, (int, float, np.floating)):
        return tf.constant(value, tf.float64)
    return tf.convert_to_tensor(value)


def lm_update(damping, rho, r=1.5, lower=0.25, upper=0.75):
    """The LM rule (26): λ·r if ρ < lower (or NaN), λ/r if ρ > upper, else λ.

    Works on Python floats and on tensors (then it stays in the graph).
    """
    if not tf.is_tensor(r):
        r = checks.factor(r, "r")
    if tf.is_tensor(damping) or tf.is_tensor(rho):
        # a common dtype from whichever is a tensor; Python numbers go through tf.constant
        # (tf.cast(0.1, tf.float64) would round to float32 first)
        dtype = (rho if tf.is_tensor(rho) else tf.convert_to_tensor(damping)).dtype
        rho, damping = (tf.cast(t, dtype) if tf.is_tensor(t) else tf.constant(t, dtype) for t in (rho, damping))
        shrink = rho > upper
        # true for ρ < lower and for NaN (not ~(ρ >= lower): inside tf.function Grappler rewrites
        # that into ρ < lower, which is False for NaN)
        grow = (rho < lower) | tf.math.is_nan(rho)
        return tf.where(grow, damping * r, tf.where(shrink, damping / r, damping))
    damping = checks.positive(damping, "damping")
    rho = float(rho)
    if math.isnan(rho) or rho < lower:
        return damping * r
    if rho > upper:
        return damping / r
    return damping


def clamp(damping, lo, hi):
    """Keep λ inside [lo, hi]."""
    return tf.clip_by_value(damping, lo, hi)


def trace(rhos, initial_damping=1.0, r=1.5):
    """The λ sequence the rule produces from a sequence of ρ values (for plots and widgets)."""
    lam = [float(initial_damping)]
    for rho in rhos:
        lam.append(lm_update(lam[-1], float(rho), r))
    return lam

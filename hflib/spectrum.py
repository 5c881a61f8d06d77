"""Both ends of the spectrum of a symmetric operator, matrix-free, by the Lanczos method.

For a network G has d² entries, but its largest and smallest eigenvalues only need products
G·v (report §III.F). `lanczos` builds an orthonormal basis Q of the Krylov space
span{q, Kq, …, K^{n−1}q} of a random start q; the operator restricted to that space is the
tridiagonal T = Q K Qᵀ, and the eigenvalues of T (Ritz values) converge first at the two ends
of the spectrum. Every Ritz value lies in [μ_min, μ_max] (interlacing), and for a Ritz pair
(θ, y) some eigenvalue of K lies within ‖K y − θ y‖ of θ (Bauer–Fike for symmetric K); the
pairs returned by `extreme_eigenpairs` carry that residual, measured with one extra product.

The basis is reorthogonalised in full (twice per step), so the n basis vectors are kept:
n·d float64 numbers (n = 40 steps of the 784-800-10 net: about 200 MB).

* `lanczos(matvec, dim, steps)`                 the tridiagonal T and the basis Q.
* `extreme_eigenpairs(operator, k, steps)`      the k largest and k smallest Ritz pairs.
* `ggn_extreme_eigenpairs(model, loss, x, y)`   the same for G of the batch (eq. 39 without λ).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from .curvature import ggn_vector_product, trainable_variables
from .vectors import flatten, unflatten

# an off-diagonal β below this fraction of ‖T‖ means the Krylov space is invariant: T is exact
_INVARIANT = 1e-12


class SpectrumEnds(NamedTuple):
    """The extreme Ritz pairs of a symmetric operator (NumPy float64 arrays)."""

    top: np.ndarray               # the k largest Ritz values, descending
    bottom: np.ndarray            # the k smallest Ritz values, ascending
    top_vectors: np.ndarray       # (k, dim) unit Ritz vectors of `top`
    bottom_vectors: np.ndarray    # (k, dim) unit Ritz vectors of `bottom`
    top_residuals: np.ndarray     # ‖K y − θ y‖: an eigenvalue lies this close to each θ in `top`
    bottom_residuals: np.ndarray  # the same for `bottom`
    ritz_values: np.ndarray       # all Ritz values, ascending
    steps: int                    # Lanczos steps taken (products K·q)

    def condition_number(self, damping=0.0):
        """(θ_max + λ) / (θ_min + λ): the condition number of K + λI estimated from the two ends."""
        lam = _non_negative(damping, "damping")
        low = self.bottom[0] + lam
        return np.inf if low <= 0 else float((self.top[0] + lam) / low)


def lanczos(matvec, dim, steps, seed=0):
    """Lanczos tridiagonalisation of a symmetric operator, with full reorthogonalisation.

    matvec: maps a float64 vector of length `dim` to K times it (array-like of length `dim`).
    Returns (alpha, beta, basis, beta_last): the diagonal (n,) and off-diagonal (n − 1,) of
    T = Q K Qᵀ, the orthonormal rows Q (n, dim), and the β that would continue the recursion
    (0 when the Krylov space is invariant). n = `steps`, or fewer when an invariant
    subspace is found first (then T's eigenvalues are exact eigenvalues of K).
    """
    dim = _positive_int(dim, "dim")
    steps = min(_positive_int(steps, "steps"), dim)
    if not callable(matvec):
        raise TypeError(f"matvec: expected a callable v -> K v, got {type(matvec).__name__}")
    q = np.random.default_rng(seed).standard_normal(dim)
    q /= np.linalg.norm(q)
    basis = np.empty((steps, dim))
    alpha, beta = [], []
    scale = 0.0
    for j in range(steps):
        basis[j] = q
        w = _apply(matvec, q, dim)
        alpha.append(float(q @ w))
        previous = basis[: j + 1]
        for _ in range(2):                      # "twice is enough" (Kahan–Parlett)
            w -= previous.T @ (previous @ w)
        b = float(np.linalg.norm(w))
        scale = max(scale, abs(alpha[-1]), b)
        if b <= _INVARIANT * scale:
            return np.array(alpha), np.array(beta), basis[: j + 1], 0.0
        if j == steps - 1:
            return np.array(alpha), np.array(beta), basis, b
        beta.append(b)
        q = w / b


def extreme_eigenpairs(operator, k=1, steps=40, seed=0, dim=None):
    """The k largest and k smallest eigenpairs of a symmetric operator, estimated by Lanczos.

    operator: a self-adjoint `tf.linalg.LinearOperator` (e.g. `hflib.DampedGGN`), or a callable
    v -> K v on flat float64 vectors together with `dim`. Costs `steps` + 2k products.
    """
    matvec, dim = _as_matvec(operator, dim)
    k = _positive_int(k, "k")
    alpha, beta, basis, _ = lanczos(matvec, dim, steps, seed)
    n = len(alpha)
    if 2 * k > n:
        raise ValueError(f"k: 2k = {2 * k} Ritz pairs requested from only {n} Lanczos steps; "
                         f"use steps ≥ 2k (and well above it for accuracy)")
    ritz, coefficients = np.linalg.eigh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
    vectors = coefficients.T @ basis                       # row i: the Ritz vector of ritz[i]
    top, bottom = slice(n - 1, n - 1 - k, -1), slice(0, k)

    def residuals(values, rows):
        return np.array([np.linalg.norm(_apply(matvec, y, dim) - t * y) for t, y in zip(values, rows)])

    return SpectrumEnds(top=ritz[top], bottom=ritz[bottom],
                        top_vectors=vectors[top], bottom_vectors=vectors[bottom],
                        top_residuals=residuals(ritz[top], vectors[top]),
                        bottom_residuals=residuals(ritz[bottom], vectors[bottom]),
                        ritz_values=ritz, steps=n)


def ggn_extreme_eigenpairs(model, loss, x, y, k=1, steps=40, seed=0, order="eq34"):
    """Both ends of the spectrum of G on the batch (x, y) (eq. 39 without λ), never forming G.

    Each Lanczos step costs one `hflib.ggn_vector_product`; vectors are flat, in `flatten` order.
    """
    variables = trainable_variables(model)
    dim = sum(int(tf.size(v)) for v in variables)

    def matvec(v):
        gv = ggn_vector_product(model, loss, x, y, unflatten(tf.constant(v, variables[0].dtype), variables),
                                order=order)
        return flatten(gv).numpy()

    return extreme_eigenpairs(matvec, k=k, steps=steps, seed=seed, dim=dim)


# ------------------------------------------------------------------ helpers
def _as_matvec(operator, dim):
    if isinstance(operator, tf.linalg.LinearOperator):
        if operator.is_self_adjoint is not True:
            raise ValueError("operator: expected a self-adjoint LinearOperator (is_self_adjoint=True)")
        n = int(operator.shape[-1])
        if dim is not None and _positive_int(dim, "dim") != n:
            raise ValueError(f"dim: {dim} does not match the operator's size {n}")
        return (lambda v: operator.matvec(tf.constant(v, operator.dtype)).numpy()), n
    if callable(operator):
        if dim is None:
            raise TypeError("dim: required when the operator is a callable")
        return operator, _positive_int(dim, "dim")
    raise TypeError(f"operator: expected a tf.linalg.LinearOperator or a callable, got {type(operator).__name__}")


def _apply(matvec, v, dim):
    w = np.array(matvec(v), dtype=np.float64).reshape(-1)   # a copy: the caller's array is never changed
    if w.shape != (dim,):
        raise ValueError(f"matvec: expected a result of length {dim}, got shape {np.shape(w)}")
    if not np.all(np.isfinite(w)):
        raise ValueError("matvec: the product is not finite")
    return w


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer ≥ 1, got {value!r}")
    return int(value)


def _non_negative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not value >= 0:
        raise ValueError(f"{name}: expected a number ≥ 0, got {value!r}")
    return float(value)

"""Lanczos ends of the spectrum against numpy.linalg.eigvalsh of dense matrices (float64)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import spectrum  # noqa: E402


def _problem(loss="softmax_cross_entropy", activation="relu", sizes=(3, 5, 4, 3), n=32):
    model = hflib.models.mlp(sizes, activation=activation, dtype="float64", seed=1)
    x, labels = hflib.data.make_teacher_data(n=n, dim=sizes[0], classes=sizes[-1], hidden=5, seed=0)
    if loss == "softmax_cross_entropy":
        y = labels
    elif loss == "squared_error":
        y = np.random.default_rng(2).normal(size=(n, sizes[-1]))
    else:
        y = np.random.default_rng(2).random(size=(n, sizes[-1]))
    return model, x, y, np.linalg.eigvalsh(hflib.dense_ggn(model, loss, x, y).numpy())


@pytest.mark.parametrize("loss,activation", [("softmax_cross_entropy", "relu"), ("squared_error", "tanh"),
                                             ("sigmoid_cross_entropy", "tanh")])
def test_full_lanczos_recovers_both_ends_of_the_dense_spectrum(loss, activation):
    model, x, y, eig = _problem(loss, activation)
    d = len(eig)
    ends = spectrum.ggn_extreme_eigenpairs(model, loss, x, y, k=3, steps=d)
    scale = eig[-1]
    np.testing.assert_allclose(ends.top, eig[::-1][:3], rtol=0, atol=1e-9 * scale)
    # Lanczos sees a multiple eigenvalue once (G's null space is one Ritz value), so the bottom
    # Ritz values are the smallest eigenvalue and then the next *distinct* ones
    np.testing.assert_allclose(ends.bottom[0], eig[0], rtol=0, atol=1e-9 * scale)
    for theta in ends.ritz_values:
        assert np.min(np.abs(eig - theta)) < 1e-9 * scale
    assert np.all(ends.top_residuals < 1e-7 * scale) and np.all(ends.bottom_residuals < 1e-7 * scale)


def test_few_steps_find_the_top_within_the_residual_bound_and_inside_the_spectrum():
    model, x, y, eig = _problem(n=64)
    ends = spectrum.ggn_extreme_eigenpairs(model, "softmax_cross_entropy", x, y, k=2, steps=20)
    assert ends.steps == 20
    # interlacing: every Ritz value lies in [μ_min, μ_max]
    assert eig[0] - 1e-12 <= ends.ritz_values.min() and ends.ritz_values.max() <= eig[-1] * (1 + 1e-12)
    # Bauer–Fike: an eigenvalue lies within each residual
    for values, bounds in [(ends.top, ends.top_residuals), (ends.bottom, ends.bottom_residuals)]:
        for theta, bound in zip(values, bounds):
            assert np.min(np.abs(eig - theta)) <= bound * (1 + 1e-9) + 1e-14
    assert abs(ends.top[0] - eig[-1]) < 1e-6 * eig[-1]         # the top converges first
    y0 = ends.top_vectors[0]
    G = hflib.dense_ggn(model, "softmax_cross_entropy", x, y).numpy()
    assert abs(np.linalg.norm(y0) - 1) < 1e-12
    np.testing.assert_allclose(np.linalg.norm(G @ y0 - ends.top[0] * y0), ends.top_residuals[0], rtol=0,
                               atol=1e-12 * eig[-1])


def test_damped_operator_shifts_every_ritz_value_by_lambda():
    model, x, y, eig = _problem()
    lam = 0.3
    op = hflib.DampedGGN(model, "softmax_cross_entropy", x, y, damping=lam)
    ends = spectrum.extreme_eigenpairs(op, k=1, steps=len(eig))
    np.testing.assert_allclose([ends.top[0], ends.bottom[0]], [eig[-1] + lam, eig[0] + lam], atol=1e-9 * eig[-1])
    np.testing.assert_allclose(ends.condition_number(), (eig[-1] + lam) / (eig[0] + lam), rtol=1e-7)


def test_dense_callable_and_invariant_subspace_stop():
    mu = np.r_[np.zeros(10), np.linspace(1, 5, 19), 50.0]
    K = np.diag(np.random.default_rng(0).permutation(mu))     # exact zeros
    ends = spectrum.extreme_eigenpairs(lambda v: K @ v, k=2, steps=60, dim=30)
    # 21 distinct eigenvalues: the Krylov space becomes invariant (up to round-off) long before 30 steps
    assert ends.steps < 25
    np.testing.assert_allclose(ends.top, [50.0, 5.0], atol=1e-10)
    np.testing.assert_allclose(ends.bottom[0], 0.0, atol=1e-10)
    assert ends.condition_number() == np.inf and np.isclose(ends.condition_number(damping=1.0), 51.0 / 1.0)
    alpha, beta, basis, _ = spectrum.lanczos(lambda v: K @ v, 30, 12, seed=3)
    np.testing.assert_allclose(basis @ basis.T, np.eye(12), atol=1e-12)           # orthonormal rows
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    np.testing.assert_allclose(basis @ K @ basis.T, T, atol=1e-10)                # T = Q K Qᵀ


def test_bad_arguments_are_refused():
    K = np.eye(4)
    with pytest.raises(TypeError, match="dim"):
        spectrum.extreme_eigenpairs(lambda v: K @ v)
    with pytest.raises(TypeError, match="operator"):
        spectrum.extreme_eigenpairs(K, dim=4)
    with pytest.raises(ValueError, match="steps"):
        spectrum.lanczos(lambda v: K @ v, 4, 0)
    with pytest.raises(ValueError, match="k:"):
        spectrum.extreme_eigenpairs(lambda v: K @ v + v[::-1], k=3, steps=4, dim=4)
    with pytest.raises(ValueError, match="matvec"):
        spectrum.extreme_eigenpairs(lambda v: np.ones(3), dim=4)
    with pytest.raises(ValueError, match="not finite"):
        spectrum.extreme_eigenpairs(lambda v: v * np.nan, dim=4)
    with pytest.raises(ValueError, match="self-adjoint"):
        spectrum.extreme_eigenpairs(tf.linalg.LinearOperatorFullMatrix(tf.constant([[1.0, 2.0], [0.0, 1.0]])))
    with pytest.raises(ValueError, match="damping"):
        spectrum.extreme_eigenpairs(lambda v: np.arange(1.0, 5.0) * v, dim=4, steps=4).condition_number(-1.0)

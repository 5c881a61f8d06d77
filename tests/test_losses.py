"""Matching losses: values, residuals, dense Hessians, H·u and the square-root factor S.

Each quantity is checked against something computed independently: numpy
formulas for the value, and autodiff of the per-example loss with respect to
the logits z for the residual and the Hessian.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hflib import losses  # noqa: E402

from helpers_core import LOSS_CASES, labels, rel_err  # noqa: E402

B, M = 6, 4
CASES = list(LOSS_CASES)


def _logits(seed=0, scale=1.5):
    return np.random.default_rng(seed).normal(scale=scale, size=(B, M))


def _targets(case, seed=5):
    return labels(case, B, seed=seed, m=M)


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _numpy_value(case, z, y):
    if case == "softmax_int":
        return float(np.mean(-_log_softmax(z)[np.arange(len(y)), y]))
    if case == "softmax_onehot":
        return float(np.mean(-(y * _log_softmax(z)).sum(axis=1)))
    if case == "squared_error":
        return float(np.mean(0.5 * ((z - y) ** 2).sum(axis=1)))
    p = 1.0 / (1.0 + np.exp(-z))
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)))


def _float_targets(case, y):
    return np.eye(M)[y] if case == "softmax_int" else np.asarray(y, np.float64)


def _autodiff_hessian(loss, z, t):
    """Per-example Hessian of L∘φ wrt z: jacobian of the gradient, diagonal blocks (B, M, M)."""
    z = tf.constant(z)
    t = tf.constant(t)
    with tf.GradientTape() as outer:
        outer.watch(z)
        with tf.GradientTape() as inner:
            inner.watch(z)
            total = tf.reduce_sum(loss.per_example(z, t))
        g = inner.gradient(total, z)
    full = outer.jacobian(g, z).numpy()                  # (B, M, B, M)
    idx = np.arange(B)
    off = full.copy()
    off[idx, :, idx, :] = 0
    assert np.abs(off).max() == 0.0                       # examples do not interact
    return full[idx, :, idx, :]


@pytest.mark.parametrize("case", CASES)
def test_value_matches_numpy_formula(case):
    keras.utils.set_random_seed(0)
    loss = losses.get(LOSS_CASES[case])
    z, y = _logits(), _targets(case)
    expected = _numpy_value(case, z, y)
    assert float(loss.value(tf.constant(z), y)) == pytest.approx(expected, rel=1e-12)
    assert float(loss(tf.constant(z), y)) == pytest.approx(expected, rel=1e-12)
    assert expected > 0.1   # non-trivial value


def test_integer_and_one_hot_labels_agree():
    loss = losses.get("softmax_cross_entropy")
    z, y = tf.constant(_logits()), _targets("softmax_int")
    assert float(loss.value(z, y)) == pytest.approx(float(loss.value(z, np.eye(M)[y])), rel=1e-13)
    np.testing.assert_allclose(loss.residual(z, y).numpy(), loss.residual(z, np.eye(M)[y]).numpy(), atol=1e-15)


def test_squared_error_accepts_vector_targets_for_one_output():
    loss = losses.get("squared_error")
    z = np.random.default_rng(0).normal(size=(B, 1))
    y = np.random.default_rng(1).normal(size=B)
    assert float(loss.value(tf.constant(z), y)) == pytest.approx(np.mean(0.5 * (z[:, 0] - y) ** 2), rel=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_residual_is_autodiff_gradient_wrt_logits(case):
    loss = losses.get(LOSS_CASES[case])
    z, y = tf.constant(_logits(1)), _targets(case)
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(loss.per_example(z, loss.targets(y, z)))
    grad = tape.gradient(total, z).numpy()
    res = loss.residual(z, y).numpy()
    assert rel_err(res, grad) < 1e-12
    assert np.abs(res).max() > 1e-2


@pytest.mark.parametrize("case", CASES)
def test_dense_hessian_and_hvp_match_autodiff(case):
    loss = losses.get(LOSS_CASES[case])
    z = _logits(2)
    t = _float_targets(case, _targets(case))
    h_auto = _autodiff_hessian(loss, z, t)
    h = loss.output_hessian(tf.constant(z)).numpy()
    assert h.shape == (B, M, M)
    assert np.abs(h - h_auto).max() < 1e-12
    u = np.random.default_rng(3).normal(size=(B, M))
    hu = loss.output_hessian_product(tf.constant(z), tf.constant(u)).numpy()
    np.testing.assert_allclose(hu, np.einsum("bij,bj->bi", h_auto, u), rtol=1e-12, atol=1e-14)
    # H_{L∘φ} is symmetric PSD (eq. 38) and does not depend on the targets
    np.testing.assert_allclose(h, np.transpose(h, (0, 2, 1)), atol=1e-15)
    assert np.linalg.eigvalsh(h).min() > -1e-14
    h_other = _autodiff_hessian(loss, z, _float_targets(case, _targets(case, seed=9)))
    assert np.abs(h_other - h_auto).max() < 1e-12


@pytest.mark.parametrize("name", losses.names())
def test_sqrt_hessian_factor(name):
    """S built column by column from unit vectors satisfies S Sᵀ = H for every example."""
    loss = losses.get(name)
    z = tf.constant(_logits(4))
    cols = [loss.sqrt_output_hessian_product(z, tf.constant(np.tile(np.eye(M)[j], (B, 1)))).numpy() for j in range(M)]
    s = np.stack(cols, axis=-1)                                   # (B, M, M), S[:, :, j] = S e_j
    h = loss.output_hessian(z).numpy()
    np.testing.assert_allclose(np.einsum("bij,bkj->bik", s, s), h, atol=1e-14)
    # and the product acts linearly: S v for a random v equals the assembled matrix times v
    v = np.random.default_rng(5).normal(size=(B, M))
    np.testing.assert_allclose(loss.sqrt_output_hessian_product(z, tf.constant(v)).numpy(),
                               np.einsum("bij,bj->bi", s, v), atol=1e-14)


def test_softmax_hessian_closed_form():
    loss = losses.get("softmax_cross_entropy")
    z = _logits(6)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = np.stack([np.diag(pi) - np.outer(pi, pi) for pi in p])
    np.testing.assert_allclose(loss.output_hessian(tf.constant(z)).numpy(), expected, atol=1e-15)


def test_get_names_and_instances():
    assert losses.names() == sorted(["softmax_cross_entropy", "squared_error", "sigmoid_cross_entropy"])
    for name in losses.names():
        loss = losses.get(name)
        assert isinstance(loss, losses.MatchingLoss) and loss.name == name
        assert losses.get(loss) is loss
    assert isinstance(losses.get("squared_error"), losses.SquaredError)
    assert isinstance(losses.get("sigmoid_cross_entropy"), losses.SigmoidCrossEntropy)


def test_get_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as info:
        losses.get("hinge")
    message = str(info.value)
    assert "loss" in message and "hinge" in message
    for name in losses.names():
        assert name in message


def test_get_rejects_non_string():
    with pytest.raises(TypeError, match="loss"):
        losses.get(3)


def test_get_returns_a_shared_instance():
    """The compiled products take the loss as a tf.function argument: a new instance per call retraces."""
    assert losses.get("squared_error") is losses.get("squared_error")

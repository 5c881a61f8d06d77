"""G·v, H·v, the cached linearisation and the dense oracles, against independent dense matrices.

Nets: 3-5-4-3 MLPs with tanh / ReLU / sigmoid hidden units and a 6x6x1 conv net
(Conv2D → max pooling → Dense), all float64. Losses: softmax cross-entropy with
integer and one-hot labels, squared error, sigmoid cross-entropy.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import curvature  # noqa: E402
from helpers_core import (LOSS_CASES, NETS, conv_net, flat_vars, fd_hessian, independent_gradient,  # noqa: E402
                          independent_hessian, inputs, labels, linear_model, mlp, problem, random_direction,
                          rel_err)

CASES = list(LOSS_CASES)
ORDERS = ("eq34", "eq37")


def _psd_check(mat):
    eig = np.linalg.eigvalsh(mat)
    return eig, eig.min() >= -1e-10 * np.abs(eig).max()


# ------------------------------------------------------------------ flatten / unflatten
def test_flatten_unflatten_round_trip():
    model = mlp("tanh")
    v, flat = random_direction(model)
    f = hflib.flatten(v)
    assert f.shape == (hflib.vectors.flatten(model.trainable_variables).shape[0],) == (59,)
    np.testing.assert_array_equal(f.numpy(), flat)          # row-major, variables in order
    back = hflib.unflatten(f, model.trainable_variables)
    assert [tuple(t.shape) for t in back] == [tuple(w.shape) for w in model.trainable_variables]
    for a, b in zip(back, v):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(hflib.flatten(hflib.unflatten(flat, v)).numpy(), flat)
    # the kernel of the first layer is raveled row-major: entry (i, j) sits at 5·i + j
    kernel = model.trainable_variables[0].numpy()
    np.testing.assert_array_equal(hflib.flatten(model.trainable_variables).numpy()[:15], kernel.ravel())
    assert hflib.flatten(model.trainable_variables).numpy()[5 * 2 + 3] == kernel[2, 3]


# ------------------------------------------------------------------ G·v
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("net", NETS)
def test_ggn_vector_product_matches_dense(net, case, order):
    p = problem(net, case)
    v, vf = random_direction(p.model, seed=11)
    gv = hflib.flatten(hflib.ggn_vector_product(p.model, p.loss, p.x, p.y, v, order=order)).numpy()
    expected = p.G_independent @ vf                 # Jᵀ H J v from tape.jacobian and loss.hessian
    assert np.linalg.norm(expected) > 1e-3
    assert rel_err(gv, expected) <= 1e-10
    assert rel_err(gv, p.G @ vf) <= 1e-10          # and the library's own dense G


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("net", NETS)
def test_dense_ggn_matches_independent_and_is_symmetric_psd(net, case):
    p = problem(net, case)
    assert p.G.shape == (p.d, p.d)
    assert rel_err(p.G, p.G_independent) <= 1e-10
    assert np.abs(p.G - p.G.T).max() <= 1e-12 * np.abs(p.G).max()
    eig, psd = _psd_check(p.G)
    assert psd, eig.min()
    assert eig.max() > 1e-3                         # not the zero matrix


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("net", NETS)
def test_dense_jacobian_matches_tape(net, case):
    if case != "squared_error":
        pytest.skip("J does not depend on the loss; checked once per net")
    p = problem(net, case)
    jac, _ = p.jacobian
    np.testing.assert_allclose(hflib.dense_jacobian(p.model, p.x).numpy(), jac, rtol=1e-12, atol=1e-14)


def test_ggn_products_do_not_retrace_when_loss_is_given_by_name():
    p = problem("tanh", "softmax_int")
    v, _ = random_direction(p.model)
    hflib.ggn_vector_product(p.model, p.loss, p.x, p.y, v)
    before = curvature._ggn_vector_product.experimental_get_tracing_count()
    for seed in range(3):
        hflib.ggn_vector_product(p.model, p.loss, p.x, p.y, random_direction(p.model, seed)[0])
    assert curvature._ggn_vector_product.experimental_get_tracing_count() == before


# ------------------------------------------------------------------ linearize (cached product)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("net", NETS)
def test_linearize_matches_dense(net, case):
    p = problem(net, case)
    v, vf = random_direction(p.model, seed=12)
    w = np.random.default_rng(13).normal(size=(p.x.shape[0], 3))

    @tf.function
    def run(x, y, v, w):
        lin = hflib.linearize(p.model, p.loss, x, y)
        return lin.ggn_vp(v), lin.gradient(), lin.value, lin.jvp(v), lin.vjp(w)

    gv, grad, value, jv, jtw = run(tf.constant(p.x), tf.constant(p.y), v, tf.constant(w))
    jac, _ = p.jacobian
    assert rel_err(hflib.flatten(gv).numpy(), p.G_independent @ vf) <= 1e-10
    g_ind, value_ind = independent_gradient(p.model, p.loss, p.x, p.y)
    assert rel_err(hflib.flatten(grad).numpy(), g_ind) <= 1e-10
    assert rel_err(hflib.flatten(hflib.gradient(p.model, p.loss, p.x, p.y)).numpy(), g_ind) <= 1e-10
    assert float(value) == pytest.approx(value_ind, rel=1e-12)
    np.testing.assert_allclose(jv.numpy(), jac @ vf, rtol=1e-10, atol=1e-12)       # J v
    np.testing.assert_allclose(hflib.flatten(jtw).numpy(), np.einsum("bmi,bm->i", jac, w),
                               rtol=1e-10, atol=1e-12)                             # Jᵀ w


# ------------------------------------------------------------------ H·v and the dense Hessian
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("net", NETS)
def test_hessian_vector_product_and_dense_hessian(net, case):
    p = problem(net, case)
    v, vf = random_direction(p.model, seed=14)
    hv = hflib.flatten(hflib.hessian_vector_product(p.model, p.loss, p.x, p.y, v)).numpy()
    assert rel_err(hv, p.H @ vf) <= 1e-10
    # dense_hessian against a double tape on a flat parameter tensor (stateless_call)
    assert rel_err(p.H, p.H_independent) <= 1e-10
    assert np.abs(p.H - p.H.T).max() <= 1e-10 * np.abs(p.H).max()


@pytest.mark.parametrize("case", ["softmax_int", "squared_error"])
def test_dense_hessian_matches_finite_differences(case):
    p = problem("tanh", case)
    h_fd = fd_hessian(p.model, p.loss, p.x, p.y)
    assert rel_err(p.H, h_fd) < 1e-7


@pytest.mark.parametrize("case", CASES)
def test_ggn_equals_hessian_for_linear_model(case):
    model = linear_model()
    x, y = inputs("tanh", n=6), labels(case, 6)
    loss = LOSS_CASES[case]
    g = hflib.dense_ggn(model, loss, x, y).numpy()
    h = hflib.dense_hessian(model, loss, x, y).numpy()
    assert rel_err(g, h) <= 1e-12
    if case == "squared_error":
        # z = xW + b, θ = (W row-major, b): G = H = (1/B) [[XᵀX ⊗ I, X̄ ⊗ I], [X̄ᵀ ⊗ I, I]]
        xb = np.concatenate([x, np.ones((6, 1))], axis=1)
        expected = np.kron(xb.T @ xb / 6, np.eye(3))
        np.testing.assert_allclose(h, expected, atol=1e-13)


# ------------------------------------------------------------------ H versus G (eq. 16)
def _h_minus_g(model, loss, x, y):
    g = hflib.dense_ggn(model, loss, x, y).numpy()
    h = hflib.dense_hessian(model, loss, x, y).numpy()
    return h - g, g, h


@pytest.mark.parametrize("loss", ["squared_error", "sigmoid_cross_entropy", "softmax_cross_entropy"])
def test_second_term_vanishes_at_zero_residual(loss):
    """Targets produced by the network itself: φ(z) − y = 0, so H = G (eq. 16's second term is 0)."""
    model = mlp("tanh", seed=4)
    x = inputs("tanh", n=5, seed=6)
    z = model(x)
    y = hflib.losses.get(loss).phi(z).numpy()        # soft targets for the softmax / sigmoid losses
    diff, g, _ = _h_minus_g(model, loss, x, y)
    assert np.linalg.norm(diff) <= 1e-10 * np.linalg.norm(g)
    # far from the optimum (random targets) the second term is not small
    far = {"squared_error": labels("squared_error", 5, seed=7),
           "sigmoid_cross_entropy": np.round(labels("sigmoid_ce", 5, seed=7)),
           "softmax_cross_entropy": labels("softmax_int", 5, seed=7)}[loss]
    diff_far, g_far, _ = _h_minus_g(model, loss, x, far)
    assert np.linalg.norm(diff_far) > 0.05 * np.linalg.norm(g_far)


def test_second_term_is_linear_in_the_residual_after_fitting():
    """Squared error: H − G = (1/B) Σ r_ik ∇²z_ik. Fit targets, then add residual δ·e: ‖H − G‖ ∝ δ."""
    model = mlp("tanh", seed=4)
    x = inputs("tanh", n=5, seed=6)
    fitted = model(x).numpy()
    e = np.random.default_rng(8).normal(size=fitted.shape)
    diffs = {}
    for delta in (1e-4, 1.0):
        diffs[delta], g, _ = _h_minus_g(model, "squared_error", x, fitted - delta * e)
    assert np.linalg.norm(diffs[1e-4]) <= 1e-3 * np.linalg.norm(g)        # near the fit: ‖H − G‖ ≪ ‖G‖
    assert np.linalg.norm(diffs[1.0]) >= 0.05 * np.linalg.norm(g)          # far: not small
    np.testing.assert_allclose(diffs[1e-4] * 1e4, diffs[1.0], atol=1e-9 * np.abs(diffs[1.0]).max())


@pytest.mark.parametrize("net", NETS)
def test_hessian_indefinite_far_from_optimum_while_ggn_is_psd(net):
    p = problem(net, "squared_error")
    eig_h = np.linalg.eigvalsh(p.H)
    assert eig_h.min() < -1e-3 * np.abs(eig_h).max()
    eig_g, psd = _psd_check(p.G)
    assert psd


# ------------------------------------------------------------------ DampedGGN
@pytest.fixture(scope="module")
def damped_problem():
    p = problem("conv", "softmax_int")
    return p, hflib.DampedGGN(p.model, p.loss, p.x, p.y, damping=0.1)


def test_damped_ggn_is_a_self_adjoint_linear_operator(damped_problem):
    p, op = damped_problem
    assert isinstance(op, tf.linalg.LinearOperator)
    assert op.is_self_adjoint and op.is_positive_definite and op.is_square
    assert tuple(op.shape) == (p.d, p.d) and op.dtype == tf.float64
    dense = op.to_dense().numpy()
    np.testing.assert_allclose(dense, p.G + 0.1 * np.eye(p.d), atol=1e-12)
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)
    v = np.random.default_rng(0).normal(size=p.d)
    np.testing.assert_allclose(op.matvec(tf.constant(v)).numpy(), dense @ v, atol=1e-12)
    np.testing.assert_allclose(op.matvec(tf.constant(v), adjoint=True).numpy(), dense @ v, atol=1e-12)


@pytest.mark.parametrize("order", ORDERS)
def test_damped_ggn_orders_agree(order):
    p = problem("tanh", "sigmoid_ce")
    op = hflib.DampedGGN(p.model, p.loss, p.x, p.y, damping=0.5, order=order)
    v = np.random.default_rng(1).normal(size=p.d)
    np.testing.assert_allclose(op.matvec(tf.constant(v)).numpy(), p.G @ v + 0.5 * v, rtol=1e-10, atol=1e-12)


def test_damped_ggn_solves_agree_with_numpy(damped_problem):
    p, op = damped_problem
    b = np.random.default_rng(2).normal(size=p.d)
    expected = np.linalg.solve(p.G + 0.1 * np.eye(p.d), b)
    tf_cg = tf.linalg.experimental.conjugate_gradient(op, tf.constant(b), tol=1e-13, max_iter=500)
    assert rel_err(tf_cg.x.numpy(), expected) <= 1e-6
    res = hflib.pcg(op.matvec, tf.constant(b), tol=1e-14, max_iters=500)
    assert rel_err(res.x.numpy(), expected) <= 1e-6
    assert float(res.reduction) == pytest.approx(0.5 * expected @ (op.to_dense().numpy() @ expected) - b @ expected,
                                                 rel=1e-8)


def test_average_pooling_net_products():
    model = conv_net(seed=3, pool="avg")
    x, y = inputs("conv", seed=4), labels("sigmoid_ce", 4)
    v = [tf.constant(np.random.default_rng(5).normal(size=tuple(w.shape))) for w in model.trainable_variables]
    vf = hflib.flatten(v).numpy()
    g = hflib.dense_ggn(model, "sigmoid_cross_entropy", x, y).numpy()
    for order in ORDERS:
        gv = hflib.ggn_vector_product(model, "sigmoid_cross_entropy", x, y, v, order=order)
        assert rel_err(hflib.flatten(gv).numpy(), g @ vf) <= 1e-10
    h = hflib.dense_hessian(model, "sigmoid_cross_entropy", x, y).numpy()
    assert rel_err(h, independent_hessian(model, "sigmoid_cross_entropy", x, y)) <= 1e-10
    assert flat_vars(model).size == g.shape[0] == 47

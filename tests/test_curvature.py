"""G·v, H·v, the cached linearisation and the dense oracles, against independent dense matrices.

Nets: 3-5-4-3 MLPs with tanh / ReLU / sigmoid hidden units and a 6x6x1 conv net
(Conv2D → max pooling → Dense), all float64. Losses: softmax cross-entropy with
integer and one-hot labels, squared error, sigmoid cross-entropy.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import curvature  # noqa: E402
from helpers_core import (LOSS_CASES, NETS, conv_net, flat_vars, fd_hessian, independent_gradient,  # noqa: E402
                          inputs, labels, linear_model, mlp, problem, random_direction,
                          rel_err)

CASES = list(LOSS_CASES)
ORDERS = ("eq34", "eq37")
# G·v runs on the full grid nets × losses × orders. The Hessian and the cached linearisation cost a
# trace and a dense d×d Hessian per (net, loss), so they run on a sub-grid in which every loss case
# meets at least two nets and every net at least two losses (squared error on all four nets: the
# indefiniteness test below needs those Hessians anyway).
SUB_GRID = [("tanh", c) for c in CASES] + [
    ("relu", "squared_error"), ("relu", "sigmoid_ce"),
    ("sigmoid", "squared_error"), ("sigmoid", "softmax_int"),
    ("conv", "squared_error"), ("conv", "softmax_onehot"),
]


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


@pytest.mark.parametrize("net", NETS)
def test_dense_jacobian_matches_tape(net):
    p = problem(net, "squared_error")              # J does not depend on the loss
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
@pytest.mark.parametrize("net,case", SUB_GRID)
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
@pytest.mark.parametrize("net,case", SUB_GRID)
def test_hessian_vector_product_and_dense_hessian(net, case):
    p = problem(net, case)
    v, vf = random_direction(p.model, seed=14)
    hv = hflib.flatten(hflib.hessian_vector_product(p.model, p.loss, p.x, p.y, v)).numpy()
    assert rel_err(hv, p.H @ vf) <= 1e-10
    assert np.abs(p.H - p.H.T).max() <= 1e-10 * np.abs(p.H).max()
    # dense_hessian against central differences of the gradient (through model.stateless_call)
    assert rel_err(p.H, fd_hessian(p.model, p.loss, p.x, p.y)) <= 1e-7


@pytest.mark.parametrize("net,case", [("tanh", "softmax_int"), ("conv", "sigmoid_ce")])
def test_dense_hessian_matches_double_tape(net, case):
    """dense_hessian against a double tape on one flat parameter tensor (no hflib code involved)."""
    p = problem(net, case)
    assert rel_err(p.H, p.H_independent) <= 1e-10


@pytest.mark.parametrize("case", ["squared_error", "softmax_int"])
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


@pytest.mark.parametrize("case", ["squared_error", "sigmoid_ce", "softmax_onehot"])
def test_second_term_vanishes_at_zero_residual(case):
    """Targets produced by the network itself: φ(z) − y = 0, so H = G (eq. 16's second term is 0)."""
    p = problem("tanh", case)
    y = hflib.losses.get(p.loss).phi(p.model(p.x)).numpy()    # soft targets for softmax / sigmoid
    diff, g, _ = _h_minus_g(p.model, p.loss, p.x, y)
    assert np.linalg.norm(diff) <= 1e-10 * np.linalg.norm(g)
    assert rel_err(g, p.G) <= 1e-12                   # G itself does not depend on the targets
    # far from the optimum (the random targets of the grid) the second term is not small
    assert np.linalg.norm(p.H - p.G) > 0.05 * np.linalg.norm(p.G)


def test_second_term_is_linear_in_the_residual_after_fitting():
    """Squared error: H − G = (1/B) Σ r_ik ∇²z_ik. Fit targets, then add residual δ·e: ‖H − G‖ ∝ δ."""
    p = problem("tanh", "squared_error")
    fitted = p.model(p.x).numpy()
    e = np.random.default_rng(8).normal(size=fitted.shape)
    g = p.G                                           # G does not depend on the targets
    diffs = {delta: hflib.dense_hessian(p.model, p.loss, p.x, fitted - delta * e).numpy() - g
             for delta in (1e-4, 1.0)}
    assert np.linalg.norm(diffs[1e-4]) <= 1e-3 * np.linalg.norm(g)        # near the fit: ‖H − G‖ ≪ ‖G‖
    assert np.linalg.norm(diffs[1.0]) >= 0.05 * np.linalg.norm(g)          # far: not small
    np.testing.assert_allclose(diffs[1e-4] * 1e4, diffs[1.0], atol=1e-8 * np.abs(diffs[1.0]).max())


@pytest.mark.parametrize("net", NETS)
def test_hessian_indefinite_far_from_optimum_while_ggn_is_psd(net):
    p = problem(net, "squared_error")
    eig_h = np.linalg.eigvalsh(p.H)
    assert eig_h.min() < -1e-3 * np.abs(eig_h).max()
    eig_g, psd = _psd_check(p.G)
    assert psd


# ------------------------------------------------------------------ DampedGGN
LAMBDA = 0.5


@pytest.fixture(scope="module")
def damped_problem():
    p = problem("conv", "softmax_int")
    return p, hflib.DampedGGN(p.model, p.loss, p.x, p.y, damping=LAMBDA)


def test_damped_ggn_is_a_self_adjoint_linear_operator(damped_problem):
    p, op = damped_problem
    assert isinstance(op, tf.linalg.LinearOperator)
    assert op.is_self_adjoint and op.is_positive_definite and op.is_square
    assert tuple(op.shape) == (p.d, p.d) and op.dtype == tf.float64
    dense = op.to_dense().numpy()
    np.testing.assert_allclose(dense, p.G + LAMBDA * np.eye(p.d), atol=1e-12)
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
    expected = np.linalg.solve(p.G + LAMBDA * np.eye(p.d), b)
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
    assert flat_vars(model).size == g.shape[0] == 47


def test_products_on_many_models_do_not_warn_about_retracing():
    """gradient, G·v and H·v trace once per model by design; no retracing warning either (issue 13.3)."""
    import logging

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = tf.get_logger()
    logger.addHandler(handler)
    x, y = hflib.data.make_teacher_data(n=8, dim=3, classes=3, hidden=4, seed=0)
    try:
        for seed in range(6):
            model = hflib.models.mlp((3, 4, 3), activation="tanh", dtype="float64", seed=seed)
            v = [tf.ones_like(w) for w in model.trainable_variables]
            hflib.gradient(model, "softmax_cross_entropy", x, y)
            hflib.ggn_vector_product(model, "softmax_cross_entropy", x, y, v)
            hflib.hessian_vector_product(model, "softmax_cross_entropy", x, y, v)
    finally:
        logger.removeHandler(handler)
    assert not [m for m in seen if "retracing" in m], seen

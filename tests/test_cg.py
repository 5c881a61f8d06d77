"""Preconditioned CG: solutions, φ history, Martens' stopping rule, saved iterates, edge cases.

All systems are float64 with fixed seeds; an independent textbook PCG in numpy
(`helpers_core.numpy_pcg`) gives the reference iterates and φ values.
"""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import cg  # noqa: E402
from hflib.cg import STOP_REASONS  # noqa: E402
from helpers_core import matvec_of, numpy_pcg, quad_phi, random_spd, rel_err  # noqa: E402

CONVERGED, PROGRESS, CURVATURE, MAX_ITERS = (STOP_REASONS.index(r) for r in
                                             ("converged", "progress", "curvature", "max_iters"))
TIGHT = 1e-30   # ε so small that the progress rule cannot fire before CG has converged


def _system(n=40, cond=100.0, seed=0):
    a = random_spd(n, cond, seed)
    b = np.random.default_rng(seed + 100).normal(size=n)
    return a, b


# ------------------------------------------------------------------ solutions
@pytest.mark.parametrize("n,cond,seed", [(30, 10.0, 0), (40, 100.0, 1), (50, 300.0, 2)])
def test_matches_numpy_solve(n, cond, seed):
    a, b = _system(n, cond, seed)
    res = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=300)
    expected = np.linalg.solve(a, b)
    assert rel_err(res.x.numpy(), expected) <= 1e-6
    assert float(res.reduction) == pytest.approx(quad_phi(a, b, expected), rel=1e-8)
    assert int(res.stop_reason) in (CONVERGED, PROGRESS)
    assert hflib.cg is cg and hflib.cg.pcg is hflib.pcg


def test_exact_inverse_preconditioner_converges_in_one_step():
    a, b = _system(40, 1e3, 3)
    a_inv = tf.constant(np.linalg.inv(a))
    res = hflib.pcg(matvec_of(a), tf.constant(b), preconditioner=lambda r: tf.linalg.matvec(a_inv, r),
                    tol=TIGHT, max_iters=50)
    assert int(res.iterations) == 1
    assert int(res.stop_reason) == CONVERGED
    assert rel_err(res.x.numpy(), np.linalg.solve(a, b)) <= 1e-8
    # without it, the same system takes many iterations
    plain = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=50)
    assert int(plain.iterations) > 20


def test_diagonal_preconditioner_matches_numpy_pcg():
    a, b = _system(40, 1e3, 4)
    a = a + np.diag(np.linspace(0, 50, 40))          # give the diagonal something to fix
    diag = np.diag(a).copy()
    res = hflib.pcg(matvec_of(a), tf.constant(b), preconditioner=tf.constant(diag), tol=TIGHT, max_iters=15)
    xs, phis, _ = numpy_pcg(a, b, 15, minv=lambda r: r / diag)
    assert int(res.iterations) == 15 and int(res.stop_reason) == MAX_ITERS
    np.testing.assert_allclose(res.phi.numpy(), phis, rtol=1e-9)
    assert rel_err(res.x.numpy(), xs[-1]) <= 1e-9


# ------------------------------------------------------------------ φ history
def test_phi_history_equals_quadratic_at_every_iterate():
    """φ_i tracked by CG (from the residual, no extra product) equals ½x_iᵀAx_i − bᵀx_i for every i.

    x_i comes from a run truncated at max_iters = i. All runs are eager so that the arithmetic is
    identical: at cond 1e3 CG amplifies rounding differences (even a reordering of a sum) to ~1e-3
    after 20 iterations. (The compiled φ is compared with numpy CG in the next test.)
    """
    a, b = _system(40, 1e3, 5)
    n_it = 25
    res = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=n_it, compile=False)
    assert int(res.iterations) == n_it and int(res.stop_reason) == MAX_ITERS
    phi = res.phi.numpy()
    assert phi.shape == (n_it + 1,) and phi[0] == 0.0
    assert np.all(np.diff(phi) < 0)                          # CG decreases φ monotonically
    for i in range(1, n_it + 1):
        short = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=i, compile=False)
        x = short.x.numpy()
        assert int(short.iterations) == i
        np.testing.assert_allclose(short.phi.numpy(), phi[:i + 1], rtol=1e-12, atol=1e-15)
        assert quad_phi(a, b, x) == pytest.approx(phi[i], rel=1e-10)
        assert float(short.reduction) == pytest.approx(quad_phi(a, b, x), rel=1e-10)


def test_phi_history_matches_independent_numpy_cg():
    # well-conditioned and few iterations, so rounding differences between implementations stay tiny
    # (at cond 1e3 and 20+ iterations even float64 vs long-double numpy CG disagree by 1e-3)
    a, b = _system(50, 100.0, 10)
    res = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=15)
    xs, phis, _ = numpy_pcg(a, b, 15)
    np.testing.assert_allclose(res.phi.numpy(), phis, rtol=1e-10, atol=1e-13)
    assert rel_err(res.x.numpy(), xs[-1]) <= 1e-10
    assert float(res.reduction) == pytest.approx(quad_phi(a, b, xs[-1]), rel=1e-10)


def test_phi_steps_match_quadratic_ill_conditioned_warm_start():
    """φ_i = φ_{i−1} − ½α_iρ_{i−1} (no dot products) equals ½xᵀAx − bᵀx at the iterates CG keeps, to
    rounding: cond 1e6, warm start from 0.95 × the solution of a perturbed system, 60 iterations, the
    quadratic evaluated in long double. (The old −½(b + r)ᵀx had the same error here, ~1e-14 of max|φ|.)"""
    a, b = _system(60, 1e6, 14)
    x0 = 0.95 * np.linalg.solve(a + np.diag(np.random.default_rng(15).uniform(0, 1e3, 60)), b)
    res = hflib.pcg(matvec_of(a), tf.constant(b), x0=tf.constant(x0), tol=TIGHT, max_iters=60)
    assert int(res.iterations) == 60
    phi = res.phi.numpy()
    assert np.all(np.diff(phi) <= 0)

    def exact(x):
        x, al, bl = (np.asarray(v, np.longdouble) for v in (x, a, b))
        return float(0.5 * x @ (al @ x) - bl @ x)

    scale = np.max(np.abs(phi))
    iterates = list(zip(res.saved_iters.numpy(), res.saved.numpy())) + [(60, res.x.numpy()), (0, x0)]
    for i, x in iterates:
        assert abs(phi[i] - exact(x)) <= 1e-12 * scale, i


def test_float32_stops_by_martens_rule_where_float64_does():
    """float32 CG counts as solved only at ‖r‖_{M⁻¹} ≤ 1.5e-8‖r₀‖_{M⁻¹}, below its rounding level, so on a
    quickly solved system it stops by Martens' rule at the iteration float64 does (14 here) and reaches the
    same φ. The old float32 rule (‖r‖ ≤ √ε‖r₀‖ = 3.5e-4‖r₀‖) stopped it as "converged" after 9 iterations,
    3.7e-8 (relative) above the minimum, where continuing still lowers φ."""
    a, b = _system(50, 5.0, 22)
    phi_min = quad_phi(a, b, np.linalg.solve(a, b))
    res64 = hflib.pcg(matvec_of(a), tf.constant(b))                       # ε = 5e-4, Martens' window
    res32 = hflib.pcg(matvec_of(a.astype(np.float32)), tf.constant(b.astype(np.float32)))
    assert res32.x.dtype == tf.float32
    assert int(res64.stop_reason) == int(res32.stop_reason) == PROGRESS
    assert abs(int(res32.iterations) - int(res64.iterations)) <= 1
    assert np.all(np.diff(res32.phi.numpy()) <= 0)
    x32 = res32.x.numpy().astype(np.float64)
    assert (quad_phi(a, b, x32) - phi_min) / abs(phi_min) <= 1e-10
    # the CG φ of the float32 run agrees with float64 to float32 rounding
    assert float(res32.reduction) == pytest.approx(float(res64.reduction), rel=1e-6)


def test_compile_false_matches_compiled():
    a, b = _system(30, 50.0, 6)
    fast = hflib.pcg(matvec_of(a), tf.constant(b), max_iters=12, tol=TIGHT)
    eager = hflib.pcg(matvec_of(a), tf.constant(b), max_iters=12, tol=TIGHT, compile=False)
    np.testing.assert_allclose(eager.x.numpy(), fast.x.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(eager.phi.numpy(), fast.phi.numpy(), rtol=1e-12, atol=1e-14)
    assert int(eager.iterations) == int(fast.iterations) == 12
    np.testing.assert_array_equal(eager.saved_iters.numpy(), fast.saved_iters.numpy())


def test_repeated_eager_calls_do_not_warn_about_retracing():
    """Every eager call traces its own loop; TensorFlow's retracing warning must not fire (issue 13)."""
    import logging

    a, b = _system(10, 10.0, 8)
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        for k in range(1, 8):
            res = hflib.pcg(matvec_of(a + k * np.eye(10)), tf.constant(b), max_iters=5, tol=TIGHT)
            assert int(res.iterations) == 5
    finally:
        logger.removeHandler(handler)
    assert not [m for m in seen if "retracing" in m], seen


def test_inside_tf_function():
    a, b = _system(30, 50.0, 7)
    mv = matvec_of(a)

    @tf.function
    def solve(b):
        res = hflib.pcg(mv, b, tol=TIGHT, max_iters=100)
        return res.x, res.iterations

    x, _ = solve(tf.constant(b))
    assert rel_err(x.numpy(), np.linalg.solve(a, b)) <= 1e-6


# ------------------------------------------------------------------ stopping rule
def _geometric_phis(n=30):
    # φ_i = −1 + 2^(−i): φ_0 = 0, decreasing to −1.
    return [-1.0 + 2.0 ** -i for i in range(n + 1)]


def test_first_stop_martens_window_by_hand():
    # window="martens": k = max(10, ⌈i/10⌉) = 10 for i ≤ 100, so i must exceed 10.
    # (φ_i − φ_{i−10}) / φ_i = 2^(−i)(2^10 − 1) / (1 − 2^(−i)) must drop below k·ε = 10·5e-4 = 5e-3:
    #   i = 17: 1023/131072 = 7.8e-3  (no);   i = 18: 1023/262144 = 3.9e-3  (yes)  → stop at 18.
    phis = _geometric_phis()
    assert [cg.window_size(i, "martens") for i in (1, 18, 100, 101, 250)] == [10, 10, 10, 11, 25]
    assert cg.first_stop(phis, tol=5e-4, window="martens") == 18
    # with ε = 5e-4 but without the factor k (threshold 5e-4) it would be i = 21: the k matters
    assert cg.first_stop(phis, tol=5e-5, window="martens") == 21
    # min_iters holds the rule back; max_iters caps the answer; never firing returns the last index
    assert cg.first_stop(phis, tol=5e-4, window="martens", min_iters=25) == 25
    assert cg.first_stop(phis, tol=5e-4, window="martens", max_iters=12) == 12
    assert cg.first_stop(phis[:15], tol=5e-4, window="martens") == 14


def test_first_stop_report_window_by_hand():
    # window="report" with t = min_iters = 3: k = max(3, ⌈i/3⌉), so k = 3 up to i = 9, 4 for i = 10..12,
    # 5 for i = 13..15. Ratio 2^(−i)(2^k − 1)/(1 − 2^(−i)) against k·ε:
    #   i = 12 (k=4): 15/4096  = 3.7e-3 vs 2.0e-3 (no)
    #   i = 13 (k=5): 31/8192  = 3.8e-3 vs 2.5e-3 (no)
    #   i = 14 (k=5): 31/16384 = 1.9e-3 vs 2.5e-3 (yes) → stop at 14.
    phis = _geometric_phis()
    assert [cg.window_size(i, "report", 3) for i in (4, 9, 10, 12, 13, 15, 16)] == [3, 3, 4, 4, 5, 5, 6]
    assert cg.first_stop(phis, tol=5e-4, window="report", min_iters=3) == 14


def test_first_stop_needs_negative_phi():
    # φ stuck at a positive value never triggers the rule (φ_i < 0 is required)
    phis = [0.0] + [1.0] * 40
    assert cg.first_stop(phis, window="martens") == 40
    assert cg.first_stop([0.0] + [-1.0] * 40, window="martens") == 11


def test_window_size_works_on_tensors():
    for window, t in (("martens", 1), ("report", 3)):
        for i in (1, 11, 99, 101, 250):
            assert int(cg.window_size(tf.constant(i), window, t)) == cg.window_size(i, window, t)


@pytest.mark.parametrize("window,min_iters", [("martens", 1), ("report", 3)])
def test_pcg_stops_where_first_stop_says(window, min_iters):
    a, b = _system(50, 1e3, 1)
    res = hflib.pcg(matvec_of(a), tf.constant(b), window=window, min_iters=min_iters)   # ε = 5e-4
    n = int(res.iterations)
    assert int(res.stop_reason) == PROGRESS
    # the same CG with the rule switched off: identical arithmetic, longer φ history
    long = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=150)
    long_phi = long.phi.numpy()
    assert len(long_phi) > n + 5
    np.testing.assert_allclose(res.phi.numpy(), long_phi[:n + 1], rtol=1e-12)
    assert cg.first_stop(long_phi, tol=5e-4, window=window, min_iters=min_iters) == n
    # and the independent numpy CG agrees on where the rule fires
    _, phis, _ = numpy_pcg(a, b, 150)
    assert cg.first_stop(phis, tol=5e-4, window=window, min_iters=min_iters) == n


@pytest.mark.parametrize("window,min_iters,expected", [
    ("martens", 1, 11),    # ε = 0.5 makes the ratio test always pass: first i > k = 10
    ("martens", 15, 15),   # held back by min_iters
    ("report", 3, 4),      # k = max(3, ⌈i/3⌉): first i > k is 4
    ("report", 6, 7),      # k = max(6, ⌈i/6⌉): first i > k is 7
])
def test_min_iters_honoured(window, min_iters, expected):
    a, b = _system(50, 1e3, 8)
    res = hflib.pcg(matvec_of(a), tf.constant(b), tol=0.5, window=window, min_iters=min_iters, compile=False)
    assert int(res.iterations) == expected
    assert int(res.stop_reason) == PROGRESS
    assert cg.first_stop(res.phi.numpy(), tol=0.5, window=window, min_iters=min_iters) == expected


def test_max_iters_honoured():
    a, b = _system(50, 1e3, 9)
    for m in (1, 7, 30):
        res = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=m, compile=m < 30)
        assert int(res.iterations) == m
        assert int(res.stop_reason) == MAX_ITERS
        assert res.phi.shape == (m + 1,)


def test_non_positive_curvature_stops():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    eigs = np.linspace(1, 10, 20)
    eigs[0] = -0.3                                   # indefinite
    a = (q * eigs) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=20)
    xs, phis, bad = numpy_pcg(a, b, 60)
    assert bad == 6                                  # numpy CG meets dᵀAd ≤ 0 at its 6th iteration
    res = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=60)
    assert int(res.stop_reason) == CURVATURE
    assert int(res.iterations) == bad - 1            # the iterate is not moved by the bad direction
    assert rel_err(res.x.numpy(), xs[bad - 1]) <= 1e-9
    np.testing.assert_allclose(res.phi.numpy(), phis, rtol=1e-9)
    assert float(res.reduction) == pytest.approx(phis[-1], rel=1e-9)


def test_negative_definite_stops_at_once():
    res = hflib.pcg(lambda v: -v, tf.constant(np.ones(5)), max_iters=10)
    assert int(res.stop_reason) == CURVATURE and int(res.iterations) == 0
    np.testing.assert_array_equal(res.x.numpy(), np.zeros(5))
    assert float(res.reduction) == 0.0


def test_nan_curvature_stops_also_inside_tf_function():
    """A NaN dᵀAd counts as non-positive curvature, eagerly and when pcg is traced inside tf.function."""
    scale = tf.constant([1.0, float("nan"), 2.0], tf.float64)
    b = tf.constant([1.0, 1.0, 1.0], tf.float64)

    @tf.function
    def traced(b):
        res = hflib.pcg(lambda v: v * scale, b, max_iters=20)
        return res.iterations, res.stop_reason

    eager = hflib.pcg(lambda v: v * scale, b, max_iters=20, compile=False)
    compiled = hflib.pcg(lambda v: v * scale, b, max_iters=20)
    for iterations, reason in (traced(b), (eager.iterations, eager.stop_reason),
                               (compiled.iterations, compiled.stop_reason)):
        assert int(reason) == CURVATURE and int(iterations) == 0


# ------------------------------------------------------------------ saved iterates
def test_save_schedule():
    # ⌈5·1.3^j⌉: 5, 6.5, 8.45, 10.985, 14.28, 18.56, 24.13, 31.37, 40.79, ...
    assert cg.save_schedule(40) == [5, 7, 9, 11, 15, 19, 25, 32]
    assert cg.save_schedule(4) == []
    assert cg.save_schedule(41) == [5, 7, 9, 11, 15, 19, 25, 32, 41]


@pytest.mark.parametrize("max_iters,expected", [
    (40, [5, 7, 9, 11, 15, 19, 25, 32]),
    (25, [5, 7, 9, 11, 15, 19]),          # 25 is the final iteration: not kept separately
    (4, []),
])
def test_saved_iterates(max_iters, expected):
    a, b = _system(50, 100.0, 10)
    compiled = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=max_iters)
    res = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=max_iters, compile=False)
    for r in (compiled, res):
        assert int(r.iterations) == max_iters
        assert r.saved_iters.numpy().tolist() == expected
        assert r.saved.shape == (len(expected), 50)
    np.testing.assert_allclose(compiled.saved.numpy(), res.saved.numpy(), rtol=1e-6, atol=1e-9)
    # eager runs (identical arithmetic): the saved copy at i is the last iterate of a run truncated at i
    for j, i in enumerate(expected):
        truncated = hflib.pcg(matvec_of(a), tf.constant(b), tol=TIGHT, max_iters=i, compile=False)
        np.testing.assert_allclose(res.saved[j].numpy(), truncated.x.numpy(), rtol=1e-12, atol=1e-14)
        assert quad_phi(a, b, res.saved[j].numpy()) == pytest.approx(float(res.phi[i]), rel=1e-10)


def test_saved_iterates_of_an_early_stop_are_below_it():
    a, b = _system(50, 1e3, 1)
    res = hflib.pcg(matvec_of(a), tf.constant(b))        # stops by the progress rule (see above)
    n = int(res.iterations)
    expected = [i for i in cg.save_schedule(250) if i < n]
    assert res.saved_iters.numpy().tolist() == expected and len(expected) >= 5


# ------------------------------------------------------------------ warm start, structures
def test_warm_start():
    a, b = _system(40, 1e3, 11)
    x0 = np.random.default_rng(12).normal(size=40)
    res = hflib.pcg(matvec_of(a), tf.constant(b), x0=tf.constant(x0), tol=TIGHT, max_iters=10, compile=False)
    _, phis, _ = numpy_pcg(a, b, 10, x0=x0)
    assert float(res.phi[0]) == pytest.approx(quad_phi(a, b, x0), rel=1e-12)
    np.testing.assert_allclose(res.phi.numpy(), phis, rtol=1e-9)
    # starting from the answer of a previous solve: already (nearly) done
    sol = np.linalg.solve(a, b)
    warm = hflib.pcg(matvec_of(a), tf.constant(b), x0=tf.constant(0.95 * sol), tol=TIGHT, max_iters=300)
    assert rel_err(warm.x.numpy(), sol) <= 1e-6
    assert float(warm.phi[0]) == pytest.approx(quad_phi(a, b, 0.95 * sol), rel=1e-10)


def test_list_and_single_tensor_b_agree():
    a, b = _system(30, 100.0, 13)
    shapes = [(4, 5), (10,)]
    a_t = tf.constant(a)

    def split(v):
        return [tf.reshape(v[:20], shapes[0]), v[20:]]

    def join(parts):
        return tf.concat([tf.reshape(p, [-1]) for p in parts], axis=0)

    def mv_list(parts):
        return split(tf.linalg.matvec(a_t, join(parts)))

    diag = np.abs(np.diag(a)) + 1.0
    single = hflib.pcg(matvec_of(a), tf.constant(b), preconditioner=tf.constant(diag), tol=TIGHT, max_iters=12)
    listed = hflib.pcg(mv_list, split(tf.constant(b)), preconditioner=split(tf.constant(diag)),
                       tol=TIGHT, max_iters=12, compile=False)
    assert isinstance(listed.x, list) and [tuple(t.shape) for t in listed.x] == shapes
    assert [tuple(t.shape) for t in listed.saved] == [(4, 4, 5), (4, 10)]
    # The two runs differ only in the order of the sums in each dot product (per tensor, then across
    # tensors; eager vs compiled kernels): a relative change of ~n·ε ≈ 7e-15 in each α and β, which CG
    # carries into x with a growth of about cond(A)·iterations ≈ 1e3, so ~1e-11 normwise at most (worst
    # seen over 20 seeds: 2.2e-13). Componentwise, small entries of x differ by more (1.4e-12 seen).
    assert rel_err(join(listed.x).numpy(), single.x.numpy()) <= 1e-11
    saved = np.concatenate([listed.saved[0].numpy().reshape(4, 20), listed.saved[1].numpy()], axis=1)
    assert rel_err(saved, single.saved.numpy()) <= 1e-11
    np.testing.assert_allclose(listed.phi.numpy(), single.phi.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(listed.saved_iters.numpy(), single.saved_iters.numpy())
    x = single.x.numpy()
    assert float(listed.reduction) == pytest.approx(quad_phi(a, b, x), rel=1e-9)
    assert float(single.reduction) == pytest.approx(quad_phi(a, b, x), rel=1e-9)
    assert math.isfinite(float(single.reduction)) and float(single.reduction) < 0


def test_report_window_needs_t_of_at_least_two():
    with pytest.raises(ValueError, match="min_iters"):
        hflib.pcg(lambda v: v, tf.ones([3], tf.float64), window="report", min_iters=1)

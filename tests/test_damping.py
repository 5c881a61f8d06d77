"""Levenberg–Marquardt damping: the rule table, ρ's sign convention, damped vs undamped q, traces."""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import damping  # noqa: E402
from helpers_core import random_spd  # noqa: E402

NAN = float("nan")
# ρ → factor applied to λ with r = 1.5: ×r below ¼ (and for NaN), ÷r above ¾, unchanged on [¼, ¾]
RULE_TABLE = [
    (-math.inf, 1.5), (-3.0, 1.5), (0.0, 1.5), (0.2499, 1.5), (NAN, 1.5),
    (0.25, 1.0), (0.5, 1.0), (0.75, 1.0),
    (0.7501, 1 / 1.5), (1.0, 1 / 1.5), (2.5, 1 / 1.5),
]


@pytest.mark.parametrize("rho,factor", RULE_TABLE)
def test_rule_table_python_floats(rho, factor):
    assert damping.lm_update(2.0, rho) == pytest.approx(2.0 * factor, rel=1e-15)
    assert isinstance(damping.lm_update(2.0, rho), float)


@pytest.mark.parametrize("rho,factor", RULE_TABLE)
def test_rule_table_tensors(rho, factor):
    out = damping.lm_update(tf.constant(2.0, tf.float64), tf.constant(rho, tf.float64))
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float64
    assert float(out) == pytest.approx(2.0 * factor, rel=1e-15)
    # also in a graph (where Grappler rewrites comparisons), with the factor r as a tensor
    assert float(_graph_update(tf.constant(2.0, tf.float64), tf.constant(rho, tf.float64))) == \
        pytest.approx(2.0 * factor, rel=1e-15)


@tf.function
def _graph_update(lam, rho):
    return damping.lm_update(lam, rho, r=tf.constant(1.5, tf.float64))


def test_tensor_rule_keeps_float64_precision_of_a_python_damping():
    # λ = 0.1 is not representable in float32: a detour through float32 would be off by ~1e-9
    out = damping.lm_update(0.1, tf.constant(0.1, tf.float64))
    assert out.dtype == tf.float64 and float(out) == 0.1 * 1.5
    out = damping.lm_update(tf.constant(0.1, tf.float64), 0.9)         # tensor λ, Python ρ
    assert out.dtype == tf.float64 and float(out) == 0.1 / 1.5


def test_rule_with_other_factor_and_thresholds():
    assert damping.lm_update(1.0, 0.1, r=3.0) == pytest.approx(3.0)
    assert damping.lm_update(1.0, 0.9, r=3.0) == pytest.approx(1 / 3)
    assert damping.lm_update(1.0, 0.3, lower=0.4, upper=0.6) == pytest.approx(1.5)
    assert damping.lm_update(1.0, 0.65, lower=0.4, upper=0.6) == pytest.approx(1 / 1.5)


@pytest.mark.parametrize("r", [1.0, 0.5, 0, -2.0])
def test_factor_must_exceed_one(r):
    with pytest.raises(ValueError, match="r"):
        damping.lm_update(1.0, 0.5, r=r)
    with pytest.raises(ValueError, match="r"):
        damping.trace([0.5], 1.0, r=r)


@pytest.mark.parametrize("lam", [0.0, -1.0])
def test_damping_must_be_positive(lam):
    with pytest.raises(ValueError, match="damping"):
        damping.lm_update(lam, 0.5)


def test_trace_over_scripted_rhos():
    # λ0 = 1, r = 1.5:
    #   ρ = 0.1  (< ¼)      → 1.5
    #   ρ = 0.5  (between)  → 1.5
    #   ρ = 0.9  (> ¾)      → 1.0
    #   ρ = NaN             → 1.5
    #   ρ = 0.8             → 1.0
    #   ρ = 0.8             → 2/3
    #   ρ = −∞ (loss up)    → 1.0
    #   ρ = 0.25 (boundary) → 1.0
    rhos = [0.1, 0.5, 0.9, NAN, 0.8, 0.8, -math.inf, 0.25]
    expected = [1.0, 1.5, 1.5, 1.0, 1.5, 1.0, 2 / 3, 1.0, 1.0]
    np.testing.assert_allclose(damping.trace(rhos, 1.0, 1.5), expected, rtol=1e-14)
    np.testing.assert_allclose(damping.trace(np.array(rhos), 45.0, 2.0),
                               45.0 * np.array([1, 2, 2, 1, 2, 1, 0.5, 1, 1]), rtol=1e-14)


def test_clamp():
    assert float(damping.clamp(1e-9, 1e-6, 1e3)) == pytest.approx(1e-6)
    assert float(damping.clamp(1e9, 1e-6, 1e3)) == pytest.approx(1e3)
    assert float(damping.clamp(3.0, 1e-6, 1e3)) == pytest.approx(3.0)


# ------------------------------------------------------------------ ρ and the quadratic model
@pytest.fixture(scope="module")
def quadratic():
    """f(θ) = ½θᵀAθ + cᵀθ and one damped CG step from θ0 (b = −∇f)."""
    n, lam = 12, 0.7
    a = random_spd(n, 20.0, 21)
    rng = np.random.default_rng(22)
    c, theta0 = rng.normal(size=n), rng.normal(size=n)

    def f(t):
        return 0.5 * t @ a @ t + c @ t

    grad = a @ theta0 + c
    a_t = tf.constant(a)
    res = hflib.pcg(lambda v: tf.linalg.matvec(a_t, v) + lam * v, tf.constant(-grad), tol=1e-30, max_iters=100)
    return dict(a=a, f=f, grad=grad, theta0=theta0, lam=lam, res=res)


def test_model_reduction_damped_vs_undamped(quadratic):
    q, lam = quadratic, quadratic["lam"]
    res = q["res"]
    p = res.x.numpy()
    damped = float(damping.model_reduction(res.reduction, [res.x], lam, "damped"))
    undamped = float(damping.model_reduction(res.reduction, [res.x], lam, "undamped"))
    assert damped == float(res.reduction)
    assert damped - undamped == pytest.approx(0.5 * lam * p @ p, rel=1e-12)     # ½λ‖p‖²
    # both against the explicit quadratics q(p) − q(0) = ½pᵀ(A [+ λI])p + ∇fᵀp
    assert undamped == pytest.approx(0.5 * p @ q["a"] @ p + q["grad"] @ p, rel=1e-9)
    assert damped == pytest.approx(0.5 * p @ (q["a"] + lam * np.eye(len(p))) @ p + q["grad"] @ p, rel=1e-9)
    # a list of several tensors works the same
    parts = [tf.constant(p[:5]), tf.constant(p[5:])]
    assert float(damping.model_reduction(res.reduction, parts, lam, "undamped")) == pytest.approx(undamped)
    with pytest.raises(ValueError, match="denominator"):
        damping.model_reduction(res.reduction, parts, lam, "halfway")


def test_reduction_ratio_is_one_on_an_exact_quadratic(quadratic):
    q, lam = quadratic, quadratic["lam"]
    res = q["res"]
    p = res.x.numpy()
    f_old, f_new = q["f"](q["theta0"]), q["f"](q["theta0"] + p)
    assert f_new < f_old                                           # a good step
    undamped = damping.model_reduction(res.reduction, [res.x], lam, "undamped")
    rho = float(damping.reduction_ratio(f_old, f_new, undamped))
    assert rho == pytest.approx(1.0, abs=1e-9)                     # positive, ≈ 1: Martens' sign convention
    rho_damped = float(damping.reduction_ratio(f_old, f_new, res.reduction))
    # with p minimising the damped model, q_λ(p) − q_λ(0) = −½pᵀ(A+λI)p while the true decrease is
    # −½pᵀAp − λ‖p‖², so the damped denominator promises less than f delivers: ρ > 1
    assert rho_damped > 1.05
    assert rho_damped == pytest.approx(float(undamped) / float(res.reduction), rel=1e-9)


def test_reduction_ratio_loss_went_up_is_minus_inf():
    assert float(damping.reduction_ratio(1.0, 1.5, -0.2)) == -math.inf
    rho = damping.reduction_ratio(tf.constant(1.0, tf.float32), tf.constant(1.0001, tf.float32),
                                  tf.constant(-0.3, tf.float64))
    assert rho.dtype == tf.float64 and float(rho) == -math.inf
    assert damping.lm_update(1.0, float(rho)) == pytest.approx(1.5)


def test_reduction_ratio_values_and_nan():
    assert float(damping.reduction_ratio(2.0, 1.0, -2.0)) == pytest.approx(0.5)
    assert float(damping.reduction_ratio(2.0, 1.0, -0.5)) == pytest.approx(2.0)
    assert math.isnan(float(damping.reduction_ratio(2.0, NAN, -0.5)))
    assert damping.lm_update(1.0, float(damping.reduction_ratio(2.0, NAN, -0.5))) == pytest.approx(1.5)

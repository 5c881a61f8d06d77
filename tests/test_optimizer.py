"""The HF update (`HessianFree.step`), layer 2: the Newton identity, weight decay as ridge
regression, a real fit, the λ rule, non-finite values, options that must change something,
backtracking and the line search inside the update, configuration checks and retracing.

Everything that compares numbers exactly runs in float64. The training loop is tested in
test_training.py.
"""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import hflib
from hflib import damping as hf_damping
from hflib import data, models
from hflib.optimizer import REPORT_ALGORITHM, HessianFree, HFConfig, damping_floor

F64 = "float64"


def weights_bytes(model):
    """The trainable weights as raw bytes: equality is bitwise (NaN included)."""
    return [v.numpy().tobytes() for v in model.trainable_variables]


def batch_loss(model, loss, x, y):
    return hflib.evaluate(model, loss, x, y)["loss"]


@pytest.fixture(scope="module")
def sine64():
    return data.make_sine_data(dtype=F64)


@pytest.fixture(scope="module")
def small_sine():
    return data.make_sine_data(n=200, seed=3, dtype=F64)


@pytest.fixture(scope="module")
def sine_run(sine64):
    """HF on the report's sine task (1-15-15-1 ReLU, batch 1000, λ₀ = 1, r = 1.5, no floor), 15 epochs, float64."""
    x, y = sine64
    hf = HessianFree(models.sine_mlp(dtype=F64), "squared_error", initial_damping=1.0, r=1.5, damping_min=1e-6)
    history = hflib.fit(hf, (x, y), epochs=15, batch_size=1000, validation_data=(x, y), progress=False)
    return hf, history


def _linear_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 5))
    y = x @ rng.normal(size=(5, 2)) + 0.3 + rng.normal(scale=0.5, size=(40, 2))
    return x, y, np.hstack([x, np.ones((len(x), 1))])        # the design matrix has a bias column


def _exact_newton(**options):
    return dict(initial_damping=1e-10, damping_min=1e-12, preconditioner="none", warm_start=0.0,
                backtracking=False, line_search=False, min_iters=1, max_iters=50, tol=1e-14, **options)


# ------------------------------------------------------------------ Newton identities
def test_one_step_on_linear_least_squares_lands_on_the_lstsq_solution():
    """Linear model + squared error: f is a convex quadratic with G = H, so one step with
    λ ≈ 0 and CG run to convergence is the Newton step, i.e. the least-squares solution."""
    x, y, design = _linear_problem()
    model = models.mlp((5, 2), dtype=F64, seed=4)
    record = HessianFree(model, "squared_error", **_exact_newton()).step(x, y)
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    kernel, bias = (v.numpy() for v in model.trainable_variables)
    np.testing.assert_allclose(kernel, solution[:5], atol=1e-6, rtol=0)
    np.testing.assert_allclose(bias, solution[5], atol=1e-6, rtol=0)
    assert record["rho"] == pytest.approx(1.0, abs=1e-6)       # on an exact quadratic the model is exact
    residual = design @ solution - y
    assert record["loss_after"] == pytest.approx(0.5 * np.mean(np.sum(residual ** 2, axis=1)), rel=1e-9)
    assert record["accepted"] and not record["nonfinite"] and record["rate"] == 1.0


def test_weight_decay_step_lands_on_the_ridge_solution():
    """With ½w‖θ‖² added, the objective is still a quadratic: its minimiser solves
    (DᵀD/n + wI) θ = Dᵀy/n (bias included), and one exact step lands there. This checks that the
    L2 term enters the gradient, G·v and the loss exactly."""
    x, y, design = _linear_problem(1)
    w = 0.3
    model = models.mlp((5, 2), dtype=F64, seed=4)
    record = HessianFree(model, "squared_error", **_exact_newton(weight_decay=w)).step(x, y)
    n = len(x)
    ridge = np.linalg.solve(design.T @ design / n + w * np.eye(6), design.T @ y / n)
    kernel, bias = (v.numpy() for v in model.trainable_variables)
    np.testing.assert_allclose(kernel, ridge[:5], atol=1e-8, rtol=0)
    np.testing.assert_allclose(bias, ridge[5], atol=1e-8, rtol=0)
    theta = np.concatenate([kernel.ravel(), bias])
    residual = design @ ridge - y
    data_loss = 0.5 * np.mean(np.sum(residual ** 2, axis=1))
    assert record["loss_after"] == pytest.approx(data_loss + 0.5 * w * theta @ theta, rel=1e-9)
    assert record["rho"] == pytest.approx(1.0, abs=1e-6)
    assert record["objective"] > record["loss"]                 # objective = data loss + penalty at θ₀


# ------------------------------------------------------------------ a real fit
def test_hf_fits_the_sine_data(sine_run):
    """The noise has variance 0.1², so the best possible mean ½-squared error is ½·0.01 = 0.005
    (a constant predictor gets ≈ 0.22). 0.01 = twice the floor: within 15 epochs (30 updates)."""
    hf, h = sine_run
    val = h["val_loss"][~np.isnan(h["val_loss"])]
    assert len(val) == 15
    assert 0.004 < val[-1] < 0.01 and val[-1] < val[0]
    assert len(h) == 30 and h["update"][-1] == 30 == int(hf.iterations.numpy())


# ------------------------------------------------------------------ the λ rule
def test_damping_trace_over_a_scripted_rho_sequence():
    rhos = [0.1, 0.9, 0.5, math.nan, -math.inf, 0.8, 0.25, 0.75, 0.2]
    lam = hf_damping.trace(rhos, initial_damping=1.0, r=1.5)
    want = [1.0, 1.5, 1.0, 1.0, 1.5, 2.25, 1.5, 1.5, 1.5, 2.25]
    np.testing.assert_allclose(lam, want, rtol=1e-15)
    tensor_lam = [1.0]
    for rho in rhos:
        tensor_lam.append(float(hf_damping.lm_update(tf.constant(tensor_lam[-1], tf.float64),
                                                     tf.constant(rho, tf.float64), 1.5)))
    np.testing.assert_allclose(tensor_lam, want, rtol=1e-15)
    with pytest.raises(ValueError, match="^r: "):
        hf_damping.trace([0.5], r=1.0)


def _check_lambda_follows_rule(history, final_lambda, r, lo, hi):
    lam, rho, bad = history["damping"], history["rho"], history["nonfinite"]
    expected = []
    for k in range(len(lam)):
        nxt = lam[k] * r if bad[k] else hf_damping.lm_update(float(lam[k]), float(rho[k]), r)
        expected.append(min(max(nxt, lo), hi))
    np.testing.assert_allclose(lam[1:], expected[:-1], rtol=1e-12)
    assert final_lambda == pytest.approx(expected[-1], rel=1e-12)


def test_optimizer_lambda_follows_the_lm_rule_over_a_real_run(sine_run):
    hf, h = sine_run
    _check_lambda_follows_rule(h, float(hf.damping.numpy()), 1.5, 1e-6, 1e6)
    moves = np.diff(np.log(h["damping"]))
    assert (moves > 0).any() and (moves < 0).any()      # the run exercised both branches
    np.testing.assert_allclose(np.abs(moves[moves != 0]), math.log(1.5), rtol=1e-9)


def test_the_default_floor_of_lambda_is_100_over_the_batch_size(small_sine):
    x, y = small_sine
    for batch in (50, 200):
        hf = HessianFree(models.sine_mlp(hidden=(8,), dtype=F64), "squared_error", initial_damping=1e-3)
        records = [hf.step(x[:batch], y[:batch]) for _ in range(3)]
        assert records[0]["damping"] == pytest.approx(100 / batch)     # λ₀ below the floor is raised to it
        assert min(r["damping"] for r in records) >= 100 / batch * (1 - 1e-12)
        assert float(hf.damping.numpy()) >= 100 / batch * (1 - 1e-12)


def test_lambda_is_clamped_to_damping_min(small_sine):
    x, y = small_sine
    hf = HessianFree(models.sine_mlp(hidden=(8,), dtype=F64), "squared_error", initial_damping=1.0,
                     damping_min=0.5)
    records = [hf.step(x[i:i + 100], y[i:i + 100]) for _ in range(6) for i in (0, 100)]
    h = hflib.History(records)
    _check_lambda_follows_rule(h, float(hf.damping.numpy()), 1.5, 0.5, 1e6)
    assert h["damping"].min() == 0.5                      # reached the floor and stayed there


# ------------------------------------------------------------------ non-finite values
def _nan_trainer(**kw):
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=1)
    return HessianFree(model, "squared_error", initial_damping=2.0, r=1.5, **kw), model


@pytest.mark.parametrize("where", ["x", "weight"])
def test_nonfinite_step_is_rejected(small_sine, where):
    x, y = (np.array(a) for a in small_sine)
    hf, model = _nan_trainer()
    hf.step(x[:100], y[:100])                              # one good step: a nonzero warm start
    assert any(np.any(p.numpy() != 0) for p in hf.previous)
    if where == "x":
        x[7, 0] = np.nan
    else:
        w = model.get_weights()
        w[0][0, 3] = np.nan
        model.set_weights(w)
    before, lam = weights_bytes(model), float(hf.damping.numpy())
    record = hf.step(x[:100], y[:100])
    assert weights_bytes(model) == before                 # bitwise unchanged
    assert float(hf.damping.numpy()) == lam * 1.5
    assert record["nonfinite"] is True and record["accepted"] is False
    assert math.isnan(record["loss"])
    assert record["rate"] == 0 and record["step_norm"] == 0
    assert all(np.all(p.numpy() == 0) for p in hf.previous)   # warm start reset


class _Exploding(keras.layers.Layer):
    """Identity on the data the update is fitted on; +∞ once the kernel has moved far from its start
    (so G·v and the gradient are finite at θ, but f(θ + p) is not)."""

    def __init__(self, start, **kw):
        super().__init__(**kw)
        self.start = start

    def call(self, z, kernel):
        far = tf.reduce_sum(tf.abs(kernel - self.start)) > 1e-3
        return tf.where(far, tf.fill(tf.shape(z), tf.constant(math.inf, z.dtype)), z)


def test_a_step_to_a_nonfinite_loss_is_never_applied_without_a_line_search():
    """The report's Algorithm 1 (no line search) takes CG's step whole; a step whose loss is not
    finite must still be refused, λ raised and θ kept (it used to be applied and recorded accepted)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((3,), dtype=F64)
    dense = keras.layers.Dense(2, dtype=F64)
    out = dense(inp)
    start = tf.constant(dense.kernel.numpy())
    model = keras.Model(inp, _Exploding(start, dtype=F64, name="exploding")(out, dense.kernel))
    x = np.random.default_rng(0).normal(size=(30, 3))
    y = np.random.default_rng(1).normal(size=(30, 2)) + 5.0
    hf = HessianFree(model, "squared_error", initial_damping=1.0, damping_min=1e-6, line_search=False,
                     backtracking=False)
    before = weights_bytes(model)
    record = hf.step(x, y)
    assert record["accepted"] is False and record["rate"] == 0
    assert weights_bytes(model) == before
    assert float(hf.damping.numpy()) == pytest.approx(1.5)
    assert record["loss_after"] == record["loss_curvature_batch"]


# ------------------------------------------------------------------ options change what they should
def _badly_scaled(n=400, seed=0):
    """Inputs whose features differ in scale by 10⁴: a badly conditioned G (cond ≈ 2·10⁴ at λ = 10⁻³)."""
    x, y = data.make_teacher_data(n=n, dim=8, seed=seed)
    return x * np.logspace(-2, 2, 8), y


def test_martens_preconditioner_solves_the_damped_system_in_fewer_iterations():
    """On the badly scaled problem, PCG with M = (D + λ)^¾ (D the empirical-Fisher diagonal the update
    uses) reaches φ within 10⁻⁶ of its minimum in ≤ 85% of plain CG's iterations (measured 100 vs 133)."""
    x, y = _badly_scaled()
    model = models.mlp((8, 16, 10), activation="tanh", seed=0, dtype=F64)
    lam, loss = 1e-3, "softmax_cross_entropy"
    op = hflib.DampedGGN(model, loss, x, y, lam)
    b = -hflib.flatten(hflib.gradient(model, loss, x, y))
    phi_star = -0.5 * float(b.numpy() @ np.linalg.solve(op.to_dense().numpy(), b.numpy()))
    diagonal = hflib.flatten(hflib.preconditioners.empirical_fisher_diagonal(model, loss, x, y))
    reached = {}
    for name, m in (("none", None), ("martens", (diagonal + lam) ** 0.75)):
        phis = hflib.pcg(op.matvec, b, preconditioner=m, max_iters=400, tol=1e-15).phi.numpy()
        reached[name] = int(np.argmax(phis - phi_star <= 1e-6 * abs(phi_star)))
    assert 0 < reached["martens"] <= 0.85 * reached["none"], reached


def test_the_preconditioner_option_changes_the_cg_run():
    x, y = _badly_scaled()
    runs = {}
    for pre in ("none", "martens"):
        model = models.mlp((8, 16, 10), activation="tanh", seed=0, dtype=F64)
        hf = HessianFree(model, "softmax_cross_entropy", initial_damping=1e-3, preconditioner=pre, warm_start=0.0)
        runs[pre] = hf.step(x, y)
    assert runs["none"]["cg_iters"] != runs["martens"]["cg_iters"]
    assert runs["none"]["model_reduction"] != runs["martens"]["model_reduction"]
    assert all(r["accepted"] for r in runs.values())


def test_without_line_search_the_rate_is_one(small_sine):
    x, y = small_sine
    hf, _ = _nan_trainer(line_search=False)
    rates = [hf.step(x, y)["rate"] for _ in range(4)]
    assert rates == [1.0] * 4


@pytest.mark.parametrize("options", [
    dict(preconditioner="martens"),
    dict(preconditioner="report"),
    dict(preconditioner="chapelle_erhan"),
    dict(preconditioner="none"),
    dict(backtracking=False),
    dict(line_search=False),
    dict(weight_decay=1e-3),
    REPORT_ALGORITHM,
    dict(window="report", rho_denominator="undamped"),
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_each_option_reduces_the_loss_and_its_record_tells_the_truth(small_sine, options):
    x, y = small_sine
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=1)
    hf = HessianFree(model, "squared_error", initial_damping=1.0, max_iters=30, **options)
    start = batch_loss(model, "squared_error", x, y)
    records = [hf.step(x, y) for _ in range(3)]
    end = batch_loss(model, "squared_error", x, y)
    assert end < start
    assert all(r["accepted"] for r in records)
    assert all(r["loss_after"] < r["objective"] for r in records)
    penalty = 0.5 * options.get("weight_decay", 0.0) * sum(float(np.sum(w ** 2)) for w in model.get_weights())
    assert records[-1]["loss_after"] == pytest.approx(end + penalty, rel=1e-10)


def test_curvature_batch_size_uses_the_first_examples(small_sine):
    x, y = small_sine
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=1)
    hf = HessianFree(model, "squared_error", initial_damping=1.0, max_iters=30, curvature_batch_size=50)
    full, head = batch_loss(model, "squared_error", x, y), batch_loss(model, "squared_error", x[:50], y[:50])
    record = hf.step(x, y)
    assert record["loss"] == pytest.approx(full, rel=1e-12)          # gradient on all 200
    assert record["loss_curvature_batch"] == pytest.approx(head, rel=1e-12)   # curvature on 50
    assert record["accepted"] and batch_loss(model, "squared_error", x, y) < full
    # ρ, backtracking and the line search are judged on the curvature batch
    assert record["loss_after"] == pytest.approx(batch_loss(model, "squared_error", x[:50], y[:50]), rel=1e-10)
    with pytest.raises(ValueError, match="^curvature_batch_size: 50 exceeds the batch of 40"):
        hf.step(x[:40], y[:40])


# ------------------------------------------------------------------ backtracking and line search in the update
@pytest.fixture(scope="module")
def teacher():
    return data.make_teacher_data(n=300)


def _teacher_step(teacher, **options):
    """One step with a tiny λ and long CG on a tanh net: the quadratic model overshoots."""
    x, y = teacher
    model = models.mlp((20, 20, 10), activation="tanh", dtype=F64, seed=0)
    hf = HessianFree(model, "softmax_cross_entropy", initial_damping=1e-3, damping_min=1e-8, preconditioner="none",
                     max_iters=150, tol=1e-10, warm_start=0.0, **options)
    theta0 = [w.copy() for w in model.get_weights()]
    return hf, model, theta0, hf.step(x, y)


def test_backtracking_goes_back_and_never_does_worse_than_cg_last_iterate(teacher):
    x, y = teacher
    _, _, _, last = _teacher_step(teacher, backtracking=False, line_search=False)
    hf, model, _, back = _teacher_step(teacher, backtracking=True, line_search=False)
    assert last["cg_iters"] == back["cg_iters"] > 20               # the same CG run
    assert last["backtrack_index"] == -1 and back["backtrack_index"] >= 0   # it chose a saved iterate
    assert back["loss_after"] < last["loss_after"] - 1.0            # here it matters a lot
    assert back["step_norm"] < last["step_norm"]                     # an earlier, shorter iterate
    assert back["loss_after"] == pytest.approx(batch_loss(model, "softmax_cross_entropy", x, y), rel=1e-10)


def test_line_search_picks_the_largest_armijo_rate(teacher):
    x, y = teacher
    hf, model, theta0, rec = _teacher_step(teacher, backtracking=False, line_search=True)
    t = rec["rate"]
    k = round(math.log(t) / math.log(0.8))
    assert 0 < k <= 60 and t == pytest.approx(0.8 ** k, rel=1e-12)
    p = [(b - a) / t for a, b in zip(theta0, model.get_weights())]

    def loss_at(s):
        model.set_weights([a + s * d for a, d in zip(theta0, p)])
        return batch_loss(model, "softmax_cross_entropy", x, y)

    f0 = loss_at(0.0)
    slope = sum(float(np.sum(g.numpy() * d)) for g, d in zip(hflib.gradient(model, "softmax_cross_entropy", x, y), p))
    assert slope < 0
    assert loss_at(t) <= f0 + 1e-2 * t * slope                      # Armijo holds at t …
    assert loss_at(t / 0.8) > f0 + 1e-2 * (t / 0.8) * slope         # … but not at the previous try
    assert rec["loss_after"] == pytest.approx(loss_at(t), rel=1e-10)


def test_line_search_rates_on_a_real_run_are_powers_of_0_8(sine_run):
    for t in sine_run[1]["rate"]:
        assert t == 0 or any(t == pytest.approx(0.8 ** k, rel=1e-12) for k in range(61))


# ------------------------------------------------------------------ inputs the update refuses or converts
def test_step_checks_labels_before_the_compiled_update(teacher):
    """Inside the compiled update an out-of-range class id would become an all-zero target row."""
    x, y = teacher
    hf = HessianFree(models.mlp((20, 10), dtype=F64), "softmax_cross_entropy")
    bad = y.copy()
    bad[3] = 10
    with pytest.raises(ValueError, match=r"^y: class ids must lie in \[0, 10\)"):
        hf.step(x, bad)
    with pytest.raises(ValueError, match="^y: "):
        hf.step(x, y[:-1])
    assert int(hf.iterations.numpy()) == 0


def test_float64_inputs_feed_a_float32_model():
    x, y = data.make_teacher_data(n=200, dtype="float64")
    hf = HessianFree(models.mlp((20, 16, 10), seed=0), "softmax_cross_entropy", initial_damping=1.0)
    record = hf.step(x, y)
    assert record["accepted"] and math.isfinite(record["loss"])


@pytest.mark.parametrize("layer", [keras.layers.Dropout(0.5), keras.layers.BatchNormalization(),
                                   keras.layers.GaussianNoise(0.1)], ids=lambda l: type(l).__name__)
def test_layers_that_depend_on_the_training_flag_are_refused(layer):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), layer, keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=rf"^model: layer '{layer.name}' \({type(layer).__name__}\)"):
        HessianFree(model, "softmax_cross_entropy")


@pytest.mark.parametrize("loss, activation", [("softmax_cross_entropy", "softmax"),
                                              ("sigmoid_cross_entropy", "sigmoid")])
def test_a_final_activation_that_the_loss_applies_again_is_refused(loss, activation):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation, name="out")])
    with pytest.raises(ValueError, match=rf"^model: its last layer 'out' applies {activation}"):
        HessianFree(model, loss)
    soft = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Softmax(name="sm")])
    if loss == "softmax_cross_entropy":
        with pytest.raises(ValueError, match="applies softmax"):
            HessianFree(soft, loss)


# ------------------------------------------------------------------ configuration
@pytest.fixture(scope="module")
def tiny_model():
    return models.sine_mlp(hidden=(3,), dtype=F64)


@pytest.mark.parametrize("kwargs, field, error", [
    (dict(r=1.0), "r", ValueError),
    (dict(r=0.5), "r", ValueError),
    (dict(r=math.nan), "r", ValueError),
    (dict(r=math.inf), "r", ValueError),
    (dict(tol=0.0), "tol", ValueError),
    (dict(tol=math.inf), "tol", ValueError),
    (dict(initial_damping=0.0), "initial_damping", ValueError),
    (dict(initial_damping=math.nan), "initial_damping", ValueError),
    (dict(initial_damping=1e7), "initial_damping", ValueError),      # above damping_max
    (dict(damping_min=2.0, damping_max=1.0, initial_damping=1.5), "damping_min", ValueError),
    (dict(alpha=math.nan), "alpha", ValueError),
    (dict(armijo_c=5), "armijo_c", ValueError),                       # would reject every step
    (dict(armijo_c=0), "armijo_c", ValueError),
    (dict(armijo_shrink=1.0), "armijo_shrink", ValueError),
    (dict(armijo_max_tries=-1), "armijo_max_tries", ValueError),
    (dict(backtracking="no"), "backtracking", TypeError),
    (dict(line_search=1), "line_search", TypeError),
    (dict(preconditioner="jacobi"), "preconditioner", ValueError),
    (dict(min_iters=20, max_iters=10), "min_iters", ValueError),
    (dict(max_iters=0), "max_iters", ValueError),
    (dict(max_iters=2.5), "max_iters", TypeError),
    (dict(window="sliding"), "window", ValueError),
    (dict(rho_denominator="both"), "rho_denominator", ValueError),
    (dict(warm_start=1.5), "warm_start", ValueError),
    (dict(weight_decay=-1e-5), "weight_decay", ValueError),
    (dict(curvature_batch_size=0), "curvature_batch_size", ValueError),
    (dict(fisher_examples=2.0), "fisher_examples", TypeError),
    (dict(damping=1.0), "damping", TypeError),                       # λ₀ is initial_damping
])
def test_bad_config_is_rejected_at_construction(tiny_model, kwargs, field, error):
    with pytest.raises(error, match=f"{field}"):
        HessianFree(tiny_model, "squared_error", **kwargs)
    if field != "damping":
        with pytest.raises(error, match=f"^{field}: "):
            HFConfig(**kwargs)


def test_numpy_scalars_are_numbers(tiny_model):
    config = HFConfig(initial_damping=np.float32(2.0), r=np.float64(1.25), max_iters=np.int64(40),
                      fisher_examples=np.int32(10))
    assert (config.initial_damping, config.r, config.max_iters) == (2.0, 1.25, 40)
    assert type(config.max_iters) is int and type(config.initial_damping) is float
    hf = HessianFree(tiny_model, "squared_error", config, seed=np.int64(4))
    assert hf.seed == 4
    with pytest.raises(TypeError, match="^seed: expected an integer"):
        HessianFree(tiny_model, "squared_error", seed=1.5)


def test_config_object_overrides_and_reset_keep_config_and_state_in_step(tiny_model):
    with pytest.raises(TypeError, match="config"):
        HessianFree(tiny_model, "squared_error", config={"initial_damping": 1.0})
    hf = HessianFree(tiny_model, "squared_error", HFConfig(initial_damping=2.0, r=1.1), tol=1e-3)
    assert (hf.config.initial_damping, hf.config.r, hf.config.tol) == (2.0, 1.1, 1e-3)
    assert float(hf.damping.numpy()) == 2.0 and float(hf.r.numpy()) == pytest.approx(1.1)
    hf.reset(damping=3.0, r=1.7)
    assert hf.config.r == 1.7 == pytest.approx(float(hf.r.numpy())) and hf.get_config()["r"] == 1.7
    assert float(hf.damping.numpy()) == 3.0
    with pytest.raises(ValueError, match="^r: "):
        hf.reset(r=1.0)
    with pytest.raises(ValueError, match="^damping: "):
        hf.reset(damping=0.0)


def test_get_config_names_everything_that_defines_the_update(tiny_model):
    hf = HessianFree(tiny_model, "squared_error", seed=3, weight_decay=1e-4)
    config = hf.get_config()
    assert config["updater"] == "HessianFree" and config["loss"] == "squared_error" and config["seed"] == 3
    assert config["weight_decay"] == 1e-4
    assert set(hflib.optimizer.config_fields()) <= set(config)


def test_no_retracing_across_updates_resets_and_new_lambda(small_sine):
    x, y = small_sine
    hf, _ = _nan_trainer()
    for _ in range(3):
        hf.step(x[:50], y[:50])
    hf.reset(damping=3.0, r=1.2)                          # λ and r live in variables
    for _ in range(3):
        hf.step(x[50:100], y[50:100])
    assert hf.tracing_count() == 1


# ------------------------------------------------------------------ fused fast path
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_fused_gradient_and_fisher_diagonal_give_the_same_update(net, monkeypatch):
    """The update takes Martens' diagonal from the gradient's reverse pass (probes in the
    linearisation's forward pass). It must be the same update as with the separate diagonal."""
    rng = np.random.default_rng(0)
    if net == "mlp":
        build = lambda: models.mlp((12, 16, 10), activation="tanh", seed=0, dtype=F64)
        x = rng.normal(size=(64, 12))
    else:
        import keras as k
        def build():
            k.utils.set_random_seed(0)
            return k.Sequential([k.Input((8, 8, 1), dtype=F64), k.layers.Conv2D(4, 3, strides=2, activation="relu",
                                 dtype=F64), k.layers.Flatten(dtype=F64), k.layers.Dense(10, dtype=F64)])
        x = rng.uniform(size=(64, 8, 8, 1))
    y = rng.integers(0, 10, size=64)
    fused = HessianFree(build(), "softmax_cross_entropy", initial_damping=0.1)
    records_fused = [fused.step(x, y) for _ in range(2)]
    from hflib import batch
    assert batch.OneDevice(fused.model, fused.loss, tf.constant(x), tf.constant(y), fisher=True).fused
    monkeypatch.setattr(batch._pre, "has_exact_rule", lambda model: False)
    separate = HessianFree(build(), "softmax_cross_entropy", initial_damping=0.1)
    records_separate = [separate.step(x, y) for _ in range(2)]
    for a, b in zip(records_fused, records_separate):
        for key in ("loss", "rho", "cg_iters", "model_reduction", "step_norm", "loss_after"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-14), key
    for wa, wb in zip(fused.model.get_weights(), separate.model.get_weights()):   # rounding, amplified by CG
        np.testing.assert_allclose(wa, wb, rtol=1e-7, atol=1e-10)


def test_damping_floor_is_damping_min_or_100_over_the_batch():
    assert damping_floor(HFConfig(), 1000) == 0.1
    assert damping_floor(HFConfig(), 250) == 0.4
    assert damping_floor(HFConfig(damping_min=1e-6), 1000) == 1e-6

"""HessianFree end to end: the Newton identity, a real fit, the λ rule, NaN handling,
checkpoint/resume, atomic checkpoints, retracing, config validation, each switch,
backtracking and line search, History I/O and the first-order baselines.

Everything that compares numbers exactly runs in float64.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv  # noqa: E402
import math  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import damping as hf_damping  # noqa: E402
from hflib import data, models  # noqa: E402
from hflib.optimizer import HessianFree, HFConfig  # noqa: E402
from hflib.training import FirstOrder, History, data_order  # noqa: E402

F64 = "float64"


# ------------------------------------------------------------------ helpers
def weights_bytes(model):
    """The trainable weights as raw bytes: equality is bitwise (NaN included)."""
    return [v.numpy().tobytes() for v in model.trainable_variables]


def same(a, b):
    """Equality of record values with NaN == NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_records_equal(got, want, skip=("time",)):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert set(g) == set(w), f"record {i}: keys differ"
        for k in w:
            if k in skip:
                continue
            assert same(g[k], w[k]), f"record {i}, {k!r}: {g[k]!r} != {w[k]!r}"


@pytest.fixture(scope="module")
def sine64():
    return data.make_sine_data(dtype=F64)


@pytest.fixture(scope="module")
def small_sine():
    return data.make_sine_data(n=200, seed=3, dtype=F64)


@pytest.fixture(scope="module")
def sine_run(sine64):
    """HF on the report's sine task (1-15-15-1 ReLU, batch 1000, λ₀ = 1, r = 1.5), 15 epochs, float64."""
    x, y = sine64
    model = models.sine_mlp(dtype=F64)
    hf = HessianFree(model, "squared_error", damping=1.0, r=1.5)
    hf.fit((x, y), epochs=15, batch_size=1000, validation_data=(x, y), progress=False)
    return hf


# ------------------------------------------------------------------ Newton identity
def test_one_step_on_linear_least_squares_lands_on_the_lstsq_solution():
    """Linear model + squared error: f is a convex quadratic with G = H, so one step with
    λ ≈ 0 and CG run to convergence is the Newton step, i.e. the least-squares solution."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = x @ rng.normal(size=(5, 2)) + 0.3 + rng.normal(scale=0.5, size=(40, 2))
    model = models.mlp((5, 2), dtype=F64, seed=4)
    hf = HessianFree(model, "squared_error", damping=1e-10, damping_min=1e-12, preconditioner="none",
                     warm_start=0.0, backtracking=False, line_search=False, min_iters=1, max_iters=50, tol=1e-14)
    record = hf.step(x, y)
    design = np.hstack([x, np.ones((len(x), 1))])               # bias column
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    kernel, bias = (v.numpy() for v in model.trainable_variables)
    np.testing.assert_allclose(kernel, solution[:5], atol=1e-6, rtol=0)
    np.testing.assert_allclose(bias, solution[5], atol=1e-6, rtol=0)
    # on an exact quadratic the model is exact: ρ = 1, and the loss reached is the minimum
    assert record["rho"] == pytest.approx(1.0, abs=1e-6)
    residual = design @ solution - y
    assert record["loss_after"] == pytest.approx(0.5 * np.mean(np.sum(residual ** 2, axis=1)), rel=1e-9)
    assert record["accepted"] and not record["nonfinite"]


# ------------------------------------------------------------------ a real fit
def test_hf_fits_the_sine_data(sine_run):
    """The noise has variance 0.1², so the best possible mean ½-squared error is ½·0.01 = 0.005
    (a constant predictor gets ≈ 0.22). 0.01 = twice the floor: within 15 epochs (30 updates)."""
    h = sine_run.history
    val = h["val_loss"][~np.isnan(h["val_loss"])]
    assert len(val) == 15
    assert val[-1] < 0.01
    assert val[-1] > 0.004                     # sanity: not below the noise floor
    assert val[-1] < val[0]
    assert len(h) == 30 and h["update"][-1] == 30
    np.testing.assert_allclose(h["epoch"][1::2], np.arange(1, 16))
    assert np.all(np.diff(h["time"]) > 0)


# ------------------------------------------------------------------ the λ rule
def test_damping_trace_over_a_scripted_rho_sequence():
    rhos = [0.1, 0.9, 0.5, math.nan, -math.inf, 0.8, 0.25, 0.75, 0.2]
    lam = hf_damping.trace(rhos, damping0=1.0, r=1.5)
    want = [1.0, 1.5, 1.0, 1.0, 1.5, 2.25, 1.5, 1.5, 1.5, 2.25]
    np.testing.assert_allclose(lam, want, rtol=1e-15)
    # the same sequence through the tensor path
    tensor_lam = [1.0]
    for rho in rhos:
        tensor_lam.append(float(hf_damping.lm_update(tf.constant(tensor_lam[-1], tf.float64),
                                                     tf.constant(rho, tf.float64), 1.5)))
    np.testing.assert_allclose(tensor_lam, want, rtol=1e-15)
    with pytest.raises(ValueError, match="r"):
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
    h = sine_run.history
    _check_lambda_follows_rule(h, float(sine_run.damping.numpy()), 1.5, 1e-6, 1e6)
    moves = np.diff(np.log(h["damping"]))
    assert (moves > 0).any() and (moves < 0).any()      # the run exercised both branches
    np.testing.assert_allclose(np.abs(moves[moves != 0]), math.log(1.5), rtol=1e-9)


def test_lambda_is_clamped_to_damping_min(small_sine):
    x, y = small_sine
    hf = HessianFree(models.sine_mlp(hidden=(8,), dtype=F64), "squared_error", damping=1.0, damping_min=0.5)
    hf.fit((x, y), epochs=6, batch_size=100, progress=False)
    h = hf.history
    _check_lambda_follows_rule(h, float(hf.damping.numpy()), 1.5, 0.5, 1e6)
    assert h["damping"].min() == 0.5                      # reached the floor and stayed there


# ------------------------------------------------------------------ non-finite values
def _nan_trainer(**kw):
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=1)
    return HessianFree(model, "squared_error", damping=2.0, r=1.5, **kw), model


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


def test_fit_warns_once_for_several_nonfinite_batches(small_sine):
    x, y = (np.array(a) for a in small_sine)
    x[::10, 0] = np.nan                                    # 20 bad rows: every batch of 50 gets some
    hf, model = _nan_trainer()
    before = weights_bytes(model)
    with pytest.warns(RuntimeWarning, match="non-finite") as caught:
        h = hf.fit((x, y), epochs=2, batch_size=50, progress=False)
    ours = [w for w in caught if issubclass(w.category, RuntimeWarning) and "non-finite" in str(w.message)]
    assert len(ours) == 1
    assert h["nonfinite"].sum() == len(h) == 8
    assert not h["accepted"].any()
    assert weights_bytes(model) == before
    np.testing.assert_allclose(h["damping"], 2.0 * 1.5 ** np.arange(8), rtol=1e-12)
    assert h.records[0]["nonfinite"] is True and h.records[0]["accepted"] is False


def test_fit_does_not_warn_on_finite_data(small_sine):
    hf, _ = _nan_trainer()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*non-finite.*")
        h = hf.fit(small_sine, epochs=1, batch_size=100, progress=False)
    assert not h["nonfinite"].any()


# ------------------------------------------------------------------ checkpoint / resume
@pytest.fixture()
def deterministic_ops():
    from tensorflow.python.framework import config as tf_config
    was_on = getattr(tf_config, "is_op_determinism_enabled", lambda: False)()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_on and hasattr(tf_config, "disable_op_determinism"):
        tf_config.disable_op_determinism()


def _make_trainer(kind):
    model = models.sine_mlp(dtype=F64, seed=5)
    if kind == "hf_martens":
        return HessianFree(model, "squared_error", damping=1.0, r=1.5, max_iters=40, seed=2)
    if kind == "hf_chapelle_erhan":
        return HessianFree(model, "squared_error", damping=1.0, r=1.5, max_iters=40, seed=2,
                           preconditioner="chapelle_erhan", rho_denominator="undamped")
    return FirstOrder(model, "squared_error", "adam", learning_rate=0.01, seed=2)


@pytest.mark.parametrize("kind", ["hf_martens", "hf_chapelle_erhan", "adam"])
def test_resume_mid_epoch_reproduces_an_uninterrupted_run(tmp_path, deterministic_ops, kind):
    """Run A: 2 epochs × 8 updates straight through. Run B: 5 updates (mid-epoch), then a new
    model and trainer resume from the checkpoint to the end. Records and weights must agree."""
    x, y = data.make_sine_data(n=1000, dtype=F64)
    fit = dict(epochs=2, batch_size=125, validation_data=(x, y), progress=False, checkpoint_every=1)
    a = _make_trainer(kind)
    a.fit((x, y), checkpoint_dir=tmp_path / "a", **fit)
    assert len(a.history) == 16

    b1 = _make_trainer(kind)
    b1.fit((x, y), checkpoint_dir=tmp_path / "b", max_updates=5, **fit)
    assert len(b1.history) == 5
    assert tf.train.latest_checkpoint(str(tmp_path / "b")).endswith("ckpt-5")
    del b1
    b2 = _make_trainer(kind)
    b2.fit((x, y), checkpoint_dir=tmp_path / "b", resume=True, **fit)

    assert int(b2.iterations.numpy()) == int(a.iterations.numpy()) == 16
    assert_records_equal(b2.history.records, a.history.records)
    for wa, wb in zip(a.model.get_weights(), b2.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    if kind.startswith("hf"):
        assert float(b2.damping.numpy()) == float(a.damping.numpy())
        for pa, pb in zip(a.previous, b2.previous):
            np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    # time is cumulative over the interruption
    assert np.all(np.diff(b2.history["time"]) > 0)


def test_data_order_is_a_pure_function_of_seed_and_epoch():
    a, b = data_order(100, 3, 1).numpy(), data_order(100, 3, 1).numpy()
    np.testing.assert_array_equal(a, b)
    assert sorted(a) == list(range(100))
    assert not np.array_equal(a, data_order(100, 3, 2).numpy())
    assert not np.array_equal(a, data_order(100, 4, 1).numpy())


def _checkpointed_trainer(small_sine, directory):
    hf, model = _nan_trainer()
    hf.fit(small_sine, epochs=2, batch_size=50, max_updates=3, checkpoint_dir=directory, checkpoint_every=1,
           progress=False)
    return hf, [w.copy() for w in model.get_weights()]


def _assert_restores_update_3(directory, good_weights):
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-3")
    fresh, model = _nan_trainer()
    path = fresh.restore(fresh._checkpoint_manager(directory))
    assert path.endswith("ckpt-3")
    assert int(fresh.iterations.numpy()) == 3
    assert len(fresh.history) == 3 and fresh.history.records[-1]["update"] == 3
    for a, b in zip(model.get_weights(), good_weights):
        np.testing.assert_array_equal(a, b)
    # and training goes on from there
    fresh.fit(data.make_sine_data(n=200, seed=3, dtype=F64), epochs=2, batch_size=50, checkpoint_dir=directory,
              checkpoint_every=1, max_updates=1, resume=True, progress=False)
    assert len(fresh.history) == 4


def test_crash_while_writing_checkpoint_keeps_previous_one(small_sine, tmp_path, monkeypatch):
    """The checkpoint files are written, then the process 'dies' before the index is updated."""
    hf, good = _checkpointed_trainer(small_sine, tmp_path)
    original = tf.train.Checkpoint._write

    def write_then_crash(self, prefix, options=None):
        original(self, prefix)                  # data files land on disk, but no index update
        raise OSError("simulated crash mid-checkpoint")

    monkeypatch.setattr(tf.train.Checkpoint, "_write", write_then_crash)
    with pytest.raises(OSError, match="simulated"):
        hf.fit(small_sine, epochs=2, batch_size=50, max_updates=1, checkpoint_dir=tmp_path, checkpoint_every=1,
               progress=False)
    monkeypatch.undo()
    _assert_restores_update_3(tmp_path, good)


def test_crash_while_writing_history_keeps_previous_checkpoint(small_sine, tmp_path, monkeypatch):
    """A checkpoint is only 'latest' once both the variables and its History are on disk."""
    hf, good = _checkpointed_trainer(small_sine, tmp_path)

    def crash(self, path):
        raise OSError("simulated crash writing the History")

    monkeypatch.setattr(History, "to_json", crash)
    with pytest.raises(OSError, match="simulated"):
        hf.fit(small_sine, epochs=2, batch_size=50, max_updates=1, checkpoint_dir=tmp_path, checkpoint_every=1,
               progress=False)
    monkeypatch.undo()
    _assert_restores_update_3(tmp_path, good)


# ------------------------------------------------------------------ no retracing
def test_no_retracing_across_epochs_and_resets(sine_run, small_sine):
    assert sine_run.tracing_count() == 1                  # 30 updates over 15 epochs
    hf, _ = _nan_trainer()
    hf.fit(small_sine, epochs=3, batch_size=50, progress=False)
    hf.reset(damping=3.0, r=1.2)                          # λ and r live in variables
    hf.fit(small_sine, epochs=4, batch_size=50, progress=False)
    assert len(hf.history) == 16 and hf.tracing_count() == 1
    assert float(hf.lm_factor.numpy()) == 1.2


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_first_order_runs_via_fit_without_retracing(small_sine, name):
    x, y = small_sine
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=1)
    trainer = FirstOrder(model, "squared_error", name, learning_rate=0.05 if name == "sgd" else 0.01)
    start = trainer.evaluate(x, y)["loss"]
    h = trainer.fit((x, y), epochs=5, batch_size=20, progress=False, validation_data=(x, y))
    assert trainer.tracing_count() == 1
    assert len(h) == 50 and {"loss", "time", "update", "epoch", "accepted", "val_loss"} <= set(h.keys())
    assert np.all(np.isfinite(h["loss"])) and np.all(np.diff(h["time"]) > 0)
    assert h["val_loss"][~np.isnan(h["val_loss"])][-1] < 0.5 * start
    assert h.records[0]["accepted"] is True


# ------------------------------------------------------------------ config validation
@pytest.fixture(scope="module")
def tiny_model():
    return models.sine_mlp(hidden=(3,), dtype=F64)


@pytest.mark.parametrize("kwargs, field, error", [
    (dict(r=1.0), "r", ValueError),
    (dict(r=0.5), "r", ValueError),
    (dict(r=math.nan), "r", ValueError),
    (dict(tol=0.0), "tol", ValueError),
    (dict(tol=-1e-3), "tol", ValueError),
    (dict(damping=0.0), "damping", ValueError),
    (dict(damping=-1.0), "damping", ValueError),
    (dict(damping=math.nan), "damping", ValueError),
    (dict(damping=1e7), "damping", ValueError),               # above damping_max
    (dict(preconditioner="jacobi"), "preconditioner", ValueError),
    (dict(min_iters=20, max_iters=10), "min_iters", ValueError),
    (dict(max_iters=0), "max_iters", ValueError),
    (dict(window="sliding"), "window", ValueError),
    (dict(rho_denominator="both"), "rho_denominator", ValueError),
    (dict(warm_start=1.5), "warm_start", ValueError),
    (dict(armijo_shrink=1.0), "armijo_shrink", ValueError),
    (dict(curvature_batch_size=0), "curvature_batch_size", ValueError),
    (dict(dampening=1.0), "dampening", TypeError),             # unknown keyword
])
def test_bad_config_is_rejected_at_construction(tiny_model, kwargs, field, error):
    with pytest.raises(error, match=field):
        HessianFree(tiny_model, "squared_error", **kwargs)
    if error is ValueError:
        with pytest.raises(error, match=field):
            HFConfig(**kwargs)


def test_config_object_and_overrides(tiny_model):
    with pytest.raises(TypeError, match="config"):
        HessianFree(tiny_model, "squared_error", config={"damping": 1.0})
    hf = HessianFree(tiny_model, "squared_error", HFConfig(damping=2.0, r=1.1), tol=1e-3)
    assert (hf.config.damping, hf.config.r, hf.config.tol) == (2.0, 1.1, 1e-3)
    assert float(hf.damping.numpy()) == 2.0 and float(hf.lm_factor.numpy()) == pytest.approx(1.1)
    with pytest.raises(ValueError, match="r"):
        hf.reset(r=1.0)
    with pytest.raises(ValueError, match="damping"):
        hf.reset(damping=0.0)


# ------------------------------------------------------------------ every option takes a good step
@pytest.mark.parametrize("options", [
    dict(preconditioner="martens"),
    dict(preconditioner="report"),
    dict(preconditioner="chapelle_erhan"),
    dict(preconditioner="none"),
    dict(backtracking=False),
    dict(line_search=False),
    dict(backtracking=False, line_search=False, warm_start=0.0),
    dict(window="report", rho_denominator="undamped"),
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_each_option_reduces_the_loss(small_sine, options):
    x, y = small_sine
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=1)
    hf = HessianFree(model, "squared_error", damping=1.0, max_iters=30, **options)
    start = hf.evaluate(x, y)["loss"]
    records = [hf.step(x, y) for _ in range(3)]
    end = hf.evaluate(x, y)["loss"]
    assert end < start
    assert all(r["accepted"] for r in records)
    assert all(r["loss_after"] < r["loss"] for r in records)
    assert records[-1]["loss_after"] == pytest.approx(end, rel=1e-10)   # the record tells the truth


def test_curvature_batch_size_uses_the_first_examples(small_sine):
    x, y = small_sine
    model = models.sine_mlp(hidden=(8,), dtype=F64, seed=1)
    hf = HessianFree(model, "squared_error", damping=1.0, max_iters=30, curvature_batch_size=50)
    full, head = hf.evaluate(x, y)["loss"], hf.evaluate(x[:50], y[:50])["loss"]
    record = hf.step(x, y)
    assert record["loss"] == pytest.approx(full, rel=1e-12)          # gradient on all 200
    assert record["loss_curvature_batch"] == pytest.approx(head, rel=1e-12)   # curvature on 50
    assert record["loss"] != record["loss_curvature_batch"]
    assert record["accepted"] and hf.evaluate(x, y)["loss"] < full
    # ρ, backtracking and the line search are judged on the curvature batch
    assert record["loss_after"] == pytest.approx(hf.evaluate(x[:50], y[:50])["loss"], rel=1e-10)


# ------------------------------------------------------------------ backtracking and line search
@pytest.fixture(scope="module")
def teacher():
    return data.make_teacher_data(n=300)


def _teacher_step(teacher, **options):
    """One step with a tiny λ and long CG on a tanh net: the quadratic model overshoots."""
    x, y = teacher
    model = models.mlp((20, 20, 10), activation="tanh", dtype=F64, seed=0)
    hf = HessianFree(model, "softmax_cross_entropy", damping=1e-3, damping_min=1e-8, preconditioner="none",
                     max_iters=150, tol=1e-10, warm_start=0.0, **options)
    theta0 = [w.copy() for w in model.get_weights()]
    return hf, model, theta0, hf.step(x, y)


def test_backtracking_never_does_worse_than_cg_last_iterate(teacher):
    x, y = teacher
    _, _, _, last = _teacher_step(teacher, backtracking=False, line_search=False)
    hf, _, _, back = _teacher_step(teacher, backtracking=True, line_search=False)
    assert last["cg_iters"] == back["cg_iters"] > 20               # the same CG run
    assert back["loss_after"] <= last["loss_after"]
    assert back["loss_after"] < last["loss_after"] - 1.0            # here it matters a lot
    assert back["step_norm"] < last["step_norm"]                     # an earlier, shorter iterate
    assert back["loss_after"] == pytest.approx(hf.evaluate(x, y)["loss"], rel=1e-10)


def test_line_search_picks_the_largest_armijo_rate(teacher):
    x, y = teacher
    hf, model, theta0, rec = _teacher_step(teacher, backtracking=False, line_search=True)
    t = rec["rate"]
    k = round(math.log(t) / math.log(0.8))
    assert 0 < k <= 60 and t == pytest.approx(0.8 ** k, rel=1e-12)
    theta1 = model.get_weights()
    p = [(b - a) / t for a, b in zip(theta0, theta1)]
    loss_at = lambda s: (model.set_weights([a + s * d for a, d in zip(theta0, p)]), hf.evaluate(x, y)["loss"])[1]
    model.set_weights(theta0)
    f0 = hf.evaluate(x, y)["loss"]
    slope = sum(float(np.sum(g.numpy() * d)) for g, d in zip(hflib.gradient(model, "softmax_cross_entropy", x, y), p))
    assert slope < 0
    assert loss_at(t) <= f0 + 1e-2 * t * slope                      # Armijo holds at t …
    assert loss_at(t / 0.8) > f0 + 1e-2 * (t / 0.8) * slope         # … but not at the previous try
    assert rec["loss_after"] == pytest.approx(loss_at(t), rel=1e-10)


def test_line_search_rates_on_a_real_run_are_powers_of_0_8(sine_run):
    rates = sine_run.history["rate"]
    for t in rates:
        assert t == 0 or any(t == pytest.approx(0.8 ** k, rel=1e-12) for k in range(61))


# ------------------------------------------------------------------ History
def _hand_history():
    return History([
        {"update": 1, "loss": 1.5, "accepted": True, "rho": -math.inf, "epoch": 0.5},
        {"update": 2, "loss": 0.75, "accepted": False, "rho": math.nan, "epoch": 1.0, "val_loss": 0.8},
        {"update": 3, "loss": 0.5, "accepted": True, "rho": 0.9, "epoch": 1.5},
    ])


def test_history_columns_and_last():
    h = _hand_history()
    assert len(h) == 3 and h.keys() == ["update", "loss", "accepted", "rho", "epoch", "val_loss"]
    np.testing.assert_array_equal(h["loss"], [1.5, 0.75, 0.5])
    np.testing.assert_array_equal(h["accepted"], [1.0, 0.0, 1.0])
    assert np.isnan(h["val_loss"][[0, 2]]).all() and h["val_loss"][1] == 0.8
    assert np.isnan(h["missing"]).all()
    assert h.last("val_loss") == 0.8 and h.last("loss") == 0.5 and math.isnan(h.last("missing"))
    assert "3 updates" in repr(h)


def test_history_json_round_trip(tmp_path):
    h = _hand_history()
    h.to_json(tmp_path / "h.json")
    back = History.from_json(tmp_path / "h.json")
    assert_records_equal(back.records, h.records, skip=())
    assert back.records[1]["accepted"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]       # no temporary left behind


def test_history_csv(tmp_path):
    h = _hand_history()
    h.to_csv(tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == h.keys()
    assert [float(r["loss"]) for r in rows] == [1.5, 0.75, 0.5]
    assert rows[0]["val_loss"] == "" and float(rows[1]["val_loss"]) == 0.8
    assert math.isnan(float(rows[1]["rho"])) and float(rows[0]["rho"]) == -math.inf


def test_history_of_a_real_run_round_trips(sine_run, tmp_path):
    sine_run.history.to_json(tmp_path / "run.json")
    back = History.from_json(tmp_path / "run.json")
    assert_records_equal(back.records, sine_run.history.records, skip=())
    for key in ("loss", "damping", "rho", "val_loss"):
        np.testing.assert_array_equal(back[key], sine_run.history[key])


def test_histories_of_dropped_checkpoints_are_removed(tmp_path):
    x, y = hflib.data.make_sine_data(n=400, seed=0)
    hf = hflib.HessianFree(hflib.models.sine_mlp(seed=0), "squared_error", damping=1.0)
    hf.fit((x, y), epochs=3, batch_size=100, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    histories = sorted(p.name for p in tmp_path.glob("*.history.json"))
    assert histories == ["ckpt-10.history.json", "ckpt-11.history.json", "ckpt-12.history.json"]

"""The experiments layer: PRESETS (each builds and takes one update, its `hf` options are HFConfig
fields that differ from the defaults), the runners `run`/`sine`/`sine_summary`/`time_to`, the
runners' pass-through of HF options, and the quick-mode switch."""
import dataclasses
import math

import numpy as np
import pytest

from hflib import experiments, models
from hflib.baselines import FirstOrder
from hflib.history import History
from hflib.optimizer import HFConfig, HessianFree, config_fields

RATES = (0.03, 0.3)


# ------------------------------------------------------------------ presets
@pytest.mark.parametrize("name", sorted(experiments.PRESETS))
def test_preset_hf_options_are_hfconfig_fields_that_differ_from_the_defaults(name):
    p = experiments.PRESETS[name]
    defaults = HFConfig()
    assert set(p.hf) <= set(config_fields()), sorted(set(p.hf) - set(config_fields()))
    for field, value in p.hf.items():
        assert value != getattr(defaults, field), f"{name}: {field} = {value} is HFConfig's default"
    HFConfig(**p.hf)                                         # and valid together
    assert p.why and p.description and p.quick_epochs <= p.epochs
    for settings in (p.sgd, p.adam):
        assert settings["batch_size"] >= 1 and settings["learning_rate"] > 0


@pytest.mark.parametrize("name", [name if name == "sine" else pytest.param(name, marks=pytest.mark.mnist)
                                  for name in sorted(experiments.PRESETS)])
def test_each_preset_builds_and_takes_one_update_in_quick_mode(name):
    p = experiments.PRESETS[name]
    (x, y), (xv, yv) = experiments.task_data(name, quick=True)
    assert len(x) == 2000 and len(xv) >= 1000
    if name in ("mnist-mlp", "mnist-cnn"):         # centred pixels (experiments.mnist_data), the autoencoder's raw
        assert x.min() < 0 < x.max() <= 1 and abs(x.mean()) < 0.01
        (raw, _), _ = experiments.task_data(name, quick=True, center=False)
        assert raw.min() == 0 and raw.max() == 1
    if name == "autoencoder":                      # quick mode runs the small one (see experiments.autoencoder)
        assert x.min() == 0 and x.max() == 1 and y is x
        assert models.count_params(p.build()) > 2_000_000
        p = dataclasses.replace(p, network="autoencoder_small")
    hf, batch = experiments.updater(p, "hf", max_iters=3)
    assert isinstance(hf, HessianFree) and batch == p.batch_size
    kept = {k: v for k, v in p.hf.items() if k != "max_iters"}       # the preset's options, but for the override
    assert {k: getattr(hf.config, k) for k in kept} == kept and hf.config.max_iters == 3
    record = hf.step(x[:64], y[:64])
    assert math.isfinite(record["loss"]) and 1 <= record["cg_iters"] <= 3
    assert int(hf.iterations.numpy()) == 1
    for optimizer in ("sgd", "adam"):
        first_order, batch = experiments.updater(p, optimizer)
        assert isinstance(first_order, FirstOrder) and batch == getattr(p, optimizer)["batch_size"]
        rate = float(first_order.optimizer.learning_rate.numpy())
        assert rate == pytest.approx(getattr(p, optimizer)["learning_rate"], rel=1e-6)


def test_preset_lookup():
    assert experiments.preset("sine") is experiments.PRESETS["sine"]
    p = experiments.PRESETS["sine"]
    assert experiments.preset(p) is p
    with pytest.raises(ValueError, match="preset"):
        experiments.preset("cifar")
    with pytest.raises(ValueError, match="optimizer"):
        experiments.updater("sine", "lbfgs")
    with pytest.raises(TypeError, match="r"):
        experiments.updater("sine", "sgd", r=2.0)
    with pytest.raises(TypeError, match="unknown"):
        experiments.updater("sine", "hf", dampening=1.0)


def test_updater_takes_an_explicit_learning_rate():
    sgd, _ = experiments.updater("sine", "sgd", learning_rate=0.05)
    assert float(sgd.optimizer.learning_rate.numpy()) == pytest.approx(0.05)


# ------------------------------------------------------------------ sine
@pytest.fixture(scope="module")
def sine_runs():
    return experiments.sine(quick=True, epochs=2, learning_rates=RATES, progress=False)


def test_sine_returns_runs_with_histories(sine_runs):
    assert set(sine_runs) == {"hf", "sgd", "sgd_grid"}
    hf, sgd = sine_runs["hf"], sine_runs["sgd"]
    assert isinstance(hf, experiments.Run) and isinstance(sgd, experiments.Run)
    assert isinstance(hf.updater, HessianFree) and isinstance(sgd.updater, FirstOrder)
    assert hf.model is hf.updater.model
    # 2000 examples: HF batch 1000 → 2 updates per epoch, SGD batch 100 → 20
    assert len(hf.history) == 4 and len(sgd.history) == 40
    for run in (hf, sgd):
        val = run.history["val_loss"]
        assert np.count_nonzero(~np.isnan(val)) == 2                 # once per epoch, full training set
        assert np.isfinite(val[-1]) and run.history["epoch"][-1] == 2
        assert np.all(np.diff(run.history["time"]) > 0)
    assert hf.settings["batch_size"] == 1000 and hf.settings["r"] == 1.01
    assert hf.settings["window"] == "report" and hf.settings["min_iters"] == 3
    assert hf.updater.config.window == "report" and hf.settings["preset"] == "sine"


def test_sine_keeps_the_best_sgd_rate(sine_runs):
    grid, sgd = sine_runs["sgd_grid"], sine_runs["sgd"]
    assert set(grid) == set(RATES)
    best = min(grid, key=grid.get)
    assert sgd.settings["batch_size"] == 100 and sgd.settings["learning_rate"] == pytest.approx(best)
    assert sgd.history["val_loss"][-1] == grid[best]
    assert str(best) in sgd.label


def test_sine_summary(sine_runs):
    s = experiments.sine_summary(sine_runs)
    assert set(s) == {"target_loss", "hf", "sgd"}
    assert set(s["hf"]) == set(s["sgd"]) == {"epochs", "seconds", "updates", "final_loss", "train_seconds"}
    hf, sgd = sine_runs["hf"].history, sine_runs["sgd"].history
    # the target is one both methods reach: 5% above the worse of the two best losses
    assert s["target_loss"] == pytest.approx(1.05 * max(np.nanmin(hf["val_loss"]), np.nanmin(sgd["val_loss"])))
    for name, h in (("hf", hf), ("sgd", sgd)):
        out = s[name]
        assert all(math.isfinite(out[k]) for k in out)
        assert out["final_loss"] == h["val_loss"][-1]
        assert out["train_seconds"] == h["time"][-1]
        assert out["epochs"] in h["epoch"] and out["seconds"] in h["time"] and out["updates"] in h["update"]
        i = int(np.flatnonzero(h["update"] == out["updates"])[0])
        assert h["val_loss"][i] <= s["target_loss"]
        assert np.all(~(h["val_loss"][:i] <= s["target_loss"]))      # and it is the first such update
        assert (h["epoch"][i], h["time"][i]) == (out["epochs"], out["seconds"])


# ------------------------------------------------------------------ time_to
def _hand_history():
    return History([
        {"update": 1, "epoch": 0.5, "time": 0.1, "loss": 3.0},
        {"update": 2, "epoch": 1.0, "time": 0.3, "loss": 2.0, "val_loss": 2.5},
        {"update": 3, "epoch": 1.5, "time": 0.6, "loss": 2.2},
        {"update": 4, "epoch": 2.0, "time": 1.0, "loss": 0.9, "val_loss": 1.0, "val_error": 0.2},
    ])


def test_time_to_on_a_hand_made_history():
    h = _hand_history()
    assert experiments.time_to(h, "loss", 2.0) == 0.3                   # ≤ target, first time
    assert experiments.time_to(h, "loss", 2.1, axis="epoch") == 1.0
    assert experiments.time_to(h, "loss", 1.0, axis="update") == 4.0
    assert experiments.time_to(h, "loss", 3.0) == 0.1
    assert math.isnan(experiments.time_to(h, "loss", 0.5))             # never reached
    # missing values (NaN) never count as reaching the target
    assert experiments.time_to(h, "val_loss", 2.6) == 0.3
    assert experiments.time_to(h, "val_loss", 1.0, axis="epoch") == 2.0
    # above a target (e.g. accuracy)
    assert experiments.time_to(h, "loss", 2.1, below=False, axis="update") == 1.0
    assert experiments.time_to(h, "val_error", 0.1, below=False) == 1.0
    assert math.isnan(experiments.time_to(h, "val_error", 0.5, below=False))
    assert math.isnan(experiments.time_to(h, "missing", 1.0))
    assert math.isnan(experiments.time_to(History(), "loss", 1.0))


# ------------------------------------------------------------------ runners pass HF options through
@pytest.fixture()
def recorded_fits(monkeypatch):
    """Replace training by a stub that records each fit's updater and arguments."""
    calls = []

    def fake_fit(updater, data, **kwargs):
        calls.append((updater, kwargs))
        return History([{"update": 1, "epoch": 0.1, "time": 0.01, "loss": 1.0, "val_loss": 1.0}])

    monkeypatch.setattr(experiments, "fit", fake_fit)
    return calls


@pytest.fixture(scope="module")
def fake_mnist():
    rng = np.random.default_rng(0)
    x = rng.random((300, 784), dtype=np.float32)
    y = rng.integers(0, 10, 300)
    return (x, y), (x[:100], y[:100])


def test_damping_trace_passes_hf_options_through(recorded_fits, fake_mnist):
    runs = experiments.damping_trace(batch_size=75, rs=(1.5, 1.01), updates=8, task=fake_mnist, progress=False,
                                     damping_min=1e-6, initial_damping=0.5)
    assert list(runs) == ["r=1.5", "r=1.01"]
    for (updater, kwargs), r, run in zip(recorded_fits, (1.5, 1.01), runs.values()):
        assert updater.config.r == r and float(updater.r.numpy()) == pytest.approx(r)
        assert updater.config.damping_min == 1e-6 and updater.config.initial_damping == 0.5
        assert run.settings["damping_min"] == 1e-6 and run.settings["r"] == r
        assert kwargs["batch_size"] == 75 and kwargs["max_updates"] == 8 and kwargs["epochs"] == 2
        assert run.label == f"r = {r}"


def test_pcg_vs_cg_and_mnist_compare_pass_their_settings(recorded_fits, fake_mnist):
    runs = experiments.pcg_vs_cg(batch_size=100, seconds=1.0, task=fake_mnist, progress=False)
    assert {k: v.updater.config.preconditioner for k, v in runs.items()} == {"pcg": "martens", "cg": "none"}
    runs = experiments.mnist_compare(hf_batch_sizes=(75, 250), seconds=2.0, task=fake_mnist, progress=False,
                                     hf_options={"damping_min": 1e-3})
    assert set(runs) == {"hf75", "hf250", "sgd", "adam"}
    assert runs["hf75"].updater.config.r == 1.01 and runs["hf75"].updater.config.damping_min == 1e-3
    assert runs["hf250"].settings["batch_size"] == 250
    assert all(kwargs["max_seconds"] == 2.0 for _, kwargs in recorded_fits[2:])


# ------------------------------------------------------------------ quick mode
def test_quick_mode(monkeypatch):
    monkeypatch.setenv("HFLIB_QUICK", "1")
    assert experiments.quick_mode() is True and experiments.quick_mode(False) is False
    monkeypatch.setenv("HFLIB_QUICK", "Yes")
    assert experiments.quick_mode() is True
    monkeypatch.setenv("HFLIB_QUICK", "no")
    assert experiments.quick_mode() is False and experiments.quick_mode(True) is True
    monkeypatch.delenv("HFLIB_QUICK")
    assert experiments.quick_mode() is False
    with pytest.raises(TypeError, match="quick"):
        experiments.quick_mode("yes")


def test_preset_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        experiments.PRESETS["sine"].batch_size = 10

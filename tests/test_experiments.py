"""The experiment runners: `sine` in quick mode, `sine_summary`, `time_to`, quick-mode switch."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hflib import experiments  # noqa: E402
from hflib.optimizer import HessianFree  # noqa: E402
from hflib.training import FirstOrder, History  # noqa: E402

RATES = (0.03, 0.3)


@pytest.fixture(scope="module")
def sine_runs():
    return experiments.sine(quick=True, epochs=2, learning_rates=RATES)


def test_sine_returns_runs_with_histories(sine_runs):
    assert set(sine_runs) == {"hf", "sgd", "sgd_grid"}
    hf, sgd = sine_runs["hf"], sine_runs["sgd"]
    assert isinstance(hf, experiments.Run) and isinstance(sgd, experiments.Run)
    assert isinstance(hf.trainer, HessianFree) and isinstance(sgd.trainer, FirstOrder)
    assert hf.history is hf.trainer.history and sgd.history is sgd.trainer.history
    # 2000 examples: HF batch 1000 → 2 updates per epoch, SGD batch 100 → 20
    assert len(hf.history) == 4 and len(sgd.history) == 40
    for run in (hf, sgd):
        val = run.history["val_loss"]
        assert np.count_nonzero(~np.isnan(val)) == 2                 # once per epoch, full training set
        assert np.isfinite(val[-1]) and run.history["epoch"][-1] == 2
        assert np.all(np.diff(run.history["time"]) > 0)
    assert hf.settings["batch_size"] == 1000 and hf.settings["r"] == 1.01
    assert hf.settings["window"] == "report" and hf.settings["min_iters"] == 3
    assert hf.trainer.config.window == "report"


def test_sine_keeps_the_best_sgd_rate(sine_runs):
    grid, sgd = sine_runs["sgd_grid"], sine_runs["sgd"]
    assert set(grid) == set(RATES)
    best = min(grid, key=grid.get)
    assert sgd.settings["batch_size"] == 100 and sgd.settings["learning_rate"] == best
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


def test_is_quick(monkeypatch):
    monkeypatch.setenv("HFLIB_QUICK", "1")
    assert experiments.is_quick() is True and experiments.is_quick(False) is False
    monkeypatch.setenv("HFLIB_QUICK", "no")
    assert experiments.is_quick() is False and experiments.is_quick(True) is True
    monkeypatch.delenv("HFLIB_QUICK")
    assert experiments.is_quick() is False

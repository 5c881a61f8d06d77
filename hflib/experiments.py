"""Runners for the report's experiments, shared by the notebooks, the CLI and the benchmarks.

Every runner returns `Run`s (a History plus what produced it) and honours quick
mode (`HFLIB_QUICK=1`, or `quick=True`): fewer epochs and less data, same code.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import data, models
from .optimizer import HessianFree
from .training import FirstOrder, History


@dataclasses.dataclass
class Run:
    """One training run: its label, History, trained model, trainer and settings."""

    label: str
    history: History
    model: object
    trainer: object
    settings: dict


def is_quick(quick=None):
    """`quick` if given, else the `HFLIB_QUICK` environment variable."""
    return data.quick_mode() if quick is None else bool(quick)


def time_to(history, key, target, below=True, axis="time"):
    """The first `axis` value (time, epoch or update) at which `key` reaches `target`; NaN if never."""
    values, where = history[key], history[axis]
    ok = values <= target if below else values >= target
    ok &= ~np.isnan(values)
    return float(where[np.argmax(ok)]) if ok.any() else math.nan


# ------------------------------------------------------------------ §V.A: noisy sine
def sine(epochs=None, hf_batch=1000, sgd_batch=100, learning_rates=(0.01, 0.03, 0.1, 0.3), damping=1.0, r=1.01,
         seed=0, quick=None, progress=False, **hf_options):
    """HF (batch 1000) vs SGD (batch 100, best rate of a small grid) on the 1-15-15-1 ReLU net.

    Returns {"hf": Run, "sgd": Run, "sgd_grid": {rate: final training loss}}. Each
    History holds the full-training-set loss as `val_loss` after every epoch.
    The report's Fig. 2 setting: r = 1.01 and 3 minimum CG steps with its window.
    """
    quick = is_quick(quick)
    epochs = epochs or (20 if quick else 100)
    x, y = data.make_sine_data(seed=seed)
    hf_options = {"min_iters": 3, "window": "report", **hf_options}
    model = models.sine_mlp(seed=seed)
    hf = HessianFree(model, "squared_error", damping=damping, r=r, seed=seed, **hf_options)
    hf.fit((x, y), epochs=epochs, batch_size=hf_batch, validation_data=(x, y), progress=progress)
    runs = {"hf": Run("HF", hf.history, model, hf, dict(batch_size=hf_batch, damping=damping, r=r, **hf_options))}
    grid, best = {}, None
    for rate in learning_rates:
        m = models.sine_mlp(seed=seed)
        sgd = FirstOrder(m, "squared_error", "sgd", learning_rate=rate, seed=seed)
        sgd.fit((x, y), epochs=epochs, batch_size=sgd_batch, validation_data=(x, y), progress=progress)
        grid[rate] = float(sgd.history["val_loss"][-1])
        if best is None or grid[rate] < grid[best[0]] or math.isnan(grid[best[0]]):
            best = (rate, Run(f"SGD (η={rate})", sgd.history, m, sgd, dict(batch_size=sgd_batch, learning_rate=rate)))
    runs["sgd"] = best[1]
    runs["sgd_grid"] = grid
    return runs


def sine_summary(runs):
    """Epochs and seconds each method needs to reach a training loss both reach, and final losses."""
    hf, sgd = runs["hf"].history, runs["sgd"].history
    target = max(np.nanmin(hf["val_loss"]), np.nanmin(sgd["val_loss"])) * 1.05
    out = {"target_loss": float(target)}
    for name, h in (("hf", hf), ("sgd", sgd)):
        out[name] = {"epochs": time_to(h, "val_loss", target, axis="epoch"),
                     "seconds": time_to(h, "val_loss", target, axis="time"),
                     "updates": time_to(h, "val_loss", target, axis="update"),
                     "final_loss": float(h["val_loss"][~np.isnan(h["val_loss"])][-1]),
                     "train_seconds": float(h["time"][-1])}
    return out

"""Plots of Histories and fits, sized to be readable on a projector."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

LECTURE_STYLE = {"font.size": 14, "axes.titlesize": 15, "axes.labelsize": 14, "legend.fontsize": 12,
                 "xtick.labelsize": 12, "ytick.labelsize": 12, "lines.linewidth": 2.2, "figure.dpi": 100,
                 "axes.grid": True, "grid.alpha": 0.3}
AXIS_LABELS = {"time": "training time [s]", "epoch": "epoch", "update": "update",
               "loss": "batch loss", "val_loss": "loss (full set)", "val_error": "test error",
               "damping": "damping λ", "rho": "reduction ratio ρ", "cg_iters": "CG iterations"}


def use_lecture_style():
    """Large fonts and thick lines for slides and projectors."""
    plt.rcParams.update(LECTURE_STYLE)


def plot_histories(histories, x="epoch", y="val_loss", ax=None, logy=True, title=None):
    """One curve per History: `histories` maps a label to a History (or a Run)."""
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    for label, h in histories.items():
        h = getattr(h, "history", h)
        xs, ys = h[x], h[y]
        keep = ~np.isnan(ys)
        ax.plot(xs[keep], ys[keep], label=label, marker="o" if keep.sum() < 30 else None, markersize=4)
    ax.set_xlabel(AXIS_LABELS.get(x, x))
    ax.set_ylabel(AXIS_LABELS.get(y, y))
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if any(histories):
        ax.legend()
    return ax


def plot_damping(histories, ax=None, title="damping λ per update"):
    """The λ trace of each HF History (the report's Fig. 1)."""
    return plot_histories(histories, x="update", y="damping", ax=ax, logy=True, title=title)


def plot_sine_fit(x, y, models, ax=None, title="fit to noisy sine data"):
    """Data points and the curves of `models` (a dict label → Keras model) on a fine grid."""
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    ax.scatter(np.ravel(x), np.ravel(y), s=4, alpha=0.3, color="gray", label="data")
    grid = np.linspace(np.min(x), np.max(x), 400, dtype=np.asarray(x).dtype)[:, None]
    ax.plot(grid, np.sin(grid), "k--", lw=1.5, label="sin x")
    for label, model in models.items():
        ax.plot(grid, np.asarray(model(grid)), label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend()
    return ax


def plot_run_summary(history, title=None):
    """Loss against time, test error (when recorded) and, for HF, λ and CG iterations."""
    panels = [("time", "loss")]
    if "val_error" in history.keys():
        panels.append(("time", "val_error"))
    elif "val_loss" in history.keys():
        panels.append(("epoch", "val_loss"))
    if "damping" in history.keys():
        panels += [("update", "damping"), ("update", "cg_iters")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (x, y) in zip(axes[0], panels):
        plot_histories({"": history}, x=x, y=y, ax=ax, logy=y not in ("cg_iters",))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_sine_comparison(runs):
    """The report's Fig. 2 for `experiments.sine` runs: fits, loss vs epochs, loss vs time."""
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    from .data import make_sine_data

    x, y = make_sine_data(seed=runs["hf"].settings.get("seed", 0))
    plot_sine_fit(x, y, {runs[k].label: runs[k].model for k in ("hf", "sgd")}, ax=axes[0])
    pair = {runs[k].label: runs[k].history for k in ("hf", "sgd")}
    plot_histories(pair, x="epoch", y="val_loss", ax=axes[1], title="training loss vs epochs")
    plot_histories(pair, x="time", y="val_loss", ax=axes[2], title="training loss vs time")
    fig.tight_layout()
    return fig


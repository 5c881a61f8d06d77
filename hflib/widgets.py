"""Sliders for the lecture: thin ipywidgets views over pure, tested functions.

* `damping_study` / `damping_view`: the LM factor r and λ₀ (report §III.D, Fig. 1).
* `cg_tolerance_study` / `cg_tolerance_view`: the CG tolerance ε (Alg. 2).

The CG iterates do not depend on ε — only where the rule stops does — so the
ε slider runs CG once and re-applies the stopping rule to the recorded φ
history: it responds instantly and shows exactly what CG would have done.
The r slider reruns a short HF fit on the sine data; r and λ live in
variables, so moving the slider does not recompile anything.
"""
from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import numpy as np

from . import cg as _cg
from . import checks
from . import data, models
from .curvature import DampedGGN
from .optimizer import HessianFree
from .training import fit


# ------------------------------------------------------------------ r and λ₀
STUDY_DAMPING_MIN = 1e-6     # the study's floor of λ: low enough not to hide the LM rule
@functools.lru_cache(maxsize=4)
def _sine_trainer(batch_size, seed):
    x, y = data.make_sine_data(seed=seed)
    model = models.sine_mlp(seed=seed)
    # no floor of λ: the slider shows the LM rule itself
    hf = HessianFree(model, "squared_error", seed=seed, min_iters=3, max_iters=30, window="report",
                     damping_min=STUDY_DAMPING_MIN)
    return hf, model.get_weights(), (x, y)


def damping_study(r, initial_damping=1.0, updates=30, batch_size=100, seed=0):
    """Train the sine net from the same start for `updates` HF updates with factor r and λ₀.

    Returns the History (λ trace in `damping`, batch loss in `loss`). Deterministic.
    """
    checks.factor(r, "r")
    checks.positive(initial_damping, "initial_damping")
    hf, initial, (x, y) = _sine_trainer(batch_size, seed)
    hf.model.set_weights(initial)
    hf.reset(damping=initial_damping, r=r)
    hf.iterations.assign(0)
    epochs = -(-updates * batch_size // len(x))
    return fit(hf, (x, y), epochs=epochs, batch_size=batch_size, max_updates=updates, progress=False)


# Fixed axes, chosen from the sliders' whole range, so that moving a slider moves the curve rather than the
# ticks: λ₀ ∈ [1e-3, 1e2] (the λ₀ slider), λ ≥ the study's floor; the sine loss starts near 0.2, its noise floor
# is 0.005.
DAMPING_AXIS = (STUDY_DAMPING_MIN, 1e3)
LOSS_AXIS = (1e-3, 1.0)


def plot_damping_study(history, r, axes=None):
    """λ trace and loss of one `damping_study` run, side by side, on fixed axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    updates = (0, max(len(history), 1) + 1)
    axes[0].semilogy(history["update"], history["damping"], color="C1", marker="o", ms=3)
    axes[0].set(xlabel="update", ylabel="damping λ", title=f"λ trace, r = {r:.3f}", ylim=DAMPING_AXIS, xlim=updates)
    axes[1].semilogy(history["update"], history["loss"], color="C0", marker="o", ms=3)
    axes[1].set(xlabel="update", ylabel="batch loss", title="training loss", ylim=LOSS_AXIS, xlim=updates)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    plt.tight_layout()
    return axes


def damping_view(updates=30, batch_size=100):
    """Sliders for r and λ₀ that rerun `damping_study` and redraw its plots."""
    import ipywidgets as w

    def show(r, initial_damping):
        history = damping_study(r, initial_damping, updates=updates, batch_size=batch_size)
        plot_damping_study(history, r)
        plt.show()
        print(f"r = {r:.3f}, λ₀ = {initial_damping:.3g}: final λ = {history['damping'][-1]:.3g}, "
              f"final batch loss = {history['loss'][-1]:.4f}")

    return w.interactive(
        show,
        r=w.FloatSlider(value=1.5, min=1.005, max=3.0, step=0.005, readout_format=".3f", description="r",
                        continuous_update=False),
        initial_damping=w.FloatLogSlider(value=1.0, base=10, min=-3, max=2, step=0.25, description="λ₀",
                                  continuous_update=False))


# ------------------------------------------------------------------ ε
def cg_tolerance_study(phis, tol, window="martens", min_iters=None):
    """Where the relative-progress rule with tolerance ε stops on a recorded φ history.

    Returns a dict: `iterations` (the stop), `reduction` (φ there) and `fraction`
    (φ there / the last, smallest φ of the history: how much of the reachable
    decrease of the quadratic was obtained).
    """
    if not tol > 0:
        raise ValueError(f"tol: expected ε > 0, got {tol}")
    phis = [float(p) for p in np.asarray(phis)]
    stop = _cg.first_stop(phis, tol, window, min_iters)
    final = min(phis)
    return {"iterations": stop, "reduction": phis[stop], "fraction": phis[stop] / final if final < 0 else 1.0}


@functools.lru_cache(maxsize=2)
def fixed_ggn_system(damping=1e-3, max_iters=150, seed=0):
    """φ history of CG run until it is solved (or `max_iters`) on one fixed damped GGN system:
    a 20-50-10 tanh net at its initialisation on 1000 examples of `data.make_teacher_data`,
    b = −∇f, float64. Cached, so the ε slider only re-applies the stopping rule."""
    from .curvature import gradient
    from .vectors import flatten

    x, y = data.make_teacher_data(seed=seed)
    model = models.mlp((20, 50, 10), activation="tanh", seed=seed, dtype="float64")
    loss = "softmax_cross_entropy"
    op = DampedGGN(model, loss, x, y, damping)
    b = -flatten(gradient(model, loss, x, y))
    res = _cg.pcg(op.matvec, b, max_iters=max_iters, tol=1e-15)
    return np.asarray(res.phi)


def plot_cg_tolerance(phis, tol, window="martens", ax=None):
    """φ_i against i with the stop chosen by ε marked."""
    study = cg_tolerance_study(phis, tol, window)
    ax = ax or plt.subplots(figsize=(8, 4.2))[1]
    i = np.arange(len(phis))
    ax.plot(i, -np.asarray(phis), color="C0", label="−φ_i (decrease of the quadratic)")
    ax.axvline(study["iterations"], color="C3", ls="--", label=f"stop at i = {study['iterations']}")
    ax.set(xlabel="CG iteration i", ylabel="−φ_i", yscale="log", title=f"ε = {tol:.1e} ({window} window)")
    ax.legend(loc="lower right")
    ax.grid(True, alpha=0.3)
    return ax, study


def cg_tolerance_view(phis=None, window="martens"):
    """A log slider for ε over a fixed CG run (default: `fixed_ggn_system()`)."""
    import ipywidgets as w

    phis = fixed_ggn_system() if phis is None else phis

    def show(tol):
        _, study = plot_cg_tolerance(phis, tol, window)
        plt.show()
        print(f"ε = {tol:.1e}: CG stops after {study['iterations']} iterations with "
              f"{100 * study['fraction']:.1f}% of the reachable decrease of the quadratic")

    return w.interactive(show, tol=w.FloatLogSlider(value=5e-4, base=10, min=-6, max=-1, step=0.25,
                                                    description="ε", readout_format=".1e",
                                                    continuous_update=False))

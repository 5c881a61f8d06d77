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


# The r slider offers the factors worth comparing, each one mouse position apart: the report's r = 1.01
# (small batches) and 1.5 (large batches) among them. A continuous slider from 1.005 to 3 in steps of
# 0.005 had ~400 positions on a ~120-px track, so 1.01 was out of reach of a mouse.
R_CHOICES = (1.005, 1.01, 1.02, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0)
SLIDER_WIDTH = "760px"        # projector: a long track, and labels of PROJECTOR_FONT below
PROJECTOR_FONT = "20px"


def _projector_style():
    """A <style> for the sliders of class `hflib-slider`: large labels and readouts (ipywidgets 8
    sliders have no font-size trait)."""
    import ipywidgets as w

    return w.HTML(f"<style>.hflib-slider .widget-label, .hflib-slider .widget-readout "
                  f"{{font-size: {PROJECTOR_FONT}; line-height: 1.4;}} "
                  ".hflib-slider .widget-label {min-width: 3em;}</style>")


def _slider_layout(widget):
    import ipywidgets as w

    widget.layout = w.Layout(width=SLIDER_WIDTH)
    widget.style.description_width = "3em"
    widget.add_class("hflib-slider")
    return widget


def _interactive(show, **sliders):
    """`ipywidgets.interactive` over projector-sized sliders, with their style sheet as the last child."""
    import ipywidgets as w

    view = w.interactive(show, **{name: _slider_layout(s) for name, s in sliders.items()})
    view.children = tuple(view.children) + (_projector_style(),)
    return view


def damping_view(updates=30, batch_size=100):
    """Sliders for r and λ₀ that rerun `damping_study` and redraw its plots."""
    import ipywidgets as w

    def show(r, initial_damping):
        history = damping_study(r, initial_damping, updates=updates, batch_size=batch_size)
        plot_damping_study(history, r)
        plt.show()
        print(f"r = {r:.3f}, λ₀ = {initial_damping:.3g}: final λ = {history['damping'][-1]:.3g}, "
              f"final batch loss = {history['loss'][-1]:.4f}")

    return _interactive(
        show,
        r=w.SelectionSlider(options=[(f"{r:.3f}", r) for r in R_CHOICES], value=1.5, description="r",
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


def relative_progress(phis, window="martens", min_iters=None):
    """What Martens' rule tests at each iteration i (Alg. 2): the relative progress
    (φ_i − φ_{i−τ}) / φ_i over the look-back τ = `cg.window_size(i)`, and τ itself.

    Both arrays have one entry per φ; the progress is NaN where the rule does not test yet
    (i ≤ τ or i < i_min) or φ_i ≥ 0. CG stops at the first i with progress < τ·ε."""
    min_iters = _cg.default_min_iters(window) if min_iters is None else min_iters
    phis = np.asarray(phis, dtype=float)
    tau = np.array([_cg.window_size(i, window, min_iters) for i in range(len(phis))])
    progress = np.full(len(phis), np.nan)
    for i in range(1, len(phis)):
        if i >= min_iters and i > tau[i] and phis[i] < 0:
            progress[i] = (phis[i] - phis[i - tau[i]]) / phis[i]
    return progress, tau


# Fixed axes of the ε view: τ·ε spans [10·1e-6, τ_max·1e-1] over the slider's range, the progress
# of a CG run falls from O(1) towards the round-off of φ.
TOLERANCE_RANGE = (1e-6, 1e-1)         # the ε slider's ends
PROGRESS_AXIS = (1e-7, 10.0)


def _sci(x):
    """1e-6 as the slider's readout writes it: '1.0e-6' (Python's '{:.1e}' gives '1.0e-06')."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def plot_cg_tolerance(phis, tol, window="martens", axes=None):
    """The ε view: left, what the rule tests — the relative progress against the threshold τ·ε;
    right, how far φ_i still is from the best φ of the run. The stop chosen by ε is marked on both.
    Axes depend on the φ history only, never on ε."""
    study = cg_tolerance_study(phis, tol, window)
    phis = np.asarray(phis, dtype=float)
    progress, tau = relative_progress(phis, window)
    i = np.arange(len(phis))
    stop = study["iterations"]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(15, 4.8))
    left, right = axes
    left.semilogy(i, progress, color="C0", lw=2, label=r"progress $(\psi_i - \psi_{i-\tau})/\psi_i$")
    left.semilogy(i, tau * tol, color="C3", lw=2, ls=":", label=r"threshold $\tau\,\varepsilon$")
    left.axvline(stop, color="C3", ls="--", lw=2, label=f"stop at i = {stop}")
    left.set(xlabel=r"CG iteration $i$", ylabel="relative progress", ylim=PROGRESS_AXIS, xlim=(0, len(phis) - 1),
             title=rf"what the rule tests, $\varepsilon$ = {_sci(tol)}")
    best = phis.min()
    gap = (phis - best) / abs(best) if best < 0 else np.ones_like(phis)
    floor = max(np.min(gap[gap > 0]) if np.any(gap > 0) else 1e-16, 1e-16)
    right.semilogy(i, np.maximum(gap, floor), color="C0", lw=2, label=r"$(\psi_i - \psi_{\rm best})/|\psi_{\rm best}|$")
    right.axvline(stop, color="C3", ls="--", lw=2, label=f"stop at i = {stop}: gap {gap[stop]:.1e}")
    right.set(xlabel=r"CG iteration $i$", ylabel=r"relative gap to the best $\psi$", xlim=(0, len(phis) - 1),
              ylim=(floor / 2, 2.0), title="how much of the decrease is left")
    for ax in axes:
        ax.legend(loc="upper right", framealpha=0.9)
        ax.grid(True, alpha=0.3)
    plt.tight_layout()
    return axes, study


def cg_tolerance_view(phis=None, window="martens"):
    """A log slider for ε over a fixed CG run (default: `fixed_ggn_system()`)."""
    import ipywidgets as w

    phis = fixed_ggn_system() if phis is None else phis

    def show(tol):
        _, study = plot_cg_tolerance(phis, tol, window)
        plt.show()
        print(f"ε = {_sci(tol)}: CG stops after {study['iterations']} iterations with "
              f"{100 * study['fraction']:.1f}% of the reachable decrease of the quadratic")

    low, high = np.log10(TOLERANCE_RANGE)
    return _interactive(show, tol=w.FloatLogSlider(value=5e-4, base=10, min=low, max=high, step=0.25,
                                                   description="ε", readout_format=".1e",
                                                   continuous_update=False))

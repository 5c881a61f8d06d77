"""The lecture sliders: the pure functions behind them (`damping_study` runs `hflib.fit`) and the
ipywidgets views."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hflib import cg, widgets  # noqa: E402
from hflib.history import History  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*non-interactive.*:UserWarning")

UPDATES = 6


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _records(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history.records]


# ------------------------------------------------------------------ damping_study
@pytest.fixture(scope="module")
def studies():
    return {r: widgets.damping_study(r, 1.0, updates=UPDATES) for r in (1.1, 2.0)}


def test_damping_study_is_deterministic(studies):
    again = widgets.damping_study(1.1, 1.0, updates=UPDATES)
    assert isinstance(again, History) and not again.interrupted          # fit's History
    assert _records(again) == _records(studies[1.1])
    np.testing.assert_allclose(again["epoch"], np.arange(1, UPDATES + 1) * 100 / 2000)
    assert len(again) == UPDATES and list(again["update"]) == list(range(1, UPDATES + 1))
    assert again["damping"][0] == 1.0
    # r and λ live in variables: moving the sliders never recompiles the update
    assert widgets._sine_trainer(100, 0)[0].tracing_count() == 1


def test_larger_r_moves_lambda_more_per_update(studies):
    biggest = {}
    for r, h in studies.items():
        moves = np.abs(np.diff(np.log(h["damping"])))
        nonzero = moves[moves > 1e-12]
        assert len(nonzero) > 0
        np.testing.assert_allclose(nonzero, math.log(r), rtol=1e-5)   # each move is ×r or ÷r
        biggest[r] = moves.max()
    assert biggest[2.0] > biggest[1.1]


def test_damping_study_starts_from_lambda0():
    h = widgets.damping_study(1.5, 0.1, updates=2)
    assert h["damping"][0] == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs, field", [(dict(r=1.0), "r"), (dict(r=0.9), "r"),
                                           (dict(r=1.5, initial_damping=0.0), "initial_damping"),
                                           (dict(r=1.5, initial_damping=-1.0), "initial_damping")])
def test_damping_study_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        widgets.damping_study(**kwargs)


def test_plot_damping_study(studies):
    axes = widgets.plot_damping_study(studies[2.0], 2.0)
    assert len(axes) == 2 and "2.000" in axes[0].get_title()
    np.testing.assert_array_equal(axes[0].lines[0].get_ydata(), studies[2.0]["damping"])


# ------------------------------------------------------------------ cg_tolerance_study
GEOMETRIC = [-(1 - 0.8 ** i) for i in range(80)]      # φ_i of a CG run converging geometrically


@pytest.mark.parametrize("window", ["martens", "report"])
@pytest.mark.parametrize("tol", [1e-1, 1e-2, 5e-4, 1e-5, 1e-8])
def test_cg_tolerance_study_matches_first_stop(window, tol):
    out = widgets.cg_tolerance_study(GEOMETRIC, tol, window)
    stop = cg.first_stop(GEOMETRIC, tol, window, 1 if window == "martens" else 3)
    assert out["iterations"] == stop
    if tol >= 1e-2:                               # a loose ε stops well before the end of the history
        assert stop < len(GEOMETRIC) - 1
    assert out["reduction"] == GEOMETRIC[stop]
    assert out["fraction"] == pytest.approx(GEOMETRIC[stop] / min(GEOMETRIC))
    assert 0 < out["fraction"] <= 1


def test_cg_tolerance_study_by_hand():
    # martens window: k = 10 for i ≤ 100, so the test first applies at i = 11
    phis = [0.0] + [-float(i) for i in range(1, 11)] + [-10.0] * 10
    out = widgets.cg_tolerance_study(phis, 1e-3)
    assert out["iterations"] == 20                         # (φ_i − φ_{i−10}) / φ_i = 0 only from i = 20
    assert out["fraction"] == 1.0
    assert widgets.cg_tolerance_study(phis, 1.0)["iterations"] == 11   # (−10+1)/−10 = 0.9 < 10·1
    with pytest.raises(ValueError, match="tol"):
        widgets.cg_tolerance_study(phis, 0.0)


def test_smaller_tolerance_stops_later_on_hand_made_sequence():
    stops = [widgets.cg_tolerance_study(GEOMETRIC, tol)["iterations"] for tol in np.logspace(0, -10, 21)]
    assert stops == sorted(stops) and stops[0] < stops[-1]


@pytest.fixture(scope="module")
def ggn_phis():
    return widgets.fixed_ggn_system()


def test_fixed_ggn_system_phi_decreases(ggn_phis):
    phis = np.asarray(ggn_phis)
    assert phis.ndim == 1 and len(phis) > 20
    assert phis[0] == 0.0                                  # x₀ = 0
    assert np.all(phis[1:] < 0)
    assert np.all(np.diff(phis) <= 1e-12 * np.abs(phis).max())   # CG decreases φ monotonically
    assert widgets.fixed_ggn_system() is ggn_phis          # cached


def test_smaller_tolerance_stops_later_on_the_fixed_system(ggn_phis):
    studies = [widgets.cg_tolerance_study(ggn_phis, tol) for tol in np.logspace(-1, -8, 15)]
    stops = [s["iterations"] for s in studies]
    fractions = [s["fraction"] for s in studies]
    assert stops == sorted(stops) and stops[0] < stops[-1]
    assert all(b >= a - 1e-15 for a, b in zip(fractions, fractions[1:]))
    assert fractions[-1] > 0.99
    for s, tol in zip(studies, np.logspace(-1, -8, 15)):
        assert s["iterations"] == cg.first_stop([float(p) for p in ggn_phis], tol, "martens", 1)


def test_plot_cg_tolerance_marks_the_stop():
    axes, study = widgets.plot_cg_tolerance(GEOMETRIC, 1e-3)
    assert study == widgets.cg_tolerance_study(GEOMETRIC, 1e-3)
    for ax in axes:
        stop_lines = [line for line in ax.lines if line.get_label().startswith("stop")]
        assert len(stop_lines) == 1
        assert list(stop_lines[0].get_xdata()) == [study["iterations"]] * 2


@pytest.mark.parametrize("window", ["martens", "report"])
@pytest.mark.parametrize("tol", [1e-1, 1e-2, 5e-4, 1e-5])
def test_relative_progress_is_what_the_rule_tests(window, tol):
    """The plotted progress crosses the plotted threshold τ·ε exactly where first_stop stops."""
    for phis in (GEOMETRIC, [float(p) for p in widgets.fixed_ggn_system()]):
        progress, tau = widgets.relative_progress(phis, window)
        below = np.flatnonzero(progress < tau * tol)           # NaN (not tested yet) compares False
        stop = cg.first_stop(phis, tol, window)
        assert (below[0] if len(below) else len(phis) - 1) == stop
        assert list(tau) == [cg.window_size(i, window, cg.default_min_iters(window)) for i in range(len(phis))]


def test_tolerance_view_axes_are_fixed_and_the_threshold_moves(ggn_phis):
    """Moving ε moves the threshold line and the stop, not the axes (issue 13: stops at 27 and 46 look
    different)."""
    shown = {}
    for tol in widgets.TOLERANCE_RANGE + (5e-4,):
        axes, study = widgets.plot_cg_tolerance(ggn_phis, tol)
        axes[0].figure.canvas.draw()                           # renders every label (mathtext included)
        threshold = next(line for line in axes[0].lines if "threshold" in line.get_label())
        shown[tol] = ([(ax.get_xlim(), ax.get_ylim()) for ax in axes], study["iterations"],
                      np.asarray(threshold.get_ydata()))
        plt.close("all")
    limits = {tol: lim for tol, (lim, _, _) in shown.items()}
    assert len({str(v) for v in limits.values()}) == 1
    assert limits[5e-4][0][1] == widgets.PROGRESS_AXIS
    low, high = widgets.TOLERANCE_RANGE
    assert shown[low][1] > shown[5e-4][1] > shown[high][1]          # the stop moves with ε
    assert (shown[5e-4][1], shown[low][1]) == (27, 46)              # the README's figures
    np.testing.assert_allclose(shown[high][2] / shown[low][2], high / low)
    # the threshold stays inside the fixed axis over the slider's whole range
    assert widgets.PROGRESS_AXIS[0] < 10 * low and shown[high][2].max() < widgets.PROGRESS_AXIS[1]


# ------------------------------------------------------------------ the ipywidgets views
def test_damping_view_sliders_and_callback(capsys):
    v = widgets.damping_view(updates=3)
    r_slider, lam_slider = v.children[0], v.children[1]
    assert r_slider.description == "r" and lam_slider.description == "λ₀"
    assert (r_slider.value, lam_slider.value) == (1.5, 1.0)
    values = [value for _, value in r_slider.options]
    assert min(values) > 1                                 # the slider cannot produce an invalid r
    assert {1.01, 1.5} <= set(values)                      # the report's two factors, one mouse position each
    assert r_slider.layout.width == widgets.SLIDER_WIDTH and "hflib-slider" in r_slider._dom_classes
    assert "font-size" in v.children[-1].value             # the projector style sheet
    first = capsys.readouterr().out
    assert "r = 1.500, λ₀ = 1: final λ" in first           # ran once on creation

    r_slider.value = 2.0
    second = capsys.readouterr().out
    assert "r = 2.000, λ₀ = 1: final λ" in second
    assert v.kwargs == {"r": 2.0, "initial_damping": 1.0}
    lam_slider.value = 0.1
    third = capsys.readouterr().out
    assert "λ₀ = 0.1: final λ" in third
    expected = widgets.damping_study(2.0, 0.1, updates=3)
    assert f"final λ = {expected['damping'][-1]:.3g}" in third
    assert plt.get_fignums()                               # it drew


def test_cg_tolerance_view_sliders_and_callback(capsys):
    v = widgets.cg_tolerance_view(phis=GEOMETRIC)
    tol_slider = v.children[0]
    assert tol_slider.description == "ε" and tol_slider.value == pytest.approx(5e-4)
    stop = cg.first_stop(GEOMETRIC, 5e-4, "martens", 1)
    assert f"CG stops after {stop} iterations" in capsys.readouterr().out
    tol_slider.value = 1e-6
    out = capsys.readouterr().out
    stop_small = cg.first_stop(GEOMETRIC, 1e-6, "martens", 1)
    assert stop_small > stop
    assert f"ε = 1.0e-6: CG stops after {stop_small} iterations" in out   # as the readout writes it


def test_damping_plot_axes_stay_fixed_when_the_slider_moves():
    limits = []
    for r in (1.005, 3.0):
        history = widgets.damping_study(r, updates=6)
        axes = widgets.plot_damping_study(history, r)
        limits.append([(ax.get_xlim(), ax.get_ylim()) for ax in axes])
        plt.close("all")
    assert limits[0] == limits[1]
    assert limits[0][0][1] == widgets.DAMPING_AXIS and limits[0][1][1] == widgets.LOSS_AXIS

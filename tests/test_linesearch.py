"""Martens' CG backtracking and the Armijo line search as standalone functions, on hand-checked cases."""
import math

import numpy as np
import pytest
import tensorflow as tf

from hflib import linesearch

F64 = tf.float64


def _iterates(values):
    """Saved iterates as CGResult stores them: one tensor per variable, stacked along axis 0."""
    return [tf.constant(np.array(values, dtype=np.float64)[:, None])]


def _loss_of_first_entry(table):
    """loss_at(δ) that looks the loss up by δ's (integer-valued) first entry."""
    keys = tf.constant(list(table), F64)
    vals = tf.constant(list(table.values()), F64)
    calls = []

    def loss_at(delta):
        calls.append(1)
        return tf.reduce_sum(tf.where(tf.equal(keys, delta[0][0]), vals, tf.zeros_like(vals)))
    return loss_at, calls


def _run(table, saved, last):
    loss_at, _ = _loss_of_first_entry(table)
    phis = tf.constant([-float(v) for v in saved], F64)
    p = [tf.constant([float(last)], F64)]
    best, f, phi, index = linesearch.backtrack(loss_at, _iterates(saved), phis, p, loss_at(p), tf.constant(-9.0, F64))
    return float(best[0][0]), float(f), float(phi), int(index)


def test_backtracking_walks_back_while_the_loss_decreases():
    # iterates 1..4 saved, 5 is the last; losses fall going back from 5 to 3, then rise at 2
    table = {1.0: 0.9, 2.0: 0.5, 3.0: 0.3, 4.0: 0.4, 5.0: 0.6}
    assert _run(table, [1, 2, 3, 4], 5) == (3.0, 0.3, -3.0, 2)


def test_backtracking_keeps_the_last_iterate_when_the_previous_is_worse():
    table = {1.0: 0.1, 2.0: 0.5, 3.0: 0.2}        # 1 is best overall, but the walk stops at 2
    assert _run(table, [1, 2], 3) == (3.0, 0.2, -9.0, -1)


def test_backtracking_with_nothing_saved_returns_the_last_iterate():
    loss_at, _ = _loss_of_first_entry({7.0: 1.0})
    empty = [tf.zeros((0, 1), F64)]
    best, f, phi, index = linesearch.backtrack(loss_at, empty, tf.zeros((0,), F64), [tf.constant([7.0], F64)],
                                               tf.constant(1.0, F64), tf.constant(-2.0, F64))
    assert (float(best[0][0]), float(f), float(phi), int(index)) == (7.0, 1.0, -2.0, -1)


def test_backtracking_prefers_a_finite_loss_to_a_nonfinite_last_one():
    table = {1.0: 0.7, 2.0: 0.8, 3.0: math.nan}
    assert _run(table, [1, 2], 3) == (1.0, 0.7, -1.0, 0)


def _armijo(f, f0, slope, **kw):
    p = [tf.constant([1.0], F64)]
    return linesearch.armijo(lambda d: f(d[0][0]), p, tf.constant(f0, F64), f(tf.constant(1.0, F64)),
                             tf.constant(slope, F64), **kw)


def test_armijo_accepts_the_full_step_when_it_decreases_enough():
    t, ft = _armijo(lambda t: 1.0 - 0.5 * t, 1.0, -1.0)     # f(1) = 0.5 ≤ 1 − 0.01
    assert (float(t), float(ft)) == (1.0, 0.5)


def test_armijo_shrinks_by_the_factor_until_the_test_holds():
    # f(t) = 1 − t + 2t²: f(t) ≤ 1 − 0.01 t  ⇔  t ≤ 0.495; rates 1, 0.8, 0.64, 0.512, 0.4096
    t, ft = _armijo(lambda t: 1.0 - t + 2 * t * t, 1.0, -1.0)
    assert float(t) == pytest.approx(0.8 ** 4, rel=1e-12)
    assert float(ft) == pytest.approx(1 - 0.4096 + 2 * 0.4096 ** 2, rel=1e-12)


def test_armijo_rejects_when_no_rate_passes():
    t, ft = _armijo(lambda t: 1.0 + t, 1.0, -1.0, max_tries=10)   # never decreases
    assert (float(t), float(ft)) == (0.0, 1.0)


def test_armijo_skips_nonfinite_losses():
    # ∞ for t > 0.6: 1, 0.8 are skipped, 0.64 is too large as well, 0.512 passes
    f = lambda t: tf.where(t > 0.52, tf.constant(math.inf, F64), 1.0 - t)
    t, ft = _armijo(f, 1.0, -1.0)
    assert float(t) == pytest.approx(0.512, rel=1e-12) and float(ft) == pytest.approx(0.488, rel=1e-12)


@pytest.mark.parametrize("kw, name", [(dict(c=0.0), "armijo_c"), (dict(c=1.0), "armijo_c"),
                                      (dict(shrink=1.5), "armijo_shrink"), (dict(max_tries=-1), "armijo_max_tries")])
def test_armijo_checks_its_constants(kw, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        _armijo(lambda t: 1.0 - t, 1.0, -1.0, **kw)


def test_both_run_inside_a_compiled_function():
    @tf.function
    def compiled():
        saved = _iterates([1, 2])
        loss_at = lambda d: (d[0][0] - 1.5) ** 2
        p = [tf.constant([3.0], F64)]
        best, f, _, index = linesearch.backtrack(loss_at, saved, tf.constant([-1.0, -2.0], F64), p, loss_at(p),
                                                 tf.constant(-3.0, F64))
        t, _ = linesearch.armijo(loss_at, best, loss_at([tf.zeros(1, F64)]), f, tf.constant(-1.0, F64))
        return best[0][0], index, t
    best, index, t = compiled()
    assert float(best) in (1.0, 2.0) and int(index) in (0, 1) and float(t) == 1.0

"""Bad input fails early with a ValueError/TypeError whose message names the offending argument."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import damping, preconditioners as pc  # noqa: E402
from helpers_core import F64, labels, mlp, problem, random_direction  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    p = problem("tanh", "softmax_int")
    v, _ = random_direction(p.model)
    return p, v


def _products(p, v, y=None, x=None, loss=None):
    """Every public entry point that takes (model, loss, x, y), as zero-argument calls."""
    y = p.y if y is None else y
    x = p.x if x is None else x
    loss = p.loss if loss is None else loss
    return {
        "gradient": lambda: hflib.gradient(p.model, loss, x, y),
        "ggn_vector_product": lambda: hflib.ggn_vector_product(p.model, loss, x, y, v),
        "hessian_vector_product": lambda: hflib.hessian_vector_product(p.model, loss, x, y, v),
        "dense_ggn": lambda: hflib.dense_ggn(p.model, loss, x, y),
        "empirical_fisher_diagonal": lambda: pc.empirical_fisher_diagonal(p.model, loss, x, y),
    }


# ------------------------------------------------------------------ v shaped unlike the variables
@pytest.mark.parametrize("fn", ["ggn", "hvp"])
def test_v_wrong_count(setup, fn):
    p, v = setup
    call = hflib.ggn_vector_product if fn == "ggn" else hflib.hessian_vector_product
    with pytest.raises(ValueError, match=r"^v: expected 6 tensors") as info:
        call(p.model, p.loss, p.x, p.y, v[:-1])
    assert "got 5" in str(info.value)


@pytest.mark.parametrize("fn", ["ggn", "hvp"])
def test_v_wrong_shape(setup, fn):
    p, v = setup
    call = hflib.ggn_vector_product if fn == "ggn" else hflib.hessian_vector_product
    bad = list(v)
    bad[2] = tf.zeros((4, 5), tf.float64)             # the kernel of the second layer is (5, 4)
    with pytest.raises(ValueError, match=r"^v\[2\]: expected shape \(5, 4\)"):
        call(p.model, p.loss, p.x, p.y, bad)


@pytest.mark.parametrize("flat", ["tensor", "numpy"])
def test_v_flat_instead_of_list(setup, flat):
    p, v = setup
    vec = hflib.flatten(v)
    vec = vec.numpy() if flat == "numpy" else vec
    for call in (hflib.ggn_vector_product, hflib.hessian_vector_product):
        with pytest.raises(TypeError, match=r"^v: expected a list of 6 tensors"):
            call(p.model, p.loss, p.x, p.y, vec)


# ------------------------------------------------------------------ the model
def test_model_without_trainable_variables(setup):
    p, _ = setup
    keras.utils.set_random_seed(0)
    frozen = keras.Sequential([keras.Input((3,), dtype=F64), keras.layers.Dense(3, dtype=F64, trainable=False)])
    calls = [
        lambda: hflib.gradient(frozen, p.loss, p.x, p.y),
        lambda: hflib.ggn_vector_product(frozen, p.loss, p.x, p.y, []),
        lambda: hflib.hessian_vector_product(frozen, p.loss, p.x, p.y, []),
        lambda: hflib.dense_ggn(frozen, p.loss, p.x, p.y),
        lambda: hflib.dense_hessian(frozen, p.loss, p.x, p.y),
        lambda: hflib.DampedGGN(frozen, p.loss, p.x, p.y, damping=1.0),
        lambda: pc.empirical_fisher_diagonal(frozen, p.loss, p.x, p.y),
        lambda: pc.ggn_diagonal_estimate(frozen, p.loss, p.x),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^model: .*trainable variables"):
            call()


def test_dense_oracles_refuse_large_models(setup):
    p, _ = setup
    big = mlp("tanh", sizes=(3, 100, 60, 3))              # d = 400 + 6060 + 183 > 5000
    for call in (lambda: hflib.dense_ggn(big, p.loss, p.x, p.y), lambda: hflib.dense_hessian(big, p.loss, p.x, p.y),
                 lambda: hflib.dense_jacobian(big, p.x)):
        with pytest.raises(ValueError, match=r"^model: dense curvature matrices"):
            call()


# ------------------------------------------------------------------ inputs x
def test_integer_inputs(setup):
    p, v = setup
    for name, call in _products(p, v, x=p.x.astype(np.int32)).items():
        with pytest.raises(TypeError, match=r"^x: expected floating-point inputs"):
            call()
    with pytest.raises(TypeError, match=r"^x:"):
        hflib.DampedGGN(p.model, p.loss, p.x.astype(np.int64), p.y, damping=1.0)
    with pytest.raises(TypeError, match=r"^x:"):
        pc.ggn_diagonal_estimate(p.model, p.loss, p.x.astype(np.uint8))


def test_empty_batch(setup):
    p, v = setup
    for name, call in _products(p, v, x=np.zeros((0, 3)), y=np.zeros((0,), np.int32)).items():
        with pytest.raises(ValueError, match=r"^x: empty batch"):
            call()


def test_scalar_input(setup):
    p, v = setup
    with pytest.raises(ValueError, match=r"^x: expected a batch"):
        hflib.gradient(p.model, p.loss, np.float64(1.0), p.y)


# ------------------------------------------------------------------ labels y
@pytest.mark.parametrize("bad", ["ids_2d", "onehot_width", "batch", "float_vector"])
def test_labels_of_wrong_shape(setup, bad):
    p, v = setup
    n = p.x.shape[0]
    y = {"ids_2d": p.y[:, None],                                   # int ids must be (batch,)
         "onehot_width": np.eye(4)[p.y],                           # 4 columns for 3 outputs
         "batch": p.y[:-1],                                        # one label short
         "float_vector": p.y.astype(np.float64)}[bad]              # (batch,) floats for 3 outputs
    assert len(p.y) == n
    for name, call in _products(p, v, y=y).items():
        with pytest.raises(ValueError, match=r"^y: "):
            call()


@pytest.mark.parametrize("label", [3, -1])
def test_labels_out_of_range(setup, label):
    """Checked before the compiled products run: inside tf.function tf.one_hot would silently give zeros."""
    p, v = setup
    y = p.y.copy()
    y[1] = label
    for name, call in _products(p, v, y=y).items():
        with pytest.raises(ValueError, match=r"^y: class ids must lie in \[0, 3\)"):
            call()


def test_sigmoid_targets_outside_unit_interval(setup):
    p, v = setup
    y = labels("sigmoid_ce", p.x.shape[0])
    y[0, 0] = 1.5
    for name, call in _products(p, v, y=y, loss="sigmoid_cross_entropy").items():
        with pytest.raises(ValueError, match=r"^y: sigmoid cross-entropy targets must lie in \[0, 1\]"):
            call()


def test_squared_error_targets_of_wrong_shape(setup):
    p, v = setup
    y = np.zeros((p.x.shape[0], 2))
    for name, call in _products(p, v, y=y, loss="squared_error").items():
        with pytest.raises(ValueError, match=r"^y: expected targets of shape \(batch, 3\)"):
            call()


# ------------------------------------------------------------------ λ, ε, iteration bounds
@pytest.mark.parametrize("lam", [0.0, -0.5])
def test_non_positive_damping(setup, lam):
    p, _ = setup
    with pytest.raises(ValueError, match=r"^damping: expected a number > 0, got "):
        hflib.DampedGGN(p.model, p.loss, p.x, p.y, damping=lam)
    with pytest.raises(ValueError, match=r"^damping: expected a number > 0, got "):
        pc.damped_power([tf.ones(3, tf.float64)], lam)
    with pytest.raises(ValueError, match=r"^damping: expected a number > 0, got "):
        damping.lm_update(lam, 0.5)
    with pytest.raises(ValueError, match=r"^damping: expected a number > 0, got "):
        pc.martens(p.model, p.loss, p.x, p.y, damping=lam)


def _pcg(**kw):
    return hflib.pcg(lambda v: 2.0 * v, tf.ones(3, tf.float64), **kw)


@pytest.mark.parametrize("tol", [0.0, -1e-4, "small", None])
def test_pcg_tolerance_must_be_positive(tol):
    with pytest.raises(ValueError, match=r"^tol: expected ε > 0"):
        _pcg(tol=tol)


def test_pcg_min_iters_above_max_iters():
    with pytest.raises(ValueError, match=r"^min_iters: must not exceed max_iters") as info:
        _pcg(min_iters=20, max_iters=10)
    assert "max_iters=10" in str(info.value)


@pytest.mark.parametrize("name,value", [("min_iters", 0), ("max_iters", 0), ("max_iters", 2.5),
                                        ("max_iters", True), ("min_iters", -3)])
def test_pcg_iteration_bounds_are_positive_integers(name, value):
    with pytest.raises(ValueError, match=rf"^{name}: expected an integer ≥ 1"):
        _pcg(**{name: value})


def test_pcg_unknown_window():
    with pytest.raises(ValueError, match=r"^window: expected one of \('martens', 'report'\)"):
        _pcg(window="chapelle")


# ------------------------------------------------------------------ names
def test_unknown_loss(setup):
    p, v = setup
    for name, call in _products(p, v, loss="cross_entropy").items():
        with pytest.raises(ValueError, match=r"^loss: unknown loss 'cross_entropy'; known losses are"):
            call()
    with pytest.raises(ValueError, match=r"^loss: unknown loss"):
        hflib.DampedGGN(p.model, "mse", p.x, p.y, damping=1.0)
    with pytest.raises(TypeError, match=r"^loss: expected a name"):
        hflib.gradient(p.model, None, p.x, p.y)


def test_unknown_order(setup):
    p, v = setup
    with pytest.raises(ValueError, match=r"^order: expected one of \('eq34', 'eq37'\)"):
        hflib.ggn_vector_product(p.model, p.loss, p.x, p.y, v, order="eq35")
    with pytest.raises(ValueError, match=r"^order: expected one of \('eq34', 'eq37'\)"):
        hflib.DampedGGN(p.model, p.loss, p.x, p.y, damping=1.0, order="forward")


def test_unflatten_wrong_length(setup):
    p, v = setup
    with pytest.raises(ValueError, match=r"^vector: expected shape \(59,\)"):
        hflib.unflatten(tf.zeros(58, tf.float64), p.model.trainable_variables)
    with pytest.raises(ValueError, match=r"^vector: "):
        hflib.unflatten(tf.zeros((59, 1), tf.float64), p.model.trainable_variables)


def test_model_reduction_unknown_denominator():
    with pytest.raises(ValueError, match=r"^denominator: expected one of"):
        damping.model_reduction(tf.constant(-1.0), [tf.ones(2)], 1.0, denominator="both")

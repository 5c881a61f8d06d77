"""The fast paths against the generic ones on bigger nets than the dense-matrix tests use:
the cached linearisation (`linearize`, whose JVP is the transpose of its VJP) against an
independent forward-mode (ForwardAccumulator) JVP + VJP product, and the exact per-layer
empirical-Fisher diagonal (Dense and Conv2D) against per-example Jacobians (pfor)."""
import numpy as np
import pytest
import tensorflow as tf

import hflib
from hflib import models, preconditioners
from hflib.losses import get as get_loss
from helpers_core import forward_mode_ggn_vp


def _compare_cached_with_naive(model, loss, x, y, rtol):
    v = [tf.random.stateless_normal(w.shape, seed=[i, 1], dtype=w.dtype) for i, w in enumerate(model.trainable_variables)]

    @tf.function
    def cached(v):
        lin = hflib.linearize(model, loss, x, y)
        return lin.ggn_vp(v), lin.gradient(), lin.value

    gv, grad, value = cached(v)
    for order in ("eq34", "eq37"):
        for product in (forward_mode_ggn_vp(model, loss, x, v, order),
                        hflib.ggn_vector_product(model, loss, x, y, v, order=order)):
            a, b = hflib.flatten(gv).numpy(), hflib.flatten(product).numpy()
            assert np.linalg.norm(a - b) <= rtol * np.linalg.norm(b), order
    g = hflib.flatten(hflib.gradient(model, loss, x, y)).numpy()
    assert np.linalg.norm(hflib.flatten(grad).numpy() - g) <= rtol * np.linalg.norm(g)
    np.testing.assert_allclose(value.numpy(), get_loss(loss).value(model(x), y).numpy(), rtol=rtol)


def test_linearize_matches_naive_product_on_cnn():
    model = models.mnist_cnn(seed=1, dtype="float64")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(16, 28, 28, 1)))
    y = tf.constant(rng.integers(0, 10, size=16))
    _compare_cached_with_naive(model, "softmax_cross_entropy", x, y, 1e-10)


def test_linearize_matches_naive_product_on_autoencoder():
    model = models.deep_autoencoder((784, 64, 32, 8), seed=2, dtype="float64")
    x = tf.constant(np.random.default_rng(1).uniform(size=(24, 784)))
    _compare_cached_with_naive(model, "sigmoid_cross_entropy", x, x, 1e-10)


def test_linearize_matches_naive_product_on_mlp_float32():
    model = models.mnist_mlp(hidden=200, seed=3)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.uniform(size=(128, 784)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=128))
    _compare_cached_with_naive(model, "softmax_cross_entropy", x, y, 1e-4)


def _exact_against_pfor(model, x, y, chunk):
    loss = get_loss("softmax_cross_entropy")
    assert preconditioners.has_exact_rule(model)
    fast = hflib.flatten(preconditioners._layerwise_fisher_diagonal(model, loss, x, y)).numpy()
    slow = hflib.flatten(preconditioners._fisher_diagonal_pfor(model, loss, x, y, chunk)).numpy()
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_dense_fisher_diagonal_matches_pfor(activation):
    model = models.mlp((30, 40, 20, 10), activation=activation, seed=4, dtype="float64")
    rng = np.random.default_rng(3)
    _exact_against_pfor(model, tf.constant(rng.normal(size=(64, 30))), tf.constant(rng.integers(0, 10, size=64)), 16)


def test_cnn_fisher_diagonal_matches_pfor():
    model = models.mnist_cnn(seed=5, dtype="float64")
    rng = np.random.default_rng(6)
    _exact_against_pfor(model, tf.constant(rng.uniform(size=(16, 28, 28, 1))),
                        tf.constant(rng.integers(0, 10, size=16)), 8)

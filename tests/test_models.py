"""Tests of hflib.models: sizes from the report, shapes, seeding, sparse init."""

import keras
import numpy as np
import pytest

from hflib import models

CNN_PARAMS = (
    (3 * 3 * 1 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (3 * 3 * 32 * 64 + 64)
    + (4 * 4 * 64 * 64 + 64) + (64 * 10 + 10)
)  # 28 -> 14 -> 7 -> 4 with stride 2, "same" padding
AE_SIZES = (784, 1000, 500, 250, 30, 250, 500, 1000, 784)
AE_PARAMS = sum(a * b + b for a, b in zip(AE_SIZES, AE_SIZES[1:]))


def _weights_equal(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def _activations(model):
    return [layer.activation.__name__ for layer in model.layers
            if isinstance(layer, keras.layers.Dense)]


@pytest.fixture(scope="module")
def autoencoder():
    return models.deep_autoencoder()


def test_sine_mlp_matches_report():
    model = models.sine_mlp()
    assert models.count_params(model) == 286  # report §V.A
    assert [layer.units for layer in model.layers] == [15, 15, 1]
    assert _activations(model) == ["relu", "relu", "linear"]
    assert model(np.zeros((7, 1), np.float32)).shape == (7, 1)


def test_mnist_mlp_matches_report():
    model = models.mnist_mlp()
    assert models.count_params(model) == 636_010  # report §V.B
    assert _activations(model) == ["relu", "linear"]
    assert model(np.zeros((3, 784), np.float32)).shape == (3, 10)


def test_mnist_cnn():
    model = models.mnist_cnn()
    assert models.count_params(model) == CNN_PARAMS == 89_546
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 64]
    assert all(c.strides == (2, 2) and c.kernel_size == (3, 3) and c.padding == "same"
               for c in convs)
    assert _activations(model) == ["relu", "linear"]
    assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)


def test_deep_autoencoder(autoencoder):
    assert models.count_params(autoencoder) == AE_PARAMS == 2_837_314
    assert [layer.units for layer in autoencoder.layers] == list(AE_SIZES[1:])
    assert _activations(autoencoder) == (
        ["sigmoid"] * 3 + ["linear"] + ["sigmoid"] * 3 + ["linear"]
    )
    assert autoencoder(np.zeros((2, 784), np.float32)).shape == (2, 784)


def test_generic_mlp_and_dtype():
    model = models.mlp((3, 5, 4, 3), activation="tanh", dtype="float64")
    assert models.count_params(model) == (3 * 5 + 5) + (5 * 4 + 4) + (4 * 3 + 3)
    assert _activations(model) == ["tanh", "tanh", "linear"]
    assert all(v.dtype == "float64" for v in model.trainable_variables)
    out = model(np.ones((2, 3)))
    assert out.shape == (2, 3) and out.dtype == "float64"
    with pytest.raises(ValueError, match="sizes"):
        models.mlp((3,))
    with pytest.raises(ValueError, match="sizes"):
        models.mlp((3, 0, 2))


def test_models_are_built_at_once():
    for model in (models.sine_mlp(), models.mnist_cnn()):
        assert model.built and len(model.trainable_variables) > 0


@pytest.mark.parametrize("make", [models.sine_mlp, models.mnist_mlp, models.mnist_cnn])
def test_seed_determines_weights(make):
    assert _weights_equal(make(seed=3), make(seed=3))
    assert not _weights_equal(make(seed=3), make(seed=4))


def test_layers_get_distinct_initial_weights():
    kernels = [layer.kernel.numpy() for layer in models.mlp((4, 4, 4, 4)).layers]
    assert not np.array_equal(kernels[0], kernels[1])
    assert not np.array_equal(kernels[1], kernels[2])


def test_outputs_are_logits_not_probabilities():
    model = models.mnist_mlp(seed=1)
    out = np.asarray(model(np.random.default_rng(0).random((4, 784), np.float32)))
    assert not np.allclose(out.sum(axis=1), 1.0)
    assert model.layers[-1].activation.__name__ == "linear"


def test_sparse_init_gives_15_nonzeros_per_unit(autoencoder):
    model = models.sparse_init(autoencoder, seed=0)
    assert model is autoencoder
    for layer in model.layers:
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        fan_in = kernel.shape[0]
        per_unit = np.count_nonzero(kernel, axis=0)
        assert np.all(per_unit == min(15, fan_in)), layer.name
        assert np.all(bias == 0)
    nonzeros = model.layers[0].kernel.numpy()
    nonzeros = nonzeros[nonzeros != 0]
    assert abs(nonzeros.std() - 1.0) < 0.05 and abs(nonzeros.mean()) < 0.05  # N(0, 1)


def test_sparse_init_small_fan_in_and_determinism():
    model = models.sparse_init(models.sine_mlp(), nonzero=15, seed=5)
    first = model.layers[0].kernel.numpy()
    assert np.count_nonzero(first) == first.size  # fan-in 1 < 15: all weights used
    assert np.all(np.count_nonzero(model.layers[1].kernel.numpy(), axis=0) == 15)
    again = models.sparse_init(models.sine_mlp(seed=9), nonzero=15, seed=5)
    assert _weights_equal(model, again)
    other = models.sparse_init(models.sine_mlp(), nonzero=15, seed=6)
    assert not _weights_equal(model, other)
    few = models.sparse_init(models.mlp((20, 8, 2)), nonzero=3)
    assert np.all(np.count_nonzero(few.layers[0].kernel.numpy(), axis=0) == 3)
    with pytest.raises(ValueError, match="nonzero"):
        models.sparse_init(models.sine_mlp(), nonzero=0)


def test_sparse_init_leaves_conv_layers_alone():
    model = models.mnist_cnn(seed=2)
    conv_before = model.layers[0].kernel.numpy().copy()
    models.sparse_init(model)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), conv_before)
    assert np.all(np.count_nonzero(model.layers[-2].kernel.numpy(), axis=0) == 15)

"""Diagonal preconditioners: Martens' empirical-Fisher diagonal, the report's variant, Chapelle–Erhan.

The empirical Fisher is built explicitly from per-example gradients in a Python
loop; the Chapelle–Erhan estimator is checked against the exact diag(G) with a
tolerance taken from its own sampling variance.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import hflib  # noqa: E402
from hflib import losses, preconditioners as pc  # noqa: E402
from helpers_core import F64, inputs, labels, problem, rel_err  # noqa: E402


def _per_example_gradients(model, loss, x, y):
    """(N, d): g_i of ℓ_i, one example at a time (tape.gradient in a Python loop)."""
    loss = losses.get(loss)
    grads = []
    for i in range(x.shape[0]):
        with tf.GradientTape() as tape:
            z = model(tf.constant(x[i:i + 1]))
            value = loss.per_example(z, loss.targets(y[i:i + 1], z))[0]
        grads.append(hflib.flatten(tape.gradient(value, model.trainable_variables)).numpy())
    return np.stack(grads)


def _explicit_fisher(model, loss, x, y):
    """F = (1/N) Σ_i g_i g_iᵀ from per-example gradients, and the mean gradient."""
    g = _per_example_gradients(model, loss, x, y)
    return g.T @ g / len(g), g.mean(axis=0)


def _no_bias_mlp():
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((3,), dtype=F64),
                             keras.layers.Dense(5, activation="tanh", use_bias=False, dtype=F64),
                             keras.layers.Dropout(0.5, dtype=F64),          # no weights, identity at inference
                             keras.layers.Dense(4, activation="relu", dtype=F64),
                             keras.layers.Dense(3, use_bias=False, dtype=F64)])


FISHER_CASES = [("tanh", "softmax_int"), ("tanh", "sigmoid_ce"), ("relu", "squared_error"),
                ("sigmoid", "softmax_onehot"), ("conv", "softmax_int"), ("conv", "squared_error")]


@pytest.mark.parametrize("net,case", FISHER_CASES)
def test_empirical_fisher_diagonal_matches_explicit_fisher(net, case):
    p = problem(net, case)
    fisher, _ = _explicit_fisher(p.model, p.loss, p.x, p.y)
    diag = hflib.flatten(pc.empirical_fisher_diagonal(p.model, p.loss, p.x, p.y)).numpy()
    assert rel_err(diag, np.diag(fisher)) <= 1e-10
    assert np.abs(fisher - np.diag(np.diag(fisher))).max() > 1e-4   # F itself is not diagonal
    # chunking over examples does not change the result
    chunked = hflib.flatten(pc.empirical_fisher_diagonal(p.model, p.loss, p.x, p.y, chunk_size=3)).numpy()
    assert rel_err(chunked, diag) <= 1e-12


def test_empirical_fisher_diagonal_layers_without_bias():
    model = _no_bias_mlp()
    x, y = inputs("tanh", n=9, seed=3), labels("softmax_int", 9, seed=4)
    fisher, _ = _explicit_fisher(model, "softmax_cross_entropy", x, y)
    diag = pc.empirical_fisher_diagonal(model, "softmax_cross_entropy", x, y)
    assert [tuple(d.shape) for d in diag] == [tuple(v.shape) for v in model.trainable_variables]
    assert rel_err(hflib.flatten(diag).numpy(), np.diag(fisher)) <= 1e-10


# ------------------------------------------------------------------ exact per-layer rule (Conv2D, Dense)
L = keras.layers


def _sequential(input_shape, layers, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(input_shape, dtype=F64)] + layers)


def _conv(filters, kernel, **kw):
    return L.Conv2D(filters, kernel, dtype=F64, **kw)


def _dense(units, **kw):
    return L.Dense(units, dtype=F64, **kw)


# input shape and layers of tiny float64 nets: strides, paddings, kernel sizes, bias on/off, pass-through layers
CONV_NETS = {
    "strided_same_then_valid": ((7, 8, 2), lambda: [
        _conv(8, 3, strides=2, padding="same", activation="relu"),         # 8 channels on: direct patches
        _conv(2, (2, 3), strides=(1, 2), padding="valid", activation="tanh", use_bias=False),
        L.Flatten(dtype=F64), _dense(3)]),
    "one_by_one_and_pooling": ((6, 6, 1), lambda: [
        _conv(2, 1, activation="sigmoid"), L.MaxPooling2D(2, dtype=F64),
        _conv(3, 3, padding="same", use_bias=False, activation="elu"), L.AveragePooling2D(2, dtype=F64),
        L.Flatten(dtype=F64), _dense(4, activation="tanh", use_bias=False), _dense(3)]),
    "even_kernel_same_stride_3": ((7, 8, 1), lambda: [
        _conv(2, 4, strides=3, padding="same", activation="tanh"), L.Activation("softplus", dtype=F64),
        _conv(3, (1, 2), strides=(2, 1), padding="same"), L.GlobalAveragePooling2D(dtype=F64), _dense(3)]),
    "one_output_position": ((3, 3, 2), lambda: [          # a 3×3 'valid' conv on 3×3: P = 1, the Dense case
        _conv(4, 3, activation="tanh"), L.Reshape((4,), dtype=F64), _dense(3)]),
    "mnist_cnn_in_miniature": ((10, 10, 1), lambda: [     # hflib.models.mnist_cnn with 2/3/4 filters
        _conv(2, 3, strides=2, padding="same", activation="relu"),
        _conv(3, 3, strides=2, padding="same", activation="relu"),
        _conv(4, 3, strides=2, padding="same", activation="relu"),
        L.Flatten(dtype=F64), _dense(5, activation="relu"), _dense(3)]),
}


def _conv_problem(name, n=7, case="softmax_int"):
    shape, layers = CONV_NETS[name]
    model = _sequential(shape, layers())
    x = np.random.default_rng(1).normal(size=(n, *shape))
    return model, losses.get(_LOSS[case]), x, labels(case, n, seed=2)


_LOSS = {"softmax_int": "softmax_cross_entropy", "squared_error": "squared_error", "sigmoid_ce": "sigmoid_cross_entropy"}


def _reference_diagonal(model, loss, x, y, n=None):
    """(1/n) Σ_{i<n} g_i² from the loop of single-example gradients."""
    g = _per_example_gradients(model, loss, x[:n], y[:n])
    return np.mean(g ** 2, axis=0)


def _assert_matches(diag, reference):
    np.testing.assert_allclose(hflib.flatten(diag).numpy(), reference, rtol=1e-10, atol=1e-14 * reference.max())


@pytest.fixture
def no_pfor(monkeypatch):
    """Fail if the pfor fallback runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("the pfor fallback ran")
    monkeypatch.setattr(pc, "_fisher_diagonal_pfor", refuse)


@pytest.fixture
def pfor_calls(monkeypatch):
    """Count the calls of the pfor fallback (which still runs)."""
    calls = []
    original = pc._fisher_diagonal_pfor

    def counted(*args, **kwargs):
        calls.append(args[2].shape[0])
        return original(*args, **kwargs)
    monkeypatch.setattr(pc, "_fisher_diagonal_pfor", counted)
    return calls


@pytest.mark.parametrize("name", sorted(CONV_NETS))
def test_exact_rule_matches_per_example_gradients_on_conv_nets(name, no_pfor):
    model, loss, x, y = _conv_problem(name)
    assert pc.has_exact_rule(model)
    reference = _reference_diagonal(model, loss, x, y)
    assert np.count_nonzero(reference) > 0.5 * reference.size
    for chunk_size in (None, 1, 3, 100):
        diag = pc.empirical_fisher_diagonal(model, loss, x, y, chunk_size=chunk_size)
        assert [tuple(d.shape) for d in diag] == [tuple(v.shape) for v in model.trainable_variables]
        _assert_matches(diag, reference)


@pytest.mark.parametrize("case", ["squared_error", "sigmoid_ce"])
def test_exact_rule_on_conv_nets_other_losses(case, no_pfor):
    model, loss, x, y = _conv_problem("strided_same_then_valid", case=case)
    _assert_matches(pc.empirical_fisher_diagonal(model, loss, x, y), _reference_diagonal(model, loss, x, y))


def test_exact_rule_on_mnist_cnn_uses_whole_batch_in_budgeted_chunks(monkeypatch, no_pfor):
    """hflib's MNIST CNN in float64; a tiny entry budget forces several chunks per layer; the
    `max_examples` cap of the fallback does not apply: every example counts."""
    model = hflib.models.mnist_cnn(seed=3, dtype=F64)
    x = np.random.default_rng(4).uniform(size=(5, 28, 28, 1))
    y = labels("softmax_int", 5, seed=5, m=10)
    reference = _reference_diagonal(model, "softmax_cross_entropy", x, y)
    monkeypatch.setattr(pc, "CHUNK_ENTRIES", 30_000)   # conv_3: K·C = 288·64 → 1 example per chunk
    _assert_matches(pc.empirical_fisher_diagonal(model, "softmax_cross_entropy", x, y, max_examples=2), reference)


@pytest.mark.parametrize("name,spatial", [("strided_same_then_valid", False), ("even_kernel_same_stride_3", True)])
def test_exact_rule_inside_tf_function_with_unknown_shapes(name, spatial, no_pfor):
    """Batch size (and, with global pooling, the image size) unknown while tracing."""
    model, loss, x, y = _conv_problem(name)
    if spatial:
        model = _sequential((None, None, x.shape[-1]), CONV_NETS[name][1]())
    shape = [None, None, None, x.shape[-1]] if spatial else [None, *x.shape[1:]]
    diagonal = tf.function(lambda x, y: pc.empirical_fisher_diagonal(model, loss, x, y, chunk_size=2),
                           input_signature=[tf.TensorSpec(shape, tf.float64), tf.TensorSpec([None], tf.int32)])
    for n, h, w in ((7, 7, 8), (4, 7, 8)) + (((5, 9, 6),) if spatial else ()):
        xs = np.random.default_rng(n).normal(size=(n, h, w, x.shape[-1]))
        _assert_matches(diagonal(xs, y[:n]), _reference_diagonal(model, loss, xs, y, n))


def test_exact_rule_skips_frozen_layers(no_pfor):
    model, loss, x, y = _conv_problem("mnist_cnn_in_miniature")
    model.layers[1].trainable = False
    reference = _reference_diagonal(model, loss, x, y)
    assert reference.size == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    _assert_matches(pc.empirical_fisher_diagonal(model, loss, x, y), reference)


class _Scale(L.Layer):
    """A custom layer with a trainable weight: the exact rule cannot know its gradient."""
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", dtype=F64)

    def call(self, a):
        return a * self.w


class _DenseSubclass(L.Dense):
    pass


FALLBACK_NETS = {
    "batch_norm": ((6, 6, 1), lambda: [_conv(2, 3, activation="tanh"), L.BatchNormalization(dtype=F64),
                                      L.Flatten(dtype=F64), _dense(3)]),
    "custom_layer": ((6, 6, 1), lambda: [_conv(2, 3, activation="tanh"), _Scale(dtype=F64),
                                        L.Flatten(dtype=F64), _dense(3)]),
    "dropout": ((6, 6, 1), lambda: [_conv(2, 3, activation="tanh"), L.Flatten(dtype=F64),
                                   L.Dropout(0.5, dtype=F64), _dense(3)]),
    "dilated_conv": ((6, 6, 1), lambda: [_conv(2, 2, dilation_rate=2, activation="tanh"),
                                        L.Flatten(dtype=F64), _dense(3)]),
    "depthwise_conv": ((6, 6, 2), lambda: [L.DepthwiseConv2D(3, dtype=F64), L.Flatten(dtype=F64), _dense(3)]),
    "dense_on_sequences": ((4, 3), lambda: [_dense(5, activation="tanh"), L.Flatten(dtype=F64), _dense(3)]),
    "dense_subclass": ((3,), lambda: [_DenseSubclass(5, activation="tanh", dtype=F64), _dense(3)]),
}


@pytest.mark.parametrize("name", sorted(FALLBACK_NETS))
def test_unsupported_layers_fall_back_to_pfor_and_agree(name, pfor_calls):
    shape, layers = FALLBACK_NETS[name]
    model = _sequential(shape, layers())
    x = np.random.default_rng(1).normal(size=(6, *shape))
    y = labels("softmax_int", 6, seed=2)
    assert not pc.has_exact_rule(model)
    _assert_matches(pc.empirical_fisher_diagonal(model, "softmax_cross_entropy", x, y),
                    _reference_diagonal(model, "softmax_cross_entropy", x, y))
    # the cap applies to the fallback only: the mean over the first 4 examples
    _assert_matches(pc.empirical_fisher_diagonal(model, "softmax_cross_entropy", x, y, max_examples=4),
                    _reference_diagonal(model, "softmax_cross_entropy", x, y, 4))
    assert pfor_calls == [6, 4]


def test_non_sequential_model_falls_back():
    inp = keras.Input((3,), dtype=F64)
    model = keras.Model(inp, _dense(3)(_dense(4, activation="tanh")(inp)))
    assert not pc.has_exact_rule(model)


@pytest.mark.parametrize("argument,value", [("chunk_size", 0), ("chunk_size", 2.5), ("max_examples", 0)])
def test_fisher_arguments_validated(argument, value):
    model, loss, x, y = _conv_problem("one_output_position")
    with pytest.raises(ValueError, match=argument):
        pc.empirical_fisher_diagonal(model, loss, x, y, **{argument: value})


def test_damped_power_formula():
    rng = np.random.default_rng(0)
    diag = [tf.constant(rng.uniform(0, 3, size=(3, 4))), tf.constant(rng.uniform(0, 3, size=(4,)))]
    for lam, alpha in ((0.1, 0.75), (2.0, 0.75), (0.5, 1.0), (0.5, 0.5)):
        out = pc.damped_power(diag, lam, alpha) if alpha != 0.75 else pc.damped_power(diag, lam)
        for o, d in zip(out, diag):
            np.testing.assert_allclose(o.numpy(), (d.numpy() + lam) ** alpha, rtol=1e-14)
    assert pc.ALPHA == 0.75


def test_martens_preconditioner():
    p = problem("tanh", "softmax_int")
    fisher, _ = _explicit_fisher(p.model, p.loss, p.x, p.y)
    m = hflib.flatten(pc.martens(p.model, p.loss, p.x, p.y, damping=0.3)).numpy()
    np.testing.assert_allclose(m, (np.diag(fisher) + 0.3) ** 0.75, rtol=1e-10)


def test_report_variant_is_squared_mean_gradient_not_fisher():
    p = problem("tanh", "softmax_int")
    fisher, g_mean = _explicit_fisher(p.model, p.loss, p.x, p.y)
    grad = hflib.gradient(p.model, p.loss, p.x, p.y)
    np.testing.assert_allclose(hflib.flatten(grad).numpy(), g_mean, rtol=1e-10, atol=1e-14)
    sq = hflib.flatten(pc.batch_gradient_squared(grad)).numpy()
    np.testing.assert_allclose(sq, g_mean ** 2, rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(hflib.flatten(pc.report(grad, 0.3)).numpy(), (g_mean ** 2 + 0.3) ** 0.75,
                               rtol=1e-10)
    # Jensen: (1/N)Σ g_i² ≥ ḡ², the gap is the per-example variance, far from zero here
    fd = np.diag(fisher)
    assert np.all(fd >= sq - 1e-15)
    assert np.max(fd - sq) > 0.5 * np.max(fd)


# ------------------------------------------------------------------ Chapelle–Erhan
def test_rademacher_entries():
    v = pc.rademacher([2000, 3], tf.constant([1, 2]), tf.float64).numpy()
    assert set(np.unique(v)) == {-1.0, 1.0}
    assert abs(v.mean()) < 0.1
    np.testing.assert_array_equal(v, pc.rademacher([2000, 3], tf.constant([1, 2]), tf.float64).numpy())
    assert not np.array_equal(v, pc.rademacher([2000, 3], tf.constant([1, 3]), tf.float64).numpy())


@pytest.mark.parametrize("case", ["softmax_int", "sigmoid_ce"])
def test_single_draw_is_squared_jt_s_v(case):
    """One draw equals (Σ_i J_iᵀ S_i v_i)² / B with S assembled from unit vectors and v from `rademacher`."""
    p = problem("tanh", case)
    loss = losses.get(p.loss)
    jac, z = p.jacobian
    b, m, _ = jac.shape
    seed = tf.constant([3, 4])
    v = pc.rademacher([b, m], seed, tf.float64).numpy()
    s = np.stack([loss.sqrt_output_hessian_product(tf.constant(z), tf.constant(np.tile(np.eye(m)[j], (b, 1)))).numpy()
                  for j in range(m)], axis=-1)
    jtsv = np.einsum("bmi,bmn,bn->i", jac, s, v)
    est = hflib.flatten(pc.ggn_diagonal_estimate(p.model, p.loss, p.x, samples=1, seed=seed)).numpy()
    np.testing.assert_allclose(est, jtsv ** 2 / b, rtol=1e-10, atol=1e-15)


def _per_sample_estimates(model, loss, x, n, offset=0):
    seeds = tf.stack([tf.range(offset, offset + n), tf.fill([n], 7919)], axis=1)

    @tf.function
    def draws(seeds):
        return tf.map_fn(lambda s: hflib.flatten(pc.ggn_diagonal_estimate(model, loss, x, samples=1, seed=s)),
                         seeds, fn_output_signature=tf.float64)

    return draws(seeds).numpy()


@pytest.mark.parametrize("net,case", [("tanh", "softmax_int"), ("tanh", "squared_error"),
                                      ("sigmoid", "sigmoid_ce"), ("conv", "softmax_onehot")])
def test_chapelle_erhan_converges_to_exact_ggn_diagonal(net, case):
    """4000 independent draws: the mean is within 5 standard errors of diag(G) in every coordinate."""
    p = problem(net, case)
    exact = np.diag(p.G)
    draws = _per_sample_estimates(p.model, p.loss, tf.constant(p.x), 4000)
    mean = draws.mean(axis=0)
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.median(se / np.maximum(exact, 1e-300)) > 1e-3       # a genuinely random estimator
    tiny = 1e-12 * exact.max()
    assert np.all(np.abs(mean - exact) <= 5 * se + tiny), np.max(np.abs(mean - exact) / (se + tiny))
    # with only a few draws the error is clearly larger (1/√n: √1000 ≈ 32 times larger on average)
    few = draws[:4].mean(axis=0)
    assert np.mean(np.abs(few - exact)) > 5 * np.mean(np.abs(mean - exact))
    # the samples argument averages draws inside one call: also unbiased, error ~ se·√(4000/200)
    avg = hflib.flatten(pc.ggn_diagonal_estimate(p.model, p.loss, p.x, samples=200, seed=(11, 13))).numpy()
    assert np.all(np.abs(avg - exact) <= 5 * se * np.sqrt(4000 / 200) + tiny)


def test_chapelle_erhan_preconditioner_and_y_unused():
    p = problem("tanh", "sigmoid_ce")
    est = pc.ggn_diagonal_estimate(p.model, p.loss, p.x, p.y, samples=3, seed=(1, 2))
    est_no_y = pc.ggn_diagonal_estimate(p.model, p.loss, p.x, samples=3, seed=(1, 2))
    np.testing.assert_array_equal(hflib.flatten(est).numpy(), hflib.flatten(est_no_y).numpy())
    m = pc.chapelle_erhan(p.model, p.loss, p.x, p.y, damping=0.2, samples=3, seed=(1, 2))
    np.testing.assert_allclose(hflib.flatten(m).numpy(), (hflib.flatten(est).numpy() + 0.2) ** 0.75, rtol=1e-12)
    other = pc.ggn_diagonal_estimate(p.model, p.loss, p.x, samples=3, seed=(5, 2))
    assert not np.allclose(hflib.flatten(other).numpy(), hflib.flatten(est).numpy())

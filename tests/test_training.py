"""The loop (`hflib.fit`) for any updater: arrays and tf.data, epochs, a second call, Keras
callbacks, validation, budgets, the progress bar, non-finite batches, determinism, Keras'
`training` flag, the output-activation check and float64 data into a float32 model.

The tiny float64 sine net and its compiled updaters are shared (see `loop_helpers`).
"""
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import hflib
from hflib import data, models, training
from hflib.baselines import FirstOrder
from hflib.optimizer import HessianFree

from loop_helpers import BATCH, F64, N, assert_records_equal, assert_same_state, build, deterministic_ops, fresh, \
    sine_data, spy_on_batches, weights_bytes  # noqa: F401 (deterministic_ops is a fixture)

STEPS = N // BATCH          # updates per epoch


@pytest.fixture(scope="module")
def sine():
    return sine_data()


# ------------------------------------------------------------------ arrays
def test_fit_on_arrays_records_updates_epochs_and_validation(sine):
    hf = fresh("hf")
    h = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, validation_data=sine, progress=False)
    assert len(h) == 2 * STEPS and int(hf.iterations.numpy()) == 2 * STEPS
    np.testing.assert_array_equal(h["update"], np.arange(1, 2 * STEPS + 1))
    np.testing.assert_allclose(h["epoch"], np.arange(1, 2 * STEPS + 1) / STEPS)
    assert np.all(np.diff(h["time"]) > 0) and h["time"][0] > 0
    # validation after each epoch (the default), on the weights after that update
    validated = ~np.isnan(h["val_loss"])
    np.testing.assert_array_equal(np.flatnonzero(validated), [STEPS - 1, 2 * STEPS - 1])
    assert h["val_loss"][-1] == hflib.evaluate(hf.model, "squared_error", *sine)["loss"]
    assert h.interrupted is False


def test_a_second_fit_call_trains_epochs_more_in_new_orders(sine, monkeypatch):
    hf = fresh("hf")
    seen = spy_on_batches(monkeypatch, hf)
    first = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, progress=False)
    weights = weights_bytes(hf.model)
    second = hflib.fit(hf, sine, epochs=1, batch_size=BATCH, progress=False)
    first_batches, second_batches = seen[1:2 * STEPS + 1], seen[2 * STEPS + 2:]
    assert len(second_batches) == STEPS and second_batches not in (first_batches[:STEPS], first_batches[STEPS:])
    assert len(first) == 2 * STEPS and len(second) == STEPS                # Keras: `epochs` more
    np.testing.assert_array_equal(second["update"], np.arange(2 * STEPS + 1, 3 * STEPS + 1))
    np.testing.assert_allclose(second["epoch"], np.arange(1, STEPS + 1) / STEPS)   # epochs of this call
    assert int(hf.iterations.numpy()) == 3 * STEPS and weights_bytes(hf.model) != weights


def test_data_order_is_a_pure_function_of_seed_and_epoch():
    a = training.data_order(100, 3, 1).numpy()
    np.testing.assert_array_equal(a, training.data_order(100, 3, 1).numpy())
    assert sorted(a) == list(range(100))
    assert not np.array_equal(a, training.data_order(100, 3, 2).numpy())
    assert not np.array_equal(a, training.data_order(100, 4, 1).numpy())


def test_arrays_are_shuffled_per_epoch_in_data_order(sine, monkeypatch):
    hf = fresh("hf")
    seen = spy_on_batches(monkeypatch, hf)
    hflib.fit(hf, sine, epochs=2, batch_size=BATCH, progress=False)
    x = sine[0]
    want = [float(x[training.data_order(N, hf.seed, e).numpy()[b * BATCH], 0]) for e in (0, 1) for b in range(STEPS)]
    assert seen[1:] == want                      # seen[0]: the warm-up's batch, undone


@pytest.mark.parametrize("kwargs, match, error", [
    (dict(epochs=0), "epochs", ValueError),
    (dict(epochs=1.5), "epochs", TypeError),
    (dict(batch_size=0), "batch_size", ValueError),
    (dict(batch_size=N + 1), "batch_size", ValueError),
    (dict(batch_size=None), "batch_size", ValueError),
    (dict(max_updates=0), "max_updates", ValueError),
    (dict(max_seconds=0.0), "max_seconds", ValueError),
    (dict(max_seconds=math.nan), "max_seconds", ValueError),
    (dict(validation_every=0), "validation_every", ValueError),
    (dict(checkpoint_every=-1), "checkpoint_every", ValueError),
    (dict(resume=True), "checkpoint_dir", ValueError),
    (dict(resume="yes"), "resume", TypeError),
    (dict(steps_per_epoch=2), "steps_per_epoch", ValueError),
    (dict(callbacks=[lambda batch, logs: None]), "callbacks", TypeError),
    (dict(validation_data=np.zeros((4, 1))), "validation_data", TypeError),
])
def test_bad_fit_arguments_are_refused_before_training(sine, kwargs, match, error):
    hf = fresh("hf")
    with pytest.raises(error, match=match):
        hflib.fit(hf, sine, **{"batch_size": BATCH, "progress": False, **kwargs})
    assert int(hf.iterations.numpy()) == 0


def test_no_retracing_across_fits_epochs_and_resets(sine):
    hf = fresh("hf")
    hflib.fit(hf, sine, epochs=3, batch_size=BATCH, progress=False)
    try:
        hf.reset(damping=3.0, r=1.2)                         # λ and r live in variables
        assert float(hf.damping.numpy()) == 3.0 and float(hf.r.numpy()) == pytest.approx(1.2)
        h = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, progress=False)
        assert h.records[0]["damping"] == 3.0
    finally:
        hf.reset(r=1.5)                                      # the shared updater's config back to r = 1.5
    assert hf.tracing_count() == 1                          # every test shares one batch shape


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_first_order_runs_via_fit_without_retracing(sine, kind):
    x, y = sine
    updater = fresh(kind)
    start = hflib.evaluate(updater.model, "squared_error", x, y)["loss"]
    h = hflib.fit(updater, sine, epochs=5, batch_size=BATCH, progress=False, validation_data=sine)
    assert updater.tracing_count() == 1
    assert len(h) == 5 * STEPS and {"loss", "time", "update", "epoch", "accepted", "val_loss"} <= set(h.keys())
    assert np.all(np.isfinite(h["loss"])) and np.all(np.diff(h["time"]) > 0)
    assert h["val_loss"][-1] < start and h.records[0]["accepted"] is True


# ------------------------------------------------------------------ tf.data
def _dataset(sine, shuffle_seed=None):
    ds = tf.data.Dataset.from_tensor_slices(sine)
    if shuffle_seed is not None:
        ds = ds.shuffle(N, seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(BATCH, drop_remainder=True)


def test_fit_on_a_dataset_equals_stepping_through_its_batches(sine):
    ds = _dataset(sine)
    hf = fresh("hf")
    h = hflib.fit(hf, ds, epochs=2, progress=False)
    assert len(h) == 2 * STEPS
    np.testing.assert_allclose(h["epoch"], np.arange(1, 2 * STEPS + 1) / STEPS)
    by_hand = fresh("hf", 1)
    records = [by_hand.step(xb, yb) for _ in range(2) for xb, yb in ds]
    added = ("update", "epoch", "time")
    assert_records_equal([{k: v for k, v in r.items() if k not in added} for r in h.records], records, skip=())
    assert_same_state(hf, by_hand)               # and the warm-up update left no trace


def test_dataset_of_unknown_length_is_counted(sine):
    ds = tf.data.Dataset.from_tensor_slices(sine).filter(lambda x, y: x[0] > -0.5).batch(BATCH, drop_remainder=True)
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    passes = sum(1 for _ in ds)
    assert 0 < passes < STEPS
    h = hflib.fit(fresh("hf"), ds, epochs=3, progress=False)
    assert len(h) == 3 * passes                    # three passes, not an endless loop
    np.testing.assert_allclose(h["epoch"], np.arange(1, 3 * passes + 1) / passes)


def test_infinite_dataset_with_steps_per_epoch_streams_on(sine, monkeypatch):
    ds = _dataset(sine).repeat()
    hf = fresh("hf")
    seen = spy_on_batches(monkeypatch, hf)
    h = hflib.fit(hf, ds, epochs=2, steps_per_epoch=3, progress=False)
    assert len(h) == 6
    np.testing.assert_allclose(h["epoch"], np.arange(1, 7) / 3)
    firsts = [float(xb[0, 0]) for xb, _ in _dataset(sine)]
    assert seen[1:] == [firsts[i % STEPS] for i in range(6)]     # epoch 2 continues the stream


@pytest.mark.parametrize("make, match", [
    (lambda ds: ds.take(0), "empty"),
    (lambda ds: ds.filter(lambda x, y: False), "empty"),
    (lambda ds: ds.repeat(), "steps_per_epoch"),
])
def test_bad_datasets_are_refused(sine, make, match):
    with pytest.raises(ValueError, match=match):
        hflib.fit(fresh("hf"), make(_dataset(sine)), epochs=1, progress=False)


def test_dataset_arguments_are_checked(sine):
    with pytest.raises(ValueError, match="batch_size"):
        hflib.fit(fresh("hf"), _dataset(sine), batch_size=BATCH, progress=False)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        hflib.fit(fresh("hf"), _dataset(sine), steps_per_epoch=STEPS + 1, progress=False)
    pairs = tf.data.Dataset.from_tensor_slices(sine[0]).batch(BATCH)
    with pytest.raises(TypeError, match=r"\(x, y\)"):
        hflib.fit(fresh("hf"), pairs, progress=False)


# ------------------------------------------------------------------ Keras callbacks
def test_early_stopping_stops_and_restores_the_best_weights(sine):
    """Validating on the negated targets: the better the fit, the worse val_loss, so the first
    epoch is the best and the run stops after `patience` = 1 worse epoch."""
    x, y = sine
    hf = fresh("hf")
    at_epoch_end = []
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: at_epoch_end.append(
        [w.copy() for w in hf.model.get_weights()]))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    h = hflib.fit(hf, (x, y), epochs=10, batch_size=BATCH, validation_data=(x, -y), callbacks=[keep, stop],
                  progress=False)
    val = h["val_loss"][~np.isnan(h["val_loss"])]
    assert len(val) == 2 and val[1] > val[0]
    assert len(h) == 2 * STEPS and stop.stopped_epoch == 1
    for got, want in zip(hf.model.get_weights(), at_epoch_end[0]):
        np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(a, b) for a, b in zip(at_epoch_end[0], at_epoch_end[1]))


def test_csv_logger_writes_one_row_per_epoch(sine, tmp_path):
    import csv

    path = tmp_path / "log.csv"
    h = hflib.fit(fresh("hf"), sine, epochs=2, batch_size=BATCH, validation_data=sine, progress=False,
                  callbacks=[keras.callbacks.CSVLogger(str(path))])
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = next(csv.reader(open(path)))
    assert header[0] == "epoch" and header.count("epoch") == 1
    assert {"loss", "damping", "rho", "update", "val_loss"} <= set(header)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    last = [h.records[STEPS - 1], h.records[-1]]
    assert [float(r["loss"]) for r in rows] == [r["loss"] for r in last]
    assert [float(r["val_loss"]) for r in rows] == [r["val_loss"] for r in last]


def test_model_checkpoint_saves_weights_named_by_epoch_and_loss(sine, tmp_path):
    hf = fresh("hf")
    pattern = str(tmp_path / "w-{epoch:02d}-{loss:.4f}.weights.h5")
    h = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, progress=False,
                  callbacks=[keras.callbacks.ModelCheckpoint(pattern, save_weights_only=True)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"w-{e + 1:02d}-{h.records[(e + 1) * STEPS - 1]['loss']:.4f}.weights.h5" for e in (0, 1)]
    other = build("hf").model
    other.load_weights(str(tmp_path / names[-1]))
    assert weights_bytes(other) == weights_bytes(hf.model)


def test_terminate_on_nan_stops_at_the_first_nonfinite_loss(sine):
    x, y = sine
    bad = np.full_like(x, np.nan)
    hf = fresh("hf")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        h = hflib.fit(hf, (bad, y), epochs=3, batch_size=BATCH, progress=False,
                      callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(h) == 1 and math.isnan(h.records[0]["loss"])


def test_lambda_callback_sees_every_hook_with_the_record(sine):
    calls = []
    cb = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append(("begin",)),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch", batch, logs["update"], "epoch" in logs)),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, logs["update"])),
        on_train_end=lambda logs: calls.append(("end", logs["update"], logs["interrupted"])))
    hflib.fit(fresh("hf"), sine, epochs=2, batch_size=BATCH, progress=False, callbacks=[cb])
    want = [("begin",)]
    for e in (0, 1):
        want += [("epoch_begin", e)] + [("batch", b, e * STEPS + b + 1, False) for b in range(STEPS)]
        want += [("epoch_end", e, (e + 1) * STEPS)]
    assert calls == want + [("end", 2 * STEPS, False)]


def test_a_callback_that_sets_stop_training_ends_the_run(sine):
    class StopAtThree(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if logs["update"] == 3:
                self.model.stop_training = True

    hf = fresh("hf")
    h = hflib.fit(hf, sine, epochs=5, batch_size=BATCH, progress=False, callbacks=[StopAtThree()])
    assert len(h) == 3 and int(hf.iterations.numpy()) == 3 and not h.interrupted


def _events(folder):
    """(tag, step, value) of every scalar in the TensorBoard event files under `folder`."""
    from tensorflow.core.util import event_pb2

    found = []
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(raw.numpy())
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "scalars":
                    found.append((path.parent.name, v.tag, event.step, float(tf.make_ndarray(v.tensor))))
    return found


def test_tensorboard_writes_batch_and_epoch_scalars_or_is_refused_up_front(sine, tmp_path):
    import importlib.util

    hf = fresh("hf")
    board = keras.callbacks.TensorBoard(str(tmp_path), update_freq="batch")
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ImportError, match="tensorboard"):
            hflib.fit(hf, sine, epochs=2, batch_size=BATCH, progress=False, callbacks=[board])
        assert int(hf.iterations.numpy()) == 0
        return
    h = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, validation_data=sine, progress=False, callbacks=[board])
    events = _events(tmp_path)
    batch_loss = [(step, v) for folder, tag, step, v in events if tag == "batch_loss"]
    assert batch_loss == [(i + 1, pytest.approx(r["loss"], rel=1e-6)) for i, r in enumerate(h.records)]
    assert [(s, v) for folder, tag, s, v in events if (folder, tag) == ("validation", "epoch_loss")] == [
        (e, pytest.approx(h.records[(e + 1) * STEPS - 1]["val_loss"], rel=1e-6)) for e in (0, 1)]


# ------------------------------------------------------------------ validation, budgets, progress
def test_validation_every_n_updates_and_its_latest_value_at_epoch_end(sine):
    hf = fresh("hf")
    epoch_logs = []
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch_logs.append(dict(logs)))
    h = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, validation_data=sine, validation_every=3,
                  callbacks=[cb], progress=False)
    np.testing.assert_array_equal(h["update"][~np.isnan(h["val_loss"])], [3, 6])
    # Keras callbacks (EarlyStopping, CSVLogger) see the latest validation at each epoch's end
    assert [logs["val_loss"] for logs in epoch_logs] == [h.records[2]["val_loss"], h.records[5]["val_loss"]]
    assert "val_loss" not in h.records[3]


def test_max_updates_counts_the_updates_of_this_call(sine):
    hf = fresh("hf")
    hflib.fit(hf, sine, epochs=1, batch_size=BATCH, progress=False)
    h = hflib.fit(hf, sine, epochs=5, batch_size=BATCH, max_updates=3, progress=False)
    assert len(h) == 3 and int(hf.iterations.numpy()) == STEPS + 3


def test_max_seconds_stops_on_training_time(sine):
    h = hflib.fit(fresh("hf"), sine, epochs=50, batch_size=BATCH, max_seconds=1e-6, progress=False)
    assert len(h) == 1 and h["time"][0] >= 1e-6


def test_validation_and_checkpoints_are_not_timed(sine, monkeypatch, tmp_path):
    """0.6 s of (slow) validation: were it timed, the 0.4-s budget would end the run at update 3."""
    import time

    def slow_evaluate(*args, **kwargs):
        time.sleep(0.15)
        return {"loss": 1.0}

    monkeypatch.setattr(training, "evaluate", slow_evaluate)
    start = time.perf_counter()
    h = hflib.fit(fresh("hf"), sine, epochs=1, batch_size=BATCH, validation_data=sine, validation_every=1,
                  max_seconds=0.4, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    wall = time.perf_counter() - start
    assert len(h) == STEPS and (h["val_loss"] == 1.0).all()
    assert wall > 0.6 and h["time"][-1] < 0.4


def test_progress_bar_labels(sine, capsys):
    hflib.fit(fresh("hf"), sine, epochs=1, batch_size=BATCH)
    default = capsys.readouterr().err
    assert "HessianFree" in default and f"{STEPS}/{STEPS}" in default and "update" in default
    hflib.fit(fresh("hf"), sine, epochs=1, batch_size=BATCH, progress="my run", max_updates=2)
    labelled = capsys.readouterr().err
    assert "my run" in labelled and "2/2" in labelled
    hflib.fit(fresh("sgd"), sine, epochs=1, batch_size=BATCH, max_seconds=30.0)
    budget = capsys.readouterr().err
    assert "FirstOrder" in budget and "/30.0 s" in budget


def test_no_progress_bar_when_off(sine, capsys):
    hflib.fit(fresh("hf"), sine, epochs=1, batch_size=BATCH, progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ non-finite values
def test_nonfinite_batches_warn_once_and_keep_the_weights(sine):
    x, y = (np.array(a) for a in sine)
    x[::10, 0] = np.nan                                    # 20 bad rows: every batch of 50 gets some
    hf = fresh("hf")
    before = weights_bytes(hf.model)
    with pytest.warns(RuntimeWarning, match="non-finite") as caught:
        h = hflib.fit(hf, (x, y), epochs=2, batch_size=BATCH, progress=False)
    ours = [w for w in caught if "non-finite" in str(w.message)]
    assert len(ours) == 1
    assert h["nonfinite"].sum() == len(h) == 2 * STEPS and not h["accepted"].any()
    assert weights_bytes(hf.model) == before
    start = max(1.0, 100 / BATCH)                          # λ₀, raised to the default floor 100/B
    np.testing.assert_allclose(h["damping"], start * 1.5 ** np.arange(2 * STEPS), rtol=1e-12)


def test_finite_data_do_not_warn(sine):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*non-finite.*")
        h = hflib.fit(fresh("hf"), sine, epochs=1, batch_size=BATCH, progress=False)
    assert not h["nonfinite"].any()


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("kind", ["hf", "adam"])
def test_two_runs_with_the_same_seed_are_bit_identical(sine, deterministic_ops, kind):
    runs = []
    for copy in (0, 1):
        updater = fresh(kind, copy)
        runs.append((updater, hflib.fit(updater, sine, epochs=2, batch_size=BATCH, validation_data=sine,
                                        progress=False)))
    (a, ha), (b, hb) = runs
    assert a is not b
    assert_records_equal(ha.records, hb.records)
    assert_same_state(a, b)


# ------------------------------------------------------------------ training flag and output checks
def _net_with(layer, dtype=F64):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((1,), dtype=dtype), keras.layers.Dense(16, activation="relu", dtype=dtype),
                             layer, keras.layers.Dense(1, dtype=dtype)])


def test_first_order_trains_dropout_in_training_mode(sine):
    """FirstOrder's record holds the loss of its forward pass: with Dropout in training mode it
    differs from the inference-mode loss at the same weights; without Dropout it is that loss."""
    x, y = sine
    for layer, active in ((keras.layers.Dropout(0.5, seed=1), True), (keras.layers.Identity(), False)):
        model = _net_with(layer)
        sgd = FirstOrder(model, "squared_error", "sgd", learning_rate=1e-12)
        inference = hflib.evaluate(model, "squared_error", x, y)["loss"]
        records = [sgd.step(x, y) for _ in range(2)]
        if active:
            assert records[0]["loss"] != pytest.approx(inference, rel=1e-6)
            assert records[0]["loss"] != records[1]["loss"]          # a new mask each step
        else:
            assert records[0]["loss"] == pytest.approx(inference, rel=1e-9)
    sgd = FirstOrder(_net_with(keras.layers.Dropout(0.2, seed=1)), "squared_error", "sgd", learning_rate=0.05)
    start = hflib.evaluate(sgd.model, "squared_error", x, y)["loss"]
    hflib.fit(sgd, sine, epochs=5, batch_size=BATCH, progress=False)
    assert hflib.evaluate(sgd.model, "squared_error", x, y)["loss"] < start


@pytest.mark.parametrize("layer", [keras.layers.Dropout(0.5, name="drop"),
                                   keras.layers.BatchNormalization(name="drop"),
                                   keras.layers.GaussianNoise(0.1, name="drop")],
                         ids=lambda layer: type(layer).__name__)
def test_hessian_free_refuses_layers_that_behave_differently_in_training(layer):
    with pytest.raises(ValueError, match=rf"'drop'.*{type(layer).__name__}"):
        HessianFree(_net_with(layer), "squared_error")


@pytest.mark.parametrize("loss, last", [
    ("softmax_cross_entropy", keras.layers.Dense(3, activation="softmax", name="out")),
    ("softmax_cross_entropy", keras.layers.Softmax(name="out")),
    ("sigmoid_cross_entropy", keras.layers.Dense(3, activation="sigmoid", name="out")),
])
@pytest.mark.parametrize("make", [lambda m, loss: HessianFree(m, loss),
                                  lambda m, loss: FirstOrder(m, loss, "adam", learning_rate=1e-3)],
                         ids=["hf", "first_order"])
def test_an_output_activation_that_the_loss_applies_is_refused(loss, last, make):
    layers = [keras.Input((4,)), keras.layers.Dense(3)] if isinstance(last, keras.layers.Softmax) else [keras.Input((4,))]
    model = keras.Sequential(layers + [last])
    with pytest.raises(ValueError, match="'out'.*twice"):
        make(model, loss)


# ------------------------------------------------------------------ float64 data, float32 model
@pytest.mark.parametrize("kind", ["hf", "sgd"])
def test_float64_data_into_a_float32_model(sine, kind):
    x64, y64 = sine
    x32, y32 = x64.astype("float32"), y64.astype("float32")
    model = models.sine_mlp(hidden=(8,), seed=5)
    assert model.trainable_variables[0].dtype == "float32"
    if kind == "hf":
        updater = HessianFree(model, "squared_error", initial_damping=1.0, preconditioner="martens", max_iters=20)
    else:
        updater = FirstOrder(model, "squared_error", "sgd", learning_rate=0.05)
    assert hflib.evaluate(model, "squared_error", x64, y64) == hflib.evaluate(model, "squared_error", x32, y32)
    initial = [tf.identity(v) for v in updater.state_variables()]
    from64 = updater.step(x64[:BATCH], y64[:BATCH])
    after64 = weights_bytes(model)
    for v, value in zip(updater.state_variables(), initial):
        v.assign(value)
    from32 = updater.step(x32[:BATCH], y32[:BATCH])
    assert from64 == from32 and weights_bytes(model) == after64          # the same cast, the same update
    traced = updater.tracing_count()
    h = hflib.fit(updater, (x64, y64), epochs=2, batch_size=BATCH, validation_data=(x64, y64), progress=False)
    assert len(h) == 2 * STEPS and np.isfinite(h["val_loss"][-1]) and h["accepted"].any()
    assert updater.tracing_count() == traced                      # fit's batches reuse step's trace


def test_evaluate_loss_and_classification_error():
    x, y = data.make_teacher_data(n=60, dim=4, classes=3, hidden=5, seed=1)
    model = models.mlp((4, 3), dtype=F64, seed=2)
    z = model(x).numpy()
    shifted = z - z.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    labels = np.asarray(y).argmax(axis=1) if np.ndim(y) == 2 else np.asarray(y)
    want_loss = -np.mean(log_softmax[np.arange(60), labels])
    want_error = np.mean(z.argmax(axis=1) != labels)
    for batch_size in (7, 2000):
        out = hflib.evaluate(model, "softmax_cross_entropy", x, y, batch_size=batch_size)
        assert out["loss"] == pytest.approx(want_loss, rel=1e-12)
        assert out["error"] == pytest.approx(want_error, abs=1e-15)
    assert set(hflib.evaluate(model, "squared_error", x, np.zeros((60, 3)))) == {"loss"}
    with pytest.raises(ValueError, match="batch_size"):
        hflib.evaluate(model, "softmax_cross_entropy", x, y, batch_size=0)

"""Checkpoints of `hflib.fit`: an exact resume (arrays mid-epoch, tf.data at the right epoch), the
configuration stored and checked, damaged folders, leftovers, pruning, interrupts and crashes."""
import json
import os
import signal
import stat

import keras
import numpy as np
import pytest
import tensorflow as tf

import hflib
from hflib import checkpoints

from loop_helpers import BATCH, N, assert_records_equal, assert_same_state, build, deterministic_ops, fresh, \
    sine_data, spy_on_batches  # noqa: F401 (deterministic_ops is a fixture)

STEPS = N // BATCH


@pytest.fixture(scope="module")
def sine():
    return sine_data()


def fit(updater, data, directory, **kwargs):
    batch_size = None if isinstance(data, tf.data.Dataset) else BATCH
    return hflib.fit(updater, data, **{"epochs": 2, "batch_size": batch_size, "progress": False,
                                       "checkpoint_dir": directory, "checkpoint_every": 1, **kwargs})


def files(directory):
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------ an exact resume
@pytest.mark.parametrize("kind", ["hf", "adam"])
def test_resume_mid_epoch_reproduces_an_uninterrupted_run(sine, tmp_path, deterministic_ops, kind):
    """Run A: 2 epochs × 4 updates straight through. Run B: 5 updates (mid-epoch 2), then an updater
    back in its initial state (a new process) resumes from the checkpoint to the end."""
    a = fresh(kind, 0)
    ha = fit(a, sine, tmp_path / "a", validation_data=sine)
    b = fresh(kind, 1)
    hb1 = fit(b, sine, tmp_path / "b", validation_data=sine, max_updates=5)
    assert len(hb1) == 5 and "ckpt-5.json" in files(tmp_path / "b")
    b = fresh(kind, 1)
    hb = fit(b, sine, tmp_path / "b", validation_data=sine, resume=True)
    assert_records_equal(hb.records, ha.records)
    assert_same_state(a, b)
    assert np.all(np.diff(hb["time"]) > 0)                 # time is cumulative over the interruption


def _shuffled(sine):
    tf.random.set_seed(0)                                   # the dataset's seeds depend on the global one
    return tf.data.Dataset.from_tensor_slices(sine).shuffle(N, seed=7).batch(BATCH, drop_remainder=True)


def test_resume_of_a_second_fit_call_keeps_its_data_orders(sine, tmp_path, deterministic_ops):
    """A second `fit` call shuffles in orders of its own (they depend on the update at which it
    began); its resume, in a new process, must use the same ones."""
    a = fresh("hf", 0)
    hflib.fit(a, sine, epochs=1, batch_size=BATCH, progress=False)
    ha = fit(a, sine, tmp_path / "a")
    b = fresh("hf", 1)
    hflib.fit(b, sine, epochs=1, batch_size=BATCH, progress=False)
    fit(b, sine, tmp_path / "b", max_updates=3)
    b = fresh("hf", 1)
    hb = fit(b, sine, tmp_path / "b", resume=True)
    assert json.loads((tmp_path / "b" / f"ckpt-{3 * STEPS}.json").read_text())["position"]["first_update"] == STEPS
    assert_records_equal(hb.records, ha.records)
    assert_same_state(a, b)


def test_resume_from_a_shuffled_dataset_continues_with_the_same_batches(sine, tmp_path, monkeypatch,
                                                                       deterministic_ops):
    a = fresh("hf", 0)
    seen_a = spy_on_batches(monkeypatch, a)
    ha = fit(a, _shuffled(sine), tmp_path / "a", epochs=3)
    b = fresh("hf", 1)
    seen_b = spy_on_batches(monkeypatch, b)
    fit(b, _shuffled(sine), tmp_path / "b", epochs=3, max_updates=6)       # stops in epoch 2, batch 2
    b = fresh("hf", 1)
    hb = fit(b, _shuffled(sine), tmp_path / "b", epochs=3, resume=True)
    # each run's first batch is its warm-up's, undone
    assert seen_b[1:7] + seen_b[8:] == seen_a[1:]
    assert len(set(seen_a[1:5])) == STEPS and seen_a[1:5] != seen_a[5:9]   # reshuffled each epoch
    np.testing.assert_allclose(hb["epoch"], np.arange(1, 3 * STEPS + 1) / STEPS)
    assert_records_equal(hb.records, ha.records)
    assert_same_state(a, b)


# ------------------------------------------------------------------ what a checkpoint holds
def test_checkpoint_stores_config_settings_position_and_history(sine, tmp_path):
    hf = fresh("hf")
    h = fit(hf, sine, tmp_path, max_updates=3)
    meta = json.loads((tmp_path / "ckpt-3.json").read_text(), parse_constant=_refuse)
    assert meta["config"] == json.loads(json.dumps(hf.get_config()))
    assert meta["config"]["r"] == 1.5 and meta["config"]["preconditioner"] == "martens"
    assert meta["settings"] == {"batch_size": BATCH, "examples": N, "steps_per_epoch": STEPS}
    assert meta["position"]["epoch"] == 0 and meta["position"]["batch"] == 3
    assert meta["position"]["first_update"] == 0
    assert meta["update"] == 3 and len(meta["history"]) == 3
    assert meta["history"][-1]["loss"] == h.records[-1]["loss"]


def _refuse(constant):
    raise ValueError(f"not strict JSON: {constant}")


def test_checkpoint_files_get_the_umask_permissions(sine, tmp_path):
    old = os.umask(0o027)
    try:
        fit(fresh("hf"), sine, tmp_path, max_updates=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ckpt-1.json").stat().st_mode) == 0o640


@pytest.fixture()
def saved(sine, tmp_path):
    """A folder with checkpoints 1, 2, 3 of the shared HF updater (r = 1.5, batch 50, seed 2)."""
    directory = tmp_path / "ckpt"
    fit(fresh("hf"), sine, directory, max_updates=3)
    assert [n for n in files(directory) if n.endswith(".json")] == ["ckpt-1.json", "ckpt-2.json", "ckpt-3.json"]
    return directory


@pytest.mark.parametrize("make, data_kwargs, setting", [
    (lambda: build("hf", r=3.0), {}, "r"),
    (lambda: build("hf", preconditioner="none"), {}, "preconditioner"),
    (lambda: build("hf", seed=9), {}, "seed"),
    (lambda: build("hf", initial_damping=2.0), {}, "initial_damping"),
    (lambda: fresh("hf"), {"batch_size": 25}, "batch_size"),
    (lambda: fresh("hf"), {"subset": 150}, "examples"),
])
def test_resume_with_a_changed_setting_is_refused_naming_it(sine, saved, make, data_kwargs, setting):
    x, y = sine
    n = data_kwargs.pop("subset", N)
    updater = make()
    with pytest.raises(ValueError, match=rf"\b{setting}: checkpoint"):
        fit(updater, (x[:n], y[:n]), saved, resume=True, **data_kwargs)
    assert int(updater.iterations.numpy()) == 0


def test_first_order_resume_with_another_learning_rate_is_refused(sine, tmp_path):
    fit(fresh("adam"), sine, tmp_path, max_updates=2)
    with pytest.raises(ValueError, match=r"learning_rate: checkpoint 0\.01, now 0\.02"):
        fit(build("adam", learning_rate=0.02), sine, tmp_path, resume=True)


def test_resume_says_what_it_restored(sine, saved, capsys):
    hf = fresh("hf")
    h = fit(hf, sine, saved, resume=True, max_updates=1)
    out = capsys.readouterr().out
    assert f"resumed from {saved}/ckpt-3 (update 3, epoch 0.75 of 2" in out and "λ = " in out
    assert len(h) == 4 and h.records[-1]["update"] == 4


def test_resume_on_an_empty_folder_starts_a_new_run_and_says_so(sine, tmp_path, capsys):
    h = fit(fresh("hf"), sine, tmp_path / "new", resume=True, max_updates=1)
    assert "no checkpoint" in capsys.readouterr().out and len(h) == 1


def test_a_new_run_refuses_a_folder_with_checkpoints_of_another_run(sine, saved):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    hf = fresh("hf")
    with pytest.raises(ValueError, match="resume=True"):
        fit(hf, sine, saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    # a second fit of the same updater continues its own checkpoints
    hf = fresh("hf")
    fit(hf, sine, saved.parent / "own", max_updates=2)
    fit(hf, sine, saved.parent / "own", max_updates=2)
    assert [n for n in files(saved.parent / "own") if n.endswith(".json")] == ["ckpt-2.json", "ckpt-3.json",
                                                                                 "ckpt-4.json"]


# ------------------------------------------------------------------ damaged folders
def _damage_json(directory, number, how):
    path = directory / f"ckpt-{number}.json"
    if how == "missing":
        path.unlink()
    elif how == "garbage":
        path.write_text('{"format": 1, "upd')
    else:                                                   # valid JSON, not a checkpoint
        path.write_text("[]")


def _damage_data(directory, number):
    (data,) = directory.glob(f"ckpt-{number}.data-*")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2:] = b"\xff" * (len(raw) - len(raw) // 2)
    data.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["missing", "garbage", "not_a_checkpoint", "data"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(sine, saved, damage):
    _damage_data(saved, 3) if damage == "data" else _damage_json(saved, 3, damage)
    hf = fresh("hf")
    with pytest.warns(RuntimeWarning, match=r"ckpt-3.*resumed from the older ckpt-2"):
        h = fit(hf, sine, saved, resume=True, max_updates=1)
    assert [r["update"] for r in h.records] == [1, 2, 3]
    reference = fresh("hf", 1)
    assert_records_equal(h.records, fit(reference, sine, saved.parent / "ref", max_updates=3).records)
    assert_same_state(hf, reference)


@pytest.mark.parametrize("damage", ["missing", "garbage", "data"])
def test_when_every_checkpoint_is_damaged_resume_fails_and_overwrites_nothing(sine, saved, damage):
    for number in (1, 2, 3):
        _damage_data(saved, number) if damage == "data" else _damage_json(saved, number, damage)
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    hf = fresh("hf")
    with pytest.raises(ValueError, match=r"no checkpoint in .* can be .*ckpt-3"):
        fit(hf, sine, saved, resume=True)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert int(hf.iterations.numpy()) == 0


def test_leftovers_of_an_interrupted_save_are_removed_on_resume(sine, saved):
    (saved / "ckpt-4_temp").mkdir()
    (saved / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    (saved / ".tmp-abc-ckpt-4.json").write_text('{"form')
    fit(fresh("hf"), sine, saved, resume=True, max_updates=1)
    assert not [n for n in files(saved) if "_temp" in n or n.startswith(".tmp-")]


def test_only_the_newest_checkpoints_are_kept(sine, tmp_path):
    fit(fresh("hf"), sine, tmp_path)                          # 8 updates, a checkpoint after each
    kept = {n.split(".")[0] for n in files(tmp_path)}
    assert kept == {"ckpt-6", "ckpt-7", "ckpt-8"}
    for number in (6, 7, 8):
        assert {f"ckpt-{number}.json", f"ckpt-{number}.index"} <= set(files(tmp_path))


# ------------------------------------------------------------------ interrupts and crashes
def test_interrupt_from_a_callback_returns_the_history_and_saves(sine, tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if logs["update"] == 3:
                raise KeyboardInterrupt

    hf = fresh("hf")
    h = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, progress=False, checkpoint_dir=tmp_path,
                  callbacks=[Interrupt()])
    assert h.interrupted is True and len(h) == 3
    meta = json.loads((tmp_path / "ckpt-3.json").read_text())      # saved although every epoch was the rule
    assert len(meta["history"]) == 3 and meta["position"]["batch"] == 3


def test_interrupt_inside_the_update_keeps_the_records_and_the_counter_in_step(sine, tmp_path, monkeypatch):
    hf = fresh("hf")
    calls, step = [], hf.step

    def step_then_interrupt(x, y):
        calls.append(1)
        if len(calls) == 4:                                  # warm-up, updates 1 and 2, then Ctrl-C
            raise KeyboardInterrupt
        return step(x, y)

    monkeypatch.setattr(hf, "step", step_then_interrupt)
    h = hflib.fit(hf, sine, epochs=2, batch_size=BATCH, progress=False, checkpoint_dir=tmp_path)
    assert h.interrupted is True and len(h) == 2 and int(hf.iterations.numpy()) == 2
    assert "ckpt-2.json" in files(tmp_path)
    monkeypatch.undo()
    resumed = fit(fresh("hf"), sine, tmp_path, resume=True)
    assert [r["update"] for r in resumed.records] == list(range(1, 2 * STEPS + 1))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_hooks_is_held_until_they_are_done(sine, tmp_path, signum):
    """The signal arrives after update 2 is applied: every hook still sees update 2, then the run
    ends as interrupted (SIGTERM is held when a Python handler turns it into KeyboardInterrupt, as
    the CLI does)."""
    def as_interrupt(number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, as_interrupt)
    # Python's own Ctrl-C handler, also when the test runs as a background job (a shell starts those with
    # SIGINT ignored, and an ignored signal never reaches the run)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    after = []
    try:
        send = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda b, logs: logs["update"] == 2 and os.kill(os.getpid(), signum))
        later = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: after.append(logs["update"]))
        h = hflib.fit(fresh("hf"), sine, epochs=2, batch_size=BATCH, progress=False, callbacks=[send, later],
                      checkpoint_dir=tmp_path, checkpoint_every=1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    assert h.interrupted is True and len(h) == 2 and after == [1, 2]
    assert "ckpt-2.json" in files(tmp_path) and "ckpt-3.json" not in files(tmp_path)


def test_crash_while_writing_the_json_keeps_the_previous_checkpoint(sine, saved, monkeypatch):
    """The TensorFlow files of checkpoint 4 are written, then the process dies half-way through
    its JSON file (a temporary file is left): the resume uses checkpoint 3."""
    def die_half_way(path, text):
        with open(os.path.join(os.path.dirname(path), ".tmp-x" + os.path.basename(path)), "w") as fh:
            fh.write(text[:len(text) // 2])
        raise OSError("simulated crash writing the checkpoint's JSON")

    hf = fresh("hf")
    monkeypatch.setattr(checkpoints, "atomic_write", die_half_way)
    with pytest.raises(OSError, match="simulated"):
        fit(hf, sine, saved, resume=True, max_updates=1)
    monkeypatch.undo()
    assert "ckpt-4.index" in files(saved) and "ckpt-4.json" not in files(saved)
    hf = fresh("hf")
    with pytest.warns(RuntimeWarning, match=r"ckpt-4: no ckpt-4.json.*older ckpt-3"):
        h = fit(hf, sine, saved, resume=True, max_updates=1)
    assert [r["update"] for r in h.records] == [1, 2, 3, 4]
    assert not [n for n in files(saved) if n.startswith(".tmp-")]


def test_crash_while_writing_the_tensorflow_files_keeps_the_previous_checkpoint(sine, saved, monkeypatch):
    original = tf.train.Checkpoint.write

    def write_then_crash(self, file_prefix, options=None):
        original(self, file_prefix)
        raise OSError("simulated crash after the TensorFlow files")

    monkeypatch.setattr(tf.train.Checkpoint, "write", write_then_crash)
    with pytest.raises(OSError, match="simulated"):
        fit(fresh("hf"), sine, saved, resume=True, max_updates=1)
    monkeypatch.undo()
    hf = fresh("hf")
    with pytest.warns(RuntimeWarning, match="older ckpt-3"):
        h = fit(hf, sine, saved, resume=True, max_updates=1)
    assert len(h) == 4

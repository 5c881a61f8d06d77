"""Callbacks of the training loop (layer 3). They are Keras callbacks, and Keras' own callbacks
work in `hflib.fit` too.

`fit` calls Keras' hooks in order — `on_train_begin`, `on_epoch_begin`, `on_train_batch_begin`,
`on_train_batch_end(batch, logs)`, `on_epoch_end(epoch, logs)`, `on_train_end(logs)` — with
`logs` the update's record (a dict of floats: `loss`, `damping`, `rho`, …, `update`, `epoch`,
`time`, and `val_*` when validated) and, at an epoch's end, the last record of the epoch with the
latest `val_*` values. Keras callbacks get the record without `epoch` (Keras passes the epoch
index as an argument; a record key `epoch` breaks `ModelCheckpoint`'s file-name format and
doubles `CSVLogger`'s first column). Setting `model.stop_training = True` stops the run after
the current update, as in Keras. The callbacks below also receive the loop's `run` (its updater,
History and position) through `set_run`.

Keras callbacks tested with `fit`: `EarlyStopping` (on `val_loss`/`val_error` or any record key;
`restore_best_weights` restores the model's weights only, not λ or the warm start),
`CSVLogger` (one row per epoch), `TerminateOnNaN`, `LambdaCallback`, `ModelCheckpoint` (weights
or the whole model) and `TensorBoard` (batch and epoch scalars). `TensorBoard` needs the
`tensorboard` package, which is not a dependency of hflib (`fit` refuses the callback up front
when it is missing), and reads `model.optimizer` and `model.train_function`, which only a compiled
Keras model has: `fit` sets both to None on an uncompiled model, so `write_steps_per_second=True`
(which needs `model.optimizer.iterations`) does not work. `BackupAndRestore` saves only the Keras
model's weights, not HF's λ, warm start or the data position: use `fit(checkpoint_dir=...,
resume=True)` for an exact resume. `ReduceLROnPlateau` and `LearningRateScheduler` need a
compiled Keras optimizer and do not apply.
"""
from __future__ import annotations

import importlib.util
import math
import warnings

import keras
from tqdm.auto import tqdm


class Callback(keras.callbacks.Callback):
    """A Keras callback that also sees the loop's state (`self.run`: updater, history, position)."""

    run = None

    def set_run(self, run):
        self.run = run


def prepare_for_keras(model, keras_callbacks):
    """Check that Keras' own callbacks can run on `model` in `fit` (see the module docstring)."""
    if not keras_callbacks:
        return
    if any(isinstance(c, keras.callbacks.TensorBoard) for c in keras_callbacks) and \
            importlib.util.find_spec("tensorboard") is None:
        raise ImportError("callbacks: keras.callbacks.TensorBoard needs the tensorboard package, which is not "
                          "installed (pip install tensorboard)")
    for name in ("optimizer", "train_function"):
        if not hasattr(model, name):
            setattr(model, name, None)


class Validation(Callback):
    """Evaluate on (x, y) every `every` updates (default: at the end of each epoch) and add the
    results to the update's record as `val_loss` (and `val_error` for classification)."""

    def __init__(self, x, y, every=None, evaluate=None):
        super().__init__()
        self.x, self.y, self.every, self._evaluate = x, y, every, evaluate

    def on_train_batch_end(self, batch, logs=None):
        due = (logs["update"] % self.every == 0) if self.every else self.run.last_of_epoch
        if due:
            updater = self.run.updater
            self.latest = {f"val_{k}": v for k, v in self._evaluate(updater.model, updater.loss, self.x, self.y).items()}
            logs.update(self.latest)

    def on_train_begin(self, logs=None):
        self.latest = {}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in self.latest.items():
            logs.setdefault(key, value)


class Recorder(Callback):
    """Append every update's record to the run's History (hflib's counterpart of keras' History)."""

    def on_train_batch_end(self, batch, logs=None):
        self.run.history.append(logs)


class NonFiniteWarning(Callback):
    """Warn once per run when an update met a non-finite loss, gradient or curvature product."""

    def on_train_begin(self, logs=None):
        self.warned = False

    def on_train_batch_end(self, batch, logs=None):
        if logs.get("nonfinite") and not self.warned:
            warnings.warn("hflib: a non-finite loss, gradient or curvature product was met; the step was "
                          "rejected, the parameters kept and λ raised (see the History column 'nonfinite')",
                          RuntimeWarning, stacklevel=2)
            self.warned = True


class StopAfter(Callback):
    """Stop after `updates` updates of this call, or once the run's training time reaches `seconds`."""

    def __init__(self, updates=None, seconds=None):
        super().__init__()
        self.updates, self.seconds = updates, seconds

    def on_train_begin(self, logs=None):
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if (self.updates is not None and self.count >= self.updates) or (
                self.seconds is not None and logs["time"] >= self.seconds):
            self.model.stop_training = True


class Checkpoint(Callback):
    """Save a checkpoint (`hflib.checkpoints.CheckpointStore`) every `every` updates (default: each
    epoch) and when training ends — also when it ends by an interrupt — so no work is lost."""

    def __init__(self, store, every=None):
        super().__init__()
        self.store, self.every = store, every
        self.saved_at = None

    def _save(self):
        self.store.save(self.run.history, self.run.position(), self.run.settings)
        self.saved_at = self.run.update

    def on_train_batch_end(self, batch, logs=None):
        if self.every and logs["update"] % self.every == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if not self.every:
            self._save()

    def on_train_end(self, logs=None):
        if self.run.history and self.saved_at != self.run.update:
            self._save()


class ProgressBar(Callback):
    """A `tqdm.auto` bar (a widget in Jupyter, text in a terminal) with the run's label. It counts
    updates, or seconds of the budget when the run is time-limited, and shows loss, λ, ρ, CG
    iterations and the validation error."""

    KEYS = ("loss", "damping", "rho", "cg_iters", "val_error")

    def __init__(self, label, total_updates=None, seconds=None):
        super().__init__()
        self.label, self.total_updates, self.seconds = label, total_updates, seconds

    def on_train_begin(self, logs=None):
        if self.seconds is not None:
            self.bar = tqdm(total=round(self.seconds, 1), desc=self.label, unit="s", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}{postfix}]")
        else:
            self.bar = tqdm(total=self.total_updates, desc=self.label, unit="update", dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is not None:
            self.bar.n = round(min(logs["time"], self.seconds), 1)
            self.bar.refresh()
        else:
            self.bar.update(1)
        self.bar.set_postfix({k: f"{logs[k]:.4g}" for k in self.KEYS
                              if k in logs and not (isinstance(logs[k], float) and math.isnan(logs[k]))},
                             refresh=False)

    def on_train_end(self, logs=None):
        self.bar.close()

"""The training loop shared by HF and the first-order baselines: data order, progress,
timing, validation, callbacks, checkpoints and the History of every update.

Timing rule, the same for every optimizer: `time` is the cumulative wall time
spent in updates (each update synchronised to the host), excluding data
preparation, validation and checkpointing.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
import warnings

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from . import losses as _losses
from .curvature import check_inputs, trainable_variables


class History:
    """One record (a dict) per update; `history["loss"]` gives a NumPy column (NaN where absent)."""

    def __init__(self, records=None):
        self.records = list(records or [])

    def append(self, record):
        self.records.append(dict(record))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        return np.array([_as_float(r.get(key, math.nan)) for r in self.records], dtype=float)

    def keys(self):
        seen = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def last(self, key, default=math.nan):
        """The most recent value of `key` (e.g. the last validation error)."""
        for r in reversed(self.records):
            if key in r:
                return r[key]
        return default

    def to_json(self, path):
        _atomic_write(path, json.dumps(self.records, indent=1, default=_as_float))

    @classmethod
    def from_json(cls, path):
        with open(path) as fh:
            return cls(json.load(fh))

    def to_csv(self, path):
        keys = self.keys()
        with _atomic_open(path) as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            for r in self.records:
                writer.writerow({k: r.get(k, "") for k in keys})

    def __repr__(self):
        return f"History({len(self)} updates, keys={self.keys()})"


def _as_float(v):
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]                    # a 0-d array (e.g. np.asarray of a bool tensor) → its scalar
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (str,)):
        return v
    return float(v)


def _atomic_write(path, text):
    with _atomic_open(path) as fh:
        fh.write(text)


class _atomic_open:
    """Write to a temporary file in the same folder, then rename over `path`."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(self.path))
        self.fh = os.fdopen(fd, "w", newline="")
        return self.fh

    def __exit__(self, exc_type, exc, tb):
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


class Callback:
    """Hooks called by `fit`. Set `trainer.stop_training = True` to stop early."""

    def on_update_end(self, trainer, record):
        pass

    def on_epoch_end(self, trainer, epoch, history):
        pass


class Trainer(tf.Module):
    """Base of `HessianFree` and `FirstOrder`: subclasses implement `_update(x, y) -> dict`."""

    def __init__(self, model, loss, seed=0, name=None):
        super().__init__(name=name)
        self.model = model
        self.loss = _losses.get(loss)
        trainable_variables(model)
        self.seed = int(seed)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.history = History()
        self.stop_training = False
        self._eval_fn = None

    # ------------------------------------------------------------------ one update
    def step(self, x, y):
        """One update on a batch; returns its record (floats)."""
        x = check_inputs(x)
        stats = self._update(x, tf.convert_to_tensor(y))
        record = {k: _as_float(np.asarray(v)) for k, v in stats.items()}
        self.iterations.assign_add(1)
        return record

    def _update(self, x, y):  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must implement _update")

    def _compiled_update(self):
        """The `tf.function` that `_update` calls (subclasses set `self._compiled`)."""
        return self._compiled

    def trace(self, x, y):
        """Compile and warm up the update for this batch shape, then restore every variable,
        so that `fit`'s clock measures training, not tracing and graph optimisation (the
        same rule for every optimizer). Leaves the state exactly as it was."""
        state = self._state_variables()
        saved = [tf.identity(v) for v in state]
        self._update(check_inputs(x), tf.convert_to_tensor(y))
        for v, value in zip(state, saved):
            v.assign(value)

    def _state_variables(self):
        """Everything an update may change: the model's variables and the trainer's own."""
        return list(self.model.variables) + list(self.variables) + list(
            getattr(getattr(self, "optimizer", None), "variables", []))

    def tracing_count(self):
        """How often the compiled update was traced (stays 1 when nothing retraces)."""
        return self._compiled_update().experimental_get_tracing_count()

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, x, y, batch_size=2000):
        """Mean loss and, for softmax cross-entropy, the classification error on (x, y)."""
        x = check_inputs(x)
        y = tf.convert_to_tensor(y)
        if self._eval_fn is None:
            self._eval_fn = tf.function(self._eval_batch, reduce_retracing=True)
        n = int(x.shape[0])
        total_loss, wrong = 0.0, 0.0
        for start in range(0, n, batch_size):
            l_sum, w_sum = self._eval_fn(x[start:start + batch_size], y[start:start + batch_size])
            total_loss += float(l_sum)
            wrong += float(w_sum)
        out = {"loss": total_loss / n}
        if self.loss.name == "softmax_cross_entropy":
            out["error"] = wrong / n
        return out

    def _eval_batch(self, x, y):
        z = self.model(x)
        targets = self.loss.targets(y, z)
        loss_sum = tf.reduce_sum(self.loss.per_example(z, targets))
        wrong = tf.reduce_sum(tf.cast(tf.argmax(z, -1) != tf.argmax(targets, -1), z.dtype))
        return loss_sum, wrong

    # ------------------------------------------------------------------ the loop
    def fit(self, data, epochs=1, batch_size=None, validation_data=None, callbacks=(), progress=True,
            validation_every=None, checkpoint_dir=None, checkpoint_every=None, resume=False,
            max_updates=None, max_seconds=None):
        """Train for `epochs` passes over `data`; returns the `History`.

        data: a tuple (x, y) of arrays (shuffled every epoch by a seeded,
          checkpointed order) or a `tf.data.Dataset` of (x, y) batches.
        validation_data: (x, y); evaluated every `validation_every` updates
          (default: at the end of each epoch), excluded from `time`.
        checkpoint_dir: write a checkpoint (atomically) every `checkpoint_every`
          updates (default: each epoch); `resume=True` continues from the last one.
        max_updates, max_seconds: stop early after this many updates / training seconds.
        """
        if not (isinstance(epochs, int) and epochs >= 1):
            raise ValueError(f"epochs: expected an integer ≥ 1, got {epochs!r}")
        batches_per_epoch, batches = self._batches(data, batch_size)
        manager = self._checkpoint_manager(checkpoint_dir) if checkpoint_dir else None
        if manager is not None and resume:
            self.restore(manager)
        self.stop_training = False
        start_update = int(self.iterations.numpy())
        total = epochs * batches_per_epoch if batches_per_epoch else None
        if max_updates is not None:
            cap = start_update + max_updates
            total = min(total, cap) if total else cap
        elapsed = self.history.last("time", 0.0)
        bar = tqdm(total=total, initial=start_update, disable=not progress, desc=type(self).__name__,
                   dynamic_ncols=True, leave=True)
        warned = False
        if batches_per_epoch:
            self.trace(*next(iter(batches(0))))
        try:
            for epoch in range(start_update // (batches_per_epoch or 1), epochs):
                skip = start_update - epoch * batches_per_epoch if batches_per_epoch else 0
                for b, (xb, yb) in enumerate(batches(epoch)):
                    if b < skip:
                        continue
                    t0 = time.perf_counter()
                    record = self.step(xb, yb)
                    elapsed += time.perf_counter() - t0
                    record.update(update=int(self.iterations.numpy()), epoch=epoch + (b + 1) / (batches_per_epoch or (b + 1)),
                                  time=elapsed)
                    if not record.get("accepted", True) and record.get("nonfinite", False) and not warned:
                        warnings.warn("hflib: a non-finite loss, gradient or curvature product was met; the step "
                                      "was rejected, parameters kept and λ raised (see History 'nonfinite')",
                                      RuntimeWarning, stacklevel=2)
                        warned = True
                    last_of_epoch = batches_per_epoch and b + 1 == batches_per_epoch
                    if validation_data is not None and (
                            (validation_every and record["update"] % validation_every == 0)
                            or (not validation_every and last_of_epoch)):
                        record.update({f"val_{k}": v for k, v in self.evaluate(*validation_data).items()})
                    self.history.append(record)
                    bar.update(1)
                    bar.set_postfix(self._postfix(record), refresh=False)
                    for cb in callbacks:
                        cb.on_update_end(self, record)
                    if manager is not None and checkpoint_every and record["update"] % checkpoint_every == 0:
                        self.save(manager)
                    done = (max_updates is not None and record["update"] - start_update >= max_updates) or (
                        max_seconds is not None and elapsed >= max_seconds)
                    if self.stop_training or done:
                        break
                if manager is not None and not checkpoint_every:
                    self.save(manager)
                for cb in callbacks:
                    cb.on_epoch_end(self, epoch, self.history)
                if self.stop_training or done:
                    break
        finally:
            bar.close()
        return self.history

    def _postfix(self, record):
        keys = ("loss", "damping", "rho", "cg_iters", "val_error")
        return {k: f"{record[k]:.4g}" for k in keys if k in record}

    def _batches(self, data, batch_size):
        """(batches per epoch, epoch -> iterator of (x, y))."""
        if isinstance(data, tf.data.Dataset):
            n = int(data.cardinality().numpy())
            return (n if n > 0 else 0), (lambda epoch: iter(data))
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError("data: expected (x, y) arrays or a tf.data.Dataset of (x, y) batches, "
                            f"got {type(data).__name__}")
        x, y = data
        x = check_inputs(x, "data")
        y = tf.convert_to_tensor(y)
        n = int(x.shape[0])
        if batch_size is None:
            raise ValueError("batch_size: required when data are arrays")
        if not (isinstance(batch_size, int) and 1 <= batch_size <= n):
            raise ValueError(f"batch_size: expected an integer in [1, {n}], got {batch_size!r}")
        per_epoch = n // batch_size

        def batches(epoch):
            order = data_order(n, self.seed, epoch)
            for b in range(per_epoch):
                idx = order[b * batch_size:(b + 1) * batch_size]
                yield tf.gather(x, idx), tf.gather(y, idx)

        return per_epoch, batches

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self):
        """A `tf.train.Checkpoint` of the model and this trainer's state."""
        return tf.train.Checkpoint(model=self.model, trainer=self)

    def _checkpoint_manager(self, directory):
        return tf.train.CheckpointManager(self.checkpoint(), os.fspath(directory), max_to_keep=3)

    def save(self, manager):
        """Write the History (atomically), then the checkpoint beside it. TF updates its index file
        only after the checkpoint files are complete, and the History is on disk before that, so a
        crash at any point leaves the last good checkpoint, with its History, as the latest."""
        number = int(self.iterations.numpy())
        prefix = getattr(manager, "_prefix", os.path.join(manager.directory, "ckpt"))
        self.history.to_json(f"{prefix}-{number}.history.json")
        path = manager.save(checkpoint_number=number)
        if not os.path.exists(path + ".history.json"):      # a manager with another naming scheme
            self.history.to_json(path + ".history.json")
        kept = {os.path.abspath(c + ".history.json") for c in manager.checkpoints}
        for name in os.listdir(manager.directory):           # Histories of checkpoints the manager dropped
            full = os.path.abspath(os.path.join(manager.directory, name))
            if name.endswith(".history.json") and full not in kept:
                os.remove(full)
        return path

    def restore(self, manager):
        """Restore the latest checkpoint (if any) and its History."""
        path = manager.latest_checkpoint
        if path is None:
            return None
        manager.checkpoint.restore(path).assert_existing_objects_matched()
        if os.path.exists(path + ".history.json"):
            self.history = History.from_json(path + ".history.json")
        return path


def data_order(n, seed, epoch):
    """The shuffled order of epoch `epoch`: a pure function of (seed, epoch), so a resumed run
    replays exactly the batches the interrupted one would have seen."""
    keys = tf.random.stateless_uniform([n], seed=[seed, epoch], dtype=tf.float32)
    return tf.argsort(keys, stable=True)


class FirstOrder(Trainer):
    """SGD, Adam, … (Keras optimizers) in the same loop and under the same timing rules as HF."""

    def __init__(self, model, loss, optimizer="sgd", learning_rate=0.1, seed=0, **kwargs):
        super().__init__(model, loss, seed=seed)
        if isinstance(optimizer, str):
            import keras
            optimizer = keras.optimizers.get({"class_name": optimizer,
                                              "config": {"learning_rate": learning_rate, **kwargs}})
        self.optimizer = optimizer
        self.optimizer.build(model.trainable_variables)
        self._compiled = tf.function(self._train_step, reduce_retracing=True)

    def _train_step(self, x, y):
        with tf.GradientTape() as tape:
            value = self.loss.value(self.model(x), y)
        grads = tape.gradient(value, self.model.trainable_variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads]) & tf.math.is_finite(value)
        if finite:
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return {"loss": value, "accepted": finite, "nonfinite": ~finite}

    def _update(self, x, y):
        return self._compiled(x, y)

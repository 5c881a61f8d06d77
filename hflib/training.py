"""The training loop (layer 3): one `fit` for every updater — `HessianFree`, `FirstOrder` (SGD,
Adam, …) or any object with the same small interface.

An *updater* has `model`, `loss`, `seed`, `iterations` (a tf.Variable), `step(x, y) -> dict`,
`state_variables()` and `get_config() -> dict`, and is a `tf.Module` (so checkpoints find its state).

Timing rule, the same for every updater: `time` is the cumulative wall time spent in updates
(each update returns its record to the host), excluding compilation (`warm_up` runs one update
first and undoes it), data preparation, validation and checkpointing.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time

import keras
import tensorflow as tf

from . import callbacks as _callbacks
from . import checks
from . import losses as _losses
from .checkpoints import CheckpointStore
from .history import History


def fit(updater, data, epochs=1, batch_size=None, *, validation_data=None, validation_every=None, callbacks=(),
        progress=True, max_updates=None, max_seconds=None, checkpoint_dir=None, checkpoint_every=None,
        resume=False, steps_per_epoch=None):
    """Train `updater` for `epochs` passes over `data`; returns the run's `History`.

    data: (x, y) arrays — shuffled each epoch in an order that is a pure function of
      (updater.seed, the update counter when the run began, epoch), cut into `batch_size` batches
      (a last partial batch is dropped) — or a `tf.data.Dataset` of (x, y) batches (one pass is an
      epoch; one of unknown length is counted first; an infinite one needs `steps_per_epoch`).
    epochs: passes of this run (as in Keras, a second `fit` call trains `epochs` more, in new
      orders; its History's `epoch` column counts its own passes, `update` goes on). With
      `resume=True` the run stored in `checkpoint_dir` continues towards `epochs`.
    validation_data, validation_every: (x, y) evaluated every N updates (default: after each epoch)
      into `val_loss` / `val_error`; excluded from `time`.
    callbacks: Keras callbacks (see `hflib.callbacks`), called after validation and the History's
      record, before the budget, the progress bar and the checkpoints.
    progress: show a progress bar (True, or a label for it).
    max_updates, max_seconds: stop after this many updates of this call / seconds of training.
    checkpoint_dir, checkpoint_every, resume: checkpoints every N updates (default: each epoch) and
      at the end (an interrupt included); `resume=True` restores the newest intact one and
      continues (refusing changed settings; see `hflib.checkpoints`). A new run refuses a folder
      holding checkpoints of another run.

    Ctrl-C (or SIGTERM turned into KeyboardInterrupt by the caller) ends the run after the update
    in progress; the History is returned with `history.interrupted = True`, and a checkpoint is
    written when `checkpoint_dir` is set.
    """
    epochs = checks.integer(epochs, "epochs", low=1)
    max_updates = checks.optional_integer(max_updates, "max_updates", low=1)
    max_seconds = checks.optional_positive(max_seconds, "max_seconds")
    validation_every = checks.optional_integer(validation_every, "validation_every", low=1)
    checkpoint_every = checks.optional_integer(checkpoint_every, "checkpoint_every", low=1)
    resume = checks.boolean(resume, "resume")
    source = batches(data, batch_size, updater, steps_per_epoch)
    run = Run(updater, source, epochs)
    store = CheckpointStore(checkpoint_dir, updater) if checkpoint_dir is not None else None
    if resume and store is None:
        raise ValueError("resume: needs checkpoint_dir")
    if resume:
        run.restore(store)
    elif store is not None:
        store.check_fresh_start()
    hooks = _hooks(run, validation_data, validation_every, callbacks, progress, max_updates, max_seconds,
                   store, checkpoint_every)
    _loop(run, hooks)
    return run.history


def _hooks(run, validation_data, validation_every, callbacks, progress, max_updates, max_seconds, store,
           checkpoint_every):
    """hflib's callbacks for the keyword options, in their order, then the user's."""
    hooks = []
    if validation_data is not None:
        x, y = _checked_arrays(validation_data, run.updater, "validation_data")
        hooks.append(_callbacks.Validation(x, y, validation_every, evaluate))
    hooks += [_callbacks.Recorder(), _callbacks.NonFiniteWarning()]
    hooks += list(callbacks)
    if max_updates is not None or max_seconds is not None:
        hooks.append(_callbacks.StopAfter(max_updates, max_seconds))
    if progress:
        label = progress if isinstance(progress, str) else type(run.updater).__name__
        total = run.remaining_updates(max_updates)
        hooks.append(_callbacks.ProgressBar(label, total, max_seconds))
    if store is not None:
        hooks.append(_callbacks.Checkpoint(store, checkpoint_every))
    for hook in hooks:
        if not isinstance(hook, keras.callbacks.Callback):
            raise TypeError(f"callbacks: expected keras.callbacks.Callback instances, got {type(hook).__name__}")
    _callbacks.prepare_for_keras(run.updater.model, [h for h in hooks if not isinstance(h, _callbacks.Callback)])
    for hook in hooks:
        hook.set_model(run.updater.model)
        hook.set_params({"epochs": run.epochs, "steps": run.source.steps_per_epoch, "verbose": 0})
        if isinstance(hook, _callbacks.Callback):
            hook.set_run(run)
    return hooks


def _loop(run, hooks):
    """Epochs of batches: one update each, its record through every hook in order. An interrupt
    (Ctrl-C, or SIGTERM when a handler turns it into KeyboardInterrupt) is held until the update,
    its hooks and any epoch-end hooks are done, so an applied update is never left unrecorded."""
    model = run.updater.model
    model.stop_training = False
    run.history.interrupted = False
    logs, begun = {}, False
    try:
        with _deferred_interrupt():
            warm_up(run.updater, *run.source.first())
        _call(hooks, "on_train_begin", None, {})
        begun = True
        while run.epoch < run.epochs and not model.stop_training:
            _call(hooks, "on_epoch_begin", run.epoch, {})
            for b, (xb, yb) in run.source.epoch(run.epoch, skip=run.batch, offset=run.first_update):
                _call(hooks, "on_train_batch_begin", b, {})
                with _deferred_interrupt():
                    logs = run.step(xb, yb)
                    _call(hooks, "on_train_batch_end", b, logs)
                    if run.last_of_epoch:
                        _call(hooks, "on_epoch_end", run.epoch - 1, dict(logs))
                if model.stop_training:
                    break
    except KeyboardInterrupt:
        run.history.interrupted = True
    finally:
        if begun:
            with _deferred_interrupt():
                _call(hooks, "on_train_end", None, {**logs, "interrupted": run.history.interrupted})


def _call(hooks, name, index, logs):
    """Call hook `name` on every hook. hflib's callbacks get the record itself; Keras callbacks a
    copy without `epoch` (Keras passes the epoch index itself, and a record key `epoch` breaks
    ModelCheckpoint's file-name format and doubles CSVLogger's first column)."""
    keras_logs = None
    for hook in hooks:
        if isinstance(hook, _callbacks.Callback):
            hook_logs = logs
        else:
            if keras_logs is None:
                keras_logs = {k: v for k, v in logs.items() if k != "epoch"}
            hook_logs = keras_logs
        method = getattr(hook, name)
        method(hook_logs) if index is None else method(index, hook_logs)


def warm_up(updater, x, y):
    """Compile the update for this batch shape and run it once, then restore every variable the
    update changed, so that a timed loop measures training, not tracing."""
    state = updater.state_variables()
    saved = [tf.identity(v) for v in state]
    try:
        updater.step(x, y)
    finally:
        for v, value in zip(state, saved):
            v.assign(value)


@contextlib.contextmanager
def _deferred_interrupt():
    """Hold SIGINT (Ctrl-C) and SIGTERM until the block is done, so an interrupt never leaves an
    applied update unrecorded or a checkpoint half written; then call the handler that was
    installed (SIGINT's default raises KeyboardInterrupt). SIGTERM is held only when a Python
    handler is installed (e.g. the CLI's); otherwise it ends the process as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught, previous = [], {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = handler
            signal.signal(signum, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            previous[signum](signum, None)


class Run:
    """The state of one training run: updater, data source, History and position
    (epoch, batches done in it, the updater's counter when the run began), and the settings a
    resumed run must keep."""

    def __init__(self, updater, source, epochs):
        self.updater, self.source, self.epochs = updater, source, epochs
        self.history = History()
        self.epoch, self.batch, self.time = 0, 0, 0.0
        self.first_update = self.update
        self.settings = {"batch_size": source.batch_size, "examples": source.examples,
                         "steps_per_epoch": source.steps_per_epoch}

    @property
    def update(self):
        return int(self.updater.iterations.numpy())

    @property
    def last_of_epoch(self):
        """True right after an epoch's last batch (the position has moved to the next epoch)."""
        return self.batch == 0 and self.epoch > 0

    def position(self):
        return {"epoch": self.epoch, "batch": self.batch, "time": self.time, "first_update": self.first_update}

    def remaining_updates(self, max_updates=None):
        left = (self.epochs - self.epoch) * self.source.steps_per_epoch - self.batch
        return left if max_updates is None else min(left, max_updates)

    def step(self, x, y):
        """One timed update; returns its record with `update`, `epoch` and `time` added."""
        t0 = time.perf_counter()
        record = self.updater.step(x, y)
        self.time += time.perf_counter() - t0
        per_epoch = self.source.steps_per_epoch
        self.batch += 1
        record.update(update=self.update, epoch=self.epoch + self.batch / per_epoch, time=self.time)
        if self.batch == per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return record

    def restore(self, store):
        restored = store.restore(self.settings)
        if restored is None:
            print(f"hflib: no checkpoint in {store.directory}; starting a new run", flush=True)
            return
        number, self.history, position = restored
        self.epoch, self.batch, self.time = position["epoch"], position["batch"], position["time"]
        self.first_update = position["first_update"]
        print(f"hflib: resumed from {store.directory}/ckpt-{number} (update {number}, epoch "
              f"{self.epoch + self.batch / self.source.steps_per_epoch:.3g} of {self.epochs}, "
              f"λ = {_state(self.updater)})", flush=True)


def _state(updater):
    damping = getattr(updater, "damping", None)
    return f"{float(damping.numpy()):.4g}" if damping is not None else "n/a"


# ------------------------------------------------------------------ data sources
def batches(data, batch_size, updater, steps_per_epoch=None):
    """The batch source for `data`: `ArrayBatches` for (x, y), `DatasetBatches` for a Dataset."""
    if isinstance(data, tf.data.Dataset):
        if batch_size is not None:
            raise ValueError("batch_size: a tf.data.Dataset is already batched; leave batch_size=None")
        return DatasetBatches(data, steps_per_epoch)
    if steps_per_epoch is not None:
        raise ValueError("steps_per_epoch: only for a tf.data.Dataset")
    x, y = _checked_arrays(data, updater, "data")
    return ArrayBatches(x, y, batch_size, updater.seed)


def _checked_arrays(data, updater, name):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name}: expected (x, y) arrays" + (" or a tf.data.Dataset of (x, y) batches"
                                                             if name == "data" else "")
                        + f", got {type(data).__name__}")
    model = updater.model
    x = checks.inputs(data[0], f"{name}: x", dtype=checks.model_dtype(model))
    y = checks.labels(updater.loss, data[1], x, model)
    checks.same_length(x, y, name)
    return x, y


class ArrayBatches:
    """Shuffled mini-batches of in-memory arrays. Epoch e of a run that began at update u is in the
    order `data_order(n, seed, u + e)`: a fresh run's epochs use orders 0, 1, …, and a later
    `fit` call on the same updater new ones (a call that did d ≥ 1 updates used at most d orders)."""

    def __init__(self, x, y, batch_size, seed):
        self.x, self.y, self.seed = x, y, seed
        self.examples = int(x.shape[0])
        if batch_size is None:
            raise ValueError("batch_size: required when data are arrays")
        self.batch_size = checks.integer(batch_size, "batch_size", low=1, high=self.examples)
        self.steps_per_epoch = self.examples // self.batch_size

    def first(self):
        return self.x[:self.batch_size], self.y[:self.batch_size]

    def epoch(self, epoch, skip=0, offset=0):
        order = data_order(self.examples, self.seed, offset + epoch)
        for b in range(skip, self.steps_per_epoch):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield b, (tf.gather(self.x, idx), tf.gather(self.y, idx))


class DatasetBatches:
    """The batches of a `tf.data.Dataset`. A finite dataset's pass is an epoch (its length is
    counted once when TensorFlow does not know it); an infinite one needs `steps_per_epoch`.
    Resuming at epoch e replays the dataset's first e passes without training, so a seeded
    shuffle continues exactly (for a dataset built the same way under the same global seed:
    TensorFlow derives a seeded shuffle's seeds from both)."""

    def __init__(self, dataset, steps_per_epoch=None):
        self.dataset, self.batch_size = dataset, None
        cardinality = int(dataset.cardinality().numpy())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            if steps_per_epoch is None:
                raise ValueError("steps_per_epoch: required for an infinite tf.data.Dataset (e.g. one with repeat())")
            self.steps_per_epoch = checks.integer(steps_per_epoch, "steps_per_epoch", low=1)
            self._stream = iter(dataset)
        else:
            if cardinality == tf.data.UNKNOWN_CARDINALITY:
                cardinality = int(dataset.reduce(0, lambda count, _: count + 1).numpy())
            if cardinality == 0:
                raise ValueError("data: the tf.data.Dataset is empty")
            self.steps_per_epoch = (cardinality if steps_per_epoch is None else
                                    checks.integer(steps_per_epoch, "steps_per_epoch", low=1, high=cardinality))
            self._stream = None
        self.examples = None
        self._passes = 0

    def first(self):
        element = next(iter(self.dataset))
        if not (isinstance(element, (tuple, list)) and len(element) == 2):
            raise TypeError("data: expected a tf.data.Dataset of (x, y) batches")
        return element

    def epoch(self, epoch, skip=0, offset=0):
        """The batches of pass `epoch` (`offset` is for arrays; a dataset's own shuffle goes on)."""
        if self._stream is not None:                        # infinite: one stream across epochs
            if self._passes == 0:
                for _ in range(epoch * self.steps_per_epoch + skip):
                    next(self._stream)
                self._passes = 1
            for b in range(skip, self.steps_per_epoch):
                yield b, next(self._stream)
            return
        while self._passes < epoch:                          # replay earlier passes on resume
            for _ in self.dataset:
                pass
            self._passes += 1
        self._passes += 1
        for b, element in enumerate(self.dataset.take(self.steps_per_epoch)):
            if b >= skip:
                yield b, element


def data_order(n, seed, epoch):
    """The shuffled order of epoch `epoch`: a pure function of (seed, epoch), so a resumed run
    replays exactly the batches the interrupted one would have seen."""
    keys = tf.random.stateless_uniform([n], seed=[seed, epoch], dtype=tf.float32)
    return tf.argsort(keys, stable=True)


# ------------------------------------------------------------------ evaluation
def evaluate(model, loss, x, y, batch_size=2000):
    """Mean loss and, for softmax cross-entropy, the classification error on (x, y)."""
    loss = _losses.get(loss)
    x = checks.inputs(x, dtype=checks.model_dtype(model))
    y = checks.labels(loss, y, x, model)
    n = checks.same_length(x, y, "y")
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    total, wrong = 0.0, 0.0
    for start in range(0, n, batch_size):
        l_sum, w_sum = _evaluate_batch(model, loss, x[start:start + batch_size], y[start:start + batch_size])
        total += float(l_sum)
        wrong += float(w_sum)
    out = {"loss": total / n}
    if loss.name == "softmax_cross_entropy":
        out["error"] = wrong / n
    return out


@tf.function(reduce_retracing=True)
def _evaluate_batch(model, loss, x, y):
    z = model(x, training=False)
    targets = loss.targets(y, z)
    wrong = tf.reduce_sum(tf.cast(tf.argmax(z, -1) != tf.argmax(targets, -1), z.dtype))
    return tf.reduce_sum(loss.per_example(z, targets)), wrong


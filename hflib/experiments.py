"""The report's experiments as named presets, and the runners shared by the notebooks, the CLI and
the benchmarks (layer 4).

A preset names a task (data, network, loss), HF's batch size and the first-order baselines'
settings. Its `hf` options are only those that differ from `HFConfig`'s defaults, each with the
reason in `why`. Every runner honours quick mode (``HFLIB_QUICK=1`` or ``quick=True``): less
data and fewer epochs, the same code. Runners return `Run`s (a History and what produced it).
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from . import checks, data, models
from .baselines import FirstOrder
from .history import History
from .optimizer import REPORT_ALGORITHM, HessianFree
from .training import fit

QUICK_ENV = "HFLIB_QUICK"
_TRUE_WORDS = {"1", "true", "yes"}
OPTIMIZERS = ("hf", "sgd", "adam")


def quick_mode(quick=None):
    """`quick` if given, else whether ``HFLIB_QUICK`` is "1", "true" or "yes" (any case)."""
    if quick is not None:
        return checks.boolean(quick, "quick")
    return os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE_WORDS


@dataclasses.dataclass(frozen=True)
class Preset:
    """A task and the settings that train it; `hf` holds only what differs from `HFConfig`."""

    name: str
    description: str
    network: str                      # a builder in hflib.models, called with seed=
    loss: str
    batch_size: int                   # HF's batch
    epochs: int                       # lecture / full mode
    quick_epochs: int
    hf: dict
    why: str
    sgd: dict                         # FirstOrder settings: learning_rate, batch_size, extra options
    adam: dict

    def build(self, seed=0):
        """A fresh network of this preset."""
        if self.network == "autoencoder":
            return models.sparse_init(models.deep_autoencoder(seed=seed), seed=seed)
        if self.network == "autoencoder_small":
            return models.sparse_init(models.deep_autoencoder((784, 64, 16), seed=seed), seed=seed)
        return getattr(models, self.network)(seed=seed)


MNIST_CG_CAP = 5      # CG iterations per update in the MNIST presets (see their `why`)

PRESETS = {p.name: p for p in (
    Preset("sine", "report §V.A: noisy sine, 1-15-15-1 ReLU, squared error", "sine_mlp", "squared_error",
           batch_size=1000, epochs=100, quick_epochs=20,
           hf={"initial_damping": 0.01, "damping_min": 1e-6, "r": 1.01, "window": "report"},
           why="the report's Fig. 2 setting (r = 1.01, its CG window with t = 3 minimum steps); a batch is half "
               "of the 2000 points, so the mini-batch floor of λ only slows this regression: measured, this "
               "preset reaches a loss of 0.0056 after 5 epochs, HFConfig's defaults after 42 (both end at the "
               "noise floor 0.005). λ₀ = 0.01 was the best of {1, 0.1, 0.01}",
           sgd={"learning_rate": 0.3, "batch_size": 100}, adam={"learning_rate": 1e-2, "batch_size": 100}),
    Preset("mnist-mlp", "report §V.B: MNIST, 784-800-10 ReLU, softmax cross-entropy", "mnist_mlp",
           "softmax_cross_entropy", batch_size=1000, epochs=20, quick_epochs=1, hf={"max_iters": MNIST_CG_CAP},
           why=f"at most {MNIST_CG_CAP} CG iterations per update: at this batch the iterations after the fifth buy no "
               "test error (measured, one epoch: 2.92% test error in 4.1 s of training against 2.91% in 10.4 s with "
               "Martens' rule alone, which stops after 15 on average; benchmarks/bench_defaults.py); the rest is "
               "HFConfig's defaults",
           sgd={"learning_rate": 0.1, "batch_size": 100}, adam={"learning_rate": 1e-3, "batch_size": 128}),
    Preset("mnist-cnn", "MNIST, a small CNN (three stride-2 3×3 convolutions, Dense 64)", "mnist_cnn",
           "softmax_cross_entropy", batch_size=1000, epochs=10, quick_epochs=1, hf={"max_iters": MNIST_CG_CAP},
           why=f"at most {MNIST_CG_CAP} CG iterations per update, as for the MLP (measured, one epoch: 2.37% test "
               "error in 15.8 s of training against 2.79% in 54.6 s with Martens' rule alone, 28 iterations on "
               "average; benchmarks/bench_defaults.py); the rest is HFConfig's defaults",
           sgd={"learning_rate": 0.1, "batch_size": 100}, adam={"learning_rate": 1e-3, "batch_size": 128}),
    Preset("autoencoder", "Martens (2010): MNIST deep autoencoder 784-1000-500-250-30, sparse init, "
           "sigmoid cross-entropy", "autoencoder", "sigmoid_cross_entropy", batch_size=1000, epochs=10,
           quick_epochs=1, hf={"initial_damping": 45.0, "damping_min": 1e-6, "weight_decay": 2e-5,
                               "max_iters": 10},
           why="Martens' own settings (λ₀ = 45, no floor, L2 weight cost 2e-5); measured after 20 updates at batch "
               "1000, λ₀ = 45 without a floor reached a test reconstruction loss of 131.6 against 143.8 with the "
               "floor 0.1 and 201 with λ₀ = 1 and the floor. At most 10 CG iterations per update (not Martens'): "
               "on two cores an update then costs about 1 s instead of 5, and in the same training "
               "seconds HF ends lower (benchmarks/bench_autoencoder.py runs both: after 150 s a test loss of 61.6 in "
               "158 updates of 0.95 s against 81.5 in 29 of 5.4 s)",
           sgd={"learning_rate": 0.1, "batch_size": 100, "momentum": 0.9, "nesterov": True},
           adam={"learning_rate": 1e-3, "batch_size": 128}),
)}


def preset(name):
    """The preset called `name` (see `PRESETS`)."""
    if isinstance(name, Preset):
        return name
    return PRESETS[checks.choice(name, "preset", tuple(PRESETS))]


@dataclasses.dataclass
class Run:
    """One training run: its label, History, trained model, updater and settings."""

    label: str
    history: History
    model: object
    updater: object
    settings: dict


# ------------------------------------------------------------------ data
def mnist_data(quick=None, path=None, flatten=True, n_train=2000, n_test=1000, seed=0, center=True):
    """MNIST as ((x_train, y_train), (x_test, y_test)); quick mode keeps stratified subsets
    of `n_train` training and `n_test` test images.

    `center` (the classification tasks' default) subtracts the training images' per-pixel mean:
    the damping λI of eq. (20) is not invariant to a shift of the inputs, and centred pixels train
    better (measured, one MLP epoch at B = 1000 with HFConfig's defaults: 2.91% test error against
    3.44% on [0, 1] pixels; Adam, learning rate 1e-2: 3.41% against 3.94%; the CNN preset 2.37% against
    2.53%; benchmarks/bench_defaults.py). In a long run the best errors hardly move (1200-s race, one
    run each: HF 1.60% against 1.62%, Adam 1.50% against 1.33%; bench_time_to_accuracy.py).
    The autoencoder keeps [0, 1] pixels, its targets."""
    (x, y), (xt, yt) = data.load_mnist(path, flatten=flatten, center=center)
    if quick_mode(quick):
        x, y = data.subset(x, y, n_train, seed=seed)
        xt, yt = data.subset(xt, yt, n_test, seed=seed)
    return (x, y), (xt, yt)


def task_data(name, quick=None, path=None, seed=0, center=None):
    """((x, y), (x_val, y_val)) for a preset: the sine set is its own validation set; MNIST's is the
    test set; the autoencoder's targets are its inputs. `center` overrides whether MNIST's pixels
    are centred (default: the classification tasks yes, the autoencoder no; see `mnist_data`)."""
    p = preset(name)
    if p.name == "sine":
        x, y = data.make_sine_data(seed=seed)
        return (x, y), (x, y)
    autoencoder = p.name == "autoencoder"
    center = not autoencoder if center is None else center
    (x, y), (xt, yt) = mnist_data(quick, path, flatten=p.network != "mnist_cnn", seed=seed, center=center)
    if autoencoder:
        return (x, x), (xt, xt)
    return (x, y), (xt, yt)


# ------------------------------------------------------------------ one run
def updater(name, optimizer="hf", model=None, seed=0, learning_rate=None, **hf_options):
    """The updater of a preset: HF with the preset's options (then `hf_options`), or SGD/Adam with
    the preset's learning rate (or `learning_rate`). Returns (updater, batch size)."""
    p = preset(name)
    checks.choice(optimizer, "optimizer", OPTIMIZERS)
    model = p.build(seed) if model is None else model
    if optimizer == "hf":
        return HessianFree(model, p.loss, seed=seed, **{**p.hf, **hf_options}), p.batch_size
    if hf_options:
        raise TypeError(f"{sorted(hf_options)}: HF options do not apply to {optimizer}")
    settings = dict(getattr(p, optimizer))
    batch = settings.pop("batch_size")
    rate = settings.pop("learning_rate")
    rate = rate if learning_rate is None else learning_rate
    return FirstOrder(model, p.loss, optimizer, learning_rate=rate, seed=seed, **settings), batch


def run(name, optimizer="hf", *, epochs=None, seconds=None, max_updates=None, batch_size=None, eval_every=None,
        seed=0, quick=None, task=None, label=None, progress=True, learning_rate=None, **hf_options):
    """Train one fresh network of preset `name` and record the validation metrics.

    `seconds` bounds the training time (evaluation excluded), `epochs` the passes (default: the
    preset's, quick or full) and `max_updates` the updates; validation runs every `eval_every`
    updates (default: ten times per epoch). `task` may pass preloaded `task_data`.
    """
    p = preset(name)
    quick = quick_mode(quick)
    (x, y), validation = task if task is not None else task_data(p, quick, seed=seed)
    trainer, default_batch = updater(p, optimizer, seed=seed, learning_rate=learning_rate, **hf_options)
    batch = min(batch_size or default_batch, len(x))
    per_epoch = len(x) // batch
    epochs = epochs or (p.quick_epochs if quick else p.epochs)
    label = label or _label(optimizer, trainer, batch)
    history = fit(trainer, (x, y), epochs=epochs, batch_size=batch, validation_data=validation,
                  validation_every=eval_every or max(1, per_epoch // 10), max_seconds=seconds,
                  max_updates=max_updates, progress=label if progress else False)
    settings = {"preset": p.name, "optimizer": optimizer, "batch_size": batch, **trainer.get_config()}
    return Run(label, history, trainer.model, trainer, settings)


def _label(optimizer, trainer, batch):
    if optimizer == "hf":
        return f"HF (batch {batch})"
    rate = float(trainer.optimizer.learning_rate.numpy())
    return f"{'SGD' if optimizer == 'sgd' else 'Adam'} (η={rate:g}, batch {batch})"


def time_to(history, key, target, below=True, axis="time"):
    """The first `axis` value (time, epoch or update) at which `key` reaches `target`; NaN if never."""
    values, where = history[key], history[axis]
    ok = values <= target if below else values >= target
    ok &= ~np.isnan(values)
    return float(where[np.argmax(ok)]) if ok.any() else math.nan


# ------------------------------------------------------------------ §V.A: noisy sine
def sine(epochs=None, learning_rates=(0.01, 0.03, 0.1, 0.3), seed=0, quick=None, progress=True, **hf_options):
    """HF (the preset's batch 1000) against SGD (batch 100, the best rate of a small grid) on the
    1-15-15-1 ReLU net. Returns {"hf": Run, "sgd": Run, "sgd_grid": {rate: final loss}}; each
    History holds the full-training-set loss as `val_loss` after every epoch."""
    p = PRESETS["sine"]
    task = task_data(p, seed=seed)
    every = len(task[0][0]) // p.batch_size
    runs = {"hf": run(p, "hf", epochs=epochs, seed=seed, quick=quick, task=task, eval_every=every,
                      progress=progress, **hf_options)}
    grid, best = {}, None
    for rate in learning_rates:
        r = run(p, "sgd", epochs=epochs, seed=seed, quick=quick, task=task, learning_rate=rate,
                eval_every=len(task[0][0]) // p.sgd["batch_size"], progress=progress)
        grid[rate] = float(r.history["val_loss"][-1])
        if best is None or grid[rate] < grid[best[0]] or math.isnan(grid[best[0]]):
            best = (rate, r)
    runs["sgd"], runs["sgd_grid"] = best[1], grid
    return runs


def sine_summary(runs):
    """Epochs and seconds each method needs to reach a training loss both reach, and final losses."""
    hf, sgd = runs["hf"].history, runs["sgd"].history
    target = max(np.nanmin(hf["val_loss"]), np.nanmin(sgd["val_loss"])) * 1.05
    out = {"target_loss": float(target)}
    for name, h in (("hf", hf), ("sgd", sgd)):
        out[name] = {"epochs": time_to(h, "val_loss", target, axis="epoch"),
                     "seconds": time_to(h, "val_loss", target, axis="time"),
                     "updates": time_to(h, "val_loss", target, axis="update"),
                     "final_loss": float(h["val_loss"][~np.isnan(h["val_loss"])][-1]),
                     "train_seconds": float(h["time"][-1])}
    return out


# ------------------------------------------------------------------ §V.B: MNIST
def mnist_compare(hf_batch_sizes=(75, 250, 1000), seconds=None, quick=None, seed=0, progress=True, task=None,
                  hf_options=None):
    """The report's Fig. 3: test error against training time for HF at several batch sizes and for
    SGD and Adam (the preset's settings), all under the same time budget."""
    quick = quick_mode(quick)
    task = task if task is not None else task_data("mnist-mlp", quick, seed=seed)
    seconds = seconds or (20 if quick else 1200)
    runs = {}
    for batch in hf_batch_sizes:
        options = {**({"r": 1.01} if batch < 150 else {}), **(hf_options or {})}
        runs[f"hf{batch}"] = run("mnist-mlp", "hf", batch_size=batch, seconds=seconds, quick=quick, seed=seed,
                                 task=task, progress=progress, **options)
    for name in ("sgd", "adam"):
        runs[name] = run("mnist-mlp", name, seconds=seconds, quick=quick, seed=seed, task=task, progress=progress)
    return runs


def damping_trace(batch_size=75, rs=(1.5, 1.01), updates=None, quick=None, seed=0, progress=True, task=None,
                  **hf_options):
    """The report's Fig. 1: the λ trace of HF at a small batch for several factors r. `hf_options`
    override the preset (e.g. ``damping_min=1e-6`` for the report's setting without the default floor)."""
    quick = quick_mode(quick)
    task = task if task is not None else task_data("mnist-mlp", quick, seed=seed)
    updates = updates or (30 if quick else 800)
    epochs = -(-updates * batch_size // len(task[0][0]))
    return {f"r={r}": run("mnist-mlp", "hf", batch_size=batch_size, epochs=epochs, max_updates=updates,
                          eval_every=10 ** 9, quick=quick, seed=seed, task=task, label=f"r = {r}",
                          progress=progress, **{**hf_options, "r": r})
            for r in rs}


def pcg_vs_cg(batch_size=100, seconds=None, quick=None, seed=0, progress=True, task=None):
    """The report's Fig. 4: HF with Martens' preconditioner against plain CG."""
    quick = quick_mode(quick)
    task = task if task is not None else task_data("mnist-mlp", quick, seed=seed)
    seconds = seconds or (15 if quick else 600)
    return {name: run("mnist-mlp", "hf", batch_size=batch_size, seconds=seconds, quick=quick, seed=seed, task=task,
                      preconditioner=pre, label=label, progress=progress)
            for name, pre, label in (("pcg", "martens", "PCG (Martens)"), ("cg", "none", "CG"))}


def autoencoder(optimizers=("hf", "adam"), seconds=None, quick=None, seed=0, progress=True, task=None,
                hf_options=None):
    """Martens' (2010) deep autoencoder on MNIST without pretraining: HF against first-order methods
    under the same time budget. Quick mode uses a small 784-64-16 autoencoder; `val_loss` is the
    reconstruction loss on the test images."""
    quick = quick_mode(quick)
    p = PRESETS["autoencoder"]
    if quick:
        p = dataclasses.replace(p, network="autoencoder_small")
    task = task if task is not None else task_data(p, quick, seed=seed)
    seconds = seconds or (15 if quick else 1200)
    return {name: run(p, name, seconds=seconds, epochs=1000, quick=quick, seed=seed, task=task, progress=progress,
                      eval_every=5 if name == "hf" else 50, label="HF" if name == "hf" else None,
                      **((hf_options or {}) if name == "hf" else {}))
            for name in optimizers}


__all__ = ["PRESETS", "Preset", "REPORT_ALGORITHM", "Run", "autoencoder", "damping_trace", "mnist_compare",
           "mnist_data", "pcg_vs_cg", "preset", "quick_mode", "run", "sine", "sine_summary", "task_data",
           "time_to", "updater"]

"""Runners for the report's experiments, shared by the notebooks, the CLI and the benchmarks.

Every runner returns `Run`s (a History plus what produced it) and honours quick
mode (`HFLIB_QUICK=1`, or `quick=True`): fewer epochs and less data, same code.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import data, models
from .optimizer import HessianFree
from .training import FirstOrder, History


@dataclasses.dataclass
class Run:
    """One training run: its label, History, trained model, trainer and settings."""

    label: str
    history: History
    model: object
    trainer: object
    settings: dict


def is_quick(quick=None):
    """`quick` if given, else the `HFLIB_QUICK` environment variable."""
    return data.quick_mode() if quick is None else bool(quick)


def time_to(history, key, target, below=True, axis="time"):
    """The first `axis` value (time, epoch or update) at which `key` reaches `target`; NaN if never."""
    values, where = history[key], history[axis]
    ok = values <= target if below else values >= target
    ok &= ~np.isnan(values)
    return float(where[np.argmax(ok)]) if ok.any() else math.nan


# ------------------------------------------------------------------ §V.A: noisy sine
def sine(epochs=None, hf_batch=1000, sgd_batch=100, learning_rates=(0.01, 0.03, 0.1, 0.3), damping=0.01, r=1.01,
         seed=0, quick=None, progress=False, **hf_options):
    """HF (batch 1000) vs SGD (batch 100, best rate of a small grid) on the 1-15-15-1 ReLU net.

    Returns {"hf": Run, "sgd": Run, "sgd_grid": {rate: final training loss}}. Each
    History holds the full-training-set loss as `val_loss` after every epoch.
    The report's Fig. 2 setting: r = 1.01 and 3 minimum CG steps with its window.
    """
    quick = is_quick(quick)
    epochs = epochs or (20 if quick else 100)
    x, y = data.make_sine_data(seed=seed)
    hf_options = {"min_iters": 3, "window": "report", **hf_options}
    model = models.sine_mlp(seed=seed)
    hf = HessianFree(model, "squared_error", damping=damping, r=r, seed=seed, **hf_options)
    hf.fit((x, y), epochs=epochs, batch_size=hf_batch, validation_data=(x, y), progress=progress)
    runs = {"hf": Run("HF", hf.history, model, hf, dict(batch_size=hf_batch, damping=damping, r=r, seed=seed,
                                                                      **hf_options))}
    grid, best = {}, None
    for rate in learning_rates:
        m = models.sine_mlp(seed=seed)
        sgd = FirstOrder(m, "squared_error", "sgd", learning_rate=rate, seed=seed)
        sgd.fit((x, y), epochs=epochs, batch_size=sgd_batch, validation_data=(x, y), progress=progress)
        grid[rate] = float(sgd.history["val_loss"][-1])
        if best is None or grid[rate] < grid[best[0]] or math.isnan(grid[best[0]]):
            best = (rate, Run(f"SGD (η={rate})", sgd.history, m, sgd, dict(batch_size=sgd_batch, learning_rate=rate)))
    runs["sgd"] = best[1]
    runs["sgd_grid"] = grid
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
def mnist_data(quick=None, path=None, flatten=True, n_train=2000, n_test=1000, seed=0):
    """MNIST as ((x_train, y_train), (x_test, y_test)); quick mode keeps stratified subsets
    of `n_train` training and `n_test` test images."""
    (x, y), (xt, yt) = data.load_mnist(path, flatten=flatten)
    if is_quick(quick):
        x, y = data.subset(x, y, n_train, seed=seed)
        xt, yt = data.subset(xt, yt, n_test, seed=seed)
    return (x, y), (xt, yt)


def mnist_run(optimizer="hf", batch_size=1000, seconds=None, epochs=None, quick=None, eval_every=None,
              model="mlp", seed=0, mnist=None, label=None, progress=False, learning_rate=None, max_updates=None,
              **hf_options):
    """Train one model on MNIST with HF, SGD or Adam and record test error against training time.

    `seconds` bounds the training time (evaluation excluded); `epochs` the passes; `max_updates`
    the number of updates. The test
    set is evaluated every `eval_every` updates (default: ten times per epoch).
    `mnist` may pass preloaded data as returned by `mnist_data`.
    """
    quick = is_quick(quick)
    (x, y), (xt, yt) = mnist if mnist is not None else mnist_data(quick, flatten=model == "mlp")
    batch_size = min(batch_size, len(x))
    per_epoch = len(x) // batch_size
    eval_every = eval_every or max(1, per_epoch // 10)
    epochs = epochs or (1 if quick else 1000)
    net = models.mnist_mlp(seed=seed) if model == "mlp" else models.mnist_cnn(seed=seed)
    loss = "softmax_cross_entropy"
    if optimizer == "hf":
        hf_options = {"damping": 1.0, "damping_min": 0.1, **hf_options}
        trainer = HessianFree(net, loss, seed=seed, **hf_options)
        settings = dict(batch_size=batch_size, **hf_options)
    elif optimizer in ("sgd", "adam"):
        learning_rate = learning_rate or {"sgd": 0.1, "adam": 1e-3}[optimizer]
        trainer = FirstOrder(net, loss, optimizer, learning_rate=learning_rate, seed=seed)
        settings = dict(batch_size=batch_size, learning_rate=learning_rate)
    else:
        raise ValueError(f"optimizer: expected 'hf', 'sgd' or 'adam', got {optimizer!r}")
    trainer.fit((x, y), epochs=epochs, batch_size=batch_size, validation_data=(xt, yt),
                validation_every=eval_every, max_seconds=seconds, max_updates=max_updates, progress=progress)
    label = label or (f"HF (batch {batch_size})" if optimizer == "hf" else
                      f"{optimizer.upper() if optimizer == 'sgd' else 'Adam'} (η={settings['learning_rate']}, batch {batch_size})")
    return Run(label, trainer.history, net, trainer, settings)


def mnist_compare(hf_batch_sizes=(75, 250, 1000), seconds=None, quick=None, seed=0, progress=False, mnist=None,
                  hf_options=None):
    """The report's Fig. 3: test error against training time for HF at several batch sizes,
    SGD (η = 0.1, batch 100) and Adam (1e-3, batch 128), all under the same time budget."""
    quick = is_quick(quick)
    mnist = mnist if mnist is not None else mnist_data(quick)
    seconds = seconds or (20 if quick else 1200)
    runs = {}
    for batch in hf_batch_sizes:
        options = {"r": 1.01 if batch < 150 else 1.5, **(hf_options or {})}
        runs[f"hf{batch}"] = mnist_run("hf", batch, seconds, quick=quick, seed=seed, mnist=mnist,
                                       progress=progress, **options)
    runs["sgd"] = mnist_run("sgd", 100, seconds, quick=quick, seed=seed, mnist=mnist, progress=progress)
    runs["adam"] = mnist_run("adam", 128, seconds, quick=quick, seed=seed, mnist=mnist, progress=progress)
    return runs


def damping_trace(batch_size=75, rs=(1.5, 1.01), updates=None, quick=None, seed=0, progress=False, mnist=None):
    """The report's Fig. 1: the λ trace of HF at a small batch for several factors r."""
    quick = is_quick(quick)
    mnist = mnist if mnist is not None else mnist_data(quick)
    updates = updates or (30 if quick else 800)
    runs = {}
    for r in rs:
        run = mnist_run("hf", batch_size, quick=quick, seed=seed, mnist=mnist, progress=progress, r=r,
                        label=f"r = {r}", epochs=-(-updates * batch_size // len(mnist[0][0])),
                        eval_every=10 ** 9, max_updates=updates)
        run.history.records = run.history.records[:updates]
        runs[f"r={r}"] = run
    return runs


def pcg_vs_cg(batch_size=100, seconds=None, quick=None, seed=0, progress=False, mnist=None):
    """The report's Fig. 4: HF with Martens' preconditioner against plain CG."""
    quick = is_quick(quick)
    mnist = mnist if mnist is not None else mnist_data(quick)
    seconds = seconds or (15 if quick else 600)
    return {name: mnist_run("hf", batch_size, seconds, quick=quick, seed=seed, mnist=mnist, progress=progress,
                            preconditioner=pre, label=label)
            for name, pre, label in (("pcg", "martens", "PCG (Martens)"), ("cg", "none", "CG"))}


def autoencoder(optimizers=("hf", "adam"), sizes=None, seconds=None, quick=None, batch_size=None, seed=0,
                progress=False, mnist=None, hf_options=None):
    """Martens' (2010) deep autoencoder on MNIST without pretraining: HF against Adam.

    The net is 784-1000-500-250-30 and its mirror (logistic units, linear code), trained with
    the sigmoid cross-entropy matching loss on the pixel intensities, from Martens' sparse
    initialisation. Quick mode uses a small 784-64-16 autoencoder. `val_loss` is measured
    on the test images.
    """
    quick = is_quick(quick)
    (x, _), (xt, _) = mnist if mnist is not None else mnist_data(quick)
    sizes = sizes or ((784, 64, 16) if quick else (784, 1000, 500, 250, 30))
    seconds = seconds or (15 if quick else 1200)
    runs = {}
    for name in optimizers:
        net = models.sparse_init(models.deep_autoencoder(sizes, seed=seed), seed=seed)
        if name == "hf":
            options = {"damping": 45.0, **(hf_options or {})}
            trainer = HessianFree(net, "sigmoid_cross_entropy", seed=seed, **options)
            batch, label = batch_size or 1000, "HF"
        else:
            trainer = FirstOrder(net, "sigmoid_cross_entropy", name, learning_rate=1e-3 if name == "adam" else 0.1,
                                 seed=seed)
            batch, label = 128 if name == "adam" else 100, name.upper() if name == "sgd" else "Adam"
            options = {"learning_rate": trainer.optimizer.learning_rate.numpy().item()}
        batch = min(batch, len(x))
        trainer.fit((x, x), epochs=1000, batch_size=batch, validation_data=(xt, xt),
                    validation_every=5 if name == "hf" else 50, max_seconds=seconds, progress=progress)
        runs[name] = Run(label, trainer.history, net, trainer, dict(batch_size=batch, sizes=sizes, **options))
    return runs

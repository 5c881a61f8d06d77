"""Where HF wins: updates to 97% and 97.5% test accuracy against the batch size (issue 11).

MNIST MLP 784-800-10 at batch 1,000, 10,000 and 60,000 (full batch): HF with HFConfig's defaults,
Adam (learning rates 1e-3, 3e-3, 1e-2, 3e-2) and SGD with Nesterov momentum 0.9 (0.03, 0.1, 0.3, 1), the best
rate of each grid reported (fewest updates to 97.5%, else the lowest error). The test set is evaluated
after every update; a run stops at 97.5% or at its update cap. On a cluster the cost of training is the
number of sequential updates; the table also gives data passes (examples whose gradient was taken, over
60,000) and wall time on this CPU, whichever way they come out.

    python benchmarks/bench_batch_study.py                 # full study (about an hour on 2 cores)
    python benchmarks/bench_batch_study.py --quick         # 4,000-image subset, small caps; no RESULTS.md entry
"""
from __future__ import annotations

from common import ROOT, is_quick, parser, recorded_argument, write_recorded, write_results  # noqa: I001

import json
import math
import os
import time

import keras
import numpy as np

import hflib
from hflib import experiments, models

GRIDS = {"adam": (1e-3, 3e-3, 1e-2, 3e-2), "sgd": (0.03, 0.1, 0.3, 1.0)}
TARGETS = (0.03, 0.025)


class StopAtTarget(keras.callbacks.Callback):
    """Stop once the test error reaches the last target."""

    def on_train_batch_end(self, batch, logs=None):
        if logs.get("val_error", 1.0) <= TARGETS[-1]:
            self.model.stop_training = True


def one_run(method, batch, rate, task, cap, seed=0, hf_options=None):
    (x, y), (xt, yt) = task
    model = models.mnist_mlp(seed=seed)
    if method == "hf":
        updater = hflib.HessianFree(model, "softmax_cross_entropy", seed=seed, **(hf_options or {}))
    elif method == "adam":
        updater = hflib.FirstOrder(model, "softmax_cross_entropy", "adam", learning_rate=rate, seed=seed)
    else:
        updater = hflib.FirstOrder(model, "softmax_cross_entropy", "sgd", learning_rate=rate, seed=seed,
                                   momentum=0.9, nesterov=True)
    per_epoch = len(x) // batch
    t0 = time.perf_counter()
    history = hflib.fit(updater, (x, y), epochs=-(-cap // per_epoch), batch_size=batch, validation_data=(xt, yt),
                        validation_every=1, max_updates=cap, callbacks=[StopAtTarget()], progress=False)
    wall = time.perf_counter() - t0
    err = history["val_error"]
    out = {"method": method, "batch": batch, "rate": rate, "updates": len(history), "best_error": float(np.nanmin(err)),
           "train_seconds": float(history["time"][-1]), "wall_seconds": wall,
           "cg_mean": float(np.mean(history["cg_iters"])) if method == "hf" else None}
    for target in TARGETS:
        at = experiments.time_to(history, "val_error", target, axis="update")
        out[f"updates_to_{target}"] = None if math.isnan(at) else int(at)
        out[f"seconds_to_{target}"] = (None if math.isnan(at) else
                                       float(experiments.time_to(history, "val_error", target, axis="time")))
        out[f"passes_to_{target}"] = None if math.isnan(at) else at * batch / len(x)
    out["curve"] = [None if math.isnan(e) else round(float(e), 5) for e in err]
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}), flush=True)
    return out


def best(runs):
    """The run with the fewest updates to the last target, else the lowest error."""
    key = f"updates_to_{TARGETS[-1]}"
    return min(runs, key=lambda r: (r[key] is None, r[key] or 0, r["best_error"]))


def main():
    p = parser(__doc__)
    recorded_argument(p, "batch_study.json", "every run's test-error curve; the notebooks plot it")
    args = p.parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
    task = experiments.mnist_data(quick, n_train=4000)
    batches = (500, 4000) if quick else (1000, 10000, 60000)
    caps = ({"hf": 6, "adam": 10, "sgd": 10} if quick else
            {"hf": {1000: 240, 10000: 80, 60000: 50}, "adam": {1000: 1200, 10000: 400, 60000: 300},
             "sgd": {1000: 1200, 10000: 400, 60000: 300}})
    rows, runs = [], []
    for batch in batches:
        for method in ("hf", "adam", "sgd"):
            cap = caps[method] if quick else caps[method][batch]
            grid = [one_run(method, batch, rate, task, cap) for rate in ((None,) if method == "hf" else GRIDS[method])]
            runs += grid
            rows.append(best(grid))
    lines = ["| batch | method | best rate | updates to 97% | updates to 97.5% | data passes to 97.5% | "
             "seconds to 97.5% (this CPU) | best test error (updates run) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = lambda v, f="{:.0f}": "—" if v is None else f.format(v)
        name = {"hf": "HF (defaults)", "adam": "Adam", "sgd": "SGD + Nesterov 0.9"}[r["method"]]
        lines.append(f"| {r['batch']:,} | {name} | {fmt(r['rate'], '{:g}')} | {fmt(r['updates_to_0.03'])} | "
                     f"{fmt(r['updates_to_0.025'])} | {fmt(r['passes_to_0.025'], '{:.1f}')} | "
                     f"{fmt(r['seconds_to_0.025'])} | {100 * r['best_error']:.2f}% ({r['updates']}) |")
    lines += ["", "A run stops at 97.5% test accuracy or at its cap of updates (HF "
              f"{caps['hf']}, Adam and SGD {caps['adam']}); '—' means not reached within the cap. Data passes count "
              "the examples whose gradient was taken (HF's curvature products on the same batch are not counted). "
              f"Grids: Adam {GRIDS['adam']}, SGD {GRIDS['sgd']}; every run's curve is in `{os.path.relpath(args.json, ROOT)}`."]
    if not args.no_write:
        write_recorded(args.json, runs)
    write_results("bench_batch_study.py — updates to 97% / 97.5% against the batch size", lines, args)


if __name__ == "__main__":
    main()

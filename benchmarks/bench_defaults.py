"""HFConfig's defaults against the alternatives they were chosen over (issue 11: defaults that work).

The library's first use — `HessianFree(model, loss)` with no options — for one epoch at batch 1000 on
the MNIST MLP (from arrays and from a tf.data.Dataset) and the CNN, against the defaults this version
replaced (λ₀ = 45, Martens' demo, and no floor of λ) and λ₀ = 1 without a floor; the sine task with the
defaults and with its preset; the deep autoencoder with the defaults and with its preset. Target: ≤ 3.0%
test error after one MLP epoch (the report's own code: 4.76%). The MNIST presets differ from the defaults only
by a cap of 5 CG iterations per update; the script measures them beside the defaults, and the cap's cost at
batch 10,000 (updates to 97.5% test accuracy, the defaults against the cap). MNIST's pixels are centred by
the training mean (`experiments.mnist_data`); rows on [0, 1] pixels, and Adam both ways, show what that buys.
The target is judged on seed 0 and reported with the mean over three seeds.

    python benchmarks/bench_defaults.py            # about 20 minutes on 2 cores
    python benchmarks/bench_defaults.py --quick    # subsets; no RESULTS.md entry
"""
from __future__ import annotations

from common import is_quick, parser, write_results  # noqa: I001

import dataclasses

from bench_batch_study import one_run

import numpy as np

import hflib
from hflib import data, experiments

OLD = {"initial_damping": 45.0, "damping_min": 1e-6}        # hflib 0.1's HFConfig defaults
NO_FLOOR = {"initial_damping": 1.0, "damping_min": 1e-6}
CAP = experiments.MNIST_CG_CAP                                # the MNIST presets' CG cap
SEEDS = (0, 1, 2)
ADAM_RATES = (3e-3, 1e-2)                                     # the batch study's grid at batch 1000: best 1e-2


def run(task, label, options, *, epochs=1, max_updates=None, dataset=False, preset=None, quick=False, seed=0,
        center=None):
    name = preset or {"mlp": "mnist-mlp", "cnn": "mnist-cnn", "sine": "sine", "ae": "autoencoder"}[task]
    p = experiments.preset(name)
    if preset is None:
        p = dataclasses.replace(p, hf={})                    # the library's defaults, not the preset's
    if quick and task == "ae":
        p = dataclasses.replace(p, network="autoencoder_small")
    (x, y), validation = experiments.task_data(p, quick, seed=seed, center=center)
    updater, batch = experiments.updater(p, "hf", seed=seed, **options)
    batch = min(batch, len(x))
    train = data.make_dataset(x, y, batch, drop_remainder=True, seed=seed) if dataset else (x, y)
    history = hflib.fit(updater, train, epochs=epochs, batch_size=None if dataset else batch, max_updates=max_updates,
                        progress=False)
    metrics = hflib.evaluate(updater.model, p.loss, *validation)
    lam = history["damping"]
    return {"task": task, "label": label, "updates": len(history), "seconds": float(history["time"][-1]),
            "cg": float(np.mean(history["cg_iters"])), "lam_min": float(lam.min()), "lam_final": float(lam[-1]),
            "error": metrics.get("error"), "loss": metrics["loss"]}


def adam_epoch(task, learning_rate):
    """Test error of Adam after one MLP epoch at batch 1000 (the batch study's best rate there: 1e-2)."""
    (x, y), validation = task
    adam, _ = experiments.updater("mnist-mlp", "adam", learning_rate=learning_rate)
    hflib.fit(adam, (x, y), epochs=1, batch_size=min(1000, len(x)), progress=False)
    return hflib.evaluate(adam.model, "softmax_cross_entropy", *validation)["error"]


def main():
    args = parser(__doc__).parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
    rows = [
        run("mlp", "defaults (arrays)", {}, quick=quick),
        run("mlp", "defaults (tf.data.Dataset)", {}, dataset=True, quick=quick),
        run("mlp", "previous defaults: λ₀ = 45, no floor", OLD, quick=quick),
        run("mlp", "λ₀ = 1, no floor", NO_FLOOR, quick=quick),
        run("mlp", "defaults, [0, 1] pixels (arrays)", {}, center=False, quick=quick),
        run("mlp", f"mnist-mlp preset: max_iters {CAP} (arrays)", {}, preset="mnist-mlp", quick=quick),
        run("mlp", f"mnist-mlp preset: max_iters {CAP} (tf.data.Dataset)", {}, dataset=True, preset="mnist-mlp",
            quick=quick),
        run("cnn", "defaults", {}, quick=quick),
        run("cnn", "previous defaults", OLD, quick=quick),
        run("cnn", f"mnist-cnn preset: max_iters {CAP}", {}, preset="mnist-cnn", quick=quick),
        run("cnn", f"mnist-cnn preset, [0, 1] pixels", {}, preset="mnist-cnn", center=False, quick=quick),
        run("sine", "defaults, 20 epochs", {}, epochs=20, quick=quick),
        run("sine", "sine preset, 20 epochs", {}, epochs=20, preset="sine", quick=quick),
        run("ae", "defaults, 20 updates", {}, epochs=20, max_updates=20, quick=quick),
        run("ae", "autoencoder preset, 20 updates", {}, epochs=20, max_updates=20, preset="autoencoder", quick=quick),
    ]
    lines = ["| task | settings | updates | test error | validation loss | mean CG its | λ min → final | training s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = "—" if r["error"] is None else f"{100 * r['error']:.2f}%"
        lines.append(f"| {r['task']} | {r['label']} | {r['updates']} | {err} | {r['loss']:.4g} | {r['cg']:.1f} | "
                     f"{r['lam_min']:.3g} → {r['lam_final']:.3g} | {r['seconds']:.1f} |")
    big = experiments.mnist_data(quick, n_train=4000)
    big_batch, cap = (1000, 8) if quick else (10_000, 60)
    caps = [one_run("hf", big_batch, None, big, cap, hf_options=o) for o in ({}, {"max_iters": CAP})]
    by_label = {r["label"]: r for r in rows}
    mlp = [by_label[f"defaults ({source})"]["error"] for source in ("arrays", "tf.data.Dataset")]
    raw = by_label["defaults, [0, 1] pixels (arrays)"]["error"]
    mlp_arrays, mlp_dataset, cnn = (by_label[f"{preset} preset: max_iters {CAP}{source}"] for preset, source in
                                    (("mnist-mlp", " (arrays)"), ("mnist-mlp", " (tf.data.Dataset)"), ("mnist-cnn", "")))
    seeds = {0: mlp} | {s: [run("mlp", "", {}, dataset=d, seed=s, quick=quick)["error"] for d in (False, True)]
                        for s in SEEDS[1:]}
    means = np.mean(list(seeds.values()), axis=0)
    lines += ["", f"Target (defaults, one MLP epoch at batch 1000, ≤ 3.0% from arrays and from a Dataset): "
              f"{100 * mlp[0]:.2f}% / {100 * mlp[1]:.2f}% → {'met' if max(mlp) <= 0.03 else 'missed'} "
              f"(seeds {', '.join(map(str, SEEDS))}: mean {100 * means[0]:.2f}% / {100 * means[1]:.2f}%; on [0, 1] "
              f"pixels {100 * raw:.2f}% from arrays). "
              "MNIST: batch 1000, one epoch, test set, pixels centred by the training mean (`experiments.mnist_data`) "
              "unless the row says [0, 1]; sine: batch 1000, loss on all 2000 points (noise floor 0.005); "
              "autoencoder: batch 1000, sigmoid cross-entropy per image on the test images ([0, 1] pixels). Defaults = "
              "`HFConfig()` (λ₀ = 1, floor of λ 100/B); 'previous' = λ₀ 45 and a floor of 1e-6. The MNIST presets "
              f"(the defaults with max_iters {CAP}): MLP {100 * mlp_arrays['error']:.2f}% / "
              f"{100 * mlp_dataset['error']:.2f}% in {mlp_arrays['seconds']:.1f} / {mlp_dataset['seconds']:.1f} "
              f"training s, CNN {100 * cnn['error']:.2f}% in {cnn['seconds']:.1f} s."]
    lines += ["", "The defaults' seeds (model initialisation, batch order; MLP, one epoch at batch 1000):", "",
              "| seed | arrays | tf.data.Dataset |", "|---|---|---|"]
    lines += [f"| {s} | {100 * e[0]:.2f}% | {100 * e[1]:.2f}% |" for s, e in seeds.items()]
    lines += [f"| mean | {100 * means[0]:.2f}% | {100 * means[1]:.2f}% |"]
    lines += ["", "Centred against [0, 1] pixels for Adam (MLP, one epoch at batch 1000, test error):", "",
              "| learning rate | centred | [0, 1] |", "|---|---|---|"]
    tasks = [experiments.mnist_data(quick, center=c) for c in (True, False)]
    lines += [f"| {rate:g} | " + " | ".join(f"{100 * adam_epoch(t, rate):.2f}%" for t in tasks) + " |"
              for rate in ADAM_RATES]
    lines += ["", f"The cap at batch {big_batch:,} (MLP, test set after every update, at most {cap} updates, a run "
              "stops at 97.5% test accuracy):", "",
              "| settings | updates to 97% | updates to 97.5% | mean CG its | training s | best test error |",
              "|---|---|---|---|---|---|"]
    for label, r in zip(("defaults", f"max_iters {CAP}"), caps):
        fmt = lambda v: "—" if v is None else f"{v:.0f}"
        lines.append(f"| {label} | {fmt(r['updates_to_0.03'])} | {fmt(r['updates_to_0.025'])} | {r['cg_mean']:.1f} | "
                     f"{r['train_seconds']:.1f} | {100 * r['best_error']:.2f}% |")
    write_results("bench_defaults.py — HFConfig's defaults against the alternatives", lines, args)


if __name__ == "__main__":
    main()

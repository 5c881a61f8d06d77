"""Martens' (2010) deep autoencoder without pretraining: HF (his preset) against Adam and SGD + Nesterov.

The 784-1000-500-250-30 autoencoder of `experiments.PRESETS["autoencoder"]` (sparse initialisation, sigmoid
cross-entropy), trained from the same start by HF with Martens' settings (batch 1000, λ₀ = 45, no floor of λ,
weight cost 2e-5) and the preset's cap of 10 CG iterations per update, by HF without the cap (Martens' stopping
rule alone), Adam (batch 128, η = 1e-3) and SGD with Nesterov momentum 0.9 (batch 100, η = 0.1), each for
the same number of training seconds (evaluation excluded) on all 60,000 training images; the test
reconstruction loss is measured on the 10,000 test images. Notebook 08 (Step 8) plots the recording.

    nice python benchmarks/bench_autoencoder.py                  # 150 s per method: about 13 minutes on 2 cores
    python benchmarks/bench_autoencoder.py --seconds 600         # a longer race
    python benchmarks/bench_autoencoder.py --quick               # 784-64-16 on 2,000 images; no recording
"""
from __future__ import annotations

from common import is_quick, parser, recorded_argument, write_recorded, write_results  # noqa: I001

import dataclasses
import json
import time

import numpy as np

import hflib
from hflib import HFConfig, experiments
from hflib.history import strict_json

KEYS = ("update", "epoch", "time", "loss", "val_loss", "damping", "cg_iters", "rate")
SHOWN = 8            # test digits whose reconstructions are recorded


def main():
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, default=150.0, help="training seconds per method")
    recorded_argument(p, "autoencoder.json", "curves and reconstructions; notebook 08 plots it")
    args = p.parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
    seconds = 4.0 if quick else args.seconds
    pre = experiments.PRESETS["autoencoder"]
    task = experiments.task_data(pre, quick)
    x_test = task[1][0]
    runs = {}
    t_start = time.perf_counter()
    p_ae = dataclasses.replace(pre, network="autoencoder_small") if quick else pre
    rule = {"max_iters": HFConfig().max_iters}              # the preset without its CG cap: Martens' rule decides
    for name, optimizer, every, label, options in (
            ("hf", "hf", 10, "HF", {}), ("hf_rule", "hf", 5, "HF, Martens' CG rule alone", rule),
            ("adam", "adam", 100, "Adam", {}), ("sgd", "sgd", 100, "SGD + Nesterov", {})):
        run = experiments.run(p_ae, optimizer, seconds=seconds, epochs=1000, quick=quick, task=task, eval_every=every,
                              label=label, **options)
        z = np.asarray(run.model(x_test), dtype=np.float64)
        recon = 1.0 / (1.0 + np.exp(-z))
        h = run.history
        runs[name] = {
            "label": run.label, "settings": {k: v for k, v in run.settings.items()
                                             if isinstance(v, (int, float, str, bool, type(None)))},
            "updates": len(h), "train_seconds": float(h["time"][-1]),
            "final_test_loss": float(hflib.evaluate(run.model, run.updater.loss, x_test, x_test)["loss"]),
            "test_squared_error": float(np.mean(np.sum((recon - x_test) ** 2, axis=1))),
            "reconstructions": np.round(recon[:SHOWN], 3).tolist(),
            "history": strict_json([{k: r[k] for k in KEYS if k in r} for r in h.records]),
        }
        print(json.dumps({k: v for k, v in runs[name].items() if k not in ("history", "reconstructions")}),
              flush=True)
    wall = time.perf_counter() - t_start
    lines = ["| method | settings | updates | training s | s per update | test loss (sigmoid cross-entropy) | "
             "test squared error per image |", "|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        s = r["settings"]
        setting = (f"batch {s['batch_size']}, λ₀ = {s.get('initial_damping'):g}, floor {s.get('damping_min'):g}, "
                   f"max_iters {s.get('max_iters')}" if name.startswith("hf") else f"batch {s['batch_size']}")
        lines.append(f"| {r['label']} | {setting} | {r['updates']} | {r['train_seconds']:.0f} | "
                     f"{r['train_seconds'] / r['updates']:.3g} | {r['final_test_loss']:.2f} | "
                     f"{r['test_squared_error']:.2f} |")
    lines += ["", f"784-1000-500-250-30 autoencoder, sparse init, {seconds:g} training seconds per method "
              f"(evaluation excluded), all 60,000 training images, losses on the 10,000 test images; wall time of "
              f"the whole run {wall:.0f} s. Curves and reconstructions: `notebooks/recorded/autoencoder.json`."]
    if not args.no_write:
        write_recorded(args.json, runs, seconds_per_method=seconds, wall_seconds=round(wall, 1), x_test_first=SHOWN)
    write_results("bench_autoencoder.py — the deep autoencoder: HF against Adam and SGD", lines, args)


if __name__ == "__main__":
    main()

"""HF under MirroredStrategy on logical CPU devices against the single-device update (issue 12, scale-out).

Logical devices share this machine's cores, so the figure is the overhead of the distributed update
(one strategy.run per G·v, all-reduces of d floats), not a speed-up. Both updates run in one process,
interleaved; the MLP 784-800-10 at batch 1000 with exactly n CG iterations.

    python benchmarks/bench_distributed.py             # 2 replicas, n = 20
    python benchmarks/bench_distributed.py --quick     # small net; no RESULTS.md entry
"""
from __future__ import annotations

from common import interleaved_medians, is_quick, parser, write_results  # noqa: I001

import numpy as np
import tensorflow as tf


def main():
    p = parser(__doc__)
    p.add_argument("--replicas", type=int, default=2)
    args = p.parse_args()
    quick = is_quick(args)
    if quick:
        args.no_write = True
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
    import hflib
    from hflib import models
    from hflib.training import warm_up

    hidden, batch, n = (100, 200, 6) if quick else (800, 1000, 20)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch, 784)).astype("float32")
    y = rng.integers(0, 10, size=batch)
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(args.replicas)])
    options = dict(initial_damping=1.0, min_iters=n, max_iters=n, tol=1e-30)
    single = hflib.HessianFree(models.mnist_mlp(hidden=hidden), "softmax_cross_entropy", **options)
    with strategy.scope():
        replicated = hflib.HessianFree(models.mnist_mlp(hidden=hidden), "softmax_cross_entropy",
                                       strategy=strategy, **options)
    updaters = {"one device": single, f"MirroredStrategy, {args.replicas} logical CPUs": replicated}
    fns = {}
    for label, hf in updaters.items():
        warm_up(hf, x, y)
        start = [v.numpy() for v in hf.model.trainable_variables]

        def step(hf=hf, start=start):
            hf.step(x, y)
            for v, value in zip(hf.model.trainable_variables, start):
                v.assign(value)
            hf.reset()
        fns[label] = step
    times = interleaved_medians(fns, repeats=5 if quick else 9)
    base = times["one device"]
    lines = ["| update | s / update | vs one device |", "|---|---|---|"]
    lines += [f"| {label} | {t:.3f} | {t / base:.2f}× |" for label, t in times.items()]
    lines += ["", f"MLP 784-{hidden}-10, batch {batch}, exactly {n} CG iterations, HF defaults otherwise; medians, "
              "interleaved. Each replica linearises its share once per update; the logical devices share the "
              "same cores, so this is the overhead of the distributed path, not a speed-up."]
    write_results("bench_distributed.py — HF under MirroredStrategy vs one device", lines, args)


if __name__ == "__main__":
    main()

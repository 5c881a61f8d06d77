"""Martens' empirical-Fisher diagonal against one gradient: time and peak memory (issue 12).

Target (CPU, MNIST CNN 16/32/64, batch 1000): the exact diagonal over the whole batch in
≤ 2 gradients of time. Compared with the pfor per-example Jacobians over 250 examples
(what a CNN used before, `fisher_examples=250`) and, on the MLP 784-800-10, with the
previous Dense-stack rule, to show that the Dense case did not get slower.

    python benchmarks/bench_fisher.py            # full: CNN and MLP-800 at batch 1000, RESULTS.md entry
    python benchmarks/bench_fisher.py --quick    # smoke test in seconds: small nets, no memory, no entry
"""
from __future__ import annotations

from common import is_quick, parser, peak_rss_delta, sync, write_results  # noqa: I001

import statistics
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import hflib
from hflib import models
from hflib import preconditioners as pc

LOSS = "softmax_cross_entropy"


def nets(quick):
    """(name, model builder, input shape, batch, pfor examples)."""
    if quick:
        return [("CNN 16/32/64", models.mnist_cnn, (28, 28, 1), 100, 25),
                ("MLP 784-100-10", lambda: models.mnist_mlp(hidden=100), (784,), 200, 25)]
    return [("CNN 16/32/64", models.mnist_cnn, (28, 28, 1), 1000, 250),
            ("MLP 784-800-10", models.mnist_mlp, (784,), 1000, 250)]


def previous_dense_rule(model, loss, x, y):
    """The Dense-stack rule as it was before the per-layer rule replaced it (commit 4673837),
    restated here as the baseline: Σ_i g_i² = (a²)ᵀ(δ²) per Dense layer, δ from zero probes."""
    kept, probes = [], []
    with tf.GradientTape() as tape:
        a = x
        for layer in model.layers:
            if not isinstance(layer, keras.layers.Dense):
                a = layer(a)
                continue
            z = tf.matmul(a, layer.kernel) + layer.bias
            probe = tf.zeros_like(z)
            tape.watch(probe)
            kept.append((layer, a))
            probes.append(probe)
            a = layer.activation(z + probe)
        total = tf.reduce_sum(loss.per_example(a, loss.targets(y, a)))
    n = tf.cast(tf.shape(x)[0], a.dtype)
    out = []
    for (layer, a), delta in zip(kept, tape.gradient(total, probes)):
        d2 = tf.square(delta)
        out += [tf.matmul(tf.square(a), d2, transpose_a=True) / n, tf.reduce_sum(d2, axis=0) / n]
    return out


def methods(name, model, x, y, pfor_examples):
    """The compiled functions to compare, by label; each returns a list of tensors."""
    loss = hflib.losses.get(LOSS)
    variables = model.trainable_variables

    def gradient():
        with tf.GradientTape() as tape:
            value = loss.value(model(x), y)
        return tape.gradient(value, variables)

    out = {"one gradient": gradient,
           "exact per-layer rule (whole batch)": lambda: pc.empirical_fisher_diagonal(model, loss, x, y),
           f"pfor per-example gradients ({pfor_examples} examples)":
               lambda: pc._fisher_diagonal_pfor(model, loss, x[:pfor_examples], y[:pfor_examples], 125)}
    if name.startswith("MLP"):
        out["previous Dense-stack rule (whole batch)"] = lambda: previous_dense_rule(model, loss, x, y)
    return {label: tf.function(fn) for label, fn in out.items()}


def problem(shape, batch):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch, *shape)).astype("float32"))
    return x, tf.constant(rng.integers(0, 10, size=batch))


def interleaved_medians(fns, repeats, warmup=2):
    """Median wall and process CPU time of each fn, the fns run in turn (order rotated) in each
    repetition. CPU time (all threads) is less sensitive than wall time to other jobs on a shared machine."""
    for fn in fns.values():
        for _ in range(warmup):
            sync(fn())
    labels = list(fns)
    wall, cpu = ({label: [] for label in labels} for _ in range(2))
    for r in range(repeats):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            c0, t0 = time.process_time(), time.perf_counter()
            sync(fns[label]())
            wall[label].append(time.perf_counter() - t0)
            cpu[label].append(time.process_time() - c0)
    return {label: (statistics.median(wall[label]), statistics.median(cpu[label])) for label in labels}


def memory_probe(name, label, quick):
    """Peak RSS growth of one call, in a fresh process after tracing (no allocator pool left over)."""
    args = [sys.executable, __file__, "--probe", name, label] + (["--quick"] if quick else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def probe(name, label, quick):
    _, build, shape, batch, pfor_examples = next(n for n in nets(quick) if n[0] == name)
    x, y = problem(shape, batch)
    fn = methods(name, build(), x, y, pfor_examples)[label]
    fn.get_concrete_function()
    print(peak_rss_delta(lambda: sync(fn())))


def check_agreement(name, model, x, y, pfor_examples):
    """The exact rule against pfor on the same first examples (float32: relative error ~1e-6)."""
    loss = hflib.losses.get(LOSS)
    exact = hflib.flatten(pc.empirical_fisher_diagonal(model, loss, x[:pfor_examples], y[:pfor_examples])).numpy()
    ref = hflib.flatten(pc._fisher_diagonal_pfor(model, loss, x[:pfor_examples], y[:pfor_examples], 125)).numpy()
    return float(np.linalg.norm(exact - ref) / np.linalg.norm(ref))


def measure(name, build, shape, batch, pfor_examples, quick):
    model = build()
    x, y = problem(shape, batch)
    assert pc.has_exact_rule(model), name
    times = interleaved_medians(methods(name, model, x, y, pfor_examples), repeats=3 if quick else 11)
    memory = {label: (float("nan") if quick else memory_probe(name, label, quick)) for label in times}
    return dict(name=name, d=models.count_params(model), batch=batch, times=times, memory=memory,
                agreement=check_agreement(name, model, x, y, pfor_examples))


def table(rows):
    lines = ["| model | d | batch | method | wall time (median) | in gradients | CPU time (median) | in gradients "
             "| peak memory growth | in gradient steps |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        (t_grad, c_grad), m_grad = r["times"]["one gradient"], r["memory"]["one gradient"]
        for label, (t, c) in r["times"].items():
            m = r["memory"][label]
            mem = "—" if np.isnan(m) else f"{m / 2**20:.0f} MiB"
            mem_ratio = "—" if np.isnan(m) else f"{m / max(m_grad, 1):.2f}×"
            bold = "**" if label.startswith("exact") else ""
            lines.append(f"| {r['name']} | {r['d']:,} | {r['batch']} | {label} | {1e3 * t:.1f} ms "
                         f"| {bold}{t / t_grad:.2f}×{bold} | {1e3 * c:.1f} ms | {bold}{c / c_grad:.2f}×{bold} "
                         f"| {mem} | {mem_ratio} |")
    return lines


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "--probe":
        return probe(sys.argv[2], sys.argv[3], "--quick" in sys.argv[4:])
    args = parser(__doc__).parse_args()
    quick = is_quick(args)
    rows = [measure(*net, quick=quick) for net in nets(quick)]
    lines = table(rows)
    agreement = ", ".join(f"{r['name']} {r['agreement']:.1e}" for r in rows)
    lines += ["", "Times are medians of interleaved repetitions (the methods run in turn, order rotated) of "
              "compiled functions (`tf.function`) in one process, float32, random inputs; CPU time is the process's "
              "(all threads) over the same calls; ratios are against "
              "one compiled gradient of the batch mean loss on the same batch. Peak memory is the growth of "
              "the process's peak RSS during one call, each in a fresh process after tracing (Linux VmHWM "
              "after clear_refs). The exact rule covers every example of the batch; pfor covers only the "
              "first examples named. Relative difference exact vs pfor on those examples (float32): "
              f"{agreement}."]
    if quick:
        args.no_write = True
    write_results("bench_fisher.py — Martens' empirical-Fisher diagonal against a gradient", lines, args)


if __name__ == "__main__":
    main()

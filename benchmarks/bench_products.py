"""Cost of G·v against one gradient, of a whole HF update, and peak memory (issues "core" and "performance").

Targets (issue 12; CPU, MLP 784-800-10, batch 1000):
  * G·v per CG iteration, CG vector work included, ≤ 1.05 × one gradient;
  * an HF update with n CG iterations ≤ n + 2 gradients, default safeguards on;
  * peak memory of an HF update ≤ 2 × that of a gradient step (CNN ≤ 3 ×).
The per-phase profile says where an update's gradients and memory go; the memory floor measures
what any CG on the linearisation holds before a safeguard is switched on.

    python benchmarks/bench_products.py            # full: MLP-800, CNN, autoencoder at batch 1000
    python benchmarks/bench_products.py --quick    # smoke test: small nets, no RESULTS.md entry
"""
from __future__ import annotations

from common import interleaved_medians, is_quick, median_time, parser, peak_rss_delta, sync, write_results  # noqa: I001

import numpy as np
import tensorflow as tf

import hflib
from hflib import models
from hflib.batch import loss_at
from hflib.cg import pcg
from hflib.curvature import _ggn_vector_product, linearize
from hflib.training import warm_up
from hflib.vectors import axpy


def nets(quick):
    if quick:
        return [("MLP 784-100-10", models.mnist_mlp(hidden=100), (784,), "softmax_cross_entropy", 200)]
    return [("MLP 784-800-10", models.mnist_mlp(), (784,), "softmax_cross_entropy", 1000),
            ("CNN 16/32/64", models.mnist_cnn(), (28, 28, 1), "softmax_cross_entropy", 1000),
            ("autoencoder 784-1000-500-250-30", models.deep_autoencoder(), (784,), "sigmoid_cross_entropy", 1000)]


def measure(name, model, shape, loss_name, batch, cg_iters):
    loss = hflib.losses.get(loss_name)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch, *shape)).astype("float32"))
    if loss_name == "softmax_cross_entropy":
        y = tf.constant(rng.integers(0, 10, size=batch))
    else:
        y = x
    variables = model.trainable_variables
    v = [tf.random.normal(w.shape) for w in variables]

    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            value = loss.value(model(x), y)
        return tape.gradient(value, variables)

    forward = tf.function(lambda: model(x))

    t_grad = median_time(lambda: sync(grad()))
    t_fwd = median_time(lambda: sync(forward()))
    t_naive_eager = median_time(lambda: sync(_ggn_vector_product.python_function(model, loss, x, v, "eq34")), 3, 1)
    t_naive = median_time(lambda: sync(_ggn_vector_product(model, loss, x, v, "eq34")))
    lo, hi = max(2, cg_iters // 3), cg_iters
    run_lo, run_hi = (cg_run(model, loss, x, y, n, lambda res: res.iterations) for n in (lo, hi))
    iters_hi = int(run_hi())
    t_lo = median_time(lambda: sync(run_lo()), 5, 1)
    t_hi = median_time(lambda: sync(run_hi()), 5, 1)
    t_iter = (t_hi - t_lo) / (hi - lo)

    weights = [w.numpy() for w in variables]
    updates = {}
    for label, options in UPDATE_CONFIGS.items():
        hf = hflib.HessianFree(model, loss, initial_damping=1.0, min_iters=cg_iters, max_iters=cg_iters, tol=1e-30,
                               **options)
        warm_up(hf, x, y)

        def hf_step():
            record = hf.step(x, y)
            for w, value in zip(variables, weights):
                w.assign(value)
            hf.reset()
            return record

        rec = hf_step()
        updates[label] = (median_time(hf_step, 5, 1), int(rec["cg_iters"]))
    mem_grad, mem_update, mem_pcg = (memory_probe(name, kind, cg_iters)
                                     for kind in ("gradient", "update", f"floor{len(FLOOR) - 1}"))
    return dict(name=name, d=models.count_params(model), batch=batch, grad=t_grad, fwd=t_fwd, naive_eager=t_naive_eager,
                naive=t_naive, iter=t_iter, iters=iters_hi, updates=updates, mem_grad=mem_grad, mem_update=mem_update,
                mem_pcg=mem_pcg)


def cg_run(model, loss, x, y, n, out):
    """A compiled run of exactly n PCG iterations on (G + 10⁻³I) p = −g from one linearisation;
    returns out(CGResult). n = 0: the linearisation and gradient only; n = −1: plus one G·v."""
    @tf.function
    def run():
        lin = linearize(model, loss, x, y)
        g = lin.gradient()
        if n == 0:
            return _total(g)
        if n < 0:
            return _total(lin.ggn_vp(g))
        return out(pcg(lambda d: axpy(1e-3, d, lin.ggn_vp(d)), [-t for t in g], min_iters=n, max_iters=n, tol=1e-30))
    return run


def _total(vectors):
    """One scalar from a list of tensors (so a probe returns no parameter-sized output)."""
    return tf.add_n([tf.reduce_sum(t) for t in vectors])


# the memory floor: what a CG solve on the cached linearisation holds, before any safeguard
FLOOR = [("linearisation + gradient (persistent tape of one forward pass)", 0), ("+ one G·v", -1),
         ("+ PCG, 1 iteration (x, r, d, A·d)", 1), ("+ PCG, n iterations", None)]


# the default update (Martens' safeguards on) and the bare Algorithm 1 of the report
UPDATE_CONFIGS = {
    "default": {},
    "bare": dict(preconditioner="none", warm_start=0.0, backtracking=False, line_search=False),
}
# the per-phase profile: the bare update, then each safeguard switched on in turn (cumulative)
PHASES = [
    ("bare: linearisation + gradient, n CG iterations, f(θ+p), ρ",
     dict(preconditioner="none", warm_start=0.0, backtracking=False, line_search=False)),
    ("+ Martens' diagonal", dict(preconditioner="martens", warm_start=0.0, backtracking=False, line_search=False)),
    ("+ warm start (one more G·v)", dict(preconditioner="martens", backtracking=False, line_search=False)),
    ("+ CG backtracking", dict(preconditioner="martens", line_search=False)),
    ("+ Armijo line search (= default)", {}),
]


def phase_profile(model, loss, x, y, cg_iters):
    """Cost of each piece of an update with exactly `cg_iters` CG iterations, in gradients, from
    timings interleaved with a compiled gradient. The warm start is made nonzero (one earlier step)."""
    variables = model.trainable_variables
    weights = [w.numpy() for w in variables]

    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            value = loss.value(model(x), y)
        return tape.gradient(value, variables)

    floor = floor_run(model, loss, x, y, cg_iters)
    fns, records = {"gradient": lambda: sync(grad()), "floor": lambda: sync(floor())}, {}
    for label, options in PHASES:
        hf = hflib.HessianFree(model, loss, initial_damping=1.0, min_iters=cg_iters, max_iters=cg_iters,
                               tol=1e-30, **options)
        warm_up(hf, x, y)
        hf.step(x, y)                                   # a nonzero previous CG solution
        start = [tf.identity(p) for p in hf.previous]

        def step(hf=hf, start=start, label=label):
            records[label] = hf.step(x, y)
            for w, value in zip(variables, weights):
                w.assign(value)
            for p, value in zip(hf.previous, start):
                p.assign(value)
            hf.damping.assign(1.0)
        fns[label] = step
    times = interleaved_medians(fns, repeats=7)
    g = times["gradient"]
    rows, before = [], None
    for label, _ in PHASES:
        t = times[label] / g
        rows.append((label, t, None if before is None else t - before, records[label]))
        before = t
    return g, rows, times["floor"] / g


def floor_run(model, loss, x, y, n):
    """What the default update cannot do without, compiled: the linearisation and gradient, n + 1
    PCG iterations (the warm start's r₀ = b − A·x₀ is one more G·v) and two forward passes
    f(θ + δ) (at CG's last iterate, and backtracking's first saved iterate), no preconditioner."""
    @tf.function
    def run():
        lin = linearize(model, loss, x, y)
        res = pcg(lambda d: axpy(1e-3, d, lin.ggn_vp(d)), [-t for t in lin.gradient()], min_iters=n + 1,
                  max_iters=n + 1, tol=1e-30)
        half = [0.5 * t for t in res.x]
        return loss_at(model, loss, res.x, x, y) + loss_at(model, loss, half, x, y)
    return run


def memory_probe(name, kind, cg_iters):
    """Peak RSS growth of one gradient step or one HF update, each in a fresh process so that
    no allocator pool from an earlier run hides the working memory. Compilation happens first."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, __file__, "--probe", name, kind, str(cg_iters)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def probe(name, kind, cg_iters):
    quick = name.startswith("MLP 784-100")
    _, model, shape, loss_name, batch = next(n for n in nets(quick) if n[0] == name)
    loss = hflib.losses.get(loss_name)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch, *shape)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch)) if loss_name == "softmax_cross_entropy" else x
    if kind.startswith("floor"):                 # FLOOR[i]: CG's own working memory
        n = FLOOR[int(kind[len("floor"):])][1]
        run = cg_run(model, loss, x, y, cg_iters if n is None else n, lambda res: _total(res.x))
        run.get_concrete_function()
        print(peak_rss_delta(lambda: sync(run())))
        return
    if kind == "gradient":
        opt = hflib.FirstOrder(model, loss, "sgd", learning_rate=1e-30)
    else:                                   # "update" (the defaults) or "phase<i>" (PHASES[i]'s options)
        options = PHASES[int(kind[len("phase"):])][1] if kind.startswith("phase") else {}
        opt = hflib.HessianFree(model, loss, initial_damping=1.0, min_iters=cg_iters, max_iters=cg_iters, tol=1e-30,
                                **options)
    opt._update.get_concrete_function(x, y)      # traced and optimised, but never run: the first step's
    print(peak_rss_delta(lambda: opt.step(x, y)))  # working memory is then all new


def main():
    import sys
    if len(sys.argv) == 5 and sys.argv[1] == "--probe":
        return probe(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    args = parser(__doc__).parse_args()
    quick = is_quick(args)
    cg_iters = 6 if quick else 20
    rows = [measure(*net, cg_iters=cg_iters) for net in nets(quick)]
    name, model, shape, loss_name, batch = nets(quick)[0]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch, *shape)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch))
    g, profile, floor = phase_profile(model, hflib.losses.get(loss_name), x, y, cg_iters)
    # each phase in a fresh process; the defaults' phase ({} options) is the update already probed in `measure`
    phase_memory = [(rows[0]["mem_update"] if not options else memory_probe(name, f"phase{i}", cg_iters))
                    / max(rows[0]["mem_grad"], 1) for i, (_, options) in enumerate(PHASES)]
    # the floor's last row (PCG alone, n iterations) is the main table's probe for this net
    floor_memory = [(rows[0]["mem_pcg"] if i == len(FLOOR) - 1 else memory_probe(name, f"floor{i}", cg_iters))
                    / max(rows[0]["mem_grad"], 1) for i in range(len(FLOOR))]
    lines = ["| model | d | batch | gradient | forward | naive G·v eager | naive G·v compiled | **G·v per CG iteration (cached, vector work incl.)** | HF update, default (n CG its; in gradients vs n + 2) | HF update, bare (same) | peak mem gradient | peak mem HF update (ratio, target ≤ 2; CNN ≤ 3) | peak mem, PCG alone (the floor) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g_net = r["grad"]
        cells = [f"{1e3 * t:.0f} ms (n = {n}; {t / g_net:.1f} vs {n + 2})" for t, n in r["updates"].values()]
        lines.append(
            f"| {r['name']} | {r['d']:,} | {r['batch']} | {1e3 * g_net:.1f} ms | {1e3 * r['fwd']:.1f} ms ({r['fwd'] / g_net:.2f}×) "
            f"| {1e3 * r['naive_eager']:.1f} ms ({r['naive_eager'] / g_net:.2f}×) | {1e3 * r['naive']:.1f} ms ({r['naive'] / g_net:.2f}×) "
            f"| **{1e3 * r['iter']:.1f} ms ({r['iter'] / g_net:.2f}×)** | {cells[0]} | {cells[1]} | {r['mem_grad'] / 2**20:.0f} MiB "
            f"| {r['mem_update'] / 2**20:.0f} MiB ({r['mem_update'] / max(r['mem_grad'], 1):.2f}×) "
            f"| {r['mem_pcg'] / 2**20:.0f} MiB ({r['mem_pcg'] / max(r['mem_grad'], 1):.2f}×) |")
    lines += ["", "Ratios are against one compiled gradient of the same net and batch, measured in the same run "
              "(medians). 'G·v per CG iteration' is the marginal cost of one iteration of the compiled PCG loop "
              f"(between {max(2, cg_iters // 3)} and {cg_iters} iterations) on the cached linearisation, so the "
              "one forward pass per update is not in it. Peak memory is the growth of the process's peak RSS "
              "during one compiled gradient step (SGD) or HF update, each in a fresh process after compilation "
              "(Linux VmHWM after clear_refs). 'default' is HessianFree's defaults (Martens' preconditioner, "
              "warm start, backtracking, line search); 'bare' switches those four off (the report's Algorithm 1 "
              "without preconditioner). CG runs exactly n iterations unless it is solved earlier. 'PCG alone' is "
              "the linearisation, its gradient and n PCG iterations with nothing else (the memory floor's last row "
              "below), in a fresh process like the others."]
    lines += ["", f"**Per-phase profile**, {name}, batch {batch}, n = {cg_iters} CG iterations, one gradient = "
              f"{1e3 * g:.1f} ms (medians of 7, interleaved with the gradient; the target is ≤ n + 2 = {cg_iters + 2} "
              "gradients for the default update):", "",
              "| update | cost in gradients | this piece | backtracking chose | line-search rate | "
              "peak memory (× gradient step) |", "|---|---|---|---|---|---|"]
    for (label, total, piece, rec), memory in zip(profile, phase_memory):
        index = rec["backtrack_index"]
        chose = "last iterate" if index < 0 else f"saved iterate {index}"
        lines.append(f"| {label} | {total:.1f} | {'—' if piece is None else f'{piece:+.1f}'} | {chose} | "
                     f"{rec['rate']:.3g} | {memory:.2f}× |")
    lines += ["", "Peak memory per phase: each in a fresh process, as in the table above, against its gradient step.",
              "", f"**The floor of the default update's time**, timed in the same interleaved rounds: the linearisation and "
              f"gradient, n + 1 PCG iterations on the cached G·v (the warm start's r₀ = b − A·x₀ is one more product) "
              f"and two forward passes f(θ + δ) (CG's last iterate, backtracking's first saved iterate) cost "
              f"**{floor:.1f} gradients at n = {cg_iters}**, before Martens' diagonal and any vector work outside CG.",
              "",
              f"**Memory floor**, {name}, batch {batch} (each in a fresh process, against the gradient step):", "",
              "| what is held | peak memory (× gradient step) |", "|---|---|"]
    lines += [f"| {label if n is not None else f'+ PCG, n = {cg_iters} iterations'} | {m:.2f}× |"
              for (label, n), m in zip(FLOOR, floor_memory)]
    write_results("bench_products.py — G·v, HF update and memory against a gradient", lines, args)


if __name__ == "__main__":
    main()

"""Per-iteration cost of `hflib.pcg` against one gradient (issue "CG vector work").

MLP 784-800-10 (d = 636,010 in 4 tensors), batch 1000, float32, random data. Each figure is the
marginal cost of one CG iteration: the difference of two compiled runs forced to do `lo` and `hi`
iterations (tol tiny, min_iters = max_iters), divided by hi − lo, taken per round and divided by
a compiled gradient timed in the same round; the table gives the median over rounds.

Two products: a cheap synthetic one (v ↦ c ⊙ v, which isolates CG's vector work) and the real
cached G·v of `hflib.curvature.linearize` with λv added, as `HessianFree` calls it. Rows:
  * "product only": a loop of the products alone (no CG), the floor;
  * "old": `hflib/cg.py` from git revision --baseline, loaded beside the current one;
  * "new": the current `hflib.pcg` on lists of tensors, as HessianFree calls it;
  * "new, flat": the same called on one flat vector (b and M flattened once, the product
    unflattens its argument and flattens its result);
The last group times a bare PCG loop (the synthetic product and CG's vector updates only: no φ,
stopping rule or saved iterates) compiled with and without XLA (`jit_compile=True`), on lists and
on one flat vector: pcg itself cannot be XLA-compiled, since φ and the saved iterates have
data-dependent lengths.

    python benchmarks/bench_cg.py                   # full; appends to RESULTS.md
    python benchmarks/bench_cg.py --quick --no-write  # smoke test: MLP 784-50-10, fewer rows
"""
from __future__ import annotations

from common import ROOT, is_quick, parser, sync, write_results  # noqa: I001

import importlib.util
import linecache
import statistics
import subprocess
import time

from hflib.quiet import import_tensorflow

import numpy as np

tf = import_tensorflow()
tf.get_logger().setLevel("ERROR")        # (one tf.function per configuration: no retracing to warn of)

import hflib
from hflib import models
from hflib import preconditioners as pre
from hflib.curvature import linearize
from hflib.vectors import axpy, dot, flatten, unflatten

BASELINE = "4673837"   # hflib/cg.py before the vector-work changes (lists, φ from two dot products)
DAMPING = 1e-3


def load_baseline(rev):
    """hflib/cg.py at git revision `rev`, imported as a sibling module (it uses hflib.vectors)."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:hflib/cg.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"(no baseline: git show {rev}:hflib/cg.py failed: {err})")
        return None
    name = f"{rev}:hflib/cg.py"
    linecache.cache[name] = (len(src), None, src.splitlines(True), name)   # AutoGraph reads the source
    spec = importlib.util.spec_from_loader("hflib._cg_baseline", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "hflib"
    exec(compile(src, name, "exec"), module.__dict__)
    return module


def problem(quick):
    """Model, data and the two products (each with a preconditioner diagonal)."""
    model = models.mnist_mlp(hidden=50 if quick else 800)
    batch = 100 if quick else 1000
    loss = hflib.losses.get("softmax_cross_entropy")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch, 784)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch))
    variables = model.trainable_variables
    like = [tf.zeros(v.shape, v.dtype) for v in variables]
    # eigenvalues log-spaced over 6 decades: CG is nowhere near solved after the iterations timed
    scale = [tf.constant(10.0 ** rng.uniform(-6, 0, size=v.shape), v.dtype) for v in variables]
    diag = [tf.constant(rng.uniform(1, 2, size=v.shape), v.dtype) for v in variables]
    b = [tf.constant(rng.normal(size=v.shape), v.dtype) for v in variables]

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            value = loss.value(model(x), y)
        return tape.gradient(value, variables)

    def synthetic():                      # (matvec, b) built inside the compiled run
        return (lambda v: [c * vi for c, vi in zip(scale, v)]), b

    def ggn():
        lin = linearize(model, loss, x, y)
        return (lambda v: axpy(DAMPING, v, lin.ggn_vp(v))), [-g for g in lin.gradient()]

    return gradient, {"synthetic c ⊙ v": synthetic, "cached G·v + λv": ggn}, diag, like


def runner(setup, diag, like, n, solver=None, flat=False):
    """A compiled run of n iterations of `solver` (None: the products alone); returns the count first."""
    def run():
        matvec, b = setup()
        if solver is None:
            other = [0.5 * t for t in b]

            def body(i, acc):   # the argument alternates (nothing to hoist)
                d = tf.cond(i % 2 == 0, lambda: list(b), lambda: list(other))
                return i + 1, acc + entries(matvec(d))
            return tf.while_loop(lambda i, acc: i < n, body, [tf.constant(0), tf.zeros([], b[0].dtype)])
        if flat:
            flat_matvec = lambda v: flatten(matvec(unflatten(v, like)))   # noqa: E731
            res = solver(flat_matvec, flatten(b), preconditioner=flatten(diag), min_iters=n, max_iters=n, tol=1e-30)
        else:
            res = solver(matvec, b, preconditioner=diag, min_iters=n, max_iters=n, tol=1e-30)
        return res.iterations, entries(tf.nest.flatten([res.x, res.saved, res.phi]))
    return tf.function(run)


def entries(tensors):
    """The sum of one entry of each tensor: returning it keeps all the work that made them (else
    the graph optimiser prunes what no output needs) without copying vectors to the host."""
    return tf.add_n([tf.reduce_sum(tf.reshape(t, [-1])[:1]) for t in tensors])


def variants(baseline, quick):
    new = hflib.pcg
    rows = [("product only", dict(solver=None))]
    if baseline is not None:
        rows.append(("old (lists, φ from 2 dots)", dict(solver=baseline.pcg)))
    rows.append(("**new** (lists)", dict(solver=new)))
    return rows if quick else rows + [("new, flat", dict(solver=new, flat=True))]


def update_runner(vectors, n, jit):
    """n iterations of bare PCG (no φ, no stopping rule, no saved iterates) for the synthetic
    product z = c ⊙ d, with `vectors` = (b, c, M) as lists; compiled with or without XLA."""
    b, scale, diag = vectors

    def run():
        def body(i, x, r, d, rz):
            z = [c * di for c, di in zip(scale, d)]
            alpha = rz / dot(d, z)
            x, r = axpy(alpha, d, x), axpy(-alpha, z, r)
            y = [ri / mi for ri, mi in zip(r, diag)]
            rz_new = dot(r, y)
            return i + 1, x, r, axpy(rz_new / rz, d, y), rz_new
        y = [bi / mi for bi, mi in zip(b, diag)]
        x0 = [tf.zeros_like(t) for t in b]
        _, x, r, d, rz = tf.while_loop(lambda i, *_: i < n, body, [tf.constant(0), x0, list(b), y, dot(b, y)])
        return entries(x + r + d) + rz
    return tf.function(run, jit_compile=jit)


def timed(fn):
    t0 = time.perf_counter()
    sync(fn())
    return time.perf_counter() - t0


BARE = "bare PCG loop, synthetic c ⊙ v"


def configs(quick, baseline):
    """(group, row, run of lo iterations, run of hi iterations, lo, hi), each compiled and checked."""
    gradient, products, diag, like = problem(quick)
    lo, hi = (2, 5) if quick else (5, 35)
    out = []
    for pname, setup in products.items():
        for vname, opts in variants(baseline, quick):
            runs = [runner(setup, diag, like, n, **opts) for n in (lo, hi)]
            out.append((pname, vname, *runs, lo, hi))
    synthetic, b = products["synthetic c ⊙ v"]()
    scale = synthetic([tf.ones_like(t) for t in b])
    for layout in ("lists",) if quick else ("lists", "flat"):
        vecs = (b, scale, diag) if layout == "lists" else tuple([flatten(v)] for v in (b, scale, diag))
        for jit in (False, True):
            name = layout + (" + XLA" if jit else "")
            out.append((BARE, name, update_runner(vecs, lo, jit), update_runner(vecs, hi, jit), lo, hi))
    for group, name, run_lo, run_hi, n_lo, n_hi in out:
        if group == BARE:
            sync([run_lo(), run_hi()])                   # compiles
            continue
        done = [int(tf.nest.flatten(r())[0]) for r in (run_lo, run_hi)]   # compiles, checks the counts
        if done != [n_lo, n_hi]:
            raise RuntimeError(f"{group} / {name}: ran {done} iterations instead of {[n_lo, n_hi]}")
    return gradient, out


def measure(gradient, runs, rounds):
    """Median over interleaved rounds of the per-iteration time and of its ratio to a gradient."""
    for _ in range(2):
        sync(gradient())
    per_iter = {(g, n): [] for g, n, *_ in runs}
    ratios = {k: [] for k in per_iter}
    grads = []
    order = np.random.default_rng(1)
    for _ in range(rounds):
        for j in order.permutation(len(runs)):
            group, name, run_lo, run_hi, lo, hi = runs[j]
            t_grad = statistics.median(timed(gradient) for _ in range(3))
            t = (timed(run_hi) - timed(run_lo)) / (hi - lo)
            grads.append(t_grad)
            per_iter[group, name].append(t)
            ratios[group, name].append(t / t_grad)
    medians = {k: (statistics.median(per_iter[k]), statistics.median(ratios[k])) for k in per_iter}
    return medians, statistics.median(grads)


def stop_study(quick, baseline):
    """float32 vs float64 CG on the damped GGN system of the deep autoencoder at initialisation: where
    each rule stops and the φ it reaches, evaluated in float64 at the iterate (table rows)."""
    sizes = (784, 32, 8) if quick else (784, 1000, 500, 250, 30)
    batch = 50 if quick else 1000
    loss = hflib.losses.get("sigmoid_cross_entropy")
    data = np.random.default_rng(0).uniform(size=(batch, 784))
    nets = {dt: models.deep_autoencoder(sizes, dtype=dt) for dt in ("float32", "float64")}
    for w64, w32 in zip(nets["float64"].trainable_variables, nets["float32"].trainable_variables):
        w64.assign(tf.cast(w32, tf.float64))
    x64 = tf.constant(data)

    def solve(solver, dt, lam, precondition):
        model, x = nets[dt], tf.constant(data.astype(dt))

        @tf.function
        def run():
            lin = linearize(model, loss, x, x)
            lam_t = tf.constant(lam, dt)
            diag = pre.martens(model, loss, x, x, lam_t) if precondition else None
            return solver(lambda v: axpy(lam_t, v, lin.ggn_vp(v)), [-g for g in lin.gradient()],
                          preconditioner=diag, max_iters=250)
        return run()

    @tf.function
    def phi64(p, lam):
        lin = linearize(nets["float64"], loss, x64, x64)
        p = [tf.cast(t, tf.float64) for t in p]
        return 0.5 * dot(p, axpy(lam, p, lin.ggn_vp(p))) + dot(lin.gradient(), p)

    solvers = ([("old", baseline.pcg)] if baseline is not None else []) + [("new", hflib.pcg)]
    rows = []
    for lam, precondition in ((1e-3, False),) if quick else ((1e-3, False), (1.0, True)):
        for (name, solver), dt in [(sv, dt) for sv in solvers for dt in ("float32", "float64")]:
            res = solve(solver, dt, lam, precondition)
            rows.append(f"| λ = {lam:g}{', Martens M' if precondition else ''} | {name} | {dt} | "
                        f"{int(res.iterations)} | {hflib.cg.STOP_REASONS[int(res.stop_reason)]} | "
                        f"{float(res.reduction):.7g} | {float(phi64(res.x, tf.constant(lam, tf.float64))):.7g} |")
    net = "-".join(map(str, sizes))
    return [f"Where CG stops, float32 against float64: deep autoencoder {net} at initialisation, batch {batch} "
            "(uniform random inputs), sigmoid cross-entropy, Martens' rule ε = 5e-4, max 250 iterations.", "",
            "| system | CG | dtype | iterations | stop | φ (CG's) | φ in float64 at the iterate |",
            "|---|---|---|---|---|---|---|"] + rows


def main():
    p = parser(__doc__)
    p.add_argument("--baseline", default=BASELINE, help="git revision of the 'old' hflib/cg.py")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 30; quick 2)")
    args = p.parse_args()
    quick = is_quick(args)
    rounds = args.rounds or (2 if quick else 30)
    baseline = load_baseline(args.baseline)
    gradient, runs = configs(quick, baseline)
    results, t_grad = measure(gradient, runs, rounds)
    net = "MLP 784-50-10, batch 100" if quick else "MLP 784-800-10 (d = 636,010), batch 1000"
    lines = [f"{net}, float32; one compiled gradient: {1e3 * t_grad:.2f} ms (median).", "",
             "| product | CG | ms per iteration | × gradient | CG's own work (× gradient, over the product alone) |",
             "|---|---|---|---|---|"]
    for group in dict.fromkeys(g for g, _ in results):
        floor = results.get((group, "product only"), (0.0, 0.0))[1]
        for (g, name), (t, ratio) in results.items():
            if g == group:
                own = "—" if name == "product only" or group == BARE else f"{ratio - floor:+.3f}"
                lines.append(f"| {group} | {name} | {1e3 * t:.3f} | {ratio:.3f} | {own} |")
    lo, hi = runs[0][4], runs[0][5]
    lines += ["", f"Each figure: median over {rounds} interleaved rounds of (t(run of {hi} iterations) − "
              f"t(run of {lo})) / {hi - lo}, divided by the "
              "median of 3 gradients timed just before in the same round. 'old' is hflib/cg.py at "
              + (args.baseline if baseline else "(not available)") + "; preconditioner: a fixed random "
              "diagonal in [1, 2]; λ = 1e-3. 'flat' calls pcg on one concatenated vector, the product "
              "splitting it and re-concatenating its result every iteration.", ""]
    print("\n".join(lines), flush=True)
    lines += stop_study(quick, baseline)
    write_results("bench_cg.py — CG's per-iteration cost against a gradient", lines, args)


if __name__ == "__main__":
    main()

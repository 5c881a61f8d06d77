"""Preconditioned conjugate gradient for the damped Newton system (report §III.E, Alg. 2).

We solve  A x = b  with A = G + λI symmetric positive definite (eq. 20) and
**b = −∇f** (eq. 27), so the step is applied as θ ← θ + x.  (The report instead
solves A Δθ = +∇f and steps θ − Δθ; the two are the same update.)

CG minimises the quadratic model

    φ(x) = ½ xᵀA x − bᵀx,                                     (φ)

which, with b = −∇f, is exactly q(x) − q(0) of eq. (13) with the damped
curvature. At the start, with r = b − A x, φ(x₀) = −½ (b + r)ᵀ x₀ (Martens' code
keeps r = A x − b and writes ½(r − b)ᵀx). After that no vector work at all: the
step x ← x + α d with α = ρ/dᵀAd, ρ = rᵀM⁻¹r changes φ by −α dᵀr + ½α² dᵀAd, and
dᵀr = ρ in PCG (d = M⁻¹r + β d_prev with d_prevᵀr = 0), so

    φ_i = φ_{i−1} − ½ α_i ρ_{i−1}.                            (φ_step)

Every term is negative, so φ_i decreases monotonically and its rounding error
stays relative to |φ_i|. Checked against ½xᵢᵀAxᵢ − bᵀxᵢ in long double on SPD
systems up to cond 1e8, cold and warm started: the same error as −½(b + r)ᵀx
(float64: within 1e-13 of max|φ|; float32: within 4e-4, the two formulas alike).
Two dot products fewer per iteration: on the MNIST MLP (d = 636,010) CG's work
beyond a cheap synthetic product fell from 0.138 to 0.117 of a gradient (quiet
machine; 0.131 to 0.103 under load). With the real cached G·v the whole iteration
went from 1.071 to 1.068 gradients (quiet; 1.154 to 1.087 under load), so there the
saving is within the noise (benchmarks/bench_cg.py).

Vectors stay lists of tensors, one per variable. One flat buffer (b and M
flattened once, the product's argument split and its result concatenated every
iteration) measured slower on CPU (the concatenation costs more than the per-tensor
op overheads it saves), and XLA (`jit_compile=True`) slower still, with lists or
flat: its fused loops ran slower than TensorFlow's kernels on a 2-core CPU. pcg
itself cannot be XLA-compiled anyway: φ and the saved iterates have data-dependent
lengths.

Stopping rule (Martens 2010, §4.4): at iteration i with window k, stop when
    i > k,  φ_i < 0  and  (φ_i − φ_{i−k}) / φ_i < k·ε.
``window="martens"``: k = max(10, ⌈0.1·i⌉).
``window="report"``:  k = max(t, ⌈i/t⌉) with t = `min_iters` (Alg. 2, with the
typo ⌈j/t⌉ read as ⌈i/t⌉).
CG also stops on non-positive curvature dᵀA d ≤ 0, after `max_iters`, and when
the system is solved (stop reason "converged"):

    ρ_i ≤ 2⁻⁵² · ρ_0,  i.e.  ‖r_i‖_{M⁻¹} ≤ 2⁻²⁶ ‖r_0‖_{M⁻¹} ≈ 1.5e-8 ‖r_0‖_{M⁻¹},   (solved)

in every dtype. In float64 this is the rule hflib always had (ρ_i ≤ ε_mach·ρ_0,
a relative residual of √ε_mach), so float64 runs stop where they did. In float32
the old ε_mach·ρ_0 was a relative residual of 3.5e-4, far from solved: CG stopped
as "converged" before Martens' rule could act (it needs i > 10). Measured on the
deep autoencoder 784-1000-500-250-30 at initialisation (batch 1000, λ = 1e-3, no
preconditioner): float32 stopped after 5 iterations at φ = −27.67618 while float64
went on to 12 (Martens' rule) and φ = −27.67645. Now float32 is "solved" only with
its residual below its own rounding level (ε_mach = 1.2e-7), so in practice it
stops by Martens' rule; it does so at 12 iterations at the same φ (to 7 digits,
evaluated in float64). (In float16 the threshold underflows to 0: only a zero
residual counts as solved.) Two alternatives were measured and rejected: a test on
φ (stop when ½α_iρ_i, the next step's decrease at the current step length, is below
ε_mach·|φ_i|) fires where the old rule did, since ½α_iρ_i/|φ_i| is of the order of
ρ_i/ρ_0 there (on a 196-200-100-50-10 autoencoder); ρ_i ≤ ε_mach²·ρ_0 in each dtype
does the job in float32 but makes float64 CG take an iteration more when a
preconditioner solves the system in one step.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

from .vectors import axpy, dot

WINDOWS = ("martens", "report")
STOP_REASONS = ("max_iters", "progress", "curvature", "converged")


class CGResult(NamedTuple):
    """What `pcg` returns. Tensors; `x` and `saved` have the structure of `b`."""

    x: object                 # the last iterate
    iterations: tf.Tensor     # number of CG iterations done (matrix-vector products after the start)
    phi: tf.Tensor            # φ_0 … φ_iterations, shape (iterations + 1,)
    reduction: tf.Tensor      # φ(x) = q(x) − q(0) of the quadratic CG minimised, no extra product
    saved: object             # iterates at i = ⌈5·1.3^j⌉ < iterations, stacked along axis 0
    saved_iters: tf.Tensor    # their iteration numbers, increasing
    stop_reason: tf.Tensor    # index into STOP_REASONS


def save_schedule(max_iters):
    """Iterations at which Martens keeps a copy for backtracking: ⌈5·1.3^j⌉ ≤ max_iters."""
    out, j = [], 0
    while True:
        i = math.ceil(5 * 1.3 ** j - 1e-9)
        if i > max_iters:
            return out
        if not out or i != out[-1]:
            out.append(i)
        j += 1


def window_size(i, window="martens", min_iters=3):
    """The look-back k of the relative-progress rule at iteration i (works on ints and tensors)."""
    if window == "martens":
        return _maximum(10, _ceil_div(i, 10))
    return _maximum(min_iters, _ceil_div(i, min_iters))


def progress_stop(phi_i, phi_i_minus_k, k, tol):
    """Martens' test: φ_i < 0 and (φ_i − φ_{i−k}) / φ_i < k·ε."""
    negative = phi_i < 0
    safe_phi = tf.where(negative, phi_i, -tf.ones_like(phi_i))
    return negative & ((phi_i - phi_i_minus_k) / safe_phi < k * tol)


def first_stop(phis, tol=5e-4, window="martens", min_iters=None, max_iters=None):
    """Pure-Python reference: the iteration at which the rule stops on the sequence φ_0, φ_1, ….

    Returns len(phis) − 1 (or max_iters) when the rule never fires. Used by tests
    and by the notebooks to show the rule on a recorded φ history. `min_iters`
    defaults to 1 for Martens' window and to the report's t = 3 for its window.
    """
    min_iters = default_min_iters(window) if min_iters is None else min_iters
    _check_config(min_iters, max(min_iters, max_iters or 1), tol, window)
    last = len(phis) - 1 if max_iters is None else min(max_iters, len(phis) - 1)
    for i in range(1, last + 1):
        k = window_size(i, window, min_iters)
        if i >= min_iters and i > k and phis[i] < 0 and (phis[i] - phis[i - k]) / phis[i] < k * tol:
            return i
    return last


def default_min_iters(window):
    """1 for Martens' window (it needs i > 10 anyway); the report's t = 3 for its window."""
    return 3 if window == "report" else 1


def pcg(matvec, b, x0=None, preconditioner=None, min_iters=None, max_iters=250, tol=5e-4,
        window="martens", compile=True):
    """Solve A x = b approximately by preconditioned CG (Alg. 2, corrected).

    Args:
      matvec: x ↦ A x for A symmetric positive definite, on lists of tensors
        (or on a single tensor, matching `b`). For HF, A = G + λI.
      b: right-hand side; for HF the *negative* gradient.
      x0: warm start (Martens: 0.95 × the previous update's final iterate); 0 if None.
      preconditioner: None, the diagonal M (same structure as b, applied as
        y = r ⊘ M), or a callable r ↦ M⁻¹ r.
      min_iters, max_iters: bounds on the iteration count (1 ≤ min_iters ≤ max_iters);
        min_iters defaults to 1 (Martens' window) or 3 (the report's window, where it is t).
      tol: ε of the relative-progress stopping rule (> 0).
      window: "martens" or "report", see the module docstring.
      compile: when called eagerly, run the loop as a `tf.function` (no host
        sync per iteration). Inside a `tf.function` the loop is always compiled.
    Returns:
      `CGResult`.
    """
    min_iters = default_min_iters(window) if min_iters is None else min_iters
    _check_config(min_iters, max_iters, tol, window)
    single = not isinstance(b, (list, tuple))
    b = [tf.convert_to_tensor(b)] if single else [tf.convert_to_tensor(t) for t in b]
    x0 = None if x0 is None else ([tf.convert_to_tensor(x0)] if single else list(x0))
    mv = (lambda v: [matvec(v[0])]) if single else matvec
    precond = _as_callable(preconditioner, single)
    run = _pcg_loop
    if compile and tf.executing_eagerly():
        run = tf.function(_pcg_loop)
        # Each eager call compiles its own loop for its own matvec, so one trace per call is the design,
        # not an accident: TensorFlow's "triggered tf.function retracing" warning (counted per Python
        # function, i.e. for _pcg_loop across all calls) would only be noise in notebooks and logs.
        run._omit_frequent_tracing_warning = True
    res = run(mv, b, x0, precond, min_iters, max_iters, tol, window)
    if single:
        res = res._replace(x=res.x[0], saved=res.saved[0])
    return res


def _pcg_loop(matvec, b, x0, precond, min_iters, max_iters, tol, window):
    dtype = b[0].dtype
    schedule = save_schedule(max_iters)
    schedule_t = tf.constant(schedule + [max_iters + 1], tf.int32)
    if x0 is None:
        x, r, phi0 = [tf.zeros_like(t) for t in b], list(b), tf.zeros([], dtype)
    else:
        x = [tf.cast(t, dtype) for t in x0]
        r = [bi - ai for bi, ai in zip(b, matvec(x))]
        phi0 = -0.5 * dot(axpy(1.0, b, r), x)
    y = precond(r)
    phis = tf.TensorArray(dtype, size=max_iters + 1, clear_after_read=False).write(0, phi0)
    saved = [tf.TensorArray(dtype, size=max(len(schedule), 1), element_shape=t.shape) for t in b]
    rz0 = dot(r, y)
    solved_rz = rz0 * tf.constant(2.0 ** -52, dtype)     # (solved)
    state = dict(i=tf.constant(0), x=x, r=r, d=list(y), rz=rz0, phi=phi0, phis=phis, saved=saved,
                 n_saved=tf.constant(0), reason=tf.constant(0), done=tf.constant(False))

    def body(s):
        i = s["i"] + 1
        z = matvec(s["d"])
        dad = dot(s["d"], z)
        # NaN counts as non-positive. Spelled with is_nan because Grappler rewrites ~(a > b) into
        # a <= b inside tf.function, which is False for NaN.
        bad_curvature = ~(dad > 0) | tf.math.is_nan(dad)
        alpha = tf.where(bad_curvature, tf.zeros_like(dad), s["rz"] / tf.where(bad_curvature, tf.ones_like(dad), dad))
        x = axpy(alpha, s["d"], s["x"])
        r = axpy(-alpha, z, s["r"])
        y = precond(r)
        rz = dot(r, y)
        d = axpy(rz / tf.where(s["rz"] > 0, s["rz"], tf.ones_like(rz)), s["d"], y)
        phi = s["phi"] - 0.5 * alpha * s["rz"]            # (φ_step), no product; unchanged when α = 0
        k = window_size(i, window, min_iters)
        phi_back = s["phis"].read(tf.maximum(i - k, 0))
        progress = (i >= min_iters) & (i > k) & progress_stop(phi, phi_back, tf.cast(k, dtype), tol)
        solved = ~(rz > solved_rz) | tf.math.is_nan(rz)
        # the index into STOP_REASONS, −1 to go on (selects on scalars: cheaper than tf.case's branches)
        reason = tf.where(bad_curvature, 2, tf.where(progress, 1, tf.where(solved, 3, tf.where(i >= max_iters, 0, -1))))
        # on non-positive curvature α = 0, so x stays the previous iterate (d is finite; only z may not be)
        i_out = tf.where(bad_curvature, i - 1, i)
        save_now = tf.equal(schedule_t[s["n_saved"]], i) & ~bad_curvature
        saved = tf.cond(save_now,
                        lambda: [ta.write(s["n_saved"], xi) for ta, xi in zip(s["saved"], x)],
                        lambda: list(s["saved"]))
        return [dict(i=i_out, x=x, r=r, d=d, rz=rz, phi=phi, phis=s["phis"].write(i, phi), saved=saved,
                     n_saved=s["n_saved"] + tf.cast(save_now, tf.int32),
                     reason=tf.maximum(reason, 0), done=reason >= 0)]

    (state,) = tf.while_loop(lambda s: ~s["done"], body, [state], maximum_iterations=max_iters)
    n = state["i"]
    final_is_saved = (state["n_saved"] > 0) & tf.equal(schedule_t[tf.maximum(state["n_saved"] - 1, 0)], n)
    n_keep = state["n_saved"] - tf.cast(final_is_saved, tf.int32)
    idx = tf.range(n_keep)
    return CGResult(
        x=state["x"], iterations=n, phi=state["phis"].gather(tf.range(n + 1)),
        reduction=state["phis"].read(n),
        # (the reshape keeps the shape (0, ...) when nothing was saved; eager gather would give (0,))
        saved=[tf.reshape(ta.gather(idx), tf.concat([[-1], tf.shape(bi)], 0))
               for ta, bi in zip(state["saved"], b)],
        saved_iters=tf.gather(schedule_t, idx), stop_reason=state["reason"])


# ------------------------------------------------------------------ helpers


def _check_config(min_iters, max_iters, tol, window):
    for name, val in (("min_iters", min_iters), ("max_iters", max_iters)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name}: expected an integer ≥ 1, got {val!r}")
    if min_iters > max_iters:
        raise ValueError(f"min_iters: must not exceed max_iters, got min_iters={min_iters} > max_iters={max_iters}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol: expected ε > 0, got {tol!r}")
    if window not in WINDOWS:
        raise ValueError(f"window: expected one of {WINDOWS}, got {window!r}")
    if window == "report" and min_iters < 2:
        raise ValueError("min_iters: the report's window k = max(t, ⌈i/t⌉) takes t = min_iters and never "
                         f"stops for t < 2 (the report uses t = 3), got min_iters={min_iters}")


def _as_callable(preconditioner, single):
    if preconditioner is None:
        return lambda r: list(r)
    if callable(preconditioner):
        return (lambda r: [preconditioner(r[0])]) if single else preconditioner
    diag = [preconditioner] if single else list(preconditioner)
    return lambda r: [ri / mi for ri, mi in zip(r, diag)]


def _ceil_div(i, n):
    if isinstance(i, int):
        return -(-i // n)
    return (i + n - 1) // n


def _maximum(a, b):
    if isinstance(b, int):
        return max(a, b)
    return tf.maximum(a, b)


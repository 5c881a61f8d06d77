"""The Hessian-free optimizer: the report's Algorithm 1 with Martens' (2010) safeguards.

One update on a batch (each step can be switched off in `HFConfig`):

1. gradient g = ∇f and the linearisation of the net (one forward pass);
2. the diagonal preconditioner M;
3. PCG on (G + λI) p = −g, warm-started from `warm_start` × the previous
   update's *final* CG iterate (Martens: 0.95; the report: none);
4. CG backtracking: walk back over the iterates saved at i = ⌈5·1.3ʲ⌉ while the
   loss on the curvature batch keeps decreasing;
5. an Armijo line search along the chosen p;
6. the reduction ratio ρ on the chosen p (eq. 25);
7. the LM update of λ (eq. 26);
8. θ ← θ + t·p.

A non-finite loss, gradient or curvature product rejects the update: θ stays,
λ is raised by r and the warm start is reset. λ is kept in
[`damping_min`, `damping_max`].

Sign convention: CG solves (G + λI) p = −∇f and we step θ + p; the report solves
for Δθ = −p with +∇f and steps θ − Δθ.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from . import cg as _cg
from . import damping as _damping
from . import preconditioners as _pre
from .curvature import linearize
from .training import Trainer
from .vectors import all_finite, axpy, dot, norm, scale


@dataclasses.dataclass
class HFConfig:
    """Hyper-parameters of `HessianFree`, with their sources.

    Attributes:
      damping: initial λ₀; Martens' demo code starts at 45 with the curvature averaged
        over cases, as ours is (eq. 39).
      r: LM factor (eq. 26); report 1.5 (= Martens' 3/2 and 2/3); use ~1.01 for small batches.
      tol: ε of the CG stopping rule (report and Martens: 5e-4).
      min_iters: minimum CG iterations (report: t = 3).
      max_iters: maximum CG iterations (Martens 2010: 250).
      window: CG stopping window, "martens" (k = max(10, ⌈i/10⌉)) or "report" (k = max(t, ⌈i/t⌉)).
      warm_start: decay of the previous CG solution used as x₀ (Martens: 0.95; 0 disables).
      preconditioner: "martens", "report", "chapelle_erhan" or "none".
      alpha: exponent of the preconditioner (Martens: 0.75).
      backtracking: CG backtracking over the saved iterates (Martens).
      line_search: Armijo backtracking line search (Martens: c = 1e-2, ×0.8, ≤ 60 tries).
      rho_denominator: "damped" or "undamped" quadratic in ρ (Martens' code: undamped).
      damping_min, damping_max: λ is clamped to this range.
      curvature_batch_size: if set, G·v uses only the first n examples of each batch
        (Martens: the gradient on more data than the curvature).
      fisher_examples: for models that are not stacks of Dense layers, Martens' diagonal is
        averaged over at most this many examples of the batch (per-example gradients cost
        about a gradient each there); None uses all. Dense stacks always use the whole batch.
    """

    damping: float = 45.0
    r: float = 1.5
    tol: float = 5e-4
    min_iters: int = 3
    max_iters: int = 250
    window: str = "martens"
    warm_start: float = 0.95
    preconditioner: str = "martens"
    alpha: float = 0.75
    backtracking: bool = True
    line_search: bool = True
    armijo_c: float = 1e-2
    armijo_shrink: float = 0.8
    armijo_max_tries: int = 60
    rho_denominator: str = "damped"
    damping_min: float = 1e-6
    damping_max: float = 1e6
    curvature_batch_size: int | None = None
    fisher_examples: int | None = 250

    def __post_init__(self):
        _positive = ("damping", "tol", "armijo_c", "damping_min", "damping_max")
        for name in _positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{name}: expected a number > 0, got {value!r}")
        if not (isinstance(self.r, (int, float)) and self.r > 1):
            raise ValueError(f"r: expected a factor r > 1, got {self.r!r}")
        _cg._check_config(self.min_iters, self.max_iters, self.tol, self.window)
        if self.preconditioner not in _pre.NAMES:
            raise ValueError(f"preconditioner: expected one of {_pre.NAMES}, got {self.preconditioner!r}")
        if self.rho_denominator not in _damping.RULES:
            raise ValueError(f"rho_denominator: expected one of {_damping.RULES}, got {self.rho_denominator!r}")
        if not 0 <= self.warm_start <= 1:
            raise ValueError(f"warm_start: expected a decay in [0, 1], got {self.warm_start!r}")
        if not 0 < self.armijo_shrink < 1:
            raise ValueError(f"armijo_shrink: expected a factor in (0, 1), got {self.armijo_shrink!r}")
        if not self.damping_min <= self.damping <= self.damping_max:
            raise ValueError(f"damping: expected λ₀ in [damping_min, damping_max] = "
                             f"[{self.damping_min}, {self.damping_max}], got {self.damping}")
        if self.fisher_examples is not None and not (
                isinstance(self.fisher_examples, int) and self.fisher_examples >= 1):
            raise ValueError(f"fisher_examples: expected an integer ≥ 1 or None, got {self.fisher_examples!r}")
        if self.curvature_batch_size is not None and not (
                isinstance(self.curvature_batch_size, int) and self.curvature_batch_size >= 1):
            raise ValueError(f"curvature_batch_size: expected an integer ≥ 1 or None, got {self.curvature_batch_size!r}")


class HessianFree(Trainer):
    """Hessian-free optimisation of a Keras model under a matching loss (Algorithm 1).

    >>> hf = HessianFree(model, "softmax_cross_entropy", damping=1.0, r=1.5)
    >>> history = hf.fit((x, y), epochs=3, batch_size=1000, validation_data=(xt, yt))

    State (`damping` λ, the previous CG solution, the update counter) lives in
    `tf.Variable`s, so `tf.train.Checkpoint(model=..., trainer=hf)` saves it.

    With `strategy=tf.distribute.MirroredStrategy()` (model and HessianFree both
    created under `strategy.scope()`), each replica computes the gradient, the
    G·v products and the losses on its share of the batch; an all-reduce sums
    them, so every CG scalar, the backtracking choice and λ are identical on all
    replicas, and the update equals the single-device one on the same batch.
    """

    def __init__(self, model, loss, config: HFConfig | None = None, seed=0, strategy=None, **overrides):
        super().__init__(model, loss, seed=seed)
        if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy: expected a tf.distribute.Strategy, got {type(strategy).__name__}")
        self.strategy = strategy
        if config is not None and not isinstance(config, HFConfig):
            raise TypeError(f"config: expected an HFConfig, got {type(config).__name__}")
        fields = {f.name for f in dataclasses.fields(HFConfig)}
        unknown = set(overrides) - fields
        if unknown:
            raise TypeError(f"unknown HFConfig field(s) {sorted(unknown)}; known: {sorted(fields)}")
        self.config = dataclasses.replace(config or HFConfig(), **overrides)
        variables = model.trainable_variables
        dtype = variables[0].dtype
        self.damping = tf.Variable(self.config.damping, dtype=dtype, trainable=False, name="damping")
        self.previous = [tf.Variable(tf.zeros_like(v), trainable=False, name="previous_cg") for v in variables]
        # r lives in a variable so it can be changed (e.g. by a slider) without recompiling
        self.lm_factor = tf.Variable(self.config.r, dtype=dtype, trainable=False, name="lm_factor")
        self._compiled = tf.function(self._hf_update, reduce_retracing=True)

    # ------------------------------------------------------------------ Algorithm 1, one batch
    def _update(self, x, y):
        return self._compiled(x, y)

    def _hf_update(self, x, y):
        """One update; on one device, or over the replicas of `strategy`."""
        cfg = self.config
        if self.strategy is None:
            batch = _OneDevice(self, x, y, cfg.curvature_batch_size)
        else:
            batch = _Replicated(self, x, y, cfg.curvature_batch_size)
        step, damping, previous, stats = self._hf_step(batch)
        self.damping.assign(damping)
        for var, delta, prev, new in zip(self.model.trainable_variables, step, self.previous, previous):
            var.assign_add(delta)
            prev.assign(new)
        return stats

    def _hf_step(self, batch):
        """Steps 1–8 of Algorithm 1 on the quantities `batch` provides (batch means). Returns the
        parameter step t·p, the new λ, the new warm start and the record."""
        cfg = self.config
        lam = self.damping.read_value()
        # 1. gradient (and, on one device, the linearisation from the same forward pass)
        f_grad, grad = batch.loss_and_gradient()
        f_old = batch.curvature_loss()
        # 2. preconditioner
        precond = self._preconditioner(batch, grad, lam)
        # 3. PCG on (G + λI) p = −g, warm-started
        b = scale(-1.0, grad)
        x0 = scale(cfg.warm_start, [p.read_value() for p in self.previous]) if cfg.warm_start > 0 else None
        res = _cg.pcg(lambda v: axpy(lam, v, batch.ggn_vp(v)), b, x0=x0, preconditioner=precond,
                      min_iters=cfg.min_iters, max_iters=cfg.max_iters, tol=cfg.tol, window=cfg.window)
        # 4. backtracking over saved iterates (on the curvature batch)
        p, f_new, phi = res.x, batch.loss_at(res.x), res.reduction
        if cfg.backtracking:
            p, f_new, phi = self._backtrack(res, batch.loss_at, p, f_new, phi)
        # 5. Armijo line search along p
        slope = dot(grad, p)
        rate, f_rate = tf.ones_like(f_old), f_new
        if cfg.line_search:
            rate, f_rate = self._line_search(batch.loss_at, p, f_old, f_new, slope)
        # 6. ρ on the chosen p, 7. LM update of λ (raised whatever ρ says when anything was not finite)
        q = _damping.model_reduction(phi, p, lam, cfg.rho_denominator)
        rho = _damping.reduction_ratio(f_old, f_new, q)
        finite = (tf.math.is_finite(f_grad) & all_finite(grad) & all_finite(res.x)
                  & tf.math.is_finite(res.reduction))
        r = self.lm_factor.read_value()
        new_lam = _damping.clamp(tf.where(finite, _damping.lm_update(lam, rho, r), lam * r),
                                 cfg.damping_min, cfg.damping_max)
        # 8. the step t·p; the warm start keeps CG's last iterate (not the backtracked one)
        rate = tf.where(finite, rate, tf.zeros_like(rate))
        accepted = rate > 0
        step = [tf.where(finite, rate * pi, tf.zeros_like(pi)) for pi in p]
        previous = [tf.where(finite, xi, tf.zeros_like(xi)) for xi in res.x]
        stats = {"loss": f_grad, "loss_curvature_batch": f_old, "loss_after": tf.where(accepted, f_rate, f_old),
                 "damping": lam, "rho": rho, "cg_iters": res.iterations, "cg_stop": res.stop_reason,
                 "model_reduction": q, "rate": rate, "step_norm": norm(step),
                 "accepted": accepted, "nonfinite": ~finite}
        return step, new_lam, previous, stats

    # ------------------------------------------------------------------ pieces
    def _preconditioner(self, batch, grad, lam):
        """M = (D + λ)^α with the curvature diagonal D of the configured kind (None: plain CG)."""
        name = self.config.preconditioner
        if name == "martens":
            diagonal = batch.fisher_diagonal()
        elif name == "report":
            diagonal = _pre.batch_gradient_squared(grad)       # grad is already the full-batch mean
        elif name == "chapelle_erhan":
            seed = tf.stack([tf.cast(self.seed, tf.int32), tf.cast(self.iterations, tf.int32)])
            diagonal = batch.ggn_diagonal_estimate(seed)
        else:
            return None
        return _pre.damped_power(diagonal, lam, self.config.alpha)

    def _loss_at(self, delta, x, y):
        """f(θ + δ) without touching the variables (Keras' stateless call)."""
        model = self.model
        values = [v.value + d for v, d in zip(model.trainable_variables, delta)]
        z, _ = model.stateless_call(values, [v.value for v in model.non_trainable_variables], x)
        return self.loss.value(z, y)

    def _backtrack(self, res, f_at, p, f_p, phi_p):
        """Martens' CG backtracking: from the last iterate walk back over the saved ones
        while the loss keeps decreasing; return (p, f(θ+p), φ(p)) of the best."""
        n_saved = tf.shape(res.saved_iters)[0]

        def cond(j, p, f_p, phi_p, go_on):
            return go_on & (j >= 0)

        def body(j, p, f_p, phi_p, go_on):
            cand = [s[j] for s in res.saved]
            f_c = f_at(cand)
            better = f_c < f_p
            pick = lambda a, b: tf.where(better, a, b)
            return (j - 1, [pick(c, q) for c, q in zip(cand, p)], pick(f_c, f_p),
                    pick(res.phi[res.saved_iters[j]], phi_p), better)

        _, p, f_p, phi_p, _ = tf.while_loop(cond, body, (n_saved - 1, p, f_p, phi_p, tf.constant(True)))
        return p, f_p, phi_p

    def _line_search(self, f_at, p, f_old, f_p, slope):
        """Armijo: the largest t = 0.8ᵏ (k < 60) with f(θ + t p) ≤ f(θ) + c t ∇fᵀp; t = 0 if none.
        Returns (t, f(θ + t p))."""
        cfg = self.config
        c = tf.cast(cfg.armijo_c, f_old.dtype)

        def ok(t, f_t):
            return f_t <= f_old + c * t * slope

        def cond(k, t, f_t):
            return (k < cfg.armijo_max_tries) & ~ok(t, f_t)

        def body(k, t, f_t):
            t = t * cfg.armijo_shrink
            return k + 1, t, f_at(scale(t, p))

        one = tf.ones_like(f_old)
        _, t, f_t = tf.while_loop(cond, body, (tf.constant(0), one, f_p))
        accept = ok(t, f_t) & tf.math.is_finite(f_t)
        return tf.where(accept, t, tf.zeros_like(t)), tf.where(accept, f_t, f_old)

    def reset(self, damping=None, r=None):
        """Forget the warm start and set λ (default λ₀) and r (default config.r); no recompilation."""
        damping = self.config.damping if damping is None else damping
        r = self.config.r if r is None else r
        if not damping > 0:
            raise ValueError(f"damping: expected λ > 0, got {damping}")
        if not r > 1:
            raise ValueError(f"r: expected a factor r > 1, got {r}")
        self.damping.assign(damping)
        self.lm_factor.assign(r)
        for prev in self.previous:
            prev.assign(tf.zeros_like(prev))



class _OneDevice:
    """The batch means HF needs, on one device: the net is linearised once (one forward pass)
    and every G·v reuses it; gradient and loss come from the same pass."""

    def __init__(self, hf, x, y, curvature_batch_size=None):
        self.hf, self.x, self.y = hf, x, y
        self.xc, self.yc = (x[:curvature_batch_size], y[:curvature_batch_size]) if curvature_batch_size else (x, y)
        self.separate = bool(curvature_batch_size)
        self.lin = linearize(hf.model, hf.loss, self.xc, self.yc)

    def loss_and_gradient(self):
        if not self.separate:
            return self.lin.value, self.lin.gradient()
        with tf.GradientTape() as tape:
            value = self.hf.loss.value(self.hf.model(self.x), self.y)
        return value, tape.gradient(value, self.hf.model.trainable_variables)

    def curvature_loss(self):
        return self.lin.value

    def ggn_vp(self, v):
        return self.lin.ggn_vp(v)

    def loss_at(self, delta):
        return self.hf._loss_at(delta, self.xc, self.yc)

    def fisher_diagonal(self):
        return _pre.empirical_fisher_diagonal(self.hf.model, self.hf.loss, self.x, self.y,
                                              max_examples=self.hf.config.fisher_examples)

    def ggn_diagonal_estimate(self, seed):
        return _pre.ggn_diagonal_estimate(self.hf.model, self.hf.loss, self.xc, self.yc, seed=seed)


class _Replicated:
    """The same batch means under a `tf.distribute` strategy. Each quantity is computed by every
    replica on its share of the batch and all-reduced (a weighted sum), so CG, backtracking, the
    line search and λ run once on identical numbers. MirroredStrategy allows no all-reduce inside
    a replica's loop, so CG runs in cross-replica context and each G·v is one `strategy.run`;
    that product recomputes the replica's forward pass (no cached linearisation across calls)."""

    def __init__(self, hf, x, y, curvature_batch_size=None):
        self.hf, self.strategy = hf, hf.strategy
        self.x, self.y = x, y
        self.xc, self.yc = (x[:curvature_batch_size], y[:curvature_batch_size]) if curvature_batch_size else (x, y)

    def _mean(self, fn, x, y, *args):
        """Σ_replicas (n_replica / n) · fn(shard, *args): the batch mean of a per-shard mean."""
        dtype = self.hf.damping.dtype

        def on_replica(*args):
            ctx = tf.distribute.get_replica_context()
            n = tf.shape(x)[0]
            i, replicas = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
            lo, hi = i * n // replicas, (i + 1) * n // replicas
            weight = tf.cast(hi - lo, dtype) / tf.cast(n, dtype)
            return tf.nest.map_structure(lambda t: t * weight, fn(x[lo:hi], y[lo:hi], *args))

        per_replica = self.strategy.run(on_replica, args=args)
        return tf.nest.map_structure(lambda t: self.strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None),
                                     per_replica)

    def _value_and_grad(self, x, y):
        with tf.GradientTape() as tape:
            value = self.hf.loss.value(self.hf.model(x), y)
        return value, tape.gradient(value, self.hf.model.trainable_variables)

    def loss_and_gradient(self):
        return self._mean(self._value_and_grad, self.x, self.y)

    def curvature_loss(self):
        return self._mean(lambda x, y: self.hf.loss.value(self.hf.model(x), y), self.xc, self.yc)

    def ggn_vp(self, v):
        def local(x, y, v):
            return linearize(self.hf.model, self.hf.loss, x, y).ggn_vp(v)
        return self._mean(local, self.xc, self.yc, v)

    def loss_at(self, delta):
        return self._mean(lambda x, y, d: self.hf._loss_at(d, x, y), self.xc, self.yc, delta)

    def fisher_diagonal(self):
        return self._mean(lambda x, y: _pre.empirical_fisher_diagonal(
            self.hf.model, self.hf.loss, x, y, max_examples=self.hf.config.fisher_examples), self.x, self.y)

    def ggn_diagonal_estimate(self, seed):
        return self._mean(lambda x, y, s: _pre.ggn_diagonal_estimate(self.hf.model, self.hf.loss, x, y, seed=s),
                          self.xc, self.yc, seed)

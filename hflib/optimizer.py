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
        if self.curvature_batch_size is not None and not (
                isinstance(self.curvature_batch_size, int) and self.curvature_batch_size >= 1):
            raise ValueError(f"curvature_batch_size: expected an integer ≥ 1 or None, got {self.curvature_batch_size!r}")


class HessianFree(Trainer):
    """Hessian-free optimisation of a Keras model under a matching loss (Algorithm 1).

    >>> hf = HessianFree(model, "softmax_cross_entropy", damping=1.0, r=1.5)
    >>> history = hf.fit((x, y), epochs=3, batch_size=1000, validation_data=(xt, yt))

    State (`damping` λ, the previous CG solution, the update counter) lives in
    `tf.Variable`s, so `tf.train.Checkpoint(model=..., trainer=hf)` saves it.
    """

    def __init__(self, model, loss, config: HFConfig | None = None, seed=0, **overrides):
        super().__init__(model, loss, seed=seed)
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
        cfg = self.config
        variables = self.model.trainable_variables
        if cfg.curvature_batch_size:
            xc, yc = x[:cfg.curvature_batch_size], y[:cfg.curvature_batch_size]
        else:
            xc, yc = x, y
        lam = self.damping.read_value()
        # 1. gradient and linearisation (one forward pass when the batches coincide)
        lin = linearize(self.model, self.loss, xc, yc)
        if cfg.curvature_batch_size:
            with tf.GradientTape() as tape:
                f_grad = self.loss.value(self.model(x), y)
            grad = tape.gradient(f_grad, variables)
        else:
            f_grad, grad = lin.value, lin.gradient()
        f_old = lin.value
        # 2. preconditioner
        precond = self._preconditioner(x, y, grad, lam)
        # 3. PCG on (G + λI) p = −g, warm-started
        b = scale(-1.0, grad)
        x0 = scale(cfg.warm_start, [p.value() for p in self.previous]) if cfg.warm_start > 0 else None
        res = _cg.pcg(lambda v: axpy(lam, v, lin.ggn_vp(v)), b, x0=x0, preconditioner=precond,
                      min_iters=cfg.min_iters, max_iters=cfg.max_iters, tol=cfg.tol, window=cfg.window)
        # 4. backtracking over saved iterates (on the curvature batch)
        f_at = lambda delta: self._loss_at(delta, xc, yc)
        p, f_new, phi = res.x, f_at(res.x), res.reduction
        if cfg.backtracking:
            p, f_new, phi = self._backtrack(res, f_at, p, f_new, phi)
        # 5. Armijo line search along p
        slope = dot(grad, p)
        rate, f_rate = tf.ones_like(f_old), f_new
        if cfg.line_search:
            rate, f_rate = self._line_search(f_at, p, f_old, f_new, slope)
        # 6. ρ on the chosen p, 7. LM update of λ
        q = _damping.model_reduction(phi, p, lam, cfg.rho_denominator)
        rho = _damping.reduction_ratio(f_old, f_new, q)
        finite = (tf.math.is_finite(f_grad) & all_finite(grad) & all_finite(res.x)
                  & tf.math.is_finite(res.reduction))
        r = self.lm_factor.read_value()
        new_lam = tf.where(finite, _damping.lm_update(lam, rho, r), lam * r)
        self.damping.assign(_damping.clamp(new_lam, cfg.damping_min, cfg.damping_max))
        # 8. parameter update; the warm start keeps CG's last iterate (not the backtracked one)
        rate = tf.where(finite, rate, tf.zeros_like(rate))
        accepted = rate > 0
        for var, pi, prev, xi in zip(variables, p, self.previous, res.x):
            var.assign_add(tf.where(finite, rate * pi, tf.zeros_like(pi)))
            prev.assign(tf.where(finite, xi, tf.zeros_like(xi)))
        return {"loss": f_grad, "loss_curvature_batch": f_old, "loss_after": tf.where(accepted, f_rate, f_old),
                "damping": lam, "rho": rho, "cg_iters": res.iterations, "cg_stop": res.stop_reason,
                "model_reduction": q, "rate": rate, "step_norm": rate * norm(p),
                "accepted": accepted, "nonfinite": ~finite}

    # ------------------------------------------------------------------ pieces
    def _preconditioner(self, x, y, grad, lam):
        name, alpha = self.config.preconditioner, self.config.alpha
        if name == "martens":
            return _pre.martens(self.model, self.loss, x, y, lam, alpha)
        if name == "report":
            return _pre.report(grad, lam, alpha)
        if name == "chapelle_erhan":
            seed = tf.stack([tf.cast(self.seed, tf.int32), tf.cast(self.iterations, tf.int32)])
            return _pre.chapelle_erhan(self.model, self.loss, x, y, lam, alpha, seed=seed)
        return None

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


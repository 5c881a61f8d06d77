"""hflib: Hessian-free optimisation of deep networks, after Brunn, Kury & Schächter,
Martens (2010) and Schraudolph (2002).

The modules form four layers, each importing only the layers below it:

1. the math core (pure TensorFlow), mirroring the report: `losses` (§II.B/D), `curvature`
   (§III.C/F), `cg` (Alg. 2), `preconditioners`, `damping` (§III.D), `linesearch`, plus
   `checks`, `vectors`, `models`, `spectrum`;
2. the HF update (Alg. 1): `batch`, `optimizer` (`HessianFree`, `HFConfig`);
3. the training loop for any updater: `history`, `callbacks`, `checkpoints`, `training`
   (`fit`, `evaluate`), `baselines` (`FirstOrder`);
4. applications: `data`, `experiments`, `cli`, `widgets`, `plotting`, `device`, `notebook`.

`import hflib` is cheap and has no side effects: submodules (and TensorFlow) are imported on
first use of a name, pyplot only by `plotting` and `widgets`, and GPU settings are never touched.
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

_SUBMODULES = {
    "baselines", "batch", "callbacks", "cg", "checkpoints", "checks", "cli", "curvature", "damping", "data",
    "device", "experiments", "history", "linesearch", "losses", "models", "notebook", "optimizer", "plotting",
    "preconditioners", "quiet", "spectrum", "training", "vectors", "widgets",
}
# public name -> the module that defines it (one home for each)
_NAMES = {
    "CGResult": "cg", "pcg": "cg",
    "DampedGGN": "curvature", "dense_ggn": "curvature", "dense_hessian": "curvature",
    "dense_jacobian": "curvature", "ggn_vector_product": "curvature", "gradient": "curvature",
    "hessian_vector_product": "curvature", "linearize": "curvature",
    "HessianFree": "optimizer", "HFConfig": "optimizer",
    "History": "history", "fit": "training", "evaluate": "training", "FirstOrder": "baselines",
    "flatten": "vectors", "unflatten": "vectors",
}
__all__ = sorted(_NAMES) + sorted(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'hflib' has no attribute {name!r}")


def __dir__():
    return __all__

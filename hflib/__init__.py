"""hflib: Hessian-free optimisation of deep networks, after Brunn, Kury & Schächter,
Martens (2010) and Schraudolph (2002).

The module map follows the report: `losses` (§II.B/D), `curvature` (§III.C/F),
`cg` (Alg. 2), `preconditioners`, `damping` (§III.D), `optimizer` (Alg. 1),
`data`, `models`, `experiments`, `widgets`.
"""
from . import cg, curvature, damping, data, device, experiments, losses, models, plotting, preconditioners, vectors
from .cg import CGResult, pcg
from .curvature import (DampedGGN, dense_ggn, dense_hessian, dense_jacobian, ggn_vector_product, gradient,
                        hessian_vector_product, linearize)
from .optimizer import HessianFree, HFConfig
from .training import Callback, FirstOrder, History
from .vectors import flatten, unflatten

__version__ = "0.1.0"

device.enable_memory_growth()

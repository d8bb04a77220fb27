"""Update rules as B-series: Runge-Kutta tableaux, compositions and multistep recurrences.

Every method acts on ``ncolors`` vector fields ``f_0..f_{C-1}`` (one per batch, one per
player, or a single ``f = -grad L``) and knows two things:

* :meth:`Method.series` -- its (NB-)series over colored trees up to an order, with exact
  coefficients (sympy domain elements, so symbolic parameters such as ``beta`` simplify);
* :meth:`Method.step` -- the numerical update, in JAX, as users write it (used by
  :func:`bea.verify`).

Kinds of methods (design notes, section 1):

* :class:`AdditiveRungeKutta`: one Butcher tableau ``(A^(c), b^(c))`` per color:
  ``g_i = y + h sum_j sum_c A^(c)_ij f_c(g_j)``, ``y1 = y + h sum_i sum_c b^(c)_i f_c(g_i)``.
  Plain RK methods, GD, SGD over exact batches, extragradient, proximal point (implicit
  Euler), and simultaneous/alternating two-player updates are all of this form.
* :class:`Composition`: several methods applied one after the other.
* :class:`LinearMultistep`: ``x_{n+1} = sum_j alpha_j x_{n-j} +
  h sum_e w_e sum_c r_c f_c(sum_j gamma_ej x_{n-j})`` (heavy-ball, Nesterov, optimistic GD),
  analysed through its *underlying one-step method* ``Phi_h`` (HLW ch. XV): substituting
  ``x_{n-j} = Phi_h^{-j}(x_n)`` gives an equation for the series of ``Phi_h`` that is solved
  tree by tree (it is affine in the top-order coefficient).
"""

from __future__ import annotations

from .base import (
    BETA,
    Method,
    Number,
    as_parameter,
    block_names,
    check_order,
    symbols,
)
from .composition import Composition, compose
from .multistep import LinearMultistep, check_beta, heavy_ball, nesterov
from .runge_kutta import (
    AdditiveRungeKutta,
    OrderingAverage,
    RungeKutta,
    explicit_midpoint,
    extragradient,
    gd,
    heun,
    proximal_point,
    rk,
    rk4,
    sgd,
)

# one public path for the classes (docs, and derivation-cache keys that name the class)
for _cls in (Method, AdditiveRungeKutta, RungeKutta, OrderingAverage, Composition,
             LinearMultistep):
    _cls.__module__ = __name__
del _cls

__all__ = ["BETA", "AdditiveRungeKutta", "Composition", "LinearMultistep", "Method", "Number",
           "OrderingAverage", "RungeKutta", "as_parameter", "block_names", "check_beta",
           "check_order", "compose", "explicit_midpoint", "extragradient", "gd", "heavy_ball",
           "heun", "nesterov", "proximal_point", "rk", "rk4", "sgd", "symbols"]

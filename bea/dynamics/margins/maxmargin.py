r"""Reference maximum margins of bias-free linear models ``f(x; w) = <w, x>``.

``gamma*_p = max_{||w||_p <= 1} min_i y_i <w, x_i>``, the margin steepest descent in the
l_p norm tends to (Gunasekar et al. 2018, Theorem 5 for exponential-tailed losses).

* ``p = inf``: an LP in ``(w, gamma)``: max ``gamma`` s.t. ``y_i <w, x_i> >= gamma``,
  ``-1 <= w <= 1``.
* ``p = 1``: an LP in ``(u, v, gamma)``, ``w = u - v``, ``u, v >= 0``,
  ``sum(u + v) <= 1``.
* ``p = 2``: the QP ``min ||w||_2`` s.t. ``y_i <w, x_i> >= 1`` (hard-margin SVM through
  the origin), ``gamma* = 1/||w||``.  Solved as Lawson & Hanson's *least-distance
  program* (Solving Least Squares Problems, 1974, ch. 23): with ``G = diag(y) X``,
  ``E = [G^T; 1^T]``, ``f = e_(d+1)``, the nonnegative least-squares solution ``u`` of
  ``E u ~ f`` (``scipy.optimize.nnls``) gives ``r = E u - f`` and ``w = -r[:d]/r[d]``;
  ``r = 0`` certifies that the constraints are infeasible.  Why this and not SLSQP or
  cvxpy: it is an exact finite active-set method (no tolerance tuning, no iteration cap
  that silently stops early), scipy is already a dependency, and cvxpy would add a
  compiled solver stack for one small QP.  The tests check it against SLSQP.

The LPs use scipy's HiGHS (``linprog(method="highs")``).  Separability is decided once,
by the l_inf LP (separability does not depend on the norm): ``gamma*_inf <= tol`` raises
:class:`NotSeparableError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...optax.steepest import norm_exponent
from .geometry import check_labels

__all__ = ["MaxMargin", "NotSeparableError", "linear_margin", "max_margin"]


class NotSeparableError(ValueError):
    """The data are not linearly separable through the origin: no maximum margin exists."""


@dataclass(frozen=True)
class MaxMargin:
    """``w`` (unit ``||w||_p``) and ``margin = min_i y_i <w, x_i>`` for the norm ``p``."""

    norm: str
    p: float
    w: np.ndarray
    margin: float


def _check(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be an (n, d) array of examples, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x has NaN or infinite entries")
    return x, check_labels(y, x.shape[0])


def linear_margin(w, x, y, norm: str | float = "l2") -> float:
    """``min_i y_i <w, x_i> / ||w||_p``."""
    p = norm_exponent(norm)
    w = np.asarray(w, dtype=np.float64).ravel()
    return float(np.min(y * (x @ w)) / np.linalg.norm(w, ord=p))


def _lp(c, a_ub, b_ub, bounds):
    from scipy.optimize import linprog

    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"HiGHS did not solve the margin LP: {res.message}")
    return res.x


def _linf(g: np.ndarray) -> tuple[np.ndarray, float]:
    n, d = g.shape
    c = np.zeros(d + 1)
    c[-1] = -1.0
    a = np.hstack([-g, np.ones((n, 1))])
    sol = _lp(c, a, np.zeros(n), [(-1.0, 1.0)] * d + [(None, None)])
    return sol[:d], float(sol[-1])


def _l1(g: np.ndarray) -> tuple[np.ndarray, float]:
    n, d = g.shape
    c = np.zeros(2 * d + 1)
    c[-1] = -1.0
    a = np.vstack([np.hstack([-g, g, np.ones((n, 1))]),
                   np.concatenate([np.ones(2 * d), [0.0]])[None]])
    b = np.concatenate([np.zeros(n), [1.0]])
    sol = _lp(c, a, b, [(0.0, None)] * (2 * d) + [(None, None)])
    return sol[:d] - sol[d:2 * d], float(sol[-1])


def _l2(g: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    n, d = g.shape
    e = np.vstack([g.T, np.ones((1, n))])
    f = np.zeros(d + 1)
    f[-1] = 1.0
    u, _ = nnls(e, f, maxiter=50 * (n + d))
    r = e @ u - f
    if np.linalg.norm(r) < 1e-12:
        raise NotSeparableError("the l2 max-margin QP is infeasible: data not separable")
    return -r[:d] / r[d]


def max_margin(x, y, norm: str | float = "l2", *, tol: float = 1e-9) -> MaxMargin:
    """The maximum margin of a bias-free linear classifier in ``norm`` (l1, l2 or l_inf).

    Raises :class:`NotSeparableError` when no ``w`` has ``y_i <w, x_i> > 0`` for all
    ``i`` (best l_inf margin ``<= tol * max|x|``), :class:`bea.dynamics.margins.LabelError`
    for labels outside {-1, +1} and :class:`bea.optax.UnknownNormError` for other norms.
    """
    p = norm_exponent(norm)
    if p not in (1.0, 2.0, math.inf):
        raise ValueError(f"max_margin solves l1, l2 and l_inf (LP/QP); got p = {p:g}")
    x, y = _check(x, y)
    g = y[:, None] * x
    w_inf, gam_inf = _linf(g)
    scale = float(np.max(np.abs(x))) or 1.0
    if not gam_inf > tol * scale:
        raise NotSeparableError(
            f"the data are not linearly separable by a hyperplane through the origin (best "
            f"l_inf margin {gam_inf:.3g} <= 0), so a maximum margin does not exist; remove "
            f"the overlapping examples, or use a richer (e.g. homogeneous nonlinear) model")
    if p == math.inf:
        w = w_inf / np.max(np.abs(w_inf))
    elif p == 1.0:
        w, _ = _l1(g)
        w = w / np.sum(np.abs(w))
    else:
        w = _l2(g)
        w = w / np.linalg.norm(w)
    name = "linf" if p == math.inf else f"l{p:g}"
    return MaxMargin(name, p, w, float(np.min(g @ w)))

"""Modified equations of two-player updates, in either time convention.

``joint`` (default): the modified field of the whole update in iteration time ``h``,
``z' = f~(z)``, from the colored engine; player x's components are the x-block.
``per-player``: Rosca et al. (ICML 2021), order 1 only.  Player p moves by ``R_p h f_p +
O(h^2)`` per iteration, ``R_p = a(p)`` the coefficient of its one-node tree in the method's
series (``R_p = k_p r_p`` for ``k_p`` steps at rate ``r_p``); its *own time* per iteration
is ``R_p h``.  It follows ``p' = f_p + R_p h sum_q c_q F([q]_p)`` for that time, the other
player moving along its plain field at unit speed.  Flowing for ``tau = R_p h`` gives
``p + tau f_p + tau^2 sum_q (c_q + 1/2) F([q]_p) + O(h^3)``; matching the ``h^2`` term of
one iteration, ``R_p^2 (c_q + 1/2) = a([q]_p)``, i.e. ``c_q = a([q]_p)/R_p^2 - 1/2``
(derived here; for one step per player it is Rosca et al.'s Theorem).  E.g. alternating
GD gives ``y' = g - (lam h/2)((1 - 2 alpha/lam) g_x f + g_y g)``.  The own-time rates
``R_p`` are ``ModifiedEquation.times``.  Using the rate ``r_p`` instead of ``R_p`` is
wrong as soon as a player takes several steps per iteration (error ``O(h)`` in the
player's own time instead of ``O(h^3)``).
"""

from __future__ import annotations

from typing import Any

from bea import modified_equation as _joint
from bea import render as R
from bea import series as S
from bea import trees as T
from bea.modified import ModifiedEquation

CONVENTIONS = ("joint", "per-player")


def modified_equation(method: Any, order: int, convention: str = "joint",
                      **kw: Any) -> ModifiedEquation:
    """Modified field of a two-player ``method`` (see module docstring for conventions)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}: use one of {CONVENTIONS}")
    if convention == "joint":
        return _joint(method, order, **kw)
    if order > 1:
        raise ValueError("the per-player convention of Rosca et al. is defined at order 1; "
                         "use convention='joint' for higher orders")
    a = method.series(2)
    dom = a.domain
    # own-time rate of player p: how far it moves per iteration, a(leaf_p) (= k_p r_p)
    rates = [a[T.leaf(p)] for p in range(2)]
    for p, r in enumerate(rates):
        if not r:
            raise ValueError(f"player {method.players[p]} does not move in one iteration of "
                             f"{method.name}; the per-player convention needs each player "
                             "to move")
    half = dom.one / dom.convert(2)
    b = S.BSeries(dom, 2, order + 1, dom.zero, {})
    for p in range(2):
        b.coeffs[T.leaf(p)] = dom.one
        if order >= 1:
            for q in range(2):
                t = T.graft(p, T.leaf(q))
                c = a[t] / (rates[p] * rates[p]) - half
                if c:
                    b.coeffs[t] = rates[p] * c
    me = ModifiedEquation(method, order, series=b, **kw)
    me.convention = "per-player"
    me.times = tuple(R.nice(dom.to_sympy(r)) for r in rates)
    return me


def stability_report(game: Any, method: str, lr: tuple[float, float], h: float = 1.0,
                     orders: tuple[int, ...] = (0, 1, 2), at: Any = None) -> dict[str, Any]:
    """Does the drift predict the (in)stability of ``method`` at an equilibrium?

    Compares the eigenvalues of one step of the discrete update (``games.runners``
    convention: player rates ``lr`` include the step, ``h`` only scales them) with those of
    the joint-time modified flows of each order (``z' = f~(z)``, stable iff every
    eigenvalue has negative real part; the map is stable iff its spectral radius is < 1).
    Small games only: the Jacobians are dense.
    """
    import numpy as np

    from . import experiments, stability
    from . import methods as GM

    if method not in ("simultaneous", "alternating", "extragradient"):
        raise ValueError(f"stability_report supports one-step methods (simultaneous, "
                         f"alternating, extragradient), not {method!r}")
    rates = (lr[0] / h, lr[1] / h)
    eq = at if at is not None else game.equilibrium
    if eq is None:
        raise ValueError("the game has no known equilibrium: pass at=(x*, y*)")
    map_eigs = stability.discrete_map_eigenvalues(game, method, lr, at=eq)
    out: dict[str, Any] = {"map_eigenvalues": map_eigs,
                           "map_stable": stability.is_stable_map(map_eigs), "flows": {}}
    for p in orders:
        f = experiments.modified_field(game, GM.get(method, rates), h, order=p)
        J = experiments.field_jacobian_at(f, *eq)
        eigs = np.linalg.eigvals(J)
        out["flows"][p] = {"eigenvalues": eigs, "trace": float(np.trace(J)),
                           "stable": stability.is_stable_flow(eigs)}
    return out

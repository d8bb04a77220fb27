"""Modified equations of two-player updates, in either time convention.

``joint`` (default): the modified field of the whole update in iteration time ``h``,
``z' = f~(z)``, from the colored engine; player x's components are the x-block.
``per-player``: Rosca et al. (ICML 2021), order 1 only: player p with rate ``r_p`` follows
``p' = f_p + r_p h sum_q c_q F([q]_p)`` in its own time ``r_p h`` with the other player
moving along its plain field at unit speed; matching the ``h^2`` term of one iteration,
``r_p^2 (c_q + 1/2) = a([q]_p)``, i.e. ``c_q = a([q]_p)/r_p^2 - 1/2`` (``a`` the method's
series).  E.g. alternating GD gives ``y' = g - (lam h/2)((1 - 2 alpha/lam) g_x f + g_y g)``.
"""

from __future__ import annotations

from typing import Any

from bea import modified_equation as _joint
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
    rates = [S.to_domain(dom, r) for r in method.rates]
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
    return me

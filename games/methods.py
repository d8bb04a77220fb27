"""Two-player update rules as colored (additive) methods.

Players' fields are block fields ``f_x = -(grad_x L_1, 0)`` and ``f_y = -(0, grad_y L_2)``
(colors 0 and 1); per-player rates ``(alpha, lam)`` scale them and may be numbers or
sympy symbols.  One iteration of every update below is one call of ``step`` with step
size ``h``, player x moving by ``alpha h`` times its field and player y by ``lam h``.

The runners (:mod:`games.runners`) scan these objects' own ``Method.step``, so each
rule is defined here once; their ``lr = (alpha h, lam h)`` are the actual step sizes
(rates times step: one step-size convention, see docs/concepts/games.md).

Time conventions (see :func:`games.drift.modified_equation`):

* ``"joint"``: one flow for both players in iteration time, ``z' = f~(z)`` whose time-h
  flow matches one iteration (local error ``O(h^(p+2))`` at order p, any rates);
* ``"per-player"``: Rosca et al. (ICML 2021): each player's flow in its own time
  ``R_p h`` per iteration (``R_p = k_p r_p``: ``2 alpha h`` for two steps of player x at
  rate ``alpha``), the other player moving along its plain field at unit speed.
  Equal to the joint one (divided by the player's rate) when the rates are equal; with
  unequal rates only first-order accurate (local error ``O(h^2)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy

from bea import methods as M
from bea import render as R

PLAYERS = ("x", "y")
LOSSES = ("L_1", "L_2")
_DEFAULT_RATES = (sympy.Symbol("alpha", positive=True), sympy.Symbol("lam", positive=True))


def _rates(lr: Sequence[Any] | None) -> tuple[sympy.Expr, sympy.Expr]:
    if lr is None:
        return _DEFAULT_RATES
    if isinstance(lr, (int, float, sympy.Expr)):
        lr = (lr, lr)
    if len(lr) != 2:
        raise ValueError(f"lr must give one rate per player, (alpha, lam); got {lr!r}")
    out = tuple(M.as_parameter(r) for r in lr)
    for name, r in zip(("alpha", "lam"), out, strict=True):
        if r.is_number and not r > 0:
            raise ValueError(f"learning rate {name} must be positive, got {r}")
        if r.is_nonpositive:
            raise ValueError(f"learning rate {name} must be positive, got {r}")
    return out  # type: ignore[return-value]


class _Game:
    """Marks a method as a two-player update (block fields, block notation)."""

    players = blocks = PLAYERS
    notation = R.BlockNotation(PLAYERS, LOSSES)


class GameRungeKutta(_Game, M.AdditiveRungeKutta):
    def __init__(self, A, b, rates, name):
        super().__init__(A, b, name=name, color_names=PLAYERS, check_consistency=False)
        self.rates = rates

    def with_rates(self, rates: tuple[Any, Any]) -> GameRungeKutta:
        return self._factory(rates)


class GameMultistep(_Game, M.LinearMultistep):
    def __init__(self, alphas, evaluations, rates, name):
        super().__init__(alphas, evaluations, rates=rates, name=name, color_names=PLAYERS)

    def with_rates(self, rates: tuple[Any, Any]) -> GameMultistep:
        return self._factory(rates)


def simultaneous(lr: Sequence[Any] | None = None) -> GameRungeKutta:
    """Simultaneous GD: ``x <- x - alpha h grad_x L_1(x, y)``,
    ``y <- y - lam h grad_y L_2(x, y)``."""
    a, lam = _rates(lr)
    m = GameRungeKutta([[[0]], [[0]]], [[a], [lam]], (a, lam), f"simultaneous(lr=({a}, {lam}))")
    m._factory = simultaneous
    return m


def alternating(lr: Sequence[Any] | None = None, steps: Sequence[int] = (1, 1)) -> GameRungeKutta:
    """Alternating GD: ``k_x`` steps of player x, then ``k_y`` steps of player y at the new x.

    Stages ``0..k_x-1`` evaluate ``f_x``, the next ``k_y`` evaluate ``f_y``; each stage sees
    all earlier updates.
    """
    a, lam = _rates(lr)
    if len(steps) != 2 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                              for k in steps):
        raise ValueError(f"steps must be two positive integers (k_x, k_y), got {steps!r}")
    kx, ky = steps
    s = kx + ky
    Ax = [[a if (j < i and j < kx) else 0 for j in range(s)] for i in range(s)]
    Ay = [[lam if (kx <= j < i) else 0 for j in range(s)] for i in range(s)]
    bx = [a if i < kx else 0 for i in range(s)]
    by = [lam if i >= kx else 0 for i in range(s)]
    m = GameRungeKutta([Ax, Ay], [bx, by], (a, lam),
                       f"alternating(lr=({a}, {lam}), steps=({kx}, {ky}))")
    m._factory = lambda r: alternating(r, steps)
    return m


def extragradient(lr: Sequence[Any] | None = None) -> GameRungeKutta:
    """Extragradient: extrapolate both players with their rates, then update both from the
    gradients at the extrapolated point."""
    a, lam = _rates(lr)
    m = GameRungeKutta([[[0, 0], [a, 0]], [[0, 0], [lam, 0]]], [[0, a], [0, lam]], (a, lam),
                       f"extragradient(lr=({a}, {lam}))")
    m._factory = extragradient
    return m


def optimistic(lr: Sequence[Any] | None = None) -> GameMultistep:
    """Optimistic GD: ``z_{n+1} = z_n + h (2 F(z_n) - F(z_{n-1}))`` with per-player rates.

    A two-step method; its series is that of the underlying one-step method.
    """
    a, lam = _rates(lr)
    m = GameMultistep([1, 0], [(2, [1, 0]), (-1, [0, 1])], (a, lam),
                      f"optimistic(lr=({a}, {lam}))")
    m._factory = optimistic
    return m


#: the two-player update rules by their names in ``games`` (``"extragradient"`` is the
#: two-player one, registered as ``"game-extragradient"``: ``bea`` owns the one-field name)
NAMES = ("simultaneous", "alternating", "extragradient", "optimistic")
_REGISTERED = {"extragradient": "game-extragradient"}


def registry() -> dict[str, Any]:
    """Entry point for ``bea``'s method registry (``bea derive simultaneous``): the one
    table of the two-player rules; everything in ``games`` looks them up through
    :func:`get`, i.e. through :func:`bea.registry.get_method`."""
    return {
        "simultaneous": lambda lr=None, **kw: simultaneous(lr),
        "alternating": lambda lr=None, steps=(1, 1), **kw: alternating(lr, tuple(steps)),
        "game-extragradient": lambda lr=None, **kw: extragradient(lr),
        "optimistic": lambda lr=None, **kw: optimistic(lr),
    }


def get(name: str, lr: Sequence[Any] | None = None, steps: Sequence[int] = (1, 1)) -> Any:
    """The two-player method ``name`` (one of :data:`NAMES`) with rates ``lr``, from
    ``bea``'s registry: ``get("alternating", (0.1, 0.2), steps=(2, 1))``."""
    from bea.registry import get_method

    if name not in NAMES:
        raise ValueError(f"unknown two-player method {name!r}; expected one of {NAMES}")
    method = get_method(_REGISTERED.get(name, name), lr=lr, steps=tuple(steps))
    if M.block_names(method) is None:  # pragma: no cover - a plugin shadowing the name
        raise ValueError(f"the registry's {name!r} is not a two-player method")
    return method

"""Both time conventions of two-player modified equations against a brute-force expansion.

The oracle is plain sympy (:mod:`tests.oracle`): the Taylor series in ``h`` of the real
alternating update (``k_x`` steps of x at rate ``alpha``, then ``k_y`` steps of y at rate
``lam`` from the new x) and the Lie series of the flows.  No trees, no B-series.

* joint: the time-``h`` flow of ``f~ = f_0 + ... + h^p f_p`` matches the update to
  ``O(h^(p+2))``;
* per-player (Rosca et al., order 1): player p's field, flowed for its own time
  ``k_p r_p h`` (the distance it moves per iteration) with the other player on its plain
  field at unit speed, matches that player's update to ``O(h^3)``.
"""

from __future__ import annotations

import pytest
import sympy as sp

import games
from bea import modified_equation
from bea.concrete import block_gradient_fields

try:
    from tests import oracle
except ImportError:  # pragma: no cover
    import oracle

x, y, h = sp.symbols("x y h", real=True)
XS = [x, y]
R = sp.Rational
RATES = (R(1, 2), R(3, 2))                    # unequal rates: conventions differ
L1 = x**3 / 3 + x**2 * y / 2 + x * y          # player x's loss
L2 = -x * y + y**3 / 3 + x**2 * y**2 / 4      # player y's loss
GX, GY = sp.diff(L1, x), sp.diff(L2, y)
STEPS = [(1, 1), (2, 1), (1, 3), (2, 3)]


def alternating_step(steps):
    """The real update: k_x GD steps of x, then k_y GD steps of y at the new x."""
    kx, ky = steps
    a, lam = RATES

    def step(p, hh):
        px, py = p
        for _ in range(kx):
            px = px - a * hh * GX.xreplace({x: px, y: py})
        for _ in range(ky):
            py = py - lam * hh * GY.xreplace({x: px, y: py})
        return [px, py]

    return step


def lowest_mismatch(ds, fl, comps):
    """Lowest power of h where the two series differ in the components ``comps``."""
    for j in range(len(ds)):
        if any(sp.expand(ds[j][i] - fl[j][i]) != 0 for i in comps):
            return j
    return None


def fields(me):
    F = block_gradient_fields([L1, L2], [[x], [y]])
    return [list(f) for f in me.evaluate(fields=F)]


@pytest.mark.parametrize("steps", STEPS)
def test_joint_convention_matches_update(steps):
    p, n = 1, 3
    me = modified_equation(games.alternating(RATES, steps=steps), p)
    ds = oracle.map_series(alternating_step(steps), XS, h, n)
    fl = oracle.flow_series(fields(me), XS, h, n)
    assert lowest_mismatch(ds, fl, (0, 1)) == p + 2


@pytest.mark.parametrize("steps", STEPS)
def test_per_player_convention_matches_update_in_own_time(steps):
    n = 3
    me = games.modified_equation(games.alternating(RATES, steps=steps), 1,
                                 convention="per-player")
    own = [k * r for k, r in zip(steps, RATES, strict=True)]       # k_p r_p, independently
    assert tuple(me.times) == tuple(own)
    f0, f1 = fields(me)
    plain = [-GX, -GY]
    assert [sp.expand(a - b) for a, b in zip(f0, plain, strict=True)] == [0, 0]
    ds = oracle.map_series(alternating_step(steps), XS, h, n)
    for p in range(2):
        # player p: its modified field; the other player: plain field, unit speed.
        # The flow for time R h of F is the time-h flow of R F.
        Rp = own[p]
        F0 = [Rp * c for c in plain]
        F1 = [Rp * f1[p] if i == p else 0 for i in range(2)]
        fl = oracle.flow_series([F0, F1], XS, h, n)
        assert lowest_mismatch(ds, fl, (p,)) == 3, f"player {'xy'[p]}, steps={steps}"

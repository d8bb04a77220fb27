"""Modified losses: potential part, stop-gradient remainder, games, SGD views."""

from __future__ import annotations

import random

import pytest
import sympy as sp

import games
from bea import methods as M
from bea import modified_equation
from bea.concrete import block_gradient_fields
from bea.modified_loss import gradient, modified_loss

try:
    from tests import oracle
except ImportError:  # pragma: no cover
    import oracle

x, y, u, h = sp.symbols("x y u h", real=True)
beta = M.BETA
R = sp.Rational
try:
    from tests.method_table import GAMES, SHARED
except ImportError:  # pragma: no cover
    from method_table import GAMES, SHARED


def _check_identity(ml, losses, xs, players=None):
    """field_k == -grad(L~_k) for every order (stop-gradients honoured)."""
    me = ml.equation
    if players is None:
        fields = me.evaluate(losses, xs)
        Ls = ml.evaluate(losses, xs)
        for k in range(ml.order + 1):
            diff = sp.expand(fields[k] + gradient(Ls[k], xs))
            assert diff == sp.zeros(len(xs), 1), (k, diff.T)
        return
    allv = [v for p in players for v in p]
    fields = me.evaluate(losses, players)
    per = ml.evaluate(losses, players)
    for p, pv in enumerate(players):
        idx = [allv.index(v) for v in pv]
        rate = ml.rates[p]
        for k in range(ml.order + 1):
            want = sp.Matrix([fields[k][i] for i in idx])
            diff = sp.expand(want + rate * gradient(per[p][k], pv))
            assert diff == sp.zeros(len(pv), 1), (p, k, diff.T)


L2D = (x * y - 1) ** 2 / 2 + x**4 / 4


def test_gd_order_1_is_igr():
    ml = modified_loss(M.gd(), 1)
    assert ml.is_gradient(1)
    assert ml.order_text(1) == "(1/4) |grad L|^2"
    assert "L + (1/4) h |grad L|^2" in str(ml)
    _check_identity(ml, L2D, [x, y])


def test_gd_order_2_potential_and_remainder():
    ml = modified_loss(M.gd(), 2)
    assert not ml.is_gradient(2)
    (pot,) = ml.potential(2)
    assert pot.coefficient == R(1, 12)
    assert ml._contraction(pot.tree, False, False) == "grad L^T H grad L"
    (rem,) = ml.remainder(2)
    assert rem.coefficient != 0
    assert ml._contraction(rem.tree, True, False) == "<grad L, sg(H grad L)>"  # H^2 grad L
    _check_identity(ml, L2D, [x, y])
    _check_identity(ml, x**3 * y / 3 + y**4 / 4 + x * y, [x, y])


def test_heavy_ball_order_1_symbolic():
    ml = modified_loss(M.heavy_ball(beta), 1)
    assert sp.simplify(ml.prefactor - 1 / (1 - beta)) == 0
    (pot,) = ml.potential(1)
    assert sp.simplify(pot.coefficient - (1 + beta) / (4 * (1 - beta) ** 2)) == 0
    assert "(1/(1 - beta)) * (L + ((beta + 1)/(4*(1 - beta)**2)) h |grad L|^2)" in str(ml)
    ml_num = modified_loss(M.heavy_ball(R(1, 2)), 2)
    _check_identity(ml_num, L2D, [x, y])


BATCHES = [(x * y - 1) ** 2 / 2, x**4 / 4 + y**2 * x / 2, (x + y) ** 3 / 6 + x * y]


@pytest.mark.parametrize("m", [2, 3])
def test_sgd_averaged_orderings_smith_normalisation(m):
    # L~ = sum_k L_k + (h/4) sum_k |grad L_k|^2, i.e. L~/m = L + (h/(4m)) sum |grad L_k|^2
    ml = modified_loss(M.sgd(m, average_orderings=True), 1)
    assert ml.is_gradient(1)
    Ls = BATCHES[:m]
    got = ml.evaluate(Ls, [x, y], summed=True).subs(ml.h, h)
    mean = sum(Ls) / m
    want = mean + h / (4 * m) * sum(sum(sp.diff(L, v) ** 2 for v in (x, y)) for L in Ls)
    assert sp.expand(got / m - want) == 0


def test_sgd_two_batches_fixed_order_is_not_gradient():
    ml = modified_loss(M.sgd(2), 1)
    assert not ml.is_gradient(1)
    txt = ml.order_text(1)
    assert "<grad L_1, sg(grad L_2)>" in txt and "<grad L_2, sg(grad L_1)>" in txt
    # the non-gradient part of the field is (1/2)(H_B grad L_A - H_A grad L_B)
    me = modified_equation(M.sgd(2), 1)
    LA, LB = BATCHES[:2]
    f1 = me.evaluate([LA, LB], [x, y])[1]
    HA, HB = sp.hessian(LA, (x, y)), sp.hessian(LB, (x, y))
    gA = sp.Matrix([sp.diff(LA, v) for v in (x, y)])
    gB = sp.Matrix([sp.diff(LB, v) for v in (x, y)])
    sym = -(HA * gA + HB * gB) / 2
    assert sp.expand(f1 - sym - (HB * gA - HA * gB) / 2) == sp.zeros(2, 1)
    _check_identity(ml, [LA, LB], [x, y])


def test_sgd_single_step_view_is_gd():
    # the loss of each single step of SGD is GD's modified loss on that batch
    ml = modified_loss(M.gd(), 1)
    got = ml.evaluate(BATCHES[0], [x, y], summed=True).subs(ml.h, h)
    g = [sp.diff(BATCHES[0], v) for v in (x, y)]
    assert sp.expand(got - BATCHES[0] - h / 4 * (g[0] ** 2 + g[1] ** 2)) == 0


# ----------------------------------------------------------------------------- games

PX, PY = [x, u], [y]
G1 = x**2 * y / 2 + x * y + u * y**2 / 2 + x**3 / 3
G2 = -x * y + y**3 / 3 + x**2 * y**2 / 4


def test_simultaneous_equal_rates_rosca():
    a = sp.Symbol("alpha", positive=True)
    ml = modified_loss(games.simultaneous((a, a)), 1)
    assert ml.order_text(1, "x") == ("(alpha/4) |grad_x L_1|^2 + (alpha/2) "
                                     "<grad_y L_1, sg(grad_y L_2)>")
    assert ml.order_text(1, "y") == ("(alpha/4) |grad_y L_2|^2 + (alpha/2) "
                                     "<grad_x L_2, sg(grad_x L_1)>")
    alt = modified_loss(games.alternating((a, a)), 1)
    assert alt.order_text(1, "y") == ("(alpha/4) |grad_y L_2|^2 - (alpha/2) "
                                      "<grad_x L_2, sg(grad_x L_1)>")
    _check_identity(ml, (G1, G2), None, players=(PX, PY))
    _check_identity(alt, (G1, G2), None, players=(PX, PY))


def test_unequal_rates_cross_term_carries_other_rate():
    a, lam = sp.symbols("alpha lam", positive=True)
    ml = modified_loss(games.simultaneous((a, lam)), 1)
    assert ml.order_text(1, "x") == ("(alpha/4) |grad_x L_1|^2 + (lam/2) "
                                     "<grad_y L_1, sg(grad_y L_2)>")


def _lowest_mismatch(map_step, fields_by_order, xs, n=3):
    """Lowest power of h where the time-h flow of sum h^k f_k differs from the map."""
    ds = oracle.map_series(map_step, xs, h, n)
    fl = oracle.flow_series(fields_by_order, xs, h, n)
    for j in range(n + 1):
        if any(sp.expand(p - q) != 0 for p, q in zip(ds[j], fl[j], strict=True)):
            return j
    return None


def test_joint_time_local_error_beats_per_player_for_unequal_rates():
    rates = (1, R(5, 2))
    xs = PX + PY
    gx = [sp.diff(G1, v) for v in PX]
    gy = [sp.diff(G2, v) for v in PY]

    def step(p, hh):
        rep = dict(zip(xs, p, strict=True))
        return ([p[i] - rates[0] * hh * gx[i].xreplace(rep) for i in range(2)]
                + [p[2] - rates[1] * hh * gy[0].xreplace(rep)])

    F = block_gradient_fields([G1, G2], [PX, PY])
    joint = modified_equation(games.simultaneous(rates), 1).evaluate(fields=F)
    assert _lowest_mismatch(step, [list(joint[0]), list(joint[1])], xs) == 3   # O(h^3)
    # Rosca's per-player fields used as a model of both players in iteration time
    pp = games.modified_equation(games.simultaneous(rates), 1, convention="per-player")
    per = pp.evaluate(fields=F)
    scale = sp.diag(rates[0], rates[0], rates[1])
    model = [list(scale * per[0]), list(scale * per[1])]
    assert _lowest_mismatch(step, model, xs) == 2                              # O(h^2)


# ----------------------------------------------------------------------------- all methods


def _random_poly(rng, xs, deg=3):
    terms = [sp.Integer(rng.randint(-3, 3)) * xs[0] ** i * xs[1] ** j
             for i in range(deg + 1) for j in range(deg + 1 - i) if i + j >= 2]
    return sum(terms) + xs[0] ** 4 / 4




@pytest.mark.parametrize("name", sorted(SHARED))
def test_minus_grad_of_loss_is_field(name):
    rng = random.Random(hash(name) % 1000)
    method = SHARED[name]()
    deg = 3 if method.ncolors == 1 else 2   # several batches: keep sympy work small
    losses = [_random_poly(rng, [x, y], deg) for _ in range(method.ncolors)]
    ml = modified_loss(method, 3)
    _check_identity(ml, losses if len(losses) > 1 else losses[0], [x, y])


@pytest.mark.parametrize("name", sorted(GAMES))
def test_minus_grad_of_player_losses_is_field(name):
    ml = modified_loss(GAMES[name](), 3)
    _check_identity(ml, (G1, G2), None, players=(PX, PY))


def test_general_field_has_no_loss():
    ml = modified_loss(M.gd(), 1)
    rot = [[-y + x**2 / 10, x]]          # a rotation: Jacobian not symmetric
    with pytest.warns(UserWarning, match="no modified loss exists"):
        out = ml.evaluate(fields=rot, vars=[x, y])
    assert isinstance(out[0], sp.Matrix)     # the field, not a loss

"""Colored trees: SGD over exact batches, games, multistep methods, symbolic parameters."""

from __future__ import annotations

import itertools

import pytest
import sympy as sp

import games
from bea import methods as M
from bea import modified_equation
from bea import trees as T
from bea.concrete import block_gradient_fields, gradient_fields

try:
    from tests import oracle
except ImportError:  # pragma: no cover
    import oracle

x, y, u, h = sp.symbols("x y u h", real=True)
beta = sp.Symbol("beta", positive=True)
R = sp.Rational

BATCH_LOSSES = [(x * y - 1) ** 2 / 2, x**4 / 4 + y**2 * x / 2, (x + y) ** 3 / 6 + x * y]
L1 = x**2 * y / 2 + x * y + u * y**2 / 2 + x**3 / 3      # player 1 owns (x, u)
L2 = -x * y + y**3 / 3 + x**2 * y**2 / 4                  # player 2 owns y


def grad(L, xs):
    return [sp.diff(L, v) for v in xs]


def sub(e, xs, vals):
    return e.xreplace(dict(zip(xs, vals, strict=True)))


def assert_fields_equal(got, want, n):
    for k in range(n + 1):
        diff = sp.expand(got[k] - sp.Matrix(want[k]))
        assert diff == sp.zeros(*diff.shape), f"order {k}: {diff.T}"


# ----------------------------------------------------------------------------- heavy ball


def test_heavy_ball_order_1_symbolic():
    me = modified_equation(M.heavy_ball(beta), 1)
    # coefficients multiply F(.) = -grad L and F([.]) = f'f = H grad L
    assert sp.simplify(me.coefficient(".") - 1 / (1 - beta)) == 0
    assert sp.simplify(me.coefficient("[.]") + (1 + beta) / (2 * (1 - beta) ** 3)) == 0
    assert me.field_text(0) == "-(1/(1 - beta)) grad L"
    assert me.field_text(1) == "-((beta + 1)/(2*(1 - beta)**3)) H grad L"


# ----------------------------------------------------------------------------- SGD


@pytest.mark.parametrize("m", [2, 3])
def test_sgd_exact_batches_vs_oracle(m):
    xs = [x, y]
    Ls = BATCH_LOSSES[:m]

    def step(p, hh):
        for L in Ls:
            g = grad(L, xs)
            p = [p[i] - hh * sub(g[i], xs, p) for i in range(2)]
        return p

    order = 3
    want = oracle.modified_field(oracle.map_series(step, xs, h, order + 1), xs, order)
    got = modified_equation(M.sgd(m), order).evaluate(Ls, xs)
    assert_fields_equal(got, want, order)


def test_compose_equals_sgd_tableau():
    # sgd(2) as an additive RK method == composition of two single-batch GD steps
    g1 = M.AdditiveRungeKutta([[[0]], [[0]]], [[1], [0]], check_consistency=False)
    g2 = M.AdditiveRungeKutta([[[0]], [[0]]], [[0], [1]], check_consistency=False)
    assert M.compose([g1, g2]).series(5).equals(M.sgd(2).series(5))
    assert not M.compose([g2, g1]).series(5).equals(M.sgd(2).series(5))


# ----------------------------------------------------------------------------- games

PX, PY = [x, u], [y]
XS = PX + PY


def _game_grads():
    return grad(L1, PX), grad(L2, PY)


def sim_step(a, lam):
    gx, gy = _game_grads()

    def step(p, hh):
        return ([p[i] - a * hh * sub(gx[i], XS, p) for i in range(2)]
                + [p[2] - lam * hh * sub(gy[0], XS, p)])
    return step


def alt_step(a, lam):
    gx, gy = _game_grads()

    def step(p, hh):
        xn = [p[i] - a * hh * sub(gx[i], XS, p) for i in range(2)]
        q = xn + [p[2]]
        return xn + [p[2] - lam * hh * sub(gy[0], XS, q)]
    return step


def eg_step(a, lam):
    gx, gy = _game_grads()

    def step(p, hh):
        q = ([p[i] - a * hh * sub(gx[i], XS, p) for i in range(2)]
             + [p[2] - lam * hh * sub(gy[0], XS, p)])
        return ([p[i] - a * hh * sub(gx[i], XS, q) for i in range(2)]
                + [p[2] - lam * hh * sub(gy[0], XS, q)])
    return step


GAME_CASES = {
    "simultaneous": (games.simultaneous, sim_step),
    "alternating": (games.alternating, alt_step),
    "extragradient": (games.extragradient, eg_step),
}


@pytest.mark.parametrize("rates", [(1, 1), (1, 2), (R(1, 3), R(3, 2))])
@pytest.mark.parametrize("name", sorted(GAME_CASES))
def test_games_vs_oracle(name, rates):
    make, ref = GAME_CASES[name]
    order = 3
    want = oracle.modified_field(oracle.map_series(ref(*rates), XS, h, order + 1), XS, order)
    got = modified_equation(make(rates), order).evaluate((L1, L2), (PX, PY))
    assert_fields_equal(got, want, order)


def test_alternating_multiple_steps_vs_oracle():
    gx, gy = _game_grads()
    a, lam = 1, R(1, 2)

    def step(p, hh):
        for _ in range(2):
            p = [p[i] - a * hh * sub(gx[i], XS, p) for i in range(2)] + [p[2]]
        return p[:2] + [p[2] - lam * hh * sub(gy[0], XS, p)]

    want = oracle.modified_field(oracle.map_series(step, XS, h, 3), XS, 2)
    got = modified_equation(games.alternating((a, lam), steps=(2, 1)), 2).evaluate(
        (L1, L2), (PX, PY))
    assert_fields_equal(got, want, 2)


def test_symbolic_rates_simplify():
    al, lam = sp.symbols("alpha lam", positive=True)
    me = modified_equation(games.simultaneous((al, lam)), 2)
    for k in range(3):
        for term in me.terms(k):
            assert term.coefficient == sp.factor(term.coefficient)
            assert term.coefficient.free_symbols <= {al, lam}


def _rosca_fields(al, lam):
    """Rosca et al. (ICML 2021), order 1, per-player time: f = -grad_x L1, g = -grad_y L2."""
    F = block_gradient_fields([L1, L2], [PX, PY])
    f, g = F.fields
    J = lambda v: v.jacobian(XS)
    sim = f + g - (al * h / 2) * (J(f) * f + J(f) * g) - (lam * h / 2) * (J(g) * f + J(g) * g)
    alt = f + g - (al * h / 2) * (J(f) * f + J(f) * g) - (lam * h / 2) * (
        (1 - 2 * al / lam) * J(g) * f + J(g) * g)
    return sim, alt


@pytest.mark.parametrize("rates", [(1, 1), (R(1, 2), 2)])
def test_per_player_convention_is_rosca(rates):
    sim, alt = _rosca_fields(*rates)
    for make, want in ((games.simultaneous, sim), (games.alternating, alt)):
        me = games.modified_equation(make(rates), 1, convention="per-player")
        got = me.evaluate((L1, L2), (PX, PY), summed=True).subs(me.h, h)
        assert sp.expand(got - want) == sp.zeros(3, 1)


def test_joint_equals_rosca_for_equal_rates():
    al = sp.Symbol("alpha", positive=True)
    sim, alt = _rosca_fields(al, al)
    for make, want in ((games.simultaneous, sim), (games.alternating, alt)):
        me = modified_equation(make((al, al)), 1)
        got = me.evaluate((L1, L2), (PX, PY), summed=True).subs(me.h, h) / al
        assert sp.expand(got - want) == sp.zeros(3, 1)


def test_per_player_order_limited():
    with pytest.raises(ValueError, match="order 1"):
        games.modified_equation(games.simultaneous(), 2, convention="per-player")


# ----------------------------------------------------------------------------- multistep


def _series_map(series, F, hh, n, inverse=False):
    """B(a, x) = x + sum_{|t|<=n} h^|t| a(t)/sigma(t) F(t) on concrete fields."""
    from bea import series as S

    a = S.inverse(series) if inverse else series
    out = sp.Matrix(F.vars)
    for t in T.trees_up_to(n, series.ncolors):
        c = a[t]
        if c:
            out += hh ** T.order(t) * a.domain.to_sympy(c) / T.sigma(t) * F.elementary(t)
    return out


def _residual_orders(method, F, n):
    """Lowest power of h in Phi(x) - [recurrence evaluated on Phi^{-j}(x)]."""
    a = method.series(n)
    phi = _series_map(a, F, h, n)
    inv = _series_map(a, F, h, n, inverse=True)
    # Phi^{-2} as the map Phi^{-1} applied twice (Taylor-truncated below anyway)
    prev = [sp.Matrix(F.vars), inv]
    for _ in range(2, len(method.alphas)):
        prev.append(inv.xreplace(dict(zip(F.vars, prev[-1], strict=True))))
    rhs = sum((sp.sympify(al) * prev[j] for j, al in enumerate(method.alphas)),
              sp.zeros(len(F.vars), 1))
    for w, gs in method.evaluations:
        point = sum((sp.sympify(gm) * prev[j] for j, gm in enumerate(gs)),
                    sp.zeros(len(F.vars), 1))
        rep = dict(zip(F.vars, point, strict=True))
        for c, fc in enumerate(F.fields):
            rhs += h * sp.sympify(w) * sp.sympify(method.rates[c]) * fc.xreplace(rep)
    res = phi - rhs
    coeffs = oracle.taylor_coefficients(list(res), h, n + 1)
    return [k for k in range(n + 2) if any(sp.simplify(e) != 0 for e in coeffs[k])]


@pytest.mark.parametrize("make", [M.heavy_ball, M.nesterov])
@pytest.mark.parametrize("b", [R(1, 2), beta])
def test_momentum_underlying_method_residual(make, b):
    F = gradient_fields([(x * y - 1) ** 2 / 2 + x**4 / 4], [x, y])
    n = 3 if b == beta else 4
    nz = _residual_orders(make(b), F, n)
    assert not nz or min(nz) >= n + 1, nz


def test_optimistic_underlying_method_residual():
    F = block_gradient_fields([L1, L2], [PX, PY])
    nz = _residual_orders(games.optimistic((1, R(1, 2))), F, 3)
    assert not nz or min(nz) >= 4, nz


def test_residual_detects_a_wrong_series():
    # corrupt one coefficient: the residual must then appear at that order
    F = gradient_fields([(x * y - 1) ** 2 / 2 + x**4 / 4], [x, y])
    method = M.heavy_ball(R(1, 2))
    a = method.series(3)
    t = T.Tree.parse("[.]").id
    orig = a.coeffs[t]
    try:
        a.coeffs[t] = orig + 1
        assert min(_residual_orders(method, F, 3)) == 2
    finally:
        a.coeffs[t] = orig


def test_heavy_ball_inverse_series_is_previous_iterate():
    m = M.heavy_ball(R(1, 2))
    from bea import series as S

    assert S.compose(m.series(4), m.inverse_series(4)).equals(S.identity(4))


# ----------------------------------------------------------------------------- counts


def _canon(colors, adj, v, parent):
    return "(" + str(colors[v]) + "".join(sorted(_canon(colors, adj, w, v)
                                                 for w in adj[v] if w != parent)) + ")"


@pytest.mark.parametrize("ncolors", [2, 3])
def test_colored_tree_counts_brute_force(ncolors):
    # independent count: color every labelled vertex of every uncolored tree in all
    # ways and deduplicate with an AHU-style canonical string
    for n in range(1, 6 if ncolors == 2 else 5):
        seen = set()
        for t in T.trees_of_order(n):
            _, adj = T._adjacency(t)
            for cols in itertools.product(range(ncolors), repeat=n):
                seen.add(_canon(list(cols), adj, 0, -1))
        assert len(seen) == len(T.trees_of_order(n, ncolors)) == T.count_trees(n, ncolors)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("b", [1, 1.5, -0.1])
def test_bad_beta(b):
    with pytest.raises(ValueError, match="beta must lie in"):
        M.heavy_ball(b)


def test_bad_batches():
    with pytest.raises(ValueError, match="positive integer"):
        M.sgd(0)


def test_bad_steps_and_rates():
    with pytest.raises(ValueError, match="positive integers"):
        games.alternating((1, 1), steps=(0, 1))
    with pytest.raises(ValueError, match="one rate per player"):
        games.simultaneous((1, 2, 3))
    with pytest.raises(ValueError, match="must be positive"):
        games.simultaneous((1, -1))


def test_overlapping_players():
    with pytest.raises(ValueError, match="must not overlap"):
        block_gradient_fields([L1, L2], [[x, u], [x]])

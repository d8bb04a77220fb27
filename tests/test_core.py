"""Symbolic core: trees, B-series algebra, modified equations of one-field methods."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy.polys.domains import QQ

from bea import methods as M
from bea import modified_equation
from bea import series as S
from bea import trees as T

try:
    from tests import oracle
except ImportError:  # pragma: no cover
    import oracle

x, y, z, h = sp.symbols("x y z h", real=True)

# ----------------------------------------------------------------------------- trees


def test_tree_counts_orders_1_to_10():
    assert [len(T.trees_of_order(n)) for n in range(1, 11)] == [
        1, 1, 2, 4, 9, 20, 48, 115, 286, 719]
    assert [T.count_trees(n) for n in range(1, 11)] == [1, 1, 2, 4, 9, 20, 48, 115, 286, 719]


# (bracket, sigma, gamma) from Hairer-Lubich-Wanner, Table III.1.1 (orders <= 5)
HLW_TABLE = [
    (".", 1, 1), ("[.]", 1, 2), ("[.,.]", 2, 3), ("[[.]]", 1, 6),
    ("[.,.,.]", 6, 4), ("[.,[.]]", 1, 8), ("[[.,.]]", 2, 12), ("[[[.]]]", 1, 24),
    ("[.,.,.,.]", 24, 5), ("[.,.,[.]]", 2, 10), ("[.,[.,.]]", 2, 15), ("[.,[[.]]]", 1, 30),
    ("[[.],[.]]", 2, 20), ("[[.,.,.]]", 6, 20), ("[[.,[.]]]", 1, 40), ("[[[.,.]]]", 2, 60),
    ("[[[[.]]]]", 1, 120),
]


@pytest.mark.parametrize("bracket,sigma,gamma", HLW_TABLE)
def test_sigma_gamma_hlw_table(bracket, sigma, gamma):
    t = T.Tree.parse(bracket)
    assert (t.sigma, t.gamma) == (sigma, gamma)


def test_table_covers_all_trees_up_to_order_5():
    ids = {T.Tree.parse(b).id for b, _, _ in HLW_TABLE}
    assert ids == set(T.trees_up_to(5))


def test_sum_of_alpha_over_trees():
    # number of monotone labellings alpha(t) = n!/(sigma gamma); sum over order n = (n-1)!
    for n in range(1, 9):
        assert sum(Fraction(math.factorial(n), T.sigma(t) * T.gamma(t))
                   for t in T.trees_of_order(n)) == math.factorial(n - 1)


def test_single_cuts_count_edges():
    for t in T.trees_up_to(7):
        assert sum(m for _, _, m in T.single_cuts(t)) == T.order(t) - 1


# ----------------------------------------------------------------------------- algebra


def random_series(data, n, ncolors=1, empty=1):
    vals = {t: QQ(data.draw(st.integers(-5, 5)), data.draw(st.integers(1, 4)))
            for t in T.trees_up_to(n, ncolors)}
    return S.BSeries(QQ, ncolors, n, QQ(empty), {t: v for t, v in vals.items() if v})


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_compose_with_inverse_is_identity(data):
    a = random_series(data, 5)
    ident = S.identity(5)
    assert S.compose(a, S.inverse(a)).equals(ident)
    assert S.compose(S.inverse(a), a).equals(ident)


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_composition_is_associative(data):
    a, b, c = (random_series(data, 5) for _ in range(3))
    assert S.compose(S.compose(a, b), c).equals(S.compose(a, S.compose(b, c)))


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_substitution_is_associative(data):
    b1 = random_series(data, 5, empty=0)
    b2 = random_series(data, 5, empty=0)
    a = random_series(data, 5)
    assert S.substitute(b1, S.substitute(b2, a)).equals(S.substitute(S.substitute(b1, b2), a))


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_modified_field_solves_substitution_law(data):
    # a = b * e: the modified field substituted into the exact flow gives the method back
    a = random_series(data, 6)
    b = S.modified_field(a)
    assert S.substitute(b, S.exact_flow(6)).equals(a)
    assert S.flow_of_field(b).equals(a)


@settings(max_examples=20, deadline=None)
@given(st.data(), st.integers(1, 2))
def test_rational_modified_field_equals_the_generic_recursion(data, ncolors):
    # modified_field over QQ runs in integer numerators with one denominator per order;
    # the generic recursion (rationals normalised at every step) is the oracle
    a = random_series(data, 6 if ncolors == 1 else 4, ncolors)
    fast = S._modified_field_rational(a)
    generic = S._lie_solve(a, {}, -1)
    assert fast.keys() == generic.keys()
    assert all(fast[t] == generic[t] for t in fast)


@pytest.mark.parametrize("method,order", [(M.explicit_midpoint(), 9), (M.gd(), 9),
                                          (M.rk4(), 8), (M.sgd(batches=3), 4)])
def test_rational_modified_field_on_methods(method, order):
    a = method.series(order + 1)
    fast = S._modified_field_rational(a)
    generic = S._lie_solve(a, {}, -1)
    assert fast.keys() == generic.keys()
    assert all(fast[t] == generic[t] for t in fast)


def test_exact_flow_has_zero_modification():
    b = S.modified_field(S.exact_flow(7))
    assert all(b[t] == 0 for t in T.trees_up_to(7) if T.order(t) > 1)


def test_rk4_is_order_4():
    a = M.rk4().series(5)
    for t in T.trees_up_to(4):
        assert a[t] == QQ(1, T.gamma(t))
    assert any(a[t] != QQ(1, T.gamma(t)) for t in T.trees_of_order(5))


def test_two_euler_half_steps_compose():
    # two Euler steps of size h/2 == the 2-stage RK with A = [[0,0],[1/2,0]], b = [1/2,1/2]
    half = M.RungeKutta([[0]], [sp.Rational(1, 2)], name="half", check_consistency=False)
    two = M.compose([half, half])
    r = sp.Rational(1, 2)
    assert two.series(5).equals(M.rk([[0, 0], [r, 0]], [r, r]).series(5))
    assert not two.series(5).equals(M.heun().series(5))


# ----------------------------------------------------------------------------- GD closed forms


def grad(L, xs):
    return sp.Matrix([sp.diff(L, v) for v in xs])


def hess(L, xs):
    return sp.hessian(L, xs)


def d3(L, xs, u, v):
    return sp.Matrix([sum(sp.diff(L, a, b, c) * u[i] * v[j]
                          for i, b in enumerate(xs) for j, c in enumerate(xs)) for a in xs])


LOSSES = {
    "xy": ((x * y - 1) ** 2 / 2 + x**4 / 4, [x, y]),
    "3d": (x**3 * y / 3 + y**2 * z**2 / 2 + x * z + z**4 / 8, [x, y, z]),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gd_first_orders_closed_form(name):
    L, xs = LOSSES[name]
    me = modified_equation(M.gd(), 2)
    f = me.evaluate(L, xs)
    g, H = grad(L, xs), hess(L, xs)
    assert sp.expand(f[0] + g) == sp.zeros(len(xs), 1)
    assert sp.expand(f[1] + H * g / 2) == sp.zeros(len(xs), 1)
    assert sp.expand(f[2] + d3(L, xs, g, g) / 12 + H * H * g / 3) == sp.zeros(len(xs), 1)


def test_gd_printed():
    me = modified_equation(M.gd(), 2)
    assert me.field_text(1) == "-(1/2) H grad L"
    assert me.field_text(2) == "-(1/12) D^3L[grad L, grad L] - (1/3) H^2 grad L"
    assert "D^{3} L" in me.latex()


# ----------------------------------------------------------------------------- oracle


def _step(method, L, xs):
    f = [-sp.diff(L, v) for v in xs]

    def fld(p):
        return [e.xreplace(dict(zip(xs, p, strict=True))) for e in f]
    return f, fld


ONE_STEP = {
    "gd": M.gd, "explicit_midpoint": M.explicit_midpoint, "heun": M.heun, "rk4": M.rk4,
    "extragradient": M.extragradient,
}


@pytest.mark.parametrize("name", sorted(ONE_STEP))
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_oracle_agrees_explicit(name, loss):
    L, xs = LOSSES[loss]
    method = ONE_STEP[name]()
    order = 4 if name != "rk4" or loss == "xy" else 4
    f, _ = _step(method, L, xs)
    A, b = method.A[0], method.b[0]
    ds = oracle.map_series(oracle.explicit_rk_step(f, xs, A, b), xs, h, order + 1)
    want = oracle.modified_field(ds, xs, order)
    got = modified_equation(method, order).evaluate(L, xs)
    for k in range(order + 1):
        assert sp.expand(got[k] - sp.Matrix(want[k])) == sp.zeros(len(xs), 1), (name, k)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_oracle_agrees_proximal_point(loss):
    L, xs = LOSSES[loss]
    f = [-sp.diff(L, v) for v in xs]

    def G(xv, yv, hh):
        sub = dict(zip(xs, yv, strict=True))
        return [xv[i] + hh * f[i].xreplace(sub) for i in range(len(xs))]

    order = 4
    ds = oracle.implicit_map_series(G, xs, h, order + 1)
    want = oracle.modified_field(ds, xs, order)
    got = modified_equation(M.proximal_point(), order).evaluate(L, xs)
    for k in range(order + 1):
        assert sp.expand(got[k] - sp.Matrix(want[k])) == sp.zeros(len(xs), 1), k


def test_oracle_detects_wrong_coefficient():
    # the comparison can fail: a perturbed tableau disagrees with GD's oracle
    L, xs = LOSSES["xy"]
    f = [-sp.diff(L, v) for v in xs]
    ds = oracle.map_series(oracle.explicit_rk_step(f, xs, [[0]], [1]), xs, h, 3)
    want = oracle.modified_field(ds, xs, 2)
    wrong = M.RungeKutta([[0, 0], [sp.Rational(1, 3), 0]], [0, 1])
    got = modified_equation(wrong, 2).evaluate(L, xs)
    assert sp.expand(got[1] - sp.Matrix(want[1])) != sp.zeros(2, 1)


# ----------------------------------------------------------------------------- bad input


def test_inconsistent_tableau():
    with pytest.raises(ValueError, match="sum\\(b\\)"):
        M.rk([[0, 0], [1, 0]], [0.5, 0.6])


def test_mismatched_tableau():
    with pytest.raises(ValueError, match="mismatched shape"):
        M.rk([[0, 0], [1, 0]], [1])


@pytest.mark.parametrize("order", [-1, 1.5, "3", True])
def test_bad_order(order):
    with pytest.raises(ValueError, match="non-negative integer"):
        modified_equation(M.gd(), order)


def test_impractical_order_says_cost():
    with pytest.raises(ValueError, match="colored trees") as e:
        modified_equation(M.sgd(8), 6)
    assert "max_trees" in str(e.value)


def test_symbolic_tableau():
    a = sp.Symbol("a", positive=True)
    method = M.rk([[0, 0], [a, 0]], [1 - 1 / (2 * a), 1 / (2 * a)])
    me = modified_equation(method, 2)
    assert me.terms(1) == []  # second order for every a
    assert a in me.coefficient("[.,.]").free_symbols

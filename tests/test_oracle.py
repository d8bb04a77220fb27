"""Tests of the brute-force BEA oracle (tests/oracle.py) against known closed forms."""

from __future__ import annotations

import pytest
import sympy as sp

try:  # tests/ as rootdir-relative package or as plain directory on sys.path
    from tests import oracle
except ImportError:  # pragma: no cover
    import oracle

x, y, z, h = sp.symbols("x y z h")
XY = [x, y]
XYZ = [x, y, z]
R = sp.Rational

# a non-quadratic polynomial field in two variables
F2 = [x * y - y**3 / 3 + 1, x**2 - y + x * y**2 / 2]

TABLEAUX = {
    # name: (A, b, order q)
    "euler": ([[0]], [1], 1),
    "midpoint": ([[0, 0], [R(1, 2), 0]], [0, 1], 2),
    "heun": ([[0, 0], [1, 0]], [R(1, 2), R(1, 2)], 2),
    "ralston3": ([[0, 0, 0], [R(1, 2), 0, 0], [0, R(3, 4), 0]], [R(2, 9), R(1, 3), R(4, 9)], 3),
    "rk4": (
        [[0, 0, 0, 0], [R(1, 2), 0, 0, 0], [0, R(1, 2), 0, 0], [0, 0, 1, 0]],
        [R(1, 6), R(1, 3), R(1, 3), R(1, 6)],
        4,
    ),
}


def is_zero_vec(v) -> bool:
    return all(sp.expand(c) == 0 for c in v)


def vec_equal(a, b) -> bool:
    return len(a) == len(b) and all(sp.expand(p - q) == 0 for p, q in zip(a, b, strict=True))


def matvec(M, v):
    return [sp.expand(sum(Mij * vj for Mij, vj in zip(row, v, strict=True))) for row in M]


def d2f(f, xs, u, v):
    """f''(u, v)_i = sum_jk d^2 f_i / dx_j dx_k u_j v_k."""
    return [
        sp.expand(
            sum(
                sp.diff(fi, a, b) * ua * vb
                for a, ua in zip(xs, u, strict=True)
                for b, vb in zip(xs, v, strict=True)
            )
        )
        for fi in f
    ]


def euler_f2_closed_form(f, xs):
    """Modified field of (explicit or implicit) Euler at h^2: f''(f,f)/12 + f'f'f/3."""
    J = oracle.jacobian(f, xs)
    ff = d2f(f, xs, f, f)
    fff = matvec(J, matvec(J, f))
    return [sp.expand(a / 12 + b / 3) for a, b in zip(ff, fff, strict=True)]


# ----------------------------------------------------------------------------------------------
# gradient descent: closed forms
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "L, xs",
    [
        ((x * y - 1) ** 2 / 2 + x**4 / 4, XY),
        (x**2 * y + y * z**2 / 2 + x**4 / 4 + (x - z) ** 2 / 2 + y**2, XYZ),
    ],
    ids=["2d", "3d"],
)
def test_gd_modified_field_closed_form(L, xs):
    ds = oracle.map_series(oracle.gd_step(L, xs), xs, h, 3)
    assert vec_equal(ds[0], xs)
    fs = oracle.modified_field(ds, xs, 2)

    g = oracle.grad(L, xs)
    H = oracle.hessian(L, xs)
    Hg = matvec(H, g)
    HHg = matvec(H, Hg)
    D3gg = [
        sp.expand(
            sum(
                sp.diff(L, xi, xj, xk) * gj * gk
                for xj, gj in zip(xs, g, strict=True)
                for xk, gk in zip(xs, g, strict=True)
            )
        )
        for xi in xs
    ]
    assert vec_equal(fs[0], [-gi for gi in g])
    assert vec_equal(fs[1], [-R(1, 2) * v for v in Hg])
    assert vec_equal(fs[2], [-R(1, 12) * a - R(1, 3) * b for a, b in zip(D3gg, HHg, strict=True)])


def test_gd_map_series_is_exact_polynomial_in_h():
    L = (x * y - 1) ** 2 / 2 + x**4 / 4
    ds = oracle.map_series(oracle.gd_step(L, XY), XY, h, 4)
    g = oracle.grad(L, XY)
    assert vec_equal(ds[1], [-gi for gi in g])
    for d in ds[2:]:
        assert is_zero_vec(d)


# ----------------------------------------------------------------------------------------------
# Runge--Kutta methods
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TABLEAUX))
def test_rk_order_conditions(name):
    A, b, q = TABLEAUX[name]
    top = min(q, 4)
    ds = oracle.map_series(oracle.explicit_rk_step(F2, XY, A, b), XY, h, top + 1)
    fs = oracle.modified_field(ds, XY, top)
    assert vec_equal(fs[0], F2)
    for k in range(1, q):
        assert is_zero_vec(fs[k]), f"{name}: f_{k} should vanish for an order-{q} method"
    assert not is_zero_vec(fs[q]), f"{name}: leading error term f_{q} should not vanish"


def test_explicit_euler_closed_forms():
    ds = oracle.map_series(oracle.explicit_rk_step(F2, XY, [[0]], [1]), XY, h, 3)
    fs = oracle.modified_field(ds, XY, 2)
    ff = matvec(oracle.jacobian(F2, XY), F2)
    assert vec_equal(fs[1], [-R(1, 2) * c for c in ff])
    assert vec_equal(fs[2], euler_f2_closed_form(F2, XY))


def test_two_half_steps_of_euler():
    """Two Euler steps of size h/2: modified field f - (h/4) f'f + O(h^2)."""

    def step(yv, hh):
        e = oracle.explicit_rk_step(F2, XY, [[0]], [1])
        return e(e(yv, hh / 2), hh / 2)

    fs = oracle.modified_field(oracle.map_series(step, XY, h, 2), XY, 1)
    ff = matvec(oracle.jacobian(F2, XY), F2)
    assert vec_equal(fs[0], F2)
    assert vec_equal(fs[1], [-R(1, 4) * c for c in ff])


def test_linear_field_euler_is_matrix_log():
    """Euler on f = A y is y -> (I + hA) y.

    Modified field: log(I + hA)/h y = sum_k (-1)^k h^k A^(k+1)/(k+1) y.
    """
    A = sp.Matrix([[1, 2], [-3, 1]])
    f = list(A * sp.Matrix(XY))
    fs = oracle.modified_field(
        oracle.map_series(oracle.explicit_rk_step(f, XY, [[0]], [1]), XY, h, 5), XY, 4
    )
    for k in range(5):
        expected = list((-1) ** k * A ** (k + 1) / (k + 1) * sp.Matrix(XY))
        assert vec_equal(fs[k], expected)


# ----------------------------------------------------------------------------------------------
# implicit maps
# ----------------------------------------------------------------------------------------------


def implicit_euler_G(f, xs):
    def G(xv, yv, hh):
        fy = oracle.compose(f, xs, yv)
        return [a + hh * b for a, b in zip(xv, fy, strict=True)]

    return G


def test_implicit_euler_closed_forms():
    ds = oracle.implicit_map_series(implicit_euler_G(F2, XY), XY, h, 3)
    fs = oracle.modified_field(ds, XY, 2)
    ff = matvec(oracle.jacobian(F2, XY), F2)
    assert vec_equal(fs[0], F2)
    assert vec_equal(fs[1], [R(1, 2) * c for c in ff])  # opposite sign to explicit Euler
    assert vec_equal(fs[2], euler_f2_closed_form(F2, XY))


def test_implicit_euler_is_adjoint_of_explicit_euler():
    """Adjoint method: f~*(h) = f~(-h), so f_k(implicit) = (-1)^k f_k(explicit)."""
    order = 3
    fe = oracle.modified_field(
        oracle.map_series(oracle.explicit_rk_step(F2, XY, [[0]], [1]), XY, h, order + 1), XY, order
    )
    fi = oracle.modified_field(
        oracle.implicit_map_series(implicit_euler_G(F2, XY), XY, h, order + 1), XY, order
    )
    for k in range(order + 1):
        assert vec_equal(fi[k], [(-1) ** k * c for c in fe[k]])


def test_implicit_euler_linear_is_neg_log():
    """y1 = (I - hA)^(-1) x; modified field -log(I - hA)/h = sum h^k A^(k+1)/(k+1)."""
    A = sp.Matrix([[0, 1], [-2, 1]])
    f = list(A * sp.Matrix(XY))
    ds = oracle.implicit_map_series(implicit_euler_G(f, XY), XY, h, 4)
    inv = (sp.eye(2) - h * A).inv() * sp.Matrix(XY)
    exact = oracle.taylor_coefficients(list(inv), h, 4)
    for j in range(5):
        assert vec_equal(ds[j], exact[j])
    fs = oracle.modified_field(ds, XY, 3)
    for k in range(4):
        assert vec_equal(fs[k], list(A ** (k + 1) / (k + 1) * sp.Matrix(XY)))


def test_implicit_midpoint_is_symmetric():
    """Implicit midpoint is symmetric: the modified field only has even powers of h."""

    def G(xv, yv, hh):
        mid = [(a + b) / 2 for a, b in zip(xv, yv, strict=True)]
        return [a + hh * c for a, c in zip(xv, oracle.compose(F2, XY, mid), strict=True)]

    fs = oracle.modified_field(oracle.implicit_map_series(G, XY, h, 4), XY, 3)
    assert vec_equal(fs[0], F2)
    assert is_zero_vec(fs[1])
    assert not is_zero_vec(fs[2])
    assert is_zero_vec(fs[3])


def test_implicit_map_rejects_noncontracting_G():
    with pytest.raises(ValueError):
        # G(x, y, 0) = 2y - x != x: the iteration x, x+h, x+2h, ... never becomes stationary
        oracle.implicit_map_series(lambda xv, yv, hh: [2 * yv[0] - xv[0] + hh], [x], h, 2)


# ----------------------------------------------------------------------------------------------
# flows
# ----------------------------------------------------------------------------------------------


def test_flow_series_scalar_riccati():
    """x' = x^2 has flow x / (1 - h x) = sum_j h^j x^(j+1)."""
    ds = oracle.flow_series([[x**2]], [x], h, 5)
    for j in range(6):
        assert sp.expand(ds[j][0] - x ** (j + 1)) == 0


def test_flow_series_linear_is_matrix_exp():
    A = sp.Matrix([[1, 2], [0, -1]])
    ds = oracle.flow_series([list(A * sp.Matrix(XY))], XY, h, 4)
    for j in range(5):
        assert vec_equal(ds[j], list(A**j / sp.factorial(j) * sp.Matrix(XY)))


@pytest.mark.parametrize(
    "fs",
    [
        [F2],
        [F2, [x**2, x * y], [y, -x * y**2], [1, x]],
        [[x * y + z, y**2 - x, z * x], [z, 0, x * y]],
    ],
    ids=["autonomous", "h-dependent-2d", "h-dependent-3d"],
)
def test_flow_then_modified_field_roundtrip(fs):
    xs = XY if len(fs[0]) == 2 else XYZ
    order = 3
    ds = oracle.flow_series(fs, xs, h, order + 1)
    back = oracle.modified_field(ds, xs, order)
    for k in range(order + 1):
        expected = fs[k] if k < len(fs) else [0] * len(xs)
        assert vec_equal(back[k], expected)


def test_map_of_exact_flow_gives_field():
    """A map given in closed form (non-polynomial in h: uses the differentiation fallback)."""
    ds = oracle.map_series(lambda yv, hh: [yv[0] / (1 - hh * yv[0])], [x], h, 4)
    fs = oracle.modified_field(ds, [x], 3)
    assert sp.expand(fs[0][0] - x**2) == 0
    for k in range(1, 4):
        assert sp.expand(fs[k][0]) == 0


# ----------------------------------------------------------------------------------------------
# internals: fast path vs fallback, consistency checks
# ----------------------------------------------------------------------------------------------


def test_fast_path_matches_differentiation_fallback():
    A, b, _ = TABLEAUX["ralston3"]
    out = oracle.explicit_rk_step(F2, XY, A, b)(list(XY), h)
    fast = oracle.taylor_coefficients(out, h, 3)
    for m, e in enumerate(out):
        slow = oracle._taylor_diff(sp.sympify(e), h, 3)
        for j in range(4):
            assert sp.expand(fast[j][m] - slow[j]) == 0


def test_non_polynomial_field():
    """Midpoint on f = sin(x): h enters inside sin, so the fallback path is used; f_1 = 0."""
    f = [sp.sin(x)]
    A, b, _ = TABLEAUX["midpoint"]
    ds = oracle.map_series(oracle.explicit_rk_step(f, [x], A, b), [x], h, 3)
    fs = oracle.modified_field(ds, [x], 2)
    assert sp.simplify(fs[0][0] - sp.sin(x)) == 0
    assert sp.simplify(fs[1][0]) == 0
    assert sp.simplify(fs[2][0]) != 0


def test_opaque_h_free_subexpressions():
    """Euler on f = sin(x): h enters polynomially, sin(x) is an opaque coefficient."""
    fs = oracle.modified_field(
        oracle.map_series(oracle.explicit_rk_step([sp.sin(x)], [x], [[0]], [1]), [x], h, 2), [x], 1
    )
    assert sp.simplify(fs[1][0] + sp.sin(x) * sp.cos(x) / 2) == 0


def test_symbolic_parameters_are_allowed():
    a = sp.Symbol("a")
    L = a * x**2 / 2 + x**3 / 3
    fs = oracle.modified_field(oracle.map_series(oracle.gd_step(L, [x]), [x], h, 2), [x], 1)
    g = a * x + x**2
    assert sp.expand(fs[1][0] + sp.diff(g, x) * g / 2) == 0


def test_inconsistent_map_rejected():
    with pytest.raises(ValueError):
        oracle.map_series(lambda yv, hh: [2 * yv[0] + hh], [x], h, 2)
    with pytest.raises(ValueError):
        oracle.modified_field([[x], [x]], [x], 1)

r"""Brute-force oracle for backward error analysis, independent of any tree / B-series code.

Everything here is plain sympy Taylor expansion.  It is deliberately naive, so that the
tree-based engine in :mod:`bea` can be checked against it.

Conventions
-----------
* ``xs`` is a list of sympy Symbols :math:`x = (x_1, \dots, x_n)`, ``h`` the step-size Symbol.
* A *series of a map* is a list ``ds = [d_0, d_1, ..., d_p]`` where each ``d_j`` is a list of
  ``n`` sympy expressions in ``xs`` and

  .. math:: \Psi_h(x) = \sum_{j=0}^{p} h^j d_j(x) + O(h^{p+1}), \qquad d_0(x) = x .

* A *field in orders of h* is a list ``fs = [f_0, f_1, ..., f_q]`` (each a list of ``n``
  expressions) standing for :math:`\tilde f = f_0 + h f_1 + \dots + h^q f_q`.

Public functions
----------------
``map_series(step, xs, h, order)``            Taylor coefficients of an explicit one-step map.
``implicit_map_series(G, xs, h, order)``      Same, for implicit maps :math:`y_1 = G(x, y_1, h)`.
``flow_series(fs, xs, h, order)``             Taylor coefficients of the exact time-h flow.
``modified_field(ds, xs, order)``             Modified vector field of a map (BEA).
``grad``, ``hessian``, ``jacobian``, ``apply_field``, ``compose``, ``gd_step``,
``explicit_rk_step``, ``assemble``            small helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import factorial

import sympy as sp
from sympy.polys.rings import PolyRing

__all__ = [
    "apply_field",
    "assemble",
    "compose",
    "explicit_rk_step",
    "flow_series",
    "gd_step",
    "grad",
    "hessian",
    "implicit_map_series",
    "jacobian",
    "map_series",
    "modified_field",
    "taylor_coefficients",
]

Vec = list[sp.Expr]


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def grad(L: sp.Expr, xs: Sequence[sp.Symbol]) -> Vec:
    r"""Gradient :math:`\nabla L = (\partial L/\partial x_i)_i`."""
    return [sp.diff(L, x) for x in xs]


def hessian(L: sp.Expr, xs: Sequence[sp.Symbol]) -> list[Vec]:
    r"""Hessian :math:`H_{ij} = \partial^2 L / \partial x_i \partial x_j` as nested lists."""
    return [[sp.diff(L, xi, xj) for xj in xs] for xi in xs]


def jacobian(f: Sequence[sp.Expr], xs: Sequence[sp.Symbol]) -> list[Vec]:
    r"""Jacobian :math:`(f')_{ij} = \partial f_i / \partial x_j` as nested lists."""
    return [[sp.diff(fi, xj) for xj in xs] for fi in f]


def apply_field(g: Sequence[sp.Expr], f: Sequence[sp.Expr], xs: Sequence[sp.Symbol]) -> Vec:
    r"""Lie derivative :math:`(Dg)(x) = g'(x) f(x)`, i.e. :math:`\sum_i \partial_i g \, f_i`.

    ``g`` may be any list of expressions (a vector), the result is expanded.
    """
    return [sp.expand(sum(sp.diff(gk, xi) * fi for xi, fi in zip(xs, f, strict=True))) for gk in g]


def compose(f: Sequence[sp.Expr], xs: Sequence[sp.Symbol], y: Sequence[sp.Expr]) -> Vec:
    r"""Evaluate the expressions ``f`` (functions of ``xs``) at the point ``y``: :math:`f(y)`.

    Uses a simultaneous ``xreplace``, so ``y`` may itself contain ``xs``.
    """
    rep = dict(zip(xs, y, strict=True))
    return [sp.sympify(fi).xreplace(rep) for fi in f]


def gd_step(L: sp.Expr, xs: Sequence[sp.Symbol]) -> Callable[[Vec, sp.Symbol], Vec]:
    r"""Gradient-descent step :math:`\Psi_h(y) = y - h \nabla L(y)` as a ``step(y, h)`` callable."""
    g = grad(L, xs)

    def step(y: Vec, h: sp.Symbol) -> Vec:
        gy = compose(g, xs, y)
        return [yi - h * gi for yi, gi in zip(y, gy, strict=True)]

    return step


def explicit_rk_step(
    f: Sequence[sp.Expr],
    xs: Sequence[sp.Symbol],
    A: Sequence[Sequence[sp.Expr]],
    b: Sequence[sp.Expr],
) -> Callable[[Vec, sp.Symbol], Vec]:
    r"""Explicit Runge--Kutta step for the autonomous ODE :math:`\dot x = f(x)`.

    .. math:: k_i = f\Big(y + h \sum_{j<i} a_{ij} k_j\Big), \qquad
              \Psi_h(y) = y + h \sum_i b_i k_i .

    Only the strictly lower triangle of ``A`` is used.
    """
    s = len(b)
    A = [[sp.sympify(a) for a in row] for row in A]
    b = [sp.sympify(bi) for bi in b]

    def step(y: Vec, h: sp.Symbol) -> Vec:
        ks: list[Vec] = []
        for i in range(s):
            yi = [
                y[m] + h * sum((A[i][j] * ks[j][m] for j in range(i)), sp.Integer(0))
                for m in range(len(y))
            ]
            ks.append(compose(f, xs, yi))
        return [y[m] + h * sum(b[i] * ks[i][m] for i in range(s)) for m in range(len(y))]

    return step


def assemble(ds: Sequence[Sequence[sp.Expr]], h: sp.Symbol) -> Vec:
    r"""Assemble a series :math:`\sum_j h^j d_j` from its coefficient list (expanded)."""
    n = len(ds[0])
    return [sp.expand(sum(h**j * ds[j][m] for j in range(len(ds)))) for m in range(n)]


# ----------------------------------------------------------------------------------------------
# truncated power series in h
# ----------------------------------------------------------------------------------------------


class _NotPolynomialInH(Exception):
    """An h-dependent sub-expression that is not a polynomial operation (fallback needed)."""


def _is_poly_node(e: sp.Expr) -> bool:
    return e.is_Add or e.is_Mul or (e.is_Pow and e.exp.is_Integer and e.exp >= 0)


def _collect_gens(exprs: Sequence[sp.Expr], h: sp.Symbol) -> tuple[list, dict]:
    """Symbols (other than h) and opaque h-free sub-expressions, to be ring generators."""
    symbols: set = set()
    opaque: dict = {}
    seen: set = set()
    stack = list(exprs)
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        if e == h or e.is_Rational:
            continue
        if e.is_Symbol:
            symbols.add(e)
        elif _is_poly_node(e):
            stack.extend(e.args)
        elif e.has(h):
            raise _NotPolynomialInH(e)
        else:
            opaque.setdefault(e, sp.Dummy("opq"))
    gens = sorted(symbols, key=sp.default_sort_key) + list(opaque.values())
    return gens, opaque


def _tps_mul(a: list, b: list, order: int, zero) -> list:
    out = [zero] * (order + 1)
    for i, ai in enumerate(a):
        if not ai:
            continue
        for j in range(order + 1 - i):
            bj = b[j]
            if bj:
                out[i + j] = out[i + j] + ai * bj
    return out


def _tps_pow(a: list, n: int, order: int, one, zero) -> list:
    result = [one] + [zero] * order
    base = a
    while n:
        if n & 1:
            result = _tps_mul(result, base, order, zero)
        n >>= 1
        if n:
            base = _tps_mul(base, base, order, zero)
    return result


def _taylor_poly(exprs: Sequence[sp.Expr], h: sp.Symbol, order: int) -> list[Vec]:
    """Fast path: h enters only through +, *, non-negative integer powers."""
    gens, opaque = _collect_gens(exprs, h)
    if not gens:
        gens = [sp.Dummy("unused")]
    R = PolyRing(gens, sp.QQ)
    sym_to_gen = dict(zip(gens, R.gens, strict=True))
    zero, one = R.zero, R.one
    memo: dict = {}

    def conv(e: sp.Expr) -> list:
        if e in memo:
            return memo[e]
        if e == h:
            out = [zero, one] + [zero] * (order - 1) if order >= 1 else [zero]
        elif e.is_Rational:
            out = [R.ground_new(R.domain.from_sympy(e))] + [zero] * order
        elif e.is_Symbol:
            out = [sym_to_gen[e]] + [zero] * order
        elif e in opaque:
            out = [sym_to_gen[opaque[e]]] + [zero] * order
        elif e.is_Add:
            out = [zero] * (order + 1)
            for arg in e.args:
                ca = conv(arg)
                out = [o + c for o, c in zip(out, ca, strict=True)]
        elif e.is_Mul:
            out = None
            for arg in e.args:
                ca = conv(arg)
                out = ca if out is None else _tps_mul(out, ca, order, zero)
        else:  # non-negative integer power
            out = _tps_pow(conv(e.base), int(e.exp), order, one, zero)
        memo[e] = out
        return out

    back = {d: e for e, d in opaque.items()}
    result = []
    for e in exprs:
        coeffs = conv(e)
        result.append([sp.expand(c.as_expr().xreplace(back)) for c in coeffs])
    return [[result[m][j] for m in range(len(exprs))] for j in range(order + 1)]


def _taylor_diff(e: sp.Expr, h: sp.Symbol, order: int) -> Vec:
    """Fallback: c_j = (d/dh)^j e |_{h=0} / j!  (works for any analytic expression)."""
    out = []
    g = e
    for j in range(order + 1):
        c = g.subs(h, 0) / factorial(j)
        c = sp.expand(c)
        if not c.is_polynomial():
            c = sp.expand(sp.cancel(c))
        out.append(c)
        if j < order:
            g = sp.diff(g, h)
    return out


def taylor_coefficients(exprs: Sequence[sp.Expr], h: sp.Symbol, order: int) -> list[Vec]:
    r"""Taylor coefficients in ``h`` of a list of expressions.

    Returns ``[c_0, ..., c_order]`` with ``exprs[m] = sum_j h^j c_j[m] + O(h^(order+1))``,
    each ``c_j[m]`` expanded and free of ``h``.

    If ``h`` only enters through sums, products and non-negative integer powers (the case for
    polynomial losses / fields and explicit methods), this is done with truncated power series
    over a sparse polynomial ring, truncating at ``h^order`` after every product, so nested
    compositions such as RK4 never blow up.  Otherwise it falls back to
    :math:`c_j = \partial_h^j e|_{h=0} / j!`.
    """
    exprs = [sp.sympify(e) for e in exprs]
    try:
        return _taylor_poly(exprs, h, order)
    except _NotPolynomialInH:
        cols = [_taylor_diff(e, h, order) for e in exprs]
        return [[cols[m][j] for m in range(len(exprs))] for j in range(order + 1)]


def _check_consistent(d0: Vec, xs: Sequence[sp.Symbol], what: str) -> None:
    bad = [sp.expand(a - x) for a, x in zip(d0, xs, strict=True) if sp.expand(a - x) != 0]
    if bad:
        raise ValueError(f"{what}: zeroth-order term d_0 must equal xs (Psi_0 = id), got {d0}")


# ----------------------------------------------------------------------------------------------
# series of maps
# ----------------------------------------------------------------------------------------------


def map_series(
    step: Callable[[Vec, sp.Symbol], Sequence[sp.Expr]],
    xs: Sequence[sp.Symbol],
    h: sp.Symbol,
    order: int,
) -> list[Vec]:
    r"""Taylor coefficients of an explicit one-step map in the step size.

    ``step(y, h)`` is a concrete map written in sympy (e.g. gradient descent
    :math:`y - h\nabla L(y)`, an RK method, or the composition of several steps); it is called
    once with ``y = xs``.  Returns ``[d_0, ..., d_order]`` (each a list of expanded expressions
    in ``xs``, one per variable) such that

    .. math:: \Psi_h(x) = \sum_{j=0}^{\text{order}} h^j d_j(x) + O(h^{\text{order}+1}),

    where :math:`d_j = \frac{1}{j!}\partial_h^j \Psi_h(x)|_{h=0}`.  Raises ``ValueError`` unless
    :math:`d_0 = x` (the map must be consistent, :math:`\Psi_0 = \mathrm{id}`).
    """
    xs = list(xs)
    out = list(step(list(xs), h))
    if len(out) != len(xs):
        raise ValueError("step must return one expression per variable")
    ds = taylor_coefficients(out, h, order)
    _check_consistent(ds[0], xs, "map_series")
    return ds


def implicit_map_series(
    G: Callable[[Vec, Vec, sp.Symbol], Sequence[sp.Expr]],
    xs: Sequence[sp.Symbol],
    h: sp.Symbol,
    order: int,
) -> list[Vec]:
    r"""Taylor coefficients of an implicitly defined map :math:`y_1 = G(x, y_1, h)`.

    ``G(x, y, h)`` returns a list of expressions; it must satisfy :math:`G(x, y, 0) = x` for
    all :math:`y` (so its dependence on :math:`y` is :math:`O(h)`), e.g. implicit Euler /
    proximal point :math:`G = x + h f(y)` or implicit midpoint
    :math:`G = x + h f((x+y)/2)`.  The solution is found by the fixed-point iteration

    .. math:: y^{(0)} = x, \qquad y^{(k+1)} = G(x, y^{(k)}, h) \bmod h^{\text{order}+1},

    which gains one correct power of :math:`h` per iteration (the map
    :math:`y \mapsto G(x,y,h)` is an :math:`O(h)` contraction in the :math:`h`-adic sense).
    Iterates until the truncated series is stationary (at most ``order + 2`` times), and
    returns ``[d_0, ..., d_order]`` as in :func:`map_series`.
    """
    xs = list(xs)
    ds = [list(xs)] + [[sp.Integer(0)] * len(xs) for _ in range(order)]
    for _ in range(order + 2):
        y = assemble(ds, h)
        new = taylor_coefficients(list(G(list(xs), y, h)), h, order)
        if all(
            sp.expand(a - b) == 0
            for da, db in zip(new, ds, strict=True)
            for a, b in zip(da, db, strict=True)
        ):
            _check_consistent(new[0], xs, "implicit_map_series")
            return new
        ds = new
    raise ValueError(
        "implicit_map_series: fixed-point iteration did not converge; G(x, y, h) must depend "
        "on y only at O(h) and satisfy G(x, y, 0) = x"
    )


# ----------------------------------------------------------------------------------------------
# flows and modified fields
# ----------------------------------------------------------------------------------------------


def flow_series(
    fs: Sequence[Sequence[sp.Expr]],
    xs: Sequence[sp.Symbol],
    h: sp.Symbol,
    order: int,
) -> list[Vec]:
    r"""Taylor coefficients of the exact time-:math:`h` flow of :math:`\tilde f = \sum_k h^k f_k`.

    ``fs = [f_0, f_1, ...]`` (each a list of expressions in ``xs``; the field may itself depend
    on ``h`` through these orders).  By the Lie series

    .. math:: \varphi_h(x) = \sum_{j\ge 0} \frac{h^j}{j!} (D^j \mathrm{id})(x),
              \qquad D g = g' \tilde f,

    where :math:`D^j\mathrm{id}` is itself a series in :math:`h`.  Writing
    :math:`T_j = D^j \mathrm{id} = \sum_a h^a T_{j,a}`, we have :math:`T_0 = x`,
    :math:`T_{j+1,n} = \sum_{a+b=n} T_{j,a}' f_b`, and

    .. math:: d_m = \sum_{j=0}^{m} \frac{1}{j!} T_{j, m-j}.

    Returns ``[d_0, ..., d_order]`` (expanded); ``d_0 = x``.  ``h`` does not appear in the
    output (coefficients are returned); it is accepted for symmetry with :func:`map_series`.
    """
    del h
    xs = list(xs)
    n = len(xs)
    zero_vec = [sp.Integer(0)] * n
    fs = [[sp.expand(sp.sympify(c)) for c in f] for f in fs]
    # T[j][a] : coefficient of h^a in D^j id, needed for a <= order - j
    T: list[list[Vec]] = [[list(xs)] + [list(zero_vec) for _ in range(order)]]
    for j in range(1, order + 1):
        prev = T[-1]
        cur = []
        for nn in range(order - j + 1):
            acc = list(zero_vec)
            for b in range(min(nn, len(fs) - 1) + 1):
                a = nn - b
                if all(c == 0 for c in prev[a]) or all(c == 0 for c in fs[b]):
                    continue
                term = apply_field(prev[a], fs[b], xs)
                acc = [p + q for p, q in zip(acc, term, strict=True)]
            cur.append([sp.expand(c) for c in acc])
        T.append(cur)
    ds = []
    for m in range(order + 1):
        d = list(zero_vec)
        for j in range(m + 1):
            d = [p + q / factorial(j) for p, q in zip(d, T[j][m - j], strict=True)]
        ds.append([sp.expand(c) for c in d])
    return ds


def modified_field(
    ds: Sequence[Sequence[sp.Expr]],
    xs: Sequence[sp.Symbol],
    order: int,
) -> list[Vec]:
    r"""Modified vector field (backward error analysis) of a one-step map.

    Given the map coefficients ``ds = [d_0, ..., d_{order+1}]`` (from :func:`map_series` or
    :func:`implicit_map_series`), return ``[f_0, ..., f_order]`` such that the exact time-h flow
    of :math:`\tilde f = f_0 + h f_1 + \dots + h^{\text{order}} f_{\text{order}}` satisfies

    .. math:: \varphi_h^{\tilde f}(x) = \Psi_h(x) + O(h^{\text{order}+2}).

    In the Lie series (see :func:`flow_series`) the unknown :math:`f_k` first enters at
    :math:`h^{k+1}`, linearly and with coefficient 1 (through the :math:`j=1` term
    :math:`h\tilde f`); hence order by order

    .. math:: f_k = d_{k+1} - [h^{k+1}]\, \varphi_h^{f_0 + \dots + h^{k-1} f_{k-1}}(x),

    e.g. :math:`f_0 = d_1`, :math:`f_1 = d_2 - \tfrac12 f_0' f_0`.  Expressions are expanded.
    """
    xs = list(xs)
    if len(ds) < order + 2:
        raise ValueError(f"modified_field needs d_0..d_{order + 1}, got {len(ds)} coefficients")
    _check_consistent(list(ds[0]), xs, "modified_field")
    h = sp.Dummy("h")
    fs: list[Vec] = []
    for k in range(order + 1):
        if k == 0:
            known = [sp.Integer(0)] * len(xs)
        else:
            known = flow_series(fs, xs, h, k + 1)[k + 1]
        fs.append([sp.expand(sp.sympify(d) - c) for d, c in zip(ds[k + 1], known, strict=True)])
    return fs

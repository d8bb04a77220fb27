"""B-series (and NB-series over colored trees) with exact coefficients.

A B-series is ``B(a, y) = a(0) y + sum_t h^|t| a(t)/sigma(t) F(t)(y)``, summed over the
colored trees ``t`` with elementary differentials ``F([t_1..t_k]_c) = f_c^(k)[F(t_1), ..]``
(HLW ch. III.1; for several fields, Araujo-Murua-Sanz-Serna's NB-series).  Coefficients
live in an exact sympy domain: ``QQ`` (gmpy2 rationals when available) for numeric
methods, the field of rational functions ``QQ(beta, ...)`` when method parameters are
symbols, ``EX`` for anything else.  Arithmetic in those domains is exact and keeps every
coefficient in canonical (cancelled) form, so symbolic parameters simplify as they go.

Operations, all truncated at a maximal order:

* :func:`compose` -- ``B(b, B(a, y)) = B(a.b, y)`` (HLW Thm III.1.10, admissible cuts).
* :func:`inverse` -- the series of the inverse map.
* :func:`field_at` -- ``h sum_c r_c f_c(B(a, y))`` (HLW Lemma III.1.9).
* :func:`modified_field` -- the modified vector field of a one-step series: ``b`` with
  ``exp(h F_b) = B(a)``, solved tree by tree from the Lie series
  ``a = sum_{j>=1} (1/j!) d_b^(j-1) b``, ``(d_b g)(t) = sum_{one-edge cuts} b(pruned) g(rest)``
  (HLW ch. IX.9; the substitution law ``a = b * e`` gives the same, see :func:`substitute`).
* :func:`flow_of_field` -- the inverse operation, ``exp``.
* :func:`substitute` -- the substitution law ``(b * a)(t)`` over edge partitions
  (Chartier, Hairer, Vilmart 2010), used to cross-check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sympy
from sympy.polys.constructor import construct_domain
from sympy.polys.domains import QQ
from sympy.polys.domains.domain import Domain

from . import trees as T

# Above this many trees a derivation is refused unless the caller raises the limit.
DEFAULT_MAX_TREES = 200_000


def coefficient_domain(exprs: Iterable[object]) -> Domain:
    """The smallest exact sympy domain holding all ``exprs`` (as a field)."""
    items = [sympy.nsimplify(e, rational=True) if isinstance(e, float) else sympy.sympify(e)
             for e in exprs]
    items = [e for e in items if not e.is_Rational]
    if not items:
        return QQ
    dom, _ = construct_domain(items, field=True)
    if not dom.is_Field:
        dom = dom.get_field()
    return dom


def to_domain(dom: Domain, x: object):
    """Convert a number or sympy expression to an element of ``dom`` (floats exactly)."""
    if isinstance(x, float):
        x = sympy.Rational(x)
    return dom.from_sympy(sympy.sympify(x))


def unify(a: Domain, b: Domain) -> Domain:
    return a.unify(b)


@dataclass
class BSeries:
    """Coefficients ``a(t)`` for colored trees up to ``max_order``, plus ``a(empty)``.

    ``coeffs`` maps tree ids to domain elements; missing trees have coefficient 0.
    """

    domain: Domain
    ncolors: int
    max_order: int
    empty: object
    coeffs: dict[int, object] = field(default_factory=dict)

    def __getitem__(self, t: int):
        return self.coeffs.get(t, self.domain.zero)

    def trees(self) -> list[int]:
        return T.trees_up_to(self.max_order, self.ncolors)

    def to_sympy(self, t: int) -> sympy.Expr:
        return self.domain.to_sympy(self[t])

    def convert(self, dom: Domain) -> BSeries:
        if dom == self.domain:
            return self
        conv = lambda x: dom.convert_from(x, self.domain)
        return BSeries(dom, self.ncolors, self.max_order, conv(self.empty),
                       {t: conv(v) for t, v in self.coeffs.items()})

    def truncate(self, n: int) -> BSeries:
        return BSeries(self.domain, self.ncolors, min(n, self.max_order), self.empty,
                       {t: v for t, v in self.coeffs.items() if T.order(t) <= n})

    def equals(self, other: BSeries) -> bool:
        dom = self.domain.unify(other.domain)
        a, b = self.convert(dom), other.convert(dom)
        n = min(a.max_order, b.max_order)
        return a.empty == b.empty and all(
            a[t] == b[t] for t in T.trees_up_to(n, max(a.ncolors, b.ncolors)))


def check_size(max_order: int, ncolors: int, max_trees: int | None) -> None:
    """Refuse a derivation whose tree count is impractical, saying what it costs
    (:func:`bea.limits.check_trees`: counted in closed form before any tree is built)."""
    from .limits import check_trees

    check_trees(max_order, ncolors, DEFAULT_MAX_TREES if max_trees is None else max_trees)


def exact_flow(max_order: int, ncolors: int = 1, domain: Domain = QQ) -> BSeries:
    """Exact time-h flow of ``sum_c f_c``: ``a(t) = 1/gamma(t)`` for every colored tree."""
    one = domain.one
    return BSeries(domain, ncolors, max_order, one,
                   {t: one / domain.convert(T.gamma(t))
                    for t in T.trees_up_to(max_order, ncolors)})


def identity(max_order: int, ncolors: int = 1, domain: Domain = QQ) -> BSeries:
    return BSeries(domain, ncolors, max_order, domain.one, {})


def _same(a: BSeries, b: BSeries) -> tuple[BSeries, BSeries, int, int]:
    dom = a.domain.unify(b.domain)
    return (a.convert(dom), b.convert(dom), min(a.max_order, b.max_order),
            max(a.ncolors, b.ncolors))


def compose_at(a: BSeries, b: BSeries, t: int):
    """``(a.b)(t)``: coefficient of ``B(b, B(a, y))`` on ``t`` (a applied first)."""
    dom = a.domain
    acc = b.empty * a[t]
    for s, forest, m in T.ordered_subtrees(t):
        bs = b[s]
        if not bs:
            continue
        prod = dom.one
        for u in forest:
            prod *= a[u]
            if not prod:
                break
        if prod:
            acc += dom.convert(m) * bs * prod
    return acc


def compose(a: BSeries, b: BSeries) -> BSeries:
    """Series of the map ``y -> B(b, B(a, y))``: first ``a``, then ``b``."""
    a, b, n, nc = _same(a, b)
    out = {}
    for t in T.trees_up_to(n, nc):
        v = compose_at(a, b, t)
        if v:
            out[t] = v
    return BSeries(a.domain, nc, n, a.empty * b.empty, out)


def inverse(a: BSeries) -> BSeries:
    """Series ``c`` of the inverse map: ``B(c, B(a, y)) = y``; needs ``a(empty) = 1``."""
    if a.empty != a.domain.one:
        raise ValueError("only a series with a(empty) = 1 (a near-identity map) has an inverse")
    dom = a.domain
    c = BSeries(dom, a.ncolors, a.max_order, dom.one, {})
    for t in a.trees():
        # 0 = (a.c)(t) = a(t) + c(t) + sum over proper non-empty subtrees s of c(s) a(t\s)
        v = compose_at(a, c, t)  # c(t) is still 0 here, so this is everything but c(t)
        if v:
            c.coeffs[t] = -v
    return c


def field_at(a: BSeries, rates: Sequence[object] | None = None) -> BSeries:
    """``h sum_c r_c f_c(B(a, y))`` as a B-series (HLW Lemma III.1.9):
    ``(t = [t_1..t_k]_c) -> r_c prod a(t_i)``, and 0 on the empty tree."""
    dom = a.domain
    r = [dom.one] * a.ncolors if rates is None else [to_domain(dom, x) for x in rates]
    out = {}
    for t in a.trees():
        c, ch = T.key(t)
        v = r[c]
        for u in ch:
            if not v:
                break
            v = v * a[u]
        if v:
            out[t] = v
    return BSeries(dom, a.ncolors, a.max_order, dom.zero, out)


def linear_combination(terms: Sequence[tuple[object, BSeries]]) -> BSeries:
    dom = terms[0][1].domain
    for _, s in terms[1:]:
        dom = dom.unify(s.domain)
    n = min(s.max_order for _, s in terms)
    nc = max(s.ncolors for _, s in terms)
    out: dict[int, object] = {}
    empty = dom.zero
    for w, s in terms:
        wd = to_domain(dom, w) if not isinstance(w, type(dom.one)) else w
        s = s.convert(dom)
        empty += wd * s.empty
        for t, v in s.coeffs.items():
            if T.order(t) <= n:
                out[t] = out.get(t, dom.zero) + wd * v
    return BSeries(dom, nc, n, empty, {t: v for t, v in out.items() if v})


def _lie_series(b: dict[int, object], t: int, n: int, W: dict[int, list], zero: object,
                mult: list[object]) -> list[object]:
    """``[(d_b^k b)(t) for k = 1..n-1]`` (``n = |t|``) from ``W[r] = [w_0(r), .., w_{|r|-1}(r)]``
    on the smaller trees, ``w_k = d_b^k b``, ``(d_b g)(t) = sum_{one-edge cuts} b(pruned)
    g(rest)``.  Loops over the cuts outside and the powers inside: ``w_{k-1}(rest)`` is zero
    for ``k > |rest|``, so each cut touches only the ``|rest|`` stored values of its rest."""
    vals = [zero] * (n - 1)
    for pruned, rest, m in T.single_cuts(t):
        bp = b.get(pruned)
        if not bp:
            continue
        wr = W.get(rest)
        if wr is None:
            continue
        if m != 1:
            bp = bp * mult[m]
        for k, x in enumerate(wr):
            if x:
                vals[k] += bp * x
    return vals


def _lie_solve(a: BSeries, b: dict[int, object], sign: int,
               progress: Callable[[int], None] | None = None) -> dict[int, object]:
    """The Lie-series recursion shared by :func:`modified_field` (``sign = -1``: ``b(t) =
    a(t) - sum_{j>=2} w_{j-1}(t)/j!``, ``b`` filled in) and :func:`flow_of_field`
    (``sign = +1``: returns ``a(t) = b(t) + sum_{j>=2} w_{j-1}(t)/j!``, ``b`` given).

    Data layout: per tree one list of its Lie powers (``W[t]``, ints of the shared tree
    table as keys), trailing zeros dropped, so the inner loop is a plain list walk.
    """
    dom = a.domain
    zero = dom.zero
    inv_fact = [dom.one / dom.convert(math.factorial(j)) for j in range(a.max_order + 2)]
    mult = [dom.convert(m) for m in range(a.max_order + 1)]
    W: dict[int, list] = {}
    out: dict[int, object] = {}
    current = 0
    solve = sign < 0
    for t in a.trees():
        n = T.order(t)
        if progress is not None and n != current:
            current = n
            progress(n)
        vals = _lie_series(b, t, n, W, zero, mult)
        v = a.coeffs.get(t, zero) if solve else b.get(t, zero)
        for k, x in enumerate(vals, start=2):
            if x:
                v = v - inv_fact[k] * x if solve else v + inv_fact[k] * x
        if solve:
            if v:
                b[t] = v
            head = b.get(t, zero)
        else:
            if v:
                out[t] = v
            head = b.get(t, zero)
        row = [head, *vals]
        while row and not row[-1]:
            row.pop()
        if row:
            W[t] = row
    return b if solve else out


def _modified_field_rational(a: BSeries,
                             progress: Callable[[int], None] | None = None) -> dict[int, object]:
    """:func:`modified_field`'s recursion over the rationals in Python integers.

    Same equations as :func:`_lie_solve` (``sign = -1``), different data layout: every
    value of a tree of order ``n`` (``b(t)`` and its Lie powers ``w_k(t)``) is an integer
    numerator over one denominator per order, so the inner loop multiplies and adds
    machine-sized Python ints instead of normalising a rational (a gcd) at every step.
    With ``Q_n`` the denominator of the ``b`` of order ``n`` and ``Z_n`` that of the Lie
    powers (a multiple of ``Q_n``), a cut ``t -> (pruned, rest)`` with ``|pruned| = i``
    contributes ``m b(pruned) w(rest)`` over ``Q_i Z_(n-i)``; all of them are summed over
    ``G_n = lcm_i Q_i Z_(n-i)``, and ``b(t) = a(t) - sum_j w_(j-1)(t)/j!`` over
    ``G_n n! A_n`` (``A_n`` the common denominator of the ``a`` of order ``n``).  Each
    order's denominators are then reduced to the lcm of the true ones (one gcd over the
    order's numerators), so the integers stay as small as the coefficients themselves.
    Exact: the result equals :func:`_lie_solve`'s term by term (tests/test_core.py).
    """
    dom = a.domain
    coeffs = a.coeffs
    order_of = T.order
    Q = [1]                  # Q[n]: denominator of b on trees of order n
    Z = [1]                  # Z[n]: denominator of the Lie powers on trees of order n
    B: dict[int, int] = {}   # numerators of b over Q[|t|]
    W: dict[int, list[int]] = {}   # [w_0(t), .., w_{|t|-1}(t)] over Z[|t|], zeros dropped
    out: dict[int, object] = {}
    for n in range(1, a.max_order + 1):
        if progress is not None:
            progress(n)
        trees = T.trees_of_order(n, a.ncolors)
        G = 1
        for i in range(1, n):
            G = math.lcm(G, Q[i] * Z[n - i])
        f = [0] + [G // (Q[i] * Z[n - i]) for i in range(1, n)]
        A = 1
        for t in trees:
            v = coeffs.get(t)
            if v:
                A = math.lcm(A, int(dom.denom(v)))
        nfact = math.factorial(n)
        scale_a = G * nfact            # a(t) numerators over A -> over G n! A
        div = [nfact // math.factorial(j) * A for j in range(n + 1)]
        rows: list[list[int]] = []
        nums: list[int] = []
        g_w = G                        # gcd of the Lie powers' numerators and G
        g_b = G * nfact * A            # gcd of the b numerators and their denominator
        last = n == a.max_order   # nothing is built on the top order's trees: keep less
        for t in trees:
            vals = [0] * (n - 1)
            for pruned, rest, m in T.single_cuts(t, keep=not last):
                bp = B.get(pruned)
                if not bp:
                    continue
                wr = W.get(rest)
                if wr is None:
                    continue
                c = m * f[order_of(pruned)] * bp
                for k, x in enumerate(wr):
                    if x:
                        vals[k] += c * x
            v = coeffs.get(t)
            num = int(dom.numer(v)) * (A // int(dom.denom(v))) * scale_a if v else 0
            for k, x in enumerate(vals):
                if x:
                    num -= x * div[k + 2]
                    g_w = math.gcd(g_w, x)
            rows.append(None if last else vals)
            nums.append(num)
            if num:
                g_b = math.gcd(g_b, num)
        Qn = G * nfact * A // g_b
        Gn = G // g_w                  # the Lie powers' reduced denominator
        Zn = math.lcm(Qn, Gn)
        zb, zw = Zn // Qn, Zn // Gn
        for t, vals, num in zip(trees, rows, nums, strict=True):
            bn = num // g_b
            if bn:
                out[t] = dom(bn, Qn)
            if last:
                continue
            if bn:
                B[t] = bn
            row = [bn * zb, *[x // g_w * zw for x in vals]]
            while row and not row[-1]:
                row.pop()
            if row:
                W[t] = row
        Q.append(Qn)
        Z.append(Zn)
    return out


def modified_field(a: BSeries, max_trees: int | None = None,
                   progress: Callable[[int], None] | None = None) -> BSeries:
    """The modified field ``b`` of a one-step series ``a`` (``a(empty) = 1``).

    ``b`` is the field series whose exact time-h flow is ``B(a)``: the modified vector
    field is ``f~ = sum_t h^(|t|-1) b(t)/sigma(t) F(t)``.  Solved tree by tree in
    increasing order from ``a(t) = b(t) + sum_{j>=2} (1/j!) (d_b^(j-1) b)(t)``.
    """
    if a.empty != a.domain.one:
        raise ValueError("the modified equation needs a consistent one-step map (a(empty)=1)")
    check_size(a.max_order, a.ncolors, max_trees)
    if a.domain.is_QQ:
        coeffs = _modified_field_rational(a, progress)
    else:
        coeffs = _lie_solve(a, {}, -1, progress)
    return BSeries(a.domain, a.ncolors, a.max_order, a.domain.zero, coeffs)


def flow_of_field(b: BSeries) -> BSeries:
    """``exp``: the series of the exact time-h flow of the field series ``b``."""
    shell = BSeries(b.domain, b.ncolors, b.max_order, b.domain.one, {})
    out = _lie_solve(shell, dict(b.coeffs), +1)
    return BSeries(b.domain, b.ncolors, b.max_order, b.domain.one, out)


# --------------------------------------------------------------------------- substitution


def _partitions(t: int):
    """Edge partitions of ``t``: yields ``(skeleton_id, pieces)`` once per edge subset.

    Kept edges glue vertices into pieces (colored rooted trees, rooted nearest the
    root); contracting each piece to one vertex gives the (uncolored) skeleton.
    """
    colors, adj = T._adjacency(t)
    nv = len(colors)
    parent = [-1] * nv
    order_ = [0]
    seen = {0}
    while len(order_) < nv:
        for v in list(order_):
            for w_ in adj[v]:
                if w_ not in seen:
                    seen.add(w_)
                    parent[w_] = v
                    order_.append(w_)
    edges = [v for v in range(1, nv)]  # edge (parent[v], v) named by v
    for mask in range(1 << len(edges)):
        keep = {edges[i] for i in range(len(edges)) if mask >> i & 1}
        # piece root of each vertex
        top = list(range(nv))
        for v in order_[1:]:
            if v in keep:
                top[v] = top[parent[v]]
        kids: dict[int, list[int]] = {v: [] for v in range(nv)}
        for v in order_[1:]:
            kids[parent[v]].append(v)

        def piece(v: int, kids=kids, keep=keep) -> int:
            return T.intern(colors[v], [piece(u) for u in kids[v] if u in keep])

        def skeleton(v: int, kids=kids, keep=keep) -> int:
            # children of piece rooted at v: pieces hanging off any vertex of the piece
            subs = []
            stack = [v]
            while stack:
                x = stack.pop()
                for u in kids[x]:
                    if u in keep:
                        stack.append(u)
                    else:
                        subs.append(skeleton(u))
            return T.intern(0, subs)

        pieces = [piece(v) for v in range(nv) if top[v] == v]
        yield skeleton(0), pieces


def substitute(b: BSeries, a: BSeries) -> BSeries:
    """Substitution law ``(b * a)(t) = sum_partitions a(skeleton) prod b(pieces)``.

    ``a`` is a series in one (uncolored) field, ``b`` a field series (``b(empty) = 0``)
    over colored trees: the result is ``B(a)`` with ``h f`` replaced by ``B(b)``.
    Exponential in the order (``2^(|t|-1)`` partitions per tree): for tests and small
    orders.
    """
    dom = a.domain.unify(b.domain)
    a, b = a.convert(dom), b.convert(dom)
    n = min(a.max_order, b.max_order)
    out = {}
    for t in T.trees_up_to(n, b.ncolors):
        acc = dom.zero
        for skel, pieces in _partitions(t):
            v = a[skel]
            for p in pieces:
                if not v:
                    break
                v = v * b[p]
            acc += v
        if acc:
            out[t] = acc
    return BSeries(dom, b.ncolors, n, a.empty, out)

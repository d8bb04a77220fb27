"""One-step Runge-Kutta family: additive (one tableau per field) and plain tableaux,
the named methods, SGD over exact batches, and the average over batch orderings."""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from .. import series as S
from .. import trees as T
from .base import Method, Number, _sym


class AdditiveRungeKutta(Method):
    """Additive (partitioned-by-field) Runge-Kutta method, one tableau per color.

    Elementary weights (HLW III.1, III.2 for partitioned/additive methods):
    ``a([t_1..t_k]_c) = sum_i b^(c)_i prod_m psi_i(t_m)``,
    ``psi_i(u) = sum_j A^(c_u)_ij prod_{children v of u} psi_j(v)``.
    Entries may be sympy symbols.  Implicit tableaux (``A`` not strictly lower
    triangular) are solved by fixed-point iteration in :meth:`step`.
    """

    def __init__(self, A: Sequence[Sequence[Sequence[Number]]], b: Sequence[Sequence[Number]],
                 name: str = "ark", color_names: Sequence[str] | None = None,
                 check_consistency: bool = True):
        if len(A) != len(b) or not A:
            raise ValueError(f"need one tableau per color: got {len(A)} A's and {len(b)} b's")
        self.ncolors = len(A)
        s = len(b[0])
        self.A = tuple(tuple(tuple(_sym(x) for x in row) for row in Ac) for Ac in A)
        self.b = tuple(tuple(_sym(x) for x in bc) for bc in b)
        for c in range(self.ncolors):
            if len(self.b[c]) != s or len(self.A[c]) != s or any(len(r) != s for r in self.A[c]):
                raise ValueError(
                    f"tableau of color {c} has mismatched shape: A must be {s}x{s} and b of "
                    f"length {s} (got A {len(self.A[c])}x"
                    f"{[len(r) for r in self.A[c]]}, b {len(self.b[c])})")
        self.stages = s
        self.name = name
        self.color_names = tuple(color_names) if color_names else (
            ("",) if self.ncolors == 1 else tuple(str(i + 1) for i in range(self.ncolors)))
        if len(self.color_names) != self.ncolors:
            raise ValueError("need one color name per tableau")
        if check_consistency and self.ncolors == 1:
            total = sympy.simplify(sum(self.b[0]))
            if total != 1:
                raise ValueError(
                    f"inconsistent tableau: sum(b) = {total}, must be 1 for a method "
                    f"approximating the flow of f (scale the weights, or pass "
                    f"check_consistency=False for a deliberately scaled step)")
        self.explicit = all(self.A[c][i][j] == 0 for c in range(self.ncolors)
                            for i in range(s) for j in range(i, s))

    def __repr__(self) -> str:
        return f"AdditiveRungeKutta(name={self.name!r}, A={self.A}, b={self.b})"

    @property
    def parameters(self) -> tuple[sympy.Symbol, ...]:
        syms: set[sympy.Symbol] = set()
        for Ac in self.A:
            for row in Ac:
                for x in row:
                    syms |= x.free_symbols
        for bc in self.b:
            for x in bc:
                syms |= x.free_symbols
        return tuple(sorted(syms, key=str))

    def _build_series(self, max_order: int) -> S.BSeries:
        entries = [x for Ac in self.A for row in Ac for x in row] + [x for bc in self.b for x in bc]
        dom = S.coefficient_domain(entries)
        A = [[[S.to_domain(dom, x) for x in row] for row in Ac] for Ac in self.A]
        b = [[S.to_domain(dom, x) for x in bc] for bc in self.b]
        s = self.stages
        # the non-zero entries only (SGD over batches, games: one column per color)
        A_nz = [[[(j, x) for j, x in enumerate(row) if x] for row in Ac] for Ac in A]
        b_nz = [[(i, x) for i, x in enumerate(bc) if x] for bc in b]
        one, zero = dom.one, dom.zero
        leaf_prod = dict.fromkeys(range(s), one)
        # psi_i(t) = sum_j A_ij prod_children psi_j(child), stored sparsely ({stage: value},
        # non-zero entries only): with one field per stage (SGD over batches, games) most
        # stages see a given tree with weight 0, and the products skip them (issue 20)
        psi: dict[int, dict[int, object]] = {}
        out = {}
        for t in T.trees_up_to(max_order, self.ncolors):
            c, ch = T.key(t)
            if ch:
                prod = psi[ch[0]]
                for u in ch[1:]:
                    pu = psi[u]
                    prod = {j: x * pu[j] for j, x in prod.items() if j in pu}
            else:
                prod = leaf_prod
            p_t = {}
            if prod:
                for i, row in enumerate(A_nz[c]):
                    acc = zero
                    for j, x in row:
                        y = prod.get(j)
                        if y is not None:
                            acc += x * y
                    if acc:
                        p_t[i] = acc
                v = zero
                for i, x in b_nz[c]:
                    y = prod.get(i)
                    if y is not None:
                        v += x * y
                if v:
                    out[t] = v
            if T.order(t) < max_order:   # no tree above the top order needs its weights
                psi[t] = p_t
        return S.BSeries(dom, self.ncolors, max_order, dom.one, out)

    def step(self, fields, state, h, *, implicit_iters: int = 200, implicit_tol: float = 1e-14):
        import jax
        import jax.numpy as jnp

        from kernels import tree_util as tu

        A = [[[float(x) for x in row] for row in Ac] for Ac in self.A]
        b = [[float(x) for x in bc] for bc in self.b]
        s, nc = self.stages, self.ncolors
        y = state

        def stage_value(i, evals):
            terms = [(h * A[c][i][j], evals[j][c]) for j in range(s) for c in range(nc)
                     if A[c][i][j] != 0]
            return tu.tree_add(y, tu.linear_combination(*zip(*terms, strict=True))) if terms else y

        def needed(i):
            return [c for c in range(nc)
                    if b[c][i] != 0 or any(A[c][k][i] != 0 for k in range(s))]

        if self.explicit:
            evals = []
            for i in range(s):
                g = stage_value(i, evals)
                evals.append({c: fields[c](g) for c in needed(i)})
        else:
            # Implicit stages: fixed-point iteration g <- y + h sum A f(g), converging for
            # h * Lipschitz < 1 (proximal point needs small steps anyway).
            def body(carry):
                gs, _, k = carry
                ev = [{c: fields[c](gs[j]) for c in needed(j)} for j in range(s)]
                new = [stage_value(i, ev) for i in range(s)]
                diff = sum(tu.tree_norm(tu.tree_sub(n, o)) for n, o in zip(new, gs, strict=True))
                return new, diff, k + 1

            def cond(carry):
                _, diff, k = carry
                return (diff > implicit_tol * (1 + tu.tree_norm(y))) & (k < implicit_iters)

            gs0 = [y] * s
            gs, _, _ = jax.lax.while_loop(cond, body, (gs0, jnp.asarray(jnp.inf), 0))
            evals = [{c: fields[c](gs[j]) for c in needed(j)} for j in range(s)]
        terms = [(h * b[c][i], evals[i][c]) for i in range(s) for c in range(nc) if b[c][i] != 0]
        return tu.tree_add(y, tu.linear_combination(*zip(*terms, strict=True)))


class RungeKutta(AdditiveRungeKutta):
    """A Runge-Kutta method for one field: ``rk(A, b)``."""

    def __init__(self, A: Sequence[Sequence[Number]], b: Sequence[Number], name: str = "rk",
                 check_consistency: bool = True):
        super().__init__([A], [b], name=name, check_consistency=check_consistency)

    def __repr__(self) -> str:
        return f"RungeKutta(name={self.name!r}, A={self.A[0]}, b={self.b[0]})"


def rk(A: Sequence[Sequence[Number]], b: Sequence[Number], name: str = "rk") -> RungeKutta:
    """Runge-Kutta method with Butcher tableau ``(A, b)`` (explicit or implicit)."""
    return RungeKutta(A, b, name=name)


def gd() -> RungeKutta:
    """Gradient descent ``theta <- theta - h grad L``: explicit Euler on ``f = -grad L``."""
    return RungeKutta([[0]], [1], name="gd")


def explicit_midpoint() -> RungeKutta:
    h = sympy.Rational(1, 2)
    return RungeKutta([[0, 0], [h, 0]], [0, 1], name="explicit_midpoint")


def heun() -> RungeKutta:
    h = sympy.Rational(1, 2)
    return RungeKutta([[0, 0], [1, 0]], [h, h], name="heun")


def rk4() -> RungeKutta:
    h = sympy.Rational(1, 2)
    return RungeKutta([[0, 0, 0, 0], [h, 0, 0, 0], [0, h, 0, 0], [0, 0, 1, 0]],
                      [sympy.Rational(1, 6), sympy.Rational(1, 3), sympy.Rational(1, 3),
                       sympy.Rational(1, 6)], name="rk4")


def extragradient() -> RungeKutta:
    """Extragradient ``theta <- theta + h f(theta + h f(theta))``."""
    return RungeKutta([[0, 0], [1, 0]], [0, 1], name="extragradient")


def proximal_point() -> RungeKutta:
    """Proximal point ``theta_{n+1} = argmin L(.) + |. - theta_n|^2/(2h)``, i.e. implicit
    Euler ``theta_{n+1} = theta_n + h f(theta_{n+1})``."""
    return RungeKutta([[1]], [1], name="proximal_point")


def sgd(batches: int = 2, average_orderings: bool = False) -> Method:
    """``batches`` consecutive GD steps, step i on the field ``f_i = -grad L_i`` of batch i,
    in the given order (exact batches, no expectation).

    As an additive RK method: stage i evaluates ``f_i`` at the point reached after the
    first i-1 steps.  One call of :meth:`step` is a whole epoch; its flow time is
    ``h`` for the field ``sum_i f_i`` (equivalently time ``m h`` for the mean loss
    ``L = (1/m) sum_i L_i``: the normalisation of Smith et al., ICLR 2021).

    ``average_orderings=True`` gives the expected epoch over all ``m!`` orderings of the
    batches (see :class:`OrderingAverage`).
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive integer, got {batches!r}")
    if average_orderings:
        return OrderingAverage(sgd(batches))
    m = batches
    from ..limits import check_tableau

    check_tableau(m, m, f"sgd with {m:,} batches")
    A = [[[1 if (j == c and j < i) else 0 for j in range(m)] for i in range(m)] for c in range(m)]
    b = [[1 if i == c else 0 for i in range(m)] for c in range(m)]
    return AdditiveRungeKutta(A, b, name=f"sgd(batches={m})",
                              color_names=tuple(str(i + 1) for i in range(m)))


class OrderingAverage(Method):
    """The expectation of a multi-field method over all permutations of its fields.

    The series of the expected map is the average of the permuted series,
    ``a_avg(t) = mean_pi a(pi . t)`` (colors of ``t`` relabelled by ``pi``), computed over
    the injective relabellings of the colors a tree actually uses.  Its :meth:`step` is
    the average of the ``m!`` updates (``m <= 7``).
    """

    def __init__(self, base: Method):
        self.base = base
        self.ncolors = base.ncolors
        self.color_names = base.color_names
        self.name = f"{base.name} averaged over orderings"

    def __repr__(self) -> str:
        return f"OrderingAverage({self.base!r})"

    @property
    def parameters(self):
        return self.base.parameters

    def _build_series(self, max_order):
        from itertools import permutations

        a = self.base.series(max_order)
        dom = a.domain
        m = self.ncolors
        out = {}
        cache: dict[int, object] = {}

        def relabel(t: int, mp: dict[int, int]) -> int:
            c, ch = T.key(t)
            return T.intern(mp[c], [relabel(u, mp) for u in ch])

        for t in T.trees_up_to(max_order, m):
            if t in cache:
                v = cache[t]
            else:
                used = sorted(T.colors_used(t))
                images = list(permutations(range(m), len(used)))
                acc = dom.zero
                orbit = []
                for img in images:
                    s_ = relabel(t, dict(zip(used, img, strict=True)))
                    orbit.append(s_)
                    acc += a[s_]
                v = acc / dom.convert(len(images))
                for s_ in orbit:  # the average is invariant under relabelling
                    cache[s_] = v
            if v:
                out[t] = v
        return S.BSeries(dom, m, max_order, dom.one, out)

    def step(self, fields, state, h):
        from itertools import permutations

        from kernels import tree_util as tu

        m = self.ncolors
        if m > 7:
            raise ValueError(f"averaging {m}! orderings numerically is too costly (m <= 7)")
        outs = []
        for perm in permutations(range(m)):
            outs.append(self.base.step([fields[p] for p in perm], state, h))
        return tu.linear_combination([1.0 / len(outs)] * len(outs), outs)

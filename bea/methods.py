"""Update rules as B-series: Runge-Kutta tableaux, compositions and multistep recurrences.

Every method acts on ``ncolors`` vector fields ``f_0..f_{C-1}`` (one per batch, one per
player, or a single ``f = -grad L``) and knows two things:

* :meth:`Method.series` -- its (NB-)series over colored trees up to an order, with exact
  coefficients (sympy domain elements, so symbolic parameters such as ``beta`` simplify);
* :meth:`Method.step` -- the numerical update, in JAX, as users write it (used by
  :func:`bea.verify`).

Kinds of methods (design notes, section 1):

* :class:`AdditiveRungeKutta`: one Butcher tableau ``(A^(c), b^(c))`` per color:
  ``g_i = y + h sum_j sum_c A^(c)_ij f_c(g_j)``, ``y1 = y + h sum_i sum_c b^(c)_i f_c(g_i)``.
  Plain RK methods, GD, SGD over exact batches, extragradient, proximal point (implicit
  Euler), and simultaneous/alternating two-player updates are all of this form.
* :class:`Composition`: several methods applied one after the other.
* :class:`LinearMultistep`: ``x_{n+1} = sum_j alpha_j x_{n-j} +
  h sum_e w_e sum_c r_c f_c(sum_j gamma_ej x_{n-j})`` (heavy-ball, Nesterov, optimistic GD),
  analysed through its *underlying one-step method* ``Phi_h`` (HLW ch. XV): substituting
  ``x_{n-j} = Phi_h^{-j}(x_n)`` gives an equation for the series of ``Phi_h`` that is solved
  tree by tree (it is affine in the top-order coefficient).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import sympy

from . import series as S
from . import trees as T

Number = Any  # int, float, Fraction, sympy expression or symbol

#: the default symbolic momentum parameter
BETA = sympy.Symbol("beta", positive=True)


def _sym(x: Number) -> sympy.Expr:
    """A method parameter or tableau entry: an exact number (:func:`bea.numbers.exact`:
    floats as the decimal typed, float32 exactly with a warning, nan/inf refused) or a
    sympy expression in named symbols (not ``h``, the step size)."""
    from .numbers import check_finite_real, exact
    from .symbol_table import check_name

    if isinstance(x, str) and x.strip().isidentifier():
        raise TypeError(f"use sympy.Symbol({x.strip()!r}) (or bea.methods.symbols) for a "
                        f"symbolic parameter")
    if isinstance(x, sympy.Expr) and x.free_symbols:
        for sym in x.free_symbols:
            check_name(getattr(sym, "name", str(sym)), "method parameter")
        floats = x.atoms(sympy.Float)
        if floats:
            x = x.xreplace({f: exact(f, "a number in a method parameter") for f in floats})
        return check_finite_real(x, "method parameter")
    return exact(x, "method parameter")


def _numeric(x: sympy.Expr) -> float | None:
    return float(x) if x.is_number else None


class Method(abc.ABC):
    """An update rule on ``ncolors`` fields.

    Subclasses implement :meth:`_build_series` and :meth:`step`.  ``color_names`` label the
    fields in printed output (``("",)`` for one field, batch numbers, player names).
    """

    name: str = "method"
    ncolors: int = 1
    color_names: tuple[str, ...] = ("",)
    #: number of previous iterates a step needs besides the current one (multistep).
    history: int = 0
    #: names of the parameter blocks when field ``c`` acts on block ``c`` only (the players
    #: of a game, any number of them): ``params = (p_1, .., p_n)``, field ``c`` is
    #: ``-grad_c L_c``; None when every field acts on all parameters.
    blocks: tuple[str, ...] | None = None

    def series(self, max_order: int, max_trees: int | None = None) -> S.BSeries:
        """B-series of one step (of the underlying one-step method for multistep ones)."""
        _check_order(max_order)
        S.check_size(max_order, self.ncolors, max_trees)
        return _cached_series(self, max_order)

    @abc.abstractmethod
    def _build_series(self, max_order: int) -> S.BSeries: ...

    @property
    def parameters(self) -> tuple[sympy.Symbol, ...]:
        """Free symbols of the method (``beta``, rates, ...)."""
        return ()

    @abc.abstractmethod
    def step(self, fields: Sequence[Callable], state: Any, h: Any) -> Any:
        """One numerical update.  ``fields[c](params) -> pytree``; ``state`` is the
        params (one-step) or a tuple ``(x_n, x_{n-1}, ...)`` (multistep)."""

    def cache_key(self) -> str:
        """Structural identity (class, repr, parameters with their assumptions)."""
        from .symbol_table import method_identity

        return method_identity(self)

    def bind(self, **values: Number) -> Method:
        """This method with symbolic parameters fixed: ``heavy_ball().bind(beta=0.9)``
        (names matched by name; values exact, see :func:`bea.symbol_table.bind_method`)."""
        from .symbol_table import bind_method

        return bind_method(self, **values)

    def __hash__(self) -> int:
        return hash(self.cache_key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Method) and other.cache_key() == self.cache_key()

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=64)
def _cached_series(method: Method, max_order: int) -> S.BSeries:
    return method._build_series(max_order)


def block_names(method: Any) -> tuple[str, ...] | None:
    """``method.blocks``: the parameter blocks its fields act on, one each (None: every
    field acts on all parameters)."""
    return getattr(method, "blocks", None)


def _check_order(order: object) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")


# --------------------------------------------------------------------------- Runge-Kutta


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
        leaf_prod = [one] * s
        psi: dict[int, list] = {}   # psi_i(t) = sum_j A_ij prod_children psi_j(child)
        out = {}
        for t in T.trees_up_to(max_order, self.ncolors):
            c, ch = T.key(t)
            if ch:
                prod = psi[ch[0]]
                for u in ch[1:]:
                    prod = [x * y for x, y in zip(prod, psi[u], strict=True)]
            else:
                prod = leaf_prod
            psi[t] = [sum([x * prod[j] for j, x in row], zero) if row else zero
                      for row in A_nz[c]]
            v = sum([x * prod[i] for i, x in b_nz[c]], zero)
            if v:
                out[t] = v
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
    from .limits import check_tableau

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


# --------------------------------------------------------------------------- composition


class Composition(Method):
    """Methods applied in sequence (first ``methods[0]``), on a common set of colors."""

    def __init__(self, methods: Sequence[Method], name: str | None = None):
        if not methods:
            raise ValueError("compose needs at least one method")
        if any(m.history for m in methods):
            raise ValueError("compose takes one-step methods only (not multistep ones)")
        self.methods = tuple(methods)
        self.ncolors = max(m.ncolors for m in methods)
        self.name = name or " then ".join(m.name for m in methods)
        self.color_names = max((m.color_names for m in methods), key=len)

    def __repr__(self) -> str:
        return f"Composition({[repr(m) for m in self.methods]})"

    @property
    def parameters(self):
        return tuple(sorted({p for m in self.methods for p in m.parameters}, key=str))

    def _build_series(self, max_order):
        out = self.methods[0].series(max_order)
        for m in self.methods[1:]:
            out = S.compose(out, m.series(max_order))
        out.ncolors = self.ncolors
        return out

    def step(self, fields, state, h):
        for m in self.methods:
            state = m.step(fields, state, h)
        return state


def compose(methods: Sequence[Method], name: str | None = None) -> Composition:
    """The method that applies ``methods`` one after the other (each with step h)."""
    return Composition(methods, name)


# --------------------------------------------------------------------------- multistep


class LinearMultistep(Method):
    """``x_{n+1} = sum_j alpha_j x_{n-j} + h sum_e w_e sum_c r_c f_c(sum_j gamma_ej x_{n-j})``.

    ``alphas[j]`` multiplies ``x_{n-j}`` (j = 0..k-1); each evaluation ``e`` is a tuple
    ``(w_e, gammas_e)`` with ``sum_j gamma_ej = 1``; ``rates[c]`` scales field c.
    Its :meth:`series` is that of the underlying one-step method ``Phi_h`` (HLW XV.2):
    with ``P_j`` the series of ``Phi_h^{-j}``, ``a = sum_j alpha_j P_j + sum_e w_e
    field_at(sum_j gamma_ej P_j)``; on a tree ``t`` this is affine in ``a(t)`` (through
    ``P_j(t) = -j a(t) + ...``) and is solved exactly.
    """

    def __init__(self, alphas: Sequence[Number],
                 evaluations: Sequence[tuple[Number, Sequence[Number]]],
                 rates: Sequence[Number] | None = None, name: str = "multistep",
                 color_names: Sequence[str] | None = None):
        self.alphas = tuple(_sym(a) for a in alphas)
        self.evaluations = tuple((_sym(w), tuple(_sym(g) for g in gs)) for w, gs in evaluations)
        k = len(self.alphas)
        self.history = k - 1
        for _, gs in self.evaluations:
            if len(gs) != k:
                raise ValueError(f"each evaluation needs {k} gamma weights, got {len(gs)}")
            if sympy.simplify(sum(gs) - 1) != 0:
                raise ValueError(f"evaluation point weights must sum to 1, got {sum(gs)}")
        if sympy.simplify(sum(self.alphas) - 1) != 0:
            raise ValueError(f"alphas must sum to 1 (consistency), got {sum(self.alphas)}")
        self.rates = tuple(_sym(r) for r in (rates or (1,)))
        self.ncolors = len(self.rates)
        self.name = name
        self.color_names = tuple(color_names) if color_names else (
            ("",) if self.ncolors == 1 else tuple(str(i + 1) for i in range(self.ncolors)))

    def __repr__(self) -> str:
        return (f"LinearMultistep(name={self.name!r}, alphas={self.alphas}, "
                f"evaluations={self.evaluations}, rates={self.rates})")

    @property
    def parameters(self):
        syms: set = set()
        for x in self.alphas + self.rates:
            syms |= x.free_symbols
        for w, gs in self.evaluations:
            syms |= w.free_symbols
            for g in gs:
                syms |= g.free_symbols
        return tuple(sorted(syms, key=str))

    def _build_series(self, max_order):
        entries = list(self.alphas) + list(self.rates) + [
            x for w, gs in self.evaluations for x in (w, *gs)]
        dom = S.coefficient_domain(entries)
        cv = lambda x: S.to_domain(dom, x)
        alphas = [cv(a) for a in self.alphas]
        evals = [(cv(w), [cv(g) for g in gs]) for w, gs in self.evaluations]
        rates = [cv(r) for r in self.rates]
        k = len(alphas)
        nc = self.ncolors
        a = S.BSeries(dom, nc, max_order, dom.one, {})
        # P[j] = series of Phi^{-j}; P[0] is the identity.
        P = [S.BSeries(dom, nc, max_order, dom.one, {}) for _ in range(k)]
        # arguments of each evaluation: sum_j gamma_j P_j
        args = [S.BSeries(dom, nc, max_order, dom.one, {}) for _ in evals]

        def powers_at(t):
            vals = [dom.zero] * k
            if k > 1:
                P[1].coeffs.pop(t, None)
                vals[1] = -S.compose_at(a, P[1], t)
                _set(P[1], t, vals[1])
            for j in range(2, k):
                P[j].coeffs.pop(t, None)
                vals[j] = S.compose_at(P[1], P[j - 1], t)
                _set(P[j], t, vals[j])
            return vals

        for t in T.trees_up_to(max_order, nc):
            c, ch = T.key(t)
            fpart = dom.zero
            for (w, _), arg in zip(evals, args, strict=True):
                v = w * rates[c]
                for u in ch:
                    v *= arg[u]
                fpart += v

            def rhs(x, t=t, fpart=fpart):
                _set(a, t, x)
                vals = powers_at(t)
                return fpart + sum((alphas[j] * vals[j] for j in range(1, k)), dom.zero)

            r0 = rhs(dom.zero)
            slope = rhs(dom.one) - r0
            if slope == dom.one:
                raise ValueError(f"{self.name}: the recurrence has no underlying one-step "
                                 f"method (1 + sum_j j alpha_j = 0)")
            _set(a, t, r0 / (dom.one - slope))
            vals = powers_at(t)
            for (_, gms), arg in zip(evals, args, strict=True):
                _set(arg, t, sum((gms[j] * vals[j] for j in range(1, k)), dom.zero))
        self._inverse_cache = P[1] if k > 1 else None
        return a

    def inverse_series(self, max_order: int) -> S.BSeries:
        """Series of ``Phi_h^{-1}``: the consistent previous iterate ``x_{-1}`` from ``x_0``."""
        return S.inverse(self.series(max_order))

    def step(self, fields, state, h):
        from kernels import tree_util as tu

        xs = tuple(state)
        alphas = [float(a) for a in self.alphas]
        rates = [float(r) for r in self.rates]
        new = tu.linear_combination(alphas, xs)
        for w, gs in self.evaluations:
            point = tu.linear_combination([float(g) for g in gs], xs)
            for c in range(self.ncolors):
                wc = float(w) * rates[c]
                if wc != 0:
                    new = tu.tree_add(new, tu.tree_scale(h * wc, fields[c](point)))
        return (new,) + xs[:-1]


def _set(s: S.BSeries, t: int, v) -> None:
    if v:
        s.coeffs[t] = v
    else:
        s.coeffs.pop(t, None)


def _check_beta(beta: Number, what: str = "beta") -> sympy.Expr:
    b = _sym(beta)
    x = _numeric(b)
    if x is not None and not 0 <= x < 1:
        raise ValueError(f"{what} must lie in [0, 1) for a convergent momentum method, got {x}")
    return b


def heavy_ball(beta: Number = BETA) -> LinearMultistep:
    """Polyak's heavy ball ``theta_{n+1} = theta_n - h grad L(theta_n) + beta (theta_n -
    theta_{n-1})``.  Its underlying one-step method has leading field ``f/(1-beta)``."""
    b = _check_beta(beta)
    return LinearMultistep([1 + b, -b], [(1, [1, 0])], name=f"heavy_ball(beta={b})")


def nesterov(beta: Number = BETA) -> LinearMultistep:
    """Nesterov momentum ``theta_{n+1} = y_n - h grad L(y_n)``, ``y_n = theta_n +
    beta (theta_n - theta_{n-1})``."""
    b = _check_beta(beta)
    return LinearMultistep([1 + b, -b], [(1, [1 + b, -b])], name=f"nesterov(beta={b})")


def symbols(names: str) -> Any:
    """``sympy.symbols`` with real, positive assumptions (rates, momentum)."""
    return sympy.symbols(names, positive=True)

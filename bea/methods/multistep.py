"""Linear multistep methods (heavy ball, Nesterov, optimistic GD) through their underlying
one-step method (HLW XV)."""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from .. import series as S
from .. import trees as T
from .base import BETA, Method, Number, _numeric, _sym


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


def check_beta(beta: Number, what: str = "beta") -> sympy.Expr:
    """A momentum parameter: exact (:func:`as_parameter`), and in ``[0, 1)`` when numeric."""
    b = _sym(beta)
    x = _numeric(b)
    if x is not None and not 0 <= x < 1:
        raise ValueError(f"{what} must lie in [0, 1) for a convergent momentum method, got {x}")
    return b


_check_beta = check_beta


def heavy_ball(beta: Number = BETA) -> LinearMultistep:
    """Polyak's heavy ball ``theta_{n+1} = theta_n - h grad L(theta_n) + beta (theta_n -
    theta_{n-1})``.  Its underlying one-step method has leading field ``f/(1-beta)``."""
    b = check_beta(beta)
    return LinearMultistep([1 + b, -b], [(1, [1, 0])], name=f"heavy_ball(beta={b})")


def nesterov(beta: Number = BETA) -> LinearMultistep:
    """Nesterov momentum ``theta_{n+1} = y_n - h grad L(y_n)``, ``y_n = theta_n +
    beta (theta_n - theta_{n-1})``."""
    b = check_beta(beta)
    return LinearMultistep([1 + b, -b], [(1, [1 + b, -b])], name=f"nesterov(beta={b})")

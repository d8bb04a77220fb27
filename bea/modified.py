"""Modified equations: ``f~ = f_0 + h f_1 + h^2 f_2 + ...`` of an update rule.

``modified_equation(method, order)`` returns the terms ``f_k`` (k = 0..order) as sums
over colored trees ``t`` with ``|t| = k + 1``:

    f_k = sum_{|t| = k+1} b(t)/sigma(t) F(t),

where ``b`` is the modified-field series of the method (:func:`bea.series.modified_field`).
For multistep methods this is the modified equation of the underlying one-step method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sympy

from . import render as R
from . import series as S
from . import trees as T
from .cache import cached_modified_field
from .concrete import ConcreteFields, evaluate_terms, fields_from
from .methods import Method, check_order
from .methods import gd as _gd
from .symbol_table import bind_values, step_symbol

#: The step-size symbol of every derived object (``bea.h``): powers of ``h`` in
#: ``evaluate(..., summed=True)`` are written with it unless ``h=`` gives another symbol.
h = sympy.Symbol("h", positive=True)
"""The step size ``h`` of every derived series, ``f~ = f_0 + h f_1 + h^2 f_2 + ..``
(``Symbol('h', positive=True)``); ``evaluate(..., h=)`` also accepts your own symbol."""


@dataclass(frozen=True)
class Term:
    """``coefficient * F(tree)`` (field notation: the coefficient multiplies ``F``)."""

    coefficient: sympy.Expr
    tree: int

    @property
    def order(self) -> int:
        return T.order(self.tree) - 1


class ModifiedEquation(R.PrintsItself):
    """The modified vector field of ``method`` truncated after ``h^order``.

    ``terms(k)`` lists ``Term(b(t)/sigma(t), t)`` for the trees of ``f_k``; ``str`` prints
    in the notation of the fields (``notation``: gradient fields ``-grad L`` by default),
    ``latex()`` gives LaTeX, ``evaluate`` gives exact closed forms on a loss or field in
    sympy coordinates, ``to_jax`` compiles Hessian-free JAX functions.
    """

    def __init__(self, method: Method, order: int, *, max_trees: int | None = None,
                 notation: R.Notation | None = None, series: S.BSeries | None = None):
        check_order(order)
        self.method = method
        self.order = order
        if series is None:
            # a validated JSON disk cache (bea.cache): a repeated derivation costs nothing
            series = cached_modified_field(method, order, max_trees=max_trees)
        self.series = series
        self.h = h
        #: per-color time factors when the colors flow in their own times (games'
        #: per-player convention: color p flows for ``times[p] * h`` per step); else None
        self.times: tuple[sympy.Expr, ...] | None = None
        if notation is None:
            notation = default_notation(method)
        self.notation = notation
        # rows of sympy Terms are made on first use, one order at a time: the derivation
        # is the series above; at order 14 (141k trees) turning every coefficient into a
        # sorted sympy Term costs about as much again and is only needed to print,
        # evaluate in sympy or list the terms (issue 20)
        self._rows: list[list[Term] | None] = [None] * (order + 1)

    def _row(self, k: int) -> list[Term]:
        row = self._rows[k]
        if row is None:
            coef_of = _coefficient_converter(self.series.domain)
            coeffs = self.series.coeffs
            row = [Term(coef_of(coeffs[t], T.sigma(t)), t) for t in T.canonical_sort(
                t for t in T.trees_of_order(k + 1, self.method.ncolors) if coeffs.get(t))]
            self._rows[k] = row
        return row

    # ------------------------------------------------------------------ access
    def terms(self, k: int) -> list[Term]:
        """Trees and coefficients of ``f_k`` (the coefficient of ``h^k``)."""
        if not 0 <= k <= self.order:
            raise IndexError(f"order {k} not computed (0..{self.order})")
        return list(self._row(k))

    def coefficient(self, tree: T.Tree | str | int) -> sympy.Expr:
        """``b(t)/sigma(t)`` for a tree (``Tree``, id, or bracket string like ``"[[.]]"``)."""
        t = _tree_id(tree)
        return R.nice(self.series.domain.to_sympy(self.series[t]) / T.sigma(t))

    @property
    def parameters(self) -> tuple[sympy.Symbol, ...]:
        return self.method.parameters

    # ------------------------------------------------------------------ printing
    def _display(self, k: int, latex: bool) -> str:
        items = []
        for term in self._row(k):
            coef = term.coefficient
            if getattr(self.notation, "sign_flip", False) and T.order(term.tree) % 2:
                coef = -coef
            body = (self.notation.latex if latex else self.notation.text)(term.tree)
            items.append((coef, body))
        return R.join_terms(items, latex=latex)

    def field_text(self, k: int) -> str:
        """``f_k`` as text, e.g. ``-(1/2) H grad L``."""
        return self._display(k, latex=False)

    def __str__(self) -> str:
        lines = [f"Modified equation of {self.method.name} to order {self.order} "
                 f"(theta' = f_0 + h f_1 + ...):"]
        for k in range(self.order + 1):
            lines.append(f"  f_{k} = {self._display(k, latex=False)}")
        if self.times is not None:
            names = getattr(self.method, "color_names", None) or range(len(self.times))
            own = ", ".join(f"{n}: {R.nice(t * self.h)}" for n, t in zip(names, self.times,
                                                                          strict=True))
            lines.append(f"  each block flows for its own time per step ({own}), the other "
                         "blocks along their plain fields")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ModifiedEquation {self.method.name} order={self.order}>"

    def latex(self) -> str:
        """The whole modified field, ``\\tilde f = ...``, as LaTeX."""
        parts = []
        for k in range(self.order + 1):
            body = self._display(k, latex=True)
            if body == "0":
                continue
            hk = "" if k == 0 else ("h" if k == 1 else f"h^{{{k}}}")
            parts.append(f"{hk}\\left({body}\\right)" if hk else body)
        return r"\tilde f = " + (" + ".join(parts) if parts else "0")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, loss: Any = None, vars: Sequence[Any] | str | None = None, *,
                 fields: Any = None, summed: bool = False, subs: dict | None = None,
                 h: Any = None):
        """Exact closed forms on a concrete problem written in sympy coordinates.

        Give ``loss`` (a sympy expression, a string parsed safely, or one per color) with
        ``vars``, or ``fields`` directly (see :func:`bea.concrete.fields_from`).  Returns
        ``[f_0, ..., f_order]`` as sympy column matrices, or their sum with powers of
        ``h`` when ``summed=True``: ``bea.h`` (``Symbol('h', positive=True)``), or the
        symbol (or number) given as ``h=``, e.g. your own ``Symbol('h')``.
        """

        subs = bind_values(subs, self.parameters, "subs")
        F = fields if isinstance(fields, ConcreteFields) else fields_from(
            self.method, loss=loss, vars=vars, fields=fields)
        out = evaluate_terms(F, [self._row(k) for k in range(self.order + 1)], subs=subs)
        if summed:
            hh = self.h if h is None else step_symbol(h)
            return sum((hh ** k * out[k] for k in range(len(out))),
                       sympy.zeros(*out[0].shape))
        return out


    def to_jax(self, loss: Any = None, *, fields: Any = None, subs: dict | None = None,
               orders: Sequence[int] | None = None):
        """Jitted, Hessian-free JAX field on losses ``L(params, batch)`` (or general
        ``fields``); see :class:`bea.compile.CompiledModifiedEquation`."""
        from .compile import compile_equation

        subs = bind_values(subs, self.parameters, "subs") or None
        return compile_equation(self, loss, fields=fields, subs=subs, orders=orders)


def _coefficient_converter(dom: Any):
    """``(v, sigma) -> nice(v / sigma)`` as a sympy number; on the rationals straight from
    numerator and denominator (the same ``Rational``, without sympy's generic division
    and ``factor``)."""
    if dom.is_QQ:
        return lambda v, sig: sympy.Rational(int(dom.numer(v)), int(dom.denom(v)) * sig)
    return lambda v, sig: R.nice(dom.to_sympy(v) / sig)


def default_notation(method: Method) -> R.Notation:
    nt = getattr(method, "notation", None)
    if nt is not None:
        return nt
    if method.ncolors == 1:
        return R.GradientNotation(("L",))
    return R.GradientNotation(tuple(f"L_{n}" for n in method.color_names))


def _tree_id(tree: T.Tree | str | int) -> int:
    if isinstance(tree, T.Tree):
        return tree.id
    if isinstance(tree, str):
        return T.Tree.parse(tree).id
    return int(tree)


def modified_equation(method: Method, order: int, *, max_trees: int | None = None,
                      notation: R.Notation | None = None) -> ModifiedEquation:
    """The modified vector field of ``method`` to ``O(h^order)``.

    >>> from bea import methods, modified_equation
    >>> print(modified_equation(methods.gd(), 1).field_text(1))
    -1/2 H grad L
    """
    if not isinstance(method, Method):
        raise TypeError(f"expected a bea method (e.g. bea.methods.gd()), got {method!r}")
    return ModifiedEquation(method, order, max_trees=max_trees, notation=notation)


# --------------------------------------------------------------------------- modifying integrator
# Beside the modified equation, as in BSeries.jl (modified_equation / modifying_integrator):
# the field F whose numerical integration by the method has the modified equation f.


class ModifyingEquation(ModifiedEquation):
    """The field ``F`` of a modifying integrator (:func:`modifying_equation`): prints,
    evaluates and compiles like a :class:`ModifiedEquation`."""

    def __str__(self) -> str:
        head, _, rest = super().__str__().partition("\n")
        return (f"Modifying integrator of {self.method.name} to order {self.order} "
                f"(run {self.method.name} on F = f_0 + h f_1 + ...; its modified "
                f"equation is then theta' = f_0 + O(h^{self.order + 1})):\n{rest}")

    def __repr__(self) -> str:
        return f"<ModifyingEquation {self.method.name} order={self.order}>"


def modifying_series(method: Method, order: int) -> S.BSeries:
    """Field series ``b`` (``b(.) = 1``) of the modifying integrator of a one-field method.

    ``F = sum_t h^(|t|-1) b(t)/sigma(t) F_f(t)`` makes the method applied to ``F``
    reproduce the exact flow of ``c f`` up to ``O(h^(order+2))`` per step, ``c = a(.)``
    the method's order-0 coefficient (1 for GD and RK methods, ``1/(1-beta)`` for heavy
    ball): by the substitution law ``(b * a)(t) = c b(t) + (terms in b on smaller trees)
    = c^|t| / gamma(t)``, solved tree by tree.  So the method on ``F`` has the modified
    equation ``theta' = c f + O(h^(order+1))``.
    """
    check_order(order)
    if not isinstance(method, Method):
        raise TypeError(f"expected a bea method, got {method!r}")
    if method.ncolors != 1:
        raise ValueError(f"{method.name} acts on {method.ncolors} fields: a modifying "
                         f"integrator is derived here for one-field methods only")
    return _modifying_series(method, order)


@lru_cache(maxsize=32)
def _modifying_series(method: Method, order: int) -> S.BSeries:
    a = method.series(order + 1)
    dom = a.domain
    c = a[T.leaf(0)]
    if not c:
        raise ValueError(f"{method.name} has no order-0 term")
    b = S.BSeries(dom, 1, order + 1, dom.zero, {T.leaf(0): dom.one})
    for n in range(2, order + 2):
        s = S.substitute(b, a)      # b is still 0 on the trees of order n
        for t in T.trees_of_order(n, 1):
            v = (c ** n / dom.convert(T.gamma(t)) - s[t]) / c
            if v:
                b.coeffs[t] = v
    return b


def modifying_equation(method: Method | None = None, order: int = 1) -> ModifyingEquation:
    """The corrected field ``F = f + h f_1 + .. + h^order f_order`` of
    :func:`modifying_series` as a ``bea.ModifiedEquation`` (printing, LaTeX, exact
    ``evaluate`` on sympy losses, ``to_jax``).  For GD::

        f_1 = (1/2) H grad L
        f_2 = -(1/6) D^3L[grad L, grad L] - (1/6) H^2 grad L
    """
    method = _gd() if method is None else method
    return ModifyingEquation(method, order, series=modifying_series(method, order))

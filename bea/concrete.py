"""Elementary differentials on concrete problems written in sympy coordinates.

``F([t_1..t_k]_c) = D^k f_c[F(t_1), .., F(t_k)]``, exact, so the result can be compared
with brute-force Taylor expansion of the map.  Two evaluation paths, same results:

* **polynomial fields** (every component a polynomial with rational coefficients in the
  coordinates and any parameters): sympy sparse polynomials (``PolyElement``) over
  ``QQ[vars, params]``.  ``D^k f_c[v_1..v_k] = sum_j v_1[j] D^(k-1)(d_j f_c)[v_2..v_k]``
  with memoised partial derivatives ``d_J f_c`` (``J`` a multiset of coordinates) and
  memoised partial contractions, shared between trees with the same root color and the
  same trailing children.  Vanishing derivatives prune whole branches.
* **anything else** (``exp``, ``1/x``, floats, algebraic numbers, ...): a cached symbolic
  template per (color, k): differentiate ``f_c`` k times against placeholder directions
  ``w_1..w_k`` (held constant), then substitute the children's values and expand.

Both return sympy matrices of expanded expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
from sympy.polys.domains import QQ
from sympy.polys.rings import PolyRing

from . import trees as T
from .methods import block_names
from .parse import parse_expr, parse_vars
from .symbol_table import SymbolTable, as_expr, exact_subs, substitute


class _PolyFields:
    """Polynomial fields as ``PolyElement`` vectors; values of trees as such vectors."""

    def __init__(self, ring: PolyRing, nvars: int, fields: list[list[Any]]):
        self.ring = ring
        self.d = nvars
        self.gens = ring.gens[:nvars]
        self.zero = ring.zero
        # (c, J) -> d_J f_c, or None when it vanishes identically
        self._deriv: dict[tuple[int, tuple[int, ...]], list[Any] | None] = {
            (c, ()): (f if any(f) else None) for c, f in enumerate(fields)}
        # (c, J, trailing children) -> D^k d_J f_c [F(children)], or None when zero
        self._contr: dict[tuple[int, tuple[int, ...], tuple[int, ...]], list[Any] | None] = {}
        self._values: dict[int, list[Any] | None] = {}
        self.nfields = len(fields)
        # total degree of f_c in the coordinates: its higher derivatives vanish
        self._degree = [max((sum(m[:nvars]) for p in f for m in p.itermonoms()), default=-1)
                        for f in fields]

    @classmethod
    def build(cls, vars: Sequence[sympy.Symbol], fields: Sequence[sympy.Matrix]
              ) -> _PolyFields | None:
        """The polynomial form of ``fields``, or None when some component is not a
        polynomial over ``QQ`` in the coordinates and parameters (or holds floats)."""
        exprs = [sympy.sympify(e, strict=True) for f in fields for e in f]
        if any(e.has(sympy.Float) for e in exprs):
            return None   # keep floats as the user wrote them (the Expr path does)
        params: set[sympy.Symbol] = set()
        for e in exprs:
            params |= e.free_symbols
        params -= set(vars)
        gens = tuple(vars) + tuple(sorted(params, key=lambda s: (str(s), s.sort_key())))
        if len(set(gens)) != len(gens) or not all(isinstance(g, sympy.Symbol) for g in gens):
            return None
        ring = PolyRing(gens, QQ)
        try:
            polys = [[ring.from_expr(e) for e in f] for f in fields]
        except (ValueError, TypeError, sympy.PolynomialError, sympy.CoercionFailed):
            return None
        return cls(ring, len(vars), polys)

    def deriv(self, c: int, J: tuple[int, ...]) -> list[Any] | None:
        key = (c, J)
        if key in self._deriv:
            return self._deriv[key]
        parent = self.deriv(c, J[:-1])
        out = None
        if parent is not None:
            x = self.gens[J[-1]]
            vals = [p.diff(x) for p in parent]
            out = vals if any(vals) else None
        self._deriv[key] = out
        return out

    def contract(self, c: int, J: tuple[int, ...], rest: tuple[int, ...]) -> list[Any] | None:
        """``D^k (d_J f_c) [F(rest_1), .., F(rest_k)]``."""
        if not rest:
            return self.deriv(c, J)
        key = (c, J, rest)
        if key in self._contr:
            return self._contr[key]
        # prune: the |J| + k-th derivatives of f_c vanish
        out = None
        if len(J) + len(rest) <= self._degree[c]:
            first = self.value(rest[0])
            if first is not None:
                acc = [self.zero] * self.d
                nonzero = False
                for j, vj in enumerate(first):
                    if not vj:
                        continue
                    g = self.contract(c, tuple(sorted(J + (j,))), rest[1:])
                    if g is None:
                        continue
                    nonzero = True
                    for i, gi in enumerate(g):
                        if gi:
                            acc[i] += vj * gi
                if nonzero and any(acc):
                    out = acc
        self._contr[key] = out
        return out

    def value(self, t: int) -> list[Any] | None:
        """``F(t)`` as polynomials (None when it vanishes identically)."""
        if t in self._values:
            return self._values[t]
        c, ch = T.key(t)
        if c >= self.nfields:
            raise ValueError(f"tree uses field {c} but only {self.nfields} fields given")
        out = self.contract(c, (), ch)
        self._values[t] = out
        return out

    def to_matrix(self, vals: list[Any] | None) -> sympy.Matrix:
        if vals is None:
            return sympy.zeros(self.d, 1)
        return sympy.Matrix([p.as_expr() for p in vals])


@dataclass
class ConcreteFields:
    """Fields ``f_c`` as sympy column vectors in the coordinates ``vars``.

    ``losses`` is set when the fields are (block) gradients: ``f_c = -P_c grad L_c`` with
    ``P_c`` the projection on ``blocks[c]`` (all coordinates when ``blocks`` is None).
    """

    vars: tuple[sympy.Symbol, ...]
    fields: list[sympy.Matrix]
    losses: list[sympy.Expr] | None = None
    blocks: list[tuple[int, ...]] | None = None
    _templates: dict = field(default_factory=dict)
    _values: dict = field(default_factory=dict)
    _poly: Any = field(default=None, repr=False)

    def polynomial(self) -> _PolyFields | None:
        """The sparse-polynomial backend, or None when the fields are not polynomial."""
        if self._poly is None:
            self._poly = _PolyFields.build(self.vars, self.fields) or False
        return self._poly or None

    def template(self, c: int, k: int) -> tuple[sympy.Matrix, list[list[sympy.Symbol]]]:
        key = (c, k)
        got = self._templates.get(key)
        if got is not None:
            return got
        d = len(self.vars)
        ws = [[sympy.Dummy(f"w{i}_{j}") for j in range(d)] for i in range(k)]
        expr = self.fields[c]
        for i in range(k):
            expr = sum((expr.diff(x) * ws[i][j] for j, x in enumerate(self.vars)),
                       sympy.zeros(d, 1))
        expr = expr.expand()
        self._templates[key] = (expr, ws)
        return expr, ws

    def elementary(self, t: int) -> sympy.Matrix:
        """``F(t)`` in coordinates (cached per tree)."""
        got = self._values.get(t)
        if got is not None:
            return got
        c, ch = T.key(t)
        if c >= len(self.fields):
            raise ValueError(f"tree uses field {c} but only {len(self.fields)} fields given")
        P = self.polynomial()
        if P is not None:
            val = P.to_matrix(P.value(t))
            self._values[t] = val
            return val
        tmpl, ws = self.template(c, len(ch))
        rep = {}
        for i, u in enumerate(ch):
            vu = self.elementary(u)
            for j in range(len(self.vars)):
                rep[ws[i][j]] = vu[j]
        val = tmpl.xreplace(rep).expand() if rep else tmpl
        self._values[t] = val
        return val


def evaluate_terms(F: ConcreteFields, rows: Sequence[Sequence[Any]],
                   subs: dict | None = None) -> list[sympy.Matrix]:
    """``sum coef * F(tree)`` for each row of :class:`~bea.modified.Term`."""
    d = len(F.vars)
    P = F.polynomial()
    subs = exact_subs(subs)
    out = []
    for row in rows:
        acc = sympy.zeros(d, 1)
        pacc = None if P is None else [P.zero] * d
        symbolic = P is None
        for term in row:
            coef = term.coefficient
            if subs:
                coef = substitute(coef, subs)   # by name, exact values, never .subs
            if P is not None and coef.is_Rational:
                # exact rational coefficient: accumulate in the polynomial ring
                vals = P.value(term.tree)
                if vals is not None and coef:
                    q = QQ.from_sympy(coef)
                    for i, v in enumerate(vals):
                        if v:
                            pacc[i] += q * v
                continue
            symbolic = True
            acc += coef * F.elementary(term.tree)
        if not symbolic:
            # already expanded: PolyElement.as_expr gives sympy's expanded canonical form
            out.append(P.to_matrix(pacc))
            continue
        if pacc is not None:
            acc += P.to_matrix(pacc)
        out.append(acc.applyfunc(lambda e: sympy.expand(sympy.cancel(e)) if e.has(sympy.Symbol)
                                 and _has_params(e, F.vars) else sympy.expand(e)))
    return out


def _has_params(e: sympy.Expr, vars: Sequence[sympy.Symbol]) -> bool:
    return bool(e.free_symbols - set(vars))


def gradient_fields(losses: Sequence[Any], vars: Sequence[sympy.Symbol]) -> ConcreteFields:
    """``f_c = -grad L_c`` on shared coordinates."""
    vars = tuple(vars)
    Ls = [as_expr(L) for L in losses]
    fs = [sympy.Matrix([-sympy.diff(L, x) for x in vars]) for L in Ls]
    return ConcreteFields(vars, fs, losses=Ls)


def block_gradient_fields(losses: Sequence[Any],
                          players: Sequence[Sequence[sympy.Symbol]]) -> ConcreteFields:
    """Two-player (or n-player) block fields ``f_c = -(0, .., grad_{x_c} L_c, .., 0)``."""
    if len(losses) != len(players):
        raise ValueError(f"need one loss per player: {len(losses)} losses, "
                         f"{len(players)} players")
    allv: list[sympy.Symbol] = []
    blocks = []
    for pv in players:
        idx = []
        for v in pv:
            if v in allv:
                raise ValueError(f"variable {v} belongs to two players: players' "
                                 f"parameters must not overlap")
            idx.append(len(allv))
            allv.append(v)
        blocks.append(tuple(idx))
    Ls = [as_expr(L) for L in losses]
    fs = []
    for c, L in enumerate(Ls):
        fs.append(sympy.Matrix([-sympy.diff(L, x) if i in blocks[c] else sympy.S.Zero
                                for i, x in enumerate(allv)]))
    return ConcreteFields(tuple(allv), fs, losses=Ls, blocks=blocks)


def fields_from(method: Any, *, loss: Any = None, vars: Any = None,
                fields: Any = None) -> ConcreteFields:
    """Build :class:`ConcreteFields` for ``method`` from losses or fields.

    * one loss (sympy expression or string) for a one-field method;
    * a list of losses, one per color (per batch for ``sgd``);
    * for games (methods with ``players``), ``loss=(L_1, L_2)`` and
      ``vars=(player-1 vars, player-2 vars)``;
    * ``fields=[f_0, ...]`` (lists of expressions) for general vector fields.
    """
    nc = method.ncolors
    players = block_names(method)
    if fields is not None:
        V = _vars(vars, fields)
        fs = fields if isinstance(fields, (list, tuple)) and fields and isinstance(
            fields[0], (list, tuple, sympy.Matrix)) else [fields]
        if len(fs) != nc:
            raise ValueError(f"{method.name} uses {nc} field(s), got {len(fs)}")
        names = {str(v): v for v in V}
        table = SymbolTable(V, method.parameters, method.name)
        mats = [sympy.Matrix([_expr(e, names, table) for e in f]) for f in fs]
        for m in mats:
            if m.shape[0] != len(V):
                raise ValueError(f"field has {m.shape[0]} components for {len(V)} variables")
        return ConcreteFields(V, mats)
    if loss is None:
        raise ValueError("give a loss (with vars) or fields")
    if players is not None:
        if vars is None or len(vars) != len(players):
            raise ValueError(f"{method.name} is a {len(players)}-player game: pass "
                             f"vars=(player-1 variables, player-2 variables)")
        pv = [parse_vars(v) for v in vars]
        names = {str(v): v for group in pv for v in group}
        losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
        table = SymbolTable([v for group in pv for v in group], method.parameters,
                            method.name)
        exprs = [_expr(L, names, table) for L in losses]
        if len(exprs) == 1:   # zero-sum shorthand: L_2 = -L_1 (after the safe parse)
            exprs = [exprs[0], -exprs[0]]
        return block_gradient_fields(exprs, pv)
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
    V = _vars(vars, losses)
    table = SymbolTable(V, method.parameters, method.name)
    names = {str(v): v for v in V}
    if len(losses) != nc:
        what = (f"one loss per batch ({nc} batches)" if method.name.startswith("sgd")
                else f"{nc} losses, one for each of its {nc} fields")
        raise ValueError(f"{method.name} needs {what}, got {len(losses)}; give a list "
                         f"of {nc} losses (on the command line separated by ';')")
    return gradient_fields([_expr(L, names, table) for L in losses], V)


def _expr(e: Any, names: dict[str, sympy.Symbol], table: SymbolTable | None = None
          ) -> sympy.Expr:
    """A loss or field component: strings through the whitelisting parser, sympy
    expressions adopted by name onto the declared variables (a plain ``Symbol('x')``
    is the variable ``x``); never ``sympify`` on arbitrary objects."""
    from .numbers import check_finite_real, exact

    if isinstance(e, str):
        out = parse_expr(e, names)
    elif isinstance(e, sympy.Basic):
        out = e
    elif isinstance(e, (int, float)) or type(e).__module__ == "numpy":
        out = exact(e, "a constant loss")
    else:
        raise TypeError(f"a loss must be a string or a sympy expression, got "
                        f"{type(e).__name__}")
    if table is None:
        table = SymbolTable(tuple(names.values()))
    return check_finite_real(table.adopt(out), "the loss")


def _vars(vars: Any, exprs: Any) -> tuple[sympy.Symbol, ...]:
    if vars is None:
        syms: set[sympy.Symbol] = set()
        for e in exprs if isinstance(exprs, (list, tuple)) else [exprs]:
            if isinstance(e, str):
                raise ValueError("pass vars=... (e.g. vars='x,y') with a loss given as a string")
            if not isinstance(e, sympy.Basic):
                raise TypeError(f"a loss must be a string or a sympy expression, got "
                                f"{type(e).__name__}")
            syms |= e.free_symbols
        return tuple(sorted(syms, key=str))
    return parse_vars(vars)

"""Elementary differentials on concrete problems written in sympy coordinates.

``F([t_1..t_k]_c) = D^k f_c[F(t_1), .., F(t_k)]`` is computed with a cached symbolic
template per (color, k): differentiate ``f_c`` k times against placeholder directions
``w_1..w_k`` (held constant), then substitute the children's values.  Everything stays
exact, so the result can be compared with brute-force Taylor expansion of the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy

from . import trees as T
from .parse import parse_expr, parse_vars


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
    out = []
    for row in rows:
        acc = sympy.zeros(d, 1)
        for term in row:
            coef = term.coefficient
            if subs:
                coef = coef.subs(subs)
            acc += coef * F.elementary(term.tree)
        out.append(acc.applyfunc(lambda e: sympy.expand(sympy.cancel(e)) if e.has(sympy.Symbol)
                                 and _has_params(e, F.vars) else sympy.expand(e)))
    return out


def _has_params(e: sympy.Expr, vars: Sequence[sympy.Symbol]) -> bool:
    return bool(e.free_symbols - set(vars))


def gradient_fields(losses: Sequence[Any], vars: Sequence[sympy.Symbol]) -> ConcreteFields:
    """``f_c = -grad L_c`` on shared coordinates."""
    vars = tuple(vars)
    Ls = [sympy.sympify(L) for L in losses]
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
    Ls = [sympy.sympify(L) for L in losses]
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
    players = getattr(method, "players", None)
    if fields is not None:
        V = _vars(vars, fields)
        fs = fields if isinstance(fields, (list, tuple)) and fields and isinstance(
            fields[0], (list, tuple, sympy.Matrix)) else [fields]
        if len(fs) != nc:
            raise ValueError(f"{method.name} uses {nc} field(s), got {len(fs)}")
        names = {str(v): v for v in V}
        mats = [sympy.Matrix([_expr(e, names) for e in f]) for f in fs]
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
        if len(losses) == 1:
            # zero-sum shorthand: L_2 = -L_1
            losses = [losses[0], f"-({losses[0]})" if isinstance(losses[0], str)
                      else -sympy.sympify(losses[0])]
        return block_gradient_fields([_expr(L, names) for L in losses], pv)
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
    V = _vars(vars, losses)
    names = {str(v): v for v in V}
    if len(losses) != nc:
        raise ValueError(f"{method.name} uses {nc} loss(es) (one per batch/color), "
                         f"got {len(losses)}")
    return gradient_fields([_expr(L, names) for L in losses], V)


def _expr(e: Any, names: dict[str, sympy.Symbol]) -> sympy.Expr:
    if isinstance(e, str):
        return parse_expr(e, names)
    return sympy.sympify(e)


def _vars(vars: Any, exprs: Any) -> tuple[sympy.Symbol, ...]:
    if vars is None:
        syms: set[sympy.Symbol] = set()
        for e in exprs if isinstance(exprs, (list, tuple)) else [exprs]:
            if isinstance(e, str):
                raise ValueError("pass vars=... (e.g. vars='x,y') with a loss given as a string")
            syms |= sympy.sympify(e).free_symbols
        return tuple(sorted(syms, key=str))
    return parse_vars(vars)

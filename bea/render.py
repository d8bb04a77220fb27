"""Printing elementary differentials and coefficients in the notation of the papers.

Three notations (a :class:`Notation` is chosen from how the fields arise):

* :class:`FieldNotation`: a general field ``f`` (``f'f``, ``f''[f, f]``, colors as ``f_1``).
* :class:`GradientNotation`: ``f_c = -grad L_c`` on shared parameters.  With
  ``G(t) = D^(k+1) L_c[G(t_1), .., G(t_k), .]`` and ``G(leaf) = grad L_c`` one has
  ``F(t) = (-1)^|t| G(t)``; chains of one-child vertices print as matrix products
  (``H^2 grad L``, ``H_2 grad L_1``), more children as ``D^3L[grad L, grad L]``.
* :class:`BlockNotation`: two-player games, ``f_x = -(grad_x L_1, 0)``, ``f_y = -(0, grad_y L_2)``:
  derivatives carry block indices, ``H_xy L_1 grad_y L_2``, ``D^3_xxy L_1[..]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy

from . import trees as T


def nice(expr: sympy.Expr) -> sympy.Expr:
    """Factor a coefficient and write factors like ``(beta - 1)`` as ``-(1 - beta)``,
    the form in which momentum and rate coefficients appear in the literature."""
    expr = sympy.sympify(expr, strict=True)   # sympy objects and numbers only, never a string
    if expr.is_Rational:    # nothing to factor (sympy.factor returns it unchanged)
        return expr
    expr = sympy.factor(expr)
    if not expr.free_symbols:
        return expr
    factors = sympy.Mul.make_args(expr)
    sign = 1
    out = []
    for f in factors:
        base, ex = f.as_base_exp()
        if isinstance(base, sympy.Add) and base.as_coeff_Add()[0] < 0 and ex.is_integer:
            base = -base
            if ex % 2:
                sign = -sign
            out.append(sympy.Pow(base, ex))
        else:
            out.append(f)
    return sign * sympy.Mul(*out)


@dataclass(frozen=True)
class FieldNotation:
    """General vector fields: ``f``, ``f'f``, ``f''[f, f]``."""

    names: tuple[str, ...] = ("f",)

    sign_flip = False

    def _name(self, c: int) -> str:
        return self.names[c] if c < len(self.names) else f"f_{c}"

    def text(self, t: int) -> str:
        c, ch = T.key(t)
        f = self._name(c)
        if not ch:
            return f
        args = [self.text(u) for u in ch]
        k = len(ch)
        primes = "'" * k if k <= 3 else f"^({k})"
        if k == 1:
            return f"{f}'{args[0]}"
        return f"{f}{primes}[{', '.join(args)}]"

    def latex(self, t: int) -> str:
        c, ch = T.key(t)
        f = _latex_name(self._name(c))
        if not ch:
            return f
        args = [self.latex(u) for u in ch]
        k = len(ch)
        if k == 1:
            return f"{f}' {args[0]}"
        return f"{f}^{{({k})}}[{', '.join(args)}]"


def _latex_name(name: str) -> str:
    if "_" in name:
        a, b = name.split("_", 1)
        return f"{a}_{{{b}}}"
    return name


def _hessian_chain(t: int) -> tuple[int, int]:
    """``t`` = a chain of ``p`` single-child vertices of one color above subtree ``u``:
    in gradient notation ``G(t) = H_c^p G(u)`` (each single-child vertex is a Hessian)."""
    c = T.color(t)
    p, u = 1, T.children(t)[0]
    while len(T.children(u)) == 1 and T.color(u) == c:
        p, u = p + 1, T.children(u)[0]
    return p, u


class PrintsItself:
    """Mixin for results that print themselves in notebooks and sympy printers: the class
    defines ``__str__`` and ``latex()``; this adds ``_repr_latex_`` (Jupyter) and
    ``_sympystr`` / ``_latex`` (``sympy.sstr``, ``sympy.latex``)."""

    def latex(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def _sympystr(self, printer: Any) -> str:
        return str(self)

    def _latex(self, printer: Any) -> str:
        return self.latex()


@dataclass(frozen=True)
class GradientNotation:
    """``f_c = -grad L_c`` on shared parameters."""

    losses: tuple[str, ...] = ("L",)

    sign_flip = True  # F(t) = (-1)^|t| G(t)

    def _suffix(self, c: int) -> str:
        name = self.losses[c] if c < len(self.losses) else f"L_{c}"
        return name[1:] if name.startswith("L") else "_" + name

    def _loss(self, c: int) -> str:
        return self.losses[c] if c < len(self.losses) else f"L_{c}"

    def text(self, t: int) -> str:
        c, ch = T.key(t)
        if not ch:
            return f"grad {self._loss(c)}"
        if len(ch) == 1:
            p, u = _hessian_chain(t)
            hs = "H" + self._suffix(c) + (f"^{p}" if p > 1 else "")
            return f"{hs} {self.text(u)}"
        args = ", ".join(self.text(u) for u in ch)
        return f"D^{len(ch) + 1}{self._loss(c)}[{args}]"

    def latex(self, t: int) -> str:
        c, ch = T.key(t)
        loss = _latex_name(self._loss(c))
        if not ch:
            return rf"\nabla {loss}"
        if len(ch) == 1:
            p, u = _hessian_chain(t)
            suf = self._suffix(c).lstrip("_")
            hs = "H" + (f"_{{{suf}}}" if suf else "") + (f"^{{{p}}}" if p > 1 else "")
            return f"{hs} {self.latex(u)}"
        args = ", ".join(self.latex(u) for u in ch)
        return f"D^{{{len(ch) + 1}}} {loss}[{args}]"


@dataclass(frozen=True)
class BlockNotation:
    """Two-player games: player c owns block ``players[c]`` and minimises ``losses[c]``.

    ``G(t)`` for a root of color c with children of colors ``c_1..c_k`` is the block
    ``players[c]`` of ``D^(k+1) losses[c][G(t_1), .., G(t_k), .]``, each argument living in
    its own player's block.
    """

    players: tuple[str, ...] = ("x", "y")
    losses: tuple[str, ...] = ("L_1", "L_2")

    sign_flip = True

    def text(self, t: int) -> str:
        c, ch = T.key(t)
        p, L = self.players[c], self.losses[c]
        if not ch:
            return f"grad_{p} {L}"
        idx = "".join([p] + [self.players[T.color(u)] for u in ch])
        args = [self.text(u) for u in ch]
        if len(ch) == 1:
            return f"H_{idx} {L} {args[0]}"
        return f"D^{len(ch) + 1}_{idx} {L}[{', '.join(args)}]"

    def latex(self, t: int) -> str:
        c, ch = T.key(t)
        p, L = self.players[c], _latex_name(self.losses[c])
        if not ch:
            return rf"\nabla_{{{p}}} {L}"
        idx = "".join([p] + [self.players[T.color(u)] for u in ch])
        args = [self.latex(u) for u in ch]
        if len(ch) == 1:
            return rf"H_{{{idx}}} {L}\, {args[0]}"
        return rf"D^{{{len(ch) + 1}}}_{{{idx}}} {L}[{', '.join(args)}]"


Notation = FieldNotation | GradientNotation | BlockNotation


def join_terms(items: list[tuple[sympy.Expr, str]], latex: bool = False) -> str:
    """``[(coef, symbol_text)] -> "c1 X1 - c2 X2 + ..."`` with signs pulled out."""
    parts = []
    for coef, body in items:
        coef = sympy.sympify(coef, strict=True)   # engine coefficients, never a string
        neg = coef.could_extract_minus_sign()
        mag = -coef if neg else coef
        if mag == 1:
            s = body
        else:
            cs = sympy.latex(mag) if latex else _paren(sympy.sstr(mag))
            s = f"{cs} {body}" if latex else f"{cs} {body}"
        parts.append(("-" if neg else "+", s))
    if not parts:
        return "0"
    out = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    for sgn, s in parts[1:]:
        out += f" {sgn} {s}"
    return out


def _paren(s: str) -> str:
    if any(op in s for op in "+-/* "):
        return f"({s})"
    return s

"""One symbol table per problem: names, not sympy assumptions, identify symbols.

sympy treats ``Symbol('x')`` and ``Symbol('x', real=True)`` as different symbols, so a loss
built from a user's plain ``symbols('x y')`` differentiated against ``bea``'s real ``x, y``
gives zero, and ``subs={'beta': 0.5}`` silently misses a ``positive=True`` beta.  Here:

* **names identify symbols.**  Loss variables, method parameters and the step size ``h``
  live in one :class:`SymbolTable`; any expression handed in is rewritten onto the table's
  symbols by name (:meth:`SymbolTable.adopt`), whatever assumptions it was built with.
* **names may not collide.**  A loss variable named like a method parameter (``vars='x,
  beta'`` with heavy ball), a parameter named ``h``, two parameters with one name and
  different assumptions: each is a :class:`SymbolError` naming both uses.
* **values bind by name.**  :func:`bind_values` turns ``{'beta': 0.9}`` or
  ``{Symbol('beta'): 0.9}`` into exact numbers for the method's parameters (through
  :func:`bea.numbers.exact`, so strings are never evaluated), refusing unknown names;
  :func:`substitute` applies them with ``xreplace`` (no ``sympify``).
  :func:`bind_method` (``method.bind(beta=0.9)``) gives the numeric method itself.
* **method identity is structural**: :func:`method_identity` spells out every parameter
  with its assumptions (``srepr``), so ``heavy_ball(Symbol('beta'))`` and
  ``heavy_ball(Symbol('beta', positive=True))`` never share a cached series.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import sympy

from .numbers import exact

__all__ = ["SymbolError", "SymbolTable", "STEP", "RESERVED", "check_name", "substitute",
           "bind_values", "bind_method", "method_identity", "require_numeric", "as_expr",
           "step_symbol"]

#: the step size symbol's name (``ModifiedEquation.h``)
STEP = "h"


class SymbolError(ValueError):
    """Two different things with one name, or a name that cannot be used."""


def _reserved() -> frozenset[str]:
    from .parse import CONSTANTS, FUNCTIONS

    return frozenset({STEP, "nan", "inf", "oo", "zoo", "I", "infinity", *FUNCTIONS,
                      *CONSTANTS})


RESERVED = _reserved()

#: the command-line flag that sets each method parameter (for error messages)
FLAGS = {"beta": "--beta 0.9", "alpha": "--lr 1,0.5", "lam": "--lr 1,0.5"}


def check_name(name: str, what: str = "parameter") -> str:
    """A usable symbol name: an identifier, not ``h`` (the step size), a function or a
    constant of the loss parser, nor ``nan``/``inf``."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise SymbolError(f"{what} name {name!r} is not a plain identifier (like beta, lr1)")
    if name == STEP:
        raise SymbolError(f"{what} cannot be called {STEP!r}: h is the step size of every "
                          f"modified equation; choose another name")
    if name in RESERVED:
        raise SymbolError(f"{what} cannot be called {name!r}: that name means a function "
                          f"or a constant (or nan/inf); choose another name")
    return name


def _by_name(symbols: Iterable[sympy.Symbol], what: str) -> dict[str, sympy.Symbol]:
    out: dict[str, sympy.Symbol] = {}
    for s in symbols:
        got = out.get(s.name)
        if got is not None and got != s:
            raise SymbolError(
                f"two different symbols are both called {s.name!r} in {what} ({sympy.srepr(got)}"
                f" and {sympy.srepr(s)}): use one symbol, or two names")
        out[s.name] = s
    return out


class SymbolTable:
    """Loss variables, method parameters and ``h`` of one problem, by name."""

    def __init__(self, variables: Iterable[sympy.Symbol] = (),
                 parameters: Iterable[sympy.Symbol] = (), method_name: str = "the method"):
        self.variables = tuple(variables)
        self.parameters = tuple(parameters)
        self.method_name = method_name
        self.vars = _by_name(self.variables, "the loss variables")
        self.params = _by_name(self.parameters, method_name)
        for name in self.vars:
            if name == STEP:
                raise SymbolError(f"a loss variable cannot be called {STEP!r}: h is the step "
                                  f"size; rename the variable")
            if name in self.params:
                raise SymbolError(
                    f"the loss variable {name!r} has the name of a parameter of "
                    f"{method_name}; the two would be confused. Rename the variable "
                    f"(e.g. --vars x,{name}1)")
        if STEP in self.params:
            raise SymbolError(f"{method_name} has a parameter called {STEP!r}, the name of "
                              f"the step size; use a number or another name for it")

    def adopt(self, expr: Any, what: str = "the loss") -> sympy.Expr:
        """``expr`` with its symbols replaced, by name, by the table's variables; a free
        symbol named like a parameter or ``h`` is a :class:`SymbolError`."""
        e = as_expr(expr)
        rep = {}
        for s in e.free_symbols:
            if not isinstance(s, sympy.Symbol):
                continue
            if s.name in self.vars:
                if s != self.vars[s.name]:
                    rep[s] = self.vars[s.name]
            elif s.name in self.params:
                raise SymbolError(
                    f"{what} uses {s.name!r}, which is also a parameter of "
                    f"{self.method_name}; rename it in the loss (or declare it a variable "
                    f"under another name)")
            elif s.name == STEP:
                raise SymbolError(f"{what} uses {STEP!r}, the step size of the modified "
                                  f"equation; rename it")
        return e.xreplace(rep) if rep else e


def bind_values(values: Mapping[Any, Any] | None, parameters: Iterable[sympy.Symbol],
                where: str = "subs") -> dict[str, sympy.Expr]:
    """``{name: exact number}`` for ``values`` keyed by names or symbols of
    ``parameters``; unknown names and non-numbers are refused."""
    if not values:
        return {}
    if not isinstance(values, Mapping):
        raise SymbolError(f"{where} must be a dict such as {{'beta': 0.9}}, got "
                          f"{type(values).__name__}")
    names = {p.name for p in parameters}
    out: dict[str, sympy.Expr] = {}
    for k, v in values.items():
        name = k.name if isinstance(k, sympy.Symbol) else k
        if not isinstance(name, str):
            raise SymbolError(f"{where} key {k!r} is neither a name nor a sympy symbol")
        if name not in names:
            have = ", ".join(sorted(names)) or "none"
            raise SymbolError(f"{where} gives a value for {name!r}, but the method's "
                              f"parameters are: {have}")
        if name in out:
            raise SymbolError(f"{where} gives {name!r} twice")
        out[name] = exact(v, f"{where}[{name!r}]")
    return out


def step_symbol(h: Any) -> sympy.Expr:
    """The ``h=`` of an ``evaluate(..., summed=True)``: a sympy symbol or expression, or a
    number; a string is refused (``sympy.Symbol('h')`` says what it means)."""
    if isinstance(h, str):
        hint = f" (e.g. sympy.Symbol({h.strip()!r}))" if h.strip().isidentifier() else ""
        raise TypeError(f"h={h!r}: give a sympy symbol{hint} or a number, not a string "
                        f"(strings are never parsed here)")
    return as_expr(h)


def as_expr(expr: Any) -> sympy.Expr:
    """A sympy object as it is; a Python number converted; never a string (``strict``
    sympify parses nothing: strings go through :mod:`bea.parse`)."""
    if isinstance(expr, sympy.Basic):
        return expr
    if isinstance(expr, str):
        raise TypeError("a string here would be parsed by sympy: parse it with "
                        "bea.parse (the whitelisting parser) first")
    return sympy.sympify(expr, strict=True)


def substitute(expr: Any, values: Mapping[str, sympy.Expr] | None) -> sympy.Expr:
    """Replace symbols by name with already exact ``values`` (``xreplace``, never
    ``subs``: nothing is parsed or evaluated)."""
    e = as_expr(expr)
    if not values:
        return e
    rep = {s: values[s.name] for s in e.free_symbols
           if isinstance(s, sympy.Symbol) and s.name in values}
    return e.xreplace(rep) if rep else e


def exact_subs(values: Mapping[Any, Any] | None, where: str = "subs"
               ) -> dict[str, sympy.Expr]:
    """Validate ``subs`` values (exact numbers, by name) without a parameter list."""
    if not values:
        return {}
    if not isinstance(values, Mapping):
        raise SymbolError(f"{where} must be a dict such as {{'beta': 0.9}}")
    out = {}
    for k, v in values.items():
        name = k.name if isinstance(k, sympy.Symbol) else k
        if not isinstance(name, str):
            raise SymbolError(f"{where} key {k!r} is neither a name nor a sympy symbol")
        out[name] = exact(v, f"{where}[{name!r}]")
    return out


# --------------------------------------------------------------------------- methods


def method_identity(method: Any) -> str:
    """A string that identifies ``method`` structurally: its class, ``repr`` and every
    parameter with its assumptions.  Two methods with one identity have one series."""
    params = getattr(method, "parameters", ())
    _by_name(params, getattr(method, "name", "the method"))   # one name, one symbol
    spelled = ",".join(sympy.srepr(p) for p in sorted(params, key=lambda s: s.name))
    cls = type(method)
    return f"{cls.__module__}.{cls.__qualname__}|{method!r}|params=[{spelled}]"


_SYMPY_FIELDS = ("A", "b", "alphas", "evaluations", "rates")


def _replace(obj: Any, rep: Mapping[sympy.Symbol, sympy.Expr]) -> Any:
    if isinstance(obj, sympy.Basic):
        return obj.xreplace(rep)
    if isinstance(obj, tuple):
        return tuple(_replace(x, rep) for x in obj)
    if isinstance(obj, list):
        return [_replace(x, rep) for x in obj]
    return obj


def bind_method(method: Any, **values: Any) -> Any:
    """The method with some symbolic parameters fixed to exact numbers:
    ``heavy_ball().bind(beta=0.9)`` is ``heavy_ball(0.9)`` (same series and step).

    Names are matched against ``method.parameters``; values go through
    :func:`bea.numbers.exact`.
    """
    vals = bind_values(values, method.parameters, where=f"{method.name}.bind")
    if not vals:
        return method
    rep = {p: vals[p.name] for p in method.parameters if p.name in vals}
    new = copy.copy(method)
    for f in _SYMPY_FIELDS:
        if hasattr(new, f):
            setattr(new, f, _replace(getattr(new, f), rep))
    for f in ("methods", "base"):
        inner = getattr(new, f, None)
        if isinstance(inner, tuple):
            setattr(new, f, tuple(_bind_inner(m, vals) for m in inner))
        elif inner is not None:
            setattr(new, f, _bind_inner(inner, vals))
    if hasattr(new, "explicit") and hasattr(new, "stages"):
        s = new.stages
        new.explicit = all(new.A[c][i][j] == 0 for c in range(new.ncolors)
                           for i in range(s) for j in range(i, s))
    if "beta" in vals:   # momentum, wherever it appears in bea
        from .methods import check_beta as _check_beta

        _check_beta(vals["beta"])
    # the name as if built with the numbers: heavy_ball(beta=beta) -> heavy_ball(beta=9/10)
    name = method.name
    for k, v in vals.items():
        name = re.sub(rf"\b{re.escape(k)}\b(?!\s*=)", str(v), name)
    new.name = name
    return new


def _bind_inner(m: Any, vals: Mapping[str, sympy.Expr]) -> Any:
    mine = {k: v for k, v in vals.items() if k in {p.name for p in m.parameters}}
    return bind_method(m, **mine) if mine else m


def require_numeric(method: Any, values: Mapping[str, sympy.Expr] | None = None,
                    call: str = "verify", *, command_line: bool = False) -> None:
    """Refuse a method whose parameters are still symbols after ``values``, saying how to
    give numbers: the flags on the command line, ``bind``/``subs=`` in Python."""
    left = [p.name for p in method.parameters if p.name not in (values or {})]
    if not left:
        return
    name = left[0]
    if command_line:
        flags = sorted({FLAGS.get(n, f"--{n} <number>") for n in left})
        raise SymbolError(f"bea {call} needs numbers for {', '.join(left)} ({method.name} "
                          f"is symbolic): add {' '.join(flags)}")
    raise SymbolError(
        f"{method.name} has symbolic parameters ({', '.join(left)}) and {call}() needs "
        f"numbers: build the method with numbers (e.g. method.bind({name}=0.9)) or call "
        f"{call}(..., subs={{'{name}': 0.9}})")

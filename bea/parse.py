"""Safe parsing of losses given as strings (command line, configs).

The string is parsed with :mod:`ast` and rebuilt node by node from a whitelist: numbers,
the declared variables, symbolic parameters the caller allows, ``+ - * / ** ^`` and a
few elementary functions.  Nothing is ever passed to ``eval`` or ``sympify``, so strings
such as ``__import__('os')`` are rejected with a message, not executed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

import sympy

FUNCTIONS: dict[str, Any] = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "exp": sympy.exp,
    "log": sympy.log, "sqrt": sympy.sqrt, "tanh": sympy.tanh, "cosh": sympy.cosh,
    "sinh": sympy.sinh, "atan": sympy.atan, "abs": sympy.Abs,
    "sigmoid": lambda z: 1 / (1 + sympy.exp(-z)),
    "softplus": lambda z: sympy.log(1 + sympy.exp(z)),
}
CONSTANTS: dict[str, Any] = {"pi": sympy.pi, "E": sympy.E}
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: lambda a, b: a ** b}
MAX_LENGTH = 2000


class ParseError(ValueError):
    """A loss string that uses something outside the whitelist."""


def parse_vars(vars: str | Iterable[Any]) -> tuple[sympy.Symbol, ...]:
    """``"x,y"`` or ``["x", "y"]`` or symbols -> real sympy symbols."""
    if isinstance(vars, str):
        names = [v.strip() for v in vars.split(",") if v.strip()]
    else:
        names = list(vars)
    out = []
    for v in names:
        if isinstance(v, sympy.Symbol):
            out.append(v)
            continue
        if not isinstance(v, str) or not v.isidentifier() or v in FUNCTIONS or v.startswith("_"):
            raise ParseError(f"invalid variable name {v!r}: use plain identifiers like x, y, w1")
        out.append(sympy.Symbol(v, real=True))
    if len(set(out)) != len(out):
        raise ParseError(f"repeated variable in {names}")
    if not out:
        raise ParseError("no variables given: pass e.g. --vars x,y")
    return tuple(out)


def parse_expr(text: str, names: Mapping[str, sympy.Symbol],
               parameters: Mapping[str, sympy.Symbol] | None = None) -> sympy.Expr:
    """Parse ``text`` into a sympy expression over ``names`` (and ``parameters``).

    Raises :class:`ParseError` naming the offending piece for anything else.
    """
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression longer than {MAX_LENGTH} characters")
    # '^' means power, with the precedence of '**' (Python's xor binds more loosely)
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as e:
        raise ParseError(f"cannot parse {text!r}: {e.msg}") from None
    allowed = dict(names)
    allowed.update(parameters or {})

    def build(node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return sympy.Rational(str(node.value)) if isinstance(node.value, float) \
                else sympy.Integer(node.value)
        if isinstance(node, ast.Name):
            if node.id in allowed:
                return allowed[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ParseError(
                f"unknown name {node.id!r} in {text!r}: allowed are the variables "
                f"{sorted(allowed)}, constants {sorted(CONSTANTS)} and functions "
                f"{sorted(FUNCTIONS)}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](build(node.left), build(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = build(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                what = ast.unparse(node.func)
                raise ParseError(f"function {what!r} is not allowed in {text!r}; allowed: "
                                 f"{sorted(FUNCTIONS)}")
            if node.keywords or len(node.args) != 1:
                raise ParseError(f"{node.func.id} takes exactly one argument")
            return FUNCTIONS[node.func.id](build(node.args[0]))
        raise ParseError(f"{ast.unparse(node)!r} is not allowed in a loss expression "
                         f"(only numbers, variables, + - * / ** and {sorted(FUNCTIONS)})")

    return build(tree)

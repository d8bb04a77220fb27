"""Safe parsing of losses given as strings (command line, configs).

The string is parsed with :mod:`ast` and rebuilt node by node from a whitelist: numbers,
the declared variables, symbolic parameters the caller allows, ``+ - * / ** ^`` and a
few elementary functions.  Nothing is ever passed to ``eval`` or ``sympify``, so strings
such as ``__import__('os')`` are rejected with a message, not executed.
"""

from __future__ import annotations

import ast
import warnings
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

    Raises :class:`ParseError` naming the offending piece for anything else, and
    :class:`bea.limits.LimitError` for inputs whose cost is out of proportion (nesting,
    exponent towers, numbers with millions of digits), priced before they are built.
    Numbers are exact: ``1e-400`` is ``10**-400``, read from the digits typed (never
    through a float, which would make it 0).  The result must be finite and real
    (``1/0``, ``log(0)``, ``sqrt(-1)`` are refused).
    """
    from . import limits as LIM
    from .numbers import NumberError, check_finite_real

    if not isinstance(text, str):
        raise ParseError(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression longer than {MAX_LENGTH} characters")
    # '^' means power, with the precedence of '**' (Python's xor binds more loosely)
    src = text.strip().replace("^", "**")
    if "\x00" in src:
        raise ParseError("the expression contains a NUL character")
    # the bracket depth bounds the parser's own recursion (CPython refuses ~200 levels)
    LIM.check_depth(LIM.bracket_depth(src, "([{", ")]}"), 0, 0, f"{_clip(text)!r}")
    try:
        # CPython only warns about some malformed literals ('1if x else 2'): refuse them
        # here, with the tokenizer's words, instead of printing a SyntaxWarning
        with warnings.catch_warnings():
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(src, mode="eval")
    except (SyntaxError, SyntaxWarning, ValueError) as e:   # ValueError: int over 4300 digits
        raise ParseError(f"cannot parse {_clip(text)!r}: {getattr(e, 'msg', e)}") from None
    except (RecursionError, MemoryError):
        raise LIM.LimitError(f"{_clip(text)!r} is nested too deeply to parse; simplify "
                             f"it") from None
    depth, nodes, tower = _measure(tree.body)
    LIM.check_depth(depth, nodes, tower, f"{_clip(text)!r}")
    allowed = dict(names)
    allowed.update(parameters or {})

    def number(node: ast.Constant) -> sympy.Expr:
        v = node.value
        if isinstance(v, int):
            LIM.check_bits(v.bit_length(), "a number")
            return sympy.Integer(v)
        seg = ast.get_source_segment(src, node) or repr(v)
        LIM.check_decimal(seg, "the number")
        return sympy.Rational(seg.replace("_", ""))

    def build(node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return number(node)
        if isinstance(node, ast.Name):
            if node.id in allowed:
                return allowed[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ParseError(
                f"unknown name {node.id!r} in {_clip(text)!r}: allowed are the variables "
                f"{sorted(allowed)}, constants {sorted(CONSTANTS)} and functions "
                f"{sorted(FUNCTIONS)}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            # a long sum or product is a left-leaning chain: fold it in a loop, so
            # x+x+...+x (1,000 terms) needs no recursion
            chain = []
            cur: ast.AST = node
            kind = _CHAIN.get(type(node.op))
            while kind is not None and isinstance(cur, ast.BinOp) \
                    and _CHAIN.get(type(cur.op)) == kind:
                chain.append((type(cur.op), cur.right))
                cur = cur.left
            if kind is None:   # a power: check its size before sympy evaluates it
                base, exp_ = build(node.left), build(node.right)
                LIM.check_power(base, exp_, f"{_clip(ast.unparse(node))!r}")
                return base ** exp_
            # one Add/Mul of all terms (repeated a + b re-flattens: quadratic time)
            items = [build(cur)]
            for op, right in reversed(chain):
                v = build(right)
                items.append(-v if op is ast.Sub else 1 / v if op is ast.Div else v)
            return sympy.Add(*items) if kind == "sum" else sympy.Mul(*items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = build(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                what = ast.unparse(node.func)
                raise ParseError(f"function {what!r} is not allowed in {_clip(text)!r}; "
                                 f"allowed: {sorted(FUNCTIONS)}")
            if node.keywords or len(node.args) != 1:
                raise ParseError(f"{node.func.id} takes exactly one argument")
            return FUNCTIONS[node.func.id](build(node.args[0]))
        raise ParseError(f"{_clip(ast.unparse(node))!r} is not allowed in a loss expression "
                         f"(only numbers, variables, + - * / ** and {sorted(FUNCTIONS)})")

    out = build(tree.body)
    try:
        return check_finite_real(sympy.sympify(out), f"{_clip(text)!r}")
    except NumberError as e:
        raise ParseError(str(e)) from None


_CHAIN = {ast.Add: "sum", ast.Sub: "sum", ast.Mult: "product", ast.Div: "product"}


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _measure(root: ast.AST) -> tuple[int, int, int]:
    """``(nesting depth, nodes, exponent-tower height)`` without recursion.

    A chain of the same kind of operation (a sum, a product) is one level of nesting.
    """
    depth = nodes = tower = 0
    stack: list[tuple[ast.AST, int, int, str | None]] = [(root, 1, 0, None)]
    while stack:
        node, d, t, parent_kind = stack.pop()
        nodes += 1
        kind = None
        if isinstance(node, ast.BinOp):
            kind = _CHAIN.get(type(node.op), "power")
        level = d if (kind is not None and kind == parent_kind and kind != "power") else d + 1
        depth = max(depth, level)
        if kind == "power":
            t = t + 1
            tower = max(tower, t)
            stack.append((node.left, level, 0, kind))
            stack.append((node.right, level, t, kind))
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.operator, ast.unaryop, ast.expr_context)):
                continue
            stack.append((child, level, 0, kind))
    return depth, nodes, tower


def parse_number(text: str, what: str = "number") -> sympy.Expr:
    """A finite real number written as text: ``0.9``, ``1/2``, ``1e-3``, ``sqrt(2)/2``.

    Read with the whitelisting parser over no variables (so nothing is evaluated), exact.
    """
    from .numbers import NumberError

    if not isinstance(text, str):
        raise NumberError(f"{what}: expected text, got {type(text).__name__}")
    stripped = text.strip()
    if stripped.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity", "oo"):
        raise NumberError(f"{what} is {stripped!r}: give a finite number")
    try:
        v = parse_expr(stripped, {})
    except ParseError as e:
        raise NumberError(f"{what} {_clip(stripped)!r} is not a number ({e}); write e.g. "
                          f"0.9 or 1/2") from None
    if v.free_symbols:
        raise NumberError(f"{what} {_clip(stripped)!r} is not a number")
    return v

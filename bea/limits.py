"""Cost limits checked *before* work starts, each with the estimate and how to override it.

A short input can ask for an astronomical amount of work: ``--order 1000000`` (more trees
than atoms), ``x*9**9**9`` (a number with 370 million digits), ``sgd --batches 1000000``
(a tableau of 10^18 entries), a JSON cache file nested a million deep.  Rather than a
timeout, every such input is priced from a closed form first:

* trees: the number of colored rooted trees of each order (Cayley/Polya recursion,
  :func:`bea.trees.count_trees`), summed until the limit is passed, then extrapolated
  with the growth ratio of the last two orders (so the estimate itself costs nothing);
* numbers: bits of a literal from its digits and exponent, bits of ``a**b`` as
  ``|b| log2|a|``, before sympy is asked to build them;
* expressions: nesting depth, node count, height of exponent towers, exponents on
  symbolic bases (their expansion has up to ``exponent^variables`` terms);
* files: bytes and bracket depth of a cache entry before it is decoded;
* verification: points x step sizes x orders x parameters of the sweep.

Every refusal is a :class:`LimitError` (a ``ValueError``) naming the estimate, the limit
and the keyword or flag that raises it.  Limits are fields of :data:`LIMITS`; raise them
for a block with ``with bea.limits.raised(number_bits=50_000): ...``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

__all__ = ["LIMITS", "LimitError", "Limits", "raised", "check_trees", "tree_count",
           "number_bits", "check_bits", "check_power", "check_decimal", "check_depth",
           "check_bracket_depth", "check_json_depth", "check_points", "check_tableau",
           "check_verify"]


class LimitError(ValueError):
    """An input whose estimated cost is over a limit (the message says how to raise it)."""


@dataclass(frozen=True)
class Limits:
    """Limits on the cost of an input (see the module docstring)."""

    #: colored trees of a derivation (``max_trees=`` / ``--max-trees``)
    trees: int = 200_000
    #: bits of any exact number built from user input (1e309 needs 1,027)
    number_bits: int = 20_000
    #: integer exponent on a symbolic base, ``(x + y)**64``
    exponent: int = 256
    #: stacked powers in an exponent tower (2 allows ``x**y**2``, refuses ``x**x**x**x``)
    tower: int = 2
    #: nesting depth of an expression (a sum or product of many terms is one level)
    depth: int = 100
    #: nodes of an expression
    nodes: int = 20_000
    #: bracket depth of a tree string such as ``[[[.]]]`` (a tree of depth d has order > d)
    tree_depth: int = 64
    #: bytes of one cache file
    cache_bytes: int = 32 * 1024 * 1024
    #: nesting depth of a cache file's JSON
    json_depth: int = 32
    #: entries of a Runge-Kutta tableau (stages^2 x fields): sgd with m batches has m^3
    tableau: int = 1_000_000
    #: elementary differentials compiled into one verification kernel (``verify(...,
    #: max_trees=)`` / ``bea verify --max-trees``): measured on a loaded 2-core CPU, gd
    #: order 4 (17 trees) ~60 s, order 6 (85 trees) ~120 s and 0.9 GB, order 8 (486) far more
    verify_trees: int = 120
    #: floats held by a verification sweep (points x step sizes x orders x parameters)
    sweep_floats: int = 10_000_000
    #: order of a numeric modified equation (:func:`bea.numeric_modified_equation`): each
    #: term costs about 2^(order+1) nested jvps of the optimiser's step
    numeric_order: int = 6


#: the limits in force (replace with :func:`raised`)
LIMITS = Limits()


@contextmanager
def raised(**changes: int) -> Iterator[Limits]:
    """Raise (or lower) limits inside a ``with`` block: ``raised(trees=10**6)``."""
    global LIMITS
    known = {f.name for f in fields(Limits)}
    bad = sorted(set(changes) - known)
    if bad:
        raise TypeError(f"unknown limit(s) {bad}; the limits are {sorted(known)}")
    old = LIMITS
    LIMITS = replace(old, **changes)
    try:
        yield LIMITS
    finally:
        LIMITS = old


def _hint(name: str) -> str:
    return f"raise it with `with bea.limits.raised({name}=...)` if you mean it"


# --------------------------------------------------------------------------- trees


def tree_count(max_order: int, ncolors: int, stop_above: int | None = None
               ) -> tuple[int, float, bool]:
    """Colored trees of orders ``1..max_order``: ``(exact partial sum, log10 estimate of
    the full sum, exact?)``.

    Exact counts are summed while the sum stays at most ``stop_above``; beyond, each order
    multiplies the count by the ratio of the last two exact ones (the counts grow
    geometrically, ratio -> ``C * 2.9557`` for C colors), so the estimate is cheap.
    """
    from . import trees as T

    if max_order < 1:
        return 0, -math.inf, True
    if ncolors > 10**6:
        # the order-1 and order-2 counts alone: C + C^2 trees
        est = math.log10(ncolors) * min(max_order, 2) + max(0, max_order - 2) * math.log10(
            3 * ncolors)
        return ncolors, est, max_order == 1
    total = 0
    prev = None
    for n in range(1, max_order + 1):
        c = T.count_trees(n, ncolors)
        total += c
        if stop_above is not None and total > stop_above and n < max_order:
            ratio = max(c / prev if prev else 3.0 * ncolors, 1.5)
            log_last = math.log10(c)
            # geometric tail: sum_{j=1}^{k} c r^j  ~ c r^k r/(r-1)
            k = max_order - n
            est = log_last + k * math.log10(ratio) + math.log10(ratio / (ratio - 1))
            return total, max(est, math.log10(total)), False
        prev = c
    return total, math.log10(total), True


def _fmt_count(log10: float) -> str:
    if log10 < 15:
        return f"{round(10 ** log10):,}"
    return f"about 10^{log10:,.0f}"


def check_trees(max_order: int, ncolors: int, max_trees: int | None = None,
                *, flag: str = "max_trees=") -> int:
    """Refuse a derivation over more than ``max_trees`` colored trees (default
    :attr:`Limits.trees`) before any tree is built; returns the count."""
    limit = LIMITS.trees if max_trees is None else max_trees
    # exact counts while they stay printable; an estimate only beyond 10^9
    total, est, exact = tree_count(max_order, ncolors, stop_above=max(limit, 10**9))
    if total > limit or not exact:
        what = f"{total:,}" if exact else _fmt_count(est)
        advice = (f", or pass {flag}{total} to accept the cost" if exact and total < 10**9
                  else " (no limit makes that many feasible)")
        raise LimitError(
            f"order {max_order} with {ncolors} field(s) needs {what} colored trees (limit "
            f"{limit:,}); the count grows about {ncolors * 2.96:.3g}x per order. Ask for a "
            f"lower order or fewer batches/fields{advice}.")
    return total


def check_tableau(stages: int, ncolors: int, what: str = "method") -> None:
    """Refuse a tableau with more than :attr:`Limits.tableau` entries before building it."""
    n = stages * stages * ncolors
    if n > LIMITS.tableau:
        raise LimitError(
            f"{what} needs a tableau of {stages:,} x {stages:,} entries for each of "
            f"{ncolors:,} fields ({n:,} entries, limit {LIMITS.tableau:,}); its modified "
            f"equation to order 1 alone has {ncolors + ncolors * ncolors:,} trees. Use fewer "
            f"batches, or {_hint('tableau')}.")


# --------------------------------------------------------------------------- numbers


def number_bits(x: object) -> int:
    """Bits of an exact integer or rational (numerator plus denominator)."""
    import sympy

    if isinstance(x, bool):
        return 1
    if isinstance(x, int):
        return x.bit_length()
    if isinstance(x, sympy.Integer):
        return int(x).bit_length()
    if isinstance(x, sympy.Rational):
        return int(x.p).bit_length() + int(x.q).bit_length()
    return 0


def check_bits(bits: float, what: str) -> None:
    if bits > LIMITS.number_bits:
        raise LimitError(
            f"{what} would be a number of about {bits:,.0f} bits ({bits * 0.30103:,.0f} "
            f"digits; limit {LIMITS.number_bits:,} bits). Write it smaller, or as a symbol, "
            f"or {_hint('number_bits')}.")


def check_decimal(text: str, what: str = "number") -> None:
    """Price a decimal literal (``1e-400``, ``123.5``) from its text, before building it."""
    t = text.strip().lower().replace("_", "")
    mant, _, exp = t.partition("e")
    digits = sum(ch.isdigit() for ch in mant)
    try:
        e = int(exp) if exp else 0
    except ValueError:
        return  # not a decimal: the caller's parser refuses it
    check_bits((digits + abs(e)) * 3.3220, f"{what} {text.strip()[:40]!r}")


def check_power(base: object, exponent: object, what: str = "a power") -> None:
    """Price ``base**exponent`` before sympy evaluates it.

    Numeric base and exponent: the result has about ``|exponent| * log2|base|`` bits.
    Symbolic base with an integer exponent: expanding it costs up to ``exponent^k`` terms,
    so the exponent is limited to :attr:`Limits.exponent`.
    """
    import sympy

    # strict: numbers and sympy objects only, a string is never parsed here
    b, e = sympy.sympify(base, strict=True), sympy.sympify(exponent, strict=True)
    if not e.is_number or not e.is_Rational:
        return
    size = abs(e)
    if b.is_number:
        if b.is_Rational:
            if b in (0, 1, -1):
                return
            log2b = max(number_bits(b), 1)
            check_bits(float(size) * log2b, what)
        elif size > LIMITS.number_bits:
            check_bits(float(size), what)
        return
    if size > LIMITS.exponent:
        raise LimitError(
            f"{what} has the exponent {e} on a symbolic base (limit {LIMITS.exponent}); "
            f"expanding it would take up to {e}^k terms in k variables. Use a smaller "
            f"exponent, or {_hint('exponent')}.")


# --------------------------------------------------------------------------- nesting


def check_depth(depth: int, nodes: int, tower: int, what: str) -> None:
    if depth > LIMITS.depth:
        raise LimitError(f"{what} is nested {depth:,} levels deep (limit {LIMITS.depth}); "
                         f"simplify it (e.g. drop repeated signs or brackets), or "
                         f"{_hint('depth')}.")
    if nodes > LIMITS.nodes:
        raise LimitError(f"{what} has {nodes:,} operations (limit {LIMITS.nodes:,}); "
                         f"simplify it, or {_hint('nodes')}.")
    if tower > LIMITS.tower:
        raise LimitError(f"{what} has an exponent tower of {tower} stacked powers "
                         f"(a**b**c**d is 3; limit {LIMITS.tower}); its derivatives grow "
                         f"without bound. Use "
                         f"brackets, (a**b)**c, or {_hint('tower')}.")


def bracket_depth(text: str | bytes, open_: str = "[{(", close: str = "]})",
                  skip_strings: bool = False) -> int:
    """Deepest bracket nesting of ``text`` (a linear scan, no recursion)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    depth = best = 0
    in_str = escaped = False
    for ch in text:
        if skip_strings:
            if in_str:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_str = False
                continue
            if ch == '"':
                in_str = True
                continue
        if ch in open_:
            depth += 1
            if depth > best:
                best = depth
        elif ch in close:
            depth -= 1
    return best


def check_bracket_depth(text: str, what: str = "tree") -> None:
    """Refuse a tree string nested deeper than :attr:`Limits.tree_depth`."""
    d = bracket_depth(text, "[", "]")
    if d > LIMITS.tree_depth:
        raise LimitError(f"{what} {text[:30]!r}... is nested {d:,} deep (limit "
                         f"{LIMITS.tree_depth}): a tree that deep has order above {d}; "
                         f"{_hint('tree_depth')}.")


def check_json_depth(raw: bytes, what: str = "file") -> None:
    d = bracket_depth(raw, "[{", "]}", skip_strings=True)
    if d > LIMITS.json_depth:
        raise LimitError(f"{what} is nested {d:,} deep (limit {LIMITS.json_depth})")


# --------------------------------------------------------------------------- sweeps


def check_verify(max_order: int, ncolors: int, max_trees: int | None = None) -> int:
    """Refuse a verification whose compiled kernel would hold more elementary
    differentials than :attr:`Limits.verify_trees` (its compile time and memory grow with
    them), before deriving or compiling anything."""
    limit = LIMITS.verify_trees if max_trees is None else max_trees
    total, est, exact = tree_count(max_order + 1, ncolors, stop_above=max(limit, 10**6))
    if total > limit or not exact:
        what = f"{total:,}" if exact else _fmt_count(est)
        raise LimitError(
            f"verifying order {max_order} with {ncolors} field(s) compiles {what} elementary "
            f"differentials into one kernel (limit {limit:,}; on 2 CPU cores gd order 4 with "
            f"17 takes ~1 min, order 6 with 85 ~2 min and 0.9 GB, and the cost grows with "
            f"every tree). Verify a lower order, or accept the cost with --max-trees {total} "
            f"(Python: verify(..., max_trees={total})).")
    return total


def check_points(points: int, n_hs: int, n_orders: int, n_params: int,
                 flag: str = "points=") -> None:
    """Refuse a verification sweep whose arrays would hold more than
    :attr:`Limits.sweep_floats` floats (8 bytes each), before allocating them."""
    floats = int(points) * max(1, n_hs) * (max(1, n_orders) + 1) * max(1, n_params)
    if floats > LIMITS.sweep_floats:
        gb = floats * 8 / 1e9
        fit = max(1, LIMITS.sweep_floats // (max(1, n_hs) * (max(1, n_orders) + 1)
                                             * max(1, n_params)))
        raise LimitError(
            f"{points:,} initial points x {n_hs} step sizes x {n_orders + 1} trajectories x "
            f"{n_params} parameters hold {floats:,} floats (~{gb:,.1f} GB; limit "
            f"{LIMITS.sweep_floats:,}). Use {flag}{fit} or fewer, or "
            f"{_hint('sweep_floats')}.")

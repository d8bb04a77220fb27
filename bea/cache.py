"""Disk cache of derived modified-field series (JSON only, never pickle).

``cached_modified_field(method, order)`` returns the same :class:`bea.series.BSeries` as
``series.modified_field(method.series(order + 1))`` (the field series behind
``modified_equation(method, order)``), read from disk when a valid entry exists.

* Directory: ``$BEA_CACHE_DIR``, else ``~/.cache/bea``; ``BEA_CACHE=0`` disables the
  cache (nothing is read or written).
* Key: sha256 of the format version, the method's identity (``cache_key()``: class,
  ``repr`` and every parameter with its assumptions, see
  :func:`bea.symbol_table.method_identity`) and the
  order.  Methods whose ``repr`` is the default ``<... at 0x...>`` are never cached.
* File: one JSON object with the format version, key, method repr, order, ncolors, the
  parameter names, per tree ``[bracket notation with colors, coefficient string]``, and
  a sha256 checksum of that payload.  Trees are read back with
  :meth:`bea.trees.Tree.parse`, coefficients with the whitelisting parser
  :func:`bea.parse.parse_expr` over the method's parameter symbols (never ``eval`` or
  ``sympify``), then converted into the exact domain with
  :func:`bea.series.coefficient_domain` / :func:`bea.series.to_domain`.
* Any validation failure (bad JSON, wrong version/key/method/order, checksum mismatch,
  an unparsable tree or coefficient, a cost over :mod:`bea.limits`) warns
  (:class:`CacheWarning`) and rebuilds; files are written atomically (temporary file in
  the same directory, then ``os.replace``).  Before writing, the payload is decoded again
  and compared with the derived series; an entry that would not round-trip exactly is
  not written.
* Reading never blocks and is bounded: only a regular file is opened (``O_NOFOLLOW``
  and ``O_NONBLOCK``, then ``fstat``: a symlink to ``/dev/zero`` or a FIFO is refused,
  not read), at most :attr:`bea.limits.Limits.cache_bytes` bytes, JSON nesting checked
  by a linear scan before decoding, trees and coefficients through the limits of the
  parsers (``9**9**9`` is refused, not evaluated).

**Threat model.**  The sha256 checksum is stored next to the payload, so it detects
*accidents* (truncation, bit flips, a half-written or hand-edited file), not tampering:
anyone who can write the cache directory can re-sign a changed entry.  Two things limit
what such a file can do: nothing in it is ever executed (JSON, the whitelisting parser,
cost limits), and for Runge-Kutta methods (GD, SGD, RK, games) every read re-derives a
random sample of :data:`SPOT_CHECKS` coefficients independently (the method's elementary
weights on those trees against the flow of the stored field, :func:`spot_check`), so
a changed coefficient is caught with probability at least ``SPOT_CHECKS / #trees`` per
read, and one changed at a low order far more often.  For multistep methods only the
checksum applies.  Keep the cache directory private (it is created ``0o700``), or set
``BEA_CACHE=0`` where other users can write it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import warnings
from pathlib import Path
from typing import Any

import sympy

from . import series as S
from . import trees as T
from .files import atomic_write_bytes
from .parse import ParseError, parse_expr

FORMAT_VERSION = 2   # 2: method identity spells parameter assumptions
_KIND = "bea-modified-field"


class CacheWarning(UserWarning):
    """A cache file was invalid (and is being rebuilt) or could not be written."""


class _Invalid(Exception):
    """Internal: why a cache file was rejected."""


# --------------------------------------------------------------------------- location


def enabled() -> bool:
    """False when ``BEA_CACHE`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get("BEA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """``$BEA_CACHE_DIR`` or ``~/.cache/bea``."""
    d = os.environ.get("BEA_CACHE_DIR")
    return Path(d).expanduser() if d else Path.home() / ".cache" / "bea"


def method_repr(method: Any) -> str:
    key = getattr(method, "cache_key", None)
    return key() if callable(key) else repr(method)


def cacheable(method: Any) -> bool:
    """Whether ``repr`` identifies the method (not the default ``object.__repr__``)."""
    return " at 0x" not in method_repr(method)


def cache_key(method: Any, order: int) -> str:
    text = f"{_KIND}|v{FORMAT_VERSION}|{method_repr(method)}|order={order}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(method: Any, order: int) -> Path:
    return cache_dir() / f"modified_field-{cache_key(method, order)[:40]}.json"


# --------------------------------------------------------------------------- encode/decode


def _checksum(payload: dict) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _names(method: Any) -> dict[str, sympy.Symbol]:
    return {str(s): s for s in getattr(method, "parameters", ())}


def encode(method: Any, order: int, series: S.BSeries) -> dict:
    """The JSON object stored for ``series`` (with its checksum)."""
    trees = [[T.bracket(t, show_colors=True), str(series.domain.to_sympy(v))]
             for t, v in sorted(series.coeffs.items())]
    payload = {
        "format": FORMAT_VERSION,
        "kind": _KIND,
        "key": cache_key(method, order),
        "method": method_repr(method),
        "order": order,
        "max_order": series.max_order,
        "ncolors": series.ncolors,
        "parameters": sorted(_names(method)),
        "empty": str(series.domain.to_sympy(series.empty)),
        "trees": trees,
    }
    return {**payload, "checksum": _checksum(payload)}


def decode(data: Any, method: Any, order: int) -> S.BSeries:
    """Validate a stored object and rebuild the series; raises ``_Invalid``."""
    if not isinstance(data, dict):
        raise _Invalid("not a JSON object")
    if data.get("format") != FORMAT_VERSION:
        raise _Invalid(f"format version {data.get('format')!r}, expected {FORMAT_VERSION}")
    stored = data.get("checksum")
    payload = {k: v for k, v in data.items() if k != "checksum"}
    if not isinstance(stored, str) or stored != _checksum(payload):
        raise _Invalid("checksum mismatch")
    expect = {"kind": _KIND, "key": cache_key(method, order), "method": method_repr(method),
              "order": order, "max_order": order + 1, "ncolors": method.ncolors,
              "parameters": sorted(_names(method))}
    for field, want in expect.items():
        if payload.get(field) != want:
            raise _Invalid(f"{field} is {payload.get(field)!r}, expected {want!r}")
    names = _names(method)
    entries = payload.get("trees")
    if not isinstance(entries, list):
        raise _Invalid("'trees' is not a list")
    from .limits import tree_count

    most = tree_count(order + 1, method.ncolors, stop_above=len(entries))[0]
    if len(entries) > most:
        raise _Invalid(f"{len(entries):,} entries, but only {most:,} trees exist")
    exprs: dict[str, sympy.Expr] = {}
    parsed: list[tuple[int, str]] = []
    seen: set[int] = set()
    for item in entries:
        if not (isinstance(item, list) and len(item) == 2
                and all(isinstance(s, str) for s in item)):
            raise _Invalid(f"entry {item!r} is not [tree, coefficient]")
        text, coef = item
        if text.count(".") > order + 1:   # leaves bound the order: refuse before parsing
            raise _Invalid(f"tree {text[:40]!r} has more than {order + 1} vertices")
        try:
            t = T.Tree.parse(text).id
        except (ValueError, IndexError) as e:
            raise _Invalid(f"unparsable tree {text!r}: {e}") from None
        if T.order(t) > order + 1 or max(T.colors_used(t)) >= method.ncolors:
            raise _Invalid(f"tree {text!r} outside order {order + 1} / "
                           f"{method.ncolors} colors")
        if t in seen:
            raise _Invalid(f"tree {text!r} repeated")
        seen.add(t)
        if coef not in exprs:
            try:
                exprs[coef] = _parse_coefficient(coef, names)
            except (ParseError, ValueError) as e:   # incl. bea.limits.LimitError
                raise _Invalid(f"unparsable coefficient {coef!r}: {e}") from None
        parsed.append((t, coef))
    try:
        empty = _parse_coefficient(str(payload.get("empty")), names)
    except (ParseError, ValueError) as e:
        raise _Invalid(f"unparsable empty coefficient: {e}") from None
    dom = S.coefficient_domain([*names.values(), *exprs.values(), empty])
    try:
        values = {s: S.to_domain(dom, e) for s, e in exprs.items()}
        coeffs = {t: values[s] for t, s in parsed}
        out = S.BSeries(dom, method.ncolors, order + 1, S.to_domain(dom, empty),
                        {t: v for t, v in coeffs.items() if v})
    except (sympy.CoercionFailed, sympy.PolynomialError, ValueError, TypeError,
            ZeroDivisionError) as e:
        raise _Invalid(f"coefficient outside the domain {dom}: {e}") from None
    return out


def _parse_coefficient(text: str, names: dict[str, sympy.Symbol]) -> sympy.Expr:
    """The whitelisting parser only (distinct strings are few: callers memoise)."""
    return parse_expr(text, names)


# --------------------------------------------------------------------------- file I/O


#: coefficients re-derived independently on every read (see the threat model above)
SPOT_CHECKS = 8


def _read(path: Path, method: Any, order: int) -> S.BSeries:
    from . import limits as LIM

    raw = _read_bounded(path, LIM.LIMITS.cache_bytes)
    try:
        LIM.check_json_depth(raw, "the file")
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, LIM.LimitError) as e:
        raise _Invalid(f"bad JSON: {e}") from None
    except (RecursionError, MemoryError):
        raise _Invalid("bad JSON: nested too deeply") from None
    try:
        series = decode(data, method, order)
    except (RecursionError, MemoryError):
        raise _Invalid("an entry is nested too deeply") from None
    bad = spot_check(method, series)
    if bad is not None:
        raise _Invalid(f"coefficient of tree {T.bracket(bad, show_colors=True)} does not "
                       f"match an independent re-derivation (edited file?)")
    return series


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; never follows a symlink,
    never blocks on a FIFO or device."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _Invalid("not a regular file (a symlink, FIFO, device or folder)")
        fd = os.open(path, flags)
    except OSError as e:
        raise _Invalid(f"cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Invalid("not a regular file")
        if st.st_size > limit:
            raise _Invalid(f"{st.st_size:,} bytes, over the limit of {limit:,}")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _Invalid(f"more than {limit:,} bytes")
        return b"".join(chunks)
    except OSError as e:
        raise _Invalid(f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def spot_check(method: Any, field: S.BSeries, k: int = SPOT_CHECKS,
               rng: random.Random | None = None) -> int | None:
    """Re-derive ``k`` random coefficients of a stored modified field independently.

    For an additive Runge-Kutta method the one-step coefficient ``a(t)`` of a tree is its
    elementary weight (computed on that tree alone); the stored field ``b`` must
    reproduce it through the flow, ``a(t) = sum_j w_{j-1}(t)/j!`` with ``w_0 = b`` and
    ``w_j(t) = sum_{one-edge cuts} b(pruned) w_{j-1}(rest)`` (the Lie series used by
    :func:`bea.series.modified_field`, evaluated only on the trees below ``t``).  Returns
    the first tree that fails, or None (also for methods this check does not cover).
    """
    from .methods import AdditiveRungeKutta

    if not isinstance(method, AdditiveRungeKutta) or k <= 0:
        return None
    dom = field.domain
    try:
        A = [[[S.to_domain(dom, x) for x in row] for row in Ac] for Ac in method.A]
        b = [[S.to_domain(dom, x) for x in bc] for bc in method.b]
    except (sympy.CoercionFailed, sympy.PolynomialError, ValueError, TypeError):
        return None
    trees = T.trees_up_to(field.max_order, field.ncolors)
    rng = rng or random.SystemRandom()
    # always the leaf and the top-order trees a user reads first, plus random ones
    sample = list(dict.fromkeys([*trees[:2], *rng.sample(trees, min(k, len(trees)))]))
    s = method.stages
    psi: dict[int, list] = {}

    def stage(t: int) -> list:           # psi_i(t) = sum_j A^(c)_ij prod_children psi_j
        got = psi.get(t)
        if got is None:
            c, ch = T.key(t)
            prod = [dom.one] * s
            for u in ch:
                prod = [x * y for x, y in zip(prod, stage(u), strict=True)]
            got = [sum((A[c][i][j] * prod[j] for j in range(s)), dom.zero) for i in range(s)]
            psi[t] = got
        return got

    def weight(t: int):
        c, ch = T.key(t)
        prod = [dom.one] * s
        for u in ch:
            prod = [x * y for x, y in zip(prod, stage(u), strict=True)]
        return sum((b[c][i] * prod[i] for i in range(s)), dom.zero)

    w: dict[tuple[int, int], Any] = {}

    def lie(j: int, t: int):
        if j == 0:
            return field[t]
        key = (j, t)
        got = w.get(key)
        if got is None:
            got = dom.zero
            for pruned, rest, m in T.single_cuts(t):
                bp = field.coeffs.get(pruned)
                if bp:
                    got += dom.convert(m) * bp * lie(j - 1, rest)
            w[key] = got
        return got

    for t in sample:
        n = T.order(t)
        flow = dom.zero
        fact = 1
        for j in range(1, n + 1):
            fact *= j
            flow += lie(j - 1, t) / dom.convert(fact)
        if flow != weight(t):
            return t
    return None


def _write(path: Path, data: dict) -> None:
    """Atomic (:func:`bea.files.atomic_write_bytes`), in a folder only the user can read."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    atomic_write_bytes(path, text.encode("utf-8"))


def _derive(method: Any, order: int, max_trees: int | None) -> S.BSeries:
    return S.modified_field(method.series(order + 1, max_trees=max_trees),
                            max_trees=max_trees)


def cached_modified_field(method: Any, order: int, max_trees: int | None = None
                          ) -> S.BSeries:
    """The modified-field series of ``method`` through trees of order ``order + 1``
    (``modified_equation(method, order).series``), from the disk cache when valid.

    The size check (``max_trees``) applies as without the cache.
    """
    S.check_size(order + 1, method.ncolors, max_trees)
    if not enabled() or not cacheable(method):
        return _derive(method, order, max_trees)
    path = cache_path(method, order)
    if os.path.lexists(path):   # a dangling symlink too: it is refused, then replaced
        try:
            return _read(path, method, order)
        except _Invalid as e:
            warnings.warn(f"bea cache: ignoring invalid {path} ({e}); rebuilding it",
                          CacheWarning, stacklevel=2)
    series = _derive(method, order, max_trees)
    try:
        data = encode(method, order, series)
        # write only what reads back exactly
        if decode(json.loads(json.dumps(data)), method, order).equals(series):
            _write(path, data)
    except _Invalid:
        pass
    except OSError as e:
        warnings.warn(f"bea cache: cannot write {path} ({e}); continuing without cache",
                      CacheWarning, stacklevel=2)
    return series

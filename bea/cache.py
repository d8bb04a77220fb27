"""Disk cache of derived modified-field series (JSON only, never pickle).

``cached_modified_field(method, order)`` returns the same :class:`bea.series.BSeries` as
``series.modified_field(method.series(order + 1))`` (the field series behind
``modified_equation(method, order)``), read from disk when a valid entry exists.

* Directory: ``$BEA_CACHE_DIR``, else ``~/.cache/bea``; ``BEA_CACHE=0`` disables the
  cache (nothing is read or written).
* Key: sha256 of the format version, the method's ``repr`` (its ``cache_key()``) and the
  order.  Methods whose ``repr`` is the default ``<... at 0x...>`` are never cached.
* File: one JSON object with the format version, key, method repr, order, ncolors, the
  parameter names, per tree ``[bracket notation with colors, coefficient string]``, and
  a sha256 checksum of that payload.  Trees are read back with
  :meth:`bea.trees.Tree.parse`, coefficients with the whitelisting parser
  :func:`bea.parse.parse_expr` over the method's parameter symbols (never ``eval`` or
  ``sympify``), then converted into the exact domain with
  :func:`bea.series.coefficient_domain` / :func:`bea.series.to_domain`.
* Any validation failure (bad JSON, wrong version/key/method/order, checksum mismatch,
  an unparsable tree or coefficient) warns (:class:`CacheWarning`) and rebuilds; files
  are written atomically (temporary file in the same directory, then ``os.replace``).
  Before writing, the payload is decoded again and compared with the derived series; an
  entry that would not round-trip exactly is not written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import sympy

from . import series as S
from . import trees as T
from .parse import ParseError, parse_expr

FORMAT_VERSION = 1
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
    exprs: dict[str, sympy.Expr] = {}
    parsed: list[tuple[int, str]] = []
    seen: set[int] = set()
    for item in entries:
        if not (isinstance(item, list) and len(item) == 2
                and all(isinstance(s, str) for s in item)):
            raise _Invalid(f"entry {item!r} is not [tree, coefficient]")
        text, coef = item
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
            except ParseError as e:
                raise _Invalid(f"unparsable coefficient {coef!r}: {e}") from None
        parsed.append((t, coef))
    try:
        empty = _parse_coefficient(str(payload.get("empty")), names)
    except ParseError as e:
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


def _read(path: Path, method: Any, order: int) -> S.BSeries:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _Invalid(f"cannot read: {e}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Invalid(f"bad JSON: {e}") from None
    return decode(data, method, order)


def _write(path: Path, data: dict) -> None:
    """Atomic: a temporary file in the same directory, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"), ensure_ascii=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
    if path.exists():
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

"""Hypothesis fuzzing of the parser, number conversion, cache reader and CLI flags.

Fast runs use a few dozen examples per property; ``-m slow`` runs thousands.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bea import cache as C
from bea import methods as M
from bea.limits import LimitError
from bea.numbers import NumberError, PrecisionWarning, exact
from bea.parse import ParseError, parse_expr
from bea.registry import parse_parameter

X, Y = sp.symbols("x y", real=True)
NAMES = {"x": X, "y": Y}
ALPHABET = "xy0123456789.e+-*/^() ,[]_abcdefgilnopqrstuw'\"\\"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))


def _parse_ok(text: str) -> None:
    try:
        e = parse_expr(text, NAMES)
    except (ParseError, LimitError):
        return
    assert e.free_symbols <= {X, Y}
    assert not e.has(sp.zoo, sp.nan, sp.oo, sp.I)


def _exact_ok(v: float) -> None:
    if not math.isfinite(v):
        with pytest.raises(NumberError):
            exact(v)
        return
    r = exact(v)
    # correctly rounded back to float by Python's integer true division: sympy's own
    # float(Rational) can be one ulp off for subnormals (found by hypothesis at 1.698e-308)
    assert r.is_Rational and int(r.p) / int(r.q) == v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        r32 = exact(np.float32(v)) if abs(v) < 3e38 else None
    if r32 is not None:
        assert r32 == sp.Rational(*float(np.float32(v)).as_integer_ratio())


def _cache_ok(tmp_path_factory, blob: bytes) -> None:
    d = tmp_path_factory.mktemp("c")
    import os

    old = os.environ.get("BEA_CACHE_DIR")
    os.environ["BEA_CACHE_DIR"] = str(d)
    try:
        m = M.gd()
        path = C.cache_path(m, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = C.cached_modified_field(m, 2)
        assert got.equals(C._derive(m, 2, None))
    finally:
        if old is None:
            os.environ.pop("BEA_CACHE_DIR", None)
        else:
            os.environ["BEA_CACHE_DIR"] = old


def _param_ok(text: str) -> None:
    try:
        v = parse_parameter(text)
    except ValueError:
        return
    assert isinstance(v, sp.Expr)
    assert not v.has(sp.zoo, sp.nan, sp.oo)
    if isinstance(v, sp.Symbol):
        assert v.name != "h"


texts = st.text(alphabet=ALPHABET, max_size=60)
json_blobs = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                          lambda c: st.lists(c, max_size=4) | st.dictionaries(
                              st.text(max_size=6), c, max_size=4), max_leaves=20
                          ).map(lambda o: json.dumps(o).encode())


@FAST
@given(texts)
def test_parser_fast(text):
    _parse_ok(text)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_exact_fast(v):
    _exact_ok(v)


@FAST
@given(st.binary(max_size=200) | json_blobs)
def test_cache_reader_fast(tmp_path_factory, blob):
    _cache_ok(tmp_path_factory, blob)


@FAST
@given(texts)
def test_cli_parameter_fast(text):
    _param_ok(text)


@pytest.mark.slow
@SLOW
@given(texts)
def test_parser_slow(text):
    _parse_ok(text)


@pytest.mark.slow
@SLOW
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_exact_slow(v):
    _exact_ok(v)


@pytest.mark.slow
@SLOW
@given(st.binary(max_size=2000) | json_blobs)
def test_cache_reader_slow(tmp_path_factory, blob):
    _cache_ok(tmp_path_factory, blob)


@pytest.mark.slow
@SLOW
@given(texts)
def test_cli_parameter_slow(text):
    _param_ok(text)


def test_parser_refuses_what_python_only_warns_about():
    """'1if x else 2' makes CPython's tokenizer warn (invalid decimal literal) rather than
    fail: the parser refuses it with those words, and prints no SyntaxWarning."""
    x = sp.Symbol("x")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")   # record what escapes the parser
        for text in ("1if x else 2", "2or x", "0x1for x"):
            with pytest.raises(ParseError, match="cannot parse"):
                parse_expr(text, {"x": x})
        assert parse_expr("2*x", {"x": x}) == 2 * x
    assert not [w for w in seen if issubclass(w.category, SyntaxWarning)], seen

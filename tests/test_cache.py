"""Disk cache of modified-field series: round trip, corruption, hits, opt-out."""

from __future__ import annotations

import json
import warnings

import pytest
import sympy as sp

import games
from bea import cache as C
from bea import methods as M
from bea import series as S


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "bea-cache"
    monkeypatch.setenv("BEA_CACHE_DIR", str(d))
    monkeypatch.delenv("BEA_CACHE", raising=False)
    return d


@pytest.fixture
def derivations(monkeypatch):
    """Count calls of the derivation (``series.modified_field``)."""
    calls = []
    real = S.modified_field

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(S, "modified_field", counting)
    return calls


_DERIVE = S.modified_field   # uncounted reference


def _fresh(method, order):
    return _DERIVE(method.series(order + 1))


def _assert_identical(got, want):
    assert got.ncolors == want.ncolors and got.max_order == want.max_order
    assert got.equals(want)
    assert set(got.coeffs) == set(want.coeffs)
    for t in want.coeffs:
        assert got.to_sympy(t) == want.to_sympy(t), t


METHODS = {
    "gd": lambda: M.gd(),
    "rk4": lambda: M.rk4(),
    "heavy_ball_symbolic": lambda: M.heavy_ball(),
    "nesterov_half": lambda: M.nesterov(sp.Rational(1, 2)),
    "sgd3_avg": lambda: M.sgd(3, average_orderings=True),
    "simultaneous_symbolic": lambda: games.simultaneous(),
    "optimistic": lambda: games.optimistic((1, sp.Rational(1, 3))),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_round_trip(name, cache_dir, derivations):
    method = METHODS[name]()
    first = C.cached_modified_field(method, 3)
    path = C.cache_path(method, 3)
    assert path.exists() and path.parent == cache_dir
    data = json.loads(path.read_text())
    assert data["format"] == C.FORMAT_VERSION
    assert data["method"] == method.cache_key() and data["order"] == 3
    assert data["ncolors"] == method.ncolors and data["key"] == C.cache_key(method, 3)
    assert len(data["checksum"]) == 64
    assert all(isinstance(t, str) and isinstance(c, str) for t, c in data["trees"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # a valid file: no warning
        second = C.cached_modified_field(method, 3)
    assert len(derivations) == 1             # the second call read the file
    want = _fresh(method, 3)
    _assert_identical(first, want)
    _assert_identical(second, want)
    assert second.domain == want.domain


def test_symbolic_beta_coefficients_stay_symbolic(cache_dir):
    method = M.heavy_ball()
    C.cached_modified_field(method, 2)
    got = C.cached_modified_field(method, 2)
    beta = M.BETA
    from bea import trees as T
    # b([.]) / sigma = -(1 + beta) / (2 (1 - beta)^3)
    v = got.to_sympy(T.Tree.parse("[.]").id)
    assert sp.simplify(v + (1 + beta) / (2 * (1 - beta) ** 3)) == 0
    assert v.free_symbols == {beta}
    text = C.cache_path(method, 2).read_text()
    assert "beta" in text


def test_second_derivation_reads_cache_through_modified_equation(cache_dir, derivations):
    from bea import modified_equation
    from bea.modified import ModifiedEquation

    method = M.sgd(2)
    a = C.cached_modified_field(method, 2)
    b = C.cached_modified_field(method, 2)
    c = C.cached_modified_field(method, 3)        # another order: another entry
    assert len(derivations) == 2
    assert a.equals(b) and c.truncate(3).equals(a)
    assert len(list(cache_dir.glob("*.json"))) == 2
    # the result is what modified_equation uses (same series, same terms)
    me = ModifiedEquation(method, 2, series=b)
    assert [t.coefficient for t in me.terms(2)] == \
        [t.coefficient for t in modified_equation(method, 2).terms(2)]


def _corrupt_truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _corrupt_flip(path):
    raw = bytearray(path.read_bytes())
    i = raw.index(b'"trees"') + 20            # inside the tree list
    raw[i] ^= 0x01
    path.write_bytes(bytes(raw))


def _corrupt_checksum(path):
    data = json.loads(path.read_text())
    data["checksum"] = "0" * 64
    path.write_text(json.dumps(data))


def _write_resigned(path, data):
    # a consistent checksum over a bad entry: must still be caught on parsing
    payload = {k: v for k, v in data.items() if k != "checksum"}
    data["checksum"] = C._checksum(payload)
    path.write_text(json.dumps(data))


def _corrupt_coefficient_resigned(path):
    data = json.loads(path.read_text())
    data["trees"][0][1] = "__import__('os').system('echo hacked')"
    _write_resigned(path, data)


def _corrupt_tree_resigned(path):
    data = json.loads(path.read_text())
    data["trees"][0][0] = "[[.,"
    _write_resigned(path, data)


def _corrupt_version(path):
    data = json.loads(path.read_text())
    data["format"] = C.FORMAT_VERSION + 1
    path.write_text(json.dumps(data))


def _corrupt_other_key(path):
    # a valid file for another order under this name
    data = C.encode(M.heavy_ball(), 1, _fresh(M.heavy_ball(), 1))
    path.write_text(json.dumps(data))


CORRUPTIONS = {
    "truncate": (_corrupt_truncate, "bad JSON"),
    "flip_byte": (_corrupt_flip, "checksum mismatch|bad JSON"),
    "wrong_checksum": (_corrupt_checksum, "checksum mismatch"),
    "unparsable_coefficient": (_corrupt_coefficient_resigned, "unparsable coefficient"),
    "unparsable_tree": (_corrupt_tree_resigned, "unparsable tree"),
    "version": (_corrupt_version, "format version"),
    "other_key": (_corrupt_other_key, "key is"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_file_warns_and_rebuilds(kind, cache_dir, derivations):
    method = M.heavy_ball()
    want = C.cached_modified_field(method, 2)
    path = C.cache_path(method, 2)
    good = path.read_bytes()
    corrupt, reason = CORRUPTIONS[kind]
    corrupt(path)
    assert path.read_bytes() != good
    with pytest.warns(C.CacheWarning, match=rf"invalid .*({reason}).*rebuilding"):
        got = C.cached_modified_field(method, 2)
    _assert_identical(got, want)
    assert len(derivations) == 2
    # rebuilt and overwritten: valid again, no temporary files left behind
    assert path.read_bytes() == good
    assert [p.name for p in cache_dir.iterdir()] == [path.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.cached_modified_field(method, 2)
    assert len(derivations) == 2


def test_disabled_writes_nothing(tmp_path, monkeypatch, derivations):
    d = tmp_path / "never"
    monkeypatch.setenv("BEA_CACHE_DIR", str(d))
    monkeypatch.setenv("BEA_CACHE", "0")
    assert not C.enabled()
    a = C.cached_modified_field(M.gd(), 2)
    b = C.cached_modified_field(M.gd(), 2)
    assert a.equals(_fresh(M.gd(), 2)) and b.equals(a)
    assert len(derivations) == 2
    assert not d.exists()


def test_default_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("BEA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert C.cache_dir() == tmp_path / ".cache" / "bea"


def test_max_trees_still_enforced(cache_dir):
    C.cached_modified_field(M.sgd(2), 2)
    with pytest.raises(ValueError, match="colored trees"):
        C.cached_modified_field(M.sgd(2), 2, max_trees=3)


def test_unidentifiable_method_is_not_cached(cache_dir, derivations):
    class Anonymous(M.RungeKutta):
        __repr__ = object.__repr__

    m = Anonymous([[0]], [1], name="anon")
    C.cached_modified_field(m, 1)
    C.cached_modified_field(m, 1)
    assert len(derivations) == 2
    assert not cache_dir.exists()


def test_unwritable_directory_warns_and_still_returns(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("BEA_CACHE_DIR", str(blocker / "sub"))
    monkeypatch.delenv("BEA_CACHE", raising=False)
    with pytest.warns(C.CacheWarning, match="cannot write"):
        got = C.cached_modified_field(M.heun(), 2)
    assert got.equals(_fresh(M.heun(), 2))

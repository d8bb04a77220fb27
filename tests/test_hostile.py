"""Regression corpus for issue 14: each hostile input gets a named error or the right answer."""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np
import pytest
import sympy as sp

from bea import cache as C
from bea import limits as LIM
from bea import methods as M
from bea import modified_equation
from bea.cli import main
from bea.numbers import NumberError, PrecisionWarning, exact
from bea.parse import ParseError, parse_expr
from bea.symbol_table import SymbolError

X, Y = sp.symbols("x y", real=True)
NAMES = {"x": X, "y": Y}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BEA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BEA_CACHE", raising=False)


# 1. code execution ---------------------------------------------------------------------

def test_subs_string_never_executes(tmp_path):
    canary = tmp_path / "canary"
    payload = f"__import__('os').system('touch {canary}')"
    me = modified_equation(M.heavy_ball(), 1)
    with pytest.raises(NumberError):
        me.evaluate("x**2", "x", subs={"beta": payload})
    with pytest.raises(NumberError):
        M.heavy_ball(payload)
    with pytest.raises(NumberError):
        M.heavy_ball().bind(beta=payload)
    assert not canary.exists()


def test_step_symbol_string_never_parsed(tmp_path):
    # evaluate(..., summed=True, h=...) takes a sympy symbol or a number; a string was
    # once handed to sympy.sympify
    from bea import modified_loss

    canary = tmp_path / "canary"
    payload = f"__import__('os').system('touch {canary}')"
    for obj in (modified_equation(M.gd(), 1), modified_loss(M.gd(), 1)):
        with pytest.raises(TypeError, match="not a string"):
            obj.evaluate("x**2", "x", summed=True, h=payload)
        with pytest.raises(TypeError, match=r"sympy.Symbol\('k'\)"):
            obj.evaluate("x**2", "x", summed=True, h="k")
    assert not canary.exists()
    k = sp.Symbol("k")
    assert modified_equation(M.gd(), 1).evaluate("x**2", "x", summed=True, h=k)[0].has(k)


# 2. silent wrong answers ---------------------------------------------------------------

def test_plain_user_symbols_match_by_name():
    x, y = sp.symbols("x y")               # no assumptions
    got = modified_equation(M.gd(), 1).evaluate((x * y - 1) ** 2 / 2, "x,y")
    want = modified_equation(M.gd(), 1).evaluate("(x*y - 1)**2/2", "x,y")
    assert got == want and any(v != 0 for v in got[0])


def test_variable_named_like_parameter_refused():
    with pytest.raises(SymbolError, match="beta"):
        modified_equation(M.heavy_ball(), 1).evaluate("x**2 + beta", "x,beta")


@pytest.mark.parametrize("bad", ["h", "nan", "inf", "1e99999999"])
def test_cli_beta_refused(bad, capsys):
    assert main(["derive", "heavy-ball", "--beta", bad, "--order", "1"]) == 2
    assert "bea: error:" in capsys.readouterr().err


def test_subs_string_key_is_used():
    me = modified_equation(M.heavy_ball(), 1)
    by_name = me.evaluate("x**2", "x", subs={"beta": sp.Rational(1, 2)})
    direct = modified_equation(M.heavy_ball(sp.Rational(1, 2)), 1).evaluate("x**2", "x")
    assert by_name == direct
    with pytest.raises(SymbolError, match="parameters are: beta"):
        me.evaluate("x**2", "x", subs={"betta": 0.5})


def test_numpy_floats():
    assert modified_equation(M.heavy_ball(np.float64(0.9)), 1).coefficient("[.]") == \
        modified_equation(M.heavy_ball(0.9), 1).coefficient("[.]")
    with pytest.warns(PrecisionWarning, match="24-bit"):
        b = M.heavy_ball(np.float32(0.9))
    f1 = modified_equation(b, 1).coefficient("[.]")
    beta = sp.Rational(*float(np.float32(0.9)).as_integer_ratio())
    assert f1 == -(1 + beta) / (2 * (1 - beta) ** 3) / 1  # exact, not 24-bit arithmetic
    with pytest.warns(PrecisionWarning):
        exact(sp.Float(0.9, 5))


def test_method_identity_includes_assumptions(monkeypatch):
    monkeypatch.setenv("BEA_CACHE", "0")
    a = M.heavy_ball(sp.Symbol("beta"))
    b = M.heavy_ball(sp.Symbol("beta", positive=True))
    assert a != b and a.cache_key() != b.cache_key()
    sa, sb = a.series(2), b.series(2)
    assert sa.domain != sb.domain or sa is not sb


@pytest.mark.parametrize("loss", ["1/0", "log(0)*x", "sqrt(-1)*x**2"])
def test_undefined_losses_refused(loss):
    with pytest.raises(ParseError):
        parse_expr(loss, NAMES)


def test_tiny_and_huge_literals_exact():
    assert parse_expr("1e-400*y", NAMES) == sp.Rational(1, 10**400) * Y
    assert parse_expr("1e309*x", NAMES) == sp.Integer(10) ** 309 * X


# 3. crashes and hangs ------------------------------------------------------------------

def test_long_and_deep_expressions():
    assert parse_expr("+".join(["x"] * 999), NAMES) == 999 * X
    for s in ["-" * 1999 + "x", "x" + "**x" * 300, "(" * 150 + "x" + ")" * 150]:
        with pytest.raises(LIM.LimitError):
            parse_expr(s, NAMES)


@pytest.mark.parametrize("s", ["x*9**9**9", "x*2**10**10", "(x+y)**100000"])
def test_towers_and_magnitudes(s):
    t = time.perf_counter()
    with pytest.raises(LIM.LimitError):
        parse_expr(s, NAMES)
    assert time.perf_counter() - t < 5


def test_deep_tree_string():
    from bea.trees import Tree

    with pytest.raises(LIM.LimitError):
        Tree.parse("[" * 5000 + "." + "]" * 5000)


@pytest.mark.parametrize("argv", [["derive", "gd", "--order", "1000000"],
                                  ["derive", "sgd", "--batches", "1000000"],
                                  ["verify", "gd", "--order", "8"]])
def test_cli_costs_refused(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "trees" in err and ("--max-trees" in err or "no limit" in err or "fewer" in err)


def test_points_refused():
    with pytest.raises(LIM.LimitError, match="points"):
        LIM.check_points(10_000_000, 5, 4, 2)


# 4. cache reader -----------------------------------------------------------------------

def _entry():
    m = M.gd()
    modified_equation(m, 3)
    return m, C.cache_path(m, 3)


def test_cache_fifo_and_symlink_and_deep(tmp_path):
    m, path = _entry()
    want = modified_equation(m, 3).series
    for make in ("fifo", "zero", "deep"):
        path.unlink()
        if make == "fifo":
            os.mkfifo(path)
        elif make == "zero":
            os.symlink("/dev/zero", path)
        else:
            path.write_text("[" * 100000)
        with pytest.warns(C.CacheWarning):
            got = C.cached_modified_field(m, 3)
        assert got.equals(want)


def test_cache_resigned_changed_coefficient_caught():
    m, path = _entry()
    data = json.loads(path.read_text())
    data["trees"][-1][1] = "12345"
    payload = {k: v for k, v in data.items() if k != "checksum"}
    data["checksum"] = C._checksum(payload)
    path.write_text(json.dumps(data))
    with pytest.warns(C.CacheWarning, match="re-derivation|outside"):
        C.cached_modified_field(m, 3)


def test_cache_resigned_tower_refused():
    m, path = _entry()
    data = json.loads(path.read_text())
    data["trees"][0][1] = "9**9**9"
    data["checksum"] = C._checksum({k: v for k, v in data.items() if k != "checksum"})
    path.write_text(json.dumps(data))
    t = time.perf_counter()
    with pytest.warns(C.CacheWarning):
        C.cached_modified_field(m, 3)
    assert time.perf_counter() - t < 10


def test_derive_printing_identical_fresh_and_cached(capsys):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bea.cli", "derive", "gd", "--order", "4"]
    env = dict(os.environ)
    a = subprocess.run(cmd, capture_output=True, text=True, env=env).stdout
    b = subprocess.run(cmd, capture_output=True, text=True, env=env).stdout
    assert a == b and "f_4" in a


# 5. lost work --------------------------------------------------------------------------

def test_unwritable_plot_fails_before_work(tmp_path, capsys):
    bad = tmp_path / "file"
    bad.write_text("")
    t = time.perf_counter()
    assert main(["verify", "gd", "--order", "1", "--plot", str(bad / "x.png")]) == 2
    assert time.perf_counter() - t < 5
    assert "--plot" in capsys.readouterr().err


def test_bind_equals_numeric():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hb = M.heavy_ball().bind(beta=0.9)
    assert hb == M.heavy_ball(0.9) and hb.name == "heavy_ball(beta=9/10)"


@pytest.mark.slow
def test_sigint_during_verify_exits_130(tmp_path):
    import signal
    import subprocess
    import sys

    for delay in (4, 8):
        p = subprocess.Popen([sys.executable, "-m", "bea.cli", "verify", "gd", "--order", "3",
                              "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        assert p.returncode in (0, 130), err        # never a segfault (-11)
        if p.returncode == 130:
            assert "interrupted" in err and "Traceback" not in err

"""The bea command line and the safe loss parser."""

from __future__ import annotations

import pytest
import sympy as sp

from bea.cli import main
from bea.parse import ParseError, parse_expr, parse_vars


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_derive_gd(capsys):
    code, out, _ = run(capsys, "derive", "gd", "--order", "3")
    assert code == 0
    assert "f_1 = -(1/2) H grad L" in out
    assert "f_2 = -(1/12) D^3L[grad L, grad L] - (1/3) H^2 grad L" in out


def test_derive_rk4_latex(capsys):
    code, out, _ = run(capsys, "derive", "rk4", "--order", "4", "--latex")
    assert code == 0 and out.startswith(r"\tilde f = -\nabla L + h^{4}")


def test_derive_on_loss(capsys):
    code, out, _ = run(capsys, "derive", "gd", "--order", "1", "--loss", "(x*y - 1)**2/2",
                       "--vars", "x,y")
    assert code == 0 and "f_1[x] = " in out and "f_1[y] = " in out and "Matrix" not in out


def test_derive_momentum_sgd_games(capsys):
    assert run(capsys, "derive", "heavy-ball", "--beta", "beta", "--order", "2")[0] == 0
    code, out, _ = run(capsys, "derive", "sgd", "--batches", "3", "--order", "2")
    assert code == 0 and "grad L_3" in out
    code, out, _ = run(capsys, "derive", "simultaneous", "--order", "2")
    assert code == 0 and "H_xy L_1 grad_y L_2" in out
    code, out, _ = run(capsys, "derive", "alternating", "--order", "2", "--lr", "1,2")
    assert code == 0


def test_derive_loss_form(capsys):
    code, out, _ = run(capsys, "derive", "gd", "--order", "1", "--loss-form")
    assert code == 0 and "L + (1/4) h |grad L|^2" in out


@pytest.mark.parametrize("bad", ["__import__('os')", "os.system('ls')", "x.__class__",
                                 "open('f')", "lambda: 1", "[x for x in y]", "z + 1"])
def test_loss_whitelist(capsys, bad):
    code, _, err = run(capsys, "derive", "gd", "--order", "1", "--loss", bad, "--vars", "x,y")
    assert code == 2 and "error" in err


def test_unknown_method_suggests(capsys):
    code, _, err = run(capsys, "derive", "nesterv")
    assert code == 2 and "nesterov" in err


def _listed_methods(path):
    """The backticked names of the ``**Methods**`` paragraph of a markdown file."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / path).read_text()
    para = text[text.index("**Methods**"):].split("\n\n")[0]
    para = para[para.index("):") + 2:]          # skip the usage in parentheses
    return set(re.findall(r"`([a-z0-9-]+)`", para))


def test_method_lists_agree(capsys):
    """Issue 13: the CLI's method list, the registry and the README/docs lists are one."""
    import re

    from bea.registry import names

    with pytest.raises(SystemExit):
        main(["derive", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"one of: (.*?) options:", text).group(1)
    cli = {"".join(n.split()) for n in listed.split(",")}
    assert cli == set(names())
    assert _listed_methods("README.md") == set(names())
    assert _listed_methods("docs/cli.md") == set(names())


def test_parser_builds_expressions():
    x, y = parse_vars("x,y")
    e = parse_expr("(x*y - 1)^2/2 + sin(x) + 0.5*y", {"x": x, "y": y})
    assert sp.simplify(e - ((x * y - 1) ** 2 / 2 + sp.sin(x) + y / 2)) == 0
    with pytest.raises(ParseError, match="unknown name"):
        parse_expr("x + w", {"x": x})
    with pytest.raises(ParseError):
        parse_vars("x,__y")


def test_verify_command(capsys, tmp_path):
    import jax

    jax.config.update("jax_enable_x64", True)
    png = tmp_path / "v.png"
    code, out, _ = run(capsys, "verify", "gd", "--order", "1", "--plot", str(png), "--quiet")
    assert code == 0 and png.exists()
    assert "order 1: global 2.0" in out


def test_verify_command_points(capsys):
    import jax

    jax.config.update("jax_enable_x64", True)
    code, out, _ = run(capsys, "verify", "gd", "--order", "1", "--points", "3", "--quiet")
    assert code == 0 and "3 initial point(s)" in out and "median over initial points" in out
    with pytest.raises(SystemExit):
        run(capsys, "verify", "gd", "--points", "0")
    assert "whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["heun"], ["explicit-midpoint"], ["rk4", "--order", "4"]])
def test_verify_high_order_methods_pass(capsys, tmp_path, monkeypatch, argv):
    """Issue 13, defect 2: expected slopes use the method's order (rk4: 4, 4, 4, 4, 5);
    defect 4: --plot names the file by method and draws global and local errors."""
    import jax

    jax.config.update("jax_enable_x64", True)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "verify", *argv, "--quiet", "--plot")
    assert code == 0, out
    from bea.cli_verify import plot_file_name
    from bea.registry import get_method

    name = plot_file_name(get_method(argv[0]).name)
    assert name.startswith("bea-verify-") and (tmp_path / name).exists()
    assert not (tmp_path / "bea-verify.png").exists()

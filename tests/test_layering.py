"""Layering: kernels <- bea <- games, one way; the symbolic part of bea loads no JAX.

Each check runs in a fresh interpreter where the higher packages are made unimportable by
a meta-path finder that raises for them, so an import of ``games`` from ``bea`` (or of
``bea`` from ``kernels``) anywhere, at module level or inside a function run by the
check, fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"layering: {{name}} must not be imported here")
        return None
sys.meta_path.insert(0, Block())
"""


def _run(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    src = BLOCKER.format(blocked=list(blocked)) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def _modules(package: str) -> list[str]:
    base = ROOT / package
    out = []
    for p in sorted(base.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def test_kernels_never_imports_bea_or_games():
    r = _run(f"""
        import importlib
        for m in {_modules("kernels")!r}:
            importlib.import_module(m)
        """, ("bea", "games"))
    assert r.returncode == 0, r.stderr


def test_bea_never_imports_games():
    # every module of bea, plus the code paths that used to reach games inside functions:
    # the optax transforms, the method registry and the experiment catalogue
    r = _run(f"""
        import importlib
        for m in {_modules("bea")!r}:
            importlib.import_module(m)
        import bea, bea.optax, bea.registry, bea.experiments
        bea.registry.available()
        bea.experiments.available_experiments()
        print(sorted(bea.optax.__all__))
        """, ("games",))
    assert r.returncode == 0, r.stderr
    assert "game_drift_regularizer" not in r.stdout


def test_blocker_catches_a_hidden_import():
    # the check itself can fail: a function-body import of games is caught
    r = _run("""
        def f():
            import games  # noqa: F401
        f()
        """, ("games",))
    assert r.returncode != 0 and "layering: games" in r.stderr


SYMBOLIC = ["bea", "bea.methods", "bea.modified", "bea.modified_loss", "bea.series",
            "bea.trees", "bea.render", "bea.parse", "bea.registry", "bea.experiments",
            "bea.cli"]


def test_symbolic_bea_does_not_import_jax():
    r = _run(f"""
        import importlib
        for m in {SYMBOLIC!r}:
            importlib.import_module(m)
        import bea
        bea.modified_equation(bea.methods.gd(), 2)
        bea.modified_loss(bea.methods.gd(), 1)
        bea.modifying_equation(bea.methods.gd(), 1)
        """, ("jax", "jaxlib", "diffrax", "optax", "equinox", "games"))
    assert r.returncode == 0, r.stderr


def test_bea_help_does_not_import_jax():
    r = _run("""
        import sys
        from bea.cli import main
        try:
            main(["--help"])
        except SystemExit as e:
            assert e.code == 0
        """, ("jax", "jaxlib", "diffrax", "optax", "equinox"))
    assert r.returncode == 0, r.stderr
    assert "derive" in r.stdout and "verify" in r.stdout


def test_public_surface_lists_lazy_jax_names():
    import bea

    for name in ("verify", "compile_equation", "optax", "Dynamics", "VerificationReport",
                 "modified_equation", "modifying_equation"):
        assert name in bea.__all__
    assert callable(bea.verify)
    assert bea.verification.verify is bea.verify


@pytest.mark.parametrize("package", ["games"])
def test_games_imports_with_everything_below(package):
    r = _run(f"import {package}, games.optax", ())
    assert r.returncode == 0, r.stderr

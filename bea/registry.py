"""Methods by name, for the command line and configs.

Other packages add methods through the ``bea.methods`` entry-point group (``games``
registers its two-player updates this way), so ``bea`` never imports them directly.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import sympy

from . import methods as M
from .parse import ParseError

Factory = Callable[..., M.Method]

_BUILTIN: dict[str, Factory] = {
    "gd": lambda **kw: M.gd(),
    "explicit-midpoint": lambda **kw: M.explicit_midpoint(),
    "heun": lambda **kw: M.heun(),
    "rk4": lambda **kw: M.rk4(),
    "extragradient": lambda **kw: M.extragradient(),
    "proximal-point": lambda **kw: M.proximal_point(),
    "sgd": lambda batches=2, **kw: M.sgd(batches=batches),
    "heavy-ball": lambda beta=M.BETA, **kw: M.heavy_ball(beta),
    "nesterov": lambda beta=M.BETA, **kw: M.nesterov(beta),
}

_PLUGINS: dict[str, Factory] | None = None


def register(name: str, factory: Factory) -> None:
    """Make ``factory(**options)`` available as ``name`` (hyphens and underscores alike)."""
    _BUILTIN[_norm(name)] = factory


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def available() -> dict[str, Factory]:
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = {}
        for ep in entry_points(group="bea.methods"):
            try:
                provider = ep.load()
            except Exception:  # noqa: BLE001 - a broken plugin must not break bea
                continue
            for name, fac in provider().items():
                _PLUGINS[_norm(name)] = fac
    return {**_PLUGINS, **_BUILTIN}


def get_method(name: str, **options: Any) -> M.Method:
    """The method called ``name`` with keyword ``options`` (``batches``, ``beta``, ``lr``...)."""
    table = available()
    key = _norm(name)
    if key not in table:
        close = difflib.get_close_matches(key, table, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown method {name!r}.{hint} Available: {', '.join(sorted(table))}")
    return table[key](**{k: v for k, v in options.items() if v is not None})


def parse_parameter(text: str) -> Any:
    """A method parameter from the command line: a number (``0.9``, ``1/2``) or a symbol
    name (``beta``); nothing else is accepted."""
    text = text.strip()
    if text.isidentifier():
        return sympy.Symbol(text, positive=True)
    try:
        if "/" in text:
            p, q = text.split("/")
            return sympy.Rational(int(p), int(q))
        return sympy.Rational(text) if any(c in text for c in ".eE") else sympy.Integer(int(text))
    except (ValueError, TypeError):
        raise ParseError(f"parameter {text!r} is neither a number nor a symbol name") from None

"""Methods by name: the one table from names to methods (command line, configs, tests).

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
    "sgd": lambda batches=2, average_orderings=False, **kw: M.sgd(batches, average_orderings),
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


def parse_parameter(text: str, what: str = "parameter") -> Any:
    """A method parameter from the command line: a number (``0.9``, ``1/2``, ``1e-3``,
    exact) or a symbol name (``beta``); ``nan``/``inf``, ``h`` (the step size), function
    names and anything else are refused (:mod:`bea.numbers`, :mod:`bea.symbol_table`)."""
    from .numbers import NumberError
    from .parse import parse_number
    from .symbol_table import check_name

    text = text.strip()
    if text.isidentifier() and text.lower() not in ("nan", "inf", "infinity", "oo"):
        return sympy.Symbol(check_name(text, what), positive=True)
    try:
        return parse_number(text, what=what)
    except NumberError as e:
        raise ParseError(f"{e} (or a symbol name such as beta)") from None


def names() -> list[str]:
    """Every method name the command line accepts (built-ins and plugins), sorted."""
    return sorted(available())

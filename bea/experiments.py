"""The ``bea reproduce`` catalogue: experiments by name, loaded only when run.

An experiment is a function ``run(out, *, large=False, progress=True, resume=False) ->
str``: it writes its figures, tables and JSON into the folder ``out`` (atomically, through
:mod:`bea.files`), keeps finished units in a :class:`bea.files.Checkpoint` so that
``resume=True`` continues an interrupted run, and returns the text report (table and the
conclusion that follows from its numbers) that the command line prints.

``bea``'s own labs are listed here as ``"module:function"`` targets, so listing them never
imports JAX; other packages (``games``) add theirs through the ``bea.experiments``
entry-point group, whose entries are zero-argument callables returning a list of
:class:`Experiment`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points

__all__ = ["Experiment", "available_experiments", "get_experiment"]


@dataclass(frozen=True)
class Experiment:
    """One ``bea reproduce`` experiment: ``name``, a one-line ``summary`` and the
    ``target`` ``"package.module:function"`` that runs it."""

    name: str
    summary: str
    target: str

    def load(self) -> Callable[..., str]:
        module, _, attr = self.target.partition(":")
        return getattr(import_module(module), attr)


_BUILTIN: tuple[Experiment, ...] = (
    Experiment("eos", "edge of stability: sharpness at 2/eta, heavy-ball threshold, "
               "normalised GD and GD on sqrt(L) on the manifold", "bea.dynamics.eos:reproduce"),
    Experiment("svag", "SVAG and the SDE of SGD: stationary variance vs 1/l, linear scaling "
               "rule", "bea.dynamics.sde:reproduce"),
    Experiment("manifold", "noisy GD on the zero-loss manifold: label noise, dropout, "
               "minibatch noise on their time scales", "bea.dynamics.manifold:reproduce"),
    Experiment("margins", "steepest descent (l2, sign, coordinate) and the margin each "
               "maximises", "bea.dynamics.margins:reproduce"),
)

_CACHE: dict[str, Experiment] | None = None


def _module_exists(name: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(name) is not None
    except ImportError:
        return False


def available_experiments() -> dict[str, Experiment]:
    """Every experiment by name: ``bea``'s labs plus those other packages register."""
    global _CACHE
    if _CACHE is None:
        # a lab whose module is not in this installation is not offered
        table = {e.name: e for e in _BUILTIN if _module_exists(e.target.partition(":")[0])}
        for ep in entry_points(group="bea.experiments"):
            try:
                provided = ep.load()()
            except Exception:  # noqa: BLE001 - a broken plugin must not break bea
                continue
            for e in provided:
                table.setdefault(e.name, e)
        _CACHE = table
    return dict(_CACHE)


def get_experiment(name: str) -> Experiment:
    table = available_experiments()
    key = name.strip().lower().replace("_", "-")
    if key not in table:
        close = difflib.get_close_matches(key, table, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown experiment {name!r}.{hint} Available: "
                         f"{', '.join(sorted(table))}")
    return table[key]

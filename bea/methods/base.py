"""The :class:`Method` interface: a B-series and a numeric step; exact method parameters."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import sympy

# numbers and symbol_table are sympy-only and import no method: imported here, not
# inside the functions (their first import used to land in a user's first timed call)
from .. import series as S
from ..numbers import check_finite_real, exact
from ..symbol_table import bind_method, check_name, method_identity

Number = Any  # int, float, Fraction, sympy expression or symbol

#: the default symbolic momentum parameter
BETA = sympy.Symbol("beta", positive=True)


def as_parameter(x: Number) -> sympy.Expr:
    """A method parameter or tableau entry: an exact number (:func:`bea.numbers.exact`:
    floats as the decimal typed, float32 exactly with a warning, nan/inf refused) or a
    sympy expression in named symbols (not ``h``, the step size)."""
    if isinstance(x, str) and x.strip().isidentifier():
        raise TypeError(f"use sympy.Symbol({x.strip()!r}) (or bea.methods.symbols) for a "
                        f"symbolic parameter")
    if isinstance(x, sympy.Expr) and x.free_symbols:
        for sym in x.free_symbols:
            check_name(getattr(sym, "name", str(sym)), "method parameter")
        floats = x.atoms(sympy.Float)
        if floats:
            x = x.xreplace({f: exact(f, "a number in a method parameter") for f in floats})
        return check_finite_real(x, "method parameter")
    return exact(x, "method parameter")


def _numeric(x: sympy.Expr) -> float | None:
    return float(x) if x.is_number else None


class Method(abc.ABC):
    """An update rule on ``ncolors`` fields.

    Subclasses implement :meth:`_build_series` and :meth:`step`.  ``color_names`` label the
    fields in printed output (``("",)`` for one field, batch numbers, player names).
    """

    name: str = "method"
    ncolors: int = 1
    color_names: tuple[str, ...] = ("",)
    #: number of previous iterates a step needs besides the current one (multistep).
    history: int = 0
    #: names of the parameter blocks when field ``c`` acts on block ``c`` only (the players
    #: of a game, any number of them): ``params = (p_1, .., p_n)``, field ``c`` is
    #: ``-grad_c L_c``; None when every field acts on all parameters.
    blocks: tuple[str, ...] | None = None

    def series(self, max_order: int, max_trees: int | None = None) -> S.BSeries:
        """B-series of one step (of the underlying one-step method for multistep ones)."""
        check_order(max_order)
        S.check_size(max_order, self.ncolors, max_trees)
        return _cached_series(self, max_order)

    @abc.abstractmethod
    def _build_series(self, max_order: int) -> S.BSeries: ...

    @property
    def parameters(self) -> tuple[sympy.Symbol, ...]:
        """Free symbols of the method (``beta``, rates, ...)."""
        return ()

    @abc.abstractmethod
    def step(self, fields: Sequence[Callable], state: Any, h: Any) -> Any:
        """One numerical update.  ``fields[c](params) -> pytree``; ``state`` is the
        params (one-step) or a tuple ``(x_n, x_{n-1}, ...)`` (multistep)."""

    def cache_key(self) -> str:
        """Structural identity (class, repr, parameters with their assumptions)."""

        return method_identity(self)

    def bind(self, **values: Number) -> Method:
        """This method with symbolic parameters fixed: ``heavy_ball().bind(beta=0.9)``
        (names matched by name; values exact, see :func:`bea.symbol_table.bind_method`)."""

        return bind_method(self, **values)

    def __hash__(self) -> int:
        return hash(self.cache_key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Method) and other.cache_key() == self.cache_key()

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=64)
def _cached_series(method: Method, max_order: int) -> S.BSeries:
    return method._build_series(max_order)


def block_names(method: Any) -> tuple[str, ...] | None:
    """``method.blocks``: the parameter blocks its fields act on, one each (None: every
    field acts on all parameters)."""
    return getattr(method, "blocks", None)


def check_order(order: object) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")



#: short internal name of :func:`as_parameter`
_sym = as_parameter


def symbols(names: str) -> Any:
    """``sympy.symbols`` with real, positive assumptions (rates, momentum)."""
    return sympy.symbols(names, positive=True)

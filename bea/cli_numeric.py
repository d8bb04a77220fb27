"""``bea derive <optimiser> --numeric``: the numeric modified field of an optax optimiser.

Prints the terms ``f_0, .., f_p`` of ``bea.numeric_modified_equation`` (state slaved to
the parameters, see :mod:`bea.numeric.equation`) at one point of a loss written in
coordinates::

    bea derive adam --numeric --order 1 --loss "(x*y - 1)**2/2" --vars x,y --at 0.3,-0.2

The loss string is read by the whitelisting parser (:func:`bea.parse.parse_expr`) and the
resulting sympy tree is translated node by node into ``jax.numpy`` (:func:`jax_loss`);
nothing the user types is evaluated.  JAX and optax are imported only when the command
runs, so ``bea --help`` stays light.

Optimisers (:data:`OPTIMISERS`), ``h`` the learning rate:

* ``sgd``: ``optax.sgd(h)``, ``x' = x - h g`` (full batch; ``f_0 = -g``);
* ``momentum`` (``heavy-ball``): ``optax.sgd(h, momentum=beta)``, ``t' = g + beta t``,
  ``x' = x - h t'`` (``f_0 = -g/(1-beta)``);
* ``nesterov``: ``optax.sgd(h, momentum=beta, nesterov=True)``;
* ``adam``: ``optax.adam(h, b1, b2, eps)`` (bias corrections off: the long-run regime;
  ``f_0 = -g/(|g| + eps)``);
* ``rmsprop``: ``optax.rmsprop(h, decay, eps)`` (``eps`` inside the root, optax's default:
  ``f_0 = -g/sqrt(g^2 + eps)``);
* ``lion``: ``optax.lion(h, b1, b2)``: refused, its update is ``sign(...)``, not smooth.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .parse import ParseError, parse_expr, parse_number, parse_vars

__all__ = ["OPTIMISERS", "NUMERIC_DEFAULT_ORDER", "NumericOptimiser", "add_numeric_args",
           "cmd_derive_numeric", "jax_loss", "optimiser_factory", "parse_point"]

#: ``--order`` of ``derive --numeric`` when none is given (order 2 of Adam compiles for a
#: minute, order 3 for many; order 1 is Adam's first implicit term)
NUMERIC_DEFAULT_ORDER = 1


@dataclass(frozen=True)
class NumericOptimiser:
    """One optimiser of ``derive --numeric``: its optax constructor name, the command-line
    parameters it takes (with defaults) and the keyword each one becomes."""

    optax_name: str
    parameters: dict[str, float] = field(default_factory=dict)
    keywords: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)


OPTIMISERS: dict[str, NumericOptimiser] = {
    "sgd": NumericOptimiser("sgd"),
    "momentum": NumericOptimiser("sgd", {"beta": 0.9}, {"beta": "momentum"}),
    "nesterov": NumericOptimiser("sgd", {"beta": 0.9}, {"beta": "momentum"},
                                 {"nesterov": True}),
    "adam": NumericOptimiser("adam", {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "rmsprop": NumericOptimiser("rmsprop", {"decay": 0.9, "eps": 1e-8}),
    "lion": NumericOptimiser("lion", {"b1": 0.9, "b2": 0.99}),
}
_ALIASES = {"heavy-ball": "momentum", "heavy_ball": "momentum", "heavyball": "momentum"}
#: every optimiser parameter flag of ``derive --numeric``
PARAMETER_FLAGS = ("beta", "b1", "b2", "eps", "decay")


def add_numeric_args(p: argparse.ArgumentParser) -> None:
    """The flags ``derive`` takes only with ``--numeric`` (``--beta``, ``--lr``,
    ``--order``, ``--loss``, ``--vars`` are shared with the symbolic ``derive``)."""
    p.add_argument("--numeric", action="store_true", help=(
        "numeric modified field of the optax optimiser (sgd, momentum, nesterov, adam, "
        "rmsprop; lion is refused) at the point --at of --loss; --lr also prints "
        "f~ = f_0 + h f_1 + ... at h = --lr"))
    p.add_argument("--at", help="the point, one number per variable, e.g. 0.3,-0.2 "
                   "(with --numeric)")
    p.add_argument("--b1", help="Adam/Lion first-moment decay (default 0.9)")
    p.add_argument("--b2", help="Adam second-moment decay (default 0.999; Lion 0.99)")
    p.add_argument("--eps", help="Adam/RMSProp eps (default 1e-8)")
    p.add_argument("--decay", help="RMSProp decay (default 0.9)")


def _number(text: str, flag: str) -> float:
    from .numbers import NumberError

    try:
        return float(parse_number(text, flag))
    except (NumberError, TypeError, OverflowError) as e:
        raise ParseError(f"{flag} {text!r}: {e}") from None


def resolve_name(name: str) -> str:
    """The canonical optimiser name, or a :class:`ParseError` listing the known ones."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in OPTIMISERS:
        known = ", ".join(list(OPTIMISERS) + sorted(_ALIASES))
        raise ParseError(f"unknown optimiser {name!r} for --numeric: known are {known}")
    return key


def optimiser_factory(name: str, values: dict[str, float]) -> tuple[Callable, dict]:
    """``(h -> optax transformation, parameters used)`` for an optimiser of
    :data:`OPTIMISERS`; ``values`` overrides its defaults (a parameter it does not take is
    refused by name)."""
    import optax

    spec = OPTIMISERS[resolve_name(name)]
    for k in values:
        if k not in spec.parameters:
            takes = ", ".join(f"--{p}" for p in spec.parameters) or "no parameters"
            raise ParseError(f"--{k} does not apply to {name} (it takes {takes})")
    params = {**spec.parameters, **values}
    kwargs = {spec.keywords.get(k, k): v for k, v in params.items()}
    kwargs.update(spec.fixed)
    make = getattr(optax, spec.optax_name)
    return (lambda h: make(h, **kwargs)), params


def parse_point(text: str | None, n: int) -> list[float]:
    """``"0.3,-0.2"`` -> ``[0.3, -0.2]``, one finite number per variable."""
    if text is None:
        raise ParseError("--numeric needs the point: --at 0.3,-0.2 (one number per variable)")
    parts = [t for t in text.split(",") if t.strip()]
    if len(parts) != n:
        raise ParseError(f"--at {text!r} gives {len(parts)} numbers for {n} variables")
    return [_number(t, "--at") for t in parts]


# ----------------------------------------------------------------------------- loss
def jax_loss(expr: Any, variables: tuple) -> Callable:
    """``x -> L(x)`` in ``jax.numpy`` for a sympy expression built by the whitelisting
    parser (``x`` a 1-d array, one entry per variable), translated node by node: numbers,
    the variables, ``+ * **``, ``pi``, ``E`` and the functions of :data:`bea.parse.FUNCTIONS`.
    Any other node raises :class:`ParseError` (nothing is evaluated)."""
    import jax.numpy as jnp
    import sympy

    index = {v: i for i, v in enumerate(variables)}
    unary = {sympy.sin: jnp.sin, sympy.cos: jnp.cos, sympy.tan: jnp.tan,
             sympy.exp: jnp.exp, sympy.log: jnp.log, sympy.tanh: jnp.tanh,
             sympy.cosh: jnp.cosh, sympy.sinh: jnp.sinh, sympy.atan: jnp.arctan,
             sympy.Abs: jnp.abs}

    def build(e: Any) -> Callable:
        if e.is_Symbol:
            if e not in index:
                raise ParseError(f"{e} is not one of the variables")
            i = index[e]
            return lambda x: x[i]
        if e.is_Number or e in (sympy.pi, sympy.E):
            c = float(e)
            return lambda x: jnp.asarray(c, x.dtype)
        args = [build(a) for a in e.args]
        if e.is_Add:
            return lambda x: sum((a(x) for a in args[1:]), args[0](x))
        if e.is_Mul:
            def mul(x):
                out = args[0](x)
                for a in args[1:]:
                    out = out * a(x)
                return out
            return mul
        if e.is_Pow:
            b, p = args
            ex = e.args[1]
            if ex.is_Integer:
                k = int(ex)
                return lambda x: b(x) ** k
            return lambda x: b(x) ** p(x)
        fn = unary.get(type(e))
        if fn is not None and len(args) == 1:
            a = args[0]
            return lambda x: fn(a(x))
        raise ParseError(f"{type(e).__name__} is not supported by --numeric")

    f = build(expr)
    return lambda x: f(x)


# ----------------------------------------------------------------------------- command
def _values(args: argparse.Namespace) -> dict[str, float]:
    return {k: _number(getattr(args, k), f"--{k}") for k in PARAMETER_FLAGS
            if getattr(args, k, None) is not None}


def _fmt(v: float) -> str:
    """The shortest text that reads back as the same float (``repr``)."""
    return repr(float(v))


def cmd_derive_numeric(args: argparse.Namespace) -> int:
    """``bea derive <optimiser> --numeric``: print ``f_0..f_p`` at ``--at`` (and ``f~`` at
    ``h = --lr``).  Input errors are :class:`ValueError` s with a message (the numeric
    engine's named errors included, e.g. Lion's non-smooth ``sign``)."""
    name = resolve_name(args.method)
    if args.loss is None or args.vars is None:
        raise ParseError("--numeric needs --loss and --vars, e.g. --loss '(x*y - 1)**2/2' "
                         "--vars x,y --at 0.3,-0.2")
    if ";" in args.loss or ";" in args.vars:
        raise ParseError("--numeric takes one loss in one set of variables (no ';')")
    if args.loss_form or args.latex or args.batches is not None or args.steps:
        bad = [f for f, on in (("--loss-form", args.loss_form), ("--latex", args.latex),
                               ("--batches", args.batches is not None),
                               ("--steps", bool(args.steps))) if on]
        raise ParseError(f"{', '.join(bad)} do(es) not apply with --numeric")
    order = NUMERIC_DEFAULT_ORDER if args.order is None else args.order
    variables = parse_vars(args.vars)
    expr = parse_expr(args.loss, {str(v): v for v in variables})
    point = parse_point(args.at, len(variables))
    h = None
    if args.lr is not None:
        if "," in args.lr:
            raise ParseError("--lr with --numeric is one step size, e.g. --lr 0.01")
        h = _number(args.lr, "--lr")
    factory, used = optimiser_factory(name, _values(args))

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from .numeric import numeric_modified_equation

    loss = jax_loss(expr, variables)
    x0 = jnp.asarray(point, dtype=jnp.float64)
    eq = numeric_modified_equation(factory, loss, x0, order)
    names = [str(v) for v in variables]
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in used.items())
    print(f"Numeric modified field of {name}{f' ({shown})' if shown else ''} to order "
          f"{order}, state slaved to the parameters, at "
          f"{', '.join(f'{n}={_fmt(v)}' for n, v in zip(names, point, strict=True))}")
    print(f"on the loss {args.loss}:")
    for k, t in enumerate(eq.terms):
        for i, n in enumerate(names):
            print(f"  f_{k}[{n}] = {_fmt(float(t[i]))}")
    if h is not None:
        total = eq.modified_field(x0, h)
        print(f"summed at h = {_fmt(h)}:")
        for i, n in enumerate(names):
            print(f"  f~[{n}] = {_fmt(float(total[i]))}")
    sys.stdout.flush()
    return 0

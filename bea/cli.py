"""The ``bea`` command line: ``bea derive``, ``bea verify``, ``bea reproduce``, ``bea demo``.

Strings from the command line (losses, parameters) go through the whitelist parser in
:mod:`bea.parse`; nothing is evaluated.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .parse import ParseError

#: after Ctrl-C, exit with ``os._exit`` (tests that call :func:`main` in-process turn
#: this off)
_HARD_EXIT = True
#: ``--order`` default of ``derive`` and ``verify`` (one default for both)
DEFAULT_ORDER = 3
#: what ``--batches`` means when it is not given (said aloud, never silently)
DEFAULT_BATCHES = 2


def _method_options(args: argparse.Namespace) -> dict:
    from .registry import parse_parameter

    opts: dict = {}
    if getattr(args, "batches", None) is not None:
        opts["batches"] = args.batches
    if getattr(args, "beta", None) is not None:
        opts["beta"] = parse_parameter(args.beta, "--beta")
    if getattr(args, "lr", None):
        opts["lr"] = tuple(parse_parameter(v, "--lr") for v in args.lr.split(","))
    if getattr(args, "steps", None):
        try:
            opts["steps"] = tuple(int(v) for v in args.steps.split(","))
        except ValueError:
            raise ParseError(f"--steps {args.steps!r}: give whole numbers, e.g. --steps 1,2"
                             ) from None
    return opts


def _get_method(args: argparse.Namespace):
    """The method named on the command line; a default that changes the answer (sgd's
    number of batches) is printed, not assumed silently."""
    from .limits import check_trees
    from .registry import get_method

    if args.method.strip().lower() == "sgd":
        if args.batches is None:
            args.batches = DEFAULT_BATCHES
            print(f"note: sgd with --batches {DEFAULT_BATCHES} (the default: exact batches "
                  f"per epoch); pass --batches N for another number", file=sys.stderr)
        if args.batches < 1:
            raise ParseError(f"--batches must be at least 1, got {args.batches}")
        # price the derivation before building an m x m x m tableau
        check_trees(args.order + 1, args.batches, args.max_trees, flag="--max-trees ")
    return get_method(args.method, **_method_options(args))


class _Help(argparse.HelpFormatter):
    """Fills ``{methods}`` in help texts from the registry, only when help is shown
    (listing the plugins imports them)."""

    def _expand_help(self, action: argparse.Action) -> str:
        text = super()._expand_help(action)
        if "{methods}" in text:
            from .registry import names

            text = text.replace("{methods}", ", ".join(names()))
        return text


def _add_method_args(p: argparse.ArgumentParser, order: int = DEFAULT_ORDER,
                     order_help: str | None = None) -> None:
    p.formatter_class = _Help
    p.add_argument("method", help="one of: {methods}")
    p.add_argument("--order", type=_order, default=order,
                   help=order_help or f"highest power of h (default {order})")
    p.add_argument("--batches", type=int,
                   help=f"number of exact batches per epoch (sgd; default {DEFAULT_BATCHES})")
    p.add_argument("--beta", help="momentum (heavy-ball, nesterov): a number such as 0.9, "
                   "or a symbol name (default: the symbol beta)")
    p.add_argument("--lr", help="per-player rates for games, e.g. '1,0.5' or 'alpha,lam'")
    p.add_argument("--steps", help="steps per player for alternating games, e.g. '1,2'")
    p.add_argument("--max-trees", type=int, help="accept a derivation (or verification) "
                   "over more trees than the safety limit; errors say how many are needed")


def _order(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def _names(vars_: str) -> list[str]:
    return [v.strip() for group in vars_.split(";") for v in group.split(",") if v.strip()]


def _show(expr, latex: bool) -> str:
    import sympy

    return sympy.latex(expr) if latex else sympy.sstr(expr, order="lex")


def cmd_derive(args: argparse.Namespace) -> int:
    if args.numeric:
        from .cli_numeric import cmd_derive_numeric

        return cmd_derive_numeric(args)
    if args.at is not None:
        raise ParseError("--at is the point of --numeric; the symbolic derive evaluates "
                         "--loss symbolically (add --numeric for an optax optimiser)")
    if args.order is None:
        args.order = DEFAULT_ORDER
    from .modified import modified_equation

    method = _get_method(args)
    if args.loss_form:
        from .modified_loss import modified_loss

        obj = modified_loss(method, args.order, max_trees=args.max_trees)
    else:
        obj = modified_equation(method, args.order, max_trees=args.max_trees)
    if args.loss is not None:
        if args.vars is None:
            raise ParseError("--loss needs --vars (e.g. --vars x,y; games: --vars 'x;y')")
        vars_ = [v for v in args.vars.split(";")] if ";" in args.vars else args.vars
        loss = [s for s in args.loss.split(";")] if ";" in args.loss else args.loss
        values = obj.evaluate(loss, vars_)
        print(obj)
        print()
        print(f"On the loss {args.loss} in the variables {', '.join(_names(args.vars))}:")
        _print_values(values, _names(args.vars), args.loss_form,
                      getattr(method, "players", None), args.latex)
        return 0
    print(obj.latex() if args.latex else obj)
    return 0


def _print_values(values, names: list[str], loss_form: bool, players, latex: bool) -> None:
    """One labelled line per order and coordinate (``f_1[x] = ...``), or per order and
    player for modified losses; never a bare ``Matrix([...])``."""
    if loss_form:
        groups = values if isinstance(values, tuple) else (values,)
        for g, vals in enumerate(groups):
            who = f" of player {players[g]}" if players and len(groups) > 1 else ""
            for k, v in enumerate(vals):
                label = f"L~_{g + 1},{k}" if who else f"L~_{k}"
                print(f"  {label}{who} = {_show(v, latex)}")
        return
    for k, col in enumerate(values):
        for i, v in enumerate(col):
            name = names[i] if i < len(names) else str(i)
            print(f"  f_{k}[{name}] = {_show(v, latex)}")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: derive GD to order 3 and verify it on a built-in problem, with a plot."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from . import methods as M
    from .files import check_writable, stop_cleanly
    from .modified import modified_equation
    from .modified_loss import modified_loss
    from .verification import verify

    check_writable(args.plot, what="--plot file")
    me = modified_equation(M.gd(), args.order)
    print(me)
    print()
    print(modified_loss(M.gd(), args.order))
    print()
    with stop_cleanly("bea demo"):
        report = verify(M.gd(), problem="default", orders=range(args.order + 1),
                        progress=not args.quiet)
    print(report)
    report.plot(args.plot)
    print(f"\nplot written to {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bea", description=(
        "Backward error analysis of optimisers: modified equations and losses, "
        "verification against real iterates."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("derive", help="print the modified equation (or loss) of a method")
    from .cli_numeric import NUMERIC_DEFAULT_ORDER, add_numeric_args

    _add_method_args(p, order=None, order_help=(
        f"highest power of h (default {DEFAULT_ORDER}; with --numeric "
        f"{NUMERIC_DEFAULT_ORDER})"))
    add_numeric_args(p)
    p.add_argument("--latex", action="store_true", help="print LaTeX")
    p.add_argument("--loss", help="evaluate on a loss in coordinates, e.g. '(x*y - 1)**2/2'; "
                   "several losses (batches, players) separated by ';'")
    p.add_argument("--vars", help="coordinates, e.g. x,y (games: 'x;y')")
    p.add_argument("--loss-form", action="store_true",
                   help="print the modified loss (implicit regulariser) instead of the field")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("demo", help="derive GD to order 3, verify on a built-in problem, plot")
    p.add_argument("--order", type=_order, default=DEFAULT_ORDER)
    p.add_argument("--plot", default="bea-verify-gd.png", help="where to write the plot")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    try:
        from .cli_verify import add_commands
        add_commands(sub, _add_method_args, _method_options)
    except ImportError:
        pass

    args = parser.parse_args(argv)
    from .files import Interrupted

    try:
        return args.func(args)
    except (ValueError, TypeError) as e:
        # every input error of bea is a ValueError (ParseError, NumberError, SymbolError,
        # LimitError, OutputPathError) with a message that says what to do
        print(f"bea: error: {e}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as e:
        msg = str(e) if isinstance(e, Interrupted) else "interrupted"
        print(f"\nbea: {msg}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        if _HARD_EXIT:
            # leave at once: tearing down JAX's threads after a Ctrl-C is what crashed
            os._exit(130)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

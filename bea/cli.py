"""The ``bea`` command line: ``bea derive``, ``bea verify``, ``bea reproduce``, ``bea demo``.

Strings from the command line (losses, parameters) go through the whitelist parser in
:mod:`bea.parse`; nothing is evaluated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .parse import ParseError


def _method_options(args: argparse.Namespace) -> dict:
    from .registry import parse_parameter

    opts: dict = {}
    if getattr(args, "batches", None) is not None:
        opts["batches"] = args.batches
    if getattr(args, "beta", None) is not None:
        opts["beta"] = parse_parameter(args.beta)
    if getattr(args, "lr", None):
        opts["lr"] = tuple(parse_parameter(v) for v in args.lr.split(","))
    if getattr(args, "steps", None):
        opts["steps"] = tuple(int(v) for v in args.steps.split(","))
    return opts


def _add_method_args(p: argparse.ArgumentParser, order: int = 2) -> None:
    p.add_argument("method", help="gd, sgd, rk4, heun, explicit-midpoint, extragradient, "
                   "proximal-point, heavy-ball, nesterov, simultaneous, alternating, ...")
    p.add_argument("--order", type=int, default=order,
                   help=f"highest power of h (default {order})")
    p.add_argument("--batches", type=int, help="number of exact batches (sgd)")
    p.add_argument("--beta", help="momentum: a number or a symbol name (default: beta)")
    p.add_argument("--lr", help="per-player rates for games, e.g. 'alpha,lam' or '1,2'")
    p.add_argument("--steps", help="steps per player for alternating games, e.g. '1,2'")
    p.add_argument("--max-trees", type=int, help="raise the tree-count safety limit")


def cmd_derive(args: argparse.Namespace) -> int:
    from .modified import modified_equation
    from .registry import get_method

    method = get_method(args.method, **_method_options(args))
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
        import sympy

        for k, v in enumerate(values):
            if args.latex:
                print(f"f_{k} = {sympy.latex(v)}" if not args.loss_form
                      else f"L_{k} = {sympy.latex(v)}")
            else:
                print(f"order {k}: {sympy.sstr(v)}")
        return 0
    print(obj.latex() if args.latex else obj)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: derive GD to order 3 and verify it on a built-in problem, with a plot."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from . import methods as M
    from .modified import modified_equation
    from .modified_loss import modified_loss
    from .verification import verify

    me = modified_equation(M.gd(), args.order)
    print(me)
    print()
    print(modified_loss(M.gd(), args.order))
    print()
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
    _add_method_args(p)
    p.add_argument("--latex", action="store_true", help="print LaTeX")
    p.add_argument("--loss", help="evaluate on a loss in coordinates, e.g. '(x*y - 1)**2/2'; "
                   "several losses (batches, players) separated by ';'")
    p.add_argument("--vars", help="coordinates, e.g. x,y (games: 'x;y')")
    p.add_argument("--loss-form", action="store_true",
                   help="print the modified loss (implicit regulariser) instead of the field")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("demo", help="derive GD to order 3, verify on a built-in problem, plot")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--plot", default="bea-verify-gd.png", help="where to write the plot")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    try:
        from .cli_verify import add_commands
        add_commands(sub, _add_method_args, _method_options)
    except ImportError:
        pass

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"bea: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

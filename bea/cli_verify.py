"""``bea verify`` and ``bea reproduce`` sub-commands (JAX is imported only when used)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable


def _enable_x64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


_PLOT_BY_METHOD = "<method>"


def plot_file_name(method_name: str) -> str:
    """``bea-verify-<method>.png`` with the method's name made file-safe
    (``heavy_ball(beta=9/10)`` -> ``bea-verify-heavy_ball-beta-9_10.png``)."""
    safe = re.sub(r"[^A-Za-z0-9_.]+", "-", method_name.replace("/", "_")).strip("-.")
    return f"bea-verify-{safe or 'method'}.png"


def cmd_verify(args: argparse.Namespace, method_options: Callable) -> int:
    from .cli import _get_method
    from .files import Interrupted, check_writable
    from .limits import check_verify
    from .symbol_table import require_numeric

    # everything that can be refused is refused before the computation starts
    method = _get_method(args)
    plot = args.plot
    if plot == _PLOT_BY_METHOD:   # --plot without a file name: one file per method
        plot = plot_file_name(method.name)
    if plot:
        check_writable(plot, what="--plot file")
    if args.json:
        check_writable(args.json, what="--json file")
    require_numeric(method, None, "verify", command_line=True)
    check_verify(args.order, method.ncolors, args.max_trees)
    _enable_x64()
    from .verification import verify

    orders = list(range(args.order + 1))
    try:
        report = verify(method, problem=args.problem, orders=orders, progress=not args.quiet,
                        points=args.points, max_trees=args.max_trees)
    except KeyboardInterrupt:
        # verify is one compiled computation: nothing is half-written; say so plainly
        raise Interrupted(f"bea verify {args.method} interrupted before it finished; no "
                          f"files were written") from None
    print(report)
    if plot:
        report.plot(plot)
        print(f"\nplot written to {plot}")
    if args.json:
        report.save_json(args.json)
        print(f"report written to {args.json}")
    # expected slopes from the report: they use the method's order (rk4: 4, 4, 4, 4, 5)
    bad = [p for p, ok in report.check_slopes(0.15).items() if not ok]
    if bad:
        print(f"\nslopes off by more than 0.15 for orders {bad}: see the flags and warnings")
        return 1
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import available_experiments, get_experiment
    from .files import check_writable_dir, stop_cleanly

    if args.name in (None, "list"):
        for e in sorted(available_experiments().values(), key=lambda e: e.name):
            print(f"{e.name:18s} {e.summary}")
        return 0
    experiment = get_experiment(args.name)
    out = check_writable_dir(args.out)
    _enable_x64()
    run = experiment.load()
    with stop_cleanly(f"bea reproduce {experiment.name}"):
        report = run(str(out), large=args.large, progress=not args.quiet, resume=args.resume)
    print(report)
    print(f"\nfigures and numbers written to {out}/")
    return 0


def add_commands(sub: argparse._SubParsersAction, add_method_args: Callable,
                 method_options: Callable) -> None:
    p = sub.add_parser("verify", help="check a modified equation against real iterates "
                       "(float64): error table, fitted slopes, plot")
    add_method_args(p)
    p.add_argument("--points", type=_positive_int, default=None,
                   help="sweep N initial points around the problem's start (one vmapped "
                   "computation; errors are medians over points)")
    p.add_argument("--problem", default=None,
                   help="built-in problem: default (2-D non-quadratic loss), mlp, game")
    p.add_argument("--plot", nargs="?", const=_PLOT_BY_METHOD, default=None,
                   help="write a log-log plot of the global and local errors (default file "
                   "bea-verify-<method>.png)")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a: cmd_verify(a, method_options))

    p = sub.add_parser("reproduce", help="reproduce the experiments of the papers "
                       "(`bea reproduce list` names them)")
    p.add_argument("name", nargs="?", default="list",
                   help="experiment name, or 'list' (default) to list them")
    p.add_argument("--out", default="bea-figures", help="output folder")
    p.add_argument("--large", action="store_true", help="bigger runs (more seeds/steps)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoint in --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_reproduce)

"""Vmapped verification sweep vs a plain Python loop doing the same work.

Work: GD on the built-in 2-D problem, orders 0..3, 5 step sizes, P initial points:
for every (h, order, point) run the n = T/h iterates and integrate the truncated modified
flow (Dopri8, rtol 1e-12, atol 1e-14) to T, then take the global error.

* bea: one call of ``bea.verify`` (masked ``lax.scan`` of the iterates vmapped over h and
  points; one compiled ODE kernel for all orders, vmapped over h and points), including
  its report (flags, slope fits).
* baseline: a Python loop over (h, order, point) with a jitted step called n times and a
  jitted ``diffeqsolve`` per flow (what a throw-away script does; every call is already
  compiled, so the warm baseline is pure dispatch + compute).

Both are timed cold (first call in a fresh process, compilation included) and warm
(median of 5 further calls); only the first row's cold column is a fresh process
(later rows: bea recompiles for the new batch shape, the loop's kernels are already
compiled).  The errors of the two must agree.
Then three more fresh processes time bea's first call at the first row's point count, to
show how much the cold time varies (``--no-cold-repeats`` skips this).
Writes benchmarks/results/verify_<backend>.json and .md.

    .venv/bin/python benchmarks/bench_verify.py [--points 8,64,256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _markdown import table  # noqa: E402  (benchmarks/ is on sys.path for scripts here)

from bea import methods as M  # noqa: E402
from bea import modified_equation  # noqa: E402
from bea.verification import default_problem, verify  # noqa: E402
from bea.verification.verify import _auto_grid  # noqa: E402

ORDERS = (0, 1, 2, 3)


def _timed(fn, reps: int) -> tuple[float, float, object]:
    t0 = time.perf_counter()
    out = fn()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        warm.append(time.perf_counter() - t0)
    return cold, statistics.median(warm), out


def _initial_points(prob, P: int):
    return prob.params0 + 0.1 * jax.random.normal(jax.random.PRNGKey(P), (P, 2))


def _verify(method, prob, p0s, hs, T):
    return verify(method, prob.loss, p0s, batches=prob.batches, hs=hs, horizon=T,
                  orders=ORDERS, batch_initial=True, progress=False, local=False)


def _cold_fresh(P: int, n: int = 3) -> list[float]:
    """bea's first call at ``P`` points in ``n`` more fresh processes (the same bea)."""
    import bea

    out = []
    here = os.path.dirname(os.path.dirname(os.path.abspath(bea.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    for _ in range(n):
        proc = subprocess.run([sys.executable, __file__, "--cold-only", str(P)], env=env,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out.append(json.loads(proc.stdout.strip().splitlines()[-1])["bea_cold_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", default="8,64,256")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-cold-repeats", action="store_true",
                    help="skip the three more fresh processes timing bea's first call")
    ap.add_argument("--cold-only", type=int, default=None, metavar="P",
                    help="(internal) time bea's first call at P points, print it, exit")
    args = ap.parse_args()
    points = [int(x) for x in args.points.split(",")]
    method = M.gd()
    prob = default_problem(method)
    equation = modified_equation(method, max(ORDERS))
    hs, T = _auto_grid(equation, prob, None)
    batches = prob.batches

    compiled = equation.to_jax(prob.loss)
    if args.cold_only is not None:          # the same preparation as the main run's cold
        p0s = _initial_points(prob, args.cold_only)
        t0 = time.perf_counter()
        np.asarray(_verify(method, prob, p0s, hs, T).errors_all)
        print(json.dumps({"bea_cold_s": time.perf_counter() - t0}))
        return
    grad = jax.jit(jax.grad(lambda p: prob.loss(p, batches[0])))
    step = jax.jit(lambda p, h: p - h * grad(p))
    solvers = {}
    for p in ORDERS:
        def rhs(t, y, args, p=p):
            return compiled.evaluate(y, args, tuple(batches), p)

        @jax.jit
        def solve(y0, h, rhs=rhs):
            sol = diffrax.diffeqsolve(diffrax.ODETerm(rhs), diffrax.Dopri8(), 0.0, T, None, y0,
                                      args=h, stepsize_controller=diffrax.PIDController(
                                          rtol=1e-12, atol=1e-14), max_steps=65536)
            return sol.ys[-1]
        solvers[p] = solve

    rows = []
    for P in points:
        p0s = _initial_points(prob, P)

        def run_bea(p0s=p0s):
            r = _verify(method, prob, p0s, hs, T)
            idx = [int(np.argmin(np.abs(np.asarray(r.hs) - h))) for h in hs]
            return np.asarray(r.errors_all)[:, idx]                # [O, K, B] in hs order

        def run_loop(p0s=p0s, P=P):
            errs = np.zeros((len(ORDERS), len(hs), P))
            for i, h in enumerate(hs):
                n = round(T / h)
                for k in range(P):
                    y = p0s[k]
                    for _ in range(n):
                        y = step(y, h)
                    for j, p in enumerate(ORDERS):
                        errs[j, i, k] = float(jnp.linalg.norm(y - solvers[p](p0s[k], h)))
            return errs

        cold_b, warm_b, e_b = _timed(run_bea, args.reps)
        cold_l, warm_l, e_l = _timed(run_loop, args.reps)
        rel = float(np.max(np.abs(e_b - e_l) / np.abs(e_l)))
        row = {"points": P, "cells": len(ORDERS) * len(hs) * P,
               "bea_cold_s": cold_b, "bea_warm_s": warm_b,
               "loop_cold_s": cold_l, "loop_warm_s": warm_l,
               "ratio_warm": warm_l / warm_b, "ratio_cold": cold_l / cold_b,
               "max_rel_error_difference": rel}
        print(json.dumps(row), flush=True)
        rows.append(row)

    dev = jax.devices()[0]
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "python": sys.version.split()[0], "jax": jax.__version__,
               "backend": jax.default_backend(), "device": dev.device_kind}
    res = {"machine": machine, "method": "gd", "orders": list(ORDERS), "hs": list(hs),
           "horizon": T, "solver": "Dopri8 rtol 1e-12 atol 1e-14", "reps": args.reps,
           "rows": rows}
    if not args.no_cold_repeats:
        res["cold_fresh"] = {"points": points[0], "bea_cold_s": _cold_fresh(points[0])}
        print(json.dumps(res["cold_fresh"]), flush=True)
    os.makedirs("benchmarks/results", exist_ok=True)
    base = f"benchmarks/results/verify_{jax.default_backend()}"
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    write_md(base + ".md", res)


def write_md(path: str, res: dict) -> None:
    """The Markdown table of ``res`` (the JSON this script writes)."""
    machine, hs = res["machine"], res["hs"]
    lines = [
        f"# Verification sweep vs a Python loop ({machine['backend']})", "",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"jax {machine['jax']}, device {machine['device']}; float64.", "",
        f"Work per initial point: GD on the built-in 2-D problem, orders {res['orders']}, "
        f"{len(hs)} step sizes (h = {hs[0]:.4g}..{hs[-1]:.4g}, T = {res['horizon']}), iterates "
        "+ one Dopri8 solve (rtol 1e-12) per (h, order). bea = one `bea.verify` call "
        "including its report; loop = Python loop over (h, order, point) of a jitted step "
        "and a jitted `diffeqsolve`. Warm = median of "
        f"{res.get('reps', 5)} repeat calls; cold = first call with that shape (compilation); "
        "only the first row is a fresh process (later rows: bea recompiles for the new batch "
        "shape, the loop's per-point kernels are already compiled).", "",
    ]
    lines += table(
        ["points", "cells", "bea warm ms", "loop warm ms", "warm ratio", "bea cold s",
         "loop cold s", "cold ratio", "max rel diff of errors"],
        [[f"{r['points']}", f"{r['cells']}", f"{1e3 * r['bea_warm_s']:.1f}",
          f"{1e3 * r['loop_warm_s']:.1f}", f"**{r['ratio_warm']:.1f}x**",
          f"{r['bea_cold_s']:.2f}", f"{r['loop_cold_s']:.2f}", f"{r['ratio_cold']:.2f}x",
          f"{r['max_rel_error_difference']:.1e}"] for r in res["rows"]])
    cc = res.get("cold_fresh")
    if cc:
        lines += ["", f"bea's first call at {cc['points']} points in "
                  f"{len(cc['bea_cold_s'])} more fresh processes: "
                  + ", ".join(f"{t:.2f} s" for t in cc["bea_cold_s"])
                  + " (target for the default problem: < 2 s)."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()

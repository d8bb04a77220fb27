"""Vmapped verification sweep vs a plain Python loop doing the same work.

Work: GD on the built-in 2-D problem, orders 0..3, 5 step sizes, P initial points:
for every (h, order, point) run the n = T/h iterates and integrate the truncated modified
flow (Dopri8, rtol 1e-12) to T.  bea: one call of ``bea.verify`` (masked lax.scan and ODE
solves vmapped over h and points).  Baseline: a Python loop over (h, order, point) with a
jitted step called n times and a jitted diffeqsolve per flow (what a throw-away script
does).  Both timed warm (second call) and cold.
Writes benchmarks/results/verify_cpu_<P>points.json.

    .venv/bin/python benchmarks/bench_verify.py [--points 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bea import methods as M  # noqa: E402
from bea import modified_equation  # noqa: E402
from bea.verify import _auto_grid, default_problem, verify  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=8)
    args = ap.parse_args()
    method = M.gd()
    prob = default_problem(method)
    hs, T = _auto_grid(method, prob, None, 3)
    orders = (0, 1, 2, 3)
    key = jax.random.PRNGKey(0)
    p0s = prob.params0 + 0.1 * jax.random.normal(key, (args.points, 2))
    batches = prob.batches

    def run_bea():
        r = verify(method, prob.loss, p0s, batches=batches, hs=hs, horizon=T, orders=orders,
                   batch_initial=True, progress=False, local=False)
        return r.errors

    t0 = time.perf_counter()
    run_bea()
    cold_bea = time.perf_counter() - t0
    t0 = time.perf_counter()
    errs_bea = run_bea()
    warm_bea = time.perf_counter() - t0

    compiled = modified_equation(method, 3).to_jax(prob.loss)
    grad = jax.jit(jax.grad(lambda p: prob.loss(p, batches[0])))
    step = jax.jit(lambda p, h: p - h * grad(p))
    solvers = {}
    for p in orders:
        def rhs(t, y, args, p=p):
            return compiled._field(y, args, tuple(batches), p)

        @jax.jit
        def solve(y0, h, rhs=rhs):
            sol = diffrax.diffeqsolve(diffrax.ODETerm(rhs), diffrax.Dopri8(), 0.0, T, None, y0,
                                      args=h, stepsize_controller=diffrax.PIDController(
                                          rtol=1e-12, atol=1e-14), max_steps=65536)
            return sol.ys[-1]
        solvers[p] = solve

    def run_loop():
        errs = np.zeros((len(orders), len(hs), args.points))
        for i, h in enumerate(hs):
            n = round(T / h)
            for k in range(args.points):
                y = p0s[k]
                for _ in range(n):
                    y = step(y, h)
                for j, p in enumerate(orders):
                    errs[j, i, k] = float(jnp.linalg.norm(y - solvers[p](p0s[k], h)))
        return np.median(errs, axis=-1)

    t0 = time.perf_counter()
    run_loop()
    cold_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    errs_loop = run_loop()
    warm_loop = time.perf_counter() - t0
    agree = float(np.max(np.abs(np.log(errs_loop) - np.log(np.asarray(errs_bea)[:, ::-1]))))
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "device": jax.devices()[0].device_kind, "jax": jax.__version__},
           "work": {"orders": list(orders), "hs": list(hs), "points": args.points},
           "warm_seconds": {"bea_vmapped": warm_bea, "python_loop": warm_loop},
           "cold_seconds": {"bea_vmapped": cold_bea, "python_loop": cold_loop},
           "ratio_warm": warm_loop / warm_bea, "ratio_cold": cold_loop / cold_bea,
           "max_abs_log_error_difference": agree}
    print(json.dumps(res, indent=1))
    os.makedirs("benchmarks/results", exist_ok=True)
    with open(f"benchmarks/results/verify_cpu_{args.points}points.json", "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

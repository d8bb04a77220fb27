"""Ensemble of 1,024 SVAG(l=4) runs on the closed-form quadratic problem: one vmapped
``run_svag`` (``bea.dynamics.sde.ensemble``) vs a Python loop over runs of a jitted single
SVAG step (same batches, same results, checked).  Compilation excluded (warm-up call;
``ensemble`` caches its jitted function, so the timed calls compile nothing: the first,
compiling call is recorded separately); the vmapped time is the median of 5 calls.  The
machine is shared and loaded (see ``loadavg``).  Writes
``benchmarks/results/sde_cpu.{json,md}``.

    .venv/bin/python benchmarks/bench_sde.py
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from _machine import machine_info, machine_line, write_results  # noqa: E402

import bea.optax as bo  # noqa: E402
from bea.dynamics import sde as S  # noqa: E402

RUNS, STEPS, L, ETA, B = 1024, 20, 4, 0.2, 4


def main() -> None:
    p = S.QuadraticProblem.random(64, 8, 0)
    loss, data, x0 = p.example_loss(), p.data, jnp.ones(8)
    sampler = S.BatchSampler(64, B, True, 0)
    tx = bo.svag(ETA, L)
    fn = lambda r: S.run_svag(loss, x0, data, learning_rate=ETA, l=L, batch_size=B,
                              steps=STEPS, run=r, seed=0)[0]
    load0 = os.getloadavg()
    t = time.perf_counter()
    jax.block_until_ready(S.ensemble(fn, RUNS))
    t_first = time.perf_counter() - t
    times = []
    for _ in range(5):
        t = time.perf_counter()
        vm = np.asarray(jax.block_until_ready(S.ensemble(fn, RUNS)))
        times.append(time.perf_counter() - t)
    t_vmap = float(np.median(times))

    @jax.jit
    def step(x, s, k, r):
        i1, i2 = sampler.pair(k, r)
        g1, g2 = S.svag_gradients(loss, x, S.take(data, i1), S.take(data, i2))
        u, s = tx.update(g1, s, x, grad2=g2)
        return x + u, s

    jax.block_until_ready(step(x0, tx.init(x0), 0, 0))
    t = time.perf_counter()
    loop = []
    for r in range(RUNS):
        x, s = x0, tx.init(x0)
        for k in range(STEPS):
            x, s = step(x, s, k, r)
        loop.append(np.asarray(x))
    t_loop = time.perf_counter() - t
    err = float(np.max(np.abs(np.stack(loop) - vm)))
    assert err < 1e-12, err
    res = {"runs": RUNS, "steps": STEPS, "l": L, "d": 8, "n": 64, "batch_size": B,
           "vmap_s": t_vmap, "vmap_times_s": times, "vmap_first_call_s": t_first,
           "python_loop_s": t_loop, "speedup": t_loop / t_vmap,
           "max_abs_diff": err, **machine_info(load0)}
    md = ("# SDE lab: 1,024 SVAG runs, vmapped vs Python loop of jitted steps (CPU)\n\n"
          f"{RUNS} runs x {STEPS} SVAG(l={L}) steps, quadratic problem n=64, d=8, B={B}, "
          "float64; compile excluded; shared, loaded machine.\n\n"
          "| method | time (s) |\n|---|---|\n"
          f"| vmapped ensemble (median of 5, cached jit) | {t_vmap:.4f} |\n"
          f"| vmapped ensemble, first call (compiles) | {t_first:.3f} |\n"
          f"| Python loop of jitted steps | {t_loop:.3f} |"
          f"\n\nspeedup {t_loop / t_vmap:.1f}x (compile excluded; "
          f"{t_loop / t_first:.1f}x with the first call's compilation), "
          f"max |difference| {err:.1e}; "
          f"{machine_line(res)}\n")
    write_results("sde_cpu", res, md)
    print(md)


if __name__ == "__main__":
    main()

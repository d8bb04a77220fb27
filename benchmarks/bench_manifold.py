"""Ensemble of 1,024 noisy-GD runs (label noise on a diagonal linear net, 8 parameters):
one vmapped, jitted call vs the same runs one by one in a Python loop (each run jitted once
and reused), same keys, so the end states agree exactly.  CPU only; the machine is shared
(load average recorded).  Writes benchmarks/results/manifold_cpu.{json,md}."""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from _machine import machine_info, machine_line, write_results  # noqa: E402

import bea.dynamics.manifold as M  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    x = jnp.array([[1.0, 0.6, -0.4, 0.3], [0.5, -0.8, 0.7, 0.9]])
    nl = M.label_noise(lambda w: x @ (w[:4] * w[4:]) - x[:, 0], 2)
    w0 = jnp.full(8, 0.7)
    kw = dict(alpha=0.02, sigma=1.0, steps=args.steps, runs=args.runs, seed=0)
    load0 = os.getloadavg()
    M.ensemble(nl, w0, **dict(kw, runs=8))              # warm-up of the shared pieces
    t = time.perf_counter()
    e = M.ensemble(nl, w0, num_records=2, **kw)
    t_vmap = time.perf_counter() - t
    t = time.perf_counter()
    loop = M.ensemble_loop(nl, w0, **kw)
    t_loop = time.perf_counter() - t
    same = bool(np.allclose(loop, e.final, rtol=1e-12, atol=1e-14))
    res = dict(runs=args.runs, steps=args.steps, params=8, vmapped_s=t_vmap, loop_s=t_loop,
               speedup=t_loop / t_vmap, same_end_states=same, **machine_info(load0),
               note="both timings include compilation (one compile for vmap, one for the loop's "
                    "single run); shared, loaded machine")
    md = ("# Noisy-GD ensemble: vmapped vs Python loop (CPU)\n\n"
          f"{args.runs} runs x {args.steps} steps, label noise on an 8-parameter diagonal "
          "linear net, float64.\n\n| variant | seconds |\n|---|---:|\n"
          f"| vmapped (one jit) | {t_vmap:.3f} |\n| Python loop over runs | {t_loop:.3f} |\n\n"
          f"Speed-up {t_loop / t_vmap:.1f}x; identical end states: {same}.  "
          f"{machine_line(res)}\n")
    write_results("manifold_cpu", res, md)
    print(md)


if __name__ == "__main__":
    main()

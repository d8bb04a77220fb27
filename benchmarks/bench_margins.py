"""Cost of the margins lab's pieces, baselines measured in the same run.

1. One jitted optimiser step (update + apply) on a ~1e5-parameter bias-free ReLU net
   gradient pytree (float32): ``bea.optax.steepest_descent`` for l2 / linf / l1 / l3
   against hand-written jitted baselines (``optax.sgd``; ``optax.chain(scale_by_sign,
   scale(-eta))``; a hand-written flat argmax step for l1).
2. The linear margin run of the tests (20000 normalised sign-descent steps, d = 20,
   n = 30) for 8 seeds: ``jax.vmap`` over seeds in one scan vs a Python loop over seeds
   of the same jitted run.
Minimum over rounds (compilation excluded); the machine is shared and loaded (see
``loadavg``).  Writes ``benchmarks/results/margins_cpu.{json,md}``.

    .venv/bin/python benchmarks/bench_margins.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import bea.optax as bo
from bea.dynamics import margins as mg
from bea.dynamics.margins.reproduce import linear_data
from bea.dynamics.margins.train import run_function

sys_path = Path(__file__).resolve().parent
import sys  # noqa: E402

sys.path.insert(0, str(sys_path))
from _markdown import table  # noqa: E402


def _time(fns: dict, args: dict, rounds: int) -> dict:
    for k, f in fns.items():
        jax.block_until_ready(f(*args[k]))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(*args[k]))
            times[k].append(time.perf_counter() - t)
    return {k: {"min_s": min(v), "median_s": statistics.median(v)} for k, v in times.items()}


def bench_steps(rounds: int) -> dict:
    p = mg.init_relu_net(jax.random.PRNGKey(0), (256, 384), dtype=jnp.float32)
    g = jax.tree.map(lambda a: jnp.sin(3.0 * a), p)
    eta = 1e-3

    def via(tx):
        s = tx.init(p)
        return jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, s, p)[0]))

    def hand_l1(p, g):
        flat, un = ravel_pytree(g)
        j = jnp.argmax(jnp.abs(flat))
        return optax.apply_updates(p, un(jnp.zeros_like(flat).at[j].set(-eta * flat[j])))

    fns = {"l2: bea": via(bo.steepest_descent(eta, "l2")), "l2: optax.sgd": via(optax.sgd(eta)),
           "linf: bea sign_descent": via(bo.sign_descent(eta)),
           "linf: optax scale_by_sign": via(optax.chain(optax.scale_by_sign(),
                                                        optax.scale(-eta))),
           "l1: bea coordinate_descent": via(bo.coordinate_descent(eta)),
           "l1: hand-written argmax": jax.jit(hand_l1),
           "l3: bea steepest_descent": via(bo.steepest_descent(eta, "l3"))}
    res = _time(fns, {k: (p, g) for k in fns}, rounds)
    n = sum(a.size for a in jax.tree.leaves(p))
    return {"params": int(n), "times": res}


def bench_vmap(steps: int, seeds: int, rounds: int) -> dict:
    data = [linear_data(s) for s in range(seeds)]
    xs = jnp.asarray(np.stack([d[0] for d in data]))
    ys = jnp.asarray(np.stack([d[1] for d in data]))
    etas = jnp.asarray([math.sqrt(2 * math.log(30) / steps) / float(np.max(np.abs(x).sum(1)))
                        for x, _ in data])

    def one(x, y, eta):
        opt = bo.steepest_descent(lambda c: eta, "linf", normalized=True)
        f = run_function(mg.linear_model, opt, steps, degree=1, norms=("linf",))
        return f(jnp.zeros(20), opt.init(jnp.zeros(20)), x, y)[2]["margin_linf"][-1]

    vm = jax.jit(jax.vmap(one))
    single = jax.jit(one)
    loop = lambda xs, ys, etas: [single(xs[i], ys[i], etas[i]) for i in range(seeds)]
    res = _time({"vmap over seeds": vm, "loop over seeds": loop},
                {"vmap over seeds": (xs, ys, etas), "loop over seeds": (xs, ys, etas)},
                rounds)
    a = np.asarray(vm(xs, ys, etas))
    b = np.asarray([float(v) for v in loop(xs, ys, etas)])
    return {"steps": steps, "seeds": seeds, "times": res,
            "max_abs_diff_margin": float(np.max(np.abs(a - b)))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 5 if args.quick else 30
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "jax": jax.__version__, "backend": jax.default_backend(),
                       "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
           "steps": bench_steps(rounds),
           "vmap": bench_vmap(5000 if args.quick else 20000, 8, 3 if args.quick else 5)}
    out["machine"]["loadavg_after"] = os.getloadavg()
    res = Path(__file__).resolve().parent / "results"
    res.mkdir(exist_ok=True)
    (res / "margins_cpu.json").write_text(json.dumps(out, indent=1) + "\n")
    st = out["steps"]["times"]
    base = {"l2": "l2: optax.sgd", "linf": "linf: optax scale_by_sign",
            "l1": "l1: hand-written argmax", "l3": "l2: optax.sgd"}
    rows = [[k, f"{v['min_s'] * 1e6:.0f}", f"{v['median_s'] * 1e6:.0f}",
             f"{v['min_s'] / st[base[k.split(':')[0]]]['min_s']:.2f}"] for k, v in st.items()]
    vt = out["vmap"]["times"]
    lines = ["# margins benchmark (CPU)", "",
             f"Shared, loaded machine: loadavg {out['machine']['loadavg_before']} before, "
             f"{out['machine']['loadavg_after']} after; {out['machine']['cpus']} CPUs, jax "
             f"{jax.__version__}.  Minimum over rounds, compilation excluded.", "",
             f"## One optimiser step, {out['steps']['params']} parameters (float32)", ""]
    lines += table(["step", "min (us)", "median (us)", "ratio to baseline"], rows)
    lines += ["", "Baselines: l2 and l3 vs optax.sgd, linf vs optax scale_by_sign, l1 vs a "
              "hand-written argmax step.", "",
              f"## Linear margin run, {out['vmap']['steps']} sign-descent steps, "
              f"{out['vmap']['seeds']} seeds", ""]
    lines += table(["run", "min (s)", "median (s)"],
                   [[k, f"{v['min_s']:.3f}", f"{v['median_s']:.3f}"] for k, v in vt.items()])
    speedup = vt["loop over seeds"]["min_s"] / vt["vmap over seeds"]["min_s"]
    lines += ["", f"loop / vmap = {speedup:.2f}; "
              f"same margins to {out['vmap']['max_abs_diff_margin']:.1e}.", ""]
    (res / "margins_cpu.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Per-step overhead of the ``bea.optax`` transforms, in units of one gradient evaluation.

For tanh MLPs of about 1e5 and 1e6 parameters (float32, one batch of 256 examples), every
step is jitted and timed as a whole: ``grad`` + transform(s) + ``optax.sgd`` +
``apply_updates``.  The overhead of a transform is

    (t(step with the transform) - t(plain sgd step)) / t(grad L)

i.e. how many extra gradient evaluations it costs.  References: one Hessian-vector
product (forward-over-reverse ``jvp(grad L)``, gradient included) and ``jax.linearize`` of
``grad L`` plus one tangent.  All steps are compiled first and then timed round-robin;
times are the *minimum* over rounds (compilation excluded): on a shared CPU the minimum
is the stable statistic (the median is recorded too).
Writes ``benchmarks/results/optax_<backend>.json`` and ``.md``.

    .venv/bin/python benchmarks/bench_optax.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import bea.optax as bo
from bea import methods as M
from bea import modified_loss

IN, OUT, DEPTH, BATCH = 32, 1, 3, 256
SIZES = {"1e5": 216, "1e6": 700}   # hidden width: 32 W + 2 W^2 + 4 W + 1 parameters


def mlp_params(width: int, key: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    dims = [IN] + [width] * DEPTH + [OUT]
    keys = jax.random.split(key, len(dims) - 1)
    return [(jax.random.normal(k, (a, b), jnp.float32) / jnp.sqrt(a), jnp.zeros(b, jnp.float32))
            for k, a, b in zip(keys, dims[:-1], dims[1:], strict=True)]


def loss_fn(params, batch):
    x, y = batch
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jnp.tanh(x)
    return 0.5 * jnp.mean((x - y) ** 2)


def transforms(h: float) -> dict[str, optax.GradientTransformationExtraArgs | None]:
    igr = bo.implicit_gradient_regularizer()
    naive = lambda p, b: 0.25 * sum(jnp.sum(g**2) for g in jax.tree.leaves(
        jax.grad(loss_fn)(p, b)))
    return {
        "plain sgd": None,
        "explicit_regularizer(implicit_gradient_regularizer)": bo.explicit_regularizer(igr, -h),
        "explicit_regularizer(compiled modified loss gd order 1)": bo.explicit_regularizer(
            modified_loss(M.gd(), 1).to_jax(loss_fn), -1.0, learning_rate=h),
        "explicit_regularizer(compiled modified loss gd order 2)": bo.explicit_regularizer(
            modified_loss(M.gd(), 2).to_jax(loss_fn), -1.0, learning_rate=h),
        "explicit_regularizer(callable: jax.grad of (1/4)|grad L|^2)": bo.explicit_regularizer(
            naive, -h),
        "drift_correction(gd, order=1)": bo.drift_correction(M.gd(), 1, h),
        "drift_correction(gd, order=2)": bo.drift_correction(M.gd(), 2, h),
        "drift_correction(gd, order=3)": bo.drift_correction(M.gd(), 3, h),
    }


def bench_size(label: str, width: int, repeats: int, h: float = 0.05) -> dict:
    """All functions are compiled first, then timed round-robin (each round calls every
    function once), so background load hits them alike; min and median per function."""
    key = jax.random.PRNGKey(0)
    kp, kx, ky = jax.random.split(key, 3)
    params = mlp_params(width, kp)
    n = sum(x.size for x in jax.tree.leaves(params))
    batch = (jax.random.normal(kx, (BATCH, IN), jnp.float32),
             jax.random.normal(ky, (BATCH, OUT), jnp.float32))
    calls: dict[str, tuple] = {"grad": (jax.jit(jax.grad(loss_fn)), (params, batch))}
    refs = {
        "hvp (jvp of grad, gradient included)": jax.jit(
            lambda p, b: jax.jvp(lambda q: jax.grad(loss_fn)(q, b), (p,), (p,))[1]),
        "linearize(grad) + one tangent": jax.jit(
            lambda p, b: jax.linearize(lambda q: jax.grad(loss_fn)(q, b), p)[1](p)),
    }
    for name, fn in refs.items():
        calls["ref:" + name] = (fn, (params, batch))
    for name, tx in transforms(h).items():
        chain = optax.chain(*(t for t in (tx,) if t is not None), optax.sgd(h))

        @jax.jit
        def step(p, s, b, chain=chain):
            g = jax.grad(loss_fn)(p, b)
            u, s = chain.update(g, s, p, loss_fn=loss_fn, batch=b)
            return optax.apply_updates(p, u), s

        calls["tx:" + name] = (step, (params, chain.init(params), batch))
    for fn, args in calls.values():      # compile and warm up
        jax.block_until_ready(fn(*args))
        jax.block_until_ready(fn(*args))
    ts: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, (fn, args) in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            ts[k].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in ts.items()}
    med = {k: statistics.median(v) for k, v in ts.items()}
    t_grad = best["grad"]
    row = {"size": label, "parameters": int(n), "width": width, "batch": BATCH,
           "repeats": repeats, "grad_seconds": t_grad, "grad_seconds_median": med["grad"],
           "reference_cost_in_grads": {k[4:]: best[k] / t_grad for k in calls
                                       if k.startswith("ref:")},
           "transforms": {}}
    t_plain = best["tx:plain sgd"]
    for k in calls:
        if not k.startswith("tx:"):
            continue
        name = k[3:]
        row["transforms"][name] = {"step_seconds": best[k], "step_seconds_median": med[k],
                                   "overhead_in_grads": (best[k] - t_plain) / t_grad,
                                   "overhead_in_plain_steps": (best[k] - t_plain) / t_plain}
        print(f"  {label:4s} {name:62s} {best[k] * 1e3:9.2f} ms  overhead "
              f"{(best[k] - t_plain) / t_grad:6.2f} grads", flush=True)
    return row


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__,
            "optax": optax.__version__, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()], "dtype": "float32",
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None}


def write(rows: list[dict], info: dict, out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"optax_{info['backend']}")
    with open(base + ".json", "w") as f:
        json.dump({"machine": info, "results": rows}, f, indent=2)
    lines = ["# Per-step overhead of the bea.optax transforms",
             "",
             "Overhead = (step time with the transform - plain `optax.sgd` step time) / time of "
             "one `jax.grad(L)`; every step includes the gradient, jitted, minimum over repeats. "
             f"tanh MLP {IN}-W-W-W-{OUT}, batch {BATCH}, float32.",
             "",
             f"Machine: {info['cpu']}, {info['cpus']} CPUs, {info['platform']}; jax "
             f"{info['jax']}, optax {info['optax']}, backend {info['backend']}; load average "
             f"at the end {info['load_average_at_end']} (a shared machine: other jobs ran; "
             "timings are the minimum over round-robin repeats).",
             ""]
    sizes = [r["size"] for r in rows]
    lines.append("| transform | " + " | ".join(
        f"{r['size']} ({r['parameters']:,} params)" for r in rows) + " |")
    lines.append("|---|" + "---|" * len(rows))
    lines.append("| one gradient (ms) | " + " | ".join(
        f"{r['grad_seconds'] * 1e3:.2f}" for r in rows) + " |")
    for name in rows[0]["reference_cost_in_grads"]:
        lines.append(f"| reference: {name} (cost in grads) | " + " | ".join(
            f"{r['reference_cost_in_grads'][name]:.2f}" for r in rows) + " |")
    for name in rows[0]["transforms"]:
        cells = []
        for r in rows:
            t = r["transforms"][name]
            cells.append(f"{t['overhead_in_grads']:+.2f} / {t['overhead_in_plain_steps']:+.2f}"
                         f" ({t['step_seconds'] * 1e3:.1f} ms)")
        lines.append(f"| {name.replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    lines += ["", f"Sizes: {', '.join(sizes)}.  Entries: overhead in units of one standalone "
              "`jax.grad` / in units of the plain SGD step (which includes one gradient), "
              "then the whole step time.  The two units differ because a standalone jitted "
              "gradient and the gradient inside the fused step do not cost the same; read "
              "differences below about 0.5 as noise on this shared 2-core machine."]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return base


def rewrite(out_dir: str) -> None:
    """Regenerate the markdown from an existing JSON (no timing)."""
    path = os.path.join(out_dir, f"optax_{jax.default_backend()}.json")
    with open(path) as f:
        data = json.load(f)
    for r in data["results"]:
        plain = r["transforms"]["plain sgd"]["step_seconds"]
        for t in r["transforms"].values():
            t.setdefault("overhead_in_plain_steps", (t["step_seconds"] - plain) / plain)
    write(data["results"], data["machine"], out_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1e5 only, few repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--rewrite", action="store_true", help="only regenerate the .md")
    args = ap.parse_args()
    if args.rewrite:
        rewrite(args.out)
        return
    sizes = {"1e5": SIZES["1e5"]} if args.quick else SIZES
    rows = []
    for label, width in sizes.items():
        repeats = args.repeats or (5 if args.quick else (60 if label == "1e5" else 15))
        rows.append(bench_size(label, width, repeats))
    info = machine()
    base = write(rows, info, args.out)
    print(f"wrote {base}.json and {base}.md")


if __name__ == "__main__":
    main()

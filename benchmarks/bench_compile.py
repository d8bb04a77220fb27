"""Cost of the compiled (Hessian-free) modified fields of gradient descent.

Measured in one run, every number a ratio of two timings taken in that run (median of
several calls after warm-up, ``block_until_ready``), on tanh MLPs ``L(params, batch)``
(mean squared error, params a list of ``{"W", "b"}`` dicts, float32):

(a) the order-1 correction ``me.to_jax(L, orders=[1]).terms`` (``-(1/2) H grad L``)
    against the hand-written ``jax.grad(lambda p: 0.25 |grad L(p)|^2)`` (``+(1/2) H g``:
    only the cost is compared), ~1e5 parameters; target <= 1.1x;
(b) the order-k term alone (k = 1..4) in units of one gradient evaluation, on MLPs of
    1e4, 1e5 and 1e6 parameters;
(c) against dense evaluation with ``jax.hessian`` (order 1: ``-(1/2) H g``) and
    ``jax.jacfwd(jax.hessian)`` (order 2: ``-(1/12) D3[g, g] - (1/3) H^2 g``) from 1e2 to
    1e4 parameters: crossover and scaling (and the agreement of the two);
(d) first-call (trace + compile) time of the field truncated at order k = 1..4;
(e) peak resident memory (``resource.getrusage``) of the order-3 field on a ~10M-parameter
    MLP (1-3161-3161-1), each measurement in a fresh process, against a plain gradient.

    .venv/bin/python benchmarks/bench_compile.py             # CPU, ~5-10 minutes
    .venv/bin/python benchmarks/bench_compile.py --quick     # smaller, ~1 minute
    .venv/bin/python benchmarks/bench_compile.py --device gpu

Writes ``benchmarks/results/compile_<device>[_quick].json`` and ``.md``.
``--memory-only`` runs only (e) and prints one JSON line (used by the slow test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from _markdown import table  # benchmarks/ is on sys.path when a script here is run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    ap.add_argument("--memory-only", action="store_true", help="only (e); print JSON")
    ap.add_argument("--memory-params", type=int, default=None,
                    help="parameters of the memory MLP (default 1e7, quick 1e6)")
    ap.add_argument("--no-write", action="store_true", help="do not write results files")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _setup_jax(device: str) -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu" if device == "cpu" else "cuda,cpu")
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)


def _rss_mb() -> float:
    """Peak resident set size of this process so far (MB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def _current_rss_mb() -> float:
    """Current resident set size (MB; Linux /proc, else the peak so far)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _rss_mb()


# --------------------------------------------------------------------------- problems


def mlp_width(nparams: int, d_in: int, depth: int = 2) -> int:
    """Width w of a d_in-w-..-w-1 MLP (``depth`` hidden layers) with ~nparams parameters:
    d_in w + w + (depth - 1)(w^2 + w) + w + 1."""
    a, b, c = depth - 1, d_in + depth + 1, 1 - nparams
    if a == 0:
        return max(1, round(-c / b))
    return max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


def make_problem(nparams: int, d_in: int = 16, batch: int = 128, depth: int = 2,
                 dtype: str = "float32", seed: int = 0):
    import jax
    import jax.numpy as jnp
    import numpy as np

    w = mlp_width(nparams, d_in, depth)
    sizes = [d_in] + [w] * depth + [1]
    rng = np.random.default_rng(seed)     # numpy: no device-side temporaries
    params = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        W = rng.standard_normal((a, b), dtype=np.float32) / np.float32(math.sqrt(a))
        params.append({"W": jnp.asarray(W, dtype), "b": jnp.zeros(b, dtype)})
        del W
    X = jnp.asarray(rng.standard_normal((batch, d_in)), dtype)
    Y = jnp.sin(X[:, :1] * 2.0) + 0.5 * jnp.cos(X[:, -1:])

    def loss(p, data):
        x, y = data
        for layer in p[:-1]:
            x = jnp.tanh(x @ layer["W"] + layer["b"])
        out = x @ p[-1]["W"] + p[-1]["b"]
        return 0.5 * jnp.mean((out - y) ** 2)

    n = sum(int(v.size) for v in jax.tree.leaves(params))
    return params, loss, (X, Y), sizes, n


def timeit(fn, repeats: int | None = None, budget: float = 2.0, warmup: int = 2) -> dict:
    """Median (and min) seconds of ``fn()`` after ``warmup`` calls; block_until_ready."""
    import jax

    t0 = time.perf_counter()
    for _ in range(warmup):
        jax.block_until_ready(fn())
    one = (time.perf_counter() - t0) / max(warmup, 1)
    n = repeats or int(min(50, max(5, budget / max(one, 1e-6))))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "runs": n}


def first_call(fn) -> float:
    import jax

    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


# --------------------------------------------------------------------------- sections


def section_a(nparams: int, quick: bool) -> dict:
    import jax
    import jax.numpy as jnp

    from bea import methods as M
    from bea import modified_equation

    params, loss, data, sizes, n = make_problem(nparams)
    c = modified_equation(M.gd(), 1).to_jax(loss, orders=[1])

    def igr(p, b):
        g = jax.grad(loss)(p, b)
        return 0.25 * sum(jnp.vdot(x, x) for x in jax.tree.leaves(g))

    hand = jax.jit(jax.grad(igr))
    # same quantity up to sign: -(1/2) H g vs +(1/2) H g
    got = c.terms(params, (data,))[0]
    ref = hand(params, data)
    err = max(float(jnp.max(jnp.abs(a + b))) for a, b in
              zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True))
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(ref))
    reps, rounds = (10, 3) if quick else (30, 9)
    # interleaved rounds share the machine's noise; the ratio is the median of the rounds'
    tc, th = [], []
    for _ in range(rounds):
        tc.append(timeit(lambda: c.terms(params, (data,)), repeats=reps))
        th.append(timeit(lambda: hand(params, data), repeats=reps))
    ratios = [a["median_s"] / b["median_s"] for a, b in zip(tc, th, strict=True)]
    t_c = statistics.median(a["median_s"] for a in tc)
    t_h = statistics.median(b["median_s"] for b in th)
    best = min(a["min_s"] for a in tc) / min(b["min_s"] for b in th)
    return {"params": n, "sizes": sizes, "compiled_ms": 1e3 * t_c, "hand_ms": 1e3 * t_h,
            "ratio": statistics.median(ratios), "ratio_rounds": ratios, "ratio_of_minima": best,
            "target": 1.1, "max_rel_diff": err / scale}


def _size_b(target: int, orders: list[int], eqs: dict, quick: bool, with_d: bool):
    import jax

    params, loss, data, sizes, n = make_problem(target)
    grad = jax.jit(jax.grad(loss))
    t_grad = timeit(lambda: grad(params, data))["median_s"]
    rows, compile_rows = [], []
    for k in orders:
        me, _ = eqs[k]
        c = me.to_jax(loss, orders=[k])
        run = lambda c=c: c.terms(params, (data,))
        comp = first_call(run)
        t_k = timeit(run, budget=1.0 if quick else 3.0)
        rows.append({"params": n, "sizes": sizes, "order": k, "nodes": len(c.dag.nodes),
                     "trees": len(me.terms(k)), "grad_ms": 1e3 * t_grad,
                     "term_ms": 1e3 * t_k["median_s"],
                     "in_gradients": t_k["median_s"] / t_grad, "first_call_s": comp})
        print(f"  (b) n={n:>9,} order {k}: {rows[-1]['in_gradients']:.2f} gradients "
              f"({rows[-1]['term_ms']:.2f} ms)", flush=True)
    if with_d:
        for k in orders:
            me, derive_s = eqs[k]
            c = me.to_jax(loss)
            run = lambda c=c: c.field(params, 0.01, (data,))
            comp = first_call(run)
            steady = timeit(run, budget=1.0 if quick else 2.0)["median_s"]
            compile_rows.append({"params": n, "order": k, "derive_s": derive_s,
                                 "first_call_s": comp, "steady_ms": 1e3 * steady,
                                 "steady_in_gradients": steady / t_grad,
                                 "nodes": len(c.dag.nodes)})
            print(f"  (d) order {k}: first call {comp:.2f} s, derive {derive_s:.3f} s",
                  flush=True)
    return rows, compile_rows


def section_b_d(sizes_n: list[int], orders: list[int], quick: bool) -> tuple[list, list]:
    from bea import methods as M
    from bea import modified_equation

    eqs = {}
    for k in orders:
        t = time.perf_counter()
        me = modified_equation(M.gd(), k)
        eqs[k] = (me, time.perf_counter() - t)
    rows, compile_rows = [], []
    middle = sorted(sizes_n)[len(sizes_n) // 2]
    for target in sizes_n:           # (d) on the middle size
        r, d = _size_b(target, orders, eqs, quick, with_d=target == middle)
        rows += r
        compile_rows += d
    return rows, compile_rows


def _size_c(target: int, me1, me2, quick: bool, order2_max: int) -> dict:
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    params, loss, data, sizes, n = make_problem(target, d_in=4, batch=64)
    theta, unravel = ravel_pytree(params)
    Lf = lambda t, b: loss(unravel(t), b)

    @jax.jit
    def dense1(t, b):
        g = jax.grad(Lf)(t, b)
        return -0.5 * jax.hessian(Lf)(t, b) @ g

    @jax.jit
    def dense2(t, b):
        g = jax.grad(Lf)(t, b)
        H = jax.hessian(Lf)(t, b)
        D3 = jax.jacfwd(jax.hessian(Lf))(t, b)
        return -(1 / 12) * jnp.einsum("ijk,j,k->i", D3, g, g) - (1 / 3) * H @ (H @ g)

    def rel(a, b):
        a = ravel_pytree(a)[0]
        return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))

    budget = 0.5 if quick else 1.5
    row = {"params": n, "sizes": sizes}
    c1 = me1.to_jax(loss, orders=[1])
    run1 = lambda: c1.terms(params, (data,))
    try:
        row["dense1_first_s"] = first_call(lambda: dense1(theta, data))
        row["dense1_ms"] = 1e3 * timeit(lambda: dense1(theta, data), budget=budget)["median_s"]
    except Exception as e:  # noqa: BLE001 - out of memory on large sizes
        row["dense1_error"] = f"{type(e).__name__}: {str(e)[:120]}"
    row["compiled1_ms"] = 1e3 * timeit(run1, budget=budget)["median_s"]
    if "dense1_ms" in row:
        row["dense1_over_compiled"] = row["dense1_ms"] / row["compiled1_ms"]
        row["order1_rel_diff"] = rel(run1()[0], dense1(theta, data))
    if n <= order2_max:
        c2 = me2.to_jax(loss, orders=[2])
        run2 = lambda: c2.terms(params, (data,))
        row["dense2_first_s"] = first_call(lambda: dense2(theta, data))
        row["dense2_ms"] = 1e3 * timeit(lambda: dense2(theta, data), budget=budget)["median_s"]
        row["compiled2_ms"] = 1e3 * timeit(run2, budget=budget)["median_s"]
        row["dense2_over_compiled"] = row["dense2_ms"] / row["compiled2_ms"]
        row["order2_rel_diff"] = rel(run2()[0], dense2(theta, data))
    print(f"  (c) n={n:>7,}: dense/compiled order 1 "
          f"{row.get('dense1_over_compiled', float('nan')):.2f}x, order 2 "
          f"{row.get('dense2_over_compiled', float('nan')):.2f}x", flush=True)
    return row


def section_c(sizes_n: list[int], quick: bool, order2_max: int = 400) -> list:
    from bea import methods as M
    from bea import modified_equation

    me1, me2 = modified_equation(M.gd(), 1), modified_equation(M.gd(), 2)
    return [_size_c(n, me1, me2, quick, order2_max) for n in sizes_n]


# --------------------------------------------------------------------------- memory


def memory_child(order: int, nparams: int) -> dict:
    """In a fresh process: order 0 = plain gradient, k >= 1 = field through order k."""
    import jax

    from bea import methods as M
    from bea import modified_equation
    from kernels import tree_util as tu

    params, loss, data, sizes, n = make_problem(nparams, d_in=1, batch=64)
    jax.block_until_ready(params)
    base, base_peak = _current_rss_mb(), _rss_mb()
    t = time.perf_counter()
    if order == 0:
        fn = jax.jit(jax.grad(loss))
        out = fn(params, data)
        run = lambda: fn(params, data)
    else:
        c = modified_equation(M.gd(), order).to_jax(loss)
        out = c.field(params, 0.01, (data,))
        run = lambda: c.field(params, 0.01, (data,))
    jax.block_until_ready(out)
    first = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(run())
    second = time.perf_counter() - t
    itemsize = jax.tree.leaves(params)[0].dtype.itemsize
    return {"order": order, "params": n, "sizes": sizes, "dtype": "float32",
            "param_mb": n * itemsize / 2**20, "baseline_rss_mb": base,
            "peak_rss_before_mb": base_peak,
            "peak_rss_mb": _rss_mb(), "first_call_s": first, "second_call_s": second,
            "field_norm": float(tu.tree_norm(out)),
            "device": jax.devices()[0].device_kind}


def run_memory_child(order: int, nparams: int, device: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", str(order),
           "--memory-params", str(nparams), "--device", device]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        return {"order": order, "error": r.stderr[-2000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def _crossover(rows: list, k: int) -> str:
    """Smallest measured size from which dense order k is slower than compiled on."""
    got = [(r["params"], r[f"dense{k}_over_compiled"]) for r in rows
           if f"dense{k}_over_compiled" in r]
    if not got:
        return ""
    slower_from = None
    for n, ratio in got:
        if ratio > 1 and slower_from is None:
            slower_from = n
        elif ratio <= 1:
            slower_from = None
    scale = ""
    if len(got) >= 2 and got[0][1] > 0 and got[-1][1] > 0:
        slope = math.log(got[-1][1] / got[0][1]) / math.log(got[-1][0] / got[0][0])
        scale = f" (dense/compiled grows like n^{slope:.2f} over {got[0][0]:,}-{got[-1][0]:,})"
    if slower_from is None:
        return f"Order {k}: dense faster at every measured size{scale}."
    if slower_from == got[0][0]:
        return f"Order {k}: dense slower already at {slower_from:,} parameters{scale}."
    return f"Order {k}: crossover, dense slower from {slower_from:,} parameters on{scale}."


def machine_info() -> dict:
    import jax

    d = jax.devices()[0]
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "python": platform.python_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "device_kind": d.device_kind,
            "devices": [str(x) for x in jax.devices()],
            "x64": bool(jax.config.jax_enable_x64)}


def write_md(path: str, res: dict) -> None:
    m = res["machine"]
    L = [f"# Compiled modified fields: cost ({m['device_kind']})", "",
         f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['affinity']} usable), "
         f"Python {m['python']}, jax {m['jax']}, backend {m['backend']}, devices "
         f"{', '.join(m['devices'])}. float32; every ratio from timings in the same run "
         "(median after warm-up, block_until_ready).", ""]
    a = res.get("a")
    if a:
        L += ["## (a) order-1 correction vs hand-written jax.grad(0.25 |grad L|^2)", "",
              f"MLP {a['sizes']} ({a['params']:,} params): compiled "
              f"{a['compiled_ms']:.3f} ms, hand-written {a['hand_ms']:.3f} ms: "
              f"**{a['ratio']:.3f}x** (median over {len(a['ratio_rounds'])} interleaved "
              f"rounds, range {min(a['ratio_rounds']):.3f}-{max(a['ratio_rounds']):.3f}; "
              f"ratio of best times {a['ratio_of_minima']:.3f}x; target <= {a['target']}x); "
              "results agree to "
              f"{a['max_rel_diff']:.1e} (relative, up to sign).", ""]
    b = res.get("b")
    if b:
        L += ["## (b) order-k term alone, in gradient evaluations", ""]
        L += table(
            ["params", "order k", "DAG nodes", "trees in f_k", "grad ms", "f_k ms",
             "gradients", "first call s"],
            [[f"{r['params']:,}", f"{r['order']}", f"{r['nodes']}", f"{r['trees']}",
              f"{r['grad_ms']:.3f}", f"{r['term_ms']:.3f}", f"{r['in_gradients']:.2f}",
              f"{r['first_call_s']:.2f}"] for r in b])
        L.append("")
    c = res.get("c")
    if c:
        rows = []
        for r in c:
            d2 = ([f"{r['dense2_ms']:.3f}", f"{r['compiled2_ms']:.3f}",
                   f"{r['dense2_over_compiled']:.2f}x"] if "dense2_ms" in r else ["-"] * 3)
            d1 = ([f"{r['dense1_ms']:.3f}", f"{r['compiled1_ms']:.3f}",
                   f"{r['dense1_over_compiled']:.2f}x"] if "dense1_ms" in r else
                  [f"{r.get('dense1_error', '-')}", f"{r['compiled1_ms']:.3f}", "-"])
            diff = max(r.get("order1_rel_diff", 0.0), r.get("order2_rel_diff", 0.0))
            rows.append([f"{r['params']:,}", *d1, *d2, f"{diff:.1e}"])
        L += ["## (c) against dense jax.hessian / jacfwd(hessian)", ""]
        L += table(["params", "dense f_1 ms", "compiled f_1 ms", "dense/compiled",
                    "dense f_2 ms", "compiled f_2 ms", "dense/compiled", "max rel diff"], rows)
        L += ["", res.get("c_note", ""), ""]
    d = res.get("d")
    if d:
        L += ["## (d) first call (trace + XLA compile) of the field through order k", ""]
        L += table(
            ["params", "order k", "DAG nodes", "derive s", "first call s", "steady ms",
             "steady, gradients"],
            [[f"{r['params']:,}", f"{r['order']}", f"{r['nodes']}", f"{r['derive_s']:.3f}",
              f"{r['first_call_s']:.2f}", f"{r['steady_ms']:.2f}",
              f"{r['steady_in_gradients']:.2f}"] for r in d])
        L.append("")
    e = res.get("e")
    if e:
        rows = []
        for r in e:
            if "error" in r:
                rows.append(f"| order {r['order']} | error: {r['error'][-200:]!r} |")
                continue
            what = "gradient" if r["order"] == 0 else f"GD field through order {r['order']}"
            rows.append([what, f"{r['params']:,}", f"{r['param_mb']:.0f}",
                         f"{r['baseline_rss_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
                         f"{r['first_call_s']:.1f}", f"{r['second_call_s']:.1f}"])
        L += ["## (e) peak memory (fresh process each, ru_maxrss)", ""]
        L += table(["what", "params", "param MB", "RSS before MB", "peak RSS MB",
                    "first call s", "second call s"], rows)
        L += ["", "A dense Hessian of the largest model would take "
              f"{e[-1].get('params', 0) ** 2 * 4 / 1e12:.0f} TB.", ""]
    L += [f"Total benchmark wall time: {res['wall_s']:.0f} s.", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(L))


def main(argv=None) -> None:
    args = _args(argv)
    _setup_jax(args.device)
    mem_n = args.memory_params or (1_000_000 if args.quick else 10_000_000)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, mem_n)))
        return
    if args.memory_only:
        print(json.dumps(run_memory_child(3, mem_n, args.device)))
        return
    t0 = time.perf_counter()
    # (e) first, while this process is small: Linux carries ru_maxrss over fork + exec,
    # so a child started from a parent that has grown would report the parent's peak
    mem = [run_memory_child(0, mem_n, args.device), run_memory_child(3, mem_n, args.device)]
    for r in mem:
        print("  (e)", {k: v for k, v in r.items() if k != "sizes"}, flush=True)
    import jax

    res: dict = {"machine": machine_info(), "quick": args.quick}
    print("machine:", res["machine"], flush=True)
    res["a"] = section_a(100_000 if not args.quick else 30_000, args.quick)
    print(f"  (a) ratio {res['a']['ratio']:.3f}", flush=True)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    orders = [1, 2] if args.quick else [1, 2, 3, 4]
    res["b"], res["d"] = section_b_d(sizes, orders, args.quick)
    dense_sizes = ([10, 100, 1_000] if args.quick
                   else [10, 30, 100, 300, 1_000, 3_000, 10_000])
    res["c"] = section_c(dense_sizes, args.quick)
    res["c_note"] = " ".join(_crossover(res["c"], k) for k in (1, 2))
    res["e"] = mem
    res["wall_s"] = time.perf_counter() - t0
    if args.no_write:
        print(json.dumps(res))
        return
    dev = "cpu" if jax.default_backend() == "cpu" else "gpu"
    stem = f"compile_{dev}" + ("_quick" if args.quick else "")
    out = os.path.join(HERE, "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, stem + ".json"), "w") as fh:
        json.dump(res, fh, indent=1)
    write_md(os.path.join(out, stem + ".md"), res)
    print(f"wrote {out}/{stem}.json and .md ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()

"""Cost of the numeric modified field ``f_0 + h f_1 + .. + h^p f_p`` of optax optimisers.

One run, every number a ratio of two timings taken in that run (median after warm-up,
``block_until_ready``), on a tanh MLP ``L(params, batch)`` with about 1M parameters
(float32, mean squared error, ``make_problem`` of ``bench_compile.py``):

* ``bea.numeric_modified_equation(lambda h: optax.sgd(h) / optax.adam(h), L, params, p,
  batch=...)`` (state slaved to the parameters; Adam also with ``eps_root=1e-8``, smooth
  where a gradient entry is 0, which the default Adam is refused for), the summed field
  ``f~`` at ``h = 1e-3`` evaluated by one jitted call, for ``p = 1, 2, 3``, in units of
  one jitted gradient;
* next to it, the symbolic engine's compiled GD field (``bea.compile`` through
  ``modified_equation(gd(), p).to_jax(L)``, all orders ``0..p``), the same unit;
* the first call (trace + compile + first evaluation; for the numeric engine the whole
  construction, which evaluates and checks every term at the point).

Cases that start after ``--budget`` seconds of the run are skipped (said in the results).

    nice -n 10 .venv/bin/python benchmarks/bench_numeric.py --adam-orders 1,2   # CPU, minutes
    .venv/bin/python benchmarks/bench_numeric.py --params 100000       # smaller

Writes ``benchmarks/results/numeric_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time

from _machine import begin_run, machine_info, machine_line, write_results
from _markdown import table
from bench_compile import first_call, make_problem, timeit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--orders", default="1,2,3")
    ap.add_argument("--adam-orders", default=None, help="orders for Adam (default --orders;"
                    " order 3 of Adam compiles for many minutes on a CPU)")
    ap.add_argument("--budget", type=float, default=900.0,
                    help="seconds after which no new case starts")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    load = begin_run()
    import jax
    import optax

    from bea import methods as M
    from bea import modified_equation
    from bea.numeric import NumericBEAError, numeric_modified_equation

    t_start = time.perf_counter()
    orders = [int(k) for k in args.orders.split(",")]
    params, loss, data, sizes, n = make_problem(args.params)
    grad = jax.jit(jax.grad(loss))
    t_grad = timeit(lambda: grad(params, data))["median_s"]
    print(f"MLP {sizes}: {n:,} parameters, one gradient {1e3 * t_grad:.2f} ms")
    h = 1e-3
    rows = []
    cases = [("gd (symbolic, bea.compile)", None, p) for p in orders]
    cases += [("sgd (numeric)", lambda h: optax.sgd(h), p) for p in orders]
    adam_orders = orders if args.adam_orders is None else [
        int(k) for k in args.adam_orders.split(",")]
    cases += [("adam (numeric)", lambda h: optax.adam(h), p) for p in adam_orders]
    # optax's default Adam is not smooth where a gradient entry is exactly 0 (sqrt(nu) at
    # nu = 0; a float32 MLP has such entries): eps_root > 0 makes it smooth everywhere
    cases += [("adam eps_root=1e-8 (numeric)", lambda h: optax.adam(h, eps_root=1e-8), p)
              for p in adam_orders]
    for name, factory, p in cases:
        if time.perf_counter() - t_start > args.budget:
            rows.append({"engine": name, "order": p, "skipped": "time budget"})
            print(f"  {name} p={p}: skipped (time budget)")
            continue
        if factory is None:
            c = modified_equation(M.gd(), p).to_jax(loss)
            run = lambda c=c: c.terms(params, (data,))  # noqa: E731
            comp = first_call(run)
        else:
            t0 = time.perf_counter()
            try:
                eq = numeric_modified_equation(factory, loss, params, p, batch=data)
            except NumericBEAError as e:   # e.g. Adam where a gradient entry is 0
                rows.append({"engine": name, "order": p, "skipped": f"refused: {e}"[:160]})
                print(f"  {name} p={p}: refused ({type(e).__name__})")
                continue
            field = jax.jit(lambda x, eq=eq: eq.modified_field(x, h))
            jax.block_until_ready(field(params))
            comp = time.perf_counter() - t0
            run = lambda field=field: field(params)  # noqa: E731
        t = timeit(run, budget=3.0)
        rows.append({"engine": name, "order": p, "field_ms": 1e3 * t["median_s"],
                     "in_gradients": t["median_s"] / t_grad, "first_call_s": comp,
                     "runs": t["runs"]})
        print(f"  {name} p={p}: {rows[-1]['in_gradients']:.1f} gradients, first call "
              f"{comp:.1f} s")
    info = machine_info(load)
    res = {"params": n, "sizes": sizes, "grad_ms": 1e3 * t_grad, "h": h, "rows": rows,
           "machine": info}
    md = ["# Numeric modified fields of optax optimisers: cost", "",
          f"MLP {sizes} ({n:,} parameters, float32), one jitted gradient "
          f"{1e3 * t_grad:.2f} ms.  Cost of the summed field f_0 + .. + h^p f_p (all "
          f"orders up to p, one jitted call) in gradient units; first call = trace + "
          f"compile + first evaluation (numeric: the whole construction).", ""]
    md += table(["engine", "p", "field (ms)", "gradients", "first call (s)"],
                [[r["engine"], str(r["order"]), f"{r['field_ms']:.1f}",
                  f"{r['in_gradients']:.1f}", f"{r['first_call_s']:.1f}"]
                 if "skipped" not in r else f"| {r['engine']} | {r['order']} | skipped "
                 f"({r['skipped']}) | | |" for r in rows])
    md += ["", machine_line(info), ""]
    print("\n".join(md))
    if not args.no_write:
        write_results(f"numeric_{jax.devices()[0].platform}", res, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

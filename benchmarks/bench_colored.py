"""Derivation time of colored (multi-field) modified equations and losses.

SGD over m exact batches (m = 2, 4, 8) and two-player games at orders 2-4.  Every number
is one public call in a fresh Python process with the derivation cache off
(``BEA_CACHE=0``), so no interned trees, sympy caches or cache files carry over:
``modified_equation(method, p)`` in one process and ``modified_loss(method, p)`` (which
derives the equation itself) in another.  Reports trees, seconds and the load, and checks
the targets of issue 20 (``sgd(batches=8)`` order 4: equation < 3 s, loss < 5 s).
Writes benchmarks/results/colored.json and .md.

    .venv/bin/python benchmarks/bench_colored.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

CASES = [("sgd", m, p) for m in (2, 4, 8) for p in (2, 3, 4)] + [
    (g, 2, p) for g in ("simultaneous", "alternating", "optimistic") for p in (2, 3, 4)]
QUICK = [("sgd", 2, 3), ("sgd", 4, 3), ("sgd", 8, 3), ("simultaneous", 2, 3)]

# targets (seconds) from issue 20, keyed by (method, colors, order): (equation, loss)
TARGETS = {("sgd", 8, 4): (3.0, 5.0)}

CHILD = r"""
import json, sys, time
from bea import trees as T
from bea import methods as M
import games
name, m, p, what = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
method = {"sgd": lambda: M.sgd(m), "simultaneous": lambda: games.simultaneous(),
          "alternating": lambda: games.alternating(),
          "optimistic": lambda: games.optimistic()}[name]()
ntrees = sum(T.count_trees(n, method.ncolors) for n in range(1, p + 2))
t0 = time.perf_counter()
try:
    if what == "equation":
        from bea import modified_equation
        me = modified_equation(method, p, max_trees=10**7)
        t1 = time.perf_counter()
        nterms = sum(len(me.terms(k)) for k in range(p + 1))
    else:
        from bea import modified_loss
        ml = modified_loss(method, p, max_trees=10**7)
        t1 = time.perf_counter()
        groups = [None] if ml.players is None else range(len(ml.players))
        nterms = sum(len(ml.potential(k, g)) + len(ml.remainder(k, g))
                     for k in range(p + 1) for g in groups)
    out = {"seconds": t1 - t0, "trees": ntrees, "nonzero_terms": nterms}
except Exception as e:
    out = {"error": str(e)[:200], "trees": ntrees}
print(json.dumps(out))
"""


def _child(name: str, m: int, p: int, what: str, budget: float) -> dict:
    env = dict(os.environ, BEA_CACHE="0")
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, name, str(m), str(p), what],
                           capture_output=True, text=True, timeout=budget, env=env)
        lines = r.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {"error": r.stderr.strip()[-200:]}
    except subprocess.TimeoutExpired:
        return {"error": f"timeout > {budget:.0f} s"}


def _sec(r: dict) -> str:
    return f"{r['seconds']:.2f}" if "seconds" in r else r.get("error", "")


def _target(key: tuple, eq: dict, loss: dict) -> str:
    if key not in TARGETS:
        return "-"
    te, tl = TARGETS[key]
    ok_e = "seconds" in eq and eq["seconds"] < te
    ok_l = "seconds" in loss and loss["seconds"] < tl
    return (f"equation < {te:g} s: {'met' if ok_e else 'MISSED'}; "
            f"loss < {tl:g} s: {'met' if ok_l else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="four order-3 cases only")
    args = ap.parse_args()
    budget = float(os.environ.get("BEA_BENCH_TIMEOUT", "300"))
    load_before = os.getloadavg()
    rows = []
    for name, m, p in (QUICK if args.quick else CASES):
        eq = _child(name, m, p, "equation", budget)
        loss = _child(name, m, p, "loss", budget)
        row = {"method": name, "colors": m, "order": p, "trees": eq.get("trees"),
               "equation": eq, "loss": loss}
        rows.append(row)
        print(row, flush=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpus": os.cpu_count(), "python": platform.python_version(),
               "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())}
    lines = ["# Colored derivations: modified equation and modified loss (exact coefficients)",
             "", f"Machine: {machine['platform']}, {machine['cpus']} CPUs, Python "
             f"{machine['python']}; load average {load_before[0]:.2f} -> "
             f"{machine['loadavg_after'][0]:.2f} (shared machine: above the CPU count other "
             "jobs were running).", "",
             "Each number: one public call, fresh process, derivation cache off "
             "(`BEA_CACHE=0`); the loss call derives its equation too.", "",
             "| method | colors | order | trees | nonzero terms (equation) | equation s "
             "| loss s | target |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eq, loss = r["equation"], r["loss"]
        lines.append(f"| {r['method']} | {r['colors']} | {r['order']} | {r.get('trees', '')} "
                     f"| {eq.get('nonzero_terms', '')} | {_sec(eq)} | {_sec(loss)} "
                     f"| {_target((r['method'], r['colors'], r['order']), eq, loss)} |")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bea.files import atomic_write_json, atomic_write_text

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    atomic_write_json(os.path.join(out, "colored.json"), {"machine": machine, "rows": rows})
    atomic_write_text(os.path.join(out, "colored.md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

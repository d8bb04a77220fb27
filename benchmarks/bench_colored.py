"""Derivation time of colored (multi-field) modified equations and losses.

SGD over m exact batches (m = 2, 4, 8) and two-player games at orders 2-4, each in a
fresh process so no cache carries over.  Reports trees, seconds, and where the cost grows.
Writes benchmarks/results/colored.json and .md.

    .venv/bin/python benchmarks/bench_colored.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

CASES = [("sgd", m, p) for m in (2, 4, 8) for p in (2, 3, 4)] + [
    (g, 2, p) for g in ("simultaneous", "alternating", "optimistic") for p in (2, 3, 4)]

CHILD = r"""
import json, sys, time
from bea import series as S, trees as T
from bea import methods as M
import games
name, m, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
method = {"sgd": lambda: M.sgd(m), "simultaneous": lambda: games.simultaneous(),
          "alternating": lambda: games.alternating(),
          "optimistic": lambda: games.optimistic()}[name]()
ntrees = sum(T.count_trees(n, method.ncolors) for n in range(1, p + 2))
t0 = time.perf_counter()
try:
    from bea import modified_equation
    me = modified_equation(method, p, max_trees=10**7)
    t1 = time.perf_counter()
    nterms = sum(len(me.terms(k)) for k in range(p + 1))
    out = {"seconds": t1 - t0, "trees": ntrees, "nonzero_terms": nterms}
except Exception as e:
    out = {"error": str(e)[:200], "trees": ntrees}
print(json.dumps(out))
"""


def main() -> None:
    budget = float(os.environ.get("BEA_BENCH_TIMEOUT", "300"))
    rows = []
    for name, m, p in CASES:
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-c", CHILD, name, str(m), str(p)],
                               capture_output=True, text=True, timeout=budget)
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            res = {"error": f"timeout > {budget:.0f} s"}
        res.update(method=name, colors=m, order=p, wall=time.perf_counter() - t0)
        rows.append(res)
        print(res, flush=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpus": os.cpu_count(), "python": platform.python_version()}
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/colored.json", "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=1)
    lines = ["# Colored derivations (modified equation, exact coefficients)", "",
             f"Machine: {machine}", "",
             "| method | colors | order | trees | nonzero terms | seconds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        sec = f"{r['seconds']:.2f}" if "seconds" in r else r.get("error", "")
        lines.append(f"| {r['method']} | {r['colors']} | {r['order']} | {r.get('trees', '')} "
                     f"| {r.get('nonzero_terms', '')} | {sec} |")
    with open("benchmarks/results/colored.md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Modified equations: bea against BSeries and kauri.

(a) Abstract modified equation of the explicit midpoint method: the exact rational
    coefficients ``b(t)`` of the modified field on every rooted tree with ``|t| <= N``
    (``f~ = sum_t h^(|t|-1) b(t)/sigma(t) F(t)``), for N = 6, 8, 9, 10, 12, 13, 14 (and 15,
    16 for bea alone: the trees of ``bea.modified_equation(method, N - 1)``, the public
    call, timed cold with the disk cache off).
(b) Coordinate-level modified equation ``f_0..f_p`` of gradient descent on the loss
    ``L = (x y - 1)^2/2 + x^4/4`` for p = 4..7.

Every measurement runs in a fresh Python process (no caches, interned trees or sympy
cache carried over); bea is also timed warm (again in the same process).  A library
that needs more than ``--timeout`` seconds at one order is stopped there and the higher
orders are recorded as skipped.  Coefficients (a) and fields (b) are compared exactly
with bea's.

    .venv/bin/python benchmarks/bench_modified_equation.py            # everything
    .venv/bin/python benchmarks/bench_modified_equation.py --quick    # small orders

Results: ``benchmarks/results/modified_equation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:   # this checkout's bea, not another installed copy
    sys.path.insert(0, str(ROOT))

from bea.files import atomic_write_json, atomic_write_text  # noqa: E402  (no JAX import)

RESULTS = HERE / "results"

ORDERS_A = [6, 8, 9, 10, 12, 13, 14]
BEA_ONLY_A = [15, 16]
ORDERS_B = [4, 5, 6, 7]
LOSS = "(x*y - 1)**2/2 + x**4/4"
TARGETS_A = {13: 1.0, 15: 8.0, 16: 30.0}  # seconds, bea, fresh process (issue 20: p = 12, 14, 15)
TARGET_RSS_MB_A = {16: 1024.0}             # and p = 15 in < 1 GB (peak RSS of the process)
TARGET_B_RATIO = 30.0   # issue 20: bea at least 30x faster than the BSeries call, p >= 6
TARGET_B_FROM = 6


# ============================================================================ tree keys
# A tree is named by a canonical parenthesis string: "()" a leaf, "(" + sorted children
# + ")" otherwise.  Each library's trees are converted to it.


def key_nested(nl) -> str:
    """From a nested list (BSeries' ``RootedTree._nl``): ``[]`` a leaf."""
    return "(" + "".join(sorted(key_nested(c) for c in nl)) + ")"


def key_kauri(lr) -> str:
    """From kauri's ``Tree.list_repr``: ``(child reprs..., color)``."""
    return "(" + "".join(sorted(key_kauri(c) for c in lr[:-1])) + ")"


def key_bea(t: int, memo: dict[int, str]) -> str:
    from bea import trees as T

    got = memo.get(t)
    if got is None:
        got = "(" + "".join(sorted(key_bea(c, memo) for c in T.children(t))) + ")"
        memo[t] = got
    return got


def frac(x) -> str:
    f = Fraction(int(x.p), int(x.q)) if hasattr(x, "p") else Fraction(x)
    return f"{f.numerator}/{f.denominator}"


# ============================================================================ workers (a)


def a_bea(n: int) -> dict:
    # the call a user makes, cold: the disk cache (bea.cache) off, fresh process
    os.environ["BEA_CACHE"] = "0"
    t0 = time.perf_counter()
    import sympy

    import bea
    from bea import methods
    from bea import trees as T
    t_import = time.perf_counter() - t0

    big = 10**8
    t0 = time.perf_counter()
    b = bea.modified_equation(methods.explicit_midpoint(), n - 1, max_trees=big).series
    cold = time.perf_counter() - t0
    import resource  # peak resident memory of this process so far (Linux: KiB)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # warm: same process, trees interned; a new method name misses the series cache
    half = sympy.Rational(1, 2)
    warm = []
    for i in range(3 if cold < 2 else 1):
        m = methods.rk([[0, 0], [half, 0]], [0, 1], name=f"explicit_midpoint_warm{i}")
        t0 = time.perf_counter()
        bea.modified_equation(m, n - 1, max_trees=big)
        warm.append(time.perf_counter() - t0)

    memo: dict[int, str] = {}
    coeffs = {key_bea(t, memo): frac(b.domain.to_sympy(b[t])) for t in T.trees_up_to(n)}
    return {"time": cold, "warm": min(warm), "import": t_import, "peak_rss_mb": rss_mb,
            "coeffs": coeffs}


def a_bseries(n: int) -> dict:
    """The coefficient recursion of ``BSeries.bs.modified_equation`` (which only returns
    the field evaluated on a concrete f), written out with the library's own pieces."""
    import numpy as np
    import sympy
    from BSeries import bs, trees

    class TreeMap(bs.TreeMap):
        # bs.TreeMap names unknown trees from trees.canonical_forest, which stops at
        # order 9; beyond that give them a fresh symbol instead of raising StopIteration.
        def __missing__(self, key):
            try:
                return super().__missing__(key)
            except StopIteration:
                self[key] = sympy.Symbol(f"{self.symbol}_{key_nested(key._nl)}")
                return self[key]

    t0 = time.perf_counter()
    A = np.array([[0, 0], [sympy.Rational(1, 2), 0]], dtype=object)
    bw = np.array([0, 1], dtype=object)
    by_order = {p: trees.all_trees(p) for p in range(1, n + 1)}
    a = TreeMap("a")
    for p in range(1, n + 1):   # bs uses trees.trees_to_order(n): canonical names, n <= 9
        for tree in by_order[p]:
            a[tree] = bs.elementary_weight(tree, A, bw)
    e = lambda t: sympy.Rational(1) / trees.gamma(t)
    B = TreeMap("b")
    B[trees.canonical_forest["t1"]] = a[trees.canonical_forest["t1"]]
    for p in range(2, n + 1):
        for t in by_order[p]:
            B[t] = a[t] - bs.subs(B, e, t) + B[t]
    elapsed = time.perf_counter() - t0
    coeffs = {}
    for p in range(1, n + 1):
        for t in by_order[p]:
            v = sympy.sympify(B[t])
            if not v.is_Rational:
                raise RuntimeError(f"BSeries left a symbolic coefficient on {t._nl}: {v}")
            coeffs[key_nested(t._nl)] = frac(v)
    return {"time": elapsed, "coeffs": coeffs}


def _kauri_exact():
    """kauri with exact weights: ``Map.log`` (hence ``RK.modified_equation_map``) uses the
    module-level ``exact_weights = 1./t!`` (floats); replace it by ``Fraction(1, t!)``."""
    import kauri as kr
    import kauri.maps

    kauri.maps.exact_weights = kr.Map(lambda t: Fraction(1, t.factorial()))
    return kr


def a_kauri(n: int) -> dict:
    t0 = time.perf_counter()
    kr = _kauri_exact()
    F = Fraction
    rk = kr.RK([[F(0), F(0)], [F(1, 2), F(0)]], [F(0), F(1)])
    mod = rk.modified_equation_map()
    ts = [t for t in kr.trees_up_to_order(n) if t.list_repr is not None]
    vals = [mod(t) for t in ts]
    elapsed = time.perf_counter() - t0
    coeffs = {key_kauri(t.list_repr): frac(Fraction(v)) for t, v in zip(ts, vals, strict=True)}
    return {"time": elapsed, "coeffs": coeffs}


# ============================================================================ workers (b)


def _problem():
    import sympy

    x, y = sympy.symbols("x y")
    L = sympy.sympify(LOSS, locals={"x": x, "y": y})
    return sympy, x, y, L


def b_bea(p: int) -> dict:
    sympy, x, y, L = _problem()
    t0 = time.perf_counter()
    import bea
    from bea import methods
    t_import = time.perf_counter() - t0

    t0 = time.perf_counter()
    out = bea.modified_equation(methods.gd(), p).evaluate(L, [x, y])
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(3 if cold < 2 else 1):
        t0 = time.perf_counter()
        bea.modified_equation(methods.gd(), p).evaluate(L, [x, y])
        warm.append(time.perf_counter() - t0)
    return {"time": cold, "warm": min(warm), "import": t_import,
            "fields": [[str(e) for e in fk] for fk in out]}


def b_bseries(p: int) -> dict:
    """``BSeries.bs.modified_equation(y, f, A, b, order)`` returns the modified field
    summed over powers of h (trees up to ``order``, so ``order = p + 1``); f_k is the
    coefficient of ``h^k`` after expanding."""
    import numpy as np
    from BSeries import bs

    sympy, x, y, L = _problem()
    f = np.array([-sympy.diff(L, v) for v in (x, y)], dtype=object)
    A = np.array([[0]], dtype=object)
    bw = np.array([1], dtype=object)
    t0 = time.perf_counter()
    ser = bs.modified_equation([x, y], f, A, bw, order=p + 1)
    call = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex = [sympy.expand(c) for c in ser]
    fields = [[ex[i].coeff(bs.h, k) for i in range(2)] for k in range(p + 1)]
    expand = time.perf_counter() - t0
    return {"time": call, "time_expanded": call + expand,
            "fields": [[str(e) for e in fk] for fk in fields]}


def b_kauri(p: int) -> dict:
    """``kauri.BSeries(y, f, RK.modified_equation_map(), p + 1).series()`` is
    ``sum_{|t|<=p+1} h^|t| b(t)/sigma(t) F(t)`` = h f~ (plus an h^0 term from the empty
    tree); f_k is the coefficient of h^(k+1)."""
    sympy, x, y, L = _problem()
    t0 = time.perf_counter()
    kr = _kauri_exact()
    rk = kr.RK([[Fraction(0)]], [Fraction(1)])
    Y = sympy.Matrix([x, y])
    f = sympy.Matrix([-sympy.diff(L, v) for v in (x, y)])
    ser = kr.BSeries(Y, f, rk.modified_equation_map(), p + 1).series()
    call = time.perf_counter() - t0
    t0 = time.perf_counter()
    h = sympy.Symbol("h")
    ex = [sympy.expand(c) for c in ser]
    fields = [[ex[i].coeff(h, k + 1) for i in range(2)] for k in range(p + 1)]
    expand = time.perf_counter() - t0
    # the h^0 term is the empty tree: kauri's log map gives it weight 1 (F(empty) = y)
    return {"time": call, "time_expanded": call + expand,
            "fields": [[str(e) for e in fk] for fk in fields]}


WORKERS = {("a", "bea"): a_bea, ("a", "BSeries"): a_bseries, ("a", "kauri"): a_kauri,
           ("b", "bea"): b_bea, ("b", "BSeries"): b_bseries, ("b", "kauri"): b_kauri}


# ============================================================================ driver


def run_fresh(part: str, lib: str, order: int, timeout: float) -> dict:
    """One measurement in a fresh interpreter; {'status': 'ok'|'timeout'|'error', ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "out.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", part, lib,
               str(order), "--dump", str(dump)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "limit": timeout}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not dump.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"status": "error", "error": " | ".join(tail)}
        out = json.loads(dump.read_text())
        out["status"] = "ok"
        out["process_wall"] = wall
        return out


def compare_coeffs(ref: dict[str, str], other: dict[str, str]) -> dict:
    keys = set(ref) | set(other)
    bad = [k for k in keys
           if Fraction(ref.get(k, "0")) != Fraction(other.get(k, "0"))]
    return {"trees": len(keys), "trees_bea": len(ref), "trees_other": len(other),
            "mismatches": len(bad), "examples": sorted(bad)[:3],
            "agree": not bad and set(ref) == set(other)}


def compare_fields(ref: list[list[str]], other: list[list[str]]) -> dict:
    import sympy

    x, y = sympy.symbols("x y")
    loc = {"x": x, "y": y}
    bad = []
    structural = True
    for k, (fr, fo) in enumerate(zip(ref, other, strict=True)):
        for i, (er, eo) in enumerate(zip(fr, fo, strict=True)):
            a = sympy.sympify(er, locals=loc)
            b = sympy.sympify(eo, locals=loc)
            if sympy.expand(a - b) != 0:
                bad.append(f"f_{k}[{i}]")
            if sympy.expand(a) != sympy.expand(b):
                structural = False
    return {"agree": not bad and len(ref) == len(other), "mismatches": bad,
            "expanded_forms_identical": structural}


def count_terms(fields: list[list[str]]) -> int:
    import sympy

    return sum(len(sympy.Add.make_args(sympy.sympify(e))) for fk in fields for e in fk)


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def machine_info() -> dict:
    def ver(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from sympy.external.gmpy import GROUND_TYPES
    except ImportError:  # pragma: no cover
        GROUND_TYPES = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or None
    except OSError:
        commit = None
    return {
        "processor": platform.processor(), "cpu_model": cpu, "machine": platform.machine(),
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0], "implementation": platform.python_implementation(),
        "sympy_ground_types": GROUND_TYPES, "git_commit": commit,
        "load_average_at_start": _loadavg(),
        "packages": {n: ver(n) for n in ("bea", "sympy", "gmpy2", "numpy", "BSeries",
                                         "kauri")},
    }


def fmt_t(r: dict | None, key: str = "time") -> str:
    if r is None:
        return "-"
    st = r["status"]
    if st == "ok":
        v = r[key]
        return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"
    if st == "timeout":
        return f"timeout > {r['limit']:.0f} s"
    if st == "skipped":
        return f"skipped ({r['why']})"
    return "error"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}x"


def ratio(other: dict | None, ref: dict | None, key: str = "time") -> float | None:
    if other and ref and other["status"] == "ok" and ref["status"] == "ok":
        return other[key] / ref["time"]
    return None


def run_part(part: str, libs: list[str], orders: dict[str, list[int]], timeout: float,
             log) -> dict[str, dict[int, dict]]:
    res: dict[str, dict[int, dict]] = {}
    for lib in libs:
        res[lib] = {}
        stopped = None
        for n in orders[lib]:
            if stopped is not None:
                res[lib][n] = {"status": "skipped",
                               "why": f"order {stopped} took > {timeout:.0f} s"}
                log(f"  ({part}) {lib:8s} order {n:2d}: skipped")
                continue
            # bea must never hit the timeout: give it ten times the budget
            r = run_fresh(part, lib, n, timeout * (10 if lib == "bea" else 1))
            res[lib][n] = r
            log(f"  ({part}) {lib:8s} order {n:2d}: {fmt_t(r)}"
                + (f"  [warm {fmt_t(r, 'warm')}]" if lib == "bea" and r["status"] == "ok"
                   else "")
                + (f"  {r.get('error', '')}" if r["status"] == "error" else ""))
            if r["status"] != "ok":
                stopped = n
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=3, metavar=("PART", "LIB", "ORDER"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds per BSeries/kauri call before it is stopped (default 120)")
    ap.add_argument("--quick", action="store_true", help="orders 6, 8 (a) and 4, 5 (b) only")
    ap.add_argument("--parts", default="ab", help="which parts to run: a, b or ab")
    ap.add_argument("--libs", default="bea,BSeries,kauri")
    ap.add_argument("--out", default=str(RESULTS), help="folder for the JSON/Markdown")
    args = ap.parse_args(argv)

    if args.worker:
        part, lib, order = args.worker
        out = WORKERS[(part, lib)](int(order))
        Path(args.dump).write_text(json.dumps(out))
        return 0

    libs = [s.strip() for s in args.libs.split(",") if s.strip()]
    if "bea" not in libs:
        libs.insert(0, "bea")
    orders_a = [6, 8] if args.quick else ORDERS_A
    orders_b = [4, 5] if args.quick else ORDERS_B
    bea_a = orders_a + ([] if args.quick else BEA_ONLY_A)
    log = lambda s: print(s, flush=True)
    info = machine_info()
    log(f"machine: {info['cpu_model'] or info['processor']} ({info['cpu_count']} CPUs), "
        f"python {info['python']}, sympy {info['packages']['sympy']} "
        f"[{info['sympy_ground_types']}], BSeries {info['packages']['BSeries']}, "
        f"kauri {info['packages']['kauri']}")

    result: dict = {"machine": info, "timeout_s": args.timeout, "loss": LOSS,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    rows_a: list[dict] = []
    rows_b: list[dict] = []

    if "a" in args.parts:
        log("(a) abstract modified equation, explicit midpoint, trees |t| <= N")
        oa = {lib: (bea_a if lib == "bea" else orders_a) for lib in libs}
        ra = run_part("a", libs, oa, args.timeout, log)
        for n in bea_a:
            ref = ra["bea"][n]
            row = {"order": n, "bea": _strip(ref)}
            for lib in libs[1:]:
                r = ra[lib].get(n)
                if r is None:
                    continue
                row[lib] = _strip(r)
                row[f"{lib}_over_bea"] = ratio(r, ref)
                if r["status"] == "ok" and ref["status"] == "ok":
                    row[f"{lib}_agreement"] = compare_coeffs(ref["coeffs"], r["coeffs"])
            if ref["status"] == "ok":
                row["trees"] = len(ref["coeffs"])
                row["nonzero"] = sum(1 for v in ref["coeffs"].values() if v != "0/1")
                if n in TARGETS_A:
                    row["target_s"] = TARGETS_A[n]
                    row["target_met"] = ref["time"] < TARGETS_A[n]
                    if n in TARGET_RSS_MB_A:
                        row["target_rss_mb"] = TARGET_RSS_MB_A[n]
                        row["target_met"] = row["target_met"] and ref.get(
                            "peak_rss_mb", float("inf")) < TARGET_RSS_MB_A[n]
            rows_a.append(row)
        result["a"] = rows_a

    if "b" in args.parts:
        log(f"(b) coordinate-level modified equation of GD on L = {LOSS}, f_0..f_p")
        rb = run_part("b", libs, {lib: orders_b for lib in libs}, args.timeout, log)
        for p in orders_b:
            ref = rb["bea"][p]
            row = {"p": p, "bea": _strip(ref)}
            for lib in libs[1:]:
                r = rb[lib][p]
                row[lib] = _strip(r)
                row[f"{lib}_over_bea"] = ratio(r, ref)
                row[f"{lib}_expanded_over_bea"] = ratio(r, ref, "time_expanded")
                if r["status"] == "ok" and ref["status"] == "ok":
                    row[f"{lib}_agreement"] = compare_fields(ref["fields"], r["fields"])
            if ref["status"] == "ok":
                row["terms"] = count_terms(ref["fields"])
            if p >= TARGET_B_FROM and "BSeries" in libs:
                rat = row.get("BSeries_over_bea")
                row["target_ratio"] = TARGET_B_RATIO
                row["target_met"] = rat is not None and rat >= TARGET_B_RATIO
            rows_b.append(row)
        result["b"] = rows_b

    info["load_average_at_end"] = _loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # a part not run this time is kept from the previous results file, with the machine
    # line of the run that made it (so `--parts b` does not erase part (a))
    try:
        old = json.loads((out / "modified_equation.json").read_text())
    except (OSError, ValueError):
        old = {}
    for part in "ab":
        if part not in result and isinstance(old.get(part), list):
            result[part] = old[part]
            result[f"{part}_from"] = old.get(f"{part}_from") or {
                "created": old.get("created"),
                "commit": old.get("machine", {}).get("git_commit"),
                "load": [old.get("machine", {}).get("load_average_at_start"),
                         old.get("machine", {}).get("load_average_at_end")]}
    atomic_write_json(out / "modified_equation.json", result)
    md = render_markdown(result, libs)
    atomic_write_text(out / "modified_equation.md", md)
    print()
    print(md)
    return 0


def _strip(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("coeffs", "fields")}


def _agree(row: dict, lib: str) -> str:
    ag = row.get(f"{lib}_agreement")
    if ag is None:
        return "-"
    if ag["agree"]:
        return "yes"
    return f"NO ({ag.get('mismatches')})"


def render_markdown(res: dict, libs: list[str]) -> str:
    m = res["machine"]
    others = libs[1:]
    lines = ["# Modified equations: bea vs BSeries vs kauri", ""]
    lines.append(f"Machine: {m['cpu_model'] or m['processor'] or m['machine']} "
                 f"(`platform.processor()` = {m['processor']!r}, {m['cpu_count']} CPUs, "
                 f"{m['platform']}); Python {m['python']}; "
                 + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
                 + f"; sympy ground types {m['sympy_ground_types']}; "
                 f"commit {m['git_commit']}; {res['created']}; load average (1/5/15 min) "
                 f"{m['load_average_at_start']} at start, {m['load_average_at_end']} at end "
                 "(other jobs shared the machine when it was above the CPU count).")
    lines.append("")
    lines.append("Every number is one call in a fresh Python process (after imports); "
                 "*warm* repeats the call in the same process (trees already interned). "
                 f"BSeries/kauri calls are stopped after {res['timeout_s']:.0f} s and "
                 "higher orders skipped.  Ratios are other/bea (cold).")
    if "a" in res:
        lines += ["", "## (a) Abstract modified equation: explicit midpoint, exact "
                  "coefficients on all trees with |t| <= N", ""]
        if "a_from" in res:
            f = res["a_from"]
            lines += [f"From an earlier run: commit {f['commit']}, {f['created']}, load "
                      f"{f['load'][0]} -> {f['load'][1]}.", ""]
        hdr = ["N", "trees", "bea", "bea warm", "bea peak RSS"]
        for lib in others:
            hdr += [lib, f"{lib}/bea", f"{lib} agrees"]
        hdr += ["target (bea)"]
        lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        for row in res["a"]:
            cells = [str(row["order"]), f"{row.get('trees', '-'):,}"
                     if isinstance(row.get("trees"), int) else "-",
                     fmt_t(row["bea"]), fmt_t(row["bea"], "warm"),
                     f"{row['bea']['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in row["bea"]
                     else "-"]
            for lib in others:
                cells += [fmt_t(row.get(lib)), fmt_ratio(row.get(f"{lib}_over_bea")),
                          _agree(row, lib)]
            if "target_s" in row:
                mem = (f", < {row['target_rss_mb'] / 1024:g} GB" if "target_rss_mb" in row
                       else "")
                cells.append(f"< {row['target_s']:g} s{mem}: "
                             + ("met" if row["target_met"] else "MISSED"))
            else:
                cells.append("-")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "N = 15, 16 are bea only: the trees of `modified_equation(method, N - 1)` "
                  "(f_0..f_14), in case 'order 14' is read as the power of h."]
    if "b" in res:
        lines += ["", f"## (b) GD on L = {res['loss']}: exact f_0..f_p in coordinates",
                  ""]
        if "b_from" in res:
            f = res["b_from"]
            lines += [f"From an earlier run: commit {f['commit']}, {f['created']}, load "
                      f"{f['load'][0]} -> {f['load'][1]}.", ""]
        hdr = ["p", "terms", "bea", "bea warm"]
        for lib in others:
            hdr += [lib, f"{lib} + expand", f"{lib}/bea", f"{lib}+expand/bea",
                    f"{lib} agrees"]
        hdr += [f"target (>= {TARGET_B_RATIO:g}x BSeries)"]
        lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        for row in res["b"]:
            cells = [str(row["p"]), str(row.get("terms", "-")), fmt_t(row["bea"]),
                     fmt_t(row["bea"], "warm")]
            for lib in others:
                cells += [fmt_t(row[lib]), fmt_t(row[lib], "time_expanded"),
                          fmt_ratio(row.get(f"{lib}_over_bea")),
                          fmt_ratio(row.get(f"{lib}_expanded_over_bea")), _agree(row, lib)]
            if "target_met" in row:
                cells.append("met" if row["target_met"] else "MISSED")
            else:
                cells.append("-")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "bea returns expanded polynomials; *BSeries*/*kauri* is the library "
                  "call alone (an unexpanded sum in h), *+ expand* adds sympy.expand and "
                  "extracting the coefficients of h, which is what it takes to get the "
                  "same f_k.  Agreement: expand(f_bea - f_other) == 0 for every k and "
                  "component."]
    lines += ["", "## How the libraries were called", "",
              "* bea: `bea.modified_equation(methods.explicit_midpoint(), N - 1).series` "
              "(the public call, disk cache off: `BEA_CACHE=0`); "
              "`modified_equation(methods.gd(), p).evaluate(L, [x, y])`.",
              "* BSeries 0.1: `bs.modified_equation` only returns the field evaluated on "
              "a concrete f, so (a) runs its coefficient recursion verbatim "
              "(`B[t] = a[t] - bs.subs(B, e, t) + B[t]` with `a = bs.elementary_weight`, "
              "`e = 1/gamma`), filling `a` from `trees.all_trees(p)` and naming trees "
              "beyond order 9 (where `trees.canonical_forest` stops) by a fresh symbol. "
              "(b) is `bs.modified_equation([x, y], f, A, b, order=p+1)` itself. Same "
              "normalisation as bea (HLW: `h^|t| a(t)/sigma(t) F(t)`).",
              "* kauri: `RK(A, b).modified_equation_map()` (= `Map.log`: "
              "`phi ^ (exact_weights & cem.antipode)`), with the module's float "
              "`exact_weights = 1./t!` replaced by `Fraction(1, t!)` and a Fraction "
              "tableau, so everything is exact; (b) is "
              "`kauri.BSeries(Matrix([x, y]), f, that map, p+1).series()`. Same "
              "normalisation (`h^|t| phi(t)/sigma(t) F(t)`).",
              "* Trees are matched by a canonical parenthesis string built from each "
              "library's nested-list form; coefficients compared as exact fractions on "
              "every tree of order <= N (zeros included)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

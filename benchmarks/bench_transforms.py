"""The ``bea.optax`` transforms of order <= 3 against the fastest hand-written JAX step.

Every timed function is one whole jitted training step ``params -> params - h u`` with
``u`` the corrected gradient (``g = grad L``, ``H v`` a Hessian-vector product,
``D3[u, v] = D^3 L[u, v, .]``, ``D4[u, v, w] = D^4 L[u, v, w, .]``):

* cancel GD's order-1 implicit regulariser, three ways that give the same ``u``:
  ``explicit_regularizer(implicit_gradient_regularizer(), -h)``,
  ``explicit_regularizer(modified_loss(gd(), 1).to_jax(L), -1, learning_rate=h)`` and
  ``drift_correction(gd(), 1, h)``:  ``u = g - (h/2) H g``;
* ``explicit_regularizer(modified_loss(gd(), 2).to_jax(L), -1, learning_rate=h)``:
  ``u = g - (h/2) H g - h^2 (D3[g, g]/12 + H^2 g/3)`` (minus the gradient of the order-1
  and order-2 regulariser; ``-grad L~`` is GD's modified field);
* ``drift_correction(gd(), 2, h)``: ``u = g - (h/2) H g + (h^2/6)(D3[g, g] + H^2 g)``;
* ``drift_correction(gd(), 3, h)``: ``... - h^3 (D4[g, g, g]/24 + D3[g, H g]/8 +
  H D3[g, g]/24 + H^3 g/24)`` (:func:`bea.modifying_equation`'s terms).

``bea``: ``optax.chain(transform, optax.sgd(h))`` fed ``grad L`` (the transform's own
``grad L`` is the same computation, merged by XLA); ``hand``: the terms merged by hand by
outer operator (e.g. drift order 3: ``g + H[-(h/2) g + (h^2/6) H g - (h^3/24) D3[g, g] -
(h^3/24) H^2 g] + (h^2/6) D3[g, g] - (h^3/8) D3[g, H g] - (h^3/24) D4[g, g, g]``, with
``H^2 g`` from the same tangent as ``D3[g, H g]``), Hessian-vector
products forward-over-reverse (``jvp`` of ``grad``) or reverse-over-forward (``grad`` of
``jvp``), the faster of the two by median over the rounds (a second jit of it, timed
alongside, gives the noise floor).  Beside the default transform: the same transform
with ``guard=False`` (no finite check) against the bare hand step, the guarded hand step
(the like-for-like baseline of the default), and the transform built with the ``ad_mode``
:func:`bea.optax.tune_ad_mode` picks on the problem.  Timings alternate in rounds in one run;
ratios are medians of the per-round ratios.  Problems: the small float64 net (64-512-1)
and float32 tanh MLPs of ~1e5 and ~1e6 parameters of ``bench_hand``.  Target (issue 20):
``bea`` within 1.05x ``hand``.  The results of the two agree (max relative difference).

    .venv/bin/python benchmarks/bench_transforms.py [--quick]

Writes ``benchmarks/results/transforms_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _machine import begin_run, machine_info, machine_line, write_results
from _markdown import table
from bench_hand import (
    fastest_variant,
    hand_derivatives,
    median_ratio,
    problems,
    rounds_for,
    timed_rounds,
)


def hand_update(loss, kind, hvp_mode):
    """The corrected gradient ``u(p, h, data)`` of ``kind`` merged by hand (docstring)."""
    import jax

    def tmap(f, *ts):
        return jax.tree.map(f, *ts)

    def u(p, h, data):
        grad, hvp = hand_derivatives(loss, data, hvp_mode)
        g = grad(p)

        def d3(a, b):   # D^3 L[a, b, .]
            return jax.jvp(lambda q: hvp(q, a), (p,), (b,))[1]

        if kind == "order 1":
            return tmap(lambda a, b: a - (h / 2) * b, g, hvp(p, g))
        hg = hvp(p, g)
        d3gg = d3(g, g)
        if kind == "modified loss order 2":   # g + H[-(h/2) g - (h^2/3) H g] - h^2/12 D3
            inner = tmap(lambda a, b: -(h / 2) * a - (h ** 2 / 3) * b, g, hg)
            return tmap(lambda a, b, c: a + b - (h ** 2 / 12) * c, g, hvp(p, inner), d3gg)
        if kind == "drift order 2":           # g + H[-(h/2) g + (h^2/6) H g] + h^2/6 D3
            inner = tmap(lambda a, b: -(h / 2) * a + (h ** 2 / 6) * b, g, hg)
            return tmap(lambda a, b, c: a + b + (h ** 2 / 6) * c, g, hvp(p, inner), d3gg)
        assert kind == "drift order 3"
        hhg = hvp(p, hg)
        inner = tmap(lambda a, b, c, d: -(h / 2) * a + (h ** 2 / 6) * b
                     - (h ** 3 / 24) * c - (h ** 3 / 24) * d, g, hg, d3gg, hhg)
        # D3[g, (h^2/6) g - (h^3/8) H g] split: D3[g, g] is computed anyway, and
        # D3[g, H g] brings H H g with it (the same tangent), so this costs less than one
        # D3 of the combination plus a separate H H g (XLA: 1.14 vs 1.24 GFLOP at 1e5, fr)
        d4ggg = jax.jvp(lambda q: jax.jvp(lambda r: hvp(r, g), (q,), (g,))[1], (p,), (g,))[1]
        return tmap(lambda a, b, c, d, e: a + b + (h ** 2 / 6) * c - (h ** 3 / 8) * d
                    - (h ** 3 / 24) * e, g, hvp(p, inner), d3gg, d3(g, hg), d4ggg)

    return u


def builders(loss, h):
    """``{label: (kind, build(ad_mode, guard) -> transform)}``; ``build`` ignores
    ``ad_mode`` where the transform has no AD-mode choice (IGR: one HVP with g held
    constant)."""
    import bea.optax as bo
    from bea import methods as M
    from bea import modified_loss

    def ml(order):
        compiled = modified_loss(M.gd(), order).to_jax(loss)
        return lambda mode, guard: bo.explicit_regularizer(
            bo.modified_loss_term(compiled, ad_mode=mode), -1.0, learning_rate=h,
            guard=guard)

    def drift(order):
        return lambda mode, guard: bo.drift_correction(M.gd(), order, h, ad_mode=mode,
                                                       guard=guard)

    return {
        "explicit_regularizer(implicit_gradient_regularizer(), -h)":
            ("order 1", lambda mode, guard: bo.explicit_regularizer(
                bo.implicit_gradient_regularizer(), -h, guard=guard)),
        "explicit_regularizer(modified loss gd 1, -1)": ("order 1", ml(1)),
        "drift_correction(gd, 1)": ("order 1", drift(1)),
        "explicit_regularizer(modified loss gd 2, -1)": ("modified loss order 2", ml(2)),
        "drift_correction(gd, 2)": ("drift order 2", drift(2)),
        "drift_correction(gd, 3)": ("drift order 3", drift(3)),
    }


def compare(name, params, loss, data, n, rounds, budget, only=None):
    import jax
    import jax.numpy as jnp
    import optax

    import bea.optax as bo
    from kernels import tree_util as tu

    h = 0.01
    hj = jnp.asarray(h, jax.tree.leaves(params)[0].dtype)
    rows = []

    def jitted_step(tx):
        chain = optax.chain(tx, optax.sgd(h))

        @jax.jit
        def run(p, s, d):
            g = jax.grad(loss)(p, d)
            upd, s = chain.update(g, s, p, loss_fn=loss, batch=d)
            return optax.apply_updates(p, upd)

        return run, chain.init(params)

    for label, (kind, build) in builders(loss, h).items():
        if only and not any(s in label for s in only):
            continue

        bea_step, state = jitted_step(build("by-arity", True))
        free_step, free_state = jitted_step(build("by-arity", False))
        tunable = "implicit_gradient_regularizer" not in label
        if tunable:   # bea.optax.tune_ad_mode on this problem (its time is not counted)
            mode, _ = bo.tune_ad_mode(lambda m, build=build: build(m, True), params,
                                      loss_fn=loss, batch=data)
            tuned_step, tuned_state = jitted_step(build(mode, True))

        def hand_step(mode, kind=kind, guarded=False):
            u = hand_update(loss, kind, mode)

            def hand(p, hh, d):
                v = u(p, hh, d)
                if guarded:   # bea.optax's guard: skip a non-finite correction, record |c|
                    g = jax.grad(loss)(p, d)
                    c = jax.tree.map(lambda vv, gg: vv - gg, v, g)
                    norm = tu.tree_norm(c)   # one reduction decides, as in bea.optax
                    ok = jnp.isfinite(norm)
                    norm = jnp.where(ok, norm, 0.0)
                    v = jax.tree.map(lambda gg, cc: jnp.where(ok, gg + cc, gg), g, c)
                    return jax.tree.map(lambda x, w: x - hh * w, p, v), norm
                return jax.tree.map(lambda x, w: x - hh * w, p, v)
            return jax.jit(hand)

        fr, rf = hand_step("forward-over-reverse"), hand_step("reverse-over-forward")
        gfr = hand_step("forward-over-reverse", guarded=True)
        grf = hand_step("reverse-over-forward", guarded=True)
        again = {"fr": hand_step("forward-over-reverse"),
                 "rf": hand_step("reverse-over-forward")}
        fns = {"bea": lambda f=bea_step, s=state: f(params, s, data),
               "bea unguarded": lambda f=free_step, s=free_state: f(params, s, data),
               "hand fr": lambda f=fr: f(params, hj, data),
               "hand rf": lambda f=rf: f(params, hj, data),
               "hand fr again": lambda f=again["fr"]: f(params, hj, data),
               "hand rf again": lambda f=again["rf"]: f(params, hj, data),
               "guarded fr": lambda f=gfr: f(params, hj, data)[0],
               "guarded rf": lambda f=grf: f(params, hj, data)[0]}
        if tunable:
            fns["bea tuned"] = lambda f=tuned_step, s=tuned_state: f(params, s, data)
        outs = {k: jax.block_until_ready(f()) for k, f in fns.items()}
        step = jax.tree.map(lambda a, b: a - b, outs["hand fr"], params)
        scale = float(tu.tree_norm(step))
        diff = max(float(tu.tree_norm(jax.tree.map(lambda a, b: a - b, outs[k],
                                                   outs["hand fr"])))
                   for k in ("bea", "bea unguarded", "hand rf",
                             *(["bea tuned"] if tunable else []))) / scale
        times = timed_rounds(fns, rounds, budget)
        fastest = fastest_variant(times, ["hand fr", "hand rf"])
        times["hand"] = times[fastest]
        times["guarded"] = times[fastest_variant(times, ["guarded fr", "guarded rf"])]
        r_aa = median_ratio(times[fastest + " again"], times["hand"])
        ratio = median_ratio(times["bea"], times["hand"])
        ratio_g = median_ratio(times["bea"], times["guarded"])
        ratio_tuned = median_ratio(times["bea tuned"], times["guarded"]) if tunable else None
        ratio_free = median_ratio(times["bea unguarded"], times["hand"])
        row = {"problem": name, "params": n, "transform": label, "update": kind,
               "bea_ms": 1e3 * statistics.median(times["bea"]),
               "hand_ms": 1e3 * statistics.median(times["hand"]),
               "hand_fr_ms": 1e3 * statistics.median(times["hand fr"]),
               "hand_rf_ms": 1e3 * statistics.median(times["hand rf"]),
               "guarded_ms": 1e3 * statistics.median(times["guarded"]),
               "bea_over_hand": ratio, "bea_over_guarded_hand": ratio_g,
               "hand_variant": fastest, "hand_again_over_hand": r_aa,
               "bea_tuned_over_guarded_hand": ratio_tuned,
               "tuned_mode": list(mode) if tunable else None,
               "bea_unguarded_over_hand": ratio_free,
               "bea_unguarded_ms": 1e3 * statistics.median(times["bea unguarded"]),
               "max_rel_diff_of_step": diff, "target": 1.05}
        rows.append(row)
        print(f"  {name} {label}: bea {ratio:.3f}x hand, {ratio_g:.3f}x hand with the guard, "
              f"unguarded {ratio_free:.3f}x hand, tuned "
              f"{'-' if ratio_tuned is None else f'{ratio_tuned:.3f}'}x hand with the guard, "
              f"A/A {r_aa:.3f} (rel diff {diff:.1e})", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated substrings of transforms")
    args = ap.parse_args(argv)
    load = begin_run()
    import jax

    jax.config.update("jax_enable_x64", True)   # the small float64 net; MLPs stay float32
    t0 = time.perf_counter()
    only = [s for s in args.only.split(",") if s]
    rounds, budget = (2, 0.5) if args.quick else (5, 1.0)
    rows = []
    for name, params, loss, data, n in problems(args.quick):
        rows += compare(name, params, loss, data, n, rounds_for(n, rounds), budget, only)
    info = machine_info(load)
    res = {"rows": rows, "machine": info, "wall_s": time.perf_counter() - t0,
           "quick": args.quick}
    short = {"reverse-over-forward": "rf", "forward-over-reverse": "fr"}
    md = ["# bea.optax transforms vs hand-written JAX steps", "",
          "One jitted step params -> params - h u (gradient included), u the corrected "
          "gradient; 'hand' merges the terms by outer operator and is the faster of "
          "forward-over-reverse and reverse-over-forward HVPs by median over the rounds "
          "('A/A': a second jit of it timed against it, the noise floor); ratios are "
          "medians over rounds of alternated timings in one run (target: bea <= 1.05x "
          "hand).  Every bea.optax transform guards its correction by default (skips a "
          "non-finite one and records its norm: one reduction over the parameters and a "
          "select); 'hand + guard' is the hand step with that same guard, the like-for-like "
          "baseline, and 'bea unguarded' the transform built with guard=False, against the "
          "bare hand step.  'bea tuned': built with the ad_mode that bea.optax.tune_ad_mode "
          "picked by timing on this problem (modes for nodes with <= 1 / >= 2 tangents), "
          "guarded, against hand + guard.", ""]
    md += table(["problem", "transform", "bea (ms)", "hand (ms)", "bea / hand",
                 "A/A (hand again / hand)", "hand + guard (ms)", "bea / (hand + guard)",
                 "bea unguarded / hand", "bea tuned / (hand + guard) (modes)",
                 "rel diff of step"],
                [[r["problem"], r["transform"], f"{r['bea_ms']:.3f}", f"{r['hand_ms']:.3f}",
                  f"{r['bea_over_hand']:.3f}", f"{r['hand_again_over_hand']:.3f}",
                  f"{r['guarded_ms']:.3f}", f"{r['bea_over_guarded_hand']:.3f}",
                  f"{r['bea_unguarded_over_hand']:.3f}",
                  "-" if r["bea_tuned_over_guarded_hand"] is None else
                  f"{r['bea_tuned_over_guarded_hand']:.3f} "
                  f"({', '.join(short[m] for m in r['tuned_mode'])})",
                  f"{r['max_rel_diff_of_step']:.1e}"]
                 for r in rows])
    md += ["", machine_line(info), ""]
    print("\n".join(md))
    if not args.no_write:
        write_results(f"transforms_{jax.devices()[0].platform}"
                      + ("_quick" if args.quick else ""), res, "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

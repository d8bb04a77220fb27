"""GAN on a mixture of Gaussians with and without drift regularisers (Rosca et al. 2021).

Simultaneous GD on a small MLP GAN (non-saturating generator loss, BCE discriminator),
plain and with the order-1 interaction drift of simultaneous GD cancelled or strengthened
(explicit regularisers built from the engine's modified loss, :mod:`games.experiments`).

Sizes.  Eight modes on a circle of radius 2 with standard deviation ``std = 0.1`` (modes
1.53 apart, so the 3-std discs of the quality measures stay disjoint); with the classic
``std = 0.02`` a CPU-sized GAN under plain SGD never concentrates samples within 0.06 of a
mode and every run scores 0 modes.  Step size ``lr = 0.03`` (0.01..0.03 cover modes; 0.1
and above cycle or diverge), 16,000 steps.

Measure.  GD on a GAN does not converge to a point but hops between modes, so the final
iterate alone is a noisy score.  Each run is scored at the last ``n_last`` of ``n_checks``
evenly spaced checkpoints (default: the last quarter of training) and the number of
covered modes and the fraction of high-quality samples (within 3 std of a mode) are
averaged over those checkpoints.  Seeds fix initialisation and batches, and are shared by
the three variants, so variants are compared by a paired t-test over seeds
(:func:`conclusion`); a difference is claimed only when it is significant.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from bea.files import atomic_write_json

from . import runners, zoo
from .experiments import regularised_game

BASELINE = "simultaneous GD"
VARIANTS = {
    BASELINE: {},
    "interaction drift cancelled": {"interaction_x": -1.0, "interaction_y": -1.0},
    "interaction drift strengthened": {"interaction_x": 1.0, "interaction_y": 1.0},
}


def paired_test(a: Sequence[float], b: Sequence[float], level: float = 0.05
                ) -> dict[str, float | bool]:
    r"""Two-sided paired t-test of ``mean(b - a) = 0`` over seeds.

    :math:`d_i = b_i - a_i`, :math:`t = \bar d / (s_d/\sqrt n)`, significant when
    :math:`|t| > t_{1-\text{level}/2,\,n-1}`.  With :math:`s_d = 0` the difference is
    significant exactly when :math:`\bar d \ne 0` (every seed moved by the same amount);
    with one seed nothing is significant.
    """
    from scipy import stats

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    n = d.size
    mean = float(d.mean()) if n else 0.0
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        return {"n": n, "mean_diff": mean, "sd_diff": sd, "t": float("nan"),
                "p": float("nan"), "significant": False}
    if sd == 0.0:
        t, p = (float("inf") * np.sign(mean), 0.0) if mean != 0 else (0.0, 1.0)
    else:
        t = mean / (sd / np.sqrt(n))
        p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"n": n, "mean_diff": mean, "sd_diff": sd, "t": float(t), "p": float(p),
            "significant": bool(p < level)}


def conclusion(per_seed: Mapping[str, Sequence[float]], baseline: str = BASELINE,
               level: float = 0.05, unit: str = "modes") -> tuple[str, dict[str, Any]]:
    """One sentence per non-baseline variant comparing it with ``baseline`` (paired over
    seeds, :func:`paired_test`); a direction is stated only when the test is significant at
    ``level``, otherwise "no significant difference" with the numbers.  Returns the text
    and the tests by variant."""
    base = per_seed[baseline]
    lines, tests = [], {}
    for name, vals in per_seed.items():
        if name == baseline:
            continue
        r = paired_test(base, vals, level)
        tests[name] = r
        nums = (f"{np.mean(vals):.2f} vs {np.mean(base):.2f} {unit}, paired difference "
                f"{r['mean_diff']:+.2f} +- {r['sd_diff']:.2f} over {r['n']} seeds, "
                f"p = {r['p']:.3f}")
        if r["significant"]:
            verb = "more" if r["mean_diff"] > 0 else "fewer"
            lines.append(f"{name}: {verb} {unit} than {baseline} ({nums})")
        else:
            lines.append(f"{name}: no significant difference from {baseline} ({nums})")
    return "\n".join(lines), tests


def _score(base: zoo.MixtureGAN, x_snapshots: Any, idx: Sequence[int], n_eval: int
           ) -> dict[str, Any]:
    modes, hq = [], []
    finite = True
    for i in idx:
        x = jax.tree.map(lambda a, i=i: a[i], x_snapshots)
        s = np.asarray(base.sample_generator(x, jax.random.PRNGKey(7 + i), n_eval))
        ok = bool(np.all(np.isfinite(s)))
        finite &= ok
        modes.append(int(base.mode_coverage(s)) if ok else 0)
        hq.append(float(base.high_quality_fraction(s)) if ok else 0.0)
    return {"finite": finite, "modes": float(np.mean(modes)), "modes_final": modes[-1],
            "high_quality": float(np.mean(hq)), "samples": s}


def mog_experiment(out: str | None = None, large: bool = False, progress: bool = True,
                   seeds: int | None = None, steps: int | None = None, lr: float = 0.03,
                   std: float = 0.1, n_eval: int = 2000, n_checks: int = 16,
                   n_last: int = 4, resume: bool = False, verbose: bool = True
                   ) -> dict[str, Any]:
    """Train each variant for ``steps`` simultaneous-GD steps on ``seeds`` seeds; returns
    the per-seed table, the summary (mean, std over seeds) and the conclusion, and writes
    ``mog_gan.json`` / ``mog_gan.png`` to ``out`` (then prints the table when ``verbose``).

    Each finished (seed, variant) run is kept in ``out/mog_gan.checkpoint.json``; with
    ``resume=True`` an interrupted experiment continues from there (same configuration)."""
    from bea.files import Checkpoint
    from bea.progress import progress_bar

    seeds = seeds or (10 if large else 5)
    steps = steps or (32000 if large else 16000)
    if steps % n_checks or not 1 <= n_last <= n_checks:
        raise ValueError(f"mog_experiment: steps={steps} must be a multiple of n_checks="
                         f"{n_checks} and 1 <= n_last={n_last} <= n_checks")
    width = 32
    config = {"seeds": seeds, "steps": steps, "lr": lr, "width": width, "std": std,
              "n_eval": n_eval, "n_checks": n_checks, "n_last": n_last}
    ckpt = (Checkpoint(os.path.join(out, "mog_gan.checkpoint.json"), config, resume=resume)
            if out is not None else None)
    idx = list(range(n_checks - n_last + 1, n_checks + 1))

    rows = []
    samples_last: dict[str, np.ndarray] = {}
    bar = progress_bar(seeds * len(VARIANTS), enabled=progress, desc="mog-gan runs")
    for seed in range(seeds):
        base = zoo.mog_gan(jax.random.PRNGKey(seed), width=width, std=std)
        for name, coeffs in VARIANTS.items():
            key = f"{seed}/{name}"
            if ckpt is not None and ckpt.has(key):
                done = ckpt.get(key)
                rows.append(done["row"])
                if seed == 0:
                    samples_last[name] = np.asarray(done["samples"], dtype=float)
                bar.update(1)
                continue
            game = regularised_game(base, lr, (1.0, 1.0), coeffs) if coeffs else base
            tr = runners.run("simultaneous", game, lr=lr, steps=steps,
                             key=jax.random.PRNGKey(1000 + seed), save_every=steps // n_checks)
            sc = _score(base, tr.x, idx, n_eval)
            s = sc.pop("samples")
            row = {"seed": seed, "variant": name, **sc}
            rows.append(row)
            if seed == 0:
                samples_last[name] = s
            if ckpt is not None:
                ckpt.put(key, {"row": row, "samples": s if seed == 0 else []})
            bar.update(1)
    bar.close()

    per_seed = {n: [r["modes"] for r in rows if r["variant"] == n] for n in VARIANTS}
    summary = {}
    for name in VARIANTS:
        r = [row for row in rows if row["variant"] == name]
        modes = np.array(per_seed[name])
        hq = np.array([x["high_quality"] for x in r])
        summary[name] = {"mean_modes": float(modes.mean()),
                         "std_modes": float(modes.std(ddof=1)) if len(modes) > 1 else 0.0,
                         "mean_high_quality": float(hq.mean()),
                         "std_high_quality": float(hq.std(ddof=1)) if len(hq) > 1 else 0.0}
    effect, tests = conclusion(per_seed)
    res = {"steps": steps, "lr": lr, "seeds": seeds, "width": width, "std": std,
           "scored_checkpoints": [i * (steps // n_checks) for i in idx],
           "rows": rows, "summary": summary, "tests": tests, "effect": effect}
    res["table"] = _table(rows, summary, seeds, steps, idx, n_checks)
    res["report"] = f"{res['table']}\n\neffect (paired t-test over seeds, 5% level):\n{effect}"
    if out is not None:
        os.makedirs(out, exist_ok=True)
        atomic_write_json(os.path.join(out, "mog_gan.json"), res)
        _plot(samples_last, base, os.path.join(out, "mog_gan.png"))
    if verbose:
        print(res["report"])
    return res


def _table(rows: list[dict[str, Any]], summary: dict[str, Any], seeds: int, steps: int,
           idx: list[int], n_checks: int) -> str:
    first = idx[0] * steps // n_checks
    table = [f"covered modes (of 8) and high-quality fraction, averaged over steps "
             f"{first}..{steps} ({len(idx)} checkpoints)",
             "seed | " + " | ".join(VARIANTS)]
    for seed in range(seeds):
        cells = []
        for name in VARIANTS:
            (row,) = [x for x in rows if x["seed"] == seed and x["variant"] == name]
            cells.append(f"{row['modes']:.2f} modes, HQ {row['high_quality']:.2f}")
        table.append(f"{seed} | " + " | ".join(cells))
    table.append("mean +- std | " + " | ".join(
        f"{summary[n]['mean_modes']:.2f} +- {summary[n]['std_modes']:.2f} modes, HQ "
        f"{summary[n]['mean_high_quality']:.2f} +- {summary[n]['std_high_quality']:.2f}"
        for n in VARIANTS))
    return "\n".join(table)


def _plot(samples: dict[str, np.ndarray], game: Any, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(samples), 4))
    c = np.asarray(game.centers)
    for i, (name, s) in enumerate(samples.items()):
        ax = fig.add_subplot(1, len(samples), i + 1)
        ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.4)
        ax.scatter(c[:, 0], c[:, 1], marker="x", color="k")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
    fig.suptitle("MoG GAN, seed 0, last step: generator samples (x: modes)")
    fig.tight_layout()
    from bea.files import save_figure

    save_figure(fig, path, dpi=90)

"""``bea reproduce svag``: SVAG -> SDE on a closed-form problem, SVAG on digits, the LSR.

1. *Stationary variance vs 1/l* (:class:`QuadraticProblem`, an Ornstein-Uhlenbeck SDE):
   SVAG(l)'s stationary ``E|x - cbar|^2`` from an ensemble, against its exact value and
   the SDE's closed form (plus a diffrax SRA1 simulation of the SDE); the gap must shrink
   like ``1/l``.
2. *Digits*: a scale-invariant MLP (:class:`DigitsMLP`) trained by SVAG(l), ``l`` in
   ``{1, 2, 4, 8}``; test accuracy against effective steps ``steps / l`` collapses.
3. *Linear scaling rule*: batch ``k B`` at rate ``k eta``; the equilibrium statistics at
   each ``k`` and the condition ``N/G >= 1/(C^2 - 1)`` (:mod:`.equilibrium`) predict
   where the equilibrium norm and accuracy leave the small-batch values.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ...files import (
    Checkpoint,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
    save_figure,
    stop_cleanly,
)
from ...progress import progress_bar

__all__ = ["FIGURES", "SIZES", "figure", "figures", "report", "reproduce", "run"]

SIZES = {
    "small": {"ls": [1, 2, 4, 8, 16], "runs": 256, "stat_time": 40.0,
              "digits_steps": 300, "digits_runs": 2, "digits_ls": [1, 2, 4, 8],
              "lsr_ks": [1, 4, 16, 64], "lsr_time": 300.0},
    "default": {"ls": [1, 2, 4, 8, 16, 32], "runs": 512, "stat_time": 80.0,
                "digits_steps": 800, "digits_runs": 4, "digits_ls": [1, 2, 4, 8],
                "lsr_ks": [1, 2, 4, 8, 16, 32, 64], "lsr_time": 600.0},
    "large": {"ls": [1, 2, 4, 8, 16, 32, 64], "runs": 2048, "stat_time": 160.0,
              "digits_steps": 2000, "digits_runs": 8, "digits_ls": [1, 2, 4, 8, 16],
              "lsr_ks": [1, 2, 4, 8, 16, 32, 64], "lsr_time": 1500.0},
}

QUAD = {"n": 16, "d": 2, "seed": 0, "eta": 0.5, "batch": 4}
DIGITS = {"width": 32, "eta": 0.2, "batch": 16, "weight_decay": 5e-3, "closeness": math.sqrt(2)}


# ----------------------------------------------------------------------------- 1


def stationary_unit(l: int, cfg: dict) -> dict:
    """Stationary ``E|x - cbar|^2`` of SVAG(l) on the quadratic problem (ensemble)."""
    import jax
    import jax.numpy as jnp

    from .ensembles import ensemble, mean_ci
    from .quadratic import QuadraticProblem
    from .simulate import run_svag

    jax.config.update("jax_enable_x64", True)
    p = QuadraticProblem.random(QUAD["n"], QUAD["d"], QUAD["seed"])
    eta, b = QUAD["eta"], QUAD["batch"]
    per_time = l / eta                              # SVAG steps per unit SDE time
    every = max(1, int(round(per_time)))            # record once per unit time
    burn, total = 10.0, cfg["stat_time"]
    steps = int(round(total * per_time)) // every * every
    c = jnp.asarray(p.mean)
    rec = lambda x: jnp.sum((x - c) ** 2)

    def one(run):
        _, r = run_svag(p.example_loss(), c, p.data, learning_rate=eta, l=l, batch_size=b,
                        steps=steps, run=run, seed=1, record_every=every, record=rec)
        t = jnp.arange(r.shape[0]) * every / per_time
        return jnp.sum(jnp.where(t >= burn, r, 0.0)) / jnp.sum(t >= burn)

    est = mean_ci(np.asarray(ensemble(one, cfg["runs"])))
    exact = float(np.trace(p.svag_stationary_cov(eta, l, b)))
    return {"l": l, "mc": est.value, "hw": est.hw, "exact": exact}


def sde_reference(cfg: dict) -> dict:
    """The SDE's stationary ``E|X - cbar|^2``: closed form and a diffrax SRA1 ensemble."""
    import jax
    import jax.numpy as jnp

    from .ensembles import ensemble, mean_ci
    from .quadratic import QuadraticProblem
    from .simulate import SGDSDE, simulate_sde

    jax.config.update("jax_enable_x64", True)
    p = QuadraticProblem.random(QUAD["n"], QUAD["d"], QUAD["seed"])
    eta, b = QUAD["eta"], QUAD["batch"]
    sde = SGDSDE(p.example_loss(), p.data, eta, b)
    c = jnp.asarray(p.mean)
    burn, total, dt = 10.0, cfg["stat_time"], 0.05
    ts = jnp.arange(burn, total + 1e-9, 1.0)

    def one(run):
        _, xs = simulate_sde(sde, c, jax.random.fold_in(jax.random.PRNGKey(7), run),
                             t1=total, dt=dt, save_ts=ts, scheme="sra1")
        return jnp.mean(jnp.sum((xs - c) ** 2, axis=-1))

    est = mean_ci(np.asarray(ensemble(one, max(64, cfg["runs"] // 4))))
    return {"closed_form": float(np.trace(p.sde_stationary_cov(eta, b))), "sra1": est.value,
            "sra1_hw": est.hw, "dt": dt}


# ----------------------------------------------------------------------------- 2, 3


@functools.cache
def _digits_setup():
    """``(net, loss, train, test)``, one per process: the same ``loss`` object lets the
    jitted equilibrium statistics be reused across the LSR sweep."""
    from .digits import DigitsMLP, load_digits_data

    net = DigitsMLP(DIGITS["width"])
    train, test = load_digits_data()
    return net, net.example_loss(), train, test


def _sq_norm(p):
    import jax
    import jax.numpy as jnp

    return sum(jnp.sum(v ** 2) for v in jax.tree.leaves(p))


def digits_unit(l: int, cfg: dict) -> dict:
    """SVAG(l) on digits: test accuracy every 1/20 of the effective steps (ensemble)."""
    import jax.numpy as jnp

    from .ensembles import ensemble
    from .simulate import run_svag

    net, loss, train, test = _digits_setup()
    eff = cfg["digits_steps"]
    every = eff // 20 * l
    rec = lambda p: jnp.stack([net.accuracy(p, test), net.mean_loss(p, train)])

    def one(run):
        return run_svag(loss, net.init(), train, learning_rate=DIGITS["eta"],
                        l=l, batch_size=DIGITS["batch"], steps=eff // 20 * 20 * l, run=run,
                        seed=3, weight_decay=DIGITS["weight_decay"], record_every=every,
                        record=rec)[1]

    r = np.asarray(ensemble(one, cfg["digits_runs"]))            # runs x records x 2
    return {"l": l, "effective_steps": (np.arange(r.shape[1]) * (every // l)).tolist(),
            "acc": r[:, :, 0].mean(0).tolist(), "acc_se": (r[:, :, 0].std(0, ddof=1)
                                                          / math.sqrt(r.shape[0])).tolist(),
            "loss": r[:, :, 1].mean(0).tolist()}


def lsr_unit(k: int, cfg: dict) -> dict:
    """SGD with batch ``k B`` and rate ``k eta`` for SDE time ``lsr_time``: equilibrium
    ``|x|^2``, ``G``, ``N``, test accuracy (last quarter of the run)."""
    import jax
    import jax.numpy as jnp

    from .equilibrium import equilibrium_statistics
    from .simulate import run_svag

    net, loss, train, test = _digits_setup()
    eta, b = k * DIGITS["eta"], k * DIGITS["batch"]
    n_rec = 16
    steps = int(round(cfg["lsr_time"] / eta)) // n_rec * n_rec
    rec = lambda p: (p, jnp.stack([net.accuracy(p, test), _sq_norm(p)]))
    f = jax.jit(lambda: run_svag(loss, net.init(), train, learning_rate=eta, l=1,
                                 batch_size=b, steps=steps, seed=5 + k,
                                 weight_decay=DIGITS["weight_decay"],
                                 record_every=steps // n_rec, record=rec)[1])
    snaps, vals = f()
    last = slice(3 * n_rec // 4 + 1, None)                        # equilibrium window
    st = equilibrium_statistics(loss, jax.tree.map(lambda a: a[last], snaps), train, b)
    v = np.asarray(vals)
    return {"k": k, "batch": b, "lr": eta, "steps": steps, "sq_norm": st.sq_norm,
            "grad_sq": st.grad_sq, "trace_sigma": st.trace_sigma, "nsr": st.nsr,
            "acc": float(v[last, 0].mean()), "norm_curve": v[:, 1].tolist()}


# ----------------------------------------------------------------------------- report


def _fit(xs, ys) -> float:
    x, y = np.log(np.asarray(xs, float)), np.log(np.abs(np.asarray(ys, float)))
    return float(np.polyfit(x, y, 1)[0])


def _draw_stationary(ax, res: dict) -> None:
    from .quadratic import QuadraticProblem

    res1, ref = res["stationary"], res["sde"]
    inv = [1 / r["l"] for r in res1]
    ax.errorbar(inv, [r["mc"] for r in res1], [r["hw"] for r in res1], fmt="o",
                label="SVAG(l) ensemble (95% CI)")
    grid = np.linspace(0, 1, 50)[1:]
    p = QuadraticProblem.random(QUAD["n"], QUAD["d"], QUAD["seed"])
    ax.plot(grid, [np.trace(p.svag_stationary_cov(QUAD["eta"], 1 / g, QUAD["batch"]))
                   for g in grid], "-", lw=1, label="SVAG exact")
    ax.axhline(ref["closed_form"], color="k", ls="--", lw=1, label="SDE closed form")
    ax.errorbar([0], [ref["sra1"]], [ref["sra1_hw"]], fmt="s", color="C3",
                label="SDE, diffrax SRA1")
    ax.set_xlabel("1 / l")
    ax.set_ylabel("stationary E|x - c|^2")


def _draw_digits(ax, res: dict) -> None:
    for r in res["digits"]:
        ax.plot(r["effective_steps"], r["acc"], label=f"l = {r['l']}")
    ax.set_xlabel("effective steps (steps / l)")
    ax.set_ylabel("test accuracy")


def _draw_lsr(ax, res: dict) -> None:
    res3 = res["lsr"]
    ks, base = [r["k"] for r in res3], res3[0]
    ax.loglog(ks, [r["sq_norm"] / base["sq_norm"] for r in res3], "o-",
              label="measured |x|^2 / |x_1|^2")
    ax.loglog(ks, [_predicted_ratio(base, k) for k in ks], "--", label="predicted from N/G")
    ax.axhline(DIGITS["closeness"], color="k", lw=0.8, ls=":", label="C")
    ax.set_xlabel("LSR factor k (batch k B, rate k eta)")


FIGURES = {"svag_stationary": _draw_stationary, "svag_digits": _draw_digits,
           "svag_lsr": _draw_lsr}


def figure(res: dict, name: str) -> Any:
    """One matplotlib figure of :func:`run`'s results: ``name`` in :data:`FIGURES`
    (``svag_stationary``, ``svag_digits``, ``svag_lsr``)."""
    if name not in FIGURES:
        raise ValueError(f"figure must be one of {sorted(FIGURES)}, got {name!r}")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    FIGURES[name](ax, res)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(res: dict) -> dict[str, Any]:
    """All three figures by file stem (the caller saves them, e.g. with
    :func:`bea.files.save_figure`, and closes them)."""
    return {name: figure(res, name) for name in FIGURES}


def _predicted_ratio(base: dict, k: float) -> float:
    """Equilibrium ``|x|^2`` at LSR factor ``k`` over ``k = 1`` from the ``k = 1``
    statistics (:mod:`.equilibrium`)."""
    el = DIGITS["eta"] * DIGITS["weight_decay"]
    f = lambda kk: math.sqrt((1 + kk / base["nsr"]) / (1 - kk * el / 2))
    return f(k) / f(1)


def _units(cfg: dict) -> list[tuple[str, int]]:
    return ([("stat", l) for l in cfg["ls"]] + [("sde", 0)]
            + [("digits", l) for l in cfg["digits_ls"]] + [("lsr", k) for k in cfg["lsr_ks"]])


def run(size: str = "small", *, progress: bool = True, checkpoint: Checkpoint | None = None
        ) -> dict:
    """The three experiments at ``size`` (``small | default | large``):
    ``{"size", "stationary", "sde", "digits", "lsr"}``; units already in ``checkpoint``
    are read from it, new ones written to it."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    cfg = SIZES[size]
    fns = {"stat": stationary_unit, "sde": lambda _, c: sde_reference(c),
           "digits": digits_unit, "lsr": lsr_unit}
    done: dict[str, Any] = {}
    units = _units(cfg)
    with progress_bar(len(units), desc="svag", enabled=progress) as bar:
        for kind, v in units:
            key = f"{kind}:{v}"
            if checkpoint is not None and checkpoint.has(key):
                done[key] = checkpoint.get(key)
            else:
                bar.set_postfix_str(key)
                done[key] = fns[kind](v, cfg)
                if checkpoint is not None:
                    checkpoint.put(key, done[key])
            bar.update(1)
    return {"size": size, "stationary": [done[f"stat:{l}"] for l in cfg["ls"]],
            "sde": done["sde:0"], "digits": [done[f"digits:{l}"] for l in cfg["digits_ls"]],
            "lsr": [done[f"lsr:{k}"] for k in cfg["lsr_ks"]]}


def reproduce(out: str, *, large: bool = False, progress: bool = True, resume: bool = False,
              size: str | None = None) -> str:
    """Run the three experiments into ``out``; returns the report.  ``size`` in
    ``small | default | large`` (``large=True`` is ``size="large"``)."""
    size = size or ("large" if large else "default")
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    outp = check_writable_dir(out)
    ckpt = Checkpoint(outp / "svag.checkpoint.json", {"size": size, "cfg": SIZES[size],
                                                      "quad": QUAD, "digits": DIGITS},
                      resume=resume)
    with stop_cleanly("bea reproduce svag"):
        res = run(size, progress=progress, checkpoint=ckpt)
    text = report(res)
    atomic_write_json(outp / "svag.json", dict(res, report=text))
    atomic_write_text(outp / "svag.txt", text + "\n")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    for name, fig in figures(res).items():
        save_figure(fig, outp / f"{name}.png")
        plt.close(fig)
    return text


def report(res: dict, part: int | None = None) -> str:
    """The text report of :func:`run`'s results: parts (1), (2), (3), or one ``part``."""
    parts = [_report_stationary(res["stationary"], res["sde"]), _report_digits(res["digits"]),
             _report_lsr(res["lsr"])]
    return "\n".join(parts) if part is None else parts[part - 1]


def _report_stationary(res1: list, ref: dict) -> str:
    sde = ref["closed_form"]
    lines = ["(1) stationary E|x - c|^2 of SVAG(l) on a quadratic (OU) problem, eta = "
             f"{QUAD['eta']}, B = {QUAD['batch']}",
             f"    SDE closed form {sde:.5f}; diffrax SRA1 (dt {ref['dt']}) "
             f"{ref['sra1']:.5f} +- {ref['sra1_hw']:.5f}",
             "    l     1/l     ensemble (95% CI)      exact SVAG   gap to SDE"]
    for r in res1:
        lines.append(f"    {r['l']:<5d} {1 / r['l']:<7.4f} {r['mc']:.5f} +- {r['hw']:.5f}   "
                     f"{r['exact']:.5f}      {r['mc'] - sde:+.5f}")
    big = [r for r in res1 if r["l"] >= 2]
    slope = _fit([1 / r["l"] for r in big], [r["exact"] - sde for r in big])
    inside = sum(abs(r["mc"] - r["exact"]) <= r["hw"] for r in res1)
    lines.append(f"    exact gap ~ (1/l)^{slope:.2f} over l >= 2; the ensemble agrees with the "
                 f"exact SVAG value in {inside}/{len(res1)} rows: SVAG's stationary variance "
                 f"tends to the SDE's at rate 1/l.")
    return "\n".join(lines)


def _report_digits(res2: list) -> str:
    lines = ["(2) digits, scale-invariant MLP: test accuracy vs effective steps (steps/l)"]
    ref2 = np.asarray(res2[0]["acc"])
    lines.append("    l   final acc        max |acc - acc(l=1)| over the curve (2nd half)")
    half = len(ref2) // 2
    devs = []
    for r in res2:
        a = np.asarray(r["acc"])
        dev = float(np.max(np.abs(a[half:] - ref2[half:])))
        devs.append(dev)
        lines.append(f"    {r['l']:<3d} {a[-1]:.4f} +- {1.96 * r['acc_se'][-1]:.4f}   {dev:.4f}")
    spread = max(devs)
    se0 = np.asarray(res2[0]["acc_se"])[half:]
    noise = max(float(np.max(1.96 * np.hypot(se0, np.asarray(r["acc_se"])[half:])))
                for r in res2[1:])
    word = "collapse" if spread <= noise else "do not collapse"
    lines.append(f"    the curves {word} against effective steps: the largest gap to l = 1 in "
                 f"the second half is {spread:.3f} in accuracy, the seed noise (95%, "
                 f"difference of two means) up to {noise:.3f}.")
    return "\n".join(lines)


def _report_lsr(res3: list) -> str:
    base = res3[0]
    bound = 1 / (DIGITS["closeness"] ** 2 - 1)
    lines = []
    lines.append(f"(3) linear scaling rule: batch k*{DIGITS['batch']}, rate k*{DIGITS['eta']}, "
                 f"weight decay {DIGITS['weight_decay']}; condition N/G >= {bound:.2f} "
                 f"(C = sqrt 2)")
    lines.append("    k    batch  N/G      holds  |x|^2/|x_1|^2  predicted  test acc")
    broke_pred = broke_obs = None
    for r in res3:
        ratio = r["sq_norm"] / base["sq_norm"]
        pred = _predicted_ratio(base, r["k"])
        holds = r["nsr"] >= bound
        if not holds and broke_pred is None:
            broke_pred = r["k"]
        if ratio > DIGITS["closeness"] and broke_obs is None:
            broke_obs = r["k"]
        lines.append(f"    {r['k']:<4d} {r['batch']:<6d} {r['nsr']:<8.3g} {str(holds):<6} "
                     f"{ratio:<14.3f} {pred:<10.3f} {r['acc']:.4f}")
    kmax = base["nsr"] / bound
    lines.append(f"    from k = 1 alone the condition allows k <= {kmax:.1f}; it first fails at "
                 f"k = {broke_pred}, and the measured equilibrium norm first leaves the "
                 f"k = 1 value by more than C at k = {broke_obs}.")
    if broke_obs is not None and kmax > broke_obs:
        lines.append("    the extrapolation from k = 1 (N falling as 1/k at fixed G) is too "
                     "optimistic: G itself grows with k at equilibrium, so the condition must be "
                     "checked with the statistics measured at each k.")
    if broke_pred is not None and broke_obs is not None:
        verdict = ("agree" if broke_pred == broke_obs else "differ by one grid step"
                   if abs(math.log2(broke_pred / broke_obs)) <= 1 else "disagree")
        lines.append(f"    predicted and observed breaking points {verdict}.")
    return "\n".join(lines)


def _main() -> None:  # pragma: no cover - convenience
    import sys

    print(reproduce(sys.argv[1] if len(sys.argv) > 1 else "svag_out", size="small"))


if __name__ == "__main__":  # pragma: no cover
    _main()


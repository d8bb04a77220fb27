r"""``bea reproduce eos``: GD at the edge of stability, the heavy-ball threshold, and the
limiting flows of normalised GD and GD on sqrt(L) on the zero-loss manifold.

(1) Cohen et al. (ICLR 2021) at small scale: a tanh MLP (64 -> 32 -> 32 -> 10) with MSE on
one-hot targets, the first examples of scikit-learn's digits, full-batch GD at three
learning rates.  Sharpness ``lambda_1`` (Lanczos on chunked HVPs) rises (progressive
sharpening) until it reaches ``2/eta``, then hovers there.  The table is the median of
``lambda_1`` after the *EoS onset* (the first sharpness point with ``lambda_1 >= 2/eta``)
divided by ``2/eta``; the check is that it lies in ``[0.95, 1.15]``.
The central flow of GD (:func:`.central.central_flow`, Cohen, Damian et al., ICLR 2025)
from the same initialisation, in the time ``t = eta * steps``, is set beside each run: its
predicted loss ``L(w) + sum_i x_i lambda_i`` against GD's *time-averaged* loss (the mean
over a window of ``+-window`` steps around each save time) and against gradient flow's
loss ``L(X(t))`` (diffrax, Tsit5, adaptive), and its sharpness against ``2/eta``; the
second table gives, over the save times after the EoS onset, the mean relative errors
``|L_cf - <L_gd>| / <L_gd>`` and ``|L_gf - <L_gd>| / <L_gd>`` and the median of
``lambda_1(w(t)) / (2/eta)``.
(2) Heavy ball (:func:`optax.sgd` with ``momentum=beta``: ``v <- beta v + g``): the
linear-stability threshold on a quadratic is ``eta lambda < 2 + 2 beta``, so the sharpness
settles at ``(2 + 2 beta)/eta`` instead (same table, same check).
(3) Normalised GD and GD on ``sqrt(L)`` on an overparameterised regression (a 64 -> 8 -> 1
tanh net fitted to a few digits, ``Gamma = {r = 0}``): from a point on ``Gamma``
(minimum-norm Newton steps, matrix-free) displaced by ``eta`` along the top eigenvector,
the sharpness of the discrete run decreases in the time ``t = eta^2 * steps`` as the
limiting flow (:func:`.flows.limiting_flow`: ``-(1/4) P grad log lambda_1`` resp.
``-(1/8) P grad lambda_1``) predicts; the report gives the relative gap.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...files import Checkpoint, atomic_write_json, check_writable_dir, save_figure, stop_cleanly

__all__ = ["BAND", "SIZES", "central_comparison", "central_unit", "eos_ratio", "figures",
           "gd_unit", "manifold_problem", "manifold_unit", "report", "reproduce"]

BAND = (0.95, 1.15)
SEPARATED = 1.1   # gradient flow's max lambda_1 / (2/eta) above which the flows differ

SIZES = {
    # tiny: the smoke test (seconds, too short to reach EoS); default: minutes on 2 CPU
    # cores; large: paper-size-ish
    "tiny": {"n": 100, "width": 8, "chunk": 50, "steps": 50, "every": 25,
             "lrs": [0.3, 0.6], "hb": [0.5, 0.5], "m_n": 8, "m_width": 4,
             "m_eta": 0.05, "m_t": 0.05, "m_points": 4,
             "cf_saves": 5, "cf_dt": 0.5, "cf_lanczos": 10, "window": 5},
    # small: the notebook's size (a few minutes): EoS is reached within 150 steps
    "small": {"n": 200, "width": 16, "chunk": 200, "steps": 800, "every": 10,
              "lrs": [0.65, 0.7, 0.75], "hb": [0.8, 0.2], "m_n": 16, "m_width": 8,
              "m_eta": 0.02, "m_t": 0.5, "m_points": 5,
              "cf_saves": 20, "cf_dt": 0.5, "cf_lanczos": 20, "window": 10},
    "default": {"n": 500, "width": 32, "chunk": 500, "steps": 2000, "every": 25,
                "lrs": [0.3, 0.45, 0.6], "hb": [0.5, 0.5], "m_n": 16, "m_width": 8,
                "m_eta": 0.01, "m_t": 2.0, "m_points": 20,
                "cf_saves": 40, "cf_dt": 0.5, "cf_lanczos": 20, "window": 25},
    "large": {"n": 1500, "width": 64, "chunk": 500, "steps": 10000, "every": 50,
              "lrs": [0.1, 0.2, 0.3, 0.45, 0.6], "hb": [0.2, 0.9], "m_n": 32,
              "m_width": 16, "m_eta": 0.005, "m_t": 5.0, "m_points": 25,
              "cf_saves": 100, "cf_dt": 0.5, "cf_lanczos": 20, "window": 50},
}


def eos_ratio(steps: list, sharp: list, threshold: float) -> tuple[int | None, float]:
    """``(onset step, median lambda_1 after onset / threshold)``; onset = first point with
    ``lambda_1 >= threshold`` (``(None, nan)`` if never reached)."""
    s = np.asarray(sharp, dtype=float)
    hit = np.flatnonzero(s >= threshold)
    if hit.size == 0:
        return None, math.nan
    return int(steps[hit[0]]), float(np.median(s[hit[0]:]) / threshold)


def gd_unit(cfg: dict, lr: float, beta: float, progress: bool = False) -> dict:
    """Experiment (1)/(2): full-batch GD (``beta = 0``) or heavy ball (``optax.sgd`` with
    ``momentum=beta``) on digits at step ``lr`` for ``cfg["steps"]`` steps (float32), the
    sharpness every ``cfg["every"]`` steps; ``threshold = (2 + 2 beta)/lr``, the EoS onset
    and the ratio of :func:`eos_ratio`."""
    import jax
    import jax.numpy as jnp
    import optax

    from . import digits as D
    from .runner import train

    x, y = D.digits_data(cfg["n"], dtype=jnp.float32)
    model = D.tanh_mlp(cfg["width"], key=jax.random.PRNGKey(0), dtype=jnp.float32)
    opt = optax.sgd(lr, momentum=beta) if beta else optax.sgd(lr)
    run = train(model, D.mse_loss, opt, (x, y), steps=cfg["steps"], log_every=cfg["every"],
                sharpness_every=cfg["every"], chunk_size=cfg["chunk"],
                accuracy_fn=D.accuracy, progress=progress,
                desc=f"eos gd eta={lr} beta={beta}")
    thr = (2 + 2 * beta) / lr
    onset, ratio = eos_ratio(run["sharpness_step"], [s[0] for s in run["sharpness"]], thr)
    return {"lr": lr, "beta": beta, "threshold": thr, "onset": onset, "ratio": ratio,
            "loss": run["loss"], "sharpness_step": run["sharpness_step"],
            "sharpness": [s[0] for s in run["sharpness"]],
            "accuracy": run["accuracy"][-1] if run["accuracy"] else None}


def central_unit(cfg: dict, lr: float) -> dict:
    """The central flow and gradient flow of experiment (1)'s run at ``lr`` (same data,
    same initialisation, float32 like GD), at ``cf_saves + 1`` times ``t = eta * steps``."""
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from . import digits as D
    from .central import central_flow
    from .sharpness import sharpness

    x, y = D.digits_data(cfg["n"], dtype=jnp.float32)
    model = D.tanh_mlp(cfg["width"], key=jax.random.PRNGKey(0), dtype=jnp.float32)
    t1 = lr * cfg["steps"]
    cf = central_flow(D.mse_loss, model, lr, t1, data=(x, y), chunk_size=cfg["chunk"],
                      num_saves=cfg["cf_saves"], dt=cfg["cf_dt"] * lr,
                      num_lanczos=cfg["cf_lanczos"])
    diff, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)

    def loss(w):
        return D.mse_loss(eqx.combine(unravel(w), static), (x, y))

    sol = jax.jit(lambda w: diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, w, a: -jax.grad(loss)(w)), diffrax.Tsit5(), 0.0, t1,
        lr / 2, w, saveat=diffrax.SaveAt(ts=cf.ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-7),
        max_steps=1_000_000).ys)(flat)
    gf_sharp = [float(sharpness(loss, w, 1, num_steps=cfg["cf_lanczos"]).top) for w in sol]
    return {"lr": lr, "t": [float(t) for t in cf.ts],
            "loss": [float(v) for v in cf.loss],
            "predicted_loss": [float(v) for v in cf.predicted_loss],
            "sharpness": [float(v) for v in cf.sharpness[:, 0]],
            "sigma2": [float(v) for v in cf.sigma2[:, 0]],
            "gf_loss": [float(v) for v in jax.vmap(loss)(sol)], "gf_sharpness": gf_sharp}


def central_comparison(gd: dict, cf: dict, window: int) -> dict:
    """GD's time-averaged loss ``<L_gd>(s) = mean(L_k, |k - s| <= window)`` at the central
    flow's save steps ``s = t / eta`` (the window clipped to the run), and, over the save
    steps at or after the EoS onset (all of them if GD never reached it): the mean relative
    errors of the central-flow prediction and of gradient flow's loss against it, the mean
    of ``<L_gd>`` and of both flows' losses there, and the median of
    ``lambda_1 / (2/eta)`` along the central flow."""
    gl = np.asarray(gd["loss"], dtype=float)
    steps = np.rint(np.asarray(cf["t"]) / gd["lr"]).astype(int)
    avg = np.array([gl[max(0, s - window):min(len(gl), s + window + 1)].mean()
                    for s in np.minimum(steps, len(gl) - 1)])
    late = steps >= (gd["onset"] if gd["onset"] is not None else 0)
    late = late if late.any() else np.ones_like(late)
    pred, gf = np.asarray(cf["predicted_loss"]), np.asarray(cf["gf_loss"])
    thr = 2.0 / gd["lr"]
    return {"steps": steps.tolist(), "gd_avg": avg.tolist(), "late": late.tolist(),
            "gd_mean": float(avg[late].mean()), "cf_mean": float(pred[late].mean()),
            "gf_mean": float(gf[late].mean()),
            "err_cf": float(np.mean(np.abs(pred - avg)[late] / avg[late])),
            "err_gf": float(np.mean(np.abs(gf - avg)[late] / avg[late])),
            "cf_ratio": float(np.median(np.asarray(cf["sharpness"])[late]) / thr),
            "gf_ratio": float(np.max(np.asarray(cf["gf_sharpness"])[late]) / thr)}


def manifold_problem(n: int, width: int):
    """``(loss, residuals, p_on_Gamma)`` for a 64 -> width -> 1 tanh net regressing the
    centred digit label of ``n`` digits; the point on ``Gamma`` by minimum-norm Newton steps
    ``p <- p - J^T (J J^T)^{-1} r`` (CG on ``J J^T``, matrix-free), from a seeded init."""
    import jax
    import jax.numpy as jnp
    import lineax as lx

    from . import digits as D

    x, y = D.digits_data(n, dtype=jnp.float64)
    target = (jnp.argmax(y, -1) - 4.5) / 3.0
    k = 64 * width

    def net(p):
        h = jnp.tanh(x @ p[:k].reshape(64, width) / 8 + p[k:k + width])
        return h @ p[k + width:k + 2 * width] + p[-1]

    def residuals(p):
        return (net(p) - target) / jnp.sqrt(n)

    def loss(p):
        return 0.5 * jnp.sum(residuals(p) ** 2)

    @jax.jit
    def newton(p):
        r, jvp = jax.linearize(residuals, p)
        vjp = jax.linear_transpose(jvp, p)
        op = lx.FunctionLinearOperator(lambda w: jvp(vjp(w)[0]), jax.eval_shape(lambda: r),
                                       tags=lx.positive_semidefinite_tag)
        w = lx.linear_solve(op, r, lx.CG(rtol=1e-12, atol=1e-14, max_steps=1000),
                            throw=False).value
        return p - vjp(w)[0]

    p = jax.random.normal(jax.random.PRNGKey(0), (k + 2 * width + 1,), jnp.float64) / 4
    for _ in range(8):
        p = newton(p)
    return loss, residuals, p


def manifold_unit(cfg: dict, kind: str) -> dict:
    """Experiment (3): ``kind`` in ``normalized_gd | sqrt_loss`` on :func:`manifold_problem`
    from ``p + eta u_1`` (``p`` on ``Gamma``), ``lambda_1`` of the discrete run and of the
    limiting flow at ``m_points`` times ``t = eta^2 x steps`` up to ``m_t``."""
    import jax
    import jax.numpy as jnp

    from ... import optax as bo
    from .flows import limiting_flow
    from .sharpness import sharpness

    loss, residuals, p = manifold_problem(cfg["m_n"], cfg["m_width"])
    eta, pts = cfg["m_eta"], cfg["m_points"]
    every = max(1, int(round(cfg["m_t"] / eta ** 2)) // pts)
    lam = lambda q: float(sharpness(loss, q, 1, num_steps=40).values[0])  # noqa: E731
    e0 = sharpness(loss, p, 1, num_steps=40)
    opt = bo.normalized_gd(eta) if kind == "normalized_gd" else bo.sqrt_loss(eta)
    z = p + eta * e0.vectors[0]
    st = opt.init(z)

    @jax.jit
    def block(z, st):
        def step(c, _):
            z, st = c
            v, g = jax.value_and_grad(loss)(z)
            u, st = opt.update(g, st, z, value=v)
            return (z + u, st), None

        return jax.lax.scan(step, (z, st), None, length=every)[0]

    disc, final_loss = [], None
    for _ in range(pts):
        z, st = block(z, st)
        disc.append(lam(z))
    final_loss = float(loss(z))
    ts = jnp.arange(1, pts + 1) * every * eta ** 2
    sol = limiting_flow(loss, residuals, p, float(ts[-1]), kind, ts=ts, num_steps=40)
    flow = [lam(q) for q in sol.ys]
    gap = float(np.max(np.abs(np.subtract(disc, flow)) / np.asarray(flow)))
    return {"kind": kind, "eta": eta, "d": int(p.size), "t": np.asarray(ts).tolist(),
            "lambda0": float(e0.values[0]), "discrete": disc, "flow": flow,
            "max_rel_gap": gap, "final_loss": final_loss,
            "decrease": 1 - flow[-1] / float(e0.values[0])}


def reproduce(out: str, *, large: bool = False, progress: bool = True, resume: bool = False,
              size: str | None = None) -> str:
    """Run the three parts, write ``eos.json``, ``eos_sharpness.png``, ``eos_manifold.png``
    into ``out``; return the report.  ``size`` in ``tiny | small | default | large``
    (``large=True`` is ``size="large"``)."""
    import jax

    jax.config.update("jax_enable_x64", True)     # part 3 in float64; part 1 in float32
    from ...progress import progress_bar

    size = size or ("large" if large else "default")
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    cfg = SIZES[size]
    outp = check_writable_dir(out)
    ckpt = Checkpoint(outp / "eos.checkpoint.json", {"size": size, "cfg": cfg, "version": 2},
                      resume=resume)
    units = ([(f"gd/{lr}", lambda lr=lr: gd_unit(cfg, lr, 0.0, False)) for lr in cfg["lrs"]]
             + [(f"central/{lr}", lambda lr=lr: central_unit(cfg, lr)) for lr in cfg["lrs"]]
             + [(f"hb/{cfg['hb'][0]}/{cfg['hb'][1]}",
                 lambda: gd_unit(cfg, cfg["hb"][0], cfg["hb"][1], False))]
             + [(f"manifold/{k}", lambda k=k: manifold_unit(cfg, k))
                for k in ("normalized_gd", "sqrt_loss")])
    with stop_cleanly("bea reproduce eos"), progress_bar(
            len(units), desc="eos", enabled=progress) as bar:
        for key, fn in units:
            if not ckpt.has(key):
                ckpt.put(key, fn())
            bar.update(1)
    res = {key: ckpt.get(key) for key, _ in units}
    atomic_write_json(outp / "eos.json", {"size": size, "config": cfg, "units": res})
    _plots(res, outp, cfg["window"])
    return report(res, size, cfg["window"])


def _plots(res: dict, outp: Path, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    for name, fig in figures(res, window).items():
        save_figure(fig, outp / f"{name}.png", dpi=110)
        plt.close(fig)


def figures(res: dict, window: int = 25,
            which: tuple[str, ...] = ("eos_sharpness", "eos_manifold")) -> dict:
    """``{"eos_sharpness": fig, "eos_manifold": fig}`` (those named in ``which``) from the
    units in ``res`` (keys as in ``eos.json``): loss and sharpness of GD / heavy ball with
    the central and gradient flows (``window``: half-width of GD's time average) and the
    ``2/eta`` lines; ``lambda_1`` of the manifold runs against the limiting flow.  A figure
    whose units are missing is left out."""
    import matplotlib.pyplot as plt

    out = {}

    gd = [(k, u) for k, u in res.items() if k.startswith(("gd/", "hb/"))]
    if gd and "eos_sharpness" in which:
        out["eos_sharpness"] = _sharpness_figure(plt, res, gd, window)
    kinds = [k for k in ("normalized_gd", "sqrt_loss") if f"manifold/{k}" in res]
    if kinds and "eos_manifold" in which:
        out["eos_manifold"] = _manifold_figure(plt, res, kinds)
    return out


def _sharpness_figure(plt, res: dict, gd: list, window: int):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (key, u) in enumerate(gd):
        c = f"C{i}"
        lab = f"eta={u['lr']}" + (f", beta={u['beta']}" if u["beta"] else "")
        a1.plot(u["loss"], c, lw=0.6, alpha=0.5, label=lab)
        a2.plot(u["sharpness_step"], u["sharpness"], c, lw=1, label=lab)
        a2.axhline(u["threshold"], color=c, ls="--", lw=0.8)
        cf = res.get("central/" + key.split("/", 1)[1]) if key.startswith("gd/") else None
        if cf is not None:
            cmp = central_comparison(u, cf, window)
            a1.plot(cmp["steps"], cmp["gd_avg"], c, lw=1.6)
            a1.plot(cmp["steps"], cf["predicted_loss"], "o", color=c, ms=3, mfc="none")
            a1.plot(cmp["steps"], cf["gf_loss"], ":", color=c, lw=1.2)
            a2.plot(cmp["steps"], cf["sharpness"], "o", color=c, ms=3, mfc="none")
            a2.plot(cmp["steps"], cf["gf_sharpness"], ":", color=c, lw=1.2)
    a1.plot([], [], "k", lw=1.6, label=f"GD time-averaged (+-{window} steps)")
    a1.plot([], [], "ko", ms=3, mfc="none", label="central flow (predicted loss)")
    a1.plot([], [], "k:", lw=1.2, label="gradient flow")
    a2.plot([], [], "ko", ms=3, mfc="none", label="central flow")
    a2.plot([], [], "k:", lw=1.2, label="gradient flow")
    a2.set_ylim(0, 1.6 * max(u["threshold"] for _, u in gd))
    a1.set(yscale="log", xlabel="step", ylabel="training loss", title="loss")
    a2.set(xlabel="step", ylabel="lambda_1",
           title="sharpness; dashed: 2/eta (heavy ball: (2+2 beta)/eta)")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _manifold_figure(plt, res: dict, kinds: list):
    fig, axs = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axs[0], kinds, strict=True):
        u = res[f"manifold/{kind}"]
        t = [0.0] + u["t"]
        ax.plot(t, [u["lambda0"]] + u["discrete"], "o", ms=3, label=f"discrete, eta={u['eta']}")
        ax.plot(t, [u["lambda0"]] + u["flow"], "-", label="limiting flow")
        ax.set(xlabel="t = eta^2 x steps", ylabel="lambda_1", title=kind)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def report(res: dict, size: str, window: int = 25) -> str:
    """The text report: the EoS table with the band check, the central-flow table (see the
    module docstring; ``window`` the half-width of GD's time average), and the manifold
    comparison."""
    lo, hi = BAND
    lines = [f"bea reproduce eos ({size})", "",
             "(1, 2) full-batch GD / heavy ball on digits (tanh MLP, MSE): median sharpness "
             "after EoS onset / threshold", "",
             f"{'eta':>6} {'beta':>5} {'threshold':>10} {'onset':>6} {'ratio':>7}  in "
             f"[{lo}, {hi}]"]
    ok = []
    for key, u in res.items():
        if not key.startswith(("gd/", "hb/")):
            continue
        ratio = math.nan if u["ratio"] is None else u["ratio"]   # JSON keeps nan as null
        good = lo <= ratio <= hi
        ok.append(good)
        onset = "never" if u["onset"] is None else str(u["onset"])
        lines.append(f"{u['lr']:>6} {u['beta']:>5} {u['threshold']:>10.4g} {onset:>6} "
                     f"{ratio:>7.3f}  {good}")
    lines.append("")
    lines.append("Conclusion: " + (
        "every run sharpens to its stability threshold and stays there (2/eta for GD, "
        "(2 + 2 beta)/eta for heavy ball)." if all(ok) else
        "NOT every run settles at its threshold (see the rows marked False; at the tiny "
        "size runs are too short to reach EoS)."))
    cfs = [(res[k], res["central/" + k[3:]]) for k in res
           if k.startswith("gd/") and "central/" + k[3:] in res]
    if cfs:
        lines += ["", "(1') central flow vs GD's time-averaged loss (+-" + str(window)
                  + " steps) and gradient flow, mean over the save times after EoS onset",
                  "", f"{'eta':>6} {'<L_gd>':>9} {'L_cf':>9} {'L_gf':>9} {'err cf':>8} "
                  f"{'err gf':>8} {'cf lambda_1/(2/eta)':>20} {'gf max lambda_1/(2/eta)':>24}"]
        held, better, apart = [], [], []
        for gd, cf in cfs:
            c = central_comparison(gd, cf, window)
            held.append(abs(c["cf_ratio"] - 1) < 0.05)
            # gradient flow has left the edge (lambda_1 > 1.1 x 2/eta): the flows differ
            apart.append(c["gf_ratio"] > SEPARATED)
            better.append(c["err_cf"] < c["err_gf"])
            lines.append(f"{gd['lr']:>6} {c['gd_mean']:>9.4g} {c['cf_mean']:>9.4g} "
                         f"{c['gf_mean']:>9.4g} {c['err_cf']:>8.2%} {c['err_gf']:>8.2%} "
                         f"{c['cf_ratio']:>20.3f} {c['gf_ratio']:>24.3f}")
        lines.append("")
        sep = [gd["lr"] for (gd, _), a in zip(cfs, apart, strict=True) if a]
        near = [gd["lr"] for (gd, _), a in zip(cfs, apart, strict=True) if not a]
        wins = all(b for b, a in zip(better, apart, strict=True) if a)
        text = ("the central flow holds lambda_1 at 2/eta" if all(held) else
                "the central flow does NOT hold lambda_1 within 5% of 2/eta at every eta")
        if sep:
            text += ("; where gradient flow has sharpened past the edge (eta in "
                     f"{sep}) the central flow predicts GD's time-averaged loss better"
                     if wins else "; it does NOT predict GD's time-averaged loss better than "
                     f"gradient flow at every eta where the two flows differ ({sep})")
        if near:
            text += (f"; at eta in {near} gradient flow's lambda_1 stays within "
                     f"{SEPARATED - 1:.0%} of 2/eta over the run (EoS reached late), the two "
                     "flows nearly coincide and the comparison does not tell them apart")
        lines.append("Conclusion: " + text + ".")
    lines += ["", "(3) on the zero-loss manifold: lambda_1 of the discrete run vs the limiting "
              "flow at the same t = eta^2 x steps", "",
              f"{'optimiser':>14} {'eta':>6} {'lambda_1(0)':>11} {'flow end':>9} "
              f"{'decrease':>8} {'max rel gap':>11}"]
    for kind in ("normalized_gd", "sqrt_loss"):
        u = res[f"manifold/{kind}"]
        lines.append(f"{kind:>14} {u['eta']:>6} {u['lambda0']:>11.4f} {u['flow'][-1]:>9.4f} "
                     f"{u['decrease']:>8.1%} {u['max_rel_gap']:>11.2e}")
    gaps = [res[f"manifold/{k}"]["max_rel_gap"] for k in ("normalized_gd", "sqrt_loss")]
    decs = [res[f"manifold/{k}"]["decrease"] for k in ("normalized_gd", "sqrt_loss")]
    lines.append("")
    lines.append("Conclusion: " + (
        "both optimisers decrease the sharpness along Gamma as their limiting flows predict "
        "(gap well below the decrease)." if all(g < 0.2 * d for g, d in
                                               zip(gaps, decs, strict=True)) else
        "the gap between run and flow is not small against the decrease (eta too large or "
        "t too short at this size)."))
    return "\n".join(lines)

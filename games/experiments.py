"""Reproductions of *Discretization drift in two-player games* (Rosca et al., ICML 2021).

* :func:`rotational_game`: ``z' = (-eps x + y, -x - eps y)``; simultaneous GD diverges
  where the flow converges, alternating GD converges, and the order-1 modified flow of
  simultaneous GD predicts the divergence (positive trace of its Jacobian at 0).
* :func:`dirac_gan`: the zero-sum Dirac-GAN; the flow conserves ``theta^2 + psi^2``,
  simultaneous GD spirals out, GD with the interaction drift cancelled does not.
* :func:`mog_gan` (in :mod:`games.mog`): a GAN on a mixture of Gaussians with and without
  drift regularisers.

Drift terms come from the engine: the order-1 joint-time modified losses of
``games.simultaneous``/``alternating`` (:func:`bea.modified_loss`), whose player-p part is
``self_p + interaction_p`` (for simultaneous GD, ``(alpha h/4)|grad_x L_1|^2`` and
``(lam h/2) <grad_y L_1, sg(grad_y L_2)>`` for player x).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bea import modified_equation
from bea.files import atomic_write_json

from . import methods as GM
from . import runners, zoo


def drift_terms(game: zoo.Game, lr: tuple[float, float], method: str = "simultaneous"
                ) -> dict[str, Callable]:
    """Order-1 drift terms of ``method`` per player as scalar functions of ``(x, y)``.

    ``self_x = (alpha/4)|grad_x L_1|^2``, ``interaction_x = c_x <grad_y L_1, sg(grad_y
    L_2)>`` and the mirror for y, with the coefficients read off the engine's modified loss
    (``c_x = lam/2`` for simultaneous GD; ``c_y = -alpha/2`` for alternating).  Multiply by
    ``h`` to get the regulariser of step size ``h``.
    """
    from bea import modified_loss

    ml = modified_loss(GM.get(method, lr), 1)
    coef: dict[str, float] = {}
    for p, name in enumerate(("x", "y")):
        (pot,) = ml.potential(1, p)
        (rem,) = ml.remainder(1, p)
        coef[f"self_{name}"] = float(pot.coefficient)
        coef[f"interaction_{name}"] = float(rem.coefficient)
    sg = jax.lax.stop_gradient

    def gx(f, x, y, b):
        return jax.grad(f, argnums=0)(x, y, *b)

    def gy(f, x, y, b):
        return jax.grad(f, argnums=1)(x, y, *b)

    def dot(a, c):
        return sum(jnp.sum(u * v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(c),
                                                   strict=True))

    L1, L2 = game.loss1, game.loss2
    # each term is a function of (x, y, *batch): batch-taking games pass their batch
    return {
        "self_x": lambda x, y, *b: coef["self_x"] * dot(gx(L1, x, y, b), gx(L1, x, y, b)),
        "interaction_x": lambda x, y, *b: coef["interaction_x"] * dot(
            gy(L1, x, y, b), sg(gy(L2, x, y, b))),
        "self_y": lambda x, y, *b: coef["self_y"] * dot(gy(L2, x, y, b), gy(L2, x, y, b)),
        "interaction_y": lambda x, y, *b: coef["interaction_y"] * dot(
            gx(L2, x, y, b), sg(gx(L1, x, y, b))),
    }


def regularised_game(game: zoo.Game, h: float, lr: tuple[float, float],
                     coeffs: dict[str, float], method: str = "simultaneous") -> zoo.Game:
    """The game whose losses carry explicit drift regularisers:
    ``L_1 + h sum_k coeffs[k] term_k`` (k over ``self_x``, ``interaction_x``), idem for y.
    ``coeffs = {"interaction_x": -1, "interaction_y": -1}`` cancels the interaction drift
    of ``method`` at order 1; positive values strengthen it."""
    terms = drift_terms(game, lr, method)
    cx = {k: v for k, v in coeffs.items() if k.endswith("_x")}
    cy = {k: v for k, v in coeffs.items() if k.endswith("_y")}
    unknown = set(coeffs) - set(terms)
    if unknown:
        raise ValueError(f"unknown drift terms {sorted(unknown)}: use {sorted(terms)}")

    def loss1(x, y, *b):
        return game.loss1(x, y, *b) + h * sum(c * terms[k](x, y, *b) for k, c in cx.items())

    def loss2(x, y, *b):
        return game.loss2(x, y, *b) + h * sum(c * terms[k](x, y, *b) for k, c in cy.items())

    return zoo.Game(loss1=loss1, loss2=loss2, x0=game.x0, y0=jax.tree.map(jnp.array, game.y0),
                    name=f"{game.name} + drift regulariser {coeffs}",
                    equilibrium=game.equilibrium, batch_fn=game.batch_fn)


def modified_field(game: zoo.Game, method: Any, h: float, order: int = 1) -> Callable:
    """``(x, y) -> f_0 + h f_1 + ..`` of ``method`` (joint time) compiled from the engine."""
    compiled = modified_equation(method, order).to_jax(game.joint_losses())

    def f(x, y):
        return compiled.field((x, y), h)

    return f


def _flat(x, y):
    return jnp.concatenate([jnp.ravel(jnp.asarray(x)), jnp.ravel(jnp.asarray(y))])


def field_jacobian_at(field: Callable, x, y) -> np.ndarray:
    """Jacobian of a small game's field at ``(x, y)`` (dense: for 2-20 dimensional games)."""
    nx = int(np.size(x))

    def flat(z):
        fx, fy = field(z[:nx].reshape(np.shape(x)), z[nx:].reshape(np.shape(y)))
        return _flat(fx, fy)

    return np.asarray(jax.jacfwd(flat)(_flat(x, y)))


def _norms(traj) -> np.ndarray:
    return np.sqrt(np.asarray(traj.x) ** 2 + np.asarray(traj.y) ** 2).reshape(-1)


def rotational_game(eps: float = 0.09, h: float = 0.2, steps: int = 300,
                    out: str | None = None) -> dict[str, Any]:
    """Rotational game of Rosca et al. (2021), Fig. 2: returns the numbers (final
    distances, spectral radii, modified-flow traces) and saves a figure to ``out``."""
    game = zoo.rotational(eps)
    sim = runners.run("simultaneous", game, lr=h, steps=steps)
    alt = runners.run("alternating", game, lr=h, steps=steps)
    ts, fl = runners.flow(game, T=steps * h, n_save=steps + 1)
    mod_sim = modified_field(game, GM.simultaneous((1.0, 1.0)), h)
    mod_alt = modified_field(game, GM.alternating((1.0, 1.0)), h)
    # joint time with rates 1: one iteration is time h of the field f_0 + h f_1
    J_sim = field_jacobian_at(mod_sim, 0.0, 0.0)
    J_alt = field_jacobian_at(mod_alt, 0.0, 0.0)

    def mflow(f):
        return runners.flow(game, T=steps * h, n_save=steps + 1, drift=_drift(f, game))[1]

    fl_sim = mflow(mod_sim)
    fl_alt = mflow(mod_alt)
    cancelled = runners.run("simultaneous", regularised_game(
        game, h, (1.0, 1.0), {"interaction_x": -1.0, "interaction_y": -1.0}), lr=h,
        steps=steps)
    res = {
        "eps": eps, "h": h, "steps": steps,
        "initial_distance": float(_norms(sim)[0]),
        "final_distance": {
            "flow": float(_norms(fl)[-1]), "simultaneous": float(_norms(sim)[-1]),
            "alternating": float(_norms(alt)[-1]),
            "modified_flow_simultaneous": float(_norms(fl_sim)[-1]),
            "modified_flow_alternating": float(_norms(fl_alt)[-1]),
            "simultaneous_interaction_cancelled": float(_norms(cancelled)[-1])},
        "trace_modified_simultaneous": float(np.trace(J_sim)),
        "trace_modified_alternating": float(np.trace(J_alt)),
        "trace_flow": -2 * eps,
        "spectral_radius_simultaneous": float(np.abs(1 + h * (-eps + 1j))),
    }
    if out is not None:
        tn = h * np.arange(steps + 1)
        _plot_trajectories(
            {"flow": (np.asarray(ts), fl), "simultaneous GD": (tn, sim),
             "alternating GD": (tn, alt), "modified flow (sim.)": (np.asarray(ts), fl_sim),
             "modified flow (alt.)": (np.asarray(ts), fl_alt),
             "sim. GD, interaction drift cancelled": (tn, cancelled)},
            f"Rotational game, eps={eps}, h={h}", os.path.join(out, "rotational_game.png"))
        atomic_write_json(os.path.join(out, "rotational_game.json"), res)
    return res


def _drift(f: Callable, game: zoo.Game) -> Callable:
    """``drift = f~ - f_0`` so that ``runners.flow`` (which adds ``-xi``) integrates ``f~``."""
    gx = jax.grad(game.loss1, argnums=0)
    gy = jax.grad(game.loss2, argnums=1)

    def drift(x, y):
        fx, fy = f(x, y)
        return fx + gx(x, y), fy + gy(x, y)

    return drift


def dirac_gan(h: float = 0.1, steps: int = 1000, out: str | None = None) -> dict[str, Any]:
    """Zero-sum Dirac-GAN (``L_1 = psi theta = -L_2``), Rosca et al. (2021), Fig. 3."""
    game = zoo.dirac_gan("wgan")
    T = steps * h
    ts, fl = runners.flow(game, T=T, n_save=steps + 1, rtol=1e-12)
    sim = runners.run("simultaneous", game, lr=h, steps=steps)
    alt = runners.run("alternating", game, lr=h, steps=steps)
    cancelled = runners.run("simultaneous", regularised_game(
        game, h, (1.0, 1.0), {"interaction_x": -1.0, "interaction_y": -1.0}), lr=h,
        steps=steps)
    mod_sim = modified_field(game, GM.simultaneous((1.0, 1.0)), h)
    ts_sim, fl_sim = runners.flow(game, T=T, n_save=steps + 1, drift=_drift(mod_sim, game))
    r0 = float(_norms(sim)[0])
    fl_n = _norms(fl)
    res = {
        "h": h, "steps": steps, "initial_distance": r0,
        "flow_max_relative_drift_of_distance": float(np.max(np.abs(fl_n - r0)) / r0),
        "final_distance": {"flow": float(fl_n[-1]), "simultaneous": float(_norms(sim)[-1]),
                           "alternating": float(_norms(alt)[-1]),
                           "modified_flow_simultaneous": float(_norms(fl_sim)[-1]),
                           "simultaneous_interaction_cancelled": float(_norms(cancelled)[-1])},
        "max_distance_interaction_cancelled": float(np.max(_norms(cancelled))),
    }
    if out is not None:
        tn = h * np.arange(steps + 1)
        _plot_trajectories(
            {"flow": (np.asarray(ts), fl), "simultaneous GD": (tn, sim),
             "alternating GD": (tn, alt), "modified flow (sim.)": (np.asarray(ts_sim), fl_sim),
             "sim. GD, interaction drift cancelled": (tn, cancelled)},
            f"Dirac-GAN (zero-sum), h={h}", os.path.join(out, "dirac_gan.png"),
            labels=("theta (generator)", "psi (discriminator)"))
        atomic_write_json(os.path.join(out, "dirac_gan.json"), res)
    return res


def _plot_trajectories(trajs: dict[str, tuple[np.ndarray, Any]], title: str, path: str,
                       labels: tuple[str, str] = ("x", "y")) -> None:
    """Left: phase plane near the start (clipped at 3x the initial distance); right:
    distance to the equilibrium against time, log scale.  ``trajs[name] = (t, traj)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5.0))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    r0 = None
    for i, (name, (t, tr)) in enumerate(trajs.items()):
        x, y = np.asarray(tr.x).reshape(-1), np.asarray(tr.y).reshape(-1)
        r0 = r0 or float(np.hypot(x[0], y[0]))
        style = "-" if "flow" in name else "--"
        left.plot(x, y, style, lw=1.1, color=f"C{i}", label=name)
        right.semilogy(t, np.hypot(x, y), style, lw=1.3, color=f"C{i}", label=name)
    lim = 3 * (r0 or 1.0)
    left.set_xlim(-lim, lim)
    left.set_ylim(-lim, lim)
    left.plot([0], [0], "k*", ms=10)
    left.set_xlabel(labels[0])
    left.set_ylabel(labels[1])
    left.set_title("phase plane (dashed: discrete updates)", fontsize=10)
    left.set_aspect("equal")
    right.set_xlabel("time t = n h")
    right.set_ylabel("distance to equilibrium")
    right.set_title("distance to equilibrium", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)


def _reproducer(name: str) -> Any:
    def run(out: str, *, large: bool = False, progress: bool = True,
            resume: bool = False) -> str:
        if name == "rotational-game":
            res = rotational_game(out=out)
        elif name == "dirac-gan":
            res = dirac_gan(out=out, steps=3000 if large else 1000)
        else:
            from .mog import mog_experiment

            res = mog_experiment(out=out, large=large, progress=progress, resume=resume,
                                 verbose=False)
            return res["report"]  # table and conclusion; the numbers are in mog_gan.json
        return json.dumps(res, indent=1)

    return run


def reproduce_rotational_game(out: str, **kw: Any) -> str:
    """``bea reproduce rotational-game``."""
    return _reproducer("rotational-game")(out, **kw)


def reproduce_dirac_gan(out: str, **kw: Any) -> str:
    """``bea reproduce dirac-gan``."""
    return _reproducer("dirac-gan")(out, **kw)


def reproduce_mog_gan(out: str, **kw: Any) -> str:
    """``bea reproduce mog-gan``."""
    return _reproducer("mog-gan")(out, **kw)

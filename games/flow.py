r"""The continuous gradient flow of a game, :math:`z' = -\xi(z) + \text{drift}(z)`, with diffrax
(the flow the discrete runners of :mod:`games.runners` discretise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from games.zoo.game import Game, Trajectory, as_point, check_int

PyTree = Any
Array = jax.Array

__all__ = ["Drift", "drifted_field", "flow"]

Drift = Callable[[PyTree, PyTree], tuple[PyTree, PyTree]]


def drifted_field(game: Game, drift: Drift | None = None, batch: PyTree = None) -> Drift:
    r"""``(x, y) -> -xi(x, y) + drift(x, y)``: the game's flow field :math:`-\xi` plus an
    optional drift (the flow's field; :mod:`games.stability` linearises it)."""

    def field(x: PyTree, y: PyTree) -> tuple[PyTree, PyTree]:
        vx, vy = game.vector_field(x, y, batch)
        if drift is not None:
            dx, dy = drift(x, y)
            vx = jax.tree.map(jnp.add, vx, dx)
            vy = jax.tree.map(jnp.add, vy, dy)
        return vx, vy

    return field


@eqx.filter_jit
def _flow_solve(
    game: Game,
    x0: PyTree,
    y0: PyTree,
    ts: Array,
    drift: Drift | None,
    batch: PyTree,
    solver: diffrax.AbstractSolver,
    rtol: float,
    atol: float,
    max_steps: int,
) -> diffrax.Solution:
    v = drifted_field(game, drift, batch)

    def field(t: Array, z: tuple[PyTree, PyTree], args: Any) -> tuple[PyTree, PyTree]:
        return v(*z)

    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=(x0, y0),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )


def flow(
    game: Game,
    x0: PyTree = None,
    y0: PyTree = None,
    T: float = 10.0,
    n_save: int = 101,
    rtol: float = 1e-10,
    atol: float | None = None,
    *,
    drift: Drift | None = None,
    batch: PyTree = None,
    solver: str | diffrax.AbstractSolver = "dopri8",
    max_steps: int = 1_000_000,
) -> tuple[Array, Trajectory]:
    r"""Integrate the game's gradient flow :math:`z' = -\xi(z) + \text{drift}(z)` on :math:`[0, T]`.

    .. math::

        x'(t) = -\nabla_x\ell_1(x, y) + d_x(x, y), \qquad
        y'(t) = -\nabla_y\ell_2(x, y) + d_y(x, y),

    where ``drift(x, y) -> (d_x, d_y)`` is optional (e.g. a modified-equation correction from
    backward error analysis).  Uses diffrax with an adaptive ``PIDController``.

    Args:
        game: the game (batch-taking games need a fixed ``batch``).
        x0, y0: initial point (default the game's).
        T: final time (``> 0``).
        n_save: number of equally spaced save times in :math:`[0, T]` (``>= 2``).
        rtol: relative tolerance; ``atol`` defaults to ``rtol``.  Use float64 for small
            tolerances.
        drift: optional extra field, same pytree structure as ``(x, y)``.
        batch: fixed batch for batch-taking games.
        solver: ``"dopri8"`` (default), ``"tsit5"``, or a diffrax solver instance.
        max_steps: solver step budget.

    Returns:
        ``(ts, Trajectory)`` with leading axis ``n_save``; ``ts[0] = 0``, ``ts[-1] = T``.
    """
    if not T > 0:
        raise ValueError(f"T must be positive, got {T!r}")
    n_save = check_int(n_save, "n_save", 2)
    if not rtol > 0:
        raise ValueError(f"rtol must be positive, got {rtol!r}")
    atol = rtol if atol is None else atol
    if isinstance(solver, str):
        solvers = {"dopri8": diffrax.Dopri8, "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}
        if solver not in solvers:
            raise ValueError(f"unknown solver {solver!r}; expected one of {tuple(solvers)}")
        solver = solvers[solver]()
    if game.takes_batch and batch is None:
        raise ValueError(f"game {game.name!r} takes a batch; flow needs a fixed batch=")
    x0 = as_point(game, x0, game.x0, "x0")
    y0 = as_point(game, y0, game.y0, "y0")
    dt = jnp.result_type(*jax.tree.leaves(x0))
    ts = jnp.linspace(0.0, T, n_save, dtype=dt)
    sol = _flow_solve(game, x0, y0, ts, drift, batch, solver, rtol, atol, max_steps)
    xs, ys = sol.ys
    return sol.ts, Trajectory(xs, ys)

r"""Discrete optimisers for two-player games, and a continuous-flow integrator.

Notation: :math:`z = (x, y)`, :math:`\xi(z) = (\nabla_x\ell_1(x, y), \nabla_y\ell_2(x, y))` the
simultaneous gradient, :math:`\alpha` player 1's and :math:`\lambda` player 2's learning rate
(``lr=(alpha, lam)``; a single number means :math:`\alpha = \lambda`).

Each update rule is defined once, as a :mod:`games.methods` object (a B-series method with
block fields :math:`f_x = -(\nabla_x\ell_1, 0)`, :math:`f_y = -(0, \nabla_y\ell_2)`); the
runners scan its own numeric ``Method.step`` (:func:`step`), as ``bea.verify`` does.

**Step-size convention** (the one used across :mod:`games`): an iteration of step size
:math:`h` moves player p by :math:`r_p h f_p` per gradient step, with the method's rates
:math:`r_p`; the runners' ``lr`` are the products :math:`(\alpha, \lambda) = (r_x h, r_y h)`,
the actual step sizes.  So ``run(name, game, lr=(a, l))`` iterates
``games.methods.<name>((a, l))`` at :math:`h = 1`, and a method ``<name>((r_x, r_y))`` at step
``h`` is ``lr = (r_x h, r_y h)`` here.  (The rates enter through the fields, which keeps them
traced: one compilation serves every learning rate.)

* :func:`simultaneous`: :math:`x_{n+1} = x_n - \alpha\nabla_x\ell_1(z_n)`,
  :math:`y_{n+1} = y_n - \lambda\nabla_y\ell_2(z_n)`.
* :func:`alternating`: ``k_x`` steps of player 1 on :math:`\ell_1(\cdot, y_n)`, then ``k_y``
  steps of player 2 on :math:`\ell_2(x_{n+1}, \cdot)` (using the *new* :math:`x`).
* :func:`extragradient`: :math:`\tilde z = z_n - \eta\,\xi(z_n)`,
  :math:`z_{n+1} = z_n - \eta\,\xi(\tilde z)` with
  :math:`\eta = \operatorname{diag}(\alpha, \lambda)`.
* :func:`optimistic`: :math:`z_{n+1} = z_n - 2\eta\,\xi(z_n) + \eta\,\xi(z_{n-1})`, with
  :math:`z_{-1}` = ``(x_prev, y_prev)`` or :math:`z_0`.
* :func:`flow`: the gradient flow :math:`z' = -\xi(z) + \text{drift}(z)` with diffrax.

Each discrete runner is a jitted :func:`jax.lax.scan` and returns a :class:`Trajectory` of
stacked pytrees with leading axis ``steps // save_every + 1`` (**the initial point included**
at index 0).  One ``step`` is one outer iteration (for :func:`alternating`, ``k_x + k_y``
gradient evaluations; for :func:`extragradient` and :func:`optimistic`, two gradient
evaluations of each player).

Stochastic (batch-taking) games such as :func:`games.zoo.mog_gan` need data for each step;
pass **either**

* ``batches``: a pytree whose leaves have leading axis ``steps`` (``batches[n]`` is used at
  step ``n``), **or**
* ``key``: a PRNG key, split into ``steps`` keys and fed to ``game.batch_fn`` inside the scan.

Within one step every gradient evaluation (all inner steps of :func:`alternating`, the
extrapolation of :func:`extragradient`, both gradients of :func:`optimistic`) uses the same
batch.  Deterministic games reject ``batches``/``key``.

The single-step map :func:`step` is public; :mod:`games.stability` linearises it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bea.methods import Method
from games import methods as GM
from games.flow import flow
from games.zoo.game import Game, Trajectory, as_point, check_int
from kernels import tree_util as tu

PyTree = Any
Array = jax.Array
LR = float | Array | tuple[float | Array, float | Array]

__all__ = [
    "METHODS",
    "Trajectory",
    "alternating",
    "extragradient",
    "flow",
    "optimistic",
    "rule",
    "run",
    "simultaneous",
    "step",
]

#: the update rules the runners scan (:data:`games.methods.NAMES`, from bea's registry)
METHODS = GM.NAMES



# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------


def _check_rate(value: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive finite scalar (skipped for tracers)."""
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(f"learning rate {name} must be a scalar, got shape {arr.shape}")
    if not np.isrealobj(arr) or not np.isfinite(arr) or not arr > 0:
        raise ValueError(f"learning rate {name} must be a positive finite number, got {value!r}")


def parse_lr(lr: LR) -> tuple[Any, Any]:
    """Return ``(alpha, lam)`` from a scalar or a pair, checking both are positive."""
    if isinstance(lr, tuple | list):
        if len(lr) != 2:
            raise ValueError(f"lr must be a number or a pair (alpha, lam), got {lr!r}")
        alpha, lam = lr
    else:
        alpha = lam = lr
    _check_rate(alpha, "alpha (player 1)")
    _check_rate(lam, "lam (player 2)")
    return alpha, lam


# ----------------------------------------------------------------------------------------
# one iteration: the method's own step (games.methods defines each rule once)
# ----------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def rule(method: str, inner: tuple[int, int] = (1, 1)) -> Method:
    """The update rule ``method`` as its :mod:`games.methods` object at unit rates.

    The players' rates enter through the fields (:func:`step`), so the rule is built once
    per ``(method, inner)`` and one compilation serves every learning rate.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return GM.get(method, (1, 1), steps=inner)


def _rate_fields(game: Game, lr: tuple[Any, Any], batch: PyTree) -> list[Callable]:
    """Block fields on ``z = (x, y)`` scaled by the rates: ``alpha f_x = (-alpha grad_x
    l_1, 0)`` and ``lam f_y = (0, -lam grad_y l_2)``."""
    alpha, lam = lr

    def fx(z: tuple[PyTree, PyTree]) -> tuple[PyTree, PyTree]:
        x, y = z
        return tu.tree_scale(-alpha, game.grad_x(x, y, batch)), tu.tree_zeros_like(y)

    def fy(z: tuple[PyTree, PyTree]) -> tuple[PyTree, PyTree]:
        x, y = z
        return tu.tree_zeros_like(x), tu.tree_scale(-lam, game.grad_y(x, y, batch))

    return [fx, fy]


def step(
    method: str,
    game: Game,
    state: Any,
    lr: tuple[Any, Any],
    *,
    inner: tuple[int, int] = (1, 1),
    batch: PyTree = None,
) -> Any:
    r"""One iteration of ``method`` with rates ``lr = (alpha, lam)``: ``Method.step`` of
    the :mod:`games.methods` rule at step size :math:`h = 1`.

    ``state`` is ``(x, y)``, or ``((x, y), (x_prev, y_prev))`` for ``"optimistic"`` (the
    multistep state, returned shifted).  E.g. ``step("simultaneous", game, (x, y), (a, l))``
    is :math:`(x - a\nabla_x\ell_1, y - l\nabla_y\ell_2)`.
    """
    return rule(method, tuple(inner)).step(_rate_fields(game, lr, batch), state, 1.0)


# ----------------------------------------------------------------------------------------
# scan engine
# ----------------------------------------------------------------------------------------


@eqx.filter_jit
def _scan(
    method: str,
    game: Game,
    state0: Any,
    alpha: Array,
    lam: Array,
    inner: tuple[int, int],
    inputs: PyTree,
    input_mode: str,
    steps: int,
    save_every: int,
) -> Trajectory:
    n_save = steps // save_every
    multistep = rule(method, inner).history > 0

    def one(carry: Any, inp: Any) -> tuple[Any, None]:
        if input_mode == "none":
            batch = None
        elif input_mode == "batches":
            batch = inp
        else:
            batch = game.batch_fn(inp)
        return step(method, game, carry, (alpha, lam), inner=inner, batch=batch), None

    def chunk(carry: Any, inp: Any) -> tuple[Any, tuple[PyTree, PyTree]]:
        carry, _ = jax.lax.scan(one, carry, inp, length=save_every)
        return carry, (carry[0] if multistep else carry)

    if inputs is not None:
        inputs = jax.tree.map(
            lambda a: a.reshape((n_save, save_every) + a.shape[1:]), inputs
        )
    _, (xs, ys) = jax.lax.scan(chunk, state0, inputs, length=n_save)
    x0, y0 = state0[0] if multistep else state0
    cat = lambda a0, a: jnp.concatenate([jnp.asarray(a0, a.dtype)[None], a], axis=0)
    return Trajectory(jax.tree.map(cat, x0, xs), jax.tree.map(cat, y0, ys))


def run(
    method: str,
    game: Game,
    x0: PyTree = None,
    y0: PyTree = None,
    *,
    lr: LR,
    steps: int,
    inner: tuple[int, int] = (1, 1),
    x_prev: PyTree = None,
    y_prev: PyTree = None,
    batches: PyTree = None,
    key: Array | None = None,
    save_every: int = 1,
) -> Trajectory:
    """Run ``method`` (one of :data:`METHODS`) for ``steps`` outer steps; see the module doc.

    Args:
        method: ``"simultaneous" | "alternating" | "extragradient" | "optimistic"``.
        game: the game.
        x0, y0: initial point (default ``game.x0``, ``game.y0``); must match their structure.
        lr: ``alpha`` or ``(alpha, lam)``, positive.
        steps: number of outer steps (``>= 0``).
        inner: ``(k_x, k_y)`` for ``"alternating"`` only.
        x_prev, y_prev: :math:`z_{-1}` for ``"optimistic"`` only (default :math:`z_0`).
        batches: per-step batches (leading axis ``steps``) for batch-taking games.
        key: alternatively, a PRNG key to sample per-step batches with ``game.batch_fn``.
        save_every: store every ``save_every``-th iterate (must divide ``steps``).

    Returns:
        :class:`Trajectory` with leading axis ``steps // save_every + 1``, index 0 = initial.

    Raises:
        ValueError: bad method, non-positive rates, mismatched pytrees, bad ``inner``,
            ``steps``/``save_every``, or missing/unexpected batches.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if not isinstance(game, Game):
        raise ValueError(f"game must be a games.zoo.Game, got {type(game).__name__}")
    alpha, lam = parse_lr(lr)
    steps = check_int(steps, "steps", 0)
    save_every = check_int(save_every, "save_every", 1)
    if steps % save_every:
        raise ValueError(f"save_every={save_every} must divide steps={steps}")
    if method == "alternating":
        if not (isinstance(inner, tuple | list) and len(inner) == 2):
            raise ValueError(f"inner must be a pair (k_x, k_y), got {inner!r}")
        inner = (check_int(inner[0], "inner k_x", 1), check_int(inner[1], "inner k_y", 1))
    else:
        inner = (1, 1)
    x0 = as_point(game, x0, game.x0, "x0")
    y0 = as_point(game, y0, game.y0, "y0")
    if method == "optimistic":
        prev0 = (as_point(game, x_prev, x0, "x_prev"), as_point(game, y_prev, y0, "y_prev"))
    else:
        if x_prev is not None or y_prev is not None:
            raise ValueError("x_prev/y_prev are only used by the optimistic method")
        prev0 = None

    if game.takes_batch:
        if (batches is None) == (key is None):
            raise ValueError(
                f"game {game.name!r} takes batches: pass exactly one of batches= or key="
            )
        if batches is not None:
            lead = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(batches)}
            if lead != {steps}:
                raise ValueError(
                    f"batches must have leading axis steps={steps} on every leaf, got {lead}"
                )
            inputs, mode = batches, "batches"
        else:
            inputs, mode = jax.random.split(key, steps), "keys"
    else:
        if batches is not None or key is not None:
            raise ValueError(f"game {game.name!r} is deterministic; do not pass batches/key")
        inputs, mode = None, "none"

    dt = jnp.result_type(*jax.tree.leaves(x0))
    alpha = jnp.asarray(alpha, dtype=dt)
    lam = jnp.asarray(lam, dtype=dt)
    state0 = (x0, y0) if prev0 is None else ((x0, y0), prev0)
    return _scan(method, game, state0, alpha, lam, inner, inputs, mode, steps, save_every)


def simultaneous(
    game: Game,
    x0: PyTree = None,
    y0: PyTree = None,
    *,
    lr: LR,
    steps: int,
    batches: PyTree = None,
    key: Array | None = None,
    save_every: int = 1,
) -> Trajectory:
    r"""Simultaneous GD: :math:`x_{n+1} = x_n - \alpha\nabla_x\ell_1(z_n)`,
    :math:`y_{n+1} = y_n - \lambda\nabla_y\ell_2(z_n)`.  See :func:`run`."""
    return run(
        "simultaneous", game, x0, y0, lr=lr, steps=steps, batches=batches, key=key,
        save_every=save_every,
    )


def alternating(
    game: Game,
    x0: PyTree = None,
    y0: PyTree = None,
    *,
    lr: LR,
    steps: int,
    inner: tuple[int, int] = (1, 1),
    batches: PyTree = None,
    key: Array | None = None,
    save_every: int = 1,
) -> Trajectory:
    r"""Alternating GD: ``k_x`` steps :math:`x \leftarrow x - \alpha\nabla_x\ell_1(x, y_n)`,
    then ``k_y`` steps :math:`y \leftarrow y - \lambda\nabla_y\ell_2(x_{n+1}, y)`.
    ``inner=(k_x, k_y)``.  See :func:`run`."""
    return run(
        "alternating", game, x0, y0, lr=lr, steps=steps, inner=inner, batches=batches,
        key=key, save_every=save_every,
    )


def extragradient(
    game: Game,
    x0: PyTree = None,
    y0: PyTree = None,
    *,
    lr: LR,
    steps: int,
    batches: PyTree = None,
    key: Array | None = None,
    save_every: int = 1,
) -> Trajectory:
    r"""Extragradient: :math:`\tilde z_n = z_n - \eta\xi(z_n)`,
    :math:`z_{n+1} = z_n - \eta\xi(\tilde z_n)`, :math:`\eta = \operatorname{diag}(\alpha,\lambda)`.
    See :func:`run`."""
    return run(
        "extragradient", game, x0, y0, lr=lr, steps=steps, batches=batches, key=key,
        save_every=save_every,
    )


def optimistic(
    game: Game,
    x0: PyTree = None,
    y0: PyTree = None,
    *,
    lr: LR,
    steps: int,
    x_prev: PyTree = None,
    y_prev: PyTree = None,
    batches: PyTree = None,
    key: Array | None = None,
    save_every: int = 1,
) -> Trajectory:
    r"""Optimistic GD: :math:`z_{n+1} = z_n - 2\eta\xi(z_n) + \eta\xi(z_{n-1})`, with
    :math:`z_{-1} = ` ``(x_prev, y_prev)`` (default :math:`z_0`, so the first step is plain
    simultaneous GD).  For stochastic games both gradients of a step use that step's batch.
    See :func:`run`."""
    return run(
        "optimistic", game, x0, y0, lr=lr, steps=steps, x_prev=x_prev, y_prev=y_prev,
        batches=batches, key=key, save_every=save_every,
    )

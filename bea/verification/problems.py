"""Built-in verification problems and sweeps of initial points.

``default`` (a non-quadratic 2-D loss with a valley; one batch per color for SGD),
``mlp`` (a small tanh MLP regression) and ``game`` (a non-quadratic general-sum game on two
parameter blocks ``(x, y)``, for methods with :func:`bea.methods.block_names`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..methods import Method, block_names

__all__ = ["Problem", "default_problem", "initial_points"]


@dataclass
class Problem:
    """A verification problem: losses, initial point(s), batches and a default grid."""

    name: str
    loss: Any                      # L(params, batch) / list per color / (L_1, L_2)
    params0: Any
    batches: Sequence[Any] | None = None
    horizon: float = 1.0
    h_max: float = 0.1
    batch_initial: bool = False


# ----------------------------------------------------------------------------- problems


def _quartic(p, b):
    # a non-quadratic 2-D loss with a valley: (x y - a)^2/2 + c x^4/4 + y^2/20
    a, c = b[0], b[1]
    return (p[0] * p[1] - a) ** 2 / 2 + c * p[0] ** 4 / 4 + p[1] ** 2 / 20


def default_problem(method: Method, which: str = "default") -> Problem:
    """Built-in problem for ``method`` (memoised, so repeated verifications reuse their
    compiled code); see :func:`_default_problem`."""
    blocks = block_names(method)
    if blocks is None and which == "game":
        raise ValueError(f"problem 'game' needs a method on two parameter blocks (a "
                         f"two-player game), not {method.name}")
    if blocks is not None and len(blocks) != 2:
        raise ValueError(f"the built-in problems have two parameter blocks; {method.name} "
                         f"has {len(blocks)}: pass your own loss and params0")
    return _default_problem(method.ncolors, blocks is not None, which)


@functools.lru_cache(maxsize=16)
def _default_problem(ncolors: int, game: bool, which: str) -> Problem:
    """Built-in problems: ``"default"`` (non-quadratic 2-D loss; one batch per color for
    SGD), ``"mlp"`` (a small tanh MLP regression), ``"game"`` for two-player methods
    (a non-quadratic general-sum game, params ``(x, y)``)."""
    if game:
        def L1(p):
            x, y = p
            return (0.5 * jnp.sum(x**2) + x[0] * y[0] + 0.25 * x[1] * y[0] ** 2
                    + 0.1 * x[0] ** 4)

        def L2(p):
            x, y = p
            return 0.5 * y[0] ** 2 - x[0] * y[0] + 0.5 * x[1] * y[0] + 0.05 * y[0] ** 4

        p0 = (jnp.array([0.8, -0.5]), jnp.array([0.6]))
        return Problem("game", (L1, L2), p0, horizon=1.0, h_max=0.1)
    m = ncolors
    if which == "default":
        rng = np.random.default_rng(0)
        batches = [jnp.array([1.0 + 0.3 * rng.standard_normal(), 0.5 + 0.2 * rng.random()])
                   for _ in range(m)]
        return Problem("default (x y - a)^2/2 + c x^4/4 + y^2/20", _quartic,
                       jnp.array([1.0, 0.5]), batches=batches, horizon=1.0, h_max=0.1)
    if which == "mlp":
        key = jax.random.PRNGKey(0)
        k1, k2, k3 = jax.random.split(key, 3)
        X = jax.random.normal(k1, (16, 2))
        Y = jnp.sin(X[:, :1]) + 0.5 * X[:, 1:] ** 2
        params = {"W1": 0.5 * jax.random.normal(k2, (2, 8)), "b1": jnp.zeros(8),
                  "W2": 0.5 * jax.random.normal(k3, (8, 1)), "b2": jnp.zeros(1)}

        def mlp_loss(p, batch):
            Xb, Yb = batch
            hdn = jnp.tanh(Xb @ p["W1"] + p["b1"])
            return 0.5 * jnp.mean((hdn @ p["W2"] + p["b2"] - Yb) ** 2)

        split = np.array_split(np.arange(16), m)
        batches = [(X[i], Y[i]) for i in split]
        return Problem("mlp (2-8-1 tanh regression)", mlp_loss, params, batches=batches,
                       horizon=1.0, h_max=0.2)
    raise ValueError(f"unknown problem {which!r}: use 'default', 'mlp' or 'game'")


def initial_points(params0: Any, n: int, *, spread: float = 0.1, seed: int = 0) -> Any:
    """``n`` initial points around ``params0`` for a sweep with ``batch_initial=True``:
    every leaf gets a leading axis of size ``n``; point 0 is ``params0`` itself and the
    others add independent ``N(0, spread^2)`` noise to every entry."""
    if int(n) < 1:
        raise ValueError(f"the number of initial points must be >= 1, got {n}")
    leaves, treedef = jax.tree.flatten(params0)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    out = []
    for key, leaf in zip(keys, leaves, strict=True):
        leaf = jnp.asarray(leaf)
        noise = spread * jax.random.normal(key, (int(n), *leaf.shape), dtype=leaf.dtype)
        out.append((leaf[None] + noise).at[0].set(leaf))
    return jax.tree.unflatten(treedef, out)

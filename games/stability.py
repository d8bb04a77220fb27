r"""Linear stability of game dynamics at a fixed point.

For a discrete map :math:`F` with fixed point :math:`z^*` the iteration is locally
(exponentially) stable when the spectral radius :math:`\rho(DF(z^*)) < 1`; for a flow
:math:`z' = V(z)` with :math:`V(z^*) = 0` it is when
:math:`\max\operatorname{Re}\lambda(DV(z^*)) < 0`.

These helpers **build the dense Jacobian** (``jax.jacfwd``) on the flattened joint vector
:math:`z = (x, y)` and call :func:`numpy.linalg.eigvals` on the host; that is only sensible
for the small games of :mod:`games.zoo` (a few to a few hundred dimensions).  Eigenvalues
are returned as complex NumPy arrays.

For the optimistic method the state is :math:`(z_n, z_{n-1})`, so the map is on
:math:`\mathbb{R}^{2d}` and is linearised at :math:`(z^*, z^*)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from games.flow import drifted_field
from games.runners import LR, METHODS, parse_lr, step
from games.zoo import Game, check_compatible

PyTree = Any
Array = jax.Array

__all__ = [
    "discrete_map_eigenvalues",
    "flat_map",
    "flat_vector_field",
    "flow_eigenvalues",
    "is_stable_flow",
    "is_stable_map",
    "jacobian_eigenvalues",
    "spectral_radius",
]


def jacobian_eigenvalues(map_fn: Callable[[Array], Array], z_star: Any) -> np.ndarray:
    r"""Eigenvalues of the Jacobian :math:`D F(z^*)` of ``map_fn: R^d -> R^d`` at ``z_star``.

    ``map_fn`` may be a discrete map :math:`F` or a vector field :math:`V`.  The full
    :math:`d\times d` Jacobian is formed with forward-mode AD, so use this only for small
    ``d`` (the 2-20 dimensional zoo games; it is :math:`O(d)` JVPs and :math:`O(d^3)` eig).
    """
    z_star = jnp.asarray(z_star)
    if z_star.ndim != 1:
        raise ValueError(f"z_star must be a flat vector, got shape {z_star.shape}")
    jac = jax.jit(jax.jacfwd(map_fn))(z_star)
    d = z_star.shape[0]
    if jac.shape != (d, d):
        raise ValueError(f"map_fn must map R^{d} to R^{d}; its Jacobian has shape {jac.shape}")
    return np.linalg.eigvals(np.asarray(jac))


def _resolve_at(game: Game, at: Any) -> tuple[PyTree, PyTree]:
    if at is None:
        if game.equilibrium is None:
            raise ValueError(
                f"game {game.name!r} has no known equilibrium; pass at=(x, y) explicitly"
            )
        return game.equilibrium
    if not (isinstance(at, tuple | list) and len(at) == 2):
        raise ValueError("at must be a pair (x, y) of the players' pytrees")
    x, y = jax.tree.map(jnp.asarray, tuple(at))
    check_compatible(game.x0, x, "at[0] (x)")
    check_compatible(game.y0, y, "at[1] (y)")
    return x, y


def flat_vector_field(
    game: Game,
    at: tuple[PyTree, PyTree] | None = None,
    *,
    drift: Callable[[PyTree, PyTree], tuple[PyTree, PyTree]] | None = None,
    batch: PyTree = None,
) -> tuple[Callable[[Array], Array], Array]:
    r"""The flow field :math:`V(z) = -\xi(z) [+ \text{drift}(z)]` as a map on flat vectors.

    Returns ``(V_flat, z_flat)`` where ``z_flat`` is ``at`` (default: the game's equilibrium)
    raveled with :func:`jax.flatten_util.ravel_pytree`.
    """
    x, y = _resolve_at(game, at)
    z_flat, unravel = ravel_pytree((x, y))

    v = drifted_field(game, drift, batch)

    def field(z: Array) -> Array:
        return ravel_pytree(v(*unravel(z)))[0]

    return field, z_flat


def flat_map(
    game: Game,
    method: str,
    lr: LR,
    at: tuple[PyTree, PyTree] | None = None,
    *,
    inner: tuple[int, int] = (1, 1),
    batch: PyTree = None,
) -> tuple[Callable[[Array], Array], Array]:
    r"""One step of ``method`` as a map :math:`F` on flat vectors, and the flat point.

    For ``"optimistic"`` the map acts on :math:`(z_n, z_{n-1}) \in \mathbb{R}^{2d}`,
    :math:`F(z, w) = (z - 2\eta\xi(z) + \eta\xi(w),\, z)`, and the point is :math:`(z^*, z^*)`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    rates = parse_lr(lr)
    x, y = _resolve_at(game, at)
    z_flat, unravel = ravel_pytree((x, y))
    d = z_flat.shape[0]

    if method == "optimistic":

        def multistep(zz: Array) -> Array:
            state = (unravel(zz[:d]), unravel(zz[d:]))
            new, _ = step(method, game, state, rates, batch=batch)
            return jnp.concatenate([ravel_pytree(new)[0], zz[:d]])

        return multistep, jnp.concatenate([z_flat, z_flat])

    def one_step(zz: Array) -> Array:
        return ravel_pytree(step(method, game, unravel(zz), rates, inner=tuple(inner),
                                 batch=batch))[0]

    return one_step, z_flat


def discrete_map_eigenvalues(
    game: Game,
    method: str,
    lr: LR,
    at: tuple[PyTree, PyTree] | None = None,
    *,
    inner: tuple[int, int] = (1, 1),
    batch: PyTree = None,
) -> np.ndarray:
    r"""Eigenvalues of the Jacobian of one step of ``method`` at ``at`` (default equilibrium).

    E.g. simultaneous GD on a linear game :math:`\xi(z) = Jz` has :math:`DF = I - \eta J`.
    Stable iff :func:`is_stable_map` (spectral radius :math:`< 1`).
    """
    fn, z = flat_map(game, method, lr, at, inner=inner, batch=batch)
    return jacobian_eigenvalues(fn, z)


def flow_eigenvalues(
    field_fn: Callable[[Array], Array] | Game,
    at: Any = None,
    *,
    drift: Callable[[PyTree, PyTree], tuple[PyTree, PyTree]] | None = None,
    batch: PyTree = None,
) -> np.ndarray:
    r"""Eigenvalues of the Jacobian :math:`DV(z^*)` of a vector field.

    ``field_fn`` is either a callable on flat vectors (then ``at`` is the flat point,
    required) or a :class:`~games.zoo.Game` (then ``at`` is ``(x, y)`` or ``None`` for the
    game's equilibrium, and the field is :math:`-\xi + \text{drift}`).  Stable iff
    :func:`is_stable_flow` (all real parts :math:`< 0`).
    """
    if isinstance(field_fn, Game):
        fn, z = flat_vector_field(field_fn, at, drift=drift, batch=batch)
        return jacobian_eigenvalues(fn, z)
    if drift is not None or batch is not None:
        raise ValueError("drift/batch are only used when field_fn is a Game")
    if at is None:
        raise ValueError("at (the flat point) is required when field_fn is a callable")
    return jacobian_eigenvalues(field_fn, at)


def spectral_radius(eigs: Any) -> float:
    r""":math:`\rho = \max_k |\lambda_k|`."""
    return float(np.max(np.abs(np.asarray(eigs))))


def is_stable_map(eigs: Any, tol: float = 0.0) -> bool:
    r"""Whether a discrete map is locally stable: :math:`\rho = \max|\lambda| < 1 - \text{tol}`."""
    return spectral_radius(eigs) < 1.0 - tol


def is_stable_flow(eigs: Any, tol: float = 0.0) -> bool:
    r"""Whether a flow is locally stable: :math:`\max\operatorname{Re}\lambda < -\text{tol}`."""
    return float(np.max(np.real(np.asarray(eigs)))) < -tol

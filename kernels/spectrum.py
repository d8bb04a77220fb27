"""Hessian spectrum estimates from Hessian-vector products only.

All methods use ``hvp_operator`` (``grad L`` linearised once at ``theta``), so
no Hessian or other ``d x d`` object is built.

* Power iteration: ``v_{j+1} = H v_j / ||H v_j||``; the Rayleigh quotient
  ``v^T H v`` converges to the eigenvalue of largest *magnitude* (with its
  sign), at rate ``|lambda_2 / lambda_1|`` per step.
* Lanczos: builds an orthonormal basis ``q_1..q_m`` of the Krylov space
  ``span{q_1, H q_1, ..., H^{m-1} q_1}`` with ``H Q = Q T + beta_m q_{m+1}
  e_m^T`` and ``T`` tridiagonal (``alpha_j`` on the diagonal, ``beta_j`` off
  it).  The eigenvalues of ``T`` (Ritz values) approximate the extreme
  eigenvalues of ``H``; the largest converges much faster than power
  iteration.  Full re-orthogonalisation keeps ``Q`` orthonormal (memory
  ``m x d``: ``m`` parameter-sized vectors).  If the Krylov space becomes
  invariant (``beta_j ~ 0``) the recurrence restarts, with ``beta_j = 0``,
  from the coordinate vector least represented in ``Q`` projected orthogonal
  to ``Q`` (deterministic, no random draw inside the loop), so ``T`` stays
  exact.
* Hutchinson: ``tr H = E[z^T H z]`` for Rademacher ``z`` (``E[z z^T] = I``);
  the estimator's variance is ``2 (||H||_F^2 - sum_i H_ii^2)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from kernels.hvp import hvp_operator
from kernels.tree_util import (
    PyTree,
    tree_norm,
    tree_rademacher,
    tree_random_normal,
    tree_scale,
    tree_sub,
    tree_vdot,
)

__all__ = [
    "hutchinson_samples",
    "hutchinson_trace",
    "lanczos",
    "lanczos_tridiagonal",
    "top_hessian_eigenpair",
    "top_hessian_eigenvalue",
]

Loss = Callable[[PyTree], jax.Array]


def _normalize(v: PyTree) -> PyTree:
    n = tree_norm(v)
    return tree_scale(jnp.where(n > 0, 1.0 / jnp.where(n > 0, n, 1.0), 0.0), v)


def top_hessian_eigenpair(
    loss: Loss, params: PyTree, key: jax.Array, iters: int = 20
) -> tuple[jax.Array, PyTree]:
    """Power iteration: ``(lambda, v)`` with ``|lambda|`` the largest ``|eigenvalue|``.

    Uses exactly ``iters`` Hessian-vector products; ``lambda = v^T H v`` is the
    Rayleigh quotient of the returned unit vector ``v``.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    matvec = hvp_operator(loss, params)

    def step(_: int, v: PyTree) -> PyTree:
        return _normalize(matvec(v))

    v = jax.lax.fori_loop(0, iters - 1, step, _normalize(tree_random_normal(key, params)))
    return tree_vdot(v, matvec(v)).real, v


def top_hessian_eigenvalue(
    loss: Loss, params: PyTree, key: jax.Array, iters: int = 20
) -> jax.Array:
    """Largest-magnitude Hessian eigenvalue by power iteration (see ``top_hessian_eigenpair``)."""
    return top_hessian_eigenpair(loss, params, key, iters)[0]


def _project_out(basis: PyTree, w: PyTree) -> PyTree:
    """``w - Q Q^T w`` with the rows of the stacked ``basis`` leaves as ``Q``'s columns."""
    coeffs = sum(
        jnp.tensordot(jnp.conj(b).reshape(b.shape[0], -1), x.reshape(-1), axes=1)
        for b, x in zip(jax.tree.leaves(basis), jax.tree.leaves(w), strict=True)
    )
    correction = jax.tree.map(lambda b: jnp.tensordot(coeffs, b, axes=1), basis)
    return tree_sub(w, correction)


def _restart_vector(basis: PyTree) -> PyTree:
    """Unit coordinate vector ``e_i`` least represented in the basis: ``i = argmin (Q Q^T)_ii``.

    ``(Q Q^T)_ii = sum_j |q_j[i]|^2`` is computed leafwise; since its trace is
    the number ``k < d`` of basis vectors, ``||(I - Q Q^T) e_i||^2 >= 1 - k/d > 0``,
    so projecting ``e_i`` out of the basis always leaves a usable new direction.
    """
    leverage = jax.tree.map(lambda b: jnp.sum(jnp.abs(b) ** 2, axis=0), basis)
    flat, unravel = ravel_pytree(leverage)
    return unravel(jax.nn.one_hot(jnp.argmin(flat), flat.size, dtype=flat.dtype))


def lanczos_tridiagonal(
    loss: Loss, params: PyTree, key: jax.Array, num_steps: int
) -> tuple[jax.Array, jax.Array]:
    """Lanczos with full re-orthogonalisation: ``(alphas, betas)`` of ``T``.

    ``alphas`` has length ``m`` (diagonal), ``betas`` length ``m - 1``
    (off-diagonal), with ``m = min(num_steps, d)``.  Uses ``m`` HVPs.
    """
    d = sum(x.size for x in jax.tree.leaves(params))
    m = min(num_steps, d)
    if m < 1:
        raise ValueError(f"num_steps must be >= 1 and params non-empty, got {num_steps}, d={d}")
    matvec = hvp_operator(loss, params)
    q0 = _normalize(tree_random_normal(key, params))
    basis0 = jax.tree.map(lambda x: jnp.zeros((m, *x.shape), x.dtype), params)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    tol = jnp.sqrt(jnp.finfo(dtype).eps)

    def step(j: int, carry: tuple) -> tuple:
        basis, alphas, betas, q, q_prev, beta_prev = carry
        basis = jax.tree.map(lambda b, x: b.at[j].set(x), basis, q)
        hq = matvec(q)
        alpha = tree_vdot(q, hq).real
        w = jax.tree.map(lambda h, x, y: h - alpha * x - beta_prev * y, hq, q, q_prev)
        w = _project_out(basis, _project_out(basis, w))  # "twice is enough"
        beta = tree_norm(w)
        breakdown = beta <= tol * tree_norm(hq)
        fresh = _normalize(_project_out(basis, _project_out(basis, _restart_vector(basis))))
        q_next = jax.tree.map(
            lambda a, b: jnp.where(breakdown, a, b),
            fresh,
            tree_scale(1.0 / jnp.where(breakdown, 1.0, beta), w),
        )
        beta = jnp.where(breakdown, 0.0, beta)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(beta), q_next, q, beta

    zeros = jnp.zeros(m, dtype=jnp.finfo(dtype).dtype)
    init = (basis0, zeros, zeros, q0, jax.tree.map(jnp.zeros_like, q0), zeros[0])
    _, alphas, betas, *_ = jax.lax.fori_loop(0, m, step, init)
    return alphas, betas[:-1]


def lanczos(loss: Loss, params: PyTree, key: jax.Array, num_steps: int) -> jax.Array:
    """Ritz values (ascending) from ``num_steps`` Lanczos steps; ``[-1]`` is the top estimate.

    Only the ``m x m`` tridiagonal ``T`` (``m = min(num_steps, d)``) is
    diagonalised densely.
    """
    alphas, betas = lanczos_tridiagonal(loss, params, key, num_steps)
    t = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
    return jnp.linalg.eigvalsh(t)


def hutchinson_samples(
    loss: Loss, params: PyTree, key: jax.Array, num_samples: int, batch_size: int | None = None
) -> jax.Array:
    """The ``num_samples`` values ``z_s^T H z_s`` for independent Rademacher probes ``z_s``.

    Probes are vmapped all at once (``batch_size=None``) or in chunks of
    ``batch_size`` via ``jax.lax.map`` to bound memory.
    """
    matvec = hvp_operator(loss, params)

    def one(k: jax.Array) -> jax.Array:
        z = tree_rademacher(k, params)
        return tree_vdot(z, matvec(z)).real

    keys = jax.random.split(key, num_samples)
    if batch_size is None:
        return jax.vmap(one)(keys)
    return jax.lax.map(one, keys, batch_size=batch_size)


def hutchinson_trace(
    loss: Loss, params: PyTree, key: jax.Array, num_samples: int, batch_size: int | None = None
) -> jax.Array:
    """Hutchinson estimate ``tr H ~ mean_s z_s^T H z_s`` (Rademacher probes, unbiased)."""
    return jnp.mean(hutchinson_samples(loss, params, key, num_samples, batch_size))

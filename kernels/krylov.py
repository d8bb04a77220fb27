"""Lanczos on a matrix-free symmetric operator given as a flat ``matvec``.

``lanczos_eigh(matvec, v0, num_steps)`` builds an orthonormal basis ``Q`` (``m x d``) of
the Krylov space ``span{v0, A v0, .., A^(m-1) v0}`` with ``A Q^T = Q^T T + r e_m^T``, ``T``
tridiagonal, and returns the Ritz pairs ``(theta_i, Q^T y_i)`` of ``T = Y diag(theta) Y^T``
in descending order.  Full re-orthogonalisation (two classical Gram-Schmidt passes,
"twice is enough") keeps ``Q`` orthonormal; memory ``m`` vectors of length ``d``, the only
dense eigenproblem is the ``m x m`` one.  On breakdown (``beta_j ~ 0``: the Krylov space is
invariant, e.g. ``v0`` spans an eigenvector) the recurrence continues with ``beta_j = 0``
from the coordinate vector least represented in ``Q``, so ``T`` stays exact and ``m = d``
steps give every eigenvalue.  The residual norms ``|beta_m y_i[m]|`` bound the Ritz
values' errors (``|A x - theta x|``).

A comparison with matfree's matrix-free Lanczos has not been measured yet (issue 16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["LanczosResult", "lanczos_eigh"]


class LanczosResult(NamedTuple):
    values: jax.Array     # (m,) Ritz values, descending
    vectors: jax.Array    # (m, d) Ritz vectors (rows), unit norm
    residuals: jax.Array  # (m,) |A x_i - theta_i x_i| = |beta_m y_i[-1]|


def lanczos_eigh(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array,
                 num_steps: int) -> LanczosResult:
    """Ritz pairs from ``min(num_steps, d)`` Lanczos steps (``m`` matvecs) from ``v0``."""
    (d,) = v0.shape
    m = min(int(num_steps), d)
    if m < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    dtype = v0.dtype
    tol = jnp.sqrt(jnp.finfo(dtype).eps)
    n0 = jnp.linalg.norm(v0)
    q0 = jnp.where(n0 > 0, v0 / jnp.where(n0 > 0, n0, 1.0),
                   jnp.full((d,), 1.0 / jnp.sqrt(d), dtype))

    def project(basis, w):
        return w - basis.T @ (basis @ w)

    def step(j, carry):
        basis, alphas, betas, q, q_prev, beta_prev = carry
        basis = basis.at[j].set(q)
        aq = matvec(q)
        alpha = jnp.vdot(q, aq)
        w = aq - alpha * q - beta_prev * q_prev
        w = project(basis, project(basis, w))
        beta = jnp.linalg.norm(w)
        breakdown = beta <= tol * jnp.maximum(jnp.linalg.norm(aq), jnp.finfo(dtype).tiny)

        def restart(_):
            # only on breakdown (lax.cond): the leverage scores and two more projections
            # cost ~3 passes over the m x d basis, more than the step itself at d ~ 1e6
            lev = jnp.sum(basis * basis, axis=0)
            e = jax.nn.one_hot(jnp.argmin(lev), d, dtype=dtype)
            fresh = project(basis, project(basis, e))
            return fresh / jnp.linalg.norm(fresh)

        q_next = jax.lax.cond(breakdown, restart,
                              lambda _: w / jnp.where(breakdown, 1.0, beta), None)
        beta = jnp.where(breakdown, 0.0, beta)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(beta), q_next, q, beta

    zeros = jnp.zeros(m, dtype)
    init = (jnp.zeros((m, d), dtype), zeros, zeros, q0, jnp.zeros_like(q0),
            jnp.zeros([], dtype))
    basis, alphas, betas, *_ = jax.lax.fori_loop(0, m, step, init)
    t = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    theta, y = jnp.linalg.eigh(t)
    theta, y = theta[::-1], y[:, ::-1]
    vectors = y.T @ basis
    vectors = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
    # the last beta is the residual of the whole basis (0 once m = d)
    resid = jnp.abs(betas[-1] * y[-1, :]) if m < d else jnp.zeros(m, dtype)
    return LanczosResult(theta, vectors, resid)

r"""The principal flow of gradient descent (Rosca, Wu, Qin, Dherin, TMLR 2023).

For a quadratic ``E(x) = (1/2)(x - x*)^T A (x - x*)`` GD gives ``x_n - x* = (I - hA)^n
(x_0 - x*) = exp(n log(I - hA)) (x_0 - x*)``, so the flow

    x'(t) = (1/h) log(I - hA) (x - x*) = sum_i [log(1 - h lambda_i) / (h lambda_i)]
                                             (u_i^T grad E) u_i

passes through every GD iterate at ``t = n h`` (derived here; it is the principal flow's
definition on a quadratic and its general form with ``A = Hess E(x)``, ``(lambda_i, u_i)``
its eigenpairs; the coefficient is ``-1`` at ``lambda_i = 0``: gradient flow).  With the
principal branch of the log the coefficient is complex once ``h lambda_i > 1``
(``log(1 - h lambda) = log|1 - h lambda| + i pi``): GD's sign-flipping iterates are the
flow's values at integer times, and ``|1 - h lambda| > 1`` (``h lambda > 2``) makes them
grow.  Expanding in ``h`` gives ``-grad E - (h/2) H grad E - (h^2/3) H^2 grad E - ..``,
the ``H^k grad E`` part of GD's modified equation.

This module uses a dense ``eigh`` of the Hessian: for quadratics and small problems only.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp

__all__ = ["principal_flow", "principal_flow_field", "principal_flow_quadratic"]


def _coefficients(lam: jax.Array, h: float) -> jax.Array:
    z = h * lam.astype(jnp.result_type(lam, jnp.complex64))
    small = jnp.abs(z) < 1e-8
    safe = jnp.where(small, 1.0, z)
    # log(1 - z)/z -> -1 - z/2 as z -> 0 (avoids 0/0 for flat directions)
    return jnp.where(small, -1.0 - z / 2, jnp.log(1.0 - safe) / safe)


def principal_flow_field(loss: Callable[[jax.Array], jax.Array], h: float
                         ) -> Callable[[jax.Array], jax.Array]:
    """``x -> sum_i [log(1 - h lambda_i)/(h lambda_i)] (u_i^T grad E) u_i`` (complex),
    for a flat parameter vector ``x`` (dense Hessian: small problems)."""

    def field(x: jax.Array) -> jax.Array:
        lam, u = jnp.linalg.eigh(jax.hessian(loss)(x))
        g = jax.grad(loss)(x)
        return u @ (_coefficients(lam, h) * (u.T @ g))

    return field


def principal_flow_quadratic(a: jax.Array, x_star: jax.Array, x0: jax.Array, h: float,
                             t: jax.Array) -> jax.Array:
    """Closed form ``x(t) = x* + U exp((t/h) log(1 - h Lambda)) U^T (x0 - x*)`` for
    ``E = (1/2)(x - x*)^T A (x - x*)``; complex where ``h lambda_i > 1``.  ``t`` a scalar
    or a 1-d array of times (rows of the result)."""
    lam, u = jnp.linalg.eigh(a)
    log = jnp.log((1.0 - h * lam).astype(jnp.result_type(lam, jnp.complex64)))
    t = jnp.atleast_1d(jnp.asarray(t))
    c = u.T @ (x0 - x_star)
    out = x_star + (jnp.exp(t[:, None] / h * log[None, :]) * c[None, :]) @ u.T
    return out if out.shape[0] > 1 else out[0]


def principal_flow(loss: Callable[[jax.Array], jax.Array], x0: jax.Array, h: float,
                   t1: float, *, ts: jax.Array | None = None, rtol: float = 1e-10,
                   atol: float = 1e-12) -> diffrax.Solution:
    """Integrate the principal flow with diffrax (Dopri8) while it is real, i.e. while
    ``h lambda_i < 1`` for every Hessian eigenvalue along the path; where that fails the
    field has an imaginary part and the solution is NaN from there on (use
    :func:`principal_flow_quadratic` for the complex flow of a quadratic)."""
    field = principal_flow_field(loss, h)

    def real_field(t, x, args):
        f = field(x)
        ok = jnp.all(jnp.abs(f.imag) <= 1e-12 * (1 + jnp.abs(f.real)))
        return jnp.where(ok, f.real, jnp.nan)

    ts = jnp.asarray([t1] if ts is None else ts, dtype=x0.dtype)
    return diffrax.diffeqsolve(diffrax.ODETerm(real_field), diffrax.Dopri8(), 0.0, t1,
                               t1 / 100, x0, saveat=diffrax.SaveAt(ts=ts),
                               stepsize_controller=diffrax.PIDController(rtol=rtol,
                                                                         atol=atol),
                               max_steps=100_000, throw=False)

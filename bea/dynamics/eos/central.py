r"""The central flow of gradient descent (Cohen, Damian, Talwalkar, Kolter, Lee,
"Understanding optimization in deep learning with central flows", ICLR 2025).

At the edge of stability GD oscillates along the top Hessian eigenvectors and its
*time-averaged* iterate ``w(t)`` (time ``t = eta * steps``) follows::

    dw/dt = -grad L(w) - (1/2) grad <Sigma(t), H(w)>,        Sigma = sum_i sigma_i^2 u_i u_i^T

``Sigma`` the covariance of the oscillation, supported on the top eigenvectors ``u_i``
whose eigenvalues ``lambda_i`` sit at ``2/eta``.  With ``Sigma`` fixed,
``grad <Sigma, H> = sum_i sigma_i^2 grad lambda_i`` (Hellmann-Feynman,
``grad lambda_i = D^3L[u_i, u_i, .]``), so with ``x_i = sigma_i^2 / 2 >= 0`` and
``B = [grad lambda_1, .., grad lambda_k]^T``::

    dw/dt = -(grad L + B^T x).

``x`` is fixed by the stability constraint: no eigenvalue at the threshold may rise,
``d lambda_i/dt = -(B grad L + B B^T x)_i <= 0`` for every *active* ``i``
(``lambda_i >= 2/eta``), ``x_i = 0`` for the others, and ``x_i > 0`` only where the
constraint binds (``active``).  These complementarity conditions are the KKT conditions of the
nonnegative least-squares problem::

    x = argmin_{x >= 0, x_i = 0 off the active set} |grad L + B^T x|^2,

so ``dw/dt = -P_K(grad L)``, ``P_K`` the projection onto the polar cone
``{v : grad lambda_i . v <= 0 (i active)}``: gradient flow with the components that would
raise an eigenvalue above ``2/eta`` removed.  Below the threshold it *is* gradient flow;
with one eigenvalue at ``2/eta`` it is gradient flow projected onto
``{lambda_1 = 2/eta}`` while ``grad L`` points into ``{lambda_1 > 2/eta}``.  The flow
predicts the time-averaged training loss of GD as
``L(w) + (1/2) <Sigma, H> = L(w) + sum_i x_i lambda_i`` (``= L + tr(Sigma)/eta`` at
``lambda_i = 2/eta``).

Here ``Sigma`` is taken diagonal in the top-``k`` eigenbasis (the paper solves a
semidefinite complementarity problem over ``k x k`` matrices ``Sigma``; the two agree
when the eigenvalues at the edge are simple, as they generically are).  The ``k x k``
problem (``G = B B^T``, ``a = B grad L``) is solved exactly by enumerating the faces of the
orthant (``2^k`` small linear solves, ``k <= 10``).  A fixed-step classical Runge-Kutta
scheme integrates the flow.  A hard switch at ``lambda_i = 2/eta`` would make the field
discontinuous (and a fixed step overshoot the edge by ``O(dt)``), so the constraint is
imposed for every tracked ``i`` in the stabilised form
``d lambda_i/dt <= -kappa (lambda_i - 2/eta)`` (``kappa = stabilization``, default
``1/dt``; ``a = B grad L - kappa (lambda - 2/eta)`` above): at the edge it is the exact
constraint, far below the edge it never binds (gradient flow), and it pulls an overshoot
back to the edge at rate ``kappa``; it binds only within ``|d lambda/dt| / kappa`` of the
edge, an ``O(dt)`` smoothing of the switch.  Everything is matrix-free: Lanczos on HVPs
for ``lambda_i, u_i`` (warm-started from the previous step), one reverse pass through
``u^T H u`` per ``grad lambda_i``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from kernels.hvp import hessian_quadratic
from kernels.krylov import lanczos_eigh

from .sharpness import (
    DimensionError,
    EosInputError,
    check_chunks,
    check_loss,
    chunk_sum,
    chunked,
    split_params,
)

__all__ = ["CentralFlow", "central_flow", "nnls_small"]

PyTree = Any
MAX_K = 10


class CentralFlow(NamedTuple):
    """A central-flow trajectory at the save times ``ts`` (``t = eta * steps``):
    ``params`` (the array part, leading axis ``len(ts)``), ``loss`` ``L(w(t))``,
    ``predicted_loss`` ``L + sum_i x_i lambda_i`` (GD's time-averaged loss),
    ``sharpness`` the top-``k`` eigenvalues ``(len(ts), k)``, ``sigma2`` the oscillation
    variances ``sigma_i^2 = 2 x_i`` and ``active`` the constraints at the edge."""

    ts: jax.Array
    params: PyTree
    loss: jax.Array
    predicted_loss: jax.Array
    sharpness: jax.Array
    sigma2: jax.Array
    active: jax.Array


def nnls_small(gram: jax.Array, lin: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """``argmin_{x >= 0} (1/2) x^T G x + a^T x`` with ``x_i = 0`` where ``mask`` is False,
    exactly, for a small PSD ``G`` (``k <= 10``): every face ``S`` of the orthant gives the
    minimiser of the problem restricted to ``x_S`` (pseudo-inverse, so a singular ``G`` is
    fine); the feasible one with the smallest objective is the answer (the minimiser over
    the orthant lies in the relative interior of some face).  For ``G = B B^T``,
    ``a = B g`` it is nonnegative least squares ``min_{x>=0} |g + B^T x|``."""
    k = lin.shape[0]
    if k > MAX_K:
        raise EosInputError(f"nnls_small enumerates 2^k faces; k={k} > {MAX_K}")
    mask = jnp.ones(k, bool) if mask is None else mask
    # scale to unit diagonal so the pseudo-inverse cut-off is relative to each direction
    dg = jnp.sqrt(jnp.clip(jnp.diag(gram), 0.0))
    good = dg > jnp.finfo(gram.dtype).eps * jnp.maximum(jnp.max(dg), 1e-300)
    dinv = jnp.where(good, 1.0 / jnp.where(good, dg, 1.0), 0.0)
    g = gram * dinv[:, None] * dinv[None, :]
    a = lin * dinv
    faces = jnp.asarray(list(itertools.product([False, True], repeat=k)), bool)

    def solve(s):
        s = s & mask & good
        gs = jnp.where(s[:, None] & s[None, :], g, 0.0)
        y = jnp.where(s, jnp.linalg.pinv(gs, hermitian=True) @ jnp.where(s, -a, 0.0), 0.0)
        obj = 0.5 * y @ g @ y + a @ y
        feasible = jnp.all(y >= -1e-12 * (1.0 + jnp.max(jnp.abs(y))))
        return y, jnp.where(feasible, obj, jnp.inf)

    ys, objs = jax.vmap(solve)(faces)
    y = jnp.clip(ys[jnp.argmin(objs)], 0.0)
    return y * dinv


def central_flow(loss: Callable, params: PyTree, learning_rate: float, t1: float, *,
                 k: int = 1, data: PyTree | None = None, chunk_size: int | None = None,
                 dt: float | None = None, num_saves: int = 50, num_lanczos: int = 20,
                 stabilization: float | None = None,
                 key: jax.Array | None = None) -> CentralFlow:
    """Integrate the central flow of GD with step ``learning_rate`` from ``params`` to
    ``t1`` (in units ``t = eta * steps``; see the module docstring for the equations).

    ``loss(params)`` or, with ``data``, ``loss(params, batch)`` (the mean over ``batch``;
    chunked by ``chunk_size`` as in :func:`.sharpness.sharpness`).  ``k`` top eigenvalues
    are tracked and may be constrained (``k <= 10``).  Fixed-step RK4 with
    ``dt`` (default ``eta/2``, rounded so ``num_saves`` divides the steps); results at
    ``num_saves + 1`` equally spaced times.  Example::

        cf = central_flow(lambda w: 0.5 * (1 + w[0]**2) * w[1]**2 + 0.5 * (w[0] - 3)**2,
                          jnp.array([0.0, 0.1]), 0.4, 5.0)
        cf.sharpness[-1, 0]          # held at 2/eta = 5 once it gets there
    """
    eta = float(learning_rate)
    if not eta > 0 or not float(t1) > 0:
        raise EosInputError(f"learning_rate and t1 must be > 0, got {learning_rate!r}, "
                            f"{t1!r}")
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise EosInputError(f"k must be an integer in 1..{MAX_K} (the k x k complementarity "
                            f"problem is solved by enumeration), got {k!r}")
    if num_saves < 1:
        raise EosInputError(f"num_saves must be >= 1, got {num_saves}")
    diff, static = split_params(params)
    flat0, unravel = ravel_pytree(diff)
    d = flat0.size
    if k > d:
        raise DimensionError(f"k={k} eigenvalues asked for, but the model has only {d} "
                             f"parameters; pass k <= {d}")
    if data is None:
        check_loss(loss, params, None, None)
        chunks, scale = None, 1.0
    else:
        n, c = check_chunks(data, chunk_size)
        check_loss(loss, params, data, c)
        chunks, scale = chunked(data, n, c), c / n
    m = min(max(int(num_lanczos), k), d)
    dt = eta / 2 if dt is None else float(dt)
    steps_per_save = max(1, int(-(-float(t1) // (dt * num_saves))))
    dt = float(t1) / (steps_per_save * num_saves)
    kappa = 1.0 / dt if stabilization is None else float(stabilization)
    thr = 2.0 / eta

    def f(w, chunk):
        p = eqx.combine(unravel(w), static)
        return loss(p) if chunk is None else loss(p, chunk)

    value_grad = chunk_sum(lambda w, ch: jax.value_and_grad(f)(w, ch), chunks, scale)
    hvp = chunk_sum(lambda w, v, ch: jax.jvp(lambda z: jax.grad(f)(z, ch), (w,), (v,))[1],
                      chunks, scale)
    quad_grad = chunk_sum(
        lambda w, u, ch: jax.grad(lambda z: hessian_quadratic(lambda e: f(e, ch), z, u))(w),
        chunks, scale)

    def field(w, v0):
        val, g = value_grad(w)
        res = lanczos_eigh(lambda v: hvp(w, v), v0, m)
        lam, vecs = res.values[:k], res.vectors[:k]
        b = jax.vmap(lambda u: quad_grad(w, u))(vecs)          # rows grad lambda_i
        x = nnls_small(b @ b.T, b @ g - kappa * (lam - thr))
        active = x > 0
        return -(g + b.T @ x), (val, lam, x, active, jnp.sum(vecs, axis=0))

    def rk4(w, v0):
        k1, aux = field(w, v0)
        v0 = aux[-1]
        k2 = field(w + 0.5 * dt * k1, v0)[0]
        k3 = field(w + 0.5 * dt * k2, v0)[0]
        k4 = field(w + dt * k3, v0)[0]
        return w + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4), v0, aux

    @jax.jit
    def run(w, v0):
        def block(carry, _):
            w, v0 = carry
            _, aux = field(w, v0)

            def one(c, _):
                w, v0, _ = rk4(*c)
                return (w, v0), None

            (w2, v02), _ = jax.lax.scan(one, (w, aux[-1]), None, length=steps_per_save)
            return (w2, v02), (w, *aux[:-1])

        (w, v0), rec = jax.lax.scan(block, (w, v0), None, length=num_saves)
        _, last = field(w, v0)
        return jax.tree.map(lambda r, e: jnp.concatenate([r, e[None]]), rec,
                            (w, *last[:-1]))

    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, flat0.shape, flat0.dtype)
    ws, vals, lams, xs, act = run(flat0, v0)
    ts = jnp.linspace(0.0, float(t1), num_saves + 1, dtype=flat0.dtype)
    pred = vals + jnp.sum(xs * lams, axis=-1)
    return CentralFlow(ts, jax.vmap(unravel)(ws), vals, pred, lams, 2 * xs, act)

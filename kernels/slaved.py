"""The invariant (slaved-state) manifold of a map with a fast contracting state.

An optimiser with state is a joint map ``(x, s) -> (x', s') = J(h, x, s)`` on parameters
``x`` and state ``s`` (momentum buffers, moment estimates).  For the usual optimisers the
parameters move by ``O(h)`` while the state is a *fast* variable: at ``h = 0`` the state
map ``s -> S(0, x, s)`` is a contraction (rate ``beta`` for momentum, ``b1``/``b2`` for
Adam) with a fixed point ``sigma_0(x)``.  Then (Hairer, Lubich, Wanner, *GNI*, ch. XV.2
for multistep methods; the same argument for any contracting fast variable) there is an
invariant manifold ``s = Sigma_h(x) = sum_k h^k sigma_k(x)``, attracting at rate ``beta^n``,
and on it the parameters follow a one-step map, the *underlying one-step method*

    Phi_h(x) = J_x(h, x, Sigma_h(x)).

Invariance: the state entering the step at ``x`` is ``Sigma_h(x)``; the state leaving it
must be the one entering the next step, ``Sigma_h(Phi_h(x)) = J_s(h, x, Sigma_h(x))``.
Writing ``R_k(h, x)`` for the residual with ``Sigma`` truncated after ``h^k``, the unknown
``sigma_k`` enters ``[h^k] R`` only as ``(I - S_s) sigma_k`` with ``S_s = d_s J_s(0, x,
sigma_0(x))`` (it enters ``Phi`` at ``h^(k+1)``), so, order by order,

    sigma_0(x) = S(0, x, sigma_0(x))                      (Newton, matrix-free GMRES)
    sigma_k(x) = (I - S_s)^(-1) ( -[h^k] R_(k-1)(h, x) )   (one GMRES solve)

``[h^k]`` is taken by nested ``jvp`` in ``h`` (:func:`kernels.modified_flow.taylor_coefficients`).
Each ``sigma_k`` is a function of ``x`` that can be differentiated again: ``sigma_0`` has
an implicit-function ``custom_jvp`` (``d sigma_0 = (I - S_s)^(-1) d_x S dx``).  Nothing
``d x d`` is formed.

Check (heavy ball in optax form, ``v' = g(x) + beta v``, ``x' = x - h v'``): ``sigma_0 =
g/(1-beta)`` and ``Phi_h = x - h g/(1-beta) + O(h^2)``, the leading field ``bea`` derives
symbolically for :func:`bea.methods.heavy_ball`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from kernels.modified_flow import taylor_coefficients
from kernels.tree_util import PyTree, tree_norm, tree_scale, tree_sub

__all__ = ["slaved_manifold", "state_contraction_rate", "state_diagonal", "SOLVER_TOL"]

#: relative tolerance of the Newton iterations
SOLVER_TOL = 1e-13


def state_diagonal(S: Callable, s: PyTree) -> PyTree:
    """``d_s S(s)[ones]``: the Jacobian's diagonal when ``S`` is elementwise in the state."""
    return jax.jvp(S, (s,), (jax.tree.map(jnp.ones_like, s),))[1]


def _diag_solve(D: PyTree, b: PyTree) -> PyTree:
    """``(I - diag(D))^(-1) b``."""
    return jax.tree.map(lambda d, v: v / (1.0 - d), D, b)


def _poly(coeffs: list[PyTree], h: jax.Array) -> PyTree:
    out = coeffs[0]
    for k, c in enumerate(coeffs[1:], start=1):
        out = jax.tree.map(lambda a, b, k=k: a + h ** k * b, out, c)
    return out


def state_contraction_rate(joint: Callable, x: PyTree, s: PyTree, key: jax.Array,
                           iters: int = 60) -> jax.Array:
    """Power-iteration estimate of the spectral radius of ``d_s S(0, x, s)`` (jvps only)."""
    S = lambda s_: joint(jnp.zeros(()), x, s_)[1]  # noqa: E731
    leaves, treedef = jax.tree.flatten(s)
    keys = jax.random.split(key, len(leaves))
    v = jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(a), jnp.result_type(a))
                                     for k, a in zip(keys, leaves, strict=True)])

    def body(carry, _):
        v, _ = carry
        n = tree_norm(v)
        v = tree_scale(1.0 / n, v)
        w = jax.jvp(S, (s,), (v,))[1]
        return (w, tree_norm(w)), None

    (_, rate), _ = jax.lax.scan(body, (v, jnp.zeros(())), None, length=iters)
    return rate


def slaved_manifold(joint: Callable[[jax.Array, PyTree, PyTree], tuple[PyTree, PyTree]],
                    order: int, s_guess: PyTree, newton_steps: int = 30,
                    affine: bool = False) -> tuple[list[Callable], Callable]:
    """``([sigma_0, .., sigma_order], Phi)`` for ``joint(h, x, s) -> (x', s')``.

    ``sigma_k(x)`` are the manifold's coefficients (functions of ``x``) and ``Phi(h, x)``
    the underlying one-step map with ``Sigma`` truncated after ``h^order`` (exact to
    ``O(h^(order+1))``, enough for the modified field to order ``order``).  ``s_guess`` is a
    starting point for Newton (any state of the right structure).

    ``affine=True`` (the caller has checked that ``s -> S(0, x, s)`` is affine, as for
    momentum traces and moment EMAs): ``sigma_0 = (I - D)^(-1) S(0, x, 0)`` in closed form,
    no Newton loop and no ``custom_jvp``, so nested derivatives trace a small graph.
    """
    zero = jnp.zeros((), dtype=jnp.result_type(float))

    def S0(x, s):
        return joint(zero, x, s)[1]

    def solve(x, s, b):
        return _diag_solve(state_diagonal(lambda s_: S0(x, s_), s), b)

    def newton(x):
        def cond(c):
            i, _, r = c
            return (i < newton_steps) & (r > SOLVER_TOL)

        def body(c):
            i, s, _ = c
            res = tree_sub(s, S0(x, s))
            ds = solve(x, s, res)
            s = tree_sub(s, ds)
            return i + 1, s, tree_norm(ds) / (1.0 + tree_norm(s))

        _, s, _ = jax.lax.while_loop(cond, body, (0, s_guess, jnp.asarray(jnp.inf, zero.dtype)))
        return s

    if affine:
        zeros = jax.tree.map(jnp.zeros_like, s_guess)

        def sigma0(x):
            return solve(x, zeros, S0(x, zeros))
        sigma0 = jax.jit(sigma0)
    else:
        @jax.custom_jvp
        def sigma0(x):
            return newton(x)

        @sigma0.defjvp
        def _sigma0_jvp(primals, tangents):
            (x,), (dx,) = primals, tangents
            s = sigma0(x)
            dS = jax.jvp(lambda x_: S0(x_, s), (x,), (dx,))[1]
            return s, solve(x, s, dS)

    sigmas: list[Callable] = [sigma0]

    def truncated(k: int) -> Callable:
        fns = list(sigmas[: k + 1])
        return lambda h, x: _poly([f(x) for f in fns], h)

    def residual(k: int) -> Callable:
        Sig = truncated(k)

        def R(h, x):
            s = Sig(h, x)
            x1, s1 = joint(h, x, s)
            return tree_sub(Sig(h, x1), s1)

        return R

    for k in range(1, order + 1):
        R = residual(k - 1)

        def sigma_k(x, R=R, k=k):
            rhs = taylor_coefficients(lambda h: R(h, x), k)[k]
            return solve(x, sigma0(x), tree_scale(-1.0, rhs))

        sigmas.append(jax.jit(sigma_k))

    Sig = truncated(order)

    @jax.jit
    def phi(h, x):
        return joint(h, x, Sig(h, x))[0]

    return sigmas, phi

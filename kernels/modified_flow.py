"""Modified vector fields of a one-step map, numerically: Taylor mode in h, no trees.

Let ``Psi(h, x)`` be a smooth one-step map on a pytree ``x`` with ``Psi(0, x) = x`` and
Taylor coefficients in the step size

    Psi(h, x) = x + sum_{k>=1} h^k psi_k(x),     psi_k = (1/k!) d^k Psi/dh^k (0, .).

Backward error analysis (Hairer, Lubich, Wanner, *Geometric Numerical Integration*,
ch. IX) asks for a field ``f~ = f_0 + h f_1 + h^2 f_2 + ...`` whose exact time-h flow
equals ``Psi(h, .)`` to ``O(h^(p+2))`` when truncated after ``f_p``.

**Matching conditions.**  With the Lie derivative ``(L_a u)(x) = u'(x) a(x)`` (one ``jvp``)
the time-t flow of a field ``F`` is the Lie series ``phi_t(x) = x + sum_{n>=1} t^n/n!
(L_F^(n-1) F)(x)``.  For ``F = f~ = sum_j h^j f_j`` and ``t = h``, ``L_F`` is linear in
``F``, so the coefficient of ``h^m`` in ``L_F^(n-1) F`` is

    W_1^(m) = f_m,     W_(n+1)^(m) = sum_{j=0}^{m} L_{f_j} W_n^(m-j),

and the coefficient of ``h^(k+1)`` in ``phi_h(x) - x`` is ``sum_{n=1}^{k+1} (1/n!)
W_n^(k+1-n)``.  Matching it with ``psi_(k+1)`` gives, order by order,

    f_k = psi_(k+1) - sum_{n=2}^{k+1} (1/n!) W_n^(k+1-n),

where every ``W_n^(m)`` on the right uses only ``f_0..f_(k-1)`` (``m <= k-1``).  Because
those ``W`` differentiate the earlier fields, each ``f_j`` is built as a *function* of
``x`` (a closure over the earlier ones), never as a number at a point.  Checks: GD,
``Psi = x - h g``, gives ``f_0 = -g``, ``f_1 = -(1/2) f_0' f_0 = -(1/2) H g``.

``psi_k`` are computed by ``k`` nested ``jax.jvp`` in the scalar ``h`` (the tangent of the
tangent carries every lower derivative along); ``jax.experimental.jet`` would be O(k^2)
instead of O(2^k) but has no rule for ops optax uses (e.g. ``decay**count`` with an integer
count in Adam's bias correction), and with a single direction XLA's CSE removes most of
the redundancy (see :mod:`kernels.directional`).  No finite differences in h anywhere.

Memory: each term is a stack of nested forward passes, ``O(params x order)`` numbers;
no Hessian or ``d x d`` object.  Cost grows like ``2^order`` evaluations of the map's
derivatives; orders up to about 4 are practical.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from kernels.tree_util import PyTree, tree_scale, tree_sub

__all__ = ["taylor_coefficients", "lie_derivative", "modified_field_functions"]


def _lift(g: Callable) -> Callable:
    """``h -> (d_0..d_k)(h)`` from ``h -> (d_0..d_(k-1))(h)`` by one jvp in h."""

    def gk(h):
        primal, tangent = jax.jvp(g, (h,), (jnp.ones_like(h),))
        return (primal[0],) + tuple(tangent)

    return gk


def taylor_coefficients(fun: Callable[[jax.Array], PyTree], order: int,
                        h0: jax.typing.ArrayLike = 0.0) -> list[PyTree]:
    """``[c_0, .., c_order]`` with ``c_k = (1/k!) d^k fun/dh^k (h0)``, by nested jvp in h.

    ``fun`` maps a scalar to a pytree of floats.  ``h0``'s dtype is the dtype of the
    derivatives (pass a float64 scalar under x64).
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    h0 = jnp.asarray(h0, dtype=jnp.result_type(float))
    g = lambda h: (fun(h),)  # noqa: E731
    for _ in range(order):
        g = _lift(g)
    derivs = g(h0)
    return [d if k == 0 else tree_scale(1.0 / math.factorial(k), d)
            for k, d in enumerate(derivs)]


def lie_derivative(u: Callable[[PyTree], PyTree], a: Callable[[PyTree], PyTree]) -> Callable:
    """``x -> u'(x) a(x)`` (one ``jvp``; differentiable again, ``a``'s dependence included)."""

    def lu(x):
        return jax.jvp(u, (x,), (a(x),))[1]

    return lu


def _sum(trees: list[PyTree], like: PyTree) -> PyTree:
    if not trees:
        return jax.tree.map(jnp.zeros_like, like)
    out = trees[0]
    for t in trees[1:]:
        out = jax.tree.map(jnp.add, out, t)
    return out


def modified_field_functions(step: Callable[[jax.Array, PyTree], PyTree],
                             order: int) -> list[Callable[[PyTree], PyTree]]:
    """The modified field terms ``[f_0, .., f_order]`` of ``step(h, x)`` as functions of x.

    ``step(0, x)`` must be ``x`` (a consistent one-step map; callers check it).  See the
    module docstring for the recursion.  The returned callables are pure and traceable
    (use them under ``jit``/``vmap``; differentiate them again if needed).
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")

    def psi(k: int) -> Callable:
        def psi_k(x):
            return taylor_coefficients(lambda h: step(h, x), k)[k]
        return jax.jit(psi_k)

    f: list[Callable] = []
    W: dict[tuple[int, int], Callable] = {}

    def w(n: int, m: int) -> Callable:
        """Coefficient of h^m in L_F^(n-1) F, as a function of x (memoised closures)."""
        if (n, m) in W:
            return W[n, m]
        if n == 1:
            fn = f[m]
        else:
            parts = [lie_derivative(w(n - 1, m - j), f[j]) for j in range(m + 1)]

            def fn(x, parts=parts):
                return _sum([p(x) for p in parts], x)
        fn = jax.jit(fn)
        W[n, m] = fn
        return fn

    for k in range(order + 1):
        top = psi(k + 1)
        corrections = [(1.0 / math.factorial(n), w(n, k + 1 - n)) for n in range(2, k + 2)]

        def fk(x, top=top, corrections=corrections):
            rest = _sum([tree_scale(c, g(x)) for c, g in corrections], x)
            return tree_sub(top(x), rest)

        f.append(jax.jit(fk))
    return f

"""Higher directional derivatives by nested forward mode.

For a (pytree -> pytree or scalar) function ``f`` and directions
``v_1, ..., v_k`` shaped like ``theta``,

    D^k f(theta)[v_1, ..., v_k]
        = d/dt_1 ... d/dt_k f(theta + t_1 v_1 + ... + t_k v_k) |_{t = 0},

a symmetric k-linear form in the ``v_j``.  It is computed by ``k`` nested
``jax.jvp`` calls, ``g_0 = f``, ``g_j(theta) = jvp(g_{j-1}, theta; v_j)``,
so ``g_k(theta) = D^k f(theta)[v_1..v_k]``.  The ``v_j`` are closed over and
are constants for the inner ``jvp``; under an *outer* transformation they are
still differentiated if they depend on the outer variable (use
``jax.lax.stop_gradient`` to prevent that, as ``loss_contraction`` does).

Cost: a depth-``k`` nested forward pass carries ``2^k`` tangent components,
i.e. about ``2^k`` evaluations of ``f``; no Jacobian/Hessian is materialised.

Taylor mode (``jax.experimental.jet``) could replace this when all ``v_j`` are
equal (``D^k f[v, ..., v]`` is the k-th derivative-convention jet coefficient
for the input series ``(v, 0, ..., 0)``), at ``O(k^2)`` instead of ``O(2^k)``.
Measured on CPU (float64, jitted, 3-layer tanh MLP with ~134k parameters,
``v = grad L``) it was *not* faster: k = 2, 3, 4 took 2.1/3.9/3.7 ms nested
vs 2.7/4.8/5.2 ms with jet for ``D^k L``, and 6.3/7.7/11.6 ms vs 7.4/9.0/13.3
ms for ``D^k (-grad L)`` (results equal to 1e-14): with equal tangents XLA
common-subexpression elimination removes most of the ``2^k`` redundancy.
``jet`` also lacks rules for several primitives, so it is deliberately not used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from kernels.tree_util import PyTree, check_same_structure

__all__ = ["nested_jvp"]


def _cast_like(v: PyTree, p: PyTree) -> PyTree:
    """Cast the tangent ``v`` leafwise to the dtypes of the primal ``p``."""
    return jax.tree.map(lambda t, x: jnp.asarray(t, dtype=jnp.result_type(x)), v, p)


def _directional(g: Callable[[PyTree], PyTree], v: PyTree, index: int) -> Callable:
    """Return ``theta -> Dg(theta)[v]`` (``v`` held fixed by closure)."""

    def dg(p: PyTree) -> PyTree:
        check_same_structure(p, v, f"nested_jvp direction {index} vs params")
        return jax.jvp(g, (p,), (_cast_like(v, p),))[1]

    return dg


def nested_jvp(
    fun: Callable[[PyTree], PyTree], params: PyTree, tangents: Sequence[PyTree]
) -> PyTree:
    """``D^k fun(params)[tangents[0], ..., tangents[k-1]]`` by ``k`` nested ``jax.jvp``.

    With ``tangents == ()`` this is ``fun(params)``.  Tangent leaves are cast
    to the dtype of the matching parameter leaf.
    """
    g = fun
    for j, v in enumerate(tangents):
        g = _directional(g, v, j)
    return g(params)

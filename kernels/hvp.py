"""Hessian-vector products without forming the Hessian.

For a scalar loss ``L`` and a direction ``v`` shaped like ``theta``:

* ``hvp(L, theta, v) = H(theta) v = D(grad L)(theta)[v]``, computed
  forward-over-reverse: ``jax.jvp(jax.grad(L), (theta,), (v,))``.  Cost about
  that of two to three gradient evaluations, memory of one gradient.
* ``hessian_quadratic(L, theta, v) = v^T H(theta) v = D^2 L(theta)[v, v]``,
  computed forward-over-forward (two nested ``jax.jvp`` of the scalar loss, no
  reverse pass at all).
* ``hvp_operator(L, theta)`` returns ``v -> H(theta) v`` from ``jax.linearize``
  of ``grad L``: the gradient's forward/backward pass is traced and evaluated
  once, and every later product only runs the linearised (tangent) program.
  Use it for iterative methods (power iteration, Lanczos, Hutchinson).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from kernels.directional import nested_jvp
from kernels.tree_util import PyTree, check_same_structure

__all__ = ["hessian_quadratic", "hvp", "hvp_operator"]


def hvp(loss: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product ``H(params) v`` by forward-over-reverse."""
    check_same_structure(params, v, "hvp direction vs params")
    return nested_jvp(jax.grad(loss), params, [v])


def hessian_quadratic(loss: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> jax.Array:
    """Quadratic form ``v^T H(params) v = D^2 L(params)[v, v]`` by forward-over-forward."""
    check_same_structure(params, v, "hessian_quadratic direction vs params")
    return nested_jvp(loss, params, [v, v])


def hvp_operator(loss: Callable[[PyTree], jax.Array], params: PyTree) -> Callable[[PyTree], PyTree]:
    """The linear map ``v -> H(params) v``, linearising ``grad L`` at ``params`` once."""
    _, matvec = jax.linearize(jax.grad(loss), params)

    def apply(v: PyTree) -> PyTree:
        check_same_structure(params, v, "hvp_operator direction vs params")
        return matvec(v)

    return apply

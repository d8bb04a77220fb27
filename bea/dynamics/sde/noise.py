r"""Minibatch gradient noise through centred per-example gradients (never a d x d matrix).

With per-example gradients ``g_i`` over the ``n`` examples of the data set, ``gbar`` their
mean and ``Sigma_1 = (1/n) sum_i (g_i - gbar)(g_i - gbar)^T``, the covariance of one
minibatch gradient is ``Sigma_B = c Sigma_1`` (``c`` = :func:`covariance_scale`: ``1/B``
with replacement).  Writing ``A = [g_1 - gbar, ..., g_n - gbar] / sqrt(n)`` (``d x n``),
``Sigma_1 = A A^T``, so

    Sigma_B^(1/2) xi  ~  sqrt(c) A xi',   xi' ~ N(0, I_n)

has exactly covariance ``Sigma_B`` (derived: ``Cov(A xi') = A A^T``).  ``A`` is the stack
of per-example gradients, ``O(n d)`` memory (:func:`kernels.per_example_grads`), and the
product is a contraction over examples.  This is the diffusion of the SDE and the noise
of covariance-matched noisy GD.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import kernels

from .sampling import _leading, covariance_scale

__all__ = ["PerExampleLossError", "check_per_example_loss", "gradient_and_noise_factor",
           "minibatch_noise", "noise_trace"]


class PerExampleLossError(TypeError):
    """The SDE needs ``loss(params, example) -> scalar`` (one example, no batch axis)."""


def check_per_example_loss(loss: Callable, params: Any, data: Any) -> int:
    """Number of examples ``n``; raises :class:`PerExampleLossError` unless ``loss`` maps
    ``(params, one example)`` to a scalar.  The noise covariance is built from per-example
    gradients, so a loss that only exists as a batch mean (``loss(params)``, or a loss that
    needs the batch axis) cannot be used."""
    if not callable(loss):
        raise PerExampleLossError(f"loss must be callable, got {type(loss).__name__}")
    n = _leading(data)
    example = jax.tree.map(lambda x: x[0], data)
    try:
        out = jax.eval_shape(loss, params, example)
    except Exception as e:  # noqa: BLE001 - any failure means "not a per-example loss"
        raise PerExampleLossError(
            f"the SDE needs a per-example loss loss(params, example) -> scalar, but calling "
            f"it on one example (the batch's leaves without their leading axis) failed: "
            f"{type(e).__name__}: {e}. Write the loss of a single example; the data-set loss "
            f"is its mean") from None
    if not (hasattr(out, "shape") and out.shape == ()):
        raise PerExampleLossError(
            f"the SDE needs a per-example loss loss(params, example) -> scalar; on one "
            f"example it returned shape {getattr(out, 'shape', type(out).__name__)}. Return "
            f"the loss of that example (a scalar), not a vector of losses")
    return n


def gradient_and_noise_factor(loss: Callable, params: Any, data: Any
                              ) -> tuple[jax.Array, jax.Array]:
    """``(grad L, A)`` as flat arrays: ``grad L = gbar`` (``d``) and the centred
    per-example gradients ``A^T = (g_i - gbar)/sqrt(n)`` (``n x d``), one vmapped pass."""
    pe = kernels.per_example_grads(loss, params, data)
    flat = jax.vmap(lambda g: ravel_pytree(g)[0])(pe)            # n x d
    n = flat.shape[0]
    gbar = jnp.mean(flat, axis=0)
    return gbar, (flat - gbar) / jnp.sqrt(n)


def minibatch_noise(key: jax.Array, loss: Callable, params: Any, data: Any,
                    batch_size: int, replace: bool = True) -> Any:
    """One draw of ``Sigma_B^(1/2) xi`` (Gaussian, covariance of a ``batch_size``
    minibatch gradient) as a pytree like ``params``; ``O(n d)``."""
    n = check_per_example_loss(loss, params, data)
    _, at = gradient_and_noise_factor(loss, params, data)
    xi = jax.random.normal(key, (n,), at.dtype)
    c = covariance_scale(n, batch_size, replace)
    return ravel_pytree(params)[1](jnp.sqrt(c) * (xi @ at))


def noise_trace(loss: Callable, params: Any, data: Any, batch_size: int,
                replace: bool = True) -> jax.Array:
    """``tr Sigma_B = c tr Sigma_1`` (centred two-pass, :func:`kernels.
    gradient_noise_covariance_trace`)."""
    n = check_per_example_loss(loss, params, data)
    return covariance_scale(n, batch_size, replace) * kernels.gradient_noise_covariance_trace(
        loss, params, data)

"""Per-example gradients and the trace of the gradient-noise covariance.

A batch is any pytree whose leaves share a leading axis of length ``n``;
example ``i`` is the pytree of ``leaf[i]``.  The loss has the signature
``loss(params, example) -> scalar``.

* ``per_example_grads``: ``g_i = grad_theta loss(theta, x_i)`` for all ``i``
  via ``jax.vmap(jax.grad(loss), in_axes=(None, 0))``; every leaf gains a
  leading axis ``n`` (memory ``n x d``).
* ``gradient_noise_covariance_trace``: with ``gbar = (1/n) sum_i g_i`` and

      Sigma = 1/(n - ddof) sum_i (g_i - gbar)(g_i - gbar)^T,

  returns ``tr Sigma = 1/(n - ddof) sum_i ||g_i - gbar||^2`` without forming
  ``Sigma``.  ``ddof=0`` (default) is the covariance over the batch taken as
  the whole population, as for SGD sampling from a finite data set of size
  ``n`` (the mini-batch-``B`` SGD noise covariance is then about
  ``Sigma / B``); ``ddof=1`` is the unbiased estimate when the batch is a
  sample from a larger population.  It is a two-pass, centred computation
  (``gbar`` first, from one vectorised gradient of the mean loss), so it does
  not suffer the cancellation of ``E||g||^2 - ||gbar||^2``; ``batch_size``
  bounds memory by processing examples in chunks with ``jax.lax.map``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from kernels.tree_util import PyTree, check_float_params, tree_norm, tree_sub

__all__ = ["batch_size_of", "gradient_noise_covariance_trace", "per_example_grads"]

ExampleLoss = Callable[[PyTree, PyTree], jax.Array]


def batch_size_of(batch: PyTree) -> int:
    """Common leading-axis length ``n`` of the batch leaves (``ValueError`` if they differ)."""
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) > 0 else None for x in jax.tree.leaves(batch)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"batch leaves must share a leading axis; got leading sizes {sizes}")
    return sizes.pop()


def per_example_grads(loss: ExampleLoss, params: PyTree, batch: PyTree) -> PyTree:
    """``g_i = grad_theta loss(theta, x_i)`` stacked along a new leading axis of every leaf."""
    batch_size_of(batch)
    check_float_params(params)
    return jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)


def gradient_noise_covariance_trace(
    loss: ExampleLoss,
    params: PyTree,
    batch: PyTree,
    ddof: int = 0,
    batch_size: int | None = None,
) -> jax.Array:
    """``tr Sigma = 1/(n - ddof) sum_i ||g_i - gbar||^2`` (see module docstring)."""
    n = batch_size_of(batch)
    if n - ddof <= 0:
        raise ValueError(f"need more than ddof={ddof} examples, got n={n}")
    check_float_params(params)

    def mean_loss(p: PyTree) -> jax.Array:
        return jnp.mean(jax.vmap(loss, in_axes=(None, 0))(p, batch))

    gbar = jax.grad(mean_loss)(params)

    def sq_dev(example: PyTree) -> jax.Array:
        return tree_norm(tree_sub(jax.grad(loss)(params, example), gbar)) ** 2

    if batch_size is None:
        devs = jax.vmap(sq_dev)(batch)
    else:
        devs = jax.lax.map(sq_dev, batch, batch_size=batch_size)
    return jnp.sum(devs) / (n - ddof)

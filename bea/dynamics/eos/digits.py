"""Cohen et al.'s setting at small scale: a tanh MLP with MSE on scikit-learn's digits.

scikit-learn's ``load_digits`` is bundled with the package (1,797 8x8 images, no
download).  Inputs are standardised per pixel; targets are one-hot vectors, and the loss
is the mean over examples of ``(1/2) |f(x) - y|^2`` (Cohen et al., ICLR 2021, train with
MSE on one-hot targets).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["accuracy", "digits_data", "mse_loss", "tanh_mlp"]


def digits_data(n: int = 1000, *, dtype: Any = jnp.float32, seed: int = 0
                ) -> tuple[jax.Array, jax.Array]:
    """The first ``n`` examples (after a fixed shuffle) as ``(x, one_hot_y)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover
        raise ImportError("the digits experiment needs scikit-learn: pip install "
                          "scikit-learn") from None
    ds = load_digits()
    if not 1 <= n <= len(ds.target):
        raise ValueError(f"n must be in 1..{len(ds.target)}, got {n}")
    idx = np.random.default_rng(seed).permutation(len(ds.target))[:n]
    x = ds.data[idx].astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    y = np.eye(10)[ds.target[idx]]
    return jnp.asarray(x, dtype), jnp.asarray(y, dtype)


def tanh_mlp(width: int = 32, depth: int = 2, *, key: jax.Array | None = None,
             dtype: Any = jnp.float32) -> eqx.nn.MLP:
    """``64 -> width (x depth, tanh) -> 10``, equinox default init."""
    key = jax.random.PRNGKey(0) if key is None else key
    m = eqx.nn.MLP(64, 10, width, depth, activation=jnp.tanh, key=key)
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, m)


def mse_loss(model: eqx.nn.MLP, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    x, y = batch
    return 0.5 * jnp.mean(jnp.sum((jax.vmap(model)(x) - y) ** 2, axis=-1))


def accuracy(model: eqx.nn.MLP, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    x, y = batch
    return jnp.mean(jnp.argmax(jax.vmap(model)(x), -1) == jnp.argmax(y, -1))

"""A small scale-invariant MLP on scikit-learn's digits (bundled with scikit-learn).

``x (64) -> W1 -> LayerNorm -> relu -> W2 -> LayerNorm -> relu -> R (fixed) -> 10``.
LayerNorm has no affine part, so the loss is invariant under ``W1 -> a W1`` and
``W2 -> b W2`` (``a, b > 0``): ``<W_j, grad_{W_j} L> = 0`` for every example, which the
equilibrium identities of :mod:`.equilibrium` need.  The readout ``R`` is a fixed random
matrix (not trained; a trained readout would not be scale-invariant).  LayerNorm acts per
example, so the loss has the per-example structure the SDE needs (BatchNorm would not).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DigitsMLP", "load_digits_data"]


def load_digits_data(seed: int = 0, test_fraction: float = 0.3, dtype=jnp.float32):
    """``((x_train, y_train), (x_test, y_test))``: pixels scaled to [0, 1], centred; a
    seeded split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits experiment needs scikit-learn: pip install "
                          "scikit-learn") from e
    d = load_digits()
    x = (d.data / 16.0).astype(np.float64)
    x = x - x.mean(axis=0)
    y = d.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(y))
    nt = int(round(len(y) * test_fraction))
    te, tr = perm[:nt], perm[nt:]
    as_j = lambda a: jnp.asarray(a, dtype)
    return (as_j(x[tr]), jnp.asarray(y[tr])), (as_j(x[te]), jnp.asarray(y[te]))


def _layer_norm(z: jax.Array) -> jax.Array:
    z = z - jnp.mean(z, axis=-1, keepdims=True)
    # eps far below the activations' scale keeps the scale invariance exact in practice
    return z / jnp.sqrt(jnp.mean(z ** 2, axis=-1, keepdims=True) + 1e-20)


@dataclass(frozen=True)
class DigitsMLP:
    width: int = 32
    seed: int = 0
    readout_scale: float = 3.0

    def init(self, dtype=jnp.float32) -> dict[str, jax.Array]:
        k1, k2 = jax.random.split(jax.random.PRNGKey(self.seed))
        w = self.width
        return {"w1": jax.random.normal(k1, (64, w), dtype) / 8.0,
                "w2": jax.random.normal(k2, (w, w), dtype) / jnp.sqrt(w).astype(dtype)}

    def readout(self, dtype=jnp.float32) -> jax.Array:
        r = jax.random.normal(jax.random.PRNGKey(10_000 + self.seed), (self.width, 10), dtype)
        return self.readout_scale * r / jnp.sqrt(self.width).astype(dtype)

    def logits(self, params: dict, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(_layer_norm(x @ params["w1"]))
        h = jax.nn.relu(_layer_norm(h @ params["w2"]))
        return h @ self.readout(x.dtype)

    def example_loss(self):
        """``loss(params, (x, y)) -> scalar``: cross-entropy of one example."""
        def loss(params, example):
            x, y = example
            z = self.logits(params, x)
            return jax.nn.logsumexp(z) - z[y]
        return loss

    def accuracy(self, params: dict, data) -> jax.Array:
        x, y = data
        return jnp.mean(jnp.argmax(self.logits(params, x), axis=-1) == y)

    def mean_loss(self, params: dict, data) -> jax.Array:
        x, y = data
        z = self.logits(params, x)
        return jnp.mean(jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(
            z, y[:, None], axis=-1)[:, 0])

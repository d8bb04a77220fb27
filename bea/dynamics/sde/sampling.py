"""Seeded, reproducible minibatch samplers (with and without replacement).

A sampler is a pure function of ``(seed, step)``: the same seed gives the same batches in
any order of evaluation, inside ``jax.jit``/``lax.scan``/``vmap`` (the step is folded into
the key), so a resumed or re-run experiment sees exactly the same batches.

* ``replace=True``: each batch is ``B`` indices drawn i.i.d. uniformly from ``0..n-1``.
  The minibatch-gradient covariance is ``Sigma_1 / B`` with ``Sigma_1`` the per-example
  covariance over the data set.
* ``replace=False``: epochs of a fresh random permutation, cut into ``n // B`` batches
  (the rest of the permutation is dropped).  Each batch is then a uniform random
  ``B``-subset, whose gradient covariance is the finite-population
  ``Sigma_1 (n - B) / ((n - 1) B)``; batches within one epoch are (weakly, negatively)
  correlated, which the SDE does not model.

:meth:`BatchSampler.pair` gives SVAG's two *independent* batches: two independent streams
(keys folded with 0 and 1), so ``gamma_1`` and ``gamma_2`` are independent of each other.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["BatchSampler", "BatchSizeError", "check_same_batch_size", "covariance_scale",
           "take"]


class BatchSizeError(ValueError):
    """Minibatches of different sizes, or a batch size that the data cannot provide."""


def covariance_scale(n: int, batch_size: int, replace: bool) -> float:
    """``c`` with ``Cov(minibatch gradient) = c * Sigma_1`` (``Sigma_1``: per-example
    covariance over the ``n`` examples, normalised by ``n``): ``1/B`` with replacement,
    ``(n - B)/((n - 1) B)`` without (derived: variance of a simple random sample mean)."""
    if replace:
        return 1.0 / batch_size
    if n == 1:
        return 0.0
    return (n - batch_size) / ((n - 1) * batch_size)


class BatchSampler(NamedTuple):
    """Indices of minibatch ``step``: ``BatchSampler(n, batch_size, replace, seed)``."""

    n: int
    batch_size: int
    replace: bool = True
    seed: int = 0

    def check(self) -> BatchSampler:
        for name in ("n", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BatchSizeError(f"BatchSampler: {name} must be a positive integer, "
                                     f"got {v!r}")
        if not self.replace and self.batch_size > self.n:
            raise BatchSizeError(f"BatchSampler: batch_size {self.batch_size} > n = {self.n} "
                                 f"examples cannot be drawn without replacement; use "
                                 f"replace=True or a smaller batch")
        return self

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    @property
    def covariance_scale(self) -> float:
        return covariance_scale(self.n, self.batch_size, self.replace)

    def _indices(self, key: jax.Array, step: jax.Array) -> jax.Array:
        n, b = self.n, self.batch_size
        if self.replace:
            return jax.random.randint(jax.random.fold_in(key, step), (b,), 0, n)
        nb = self.batches_per_epoch
        epoch, pos = step // nb, step % nb
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        return jax.lax.dynamic_slice(perm, (pos * b,), (b,))

    def key(self, run: int | jax.Array = 0) -> jax.Array:
        """The stream of run ``run`` (ensembles: one run per member)."""
        return jax.random.fold_in(jax.random.PRNGKey(self.seed), run)

    def indices(self, step: int | jax.Array, run: int | jax.Array = 0) -> jax.Array:
        """The ``batch_size`` indices of batch ``step`` of run ``run``."""
        self.check()
        return self._indices(jax.random.fold_in(self.key(run), 0), jnp.asarray(step))

    def pair(self, step: int | jax.Array, run: int | jax.Array = 0
             ) -> tuple[jax.Array, jax.Array]:
        """Two independent batches for SVAG step ``step`` (the first is :meth:`indices`)."""
        self.check()
        k = self.key(run)
        step = jnp.asarray(step)
        return (self._indices(jax.random.fold_in(k, 0), step),
                self._indices(jax.random.fold_in(k, 1), step))


def take(data: Any, idx: jax.Array) -> Any:
    """The examples ``idx`` of every leaf of ``data`` (leading axis = examples)."""
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)


def _leading(batch: Any) -> int:
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(batch)}
    if len(sizes) != 1 or None in sizes:
        raise BatchSizeError(f"a batch's leaves must share one leading (example) axis; got "
                             f"leading sizes {sorted(map(str, sizes))}")
    return sizes.pop()


def check_same_batch_size(batch1: Any, batch2: Any) -> int:
    """``B`` if both batches hold ``B`` examples, else :class:`BatchSizeError`: SVAG's
    covariance ``l Sigma`` needs both gradients to have the same covariance."""
    b1, b2 = _leading(batch1), _leading(batch2)
    if b1 != b2:
        raise BatchSizeError(f"SVAG needs two minibatches of the same size, got {b1} and "
                             f"{b2} examples; draw both with one BatchSampler.pair")
    return b1

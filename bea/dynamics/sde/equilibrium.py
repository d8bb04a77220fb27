r"""Equilibrium statistics and the necessary condition for the SDE / linear scaling rule.

For a scale-invariant net (normalisation layers: ``L(c x) = L(x)`` for ``c > 0``, so
``<x, grad L_gamma(x)> = 0`` for every minibatch) trained with weight decay ``lambda``,
SGD ``x <- (1 - eta lambda) x - eta g_gamma`` gives *exactly*

    |x_{k+1}|^2 = (1 - eta lambda)^2 |x_k|^2 + eta^2 |g_gamma|^2,
    E|g_gamma|^2 = |grad L|^2 + tr Sigma_B,

so at equilibrium ``lambda (2 - eta lambda) E|x|^2 = eta (G + N)`` with ``G = E|grad L|^2``
and ``N = E tr Sigma_B``.  The SDE's Ito formula gives instead ``2 lambda E|X|^2 = eta N``:
the SDE has no ``G`` term.  With ``G`` and ``N`` scaling as ``1/|x|^2`` (scale invariance),
SGD's equilibrium ``|x|^2`` exceeds the SDE's by ``sqrt((1 + G/N) / (1 - eta lambda/2))``.
Asking the two to be ``C``-close (ratio ``<= C``) gives the necessary condition

    NSR = N / G  >=  1 / (C^2 - 1)        (C = sqrt 2: NSR >= 1; eta lambda << 1),

derived here from the two equilibrium identities (``dynamics.md`` recalls the paper's
condition from reading notes as ``eta <= (N/G)(C^2 - 1)``; the identities above were not
matched line by line against the paper's statement, which the stored copies do not show).
The linear scaling rule runs batch ``k B`` at rate ``k eta``: the SDE is unchanged but
``N_{kB} = N_B / k`` (with replacement), so the condition becomes ``k <= (C^2 - 1) N_B / G``:
the rule breaks once ``k`` exceeds that, and the predicted norm ratio is
``sqrt((1 + k G/N_B) / (1 - k eta lambda / 2))``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import kernels

from .noise import check_per_example_loss
from .sampling import covariance_scale
from .simulate import batch_loss

__all__ = ["EquilibriumStats", "LSRCondition", "equilibrium_statistics", "lsr_condition"]


class EquilibriumStats(NamedTuple):
    """Averages over the equilibrium iterates: ``sq_norm = E|x|^2``, ``grad_sq = G =
    E|grad L|^2`` (full data, weight decay excluded), ``trace_sigma = N = E tr Sigma_B``,
    ``nsr = N / G``."""

    sq_norm: float
    grad_sq: float
    trace_sigma: float

    @property
    def nsr(self) -> float:
        return self.trace_sigma / self.grad_sq if self.grad_sq > 0 else math.inf


def equilibrium_statistics(loss: Callable, snapshots: Any, data: Any, batch_size: int,
                           replace: bool = True) -> EquilibriumStats:
    """:class:`EquilibriumStats` over ``snapshots`` (params stacked on a leading axis,
    e.g. the recorded iterates after burn-in); ``O(n d)`` per snapshot, one at a time."""
    first = jax.tree.map(lambda a: a[0], snapshots)
    check_per_example_loss(loss, first, data)
    n = jax.tree.leaves(data)[0].shape[0]
    sq, g2, tr1 = map(float, _per_snapshot(loss)(snapshots, data))
    return EquilibriumStats(sq, g2, covariance_scale(n, batch_size, replace) * tr1)


@functools.lru_cache(maxsize=16)
def _per_snapshot(loss: Callable) -> Callable:
    """jitted ``(snapshots, data) -> mean over snapshots of (|x|^2, |grad L|^2,
    tr Sigma_1)``; cached on ``loss`` (the batch size enters only as the scale of
    ``tr Sigma_1``, so every batch size of a sweep reuses one compilation)."""

    def one(p, data):
        g = jax.grad(batch_loss, argnums=1)(loss, p, data)
        return jnp.stack([jnp.sum(ravel_pytree(p)[0] ** 2), jnp.sum(ravel_pytree(g)[0] ** 2),
                          kernels.gradient_noise_covariance_trace(loss, p, data)])

    return jax.jit(lambda snaps, data: jax.lax.map(lambda p: one(p, data), snaps).mean(0))


class LSRCondition(NamedTuple):
    """``nsr`` at the base batch, the ``bound = 1/(C^2 - 1)``, ``k_max = (C^2-1) nsr``
    (largest LSR factor the condition allows) and whether factor ``k`` passes."""

    nsr: float
    bound: float
    k_max: float
    k: float
    holds: bool
    predicted_norm_ratio: float


def lsr_condition(stats: EquilibriumStats, k: float = 1.0, *, closeness: float = math.sqrt(2),
                  learning_rate: float = 0.0, weight_decay: float = 0.0) -> LSRCondition:
    """The necessary condition for SGD at LSR factor ``k`` (batch ``k B``, rate ``k eta``)
    to stay ``closeness``-close to the SDE, from statistics measured at the base batch
    ``B`` (with-replacement scaling ``N_{kB} = N_B / k``)."""
    if closeness <= 1:
        raise ValueError(f"closeness C must be > 1, got {closeness}")
    if k < 1:
        raise ValueError(f"the LSR factor k must be >= 1, got {k}")
    bound = 1.0 / (closeness ** 2 - 1.0)
    nsr = stats.nsr
    shrink = 1.0 - k * learning_rate * weight_decay / 2.0
    ratio = math.sqrt((1.0 + k / nsr) / shrink) if shrink > 0 else math.inf
    return LSRCondition(nsr, bound, nsr / bound, float(k), nsr / k >= bound, ratio)

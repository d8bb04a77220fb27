"""Ensembles of seeded runs (vmapped, sharded over devices) and weak-error statistics.

:func:`ensemble` evaluates ``fn(run)`` for ``run = 0..N-1`` as one ``jax.vmap`` under
``jax.jit``; with several devices the run axis is sharded over a 1-D
:class:`jax.sharding.Mesh` (``NamedSharding(mesh, P("runs"))``), so each device computes
its share of the runs and the results stay sharded (``N`` must be a multiple of the device
count).  Each run's randomness is a function of its index only, so the result does not
depend on the number of devices.

Weak errors ``E f(X_svag) - E f(X_ref)`` are Monte Carlo means with normal (CLT)
confidence intervals; :func:`fit_order` fits ``log|e| = a + p log h`` and propagates the
intervals to the slope (delta method: ``var(log|e_i|) ~ (se_i / e_i)^2``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["Estimate", "OrderFit", "ensemble", "fit_order", "mean_ci", "weak_error"]

_Z = {0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}


def ensemble(fn: Callable[[jax.Array], Any], n_runs: int, *,
             devices: Sequence[Any] | None = None) -> Any:
    """``fn(run)`` for ``run = 0..n_runs-1`` vmapped; sharded over ``devices`` (default
    all) along the run axis.  Outputs gain a leading axis ``n_runs``.

    The jitted ``vmap(fn)`` is cached on ``(fn, devices)`` (and jit caches its executable
    per ``n_runs``), so calling again with the same function object compiles nothing;
    pass the same ``fn`` (not a fresh lambda) to reuse it.  Example::

        x = ensemble(lambda r: jax.random.normal(jax.random.PRNGKey(r)), 8)   # shape (8,)
    """
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 1:
        raise ValueError(f"n_runs must be a positive integer, got {n_runs!r}")
    devs = tuple(jax.devices() if devices is None else devices)
    if len(devs) > 1 and n_runs % len(devs):
        raise ValueError(f"{n_runs} runs cannot be split evenly over {len(devs)} devices; "
                         f"use a multiple of {len(devs)} or pass devices=")
    try:
        f, sh = _jitted(fn, devs)
    except TypeError:          # an unhashable callable: compile for this call only
        f, sh = _jitted.__wrapped__(fn, devs)
    runs = jnp.arange(n_runs)
    return f(runs) if sh is None else f(jax.device_put(runs, sh))


@functools.lru_cache(maxsize=64)
def _jitted(fn: Callable, devs: tuple) -> tuple[Callable, NamedSharding | None]:
    """``jit(vmap(fn))``, with the run axis sharded over ``devs`` when there are several.
    Bounded (64 entries): the cache holds ``fn`` and what it closes over."""
    f = jax.vmap(fn)
    if len(devs) == 1:
        return jax.jit(f), None
    sh = NamedSharding(Mesh(np.array(devs), ("runs",)), PartitionSpec("runs"))
    return jax.jit(f, in_shardings=sh, out_shardings=sh), sh


class Estimate(NamedTuple):
    """A Monte Carlo estimate: ``value``, standard error ``se``, CI half-width ``hw``."""

    value: float
    se: float
    hw: float

    @property
    def low(self) -> float:
        return self.value - self.hw

    @property
    def high(self) -> float:
        return self.value + self.hw

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _z(level: float) -> float:
    if level not in _Z:
        raise ValueError(f"level must be one of {sorted(_Z)}, got {level}")
    return _Z[level]


def mean_ci(samples: Any, level: float = 0.95) -> Estimate:
    """Mean of i.i.d. ``samples`` with a normal confidence interval."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError("need at least 2 samples for a confidence interval")
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    return Estimate(float(x.mean()), se, _z(level) * se)


def weak_error(samples: Any, reference: float | Any, level: float = 0.95) -> Estimate:
    """``mean(samples) - reference``: ``reference`` a number (exact, e.g. a closed form)
    or a second array of i.i.d. samples (independent; the standard errors add in
    quadrature)."""
    a = mean_ci(samples, level)
    if np.ndim(reference) == 0:
        return Estimate(a.value - float(reference), a.se, a.hw)
    b = mean_ci(reference, level)
    se = math.hypot(a.se, b.se)
    return Estimate(a.value - b.value, se, _z(level) * se)


class OrderFit(NamedTuple):
    """``|e| ~ C h^order``: ``order`` with CI half-width ``hw``; ``log_c`` intercept."""

    order: float
    hw: float
    log_c: float


def fit_order(h: Sequence[float], errors: Sequence[Estimate], level: float = 0.95
              ) -> OrderFit:
    """Least-squares slope of ``log|e|`` against ``log h`` (``h = 1/l`` for SVAG, ``dt``
    for a scheme); every error's interval must exclude 0 (else the log is meaningless)."""
    h = np.asarray(h, dtype=np.float64)
    if h.size < 2 or h.size != len(errors):
        raise ValueError("need >= 2 step sizes and one error per step size")
    for hi, e in zip(h, errors, strict=True):
        if not e.excludes_zero():
            raise ValueError(f"the error at h={hi:g} is not resolved ({e.value:.3g} +- "
                             f"{e.hw:.3g} contains 0): use more runs")
    x = np.log(h)
    y = np.log(np.abs([e.value for e in errors]))
    var = np.array([(e.se / e.value) ** 2 for e in errors])
    xc = x - x.mean()
    w = xc / np.sum(xc ** 2)
    order = float(w @ y)
    return OrderFit(order, _z(level) * float(np.sqrt(w ** 2 @ var)),
                    float(y.mean() - order * x.mean()))

"""Ensembles of noisy-GD runs: seeded, vmapped, sharded over devices, with confidence bands.

Run ``i`` uses the key ``split(PRNGKey(seed), runs)[i]`` and step ``k`` the key
``fold_in(run_key, k)``, so a run's path does not depend on how runs are batched or on
how many devices share them (tested: 4 forced host devices give the 1-device numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .flow import prepare
from .geometry import FlatProblem

Array = jax.Array


def noisy_gd_step(prob: FlatProblem, w: Array, key: Array, alpha: float, sigma: float) -> Array:
    """``w - alpha grad_w Lhat(w, sigma xi)`` with ``xi`` from the noise model."""
    eta = sigma * prob.sample(key, w)
    return w - alpha * jax.grad(prob.lhat)(w, eta)


def record_steps(steps: int, num_records: int) -> np.ndarray:
    return np.unique(np.linspace(0, steps, num_records).round().astype(int))


def make_run(prob: FlatProblem, w0: Array, alpha: float, sigma: float, rec: np.ndarray):
    """A pure function ``run_key -> (len(rec), d)`` states at the recorded steps."""
    bounds = jnp.asarray(np.stack([rec[:-1], rec[1:]], axis=1))

    def run(key: Array) -> Array:
        def chunk(w: Array, lohi: Array) -> tuple[Array, Array]:
            body = lambda k, x: noisy_gd_step(prob, x, jax.random.fold_in(key, k), alpha, sigma)
            w = jax.lax.fori_loop(lohi[0], lohi[1], body, w)
            return w, w

        _, ws = jax.lax.scan(chunk, w0, bounds)
        return jnp.concatenate([w0[None], ws], axis=0)

    return run


@dataclass(frozen=True)
class Ensemble:
    """Recorded ``steps``; ``mean``/``std`` over runs at each (flat, (R, d)); ``final``
    the end states of all runs (runs, d); ``unravel`` maps a flat vector to a pytree."""

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    final: np.ndarray
    runs: int
    alpha: float
    sigma: float
    unravel: Any

    def times(self, scale: str) -> np.ndarray:
        """Recorded steps in the scale's time (``alpha sigma^2 k`` or ``alpha^2 sigma^2 k``)."""
        per = self.alpha * self.sigma ** 2 if scale == "fast" else self.alpha ** 2 * self.sigma ** 2
        return self.steps * per

    def band(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise normal confidence band for the mean: ``mean +- z se``."""
        z = NormalDist().inv_cdf(0.5 + level / 2)
        half = z * self.std / np.sqrt(self.runs)
        return self.mean - half, self.mean + half

    def half_width(self, level: float = 0.95) -> np.ndarray:
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return z * self.std[-1] / np.sqrt(self.runs)


def _mesh(devices: Any, runs: int) -> Mesh | None:
    devs = list(jax.devices() if devices is None else devices)
    if len(devs) <= 1:
        return None
    if runs % len(devs):
        raise ValueError(f"runs = {runs} must be a multiple of the {len(devs)} devices to shard "
                         "over; pick another runs or pass devices=")
    return Mesh(np.array(devs), ("runs",))


def ensemble(loss_hat: Any, w0: Any, *, alpha: float, sigma: float, steps: int, runs: int = 256,
             seed: int = 0, num_records: int = 21, devices: Any = None, noise_like: Any = None,
             check_manifold: bool = False) -> Ensemble:
    """``runs`` seeded noisy-GD runs of ``steps`` steps from ``w0``, vmapped and sharded
    over ``devices`` (default: all, when more than one), reduced to mean and std at
    ``num_records`` recorded steps.  ``w0`` may be off Gamma unless ``check_manifold``."""
    if not (float(alpha) > 0):
        raise ValueError(f"alpha (the step size) must be positive, got {alpha!r}")
    if not (isinstance(steps, int | np.integer) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    tol = 1e-6 if check_manifold else float("inf")
    prob, w, s = prepare(loss_hat, w0, sigma=sigma, noise_like=noise_like, tol=tol)
    rec = record_steps(int(steps), num_records)
    run = make_run(prob, prob.w0, float(alpha), s, rec)
    keys = jax.random.split(jax.random.PRNGKey(seed), runs)
    mesh = _mesh(devices, runs)
    if mesh is not None:
        keys = jax.device_put(keys, NamedSharding(mesh, P("runs")))

    @jax.jit
    def stats(ks: Array) -> tuple[Array, Array, Array]:
        ws = jax.vmap(run)(ks)                                  # (runs, R, d)
        return jnp.mean(ws, 0), jnp.std(ws, 0, ddof=1), ws[:, -1]

    mean, std, final = stats(keys)
    return Ensemble(rec, np.asarray(mean), np.asarray(std), np.asarray(final), runs,
                    float(alpha), s, prob.unravel)


def ensemble_loop(loss_hat: Any, w0: Any, *, alpha: float, sigma: float, steps: int,
                  runs: int = 256, seed: int = 0, noise_like: Any = None) -> np.ndarray:
    """The same runs one at a time in a Python loop (the benchmark's baseline): end states
    ``(runs, d)``, equal to ``ensemble(...).final``."""
    prob, w, s = prepare(loss_hat, w0, sigma=sigma, noise_like=noise_like, tol=float("inf"))
    run = jax.jit(make_run(prob, prob.w0, float(alpha), s, record_steps(int(steps), 2)))
    keys = jax.random.split(jax.random.PRNGKey(seed), runs)
    return np.stack([np.asarray(run(keys[i])[-1]) for i in range(runs)])

r"""Runners: SVAG / SGD on minibatches, covariance-matched noisy GD, and the SDE of SGD.

* :func:`run_svag` - SVAG(l) (``l = 1``: SGD) with :func:`bea.optax.svag` and a seeded
  :class:`BatchSampler`; one ``lax.scan``; a pure function of the run index, so an
  ensemble is ``vmap`` over run indices (:func:`bea.dynamics.sde.ensemble`).
* :func:`run_noisy_gd` - ``x <- x - eta (grad L + lambda x + Sigma_B^(1/2) xi)``, the
  Gaussian noise built from centred per-example gradients (:mod:`.noise`).
* :class:`SGDSDE` / :func:`simulate_sde` - ``dX = -(grad L + lambda X) dt +
  (eta Sigma_B(X))^(1/2) dW`` integrated with diffrax, ``W`` an ``n``-dimensional Brownian
  motion and the diffusion the ``d x n`` matrix ``sqrt(eta c) A`` of centred per-example
  gradients (``O(n d)``).  Schemes: ``"euler"`` (diffrax ``Euler`` on the SDE terms =
  Euler-Maruyama: weak order 1,
  any noise) and ``"sra1"`` (diffrax ``SRA1``: weak order 2 for *additive* noise,
  i.e. when the centred per-example gradients do not depend on ``x``, as for quadratic
  per-example losses sharing one Hessian; checked at the start).  A weak order-2 scheme
  for state-dependent noise needs the diffusion at ``O(n)`` supporting points per step
  (Kloeden-Platen's explicit order-2.0 weak scheme), ``O(n^2 d)``, and is not offered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ...optax.sde import svag
from .noise import check_per_example_loss, gradient_and_noise_factor
from .sampling import BatchSampler, check_same_batch_size, take

__all__ = ["NotAdditiveNoiseError", "SGDSDE", "batch_loss", "run_noisy_gd", "run_svag",
           "simulate_sde", "svag_gradients"]


class NotAdditiveNoiseError(ValueError):
    """``scheme="sra1"`` asked for an SDE whose noise depends on the state."""


def batch_loss(loss: Callable, params: Any, batch: Any) -> jax.Array:
    """Mean of the per-example ``loss`` over ``batch``."""
    return jnp.mean(jax.vmap(loss, in_axes=(None, 0))(params, batch))


def _grad(loss: Callable, params: Any, batch: Any, weight_decay: float) -> Any:
    g = jax.grad(batch_loss, argnums=1)(loss, params, batch)
    if weight_decay:
        g = jax.tree.map(lambda a, p: a + weight_decay * p, g, params)
    return g


def svag_gradients(loss: Callable, params: Any, batch1: Any, batch2: Any,
                   weight_decay: float = 0.0) -> tuple[Any, Any]:
    """The two minibatch gradients SVAG combines (batches must have the same size)."""
    check_same_batch_size(batch1, batch2)
    return _grad(loss, params, batch1, weight_decay), _grad(loss, params, batch2, weight_decay)


def _scan(step: Callable, x0: Any, steps: int, record_every: int | None,
          record: Callable | None) -> tuple[Any, Any]:
    """``steps`` applications of ``step(x, k)``; ``record(x)`` at ``k = 0, r, 2r, ...``
    (``steps`` a multiple of ``r``); returns ``(x_final, records or None)``."""
    if record is None or record_every is None:
        xf = jax.lax.fori_loop(0, steps, lambda k, x: step(x, k), x0)
        return xf, None
    if steps % record_every:
        raise ValueError(f"steps ({steps}) must be a multiple of record_every "
                         f"({record_every})")

    def chunk(x, c):
        x = jax.lax.fori_loop(c * record_every, (c + 1) * record_every,
                              lambda k, x: step(x, k), x)
        return x, record(x)

    xf, recs = jax.lax.scan(chunk, x0, jnp.arange(steps // record_every))
    first = jax.tree.map(lambda a: a[None], record(x0))
    return xf, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first, recs)


def _check_common(loss, params0, data, batch_size, steps):
    n = check_per_example_loss(loss, params0, data)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    return n


def run_svag(loss: Callable, params0: Any, data: Any, *, learning_rate: float, l: float,
             batch_size: int, steps: int, run: int | jax.Array = 0, seed: int = 0,
             replace: bool = True, weight_decay: float = 0.0,
             record_every: int | None = None, record: Callable | None = None
             ) -> tuple[Any, Any]:
    """``steps`` SVAG(l) steps from ``params0`` on ``data`` (per-example ``loss(params,
    example)``), batches from ``BatchSampler(n, batch_size, replace, seed)`` stream
    ``run``.  Time of the SDE after ``k`` steps: ``k * learning_rate / l``."""
    n = _check_common(loss, params0, data, batch_size, steps)
    sampler = BatchSampler(n, batch_size, replace, seed).check()
    tx = svag(learning_rate, l)
    one = l == 1

    def step(state, k):
        p, s = state
        i1, i2 = sampler.pair(k, run)
        g1 = _grad(loss, p, take(data, i1), weight_decay)
        g2 = None if one else _grad(loss, p, take(data, i2), weight_decay)
        u, s = tx.update(g1, s, p, grad2=g2)
        return jax.tree.map(jnp.add, p, u), s

    rec = None if record is None else (lambda st: record(st[0]))
    (pf, _), recs = _scan(step, (params0, tx.init(params0)), steps, record_every, rec)
    return pf, recs


def run_noisy_gd(loss: Callable, params0: Any, data: Any, *, learning_rate: float,
                 batch_size: int, steps: int, run: int | jax.Array = 0, seed: int = 0,
                 replace: bool = True, weight_decay: float = 0.0,
                 record_every: int | None = None, record: Callable | None = None
                 ) -> tuple[Any, Any]:
    """GD plus Gaussian noise of the minibatch covariance: ``x <- x - eta (grad L +
    lambda x + sqrt(c) A xi)``, ``xi ~ N(0, I_n)`` (full-data gradient, ``O(n d)``)."""
    n = _check_common(loss, params0, data, batch_size, steps)
    sampler = BatchSampler(n, batch_size, replace, seed).check()
    c = sampler.covariance_scale
    _, unravel = ravel_pytree(params0)
    key = jax.random.fold_in(sampler.key(run), 2)

    def step(p, k):
        gbar, at = gradient_and_noise_factor(loss, p, data)
        xi = jax.random.normal(jax.random.fold_in(key, k), (n,), at.dtype)
        flat = ravel_pytree(p)[0]
        g = gbar + weight_decay * flat + jnp.sqrt(c) * (xi @ at)
        return unravel(flat - learning_rate * g)

    return _scan(step, params0, steps, record_every, record)


@dataclass(frozen=True)
class SGDSDE:
    """The SDE of SGD with rate ``learning_rate`` and minibatches of ``batch_size``:
    ``dX = -(grad L + weight_decay X) dt + (eta Sigma_B(X))^(1/2) dW`` (``t = k eta``)."""

    loss: Callable
    data: Any
    learning_rate: float
    batch_size: int
    replace: bool = True
    weight_decay: float = 0.0

    def scale(self, n: int) -> float:
        return BatchSampler(n, self.batch_size, self.replace).check().covariance_scale

    def terms(self, params0: Any, bm: Any) -> tuple[Any, Callable]:
        n = check_per_example_loss(self.loss, params0, self.data)
        _, unravel = ravel_pytree(params0)
        amp = jnp.sqrt(self.learning_rate * self.scale(n))

        def drift(t, y, args):
            g = jax.grad(batch_loss, argnums=1)(self.loss, unravel(y), self.data)
            return -(ravel_pytree(g)[0] + self.weight_decay * y)

        def diffusion(t, y, args):
            _, at = gradient_and_noise_factor(self.loss, unravel(y), self.data)
            return amp * at.T                                          # d x n

        return diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm)
                                 ), diffusion


def simulate_sde(sde: SGDSDE, params0: Any, key: jax.Array, *, t1: float, dt: float,
                 save_ts: Any = None, scheme: str = "euler") -> tuple[jax.Array, Any]:
    """Integrate ``sde`` from ``params0`` to ``t1`` with fixed step ``dt``; returns
    ``(ts, params at ts)`` (``save_ts`` default: ``[t1]``), params stacked on axis 0."""
    # diffrax.Euler on drift + control terms is Euler-Maruyama (Ito)
    schemes = {"euler": diffrax.Euler, "sra1": diffrax.SRA1}
    if scheme not in schemes:
        raise ValueError(f"unknown scheme {scheme!r}: use 'euler' (weak order 1) or 'sra1' "
                         f"(weak order 2, additive noise)")
    if not (dt > 0 and t1 > 0):
        raise ValueError(f"need t1 > 0 and dt > 0, got t1={t1}, dt={dt}")
    n = check_per_example_loss(sde.loss, params0, sde.data)
    y0, unravel = ravel_pytree(params0)
    levy = diffrax.SpaceTimeLevyArea if scheme == "sra1" else diffrax.BrownianIncrement
    bm = diffrax.UnsafeBrownianPath(shape=(n,), key=key, levy_area=levy)
    terms, diffusion = sde.terms(params0, bm)
    if scheme == "sra1":
        _check_additive(diffusion, y0)
        # diffrax's additive-noise solvers require a diffusion that does not depend on y
        # in the traced program: freeze the (verified constant) matrix at y0
        d0 = diffusion(0.0, y0, None)
        terms = diffrax.MultiTerm(terms.terms[0],
                                  diffrax.ControlTerm(lambda t, y, args: d0, bm))
    ts = jnp.asarray([t1] if save_ts is None else save_ts, y0.dtype)
    nsteps = int(round(t1 / dt))
    sol = diffrax.diffeqsolve(terms, schemes[scheme](), 0.0, t1, dt, y0,
                              saveat=diffrax.SaveAt(ts=ts),
                              stepsize_controller=diffrax.ConstantStepSize(),
                              max_steps=nsteps + 2, adjoint=diffrax.ForwardMode())
    return sol.ts, jax.vmap(unravel)(sol.ys)


def _check_additive(diffusion: Callable, y0: jax.Array) -> None:
    try:
        d0 = diffusion(0.0, y0, None)
        d1 = diffusion(0.0, y0 + 0.5 + jnp.abs(y0), None)
        same = bool(jnp.allclose(d0, d1, rtol=1e-6, atol=1e-9))
    except jax.errors.ConcretizationTypeError:
        return      # traced (inside vmap/jit): checked by the caller outside
    if not same:
        raise NotAdditiveNoiseError(
            "scheme='sra1' is weak order 2 only for additive noise, but the centred "
            "per-example gradients of this loss change with the parameters; use "
            "scheme='euler' (weak order 1)")

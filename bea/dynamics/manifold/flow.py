"""``limiting_flow``: the deterministic motion along Gamma on the non-trivial time scale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .geometry import (
    FlatProblem,
    StochasticLimitError,
    check_noise_mean,
    check_on_manifold,
    check_sigma,
    gauss_newton_offset,
    gradient_flow_projection,
    tangent_project,
)
from .noise import as_noisy_loss
from .reg import ScaleVerdict, detect_scale, reg_value, slow_drift

SCALES = ("fast", "slow")


@dataclass(frozen=True)
class LimitingFlow:
    """A trajectory on Gamma: ``ts`` in the scale's time (fast: ``alpha sigma^2 k``, slow:
    ``alpha^2 sigma^2 k``), ``ws`` stacked pytrees (leading axis = time), the verdict."""

    ts: np.ndarray
    ws: Any
    scale: str
    sigma: float
    verdict: ScaleVerdict | None

    def steps(self, alpha: float, t: float | None = None) -> int:
        """Noisy-GD steps of size ``alpha`` that cover time ``t`` (default: the end)."""
        t = float(self.ts[-1]) if t is None else t
        per = alpha * self.sigma ** 2 if self.scale == "fast" else alpha ** 2 * self.sigma ** 2
        return int(round(t / per))

    def __str__(self) -> str:
        return (f"limiting flow on the {self.scale} scale up to t = {self.ts[-1]:g} "
                f"({len(self.ts)} points); {self.verdict or ''}")


def prepare(loss_hat: Any, w0: Any, *, sigma: Any, noise_like: Any = None,
            project: bool = False, tol: float = 1e-6, check_mean: bool = True
            ) -> tuple[FlatProblem, jax.Array, float]:
    """Validate (sigma > 0, zero-mean noise, w0 on Gamma or projected) and flatten."""
    s = check_sigma(sigma)
    nl = as_noisy_loss(loss_hat, noise_like)
    prob = FlatProblem(nl, w0)
    w = prob.w0
    if check_mean:
        check_noise_mean(prob, w)
    if project:
        w = gradient_flow_projection(prob, w)
    check_on_manifold(prob, w, tol=tol)
    return prob, w, s


def velocity(prob: FlatProblem, scale: str, *, reg_method: str = "auto",
             key: jax.Array | None = None, stabilize: float = 1.0):
    """The vector field on the chosen scale, plus ``-stabilize * J^T (J J^T)^{-1} r``, a
    Gauss-Newton pull back onto Gamma that is zero on Gamma (so it leaves the flow there
    unchanged) and stops the integrator's drift off it."""
    key = jax.random.PRNGKey(0) if key is None else key
    if scale == "fast":
        grad_reg = jax.grad(lambda x: reg_value(prob, x, method=reg_method, key=key))
        field = lambda w: -tangent_project(prob, w, grad_reg(w))
    elif scale == "slow":
        field = lambda w: slow_drift(prob, w)
    else:
        raise ValueError(f"scale must be 'fast' or 'slow', got {scale!r}")
    if prob.has_residuals and stabilize:
        return lambda w: field(w) - stabilize * gauss_newton_offset(prob, w)
    return field


def limiting_flow(loss_hat: Any, w0: Any, T: float, *, sigma: float, scale: str = "auto",
                  num_points: int = 101, project: bool = False, noise_like: Any = None,
                  rtol: float = 1e-8, atol: float = 1e-10, reg_method: str = "auto",
                  tol: float = 1e-6) -> LimitingFlow:
    """The limit of noisy GD on the zero-loss manifold from ``w0`` for time ``T`` of the
    non-trivial scale (detected at ``w0`` unless ``scale='fast'|'slow'``).

    Fast: ``dW/dt = -P grad Reg``; slow: the fluctuation drift of :mod:`.reg` (label
    noise: ``-(1/(4n)) P grad tr Hess L``).  Integrated with diffrax (Tsit5, adaptive); the
    tangent projection is matrix-free.  ``w0`` must lie on Gamma (``project=True`` moves it
    there by gradient flow first).  Raises :class:`SigmaError`, :class:`NoiseMeanError`,
    :class:`FarFromManifoldError`, :class:`StochasticLimitError` on bad input.
    """
    prob, w, s = prepare(loss_hat, w0, sigma=sigma, noise_like=noise_like, project=project,
                         tol=tol)
    if not (float(T) > 0):
        raise ValueError(f"T must be a positive time, got {T!r}")
    verdict = detect_scale(prob, w, reg_method=reg_method)
    chosen = verdict.scale if scale == "auto" else scale
    if chosen == "slow-stochastic":
        raise StochasticLimitError(f"{verdict.message} limiting_flow integrates flows only.")
    ts = np.linspace(0.0, float(T), num_points)
    if chosen == "none":                     # trivial on both scales: the point stays put
        ys = jnp.broadcast_to(w, (num_points, w.size))
        return LimitingFlow(ts, jax.vmap(prob.unravel)(ys), "none", s, verdict)
    f = velocity(prob, chosen, reg_method=reg_method)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: f(y)), diffrax.Tsit5(),
                              0.0, float(T), float(T) / 100, w,
                              saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                              max_steps=100_000)
    return LimitingFlow(ts, jax.vmap(prob.unravel)(sol.ys), chosen, s, verdict)


def project_to_manifold(loss_hat: Any, w0: Any, *, noise_like: Any = None) -> Any:
    """``Phi(w0)``: where gradient flow on ``L = Lhat(., 0)`` from ``w0`` ends (see
    :func:`.geometry.gradient_flow_projection`), as a pytree like ``w0``."""
    prob = FlatProblem(as_noisy_loss(loss_hat, noise_like), w0)
    return prob.unravel(gradient_flow_projection(prob, prob.w0))


def scale_of(loss_hat: Any, w0: Any, *, sigma: float, noise_like: Any = None,
             project: bool = False, **kw: Any) -> ScaleVerdict:
    """The time-scale verdict at ``w0`` (validated like :func:`limiting_flow`)."""
    prob, w, _ = prepare(loss_hat, w0, sigma=sigma, noise_like=noise_like, project=project)
    return detect_scale(prob, w, **kw)


def regulariser(loss_hat: Any, w: Any, *, method: str = "auto", key: jax.Array | None = None,
                num_samples: int = 64, noise_like: Any = None) -> jax.Array:
    """``Reg(w) = (1/2) tr(S d^2_eta Lhat(w, 0))``: exact (m HVPs in eta) for noise dimension
    up to 256, Hutchinson otherwise (or as asked)."""
    prob = FlatProblem(as_noisy_loss(loss_hat, noise_like), w)
    return jax.jit(lambda w, k: reg_value(prob, w, method=method, key=k,
                                          num_samples=num_samples))(
        prob.w0, jax.random.PRNGKey(0) if key is None else key)

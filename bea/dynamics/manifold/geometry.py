"""The zero-loss manifold Gamma = {L = 0}: tangent projection, distance, projection onto it.

Everything is matrix-free (no Jacobian, no Hessian is formed).  With residuals ``r``
(``L = |r|^2/(2n)``) the tangent space is the null space of the Jacobian ``J``:

    P_perp v = J^T (J J^T)^{-1} J v,   P v = v - P_perp v,

with ``(J J^T) u = J v`` solved by conjugate gradients (lineax) on the n x n operator
``u -> J (J^T u)`` (one VJP and one JVP per iteration).  Without residuals the normal
space is the range of the Hessian ``H`` of ``L`` at a point of Gamma, and
``P_perp v = H^+ H v`` is the minimum-norm solution of the consistent, singular system
``H x = H v``, which CG started at 0 reaches (its Krylov space lies in range(H)).

Parameters are handled as flat vectors (``jax.flatten_util.ravel_pytree``, O(d)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

Array = jax.Array


class ManifoldError(ValueError):
    """Base class of the lab's input errors."""


class FarFromManifoldError(ManifoldError):
    """The starting point is not on the zero-loss manifold."""


class SigmaError(ManifoldError):
    """The noise scale sigma is not a positive finite number."""


class NoiseMeanError(ManifoldError):
    """The noise model's samples do not have mean zero."""


class StochasticLimitError(ManifoldError):
    """The limit is an SDE on Gamma (tangential noise): no deterministic flow to integrate."""


def _cg(matvec: Callable[[Array], Array], b: Array, rtol: float, max_steps: int) -> Array:
    op = lx.FunctionLinearOperator(matvec, jax.ShapeDtypeStruct(b.shape, b.dtype),
                                   tags=lx.positive_semidefinite_tag)
    sol = lx.linear_solve(op, b, solver=lx.CG(rtol=rtol, atol=rtol * 1e-3, max_steps=max_steps),
                          throw=False)
    return sol.value


class FlatProblem:
    """A noisy loss on flat parameter vectors: ``loss(w)``, ``residuals(w)``, ``lhat(w, eta)``
    with ``eta`` flat too, and the pytree <-> vector maps."""

    def __init__(self, nl: Any, w0: Any) -> None:
        from jax.flatten_util import ravel_pytree

        self.nl = nl
        self.w0, self.unravel = ravel_pytree(w0)
        eta0 = nl.noise_like(w0)
        self.eta0, self.unravel_eta = ravel_pytree(eta0)
        self.d = self.w0.size
        self.m = self.eta0.size
        self.has_residuals = nl.residuals is not None

    def lhat(self, w: Array, eta: Array) -> Array:
        return self.nl.fn(self.unravel(w), self.unravel_eta(eta))

    def loss(self, w: Array) -> Array:
        return self.lhat(w, jnp.zeros_like(self.eta0))

    def residuals(self, w: Array) -> Array:
        return jnp.ravel(self.nl.residuals(self.unravel(w)))

    def sample(self, key: Array, w: Array) -> Array:
        from jax.flatten_util import ravel_pytree

        return ravel_pytree(self.nl.sample(key, self.unravel(w)))[0]

    def cov(self, v: Array) -> Array:
        if self.nl.cov is None:
            return v
        from jax.flatten_util import ravel_pytree

        return ravel_pytree(self.nl.cov(self.unravel_eta(v)))[0]


def normal_component(prob: FlatProblem, w: Array, v: Array, *, rtol: float = 1e-12,
                     max_steps: int = 500) -> Array:
    """``P_perp v``: the part of ``v`` normal to Gamma at ``w`` (matrix-free, see module)."""
    if prob.has_residuals:
        r, vjp = jax.vjp(prob.residuals, w)
        jv = jax.jvp(prob.residuals, (w,), (v,))[1]
        jjt = lambda u: jax.jvp(prob.residuals, (w,), (vjp(u)[0],))[1]
        u = _cg(jjt, jv, rtol, max_steps)
        return vjp(u)[0]
    g = jax.grad(prob.loss)
    h = lambda x: jax.jvp(g, (w,), (x,))[1]
    return _cg(h, h(v), rtol, max_steps)


def tangent_project(prob: FlatProblem, w: Array, v: Array, **kw: Any) -> Array:
    """``P v``: the projection of ``v`` onto the tangent space of Gamma at ``w``."""
    return v - normal_component(prob, w, v, **kw)


def gauss_newton_offset(prob: FlatProblem, w: Array) -> Array:
    """``J^T (J J^T)^{-1} r``: the shortest step that zeroes the linearised residuals; its
    length is the distance to Gamma to first order."""
    r, vjp = jax.vjp(prob.residuals, w)
    jjt = lambda u: jax.jvp(prob.residuals, (w,), (vjp(u)[0],))[1]
    return vjp(_cg(jjt, r, 1e-12, 500))[0]


def _gradient_flow_projection(prob: FlatProblem, w: Array, *, gtol: float = 1e-10,
                             t_max: float = 1e6, max_steps: int = 100_000) -> Array:
    """``Phi(w)``: the end point of gradient flow dw/dt = -grad L(w) (diffrax, Tsit5,
    adaptive, stopped at a steady state), then Gauss-Newton polish steps if residuals are
    known (they move the point by O(|r|), far below the flow's own tolerance)."""
    term = diffrax.ODETerm(lambda t, y, args: -jax.grad(prob.loss)(y))
    event = diffrax.Event(diffrax.steady_state_event(rtol=0.0, atol=gtol))
    sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, t_max, 1e-3, w, event=event,
                              stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
                              max_steps=max_steps, throw=False)
    y = sol.ys[-1]
    if prob.has_residuals:
        for _ in range(3):
            y = y - gauss_newton_offset(prob, y)
    return y


def gradient_flow_projection(prob: FlatProblem, w: Array, **kw: Any) -> Array:
    """Jitted :func:`_gradient_flow_projection` (same arguments)."""
    return jax.jit(lambda x: _gradient_flow_projection(prob, x, **kw))(w)


def distance_to_manifold(prob: FlatProblem, w: Array) -> float:
    """Distance from ``w`` to Gamma: the Gauss-Newton step length with residuals (first
    order), otherwise ``|Phi(w) - w|`` (the gradient-flow projection)."""
    if prob.has_residuals:
        return float(jax.jit(lambda x: jnp.linalg.norm(gauss_newton_offset(prob, x)))(w))
    return float(jnp.linalg.norm(gradient_flow_projection(prob, w) - w))


def check_on_manifold(prob: FlatProblem, w: Array, *, tol: float) -> None:
    """Raise :class:`FarFromManifoldError` (with the distance) if ``w`` is off Gamma."""
    dist = distance_to_manifold(prob, w)
    scale = max(1.0, float(jnp.linalg.norm(w)))
    if not dist <= tol * scale:  # also catches nan
        loss = float(prob.loss(w))
        raise FarFromManifoldError(
            f"the starting point is off the zero-loss manifold: L(w0) = {loss:.3g}, distance "
            f"to the manifold ~ {dist:.3g} (tolerance {tol * scale:.3g}). The limit lives on "
            "the manifold: project first with w0 = bea.dynamics.manifold.project_to_manifold("
            "loss_hat, w0) (gradient flow), or pass project=True.")


def check_sigma(sigma: Any) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise SigmaError(f"sigma must be a positive number, got {sigma!r}") from None
    if not (s > 0 and s < float("inf")):
        raise SigmaError(f"sigma must be a positive finite number (the noise's standard "
                         f"deviation per component), got {sigma!r}")
    return s


def check_noise_mean(prob: FlatProblem, w: Array, *, num_samples: int = 4096,
                     seed: int = 12345, z: float = 6.0) -> None:
    """Raise :class:`NoiseMeanError` if the sampler's mean is not zero: a z-test per
    component on ``num_samples`` draws (``|mean| > z * se`` with z = 6 is a false alarm
    with probability < 1e-8 per component for a zero-mean noise)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num_samples)
    xs = jax.jit(jax.vmap(lambda k: prob.sample(k, w)))(keys)
    if xs.shape[1:] != prob.eta0.shape:
        raise ManifoldError(f"the noise sampler returns shape {xs.shape[1:]}, but loss_hat's "
                            f"noise has shape {prob.eta0.shape}")
    xs = np.asarray(xs)
    mean = xs.mean(axis=0)
    se = xs.std(axis=0) / num_samples ** 0.5
    bad = np.abs(mean) > z * se + 1e-12
    if bad.any():
        i = int(np.argmax(np.abs(mean) / (se + 1e-300)))
        raise NoiseMeanError(
            f"the noise model has non-zero mean: component {i} averages {float(mean[i]):.4g} "
            f"(+- {float(se[i]):.2g}) over {num_samples} draws. The theory needs E eta = 0: "
            "centre the sampler (subtract its mean) and move the mean into the loss.")

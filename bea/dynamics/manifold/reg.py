"""The regulariser, the slow-scale drift and the time-scale detector.

**Fast scale** (Shalova, Schlichting, Peletier 2024, non-degenerate case; checked against
their abstract): averaging the step over eta, ``E grad_w Lhat(w, sigma xi) = grad L(w) +
sigma^2 grad Reg(w) + O(sigma^4)`` with

    Reg(w) = (1/2) tr(S d^2_eta Lhat(w, 0))   (= (1/2) Lap_eta Lhat for S = I),

so on ``t = alpha sigma^2 k`` the iterates follow dW/dt = -P grad Reg(W) on Gamma.

**Slow scale** (degenerate case: P grad Reg = 0 on Gamma).  Derived here (a second-order
expansion of the noisy step; it agrees with Li, Wang, Arora, ICLR 2022, Thm. for
``(1/2) d^2 Phi[Sigma]``): the noise term ``-alpha sigma B xi``, ``B = d_eta grad_w Lhat(w,0)``,
keeps the iterate a distance ~ sqrt(alpha) sigma off Gamma with stationary covariance
``alpha sigma^2 C``, ``H C + C H = P_perp B S B^T P_perp`` (discrete Lyapunov equation to
leading order in alpha); the mean gradient at the displaced point has the tangential part
``(1/2) P d^3 L[C]``.  So on ``t = alpha^2 sigma^2 k``

    dX/dt = -(1/2) P grad_w' tr(H(w') C) |_{w'=X},   C fixed.

For ``L = |r|^2/(2n)`` on Gamma ``H = J^T J / n`` and we solve the Lyapunov equation in
residual coordinates, ``C = J^T X J`` with ``A X + X A = n A^{-1} M A^{-1}``,
``A = J J^T`` and ``M = (J B) S (J B)^T`` (n x n matrices: O(n d) memory for the n
vectors ``J^T e_i``; meant for small n).  Label noise: ``J B = -A/n`` gives ``C = P_perp/(2n)``
and ``dX/dt = -(1/(4n)) P grad tr H``, i.e. ``-(1/4) P grad tr H`` for one example as in
``shared/dynamics.md`` (whose sigma^2 goes into our time).  Two caveats of the expansion:
tangential noise ``P B != 0`` adds a diffusion (the limit is an SDE, see
:class:`StochasticLimitError`), and where ``grad Reg`` has a normal part off Gamma (all but
label noise) terms of relative size ``sigma^2/alpha`` remain, so the slow limit needs
``sigma^2 << alpha`` there.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .geometry import FlatProblem, tangent_project

Array = jax.Array

EXACT_MAX = 256  # noise dimensions up to which Reg is computed exactly (m HVPs)


def _eta_hvp(prob: FlatProblem, w: Array, v: Array) -> Array:
    g = jax.grad(lambda e: prob.lhat(w, e))
    return jax.jvp(g, (jnp.zeros_like(prob.eta0),), (v,))[1]


def reg_exact(prob: FlatProblem, w: Array) -> Array:
    """``(1/2) tr(S d^2_eta Lhat(w, 0))`` from m Hessian-vector products in eta."""
    basis = jnp.eye(prob.m, dtype=prob.eta0.dtype)
    cols = jax.vmap(lambda e: _eta_hvp(prob, w, e))(basis)      # rows A e_j (A symmetric)
    scols = jax.vmap(prob.cov)(basis)                            # rows S e_j
    return 0.5 * jnp.sum(cols * scols)


def reg_hutchinson(prob: FlatProblem, w: Array, key: Array, num_samples: int = 64) -> Array:
    """Hutchinson estimate of Reg: ``(1/2) mean_s z_s^T A z_s`` with Rademacher probes for
    ``S = I`` (the estimator of ``kernels.hutchinson_samples``, applied in eta) and probes
    drawn from the noise itself otherwise (then ``E z z^T = S``, so still unbiased)."""
    keys = jax.random.split(key, num_samples)
    if prob.nl.cov is None:
        probe = lambda k: jax.random.rademacher(k, prob.eta0.shape, prob.eta0.dtype)
    else:
        probe = lambda k: prob.sample(k, w)

    def one(k: Array) -> Array:
        z = probe(k)
        return jnp.vdot(z, _eta_hvp(prob, w, z))

    return 0.5 * jnp.mean(jax.vmap(one)(keys))


def reg_value(prob: FlatProblem, w: Array, *, method: str = "auto", key: Array | None = None,
              num_samples: int = 64) -> Array:
    if method == "auto":
        method = "exact" if prob.m <= EXACT_MAX else "hutchinson"
    if method == "exact":
        return reg_exact(prob, w)
    if method == "hutchinson":
        key = jax.random.PRNGKey(0) if key is None else key
        return reg_hutchinson(prob, w, key, num_samples)
    raise ValueError(f"method must be 'auto', 'exact' or 'hutchinson', got {method!r}")


def noise_map(prob: FlatProblem, w: Array, xi: Array) -> Array:
    """``B xi = d_eta grad_w Lhat(w, 0)[xi]``: the first-order noise in the step."""
    g = lambda e: jax.grad(prob.lhat)(w, e)
    return jax.jvp(g, (jnp.zeros_like(prob.eta0),), (xi,))[1]


def slow_drift(prob: FlatProblem, w: Array) -> Array:
    """The slow-scale velocity ``-(1/2) P grad tr(H C)`` at ``w`` on Gamma (module doc)."""
    if not prob.has_residuals:
        raise ValueError("the slow-scale drift needs the residuals r(w) (L = |r|^2/(2n)); build "
                         "loss_hat with a noise model that takes residuals")
    r, vjp = jax.vjp(prob.residuals, w)
    n = r.size
    eye = jnp.eye(n, dtype=r.dtype)
    us = jax.vmap(lambda e: vjp(e)[0])(eye)                     # rows J^T e_i, (n, d)
    a = us @ us.T                                                # J J^T

    def bt(u: Array) -> Array:                                   # B^T u = d_eta <grad_w Lhat, u>
        f = lambda e: jax.jvp(lambda x: prob.lhat(x, e), (w,), (u,))[1]
        return jax.grad(f)(jnp.zeros_like(prob.eta0))

    q = jax.vmap(bt)(us)                                         # (n, m) = J B
    m_mat = q @ jax.vmap(prob.cov)(q).T                          # J B S B^T J^T
    lam, v = jnp.linalg.eigh(a)
    ainv = (v / lam) @ v.T
    rhs = v.T @ (n * ainv @ m_mat @ ainv) @ v
    x = v @ (rhs / (lam[:, None] + lam[None, :])) @ v.T

    def g(wp: Array) -> Array:
        k = jax.vmap(lambda u: jax.jvp(prob.residuals, (wp,), (u,))[1])(us).T   # J(w') J^T
        return jnp.trace(k @ x @ k.T) / n

    return -0.5 * tangent_project(prob, w, jax.grad(g)(w))


@dataclass(frozen=True)
class ScaleVerdict:
    """Which time scale carries the motion along Gamma at a point, and why (in words)."""

    scale: str               # "fast", "slow", "slow-stochastic" or "none"
    reg: float               # Reg(w)
    reg_tangent: float       # |P grad Reg(w)|
    reg_grad: float          # |grad Reg(w)|
    noise_normal: float      # rms |P_perp B xi|
    noise_tangent: float     # rms |P B xi|
    slow_speed: float | None  # |slow drift| where computed
    message: str

    def __str__(self) -> str:
        return self.message


def detect_scale(prob: FlatProblem, w: Array, *, key: Array | None = None, rtol: float = 1e-6,
                 atol: float = 1e-10, num_probes: int = 8, reg_method: str = "auto"
                 ) -> ScaleVerdict:
    """Decide at ``w`` (on Gamma) whether the motion along Gamma is on the fast scale
    ``1/(alpha sigma^2)``, the slow scale ``1/(alpha^2 sigma^2)``, or neither."""
    key = jax.random.PRNGKey(0) if key is None else key

    @jax.jit
    def numbers(w: Array, key: Array) -> tuple[Array, ...]:
        reg_fn = lambda x: reg_value(prob, x, method=reg_method, key=key)
        reg, grad = jax.value_and_grad(reg_fn)(w)
        gt = tangent_project(prob, w, grad)
        xis = jax.vmap(lambda k: prob.sample(k, w))(jax.random.split(key, num_probes))
        bx = jax.vmap(lambda x: noise_map(prob, w, x))(xis)
        pbx = jax.vmap(lambda v: tangent_project(prob, w, v))(bx)
        rms = lambda z: jnp.sqrt(jnp.mean(jnp.sum(z ** 2, axis=-1)))
        return (reg, jnp.linalg.norm(gt), jnp.linalg.norm(grad), rms(pbx), rms(bx),
                rms(bx - pbx))

    reg, g_t, g_all, n_tan, n_all, n_nor = (float(x) for x in numbers(w, key))
    fast = "fast scale t = alpha sigma^2 k (1/(alpha sigma^2) steps per unit time)"
    slow = "slow scale t = alpha^2 sigma^2 k (1/(alpha^2 sigma^2) steps per unit time)"
    speed = None
    if g_t > rtol * (g_all + n_all) + atol:
        scale = "fast"
        msg = (f"Fast scale: Reg = {reg:.4g} varies along the zero-loss manifold "
               f"(|P grad Reg| = {g_t:.3g}), so the iterates drift by dW/dt = -P grad Reg on "
               f"the {fast}.")
    elif n_tan > rtol * n_all + atol:
        scale = "slow-stochastic"
        msg = (f"Slow scale, stochastic: Reg is flat along the manifold (|P grad Reg| = "
               f"{g_t:.2g}) but the noise has a tangential part (rms |P B xi| = {n_tan:.3g}), "
               f"so on the {slow} the limit is a diffusion along the manifold (an SDE, not a "
               "flow): simulate it with ensemble().")
    elif n_nor > atol and prob.has_residuals:
        speed = float(jnp.linalg.norm(jax.jit(lambda x: slow_drift(prob, x))(w)))
        if speed > rtol * n_nor ** 2 + atol:
            scale = "slow"
            msg = (f"Slow scale: Reg = {reg:.4g} is constant along the manifold "
                   f"(|P grad Reg| = {g_t:.2g}), the noise is normal to it (rms |P_perp B xi| "
                   f"= {n_nor:.3g}) and its fluctuations drive a drift of speed {speed:.3g} "
                   f"on the {slow}; the fast scale is trivial.")
        else:
            scale = "none"
            msg = (f"Neither scale: Reg is flat along the manifold (|P grad Reg| = {g_t:.2g}) "
                   f"and the normal noise drives no drift (speed {speed:.2g}); the iterates "
                   "stay where gradient flow puts them.")
    elif n_nor > atol:
        scale = "slow"
        msg = (f"Slow scale (probably): Reg is flat along the manifold but normal noise is "
               f"present (rms {n_nor:.3g}); the drift needs residuals r(w) to compute.")
    else:
        scale = "none"
        msg = ("Neither scale: at this point of the zero-loss manifold the noise has no "
               f"first-order effect (rms |B xi| = {n_all:.2g}: every per-example gradient "
               f"vanishes) and Reg is flat (|P grad Reg| = {g_t:.2g}), so the motion along the "
               "manifold is trivial on both the fast (1/(alpha sigma^2)) and the slow "
               "(1/(alpha^2 sigma^2)) scale, as for minibatch noise at interpolation.")
    return ScaleVerdict(scale, reg, g_t, g_all, n_nor, n_tan, speed, msg)

"""Noise models: small composable pieces that turn a model into a noisy loss ``Lhat(w, eta)``.

Shalova, Schlichting, Peletier (2024, "Singular-limit analysis of gradient descent with
noise injection", arXiv:2404.12293) write every noisy GD as

    w_{k+1} = w_k - alpha grad_w Lhat(w_k, eta_k),   eta_k = sigma xi_k,  Lhat(w, 0) = L(w),

with ``xi_k`` i.i.d., mean 0, unit variance per component (we also allow a known
covariance ``S``, e.g. minibatch sampling).  Checked against the paper's set-up (the
stored abstract/summary, same notation); the constructions below are ours.

Every constructor returns a :class:`NoisyLoss`, itself a callable ``loss_hat(w, eta)``,
that also carries what the lab needs: the noise's shape, a sampler of standardised noise
``xi``, an optional covariance, and (for squared losses) the residuals ``r(w)`` with

    L(w) = |r(w)|^2 / (2 n),   n = len(r),

whose Jacobian's null space is the tangent space of the zero-loss manifold
``Gamma = {r = 0}``.  Noise models compose: ``label_noise(dropconnect(res))`` is not
meaningful, but any ``NoisyLoss`` can be wrapped by :func:`with_distribution`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any
Residuals = Callable[[PyTree], jax.Array]


@dataclass(frozen=True, eq=False)
class NoisyLoss:
    """``loss_hat(w, eta)`` plus what the lab needs to know about its noise.

    * ``fn(w, eta)``: the noisy loss; ``fn(w, zeros)`` is the training loss ``L(w)``.
    * ``noise_like(w)``: a pytree of zeros shaped like ``eta`` at ``w``.
    * ``sample(key, w)``: standardised noise ``xi`` (mean 0, covariance ``S``; ``S = I``
      unless ``cov`` is given); the step uses ``eta = sigma xi``.
    * ``cov(v)``: ``S v`` for the standardised covariance (``None``: identity).
    * ``residuals(w)``: ``r(w)`` with ``L(w) = |r|^2/(2n)`` (``None`` if not a squared
      loss; the tangent space then comes from the Hessian).
    * ``natural_sigma``: the sigma that reproduces the real algorithm (minibatch
      sampling, Bernoulli dropout), where there is one.
    """

    fn: Callable[[PyTree, PyTree], jax.Array]
    noise_like: Callable[[PyTree], PyTree]
    sample: Callable[[jax.Array, PyTree], PyTree]
    name: str
    residuals: Residuals | None = None
    cov: Callable[[PyTree], PyTree] | None = None
    natural_sigma: float | None = None

    def __call__(self, w: PyTree, eta: PyTree) -> jax.Array:
        return self.fn(w, eta)

    def loss(self, w: PyTree) -> jax.Array:
        """The training loss ``L(w) = Lhat(w, 0)``."""
        return self.fn(w, self.noise_like(w))


# ---------------------------------------------------------------- distributions
def _gaussian(key: jax.Array, like: PyTree) -> PyTree:
    leaves, tdef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tdef, [jax.random.normal(k, x.shape, x.dtype)
                                     for k, x in zip(keys, leaves, strict=True)])


def _rademacher(key: jax.Array, like: PyTree) -> PyTree:
    leaves, tdef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tdef, [jax.random.rademacher(k, x.shape, x.dtype)
                                     for k, x in zip(keys, leaves, strict=True)])


def _bernoulli(p: float) -> Callable[[jax.Array, PyTree], PyTree]:
    """Standardised dropout mask: ``m = b/(1-p)`` with ``b ~ Bernoulli(1-p)`` has mean 1 and
    variance ``p/(1-p)``, so ``eta = m - 1 = sigma xi`` with ``sigma = sqrt(p/(1-p))``."""
    s = (p / (1.0 - p)) ** 0.5

    def sample(key: jax.Array, like: PyTree) -> PyTree:
        leaves, tdef = jax.tree.flatten(like)
        keys = jax.random.split(key, len(leaves))
        out = []
        for k, x in zip(keys, leaves, strict=True):
            b = jax.random.bernoulli(k, 1.0 - p, x.shape).astype(x.dtype)
            out.append((b / (1.0 - p) - 1.0) / s)
        return jax.tree.unflatten(tdef, out)

    return sample


def _distribution(name: str) -> Callable[[jax.Array, PyTree], PyTree]:
    if name == "gaussian":
        return _gaussian
    if name == "rademacher":
        return _rademacher
    if name.startswith("bernoulli:"):
        p = float(name.split(":", 1)[1])
        if not 0.0 < p < 1.0:
            raise ValueError(f"dropout probability must lie in (0, 1), got {p}")
        return _bernoulli(p)
    raise ValueError(f"unknown noise distribution {name!r}: use 'gaussian', 'rademacher' "
                     "or 'bernoulli:p' (dropout with drop probability p)")


def with_distribution(loss_hat: NoisyLoss, distribution: str) -> NoisyLoss:
    """The same noisy loss with standardised noise from another distribution
    (``'gaussian'``, ``'rademacher'``, ``'bernoulli:p'``); covariance stays ``I``."""
    sampler = _distribution(distribution)
    nat = None
    if distribution.startswith("bernoulli:"):
        p = float(distribution.split(":", 1)[1])
        nat = (p / (1 - p)) ** 0.5
    return replace(loss_hat, sample=lambda k, w: sampler(k, loss_hat.noise_like(w)),
                   name=f"{loss_hat.name} ({distribution})", natural_sigma=nat)


def _mse(r: jax.Array) -> jax.Array:
    return 0.5 * jnp.mean(r ** 2)


def _check_residuals(residuals: Callable, what: str) -> None:
    if not callable(residuals):
        raise TypeError(f"{what} needs a callable residuals(w) -> 1-D array, got "
                        f"{type(residuals).__name__}")


# ---------------------------------------------------------------- noise models
def label_noise(residuals: Residuals, n: int, distribution: str = "gaussian") -> NoisyLoss:
    """Label noise on the squared loss: every label is perturbed, ``y_i -> y_i + eta_i``,

        Lhat(w, eta) = (1/2n) sum_i (r_i(w) - eta_i)^2,   Reg = (1/2) Lap_eta Lhat = 1/2.

    Reg is constant, so the fast scale is trivial and the motion is on the slow scale
    ``t = alpha^2 sigma^2 k``.  ``n`` is the number of residuals (the noise dimension)."""
    _check_residuals(residuals, "label_noise")
    sampler = _distribution(distribution)

    def fn(w: PyTree, eta: jax.Array) -> jax.Array:
        return _mse(residuals(w) - eta)

    like = lambda w: jnp.zeros((n,), dtype=jax.tree.leaves(w)[0].dtype)
    return NoisyLoss(fn, like, lambda k, w: sampler(k, like(w)), "label noise",
                     residuals=residuals)


def dropconnect(residuals: Residuals, distribution: str = "gaussian") -> NoisyLoss:
    """DropConnect: multiplicative noise on every weight, ``w -> w o (1 + eta)``,

        Lhat(w, eta) = (1/2n) |r(w o (1 + eta))|^2,
        Reg(w) = (1/2n) sum_ij (w_j d_j r_i)^2 + (1/2n) sum_i r_i sum_j w_j^2 d_jj r_i

    (derived by differentiating twice in eta; on Gamma the second sum vanishes, giving
    ``(1/2) mean_i sum_j (w_j df_i/dw_j)^2`` as in ``shared/dynamics.md`` §3, confirmed by
    the test against AD).  Noise shaped like ``w``."""
    _check_residuals(residuals, "dropconnect")
    sampler = _distribution(distribution)

    def fn(w: PyTree, eta: PyTree) -> jax.Array:
        return _mse(residuals(jax.tree.map(lambda a, e: a * (1 + e), w, eta)))

    like = lambda w: jax.tree.map(jnp.zeros_like, w)
    return NoisyLoss(fn, like, lambda k, w: sampler(k, like(w)), "DropConnect",
                     residuals=residuals)


def dropout(masked_residuals: Callable[[PyTree, jax.Array], jax.Array],
            mask_shape: tuple[int, ...], distribution: str = "gaussian") -> NoisyLoss:
    """Dropout on units: ``masked_residuals(w, m)`` evaluates the residuals with the units
    multiplied by the mask ``m`` (shape ``mask_shape``, e.g. ``(n, hidden)`` for a fresh
    mask per example as in practice); ``Lhat(w, eta) = (1/2n)|r(w, 1 + eta)|^2``.
    ``distribution='bernoulli:p'`` is real dropout at ``sigma = sqrt(p/(1-p))``."""
    _check_residuals(masked_residuals, "dropout")
    sampler = _distribution(distribution)

    def fn(w: PyTree, eta: jax.Array) -> jax.Array:
        return _mse(masked_residuals(w, 1.0 + eta))

    like = lambda w: jnp.zeros(mask_shape, dtype=jax.tree.leaves(w)[0].dtype)
    res = lambda w: masked_residuals(w, jnp.ones(mask_shape, dtype=jax.tree.leaves(w)[0].dtype))
    nl = NoisyLoss(fn, like, lambda k, w: sampler(k, like(w)), "Dropout", residuals=res)
    return with_distribution(nl, distribution) if distribution.startswith("bernoulli") else nl


def minibatch(residuals: Residuals, n: int, batch_size: int) -> NoisyLoss:
    """Minibatch sampling (``batch_size`` of ``n`` examples, with replacement) as noise on
    the example weights, ``Lhat(w, eta) = sum_i (1/n + eta_i) l_i(w)``, ``l_i = r_i^2/2``:
    ``eta = c/b - 1/n`` for multinomial counts ``c``, covariance
    ``(1/(b n)) (I - 11^T/n)``.  So ``xi = sqrt(bn) eta`` has covariance
    ``S = I - 11^T/n`` and ``natural_sigma = 1/sqrt(b n)``.  Linear in eta (Reg = 0), and
    every per-example gradient vanishes at interpolation: trivial on both scales."""
    _check_residuals(residuals, "minibatch")
    if not (isinstance(n, int) and isinstance(batch_size, int) and 1 <= batch_size and n >= 2):
        raise ValueError(f"minibatch needs integers n >= 2 and batch_size >= 1, got n={n!r}, "
                         f"batch_size={batch_size!r}")
    b = batch_size

    def fn(w: PyTree, eta: jax.Array) -> jax.Array:
        return jnp.sum((1.0 / n + eta) * 0.5 * residuals(w) ** 2)

    like = lambda w: jnp.zeros((n,), dtype=jax.tree.leaves(w)[0].dtype)

    def sample(key: jax.Array, w: PyTree) -> jax.Array:
        idx = jax.random.randint(key, (b,), 0, n)
        counts = jnp.zeros((n,), like(w).dtype).at[idx].add(1.0)
        return (b * n) ** 0.5 * (counts / b - 1.0 / n)

    cov = lambda v: v - jnp.mean(v)
    return NoisyLoss(fn, like, sample, f"minibatch (b={b} of n={n})", residuals=residuals,
                     cov=cov, natural_sigma=(b * n) ** -0.5)


def weight_perturbation(loss: Callable[[PyTree], jax.Array], residuals: Residuals | None = None,
                        distribution: str = "gaussian") -> NoisyLoss:
    """Anti-correlated perturbed GD (Orvieto et al., ICML 2022): ``theta_{k+1} = theta_k -
    alpha grad L(theta_k) + (xi_{k+1} - xi_k)``.  In ``w_k = theta_k - xi_k`` this is noisy
    GD on ``Lhat(w, eta) = L(w + eta)`` (a two-line substitution), so
    ``Reg = (1/2) tr Hess L``: a fast-scale pull to flat minima.  ``theta`` and ``w`` differ
    by a mean-zero ``eta``, so ensemble means agree."""
    sampler = _distribution(distribution)

    def fn(w: PyTree, eta: PyTree) -> jax.Array:
        return loss(jax.tree.map(jnp.add, w, eta))

    like = lambda w: jax.tree.map(jnp.zeros_like, w)
    return NoisyLoss(fn, like, lambda k, w: sampler(k, like(w)), "anti-correlated perturbation",
                     residuals=residuals)


def gaussian_sgld(loss: Callable[[PyTree], jax.Array], residuals: Residuals | None = None
                  ) -> NoisyLoss:
    """Additive Gaussian noise (SGLD): ``Lhat(w, eta) = L(w) - <eta, w>`` gives
    ``w_{k+1} = w_k - alpha grad L + alpha sigma xi`` (SGLD at inverse temperature
    ``beta = 2/(alpha sigma^2)``).  Linear in eta: Reg = 0; the noise has a tangential part,
    so the slow limit is a diffusion along Gamma (stochastic, not a flow)."""
    def fn(w: PyTree, eta: PyTree) -> jax.Array:
        inner = sum(jnp.vdot(e, a) for e, a in zip(jax.tree.leaves(eta), jax.tree.leaves(w),
                                                    strict=True))
        return loss(w) - inner

    like = lambda w: jax.tree.map(jnp.zeros_like, w)
    return NoisyLoss(fn, like, lambda k, w: _gaussian(k, like(w)), "Gaussian (SGLD)",
                     residuals=residuals)


def custom_noise(loss_hat: Callable[[PyTree, PyTree], jax.Array],
                 noise_like: Callable[[PyTree], PyTree],
                 sample: Callable[[jax.Array, PyTree], PyTree] | None = None, *,
                 residuals: Residuals | None = None, name: str = "custom noise") -> NoisyLoss:
    """Wrap any ``loss_hat(w, eta)``; ``sample`` defaults to standard Gaussian noise."""
    sample = sample or (lambda k, w: _gaussian(k, noise_like(w)))
    return NoisyLoss(loss_hat, noise_like, sample, name, residuals=residuals)


def as_noisy_loss(loss_hat: Any, noise_like: Callable[[PyTree], PyTree] | None = None
                  ) -> NoisyLoss:
    """A :class:`NoisyLoss` as is; a plain callable needs ``noise_like``."""
    if isinstance(loss_hat, NoisyLoss):
        return loss_hat
    if not callable(loss_hat):
        raise TypeError(f"loss_hat must be callable (w, eta) -> scalar, got "
                        f"{type(loss_hat).__name__}")
    if noise_like is None:
        raise TypeError("a plain loss_hat(w, eta) needs noise_like=lambda w: <zeros shaped like "
                        "eta>; or build it with a noise model of bea.dynamics.manifold")
    return custom_noise(loss_hat, noise_like)

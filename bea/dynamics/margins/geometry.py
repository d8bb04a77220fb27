r"""Homogeneity, margins and the exponential / logistic losses in log space.

Definitions (``shared/dynamics.md`` section 4, checked against Lyu & Li, ICLR 2020,
section 3 and Tsilivis, Vardi, Kempe 2024, section 3, whose abstracts and definitions we
read; the inequalities below are derived here).  A model ``f(x; theta)`` is (positively)
*homogeneous of degree k* if ``f(x; c theta) = c^k f(x; theta)`` for all ``c > 0``: a
linear model has ``k = 1``, a bias-free ReLU net with ``L`` weight layers ``k = L``; a net
with biases is not homogeneous.  With ``z_i = y_i f(x_i; theta)`` and a norm ``||.||``:

* normalised margin  ``gamma(theta)  = min_i z_i / ||theta||^k``;
* soft margin        ``gamma~(theta) = -log sum_i exp(-z_i) / ||theta||^k``
  (exponential loss ``L = sum_i exp(-z_i)``, so ``gamma~ = log(1/L) / ||theta||^k``);
  for the logistic loss ``L = sum_i log(1 + exp(-z_i))`` Lyu & Li's smoothed margin
  ``-log(expm1(L)) / ||theta||^k`` (equal to ``log(1/L)/||theta||^k + O(L)``).

Since ``max_i exp(-z_i) <= sum_i exp(-z_i) <= n max_i exp(-z_i)``,
``gamma - log(n)/||theta||^k <= gamma~ <= gamma``: the soft margin is a lower bound that
becomes the margin as ``||theta|| -> inf``.

Long-time numerics: after perfect accuracy the loss goes to 0 (1e-30 and far below), so
``exp(-z)`` underflows.  Everything here works with ``log L`` (a log-sum-exp), whose
gradient ``grad log L = -sum_i softmax(-z)_i grad z_i`` uses softmax *weights* that never
underflow; ``grad L = L grad log L`` is never formed.  Normalised steepest descent takes
the same steps on ``L`` and on ``log L`` (the direction is scale-free), and the
dual-scaled step on ``log L`` is the dual-scaled step on ``L`` with step size ``eta / L``
(the loss-normalised step of Nacson et al., AISTATS 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kernels.steepest import tree_lp_norm
from kernels.tree_util import tree_scale

from ...optax.steepest import norm_exponent

__all__ = ["LabelError", "NotHomogeneousError", "check_labels", "homogeneity_degree",
           "log_exp_loss", "log_logistic_loss", "log_loss", "normalized_margin",
           "param_norm", "soft_margin", "LOSSES"]

LOSSES = ("exp", "logistic")
PyTree = Any
Model = Callable[[PyTree, jax.Array], jax.Array]


class LabelError(ValueError):
    """Labels that are not a 1-D array of -1 and +1."""


class NotHomogeneousError(ValueError):
    """A model with ``f(x; c theta) != c^k f(x; theta)`` for every ``k``."""


def check_labels(y: Any, n: int | None = None) -> np.ndarray:
    """``y`` as a float array after checking it is 1-D with values in {-1, +1}."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise LabelError(f"labels must be a 1-D array of -1/+1, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise LabelError(f"{arr.shape[0]} labels for {n} examples")
    if arr.size == 0:
        raise LabelError("no labels: pass at least one example")
    vals = set(np.unique(arr).tolist())
    if not vals <= {-1, 1}:
        bad = sorted(vals - {-1, 1})[:5]
        raise LabelError(f"labels must be -1 or +1, found {bad}; map 0/1 labels with "
                         f"y = 2 * y - 1")
    return arr.astype(np.float64)


# ----------------------------------------------------------------------------- losses


def _log_softplus(t: jax.Array) -> jax.Array:
    """``log(log(1 + e^t))`` without underflow: for ``t < -30``, ``log1p(e^t) = e^t (1 -
    e^t/2 + ...)`` so the log is ``t + log1p(-e^t / 2)`` (error ``O(e^(2t))``)."""
    lo = t < -30.0
    t_hi = jnp.where(lo, -30.0, t)        # keep the unused branch finite (no NaN grads)
    t_lo = jnp.where(lo, t, -30.0)
    return jnp.where(lo, t_lo + jnp.log1p(-0.5 * jnp.exp(t_lo)),
                     jnp.log(jax.nn.softplus(t_hi)))


def log_exp_loss(z: jax.Array) -> jax.Array:
    """``log sum_i exp(-z_i)`` (log of the exponential loss), a log-sum-exp."""
    return jax.nn.logsumexp(-z)


def log_logistic_loss(z: jax.Array) -> jax.Array:
    """``log sum_i log(1 + exp(-z_i))`` (log of the logistic loss), finite for any ``z``."""
    return jax.nn.logsumexp(_log_softplus(-z))


def log_loss(kind: str) -> Callable[[jax.Array], jax.Array]:
    """The log-space loss of ``kind`` in ``LOSSES``."""
    if kind == "exp":
        return log_exp_loss
    if kind == "logistic":
        return log_logistic_loss
    raise ValueError(f"unknown loss {kind!r}: use one of {LOSSES}")


# ----------------------------------------------------------------------------- norms, margins


def param_norm(params: PyTree, norm: str | float = "l2") -> jax.Array:
    """``||theta||_p`` of the whole parameter pytree."""
    return tree_lp_norm(params, norm_exponent(norm))


def normalized_margin(z: jax.Array, params: PyTree, degree: float,
                      norm: str | float = "l2") -> jax.Array:
    """``min_i z_i / ||theta||^k`` with ``z_i = y_i f(x_i; theta)``."""
    return jnp.min(z) / param_norm(params, norm) ** degree


def soft_margin(z: jax.Array, params: PyTree, degree: float, norm: str | float = "l2",
                loss: str = "exp") -> jax.Array:
    """``log(1/L) / ||theta||^k`` (exponential loss) or ``-log(expm1(L)) / ||theta||^k``
    (logistic), computed from ``log L`` (no underflow)."""
    ll = log_loss(loss)(z)
    if loss == "logistic":
        big_l = jnp.exp(jnp.minimum(ll, 700.0))
        small = big_l < 1e-8
        safe = jnp.where(small, 1.0, big_l)
        # log expm1(L) = log L + log(expm1(L)/L), the second term = L/2 + O(L^2) for small L
        ll = ll + jnp.where(small, 0.5 * big_l, jnp.log(jnp.expm1(safe) / safe))
    return -ll / param_norm(params, norm) ** degree


# ----------------------------------------------------------------------------- homogeneity


def homogeneity_degree(model: Model, params: PyTree, x: Any, *,
                       scales: Sequence[float] = (0.5, 2.0, 3.0),
                       rtol: float | None = None) -> float:
    """Degree ``k`` with ``f(x; c theta) = c^k f(x; theta)`` for every ``c`` in ``scales``.

    ``k`` is read off as the median of ``log(f(c theta)/f(theta)) / log c`` over outputs
    not near 0, then checked on *all* outputs: ``max |f(c theta) - c^k f(theta)| <= rtol
    c^k max |f(theta)|`` (``rtol`` 1e-8 in float64, 1e-4 in float32).  Integer degrees
    are returned exactly.  Raises :class:`NotHomogeneousError` otherwise (e.g. biases).
    """
    scales = [float(c) for c in scales]
    if len(scales) < 2 or any(not (c > 0) or c == 1.0 for c in scales):
        raise ValueError("scales must be at least two positive numbers other than 1")
    f0 = np.asarray(model(params, x), dtype=np.float64).ravel()
    if rtol is None:
        leaves = jax.tree.leaves(params)
        f64 = all(jnp.result_type(a) == jnp.float64 for a in leaves)
        rtol = 1e-8 if f64 else 1e-4
    ref = float(np.max(np.abs(f0))) if f0.size else 0.0
    if not (math.isfinite(ref) and ref > 0):
        raise NotHomogeneousError("the model's outputs are all zero (or not finite) at these "
                                  "parameters, so no degree can be read off; use other "
                                  "parameters or inputs")
    outs = {c: np.asarray(model(tree_scale(c, params), x), dtype=np.float64).ravel()
            for c in scales}
    big = np.abs(f0) > 1e-3 * ref
    ks = []
    for c, fc in outs.items():
        ratio = fc[big] / f0[big]
        if np.any(ratio <= 0):
            ks.append(np.nan)
        else:
            ks.extend((np.log(ratio) / np.log(c)).tolist())
    k = float(np.median(ks)) if ks and np.all(np.isfinite(ks)) else float("nan")
    if math.isfinite(k) and abs(k - round(k)) < 1e-6:
        k = float(round(k))
    worst, at = 0.0, scales[0]
    for c, fc in outs.items():
        err = (float(np.max(np.abs(fc - c**k * f0))) / (c**k * ref) if math.isfinite(k)
               else float("inf"))
        if err > worst:
            worst, at = err, c
    if not worst <= rtol:
        raise NotHomogeneousError(
            f"the model is not positively homogeneous in its parameters: f(x; c theta) "
            f"differs from c^k f(x; theta) (best k = {k:.4g}) by {worst:.3g} relative at "
            f"c = {at:g} (tolerance {rtol:g}); margins need a homogeneous model.  A network "
            f"with biases is not homogeneous: drop the biases (or append a constant input "
            f"feature instead)")
    return k

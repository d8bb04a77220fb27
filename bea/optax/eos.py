r"""Optimisers that live at the edge of stability: normalised GD and GD on ``sqrt(L - L_min)``.

Both are full optimisers (they include the learning rate, like :func:`optax.sgd`) and
both provably reach the edge of stability and then drift along the zero-loss manifold
``Gamma`` (Arora, Li, Panigrahi, "Understanding gradient descent on edge of stability in
deep learning", ICML 2022).  :mod:`bea.dynamics.eos` has the limiting flows and the lab.

**Normalised GD** (:func:`normalized_gd`)::

    x <- x - eta * grad L(x) / |grad L(x)|          (|.|: the global l2 norm of the tree)

*Stability threshold.*  It never diverges (every step has length ``eta``); instead the
effective step ``eta_eff = eta / |grad L|`` adapts.  Near a minimum with top Hessian
eigenvalue ``lambda_1`` the iterate 2-cycles across ``Gamma`` along the top eigenvector
and ``eta_eff * lambda_1 -> 2``: plain GD's threshold ``eta lambda_1 < 2`` is met with
equality.  On ``Gamma`` it follows ``dX/dt = -(1/4) P_T grad log lambda_1`` in time
``t = eta^2 * steps``.

**GD on sqrt(L - L_min)** (:func:`sqrt_loss`)::

    x <- x - eta * grad sqrt(L - L_min) = x - eta * grad L / (2 sqrt(L(x) - L_min))

The update takes the loss value as ``value=`` (as :func:`optax.polyak_sgd` does).
*Stability threshold.*  ``sqrt(L)`` is not twice differentiable on ``Gamma``; at normal
distance ``s`` along the top eigenvector its curvature is ``sqrt(lambda_1 / 2) / |s|``,
so GD on it is at the edge of stability at *every* scale: it 2-cycles with
``|s| = eta sqrt(lambda_1 / 2) / 2``, where that curvature is exactly ``2 / eta``.  On
``Gamma`` it follows ``dX/dt = -(1/8) P_T grad lambda_1`` in time ``t = eta^2 * steps``.

(The constants 1/4 and 1/8 were derived here from the 2-cycle, ``s = +-eta/2`` resp.
``+-eta sqrt(lambda_1/2)/2``, and ``D^3L[u, u, .] = grad lambda_1``, and verified
numerically against discrete runs in ``tests/test_eos_flows.py``; they agree with the
paper's Theorems for normalised GD and GD on ``sqrt(L)``.)

Heavy-ball and Nesterov momentum are :func:`optax.sgd` with ``momentum=beta``
(``nesterov=True``); heavy ball ``v <- beta v + g, x <- x - eta v`` is linearly stable on
a quadratic iff ``eta lambda < 2 + 2 beta`` (roots of ``z^2 - (1 + beta - eta lambda) z
+ beta``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

__all__ = ["LossMinError", "NormalizedGDState", "SqrtLossState", "normalized_gd",
           "sqrt_loss"]

ScalarOrSchedule = float | Callable[[jax.Array], Any]


class LossMinError(ValueError):
    """``loss_min`` lies above the loss value handed to :func:`sqrt_loss`."""


class NormalizedGDState(NamedTuple):
    count: jax.Array
    grad_norm: jax.Array  # |grad L| of the last step: eta_eff = eta / grad_norm


class SqrtLossState(NamedTuple):
    count: jax.Array
    excess: jax.Array  # L - L_min of the last step


def _check_rate(lr: Any, who: str) -> None:
    if callable(lr):
        return
    try:
        v = float(lr)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: learning_rate must be a number or a schedule, got "
                        f"{type(lr).__name__}") from None
    if not v > 0:
        raise ValueError(f"{who}: learning_rate must be > 0, got {lr!r}")


def _rate(lr: ScalarOrSchedule, count: jax.Array) -> Any:
    return lr(count) if callable(lr) else lr


def _global_norm(tree: Any) -> jax.Array:
    return optax.tree.norm(tree)


def normalized_gd(learning_rate: ScalarOrSchedule,
                  eps: float = 0.0) -> optax.GradientTransformationExtraArgs:
    """Normalised gradient descent ``x <- x - eta g / |g|`` (see the module docstring).

    ``eps`` guards ``|g| = 0`` (the update is then zero); ``state.grad_norm`` keeps the last
    ``|g|`` so ``eta_eff = eta / grad_norm`` can be logged.  Extra ``update`` arguments are
    accepted and ignored, so it chains with transforms that need them.
    """
    _check_rate(learning_rate, "normalized_gd")

    def init(params):
        del params
        return NormalizedGDState(jnp.zeros([], jnp.int32), jnp.asarray(jnp.nan))

    def update(updates, state, params=None, **extra):
        del params, extra
        norm = _global_norm(updates)
        eta = _rate(learning_rate, state.count)
        scale = jnp.where(norm > eps, -eta / jnp.where(norm > eps, norm + eps, 1.0), 0.0)
        new = jax.tree.map(lambda g: (scale * g).astype(g.dtype), updates)
        return new, NormalizedGDState(optax.safe_increment(state.count),
                                      norm.astype(jnp.result_type(float)))

    return optax.GradientTransformationExtraArgs(init, update)


def sqrt_loss(learning_rate: ScalarOrSchedule,
              loss_min: float = 0.0) -> optax.GradientTransformationExtraArgs:
    """GD on ``sqrt(L - L_min)``: ``x <- x - eta grad L / (2 sqrt(L - L_min))``.

    ``update(grads, state, params, value=L(params))``: ``value`` is the loss at the point
    the gradient was taken (required).  A ``value`` below ``loss_min`` is an error
    (:class:`LossMinError` for concrete values; under ``jit`` an equinox runtime error with
    the same message); at ``value == loss_min`` the update is zero.
    """
    _check_rate(learning_rate, "sqrt_loss")
    try:
        loss_min = float(loss_min)
    except (TypeError, ValueError):
        raise TypeError(f"sqrt_loss: loss_min must be a number, got {loss_min!r}") from None

    msg = ("sqrt_loss: the loss value is below loss_min, so sqrt(L - L_min) is undefined; "
           "pass loss_min <= the smallest loss value (0 for squared losses)")

    def init(params):
        del params
        return SqrtLossState(jnp.zeros([], jnp.int32), jnp.asarray(jnp.nan))

    def update(updates, state, params=None, *, value=None, **extra):
        del params, extra
        if value is None:
            raise ValueError("sqrt_loss needs the loss value: update(grads, state, params, "
                             "value=loss) (as optax.polyak_sgd)")
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"sqrt_loss: value must be the scalar loss, got shape "
                             f"{value.shape}")
        if not isinstance(value, jax.core.Tracer):
            if float(value) < loss_min:
                raise LossMinError(f"{msg} (value {float(value):.6g} < loss_min {loss_min:.6g})")
        else:
            value = eqx.error_if(value, value < loss_min, msg)
        excess = value - loss_min
        eta = _rate(learning_rate, state.count)
        safe = jnp.where(excess > 0, excess, 1.0)
        scale = jnp.where(excess > 0, -eta / (2.0 * jnp.sqrt(safe)), 0.0)
        new = jax.tree.map(lambda g: (scale * g).astype(g.dtype), updates)
        return new, SqrtLossState(optax.safe_increment(state.count), excess)

    return optax.GradientTransformationExtraArgs(init, update)

"""Noisy GD of the zero-loss-manifold lab as an optax transform.

``optax.chain(noise_injection(loss_hat, sigma, key=k), optax.sgd(alpha))`` fed with the
gradient of ``L = Lhat(., 0)`` performs

    w_{k+1} = w_k - alpha grad_w Lhat(w_k, sigma xi_k),   xi_k = sample(fold_in(k, count)),

the step of Shalova, Schlichting, Peletier (2024); with the same key it reproduces run
``i`` of ``bea.dynamics.manifold.ensemble`` for ``k = split(PRNGKey(seed), runs)[i]``.
The transform adds ``grad_w Lhat(w, eta) - grad_w Lhat(w, 0)`` to the incoming updates,
so it composes with any other gradient transformation.  ``loss_hat`` is a
``bea.dynamics.manifold.NoisyLoss`` (any noise model of the lab).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

__all__ = ["NoiseInjectionState", "noise_injection"]


class NoiseInjectionState(NamedTuple):
    """State of :func:`noise_injection`: the run's ``key`` and the step ``count``; step k
    draws ``xi_k`` from ``fold_in(key, k)``."""

    key: jax.Array
    count: jax.Array


def noise_injection(loss_hat: Any, sigma: float, *, key: jax.Array | None = None,
                    seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """Add the noise of ``loss_hat`` (scale ``sigma``) to the gradient; needs ``params``:
    ``updates + grad_w Lhat(w, sigma xi) - grad_w Lhat(w, 0)``."""
    s = float(sigma)
    if not s > 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    for attr in ("fn", "sample", "noise_like"):
        if not hasattr(loss_hat, attr):
            raise TypeError("noise_injection needs a NoisyLoss from bea.dynamics.manifold "
                            f"(label_noise, dropconnect, ...), got {type(loss_hat).__name__}")
    key0 = jax.random.PRNGKey(seed) if key is None else key

    def init(params: Any) -> NoiseInjectionState:
        del params
        return NoiseInjectionState(key0, jax.numpy.zeros([], jax.numpy.int32))

    def update(updates: Any, state: NoiseInjectionState, params: Any = None, **extra: Any):
        del extra
        if params is None:
            raise ValueError("noise_injection needs params: call update(grads, state, params)")
        xi = loss_hat.sample(jax.random.fold_in(state.key, state.count), params)
        eta = jax.tree.map(lambda x: s * x, xi)
        g_noisy = jax.grad(loss_hat.fn)(params, eta)
        g_clean = jax.grad(loss_hat.fn)(params, loss_hat.noise_like(params))
        new = jax.tree.map(lambda u, a, b: u + (a - b), updates, g_noisy, g_clean)
        return new, NoiseInjectionState(state.key, state.count + 1)

    return optax.GradientTransformationExtraArgs(init, update)

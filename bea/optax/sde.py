r"""SVAG, the stochastic variance amplified gradient (Li, Malladi, Arora, NeurIPS 2021).

SGD ``x <- x - eta g_gamma(x)`` with one minibatch gradient ``g_gamma`` is modelled by the
Ito SDE ``dX = -grad L dt + (eta Sigma(X))^(1/2) dW`` with ``t = k eta`` and ``Sigma`` the
covariance of one minibatch gradient.  SVAG(l) takes two *independent* minibatches
``gamma_1, gamma_2`` of the same size and steps

    x <- x - (eta / l) (w_+ g_{gamma_1} + w_- g_{gamma_2}),   w_+- = (1 +- sqrt(2 l - 1)) / 2.

Derived here (and the definition checked against the paper's stored abstract and
summaries; the weights are the paper's ``r_1, r_2``), with ``g_i = grad L + z_i``, ``z_i``
independent, mean 0, covariance ``Sigma``:

* mean: ``w_+ + w_- = 1``, so ``E[w_+ g_1 + w_- g_2] = grad L`` (drift unchanged);
* covariance: ``w_+^2 + w_-^2 = (2 + 2 (2l - 1)) / 4 = l``, so the combined gradient has
  covariance ``l Sigma``;
* per step the drift moves ``(eta/l) grad L`` and the noise has covariance
  ``(eta/l)^2 l Sigma = (eta/l) * eta Sigma``: one SVAG step is time ``eta / l`` of the
  SDE above (drift ``grad L`` per unit time, diffusion ``eta Sigma`` per unit time), so
  ``steps / l`` are the "effective steps" of SGD with rate ``eta``; the paper's theorem
  (order-1 weak approximation of the SDE as ``l -> inf`` at fixed ``eta``) and the
  ``O(1/l)`` rate are measured in ``tests/test_sde.py``.
* ``l = 1``: ``w_+ = 1, w_- = 0``: plain SGD (``grad2`` is then ignored).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["AmplificationError", "SVAGState", "svag", "svag_weights"]


class AmplificationError(ValueError):
    """The SVAG amplification factor ``l`` is not a finite number ``>= 1``."""


class SVAGState(NamedTuple):
    """``count``: SVAG steps taken (time ``count * eta / l`` of the SDE)."""

    count: jax.Array


def svag_weights(l: float) -> tuple[float, float]:
    """``(w_+, w_-) = ((1 + sqrt(2l - 1))/2, (1 - sqrt(2l - 1))/2)``: sum 1, squares sum l."""
    if isinstance(l, bool) or not isinstance(l, numbers.Real) or not math.isfinite(l):
        raise AmplificationError(f"svag: l must be a finite number >= 1, got {l!r}")
    if l < 1:
        raise AmplificationError(f"svag: l must be >= 1 (l = 1 is SGD, larger l amplifies "
                                 f"the noise and shrinks the step), got l = {l}")
    s = math.sqrt(2.0 * l - 1.0)
    return (1.0 + s) / 2.0, (1.0 - s) / 2.0


def svag(learning_rate: float | Callable[[jax.Array], Any], l: float
         ) -> optax.GradientTransformationExtraArgs:
    """SVAG(l) with learning rate ``eta`` as an optax optimiser (updates include ``-eta/l``).

    ``update(grad1, state, params=None, *, grad2=...)``: ``grad1`` (the ``updates``
    argument) is the gradient on the first minibatch, ``grad2=`` the gradient on a
    second, independent minibatch of the same size (see
    :class:`bea.dynamics.sde.BatchSampler.pair`).  Returns
    ``-(eta/l)(w_+ grad1 + w_- grad2)``; ``l = 1`` is SGD and needs no ``grad2``.
    Weight decay or other gradient terms common to both batches go into both gradients
    (they are unchanged by the combination since ``w_+ + w_- = 1``).
    """
    wp, wm = svag_weights(l)
    if not callable(learning_rate):
        if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
                or not math.isfinite(learning_rate) or learning_rate <= 0):
            raise ValueError(f"svag: learning_rate must be a positive number or a schedule, "
                             f"got {learning_rate!r}")
    lf = float(l)

    def init(params: Any) -> SVAGState:
        del params
        return SVAGState(count=jnp.zeros([], jnp.int32))

    def update(updates: Any, state: SVAGState, params: Any = None, *, grad2: Any = None,
               **extra: Any) -> tuple[Any, SVAGState]:
        del params, extra
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
        if wm == 0.0:
            combined = updates
        else:
            if grad2 is None:
                raise ValueError(f"svag(l={l}) needs grad2= (the gradient on a second, "
                                 f"independent minibatch of the same size) passed to update")
            s1, s2 = jax.tree.structure(updates), jax.tree.structure(grad2)
            if s1 != s2:
                raise ValueError(f"svag: grad2 has another tree structure than the "
                                 f"updates ({s2} vs {s1}); pass gradients of the same params")
            for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(grad2), strict=True):
                if jnp.shape(a) != jnp.shape(b):
                    raise ValueError(f"svag: grad2 leaf shape {jnp.shape(b)} differs from "
                                     f"the updates' {jnp.shape(a)}")
            combined = jax.tree.map(lambda a, b: wp * a + wm * b, updates, grad2)
        new = jax.tree.map(lambda g: (-eta / lf) * g, combined)
        return new, SVAGState(count=optax.safe_int32_increment(state.count))

    return optax.GradientTransformationExtraArgs(init, update)

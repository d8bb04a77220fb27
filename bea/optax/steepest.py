r"""Steepest descent in a chosen norm: GD (l2), sign descent (l_inf), coordinate descent (l1),
and any l_p norm through its dual norm.

For a norm ``||.||`` with dual ``||g||_* = max_{||u|| <= 1} <g, u>`` and a maximiser ``u``
(``<g, u> = ||g||_*``, ``||u|| = 1``), one step is::

    normalized=False:  theta <- theta - eta ||g||_* u     (the "dual-scaled" step)
    normalized=True:   theta <- theta - eta u             (unit step in ||.||)

(``shared/dynamics.md`` section 4; Gunasekar, Lee, Soudry, Srebro, ICML 2018, section 4;
Tsilivis, Vardi, Kempe 2024 use the dual-scaled flow.)  The dual-scaled step is the
minimiser of ``<g, d> + ||d||^2 / (2 eta)`` (Boyd & Vandenberghe 9.4); both share the
flow up to a time change.  The directions (derived in :mod:`kernels.steepest`, Hoelder's
inequality) are, with ``q = p / (p - 1)``:

==========  =========================================  =======================
norm        dual-scaled ``||g||_* u``                   unit ``u``
==========  =========================================  =======================
``"l2"``    ``g``                                      ``g / ||g||_2``
``"linf"``  ``||g||_1 sign(g)``                        ``sign(g)``
``"l1"``    ``g_j e_j``, ``j = argmax_i |g_i|``        ``sign(g_j) e_j``
``p``       ``sign(g) |g|^(q-1) / ||g||_q^(q-2)``      ``... / ||g||_q^(q-1)``
==========  =========================================  =======================

The whole parameter pytree is one vector (norms and the argmax run over all leaves).
**Ties in coordinate descent** (several coordinates with the same largest ``|g_i|``) go
to the *first* of them in ``jax.tree`` flattening order (``jnp.argmax``'s rule), so the
step is deterministic and moves one coordinate only.  A zero gradient gives a zero step.

Named cases: :func:`sign_descent` (default ``normalized=True``: ``-eta sign(g)``, signSGD)
and :func:`coordinate_descent` (default ``normalized=False``: ``-eta g_j e_j``, the
Gauss-Southwell rule).  Like :func:`optax.sgd` the transforms include the learning rate
(a number or a schedule ``count -> eta``), so they are complete optimisers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from kernels.steepest import steepest_direction

__all__ = ["NORMS", "SteepestDescentState", "UnknownNormError", "coordinate_descent",
           "norm_exponent", "sign_descent", "steepest_descent"]

NORMS = ("l2", "linf", "l1")


class UnknownNormError(ValueError):
    """A norm that is not ``"l1"``, ``"l2"``, ``"linf"``, ``"l<p>"`` or a number ``p >= 1``."""


def norm_exponent(norm: str | float) -> float:
    """The exponent ``p`` of a norm name: ``"l1" -> 1``, ``"l2" -> 2``, ``"linf"`` (or
    ``"inf"``, ``"l_inf"``) ``-> inf``, ``"l3"`` / ``"l1.5"`` / ``3`` / ``1.5 -> p``
    (``p >= 1``); anything else raises :class:`UnknownNormError`."""
    if isinstance(norm, bool):
        raise UnknownNormError(f"unknown norm {norm!r}: use 'l2', 'linf', 'l1' or a number "
                               f"p >= 1")
    if isinstance(norm, numbers.Real):
        p = float(norm)
    elif isinstance(norm, str):
        key = norm.strip().lower().replace("_", "").replace("-", "")
        if key in ("linf", "inf", "lmax", "max"):
            return math.inf
        body = key[1:] if key.startswith("l") else key
        try:
            p = float(body)
        except ValueError:
            raise UnknownNormError(f"unknown norm {norm!r}: use 'l2', 'linf', 'l1', 'l<p>' "
                                   f"(e.g. 'l3') or a number p >= 1") from None
    else:
        raise UnknownNormError(f"unknown norm {norm!r}: use 'l2', 'linf', 'l1' or a number "
                               f"p >= 1")
    if not (p >= 1.0) or math.isnan(p):
        raise UnknownNormError(f"norm {norm!r} is not a norm: l_p needs p >= 1 (p < 1 is "
                               f"not convex)")
    return p


def _norm_name(p: float) -> str:
    return "linf" if p == math.inf else f"l{p:g}"


class SteepestDescentState(NamedTuple):
    """``count``: steps so far (drives a learning-rate schedule)."""

    count: jax.Array


def steepest_descent(learning_rate: float | Callable[[jax.Array], Any],
                     norm: str | float = "l2",
                     normalized: bool = False) -> optax.GradientTransformation:
    """Steepest descent for ``norm`` (see the module docstring): updates
    ``-eta ||g||_* u`` (``normalized=False``) or ``-eta u`` (``normalized=True``).

    ``norm``: ``"l2"`` (GD), ``"linf"`` (sign descent), ``"l1"`` (coordinate descent),
    ``"l<p>"`` or a number ``p >= 1``.  ``learning_rate``: a number or a schedule.
    """
    p = norm_exponent(norm)
    if not callable(learning_rate):
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
            raise TypeError(f"learning_rate must be a number or a schedule, got "
                            f"{learning_rate!r}")
        if not (math.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate must be positive and finite, got "
                             f"{learning_rate}")
    scale = "unit" if normalized else "dual"

    def init(params):
        del params
        return SteepestDescentState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
        d = steepest_direction(updates, p, scale)
        new = jax.tree.map(lambda x: (-eta * x).astype(x.dtype), d)
        return new, SteepestDescentState(count=optax.safe_int32_increment(state.count))

    update.bea_norm = _norm_name(p)  # for reports: which geometry this optimiser uses
    return optax.GradientTransformation(init, update)


def sign_descent(learning_rate: float | Callable[[jax.Array], Any],
                 normalized: bool = True) -> optax.GradientTransformation:
    """Sign descent, l_inf steepest descent: ``-eta sign(g)`` (default) or, with
    ``normalized=False``, ``-eta ||g||_1 sign(g)``."""
    return steepest_descent(learning_rate, "linf", normalized)


def coordinate_descent(learning_rate: float | Callable[[jax.Array], Any],
                       normalized: bool = False) -> optax.GradientTransformation:
    """Greedy coordinate descent, l1 steepest descent: ``-eta g_j e_j`` with
    ``j = argmax |g_i|`` over all leaves (default; ties: first in flattening order) or,
    with ``normalized=True``, ``-eta sign(g_j) e_j``."""
    return steepest_descent(learning_rate, "l1", normalized)

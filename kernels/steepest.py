"""Steepest-descent directions of a gradient ``g`` under different norms.

The update is ``theta <- theta - eta * d`` with ``d`` returned here.  For a
norm ``||.||`` with dual norm ``||.||_*`` let ``u = argmax_{||u|| <= 1} <g, u>``
(so ``<g, u> = ||g||_*``).  Two conventions (``scale=`` option):

* ``"dual"`` (default): ``d = ||g||_* u``, the minimiser of
  ``-<g, d> + ||d||^2 / 2`` (i.e. ``-d`` minimises the first-order model
  plus the squared-norm proximal term).  ``||d|| = ||g||_*``,
  ``<g, d> = ||g||_*^2``; for the l2 norm this is ``d = g``.  This is Boyd &
  Vandenberghe's *unnormalised* steepest-descent step ``||g||_* dx_nsd``, and
  the "sharp operator" ``g^#`` of Kelner et al. / Bernstein & Newhouse.
* ``"unit"``: ``d = u``, the unit-norm direction (Boyd & Vandenberghe's
  *normalised* steepest descent ``dx_nsd``).

Norms (over the whole pytree viewed as one vector):

* l_inf (``sign_direction``): ``u = sign(g)``, ``||g||_* = ||g||_1``, so the
  dual-scaled step is ``||g||_1 sign(g)`` (sign descent / signSGD with a
  gradient-dependent step).
* l_1 (``coordinate_direction``): ``u = sign(g_j) e_j`` for
  ``j = argmax |g_j|`` over *all* leaves (greedy coordinate descent),
  ``||g||_* = ||g||_inf``, so the dual-scaled step is ``g_j e_j``.  Ties go to
  the first coordinate in ``jax.tree`` flattening order.
* l2: ``l2_direction(g) = g`` (dual-scaled), ``normalized_direction(g) = g / ||g||``
  (unit; ``0`` for ``g = 0``).
* l_p, ``1 < p < inf`` (``lp_direction``), dual exponent ``q = p / (p - 1)``: equality in
  Hoelder's inequality ``<g, u> <= ||g||_q ||u||_p`` gives
  ``u_i = sign(g_i) |g_i|^(q-1) / ||g||_q^(q-1)`` (``||u||_p = 1`` because
  ``(q-1) p = q``), so ``d = ||g||_q u = sign(g_i) |g_i|^(q-1) / ||g||_q^(q-2)``.  Derived
  here (Boyd & Vandenberghe 9.4 state the l1 / l_inf / quadratic cases); it is computed on
  ``g / max|g|`` so that ``|g|^(q-1)`` neither overflows nor underflows for large ``q``.
  ``p = 1, 2, inf`` are sent to the exact cases above (``steepest_direction``).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from kernels.tree_util import PyTree, tree_norm, tree_scale

__all__ = [
    "Scale",
    "coordinate_direction",
    "dual_exponent",
    "l2_direction",
    "lp_direction",
    "normalized_direction",
    "sign_direction",
    "steepest_direction",
    "tree_lp_norm",
]

Scale = Literal["dual", "unit"]
"""How a steepest-descent direction is scaled: ``"dual"`` gives ``||g||_* u`` (the
unnormalised step, ``<d, g> = ||g||_*^2``), ``"unit"`` gives ``u`` with ``||u|| = 1``."""


def _check_scale(scale: str) -> None:
    if scale not in ("dual", "unit"):
        raise ValueError(f"scale must be 'dual' or 'unit', got {scale!r}")


def sign_direction(g: PyTree, scale: Scale = "dual") -> PyTree:
    """l_inf steepest descent: ``||g||_1 sign(g)`` (``"dual"``) or ``sign(g)`` (``"unit"``)."""
    _check_scale(scale)
    signs = jax.tree.map(jnp.sign, g)
    if scale == "unit":
        return signs
    l1 = sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(g))
    return tree_scale(l1, signs)


def coordinate_direction(g: PyTree, scale: Scale = "dual") -> PyTree:
    """l_1 steepest descent: only the largest-``|g_j|`` coordinate of the whole pytree.

    ``g_j e_j`` (``"dual"``) or ``sign(g_j) e_j`` (``"unit"``).
    """
    _check_scale(scale)
    flat, unravel = ravel_pytree(g)
    if flat.size == 0:
        return g
    j = jnp.argmax(jnp.abs(flat))
    mask = jax.nn.one_hot(j, flat.size, dtype=flat.dtype)
    picked = flat if scale == "dual" else jnp.sign(flat)
    return unravel(mask * picked)


def l2_direction(g: PyTree) -> PyTree:
    """l2 steepest descent in the dual-scaled convention: ``g`` itself."""
    return g


def normalized_direction(g: PyTree) -> PyTree:
    """Unit l2 direction ``g / ||g||_2`` (``0`` where ``g = 0``)."""
    n = tree_norm(g)
    safe = jnp.where(n > 0, n, 1.0)
    return tree_scale(jnp.where(n > 0, 1.0 / safe, 0.0), g)


def dual_exponent(p: float) -> float:
    """Hoelder conjugate ``q`` of ``p`` (``1/p + 1/q = 1``; ``1 <-> inf``)."""
    p = float(p)
    if not p >= 1.0:
        raise ValueError(f"an l_p norm needs p >= 1, got p = {p}")
    if p == 1.0:
        return float("inf")
    if p == float("inf"):
        return 1.0
    return p / (p - 1.0)


def _abs_max(g: PyTree) -> jax.Array:
    leaves = jax.tree.leaves(g)
    if not leaves:
        return jnp.asarray(0.0)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) if x.size else jnp.zeros((), x.dtype)
                              for x in leaves]))


def tree_lp_norm(t: PyTree, p: float) -> jax.Array:
    """``||t||_p`` of the whole pytree as one vector, ``1 <= p <= inf``.

    Computed as ``m * (sum (|t|/m)^p)^(1/p)`` with ``m = max |t|`` (no overflow for large
    ``p`` or large entries); ``0`` for the zero tree.
    """
    p = float(p)
    dual_exponent(p)  # validates p
    m = _abs_max(t)
    if p == float("inf"):
        return m
    if p == 1.0:
        return sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(t))
    if p == 2.0:
        return tree_norm(t)
    safe = jnp.where(m > 0, m, 1.0)
    s = sum(jnp.sum((jnp.abs(x) / safe) ** p) for x in jax.tree.leaves(t))
    return jnp.where(m > 0, m * s ** (1.0 / p), 0.0)


def lp_direction(g: PyTree, p: float, scale: Scale = "dual") -> PyTree:
    """l_p steepest descent for ``1 < p < inf`` (see the module docstring):
    ``sign(g) |g|^(q-1) / ||g||_q^(q-2)`` (``"dual"``) or ``/ ||g||_q^(q-1)`` (``"unit"``),
    ``q = p/(p-1)``; ``0`` for ``g = 0``."""
    _check_scale(scale)
    p = float(p)
    q = dual_exponent(p)
    if p in (1.0, float("inf")):
        raise ValueError("lp_direction needs 1 < p < inf; use coordinate_direction (p = 1) "
                         "or sign_direction (p = inf), or steepest_direction")
    m = _abs_max(g)
    safe = jnp.where(m > 0, m, 1.0)
    r = jax.tree.map(lambda x: jnp.abs(x) / safe, g)            # in [0, 1]
    s = sum(jnp.sum(x**q) for x in jax.tree.leaves(r))           # ||g/m||_q^q >= 1
    # unit: sign r^(q-1) / s^((q-1)/q); dual: times ||g||_q = m s^(1/q)
    factor = s ** (-(q - 1.0) / q) if scale == "unit" else m * s ** ((2.0 - q) / q)
    factor = jnp.where(m > 0, factor, 0.0)
    return jax.tree.map(lambda x, a: (factor * jnp.sign(x) * a ** (q - 1.0)).astype(x.dtype),
                        g, r)


def steepest_direction(g: PyTree, p: float, scale: Scale = "dual") -> PyTree:
    """Steepest-descent direction of ``g`` for the l_p norm, ``1 <= p <= inf``: the exact
    l1 (coordinate), l2 and l_inf (sign) cases, :func:`lp_direction` otherwise."""
    _check_scale(scale)
    p = float(p)
    dual_exponent(p)
    if p == 1.0:
        return coordinate_direction(g, scale)
    if p == float("inf"):
        return sign_direction(g, scale)
    if p == 2.0:
        return l2_direction(g) if scale == "dual" else normalized_direction(g)
    return lp_direction(g, p, scale)

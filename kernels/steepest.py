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
    "l2_direction",
    "normalized_direction",
    "sign_direction",
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

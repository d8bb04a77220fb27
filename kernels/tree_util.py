"""Pytree vector-space helpers.

Parameters of a model are treated as one vector ``theta`` in the direct sum of
their leaves, ``theta = (theta_1, ..., theta_m)``.  The helpers below implement
the vector-space operations on that direct sum leaf by leaf, so no flat
``d``-vector (and certainly no ``d x d`` object) is ever built:

* ``tree_add(a, b) = a + b``, ``tree_sub(a, b) = a - b``
* ``tree_scale(s, a) = s a``, ``tree_axpy(alpha, x, y) = alpha x + y``
* ``tree_vdot(a, b) = <a, b> = sum_leaves sum_entries conj(a) b``
* ``tree_norm(a) = sqrt(<a, a>)``
* ``linear_combination(c, [t_1, ..., t_n]) = sum_j c_j t_j``

Leaves that are ``None`` (as produced by ``equinox.partition`` /
``equinox.filter``) are not leaves for ``jax.tree`` and are carried through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any
"""Any JAX pytree of arrays (dicts, tuples, equinox modules filtered to arrays); the
kernels act leafwise, e.g. ``tree_vdot(a, b) = sum_leaves <a_i, b_i>``."""

__all__ = [
    "PyTree",
    "check_float_params",
    "check_same_structure",
    "linear_combination",
    "tree_add",
    "tree_axpy",
    "tree_norm",
    "tree_rademacher",
    "tree_random_normal",
    "tree_scale",
    "tree_sub",
    "tree_vdot",
    "tree_zeros_like",
]


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise sum ``a + b``."""
    return jax.tree.map(jnp.add, a, b)


def tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise difference ``a - b``."""
    return jax.tree.map(jnp.subtract, a, b)


def tree_scale(s: jax.typing.ArrayLike, a: PyTree) -> PyTree:
    """Scalar multiple ``s * a``."""
    return jax.tree.map(lambda x: s * x, a)


def tree_axpy(alpha: jax.typing.ArrayLike, x: PyTree, y: PyTree) -> PyTree:
    """BLAS-style ``alpha * x + y``."""
    return jax.tree.map(lambda xi, yi: alpha * xi + yi, x, y)


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    """Euclidean inner product ``<a, b> = sum over leaves of vdot(a_leaf, b_leaf)``."""
    parts = jax.tree.leaves(jax.tree.map(jnp.vdot, a, b))
    if not parts:
        return jnp.zeros(())
    return sum(parts[1:], parts[0])


def tree_norm(a: PyTree) -> jax.Array:
    """Euclidean norm ``||a||_2 = sqrt(<a, a>)`` of the whole pytree."""
    return jnp.sqrt(jnp.real(tree_vdot(a, a)))


def tree_zeros_like(a: PyTree) -> PyTree:
    """Pytree of zeros with the structure, shapes and dtypes of ``a``."""
    return jax.tree.map(jnp.zeros_like, a)


def linear_combination(coeffs: Sequence[jax.typing.ArrayLike], trees: Sequence[PyTree]) -> PyTree:
    """Return ``sum_j coeffs[j] * trees[j]`` (all trees of one structure).

    Raises ``ValueError`` if the lengths differ or the sequence is empty.
    """
    if len(coeffs) != len(trees):
        raise ValueError(f"linear_combination: {len(coeffs)} coefficients for {len(trees)} trees")
    if not trees:
        raise ValueError("linear_combination: need at least one tree")
    for j, t in enumerate(trees[1:], start=1):
        check_same_structure(trees[0], t, f"linear_combination term {j}")
    out = tree_scale(coeffs[0], trees[0])
    for c, t in zip(coeffs[1:], trees[1:], strict=True):
        out = tree_axpy(c, t, out)
    return out


def check_same_structure(a: PyTree, b: PyTree, what: str = "pytrees") -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have equal tree structure and leaf shapes.

    The message names ``what`` and both structures.  Shapes are static, so this
    is safe (and free) inside ``jit``.
    """
    ta, tb = jax.tree.structure(a), jax.tree.structure(b)
    if ta != tb:
        raise ValueError(f"{what}: tree structures differ:\n  {ta}\nvs\n  {tb}")
    sa = [jnp.shape(x) for x in jax.tree.leaves(a)]
    sb = [jnp.shape(x) for x in jax.tree.leaves(b)]
    if sa != sb:
        raise ValueError(f"{what}: leaf shapes differ: {sa} vs {sb} (structure {ta})")


def check_float_params(params: PyTree) -> None:
    """Raise ``TypeError`` if any leaf of ``params`` is not floating/complex.

    Differentiation (``jax.jvp``/``jax.grad``) needs inexact parameters; an
    integer leaf such as ``jnp.array([1, 2])`` otherwise produces obscure
    ``float0`` errors deep inside a transformation.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = jax.tree_util.keystr(path) or "<root>"
        try:
            dtype = jnp.result_type(leaf)
        except TypeError as err:
            raise TypeError(
                f"parameter leaf {name} is not an array ({type(leaf).__name__}). Fix: split "
                "non-array leaves off with equinox.partition(model, eqx.is_inexact_array)."
            ) from err
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"parameter leaf {name} has dtype {dtype}; differentiation needs floating "
                "parameters. Fix: params = jax.tree.map(lambda x: jnp.asarray(x, float), params) "
                "or split them off with equinox.partition(model, eqx.is_inexact_array)."
            )


def _split_like(key: jax.Array, tree: PyTree) -> tuple[list[jax.Array], jax.tree_util.PyTreeDef]:
    leaves, treedef = jax.tree.flatten(tree)
    return list(jax.random.split(key, max(len(leaves), 1)))[: len(leaves)], treedef


def tree_random_normal(key: jax.Array, like: PyTree) -> PyTree:
    """Standard normal pytree with the structure, shapes and dtypes of ``like``."""
    keys, treedef = _split_like(key, like)
    leaves = jax.tree.leaves(like)
    out = [
        jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def tree_rademacher(key: jax.Array, like: PyTree) -> PyTree:
    """Rademacher (+-1 with probability 1/2) pytree shaped like ``like``."""
    keys, treedef = _split_like(key, like)
    leaves = jax.tree.leaves(like)
    out = [
        jax.random.rademacher(k, jnp.shape(x), jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)

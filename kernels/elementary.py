"""Elementary differentials of coloured vector fields over a DAG of rooted trees.

Tree DAG
--------
``nodes[i] = (color, children)`` with ``children`` a tuple of indices of
*earlier* nodes (``< i``), repeated for repeated children.  Node ``i`` stands
for the coloured rooted tree whose root has colour ``color`` and whose
subtrees are the trees of ``children``.  Sharing a subtree between parents is
expressed by reusing its index, so each subtree is evaluated once.

Generic fields
--------------
Given fields ``f_c : theta -> theta`` (pytree to pytree of the same shape),

    F(i) = D^k f_c(theta)[F(c_1), ..., F(c_k)],   k = len(children),

so a leaf is ``F = f_c(theta)`` (e.g. ``[[.], .]`` is ``f''(f'f, f)``).
``D^k`` is evaluated with ``k`` nested ``jax.jvp`` (``kernels.directional``);
the children's values are fixed tangents.

Gradient fields
---------------
For ``f_c = -grad L_c`` it is cheaper and more useful to work with

    G(leaf) = grad L_c,
    G(i)    = D^{k+1} L_c(theta)[G(c_1), ..., G(c_k), .]
            = grad_theta ( D^k L_c(theta)[G(c_1), ..., G(c_k)] ),

the gradient of a *scalar* (``loss_contraction``) with the ``G(c_j)`` held
fixed.  Since ``D^k f_c = -D^{k+1} L_c[..., .]`` and each child contributes
``F(c_j) = (-1)^{|c_j|} G(c_j)``, induction gives

    F(i) = (-1)^{|i|} G(i),   |i| = number of vertices of node i's tree

(``node_orders`` returns ``|i|``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax

from kernels.directional import nested_jvp
from kernels.tree_util import PyTree, check_float_params, check_same_structure

__all__ = [
    "Nodes",
    "elementary_differential",
    "elementary_differentials",
    "gradient_elementary_differential",
    "gradient_elementary_differentials",
    "loss_contraction",
    "node_orders",
    "validate_nodes",
]

Nodes = Sequence[tuple[int, tuple[int, ...]]]
"""A tree DAG as ``(color, children)`` pairs, children before parents: node ``i`` is
``F_i = f_color^(k)[F_c1, .., F_ck]`` for ``children = (c1, .., ck)`` (``()`` is a leaf,
``F_i = f_color``), so shared subtrees are one node, evaluated once."""
Fields = Sequence[Callable[[PyTree], PyTree]] | Mapping[int, Callable[[PyTree], PyTree]]
Losses = Sequence[Callable[[PyTree], jax.Array]] | Mapping[int, Callable[[PyTree], jax.Array]]


def _has_color(table: Fields | Losses, color: int) -> bool:
    if isinstance(table, Mapping):
        return color in table
    return 0 <= color < len(table)


def validate_nodes(nodes: Nodes, table: Fields | Losses | None = None) -> None:
    """Check DAG well-formedness: children precede parents; colours exist in ``table``.

    Raises ``ValueError`` with the offending node.
    """
    for i, node in enumerate(nodes):
        if len(node) != 2:
            raise ValueError(f"node {i} = {node!r} is not a (color, children) pair")
        color, children = node
        for c in children:
            if not 0 <= c < i:
                raise ValueError(
                    f"node {i} = {node!r}: child index {c} must refer to an earlier node (< {i})"
                )
        if table is not None and not _has_color(table, color):
            raise ValueError(f"node {i} = {node!r}: no field/loss for color {color}")


def node_orders(nodes: Nodes) -> list[int]:
    """``|i|``: number of vertices of the tree of each node (1 + sum over children)."""
    orders: list[int] = []
    for _, children in nodes:
        orders.append(1 + sum(orders[c] for c in children))
    return orders


def elementary_differential(field: Callable[[PyTree], PyTree], params: PyTree,
                            tangents: Sequence[PyTree]) -> PyTree:
    """One node: ``D^k f(theta)[v_1, ..., v_k]`` for ``tangents = (v_1, .., v_k)`` (``k``
    nested ``jax.jvp``; ``k = 0`` is ``f(theta)``), multilinear in the tangents.

    Example: ``elementary_differential(f, x, [f(x)])`` is ``f'(x) f(x)``."""
    return nested_jvp(field, params, list(tangents))


AD_MODES = ("reverse-over-forward", "forward-over-reverse")


def gradient_elementary_differential(loss: Callable[[PyTree], jax.Array], params: PyTree,
                                     tangents: Sequence[PyTree],
                                     mode: str = "reverse-over-forward") -> PyTree:
    """One node of a gradient field: ``grad_theta D^k L(theta)[v_1, .., v_k]`` =
    ``D^{k+1} L(theta)[v_1, .., v_k, .]`` (``k = 0`` is ``grad L``), multilinear in the
    tangents, which enter as constants.  ``mode``: ``"reverse-over-forward"`` (one reverse
    pass over ``k`` nested forward passes of the scalar loss) or ``"forward-over-reverse"``
    (``k`` nested forward passes over ``jax.grad``); same value, different cost.

    Example: ``gradient_elementary_differential(L, x, [g])`` is the Hessian-vector product
    ``H(x) g``."""
    return _gradient_node(loss, params, list(tangents), mode, "the loss")


def _gradient_node(loss: Callable[[PyTree], jax.Array], params: PyTree, tangents: list,
                   mode: str, what: str) -> PyTree:
    """:func:`gradient_elementary_differential`, ``what`` naming the loss in errors."""
    if mode == "forward-over-reverse":
        return nested_jvp(jax.grad(loss), params, tangents)
    if mode != "reverse-over-forward":
        raise ValueError(f"mode must be one of {AD_MODES}, got {mode!r}")

    def contraction(p: PyTree) -> jax.Array:
        out = nested_jvp(loss, p, tangents)
        if jax.numpy.shape(out) != ():
            raise ValueError(f"{what} must return a scalar, got shape "
                             f"{jax.numpy.shape(out)}")
        return out

    return jax.grad(contraction)(params)


def elementary_differentials(nodes: Nodes, fields: Fields, params: PyTree) -> list[PyTree]:
    """All ``F(i) = D^k f_c(theta)[F(c_1), ..., F(c_k)]``, bottom-up, each node once.

    ``fields[c]`` maps ``params`` to a pytree of the same structure.  The
    ``F(c_j)`` enter as closed-over jvp tangents.  Cost per node is about
    ``2^k`` evaluations of ``f_c``.
    """
    validate_nodes(nodes, fields)
    check_float_params(params)
    values: list[PyTree] = []
    for i, (color, children) in enumerate(nodes):
        out = elementary_differential(fields[color], params, [values[c] for c in children])
        check_same_structure(params, out, f"node {i} (field of color {color}) output vs params")
        values.append(out)
    return values


def loss_contraction(
    root_color: int,
    children: Sequence[int],
    losses: Losses,
    params: PyTree,
    values: Sequence[PyTree],
) -> jax.Array:
    """The scalar ``D^k L_c(theta)[sg v_1, ..., sg v_k]`` with ``v_j = values[children[j]]``.

    ``sg`` is ``jax.lax.stop_gradient``, so ``jax.grad`` of this with respect
    to ``params`` is ``D^{k+1} L_c[v_1, ..., v_k, .]`` with the children held
    fixed, i.e. ``G`` of the node.  ``k = 0`` gives ``L_c(theta)`` itself.
    """
    tangents = [jax.lax.stop_gradient(values[c]) for c in children]
    out = nested_jvp(losses[root_color], params, tangents)
    if jax.numpy.shape(out) != ():
        raise ValueError(f"loss of color {root_color} must return a scalar, got shape {out.shape}")
    return out


def gradient_elementary_differentials(nodes: Nodes, losses: Losses, params: PyTree) -> list[PyTree]:
    """All ``G(i) = grad_theta D^k L_c(theta)[G(c_1), ..., G(c_k)]``, bottom-up.

    ``G(leaf) = grad L_c``.  Related to the generic path with
    ``f_c = -grad L_c`` by ``F(i) = (-1)^{|i|} G(i)`` (see ``node_orders``).
    Each node costs one reverse pass over ``k`` nested forward passes of the
    scalar loss.

    The children enter the inner ``jax.grad`` as closed-over constants (no
    ``stop_gradient``), so the returned values stay differentiable: an outer
    ``jax.grad``/``jvp`` of a function of them sees their dependence on ``params``.
    """
    validate_nodes(nodes, losses)
    check_float_params(params)
    values: list[PyTree] = []
    for i, (color, children) in enumerate(nodes):
        values.append(_gradient_node(losses[color], params, [values[c] for c in children],
                                     "reverse-over-forward",
                                     f"loss of color {color} (node {i})"))
    return values

"""Factorised evaluation of sums of elementary differentials.

A modified field is a weighted sum ``S = sum_t w_t F(t)`` over trees ``t``.  Each
``F(t) = D^k f_c[F(t_1), .., F(t_k)]`` is multilinear in its children, so terms whose
roots have the same colour and arity and share all children but one collapse into one
derivative evaluation with a summed child:

    w_1 D^k f[a, .., b_1] + w_2 D^k f[a, .., b_2] = D^k f[a, .., w_1 F(b_1) + w_2 F(b_2)],

and the summed child is itself a sum of elementary differentials, factorised the same way.
For gradient descent's order-3 field, ``f'f''(f, f)/12 + f'f'f'f/4`` becomes
``f'[f''(f, f)/12 + f'f'f/4]``: one Hessian-vector product fewer than one per tree.
The same identity holds for gradient fields in the ``G`` normalisation of
:mod:`kernels.elementary` (``G(t) = grad D^k L[G(t_1), .., G(t_k)]`` is multilinear too).

:func:`factorise` turns ``S`` into a plan (:class:`Plan`) of derivative evaluations
(``Apply``), original DAG nodes evaluated once each (``Node``), and weighted sums
(``Sum``); :meth:`Plan.evaluate` runs it.  A merge never adds a derivative evaluation: it
replaces ``m`` of them by one, and a node it folds away is evaluated at most once more
where something else needs it.  The weights are runtime scalars (``c h^p``), so one plan
serves every step size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kernels import tree_util as tu

Weight = tuple[tuple[float, int], ...]
"""A runtime weight ``sum_j c_j h^(p_j)`` as ``((c_j, p_j), ..)``."""


@dataclass(frozen=True)
class Node:
    """The value of node ``index`` of the tree DAG (evaluated once, memoised)."""
    index: int


@dataclass(frozen=True)
class Apply:
    """``D^k f_color[children]`` (or ``grad D^k L_color[children]``) of sub-plans."""
    color: int
    children: tuple[Any, ...]


@dataclass(frozen=True)
class Sum:
    """``sum_j w_j value_j`` with runtime weights."""
    terms: tuple[tuple[Weight, Any], ...]


def _weight_sum(ws: Sequence[Weight]) -> Weight:
    return tuple(pair for w in ws for pair in w)


Term = tuple[Weight, tuple[int, ...], "int | None"]
"""``(w, children, node)``: ``w D^k f[fixed, children]``; ``node`` is the DAG node this
term is when nothing is fixed (``None`` once a child has been factored out)."""


def _merge(nodes: Sequence[tuple[int, tuple[int, ...]]], color: int, fixed: tuple,
           terms: list[Term]) -> list[tuple[Weight, Any]]:
    """``sum_t w_t D^k f_color[fixed, children_t]`` (same number of children in every
    term) as weighted sub-plans, merging terms that share a child."""
    arity = len(terms[0][1])
    if arity == 0:
        return [(_weight_sum([w for w, _, _ in terms]), Apply(color, fixed))]
    if arity == 1:
        inner = factorise(nodes, [(w, ch[0]) for w, ch, _ in terms])
        return [(((1.0, 0),), Apply(color, fixed + (inner,)))]
    counts = Counter(c for _, ch, _ in terms for c in set(ch))
    best, n = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    if n < 2:   # no child shared by two terms: one evaluation each (the DAG's own node,
        # memoised, when nothing is fixed)
        return [(w, Node(i) if i is not None else
                 Apply(color, fixed + tuple(Node(c) for c in ch))) for w, ch, i in terms]
    with_best, rest = [], []
    for w, ch, i in terms:
        if best in ch:
            left = list(ch)
            left.remove(best)
            with_best.append((w, tuple(left), None))
        else:
            rest.append((w, ch, i))
    out = _merge(nodes, color, fixed + (Node(best),), with_best)
    if rest:
        out += _merge(nodes, color, fixed, rest)
    return out


def factorise(nodes: Sequence[tuple[int, tuple[int, ...]]],
              terms: Sequence[tuple[Weight, int]]) -> Sum:
    """A plan for ``sum_j w_j F(node_j)`` over the DAG ``nodes`` (``(color, children)``
    pairs, children first, as in :mod:`kernels.elementary`)."""
    by_node: dict[int, list[Weight]] = {}
    for w, i in terms:
        by_node.setdefault(i, []).append(w)
    groups: dict[tuple[int, int], list[Term]] = {}
    for i, ws in by_node.items():
        color, children = nodes[i]
        groups.setdefault((color, len(children)), []).append(
            (_weight_sum(ws), tuple(children), i))
    out: list[tuple[Weight, Any]] = []
    for (color, _), group in sorted(groups.items()):
        if len(group) == 1:   # nothing to merge: the node itself (shared, memoised)
            w, _, i = group[0]
            out.append((w, Node(i)))
        else:
            out += _merge(nodes, color, (), group)
    return Sum(tuple(out))


def count_applies(plan: Any, nodes: Sequence[tuple[int, tuple[int, ...]]]) -> int:
    """Derivative evaluations the plan costs: its ``Apply`` steps plus the DAG nodes it
    reaches (each once, with their subtrees)."""
    seen: set[int] = set()

    def node(i: int) -> None:
        if i not in seen:
            seen.add(i)
            for c in nodes[i][1]:
                node(c)

    applies = 0

    def walk(e: Any) -> None:
        nonlocal applies
        if isinstance(e, Node):
            node(e.index)
        elif isinstance(e, Apply):
            applies += 1
            for c in e.children:
                walk(c)
        else:
            for _, sub in e.terms:
                walk(sub)

    walk(plan)
    return applies + len(seen)


class Plan:
    """A factorised sum over a DAG, evaluated by ``apply(color, params, child_values)``
    (one derivative evaluation: :func:`kernels.elementary_differential` or
    :func:`kernels.gradient_elementary_differential`)."""

    def __init__(self, nodes: Sequence[tuple[int, tuple[int, ...]]],
                 terms: Sequence[tuple[Weight, int]]):
        self.nodes = list(nodes)
        self.root = factorise(self.nodes, terms)
        self.applies = count_applies(self.root, self.nodes)

    def evaluate(self, apply: Callable[[int, Any, list], Any], params: Any, h: Any,
                 memo: dict[int, Any] | None = None) -> Any:
        """The sum at ``params`` for step size ``h``; ``memo`` (node index -> value) is
        shared between plans over the same DAG (several rows, one evaluation per node)."""
        memo = {} if memo is None else memo

        def node(i: int) -> Any:
            if i not in memo:
                color, children = self.nodes[i]
                memo[i] = apply(color, params, [node(c) for c in children])
            return memo[i]

        def weight(w: Weight) -> Any:
            out = 0.0
            for c, p in w:
                out = out + (c if p == 0 else c * h ** p)
            return out

        def ev(e: Any) -> Any:
            if isinstance(e, Node):
                return node(e.index)
            if isinstance(e, Apply):
                return apply(e.color, params, [ev(c) for c in e.children])
            vals = [ev(sub) for _, sub in e.terms]
            if not vals:
                return tu.tree_zeros_like(params)
            return tu.linear_combination([weight(w) for w, _ in e.terms], vals)

        return ev(self.root)

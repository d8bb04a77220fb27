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

Merging is not the whole story: a nested-jvp evaluation ``D^k f[v_1, .., v_k]`` computes
every ``D^|S| f[v_S]`` on the way (``H v_2`` beside ``D^3 L[v_1, v_2, .]``), and XLA
computes such a shared value once.  So a term whose node the plan computes anyway is
cheaper left as that node than merged into a new tangent; :func:`optimise` (what
:class:`Plan` uses) does that by a cost model of those shared values, calibrated on XLA's
flop counts.  Measured (XLA flops, 3e4-parameter MLP): GD's field at order 3 one HVP less
(equal to the hand-merged field's count), order 4 -16%, order 5 -19%, sgd(2) order 3 -24%
against the plain merge.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

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
           terms: list[Term], free: frozenset[int]) -> list[tuple[Weight, Any]]:
    """``sum_t w_t D^k f_color[fixed, children_t]`` (same number of children in every
    term) as weighted sub-plans, merging terms that share a child."""
    arity = len(terms[0][1])
    if arity == 0:
        return [(_weight_sum([w for w, _, _ in terms]), Apply(color, fixed))]
    if arity == 1:
        inner = factorise(nodes, [(w, ch[0]) for w, ch, _ in terms], free)
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
    out = _merge(nodes, color, fixed + (Node(best),), with_best, free)
    if rest:
        out += _merge(nodes, color, fixed, rest, free)
    return out


def factorise(nodes: Sequence[tuple[int, tuple[int, ...]]],
              terms: Sequence[tuple[Weight, int]], free: frozenset[int] = frozenset()
              ) -> Sum:
    """A plan for ``sum_j w_j F(node_j)`` over the DAG ``nodes`` (``(color, children)``
    pairs, children first, as in :mod:`kernels.elementary`).  Terms whose node is in
    ``free`` (computed anyway elsewhere: :func:`optimise`) stay that node, unmerged."""
    by_node: dict[int, list[Weight]] = {}
    for w, i in terms:
        by_node.setdefault(i, []).append(w)
    groups: dict[tuple[int, int], list[Term]] = {}
    out: list[tuple[Weight, Any]] = []
    for i, ws in by_node.items():
        if i in free:
            out.append((_weight_sum(ws), Node(i)))
            continue
        color, children = nodes[i]
        groups.setdefault((color, len(children)), []).append(
            (_weight_sum(ws), tuple(children), i))
    for (color, _), group in sorted(groups.items()):
        if len(group) == 1:   # nothing to merge: the node itself (shared, memoised)
            w, _, i = group[0]
            out.append((w, Node(i)))
        else:
            out += _merge(nodes, color, (), group, free)
    return Sum(tuple(out))


def _visit(plan: Any, nodes: Sequence[tuple[int, tuple[int, ...]]],
           on_node: Callable[[int], None], on_apply: Callable[[Apply], None]) -> None:
    """Walk the plan: ``on_node(i)`` once per DAG node it reaches (children first),
    ``on_apply(e)`` per ``Apply`` step (after its children)."""
    seen: set[int] = set()

    def node(i: int) -> None:
        if i not in seen:
            seen.add(i)
            for c in nodes[i][1]:
                node(c)
            on_node(i)

    def walk(e: Any) -> None:
        if isinstance(e, Node):
            node(e.index)
        elif isinstance(e, Apply):
            for c in e.children:
                walk(c)
            on_apply(e)
        else:
            for _, sub in e.terms:
                walk(sub)

    walk(plan)


def _reached_nodes(plan: Any, nodes: Sequence[tuple[int, tuple[int, ...]]]) -> list[int]:
    """The DAG nodes the plan evaluates (with their subtrees), children first."""
    out: list[int] = []
    _visit(plan, nodes, out.append, lambda e: None)
    return out


def count_applies(plan: Any, nodes: Sequence[tuple[int, tuple[int, ...]]]) -> int:
    """Derivative evaluations the plan costs: its ``Apply`` steps plus the DAG nodes it
    reaches (each once, with their subtrees)."""
    reached: list[int] = []
    applies: list[Apply] = []
    _visit(plan, nodes, reached.append, applies.append)
    return len(reached) + len(applies)


# Model of what XLA computes once.  One evaluation D^k f_c[v_1, .., v_k] by nested jvp
# (v_1 innermost) carries every partial product of its tangents: D^|S| f_c[v_S] for each
# subset S, so it yields, e.g., H v_2 beside D^3 L[v_1, v_2, .] (the outer jvp pushes v_2
# through the inner pass's primal grad L), and XLA's common-subexpression elimination
# merges those with another evaluation that needs the same subset of the same values.
# Cost of one subset's values, in units of one evaluation of f_c, from XLA's flop counts
# on the float32 MLP of benchmarks/bench_hand.py (1e5 parameters, forward-over-reverse):
# grad L 1, H v +2.0, D^3 L[g, g] +2.3, D^3 L[g, x] +2.6 (x not g).
_SUBSET_COST = (1.0, 2.0, 2.5)


def _subset_cost(size: int) -> float:
    return _SUBSET_COST[size] if size < len(_SUBSET_COST) else 2.0 + 0.5 * (size - 1)


def computed(plan: Any, nodes: Sequence[tuple[int, tuple[int, ...]]]) -> dict[tuple, int]:
    """The values the plan's evaluations compute, by the model above: ``(color, sorted
    tangent ids) -> subset size`` over every subset of every evaluation's tangents (a DAG
    node's id is its index; a summed tangent gets an id per distinct sub-plan)."""
    ids: dict[Any, int] = {}
    keys: dict[tuple, int] = {}

    def ident(e: Any) -> int:
        if isinstance(e, Node):
            return e.index
        return ids.setdefault(e, len(nodes) + len(ids))

    def evaluation(color: int, tangents: list[int]) -> None:
        k = len(tangents)
        # past 12 tangents (orders no compiled field reaches) only the whole set and
        # the single tangents: 2^k subsets would cost more than they tell
        subsets = (itertools.chain.from_iterable(itertools.combinations(range(k), r)
                                                 for r in range(k + 1))
                   if k <= 12 else [(), *((j,) for j in range(k)), tuple(range(k))])
        for sub in subsets:
            keys[(color, tuple(sorted(tangents[j] for j in sub)))] = len(sub)

    _visit(plan, nodes, lambda i: evaluation(nodes[i][0], list(nodes[i][1])),
           lambda e: evaluation(e.color, [ident(c) for c in e.children]))
    return keys


def model_cost(plan: Any, nodes: Sequence[tuple[int, tuple[int, ...]]]) -> float:
    """The plan's cost by the model above (evaluations of ``f_c``; weighted sums free)."""
    return sum(_subset_cost(size) for size in computed(plan, nodes).values())


def optimise(nodes: Sequence[tuple[int, tuple[int, ...]]],
             terms: Sequence[tuple[Weight, int]], rounds: int = 6) -> Sum:
    """:func:`factorise`, then: a term whose DAG node the plan computes anyway (a subset
    of another evaluation's tangents, e.g. ``H H g`` inside ``D^3 L[g, H g, .]``) is left
    out of merging and taken as that node, which frees more nodes in turn; of the plans
    this yields, the one the model costs least.

    For GD's order-3 field the merged plan ``-g + H[b] + D^3 L[g, c]`` with
    ``b = .. + H[a]``, ``a, c`` combinations of ``g`` and ``H g``, costs one HVP more than
    ``-g + H[..] - D^3 L[g, g] h^2/12 - D^3 L[g, H g] h^3/12`` with ``H a`` read from
    ``H g`` and ``H H g`` (the second comes with ``D^3 L[g, H g]``): XLA counts 1.04 vs
    0.94 GFLOP on a 1e5-parameter MLP, the hand-merged field's figure."""
    own = {i: (color, tuple(sorted(children))) for i, (color, children) in enumerate(nodes)}
    best = plan = factorise(nodes, terms)
    best_cost = model_cost(best, nodes)
    free: frozenset[int] = frozenset()
    for _ in range(rounds):
        keys = computed(plan, nodes)
        grown = free | {i for i, key in own.items() if key in keys and nodes[i][1]}
        if grown == free:
            break
        free = grown
        plan = factorise(nodes, terms, free)
        cost = model_cost(plan, nodes)
        if cost < best_cost:
            best, best_cost = plan, cost
    return best


def fold_into_applies(plan: Any, nodes: Sequence[tuple[int, tuple[int, ...]]]) -> Any:
    """Terms ``w F(node)`` with ``node = D f_c[v]`` (one child) beside a term
    ``c D f_c[S]`` of the same ``f_c`` with a constant ``c``, in one sum, become
    ``c D f_c[S + (w/c) v]``: the same value by linearity, the same evaluations (the
    node, if another evaluation needs it, is still computed there), one term less in the
    sum.  The hand-merged GD field writes ``H[-(h/2) g - (h^2/3) H g - ..]`` this way,
    where :func:`optimise` leaves ``-(h/2) H g`` beside ``H[..]`` (``H g`` being computed
    anyway); XLA (2 CPU cores) scheduled the latter form worse: GD's order-3 field on the
    small float64 net of ``benchmarks/bench_hand.py`` 1.05x the hand-written field, 1.00x
    folded (same flops either way)."""
    if isinstance(plan, Apply):
        return Apply(plan.color, tuple(fold_into_applies(c, nodes) for c in plan.children))
    if not isinstance(plan, Sum):
        return plan
    terms = [(w, fold_into_applies(sub, nodes)) for w, sub in plan.terms]
    # the single-child applies of each color with a constant weight c: (index, c)
    target: dict[int, tuple[int, float]] = {}
    for k, (w, sub) in enumerate(terms):
        if (isinstance(sub, Apply) and len(sub.children) == 1 and len(w) == 1
                and w[0][1] == 0 and w[0][0] != 0 and sub.color not in target):
            target[sub.color] = (k, w[0][0])
    folded: dict[int, list[tuple[Weight, Any]]] = {}
    keep = []
    for k, (w, sub) in enumerate(terms):
        if isinstance(sub, Node):
            color, children = nodes[sub.index]
            if len(children) == 1 and color in target:
                k_apply, c = target[color]
                folded.setdefault(k_apply, []).append(
                    (tuple((a / c, p) for a, p in w), Node(children[0])))
                continue
        keep.append(k)
    if not folded:
        return Sum(tuple(terms))
    out = []
    for k in keep:
        w, sub = terms[k]
        if k in folded:
            inner = sub.children[0]
            base = inner.terms if isinstance(inner, Sum) else ((((1.0, 0),), inner),)
            sub = Apply(sub.color, (Sum(tuple(base) + tuple(folded[k])),))
        out.append((w, sub))
    return Sum(tuple(out))


class Plan:
    """A factorised sum over a DAG, evaluated by ``apply(color, params, child_values)``
    (one derivative evaluation: :func:`kernels.elementary_differential` or
    :func:`kernels.gradient_elementary_differential`)."""

    def __init__(self, nodes: Sequence[tuple[int, tuple[int, ...]]],
                 terms: Sequence[tuple[Weight, int]], optimised: bool = True):
        """``optimised=False``: the plain merge (:func:`factorise`) without
        :func:`optimise`'s reuse of computed nodes (a reference for tests, benchmarks)."""
        self.nodes = list(nodes)
        self.root = (fold_into_applies(optimise(self.nodes, terms), self.nodes) if optimised
                     else factorise(self.nodes, terms))
        self.applies = count_applies(self.root, self.nodes)
        self.cost = model_cost(self.root, self.nodes)
        self._reached = sorted(_reached_nodes(self.root, self.nodes))

    def evaluate(self, apply: Callable[[int, Any, list], Any], params: Any, h: Any,
                 memo: dict[int, Any] | None = None) -> Any:
        """The sum at ``params`` for step size ``h``; ``memo`` (node index -> value) is
        shared between plans over the same DAG (several rows, one evaluation per node)."""
        memo = {} if memo is None else memo
        # h as an opaque value, never a compile-time constant: with a transform's fixed
        # learning rate XLA folded h and its powers into the loop fusions, and together
        # with a scalar multiply after the sum this made it fuse the last linear
        # combination into both readers of a bea.optax correction (measured: drift
        # correction of GD, order 2, 1e5-parameter MLP, 2 CPU cores: 1.10x the
        # hand-written step, 0.98-1.00x with this barrier and the negation in
        # bea.optax.drift; issue 20).  Weak typing is kept: float32 stays float32.
        h = jax.lax.optimization_barrier(jnp.asarray(h))

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

        # the DAG nodes first, children before parents (the order a hand-written
        # version computes g, H g, D^3 L[g, g], ..), then the merged evaluations
        for i in self._reached:
            node(i)
        return ev(self.root)

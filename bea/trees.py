"""Colored rooted trees, interned as integers.

A rooted tree is ``t = [t_1, ..., t_k]_c``: a root of color ``c`` with the children
``t_1..t_k`` (a multiset).  Plain (one-field) trees use color 0.  Every isomorphism class
is stored once in a global table and named by an integer id; the canonical key of a tree
is ``(color, sorted child ids)``, so two trees are equal exactly when their ids are.

Ids grow with the order (number of vertices): all trees of order < n have smaller ids
than the first tree of order n created by :func:`trees_of_order`.  This makes
order-by-order recursions (B-series, modified equations) plain loops over ids.

Quantities (Hairer, Lubich, Wanner, *Geometric Numerical Integration*, ch. III.1):

* ``order(t) = |t|``: number of vertices.
* ``sigma(t)``: symmetry factor, ``sigma([t_1^m_1 ... t_r^m_r]) = prod m_i! sigma(t_i)^m_i``.
* ``gamma(t)``: density, ``gamma(t) = |t| prod gamma(t_i)``; the exact flow has
  coefficients ``1/gamma(t)`` in the normalisation ``B(a) = y + sum h^|t| a(t)/sigma(t) F(t)``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import cache

# The intern table.  Index = tree id.
_KEYS: list[tuple[int, tuple[int, ...]]] = []
_IDS: dict[tuple[int, tuple[int, ...]], int] = {}
_ORDER: list[int] = []
_SIGMA: list[int] = []
_GAMMA: list[int] = []


def intern(color: int, children: Sequence[int] = ()) -> int:
    """Id of the tree with a root of ``color`` and the given child ids (any order)."""
    key = (color, tuple(sorted(children)))
    tid = _IDS.get(key)
    if tid is not None:
        return tid
    ch = key[1]
    tid = len(_KEYS)
    _KEYS.append(key)
    _IDS[key] = tid
    order_ = 1
    gam = 1
    sig = 1
    run = 0
    prev = -1
    for u in ch:   # sorted: equal children are adjacent runs (sigma's m_i!)
        order_ += _ORDER[u]
        gam *= _GAMMA[u]
        sig *= _SIGMA[u]
        run = run + 1 if u == prev else 1
        sig *= run
        prev = u
    _ORDER.append(order_)
    _SIGMA.append(sig)
    _GAMMA.append(gam * order_)
    return tid


def key(t: int) -> tuple[int, tuple[int, ...]]:
    """``(color, children)`` of tree ``t``."""
    return _KEYS[t]


def color(t: int) -> int:
    return _KEYS[t][0]


def children(t: int) -> tuple[int, ...]:
    return _KEYS[t][1]


def order(t: int) -> int:
    return _ORDER[t]


def sigma(t: int) -> int:
    return _SIGMA[t]


def gamma(t: int) -> int:
    return _GAMMA[t]


def leaf(c: int = 0) -> int:
    """The one-vertex tree of color ``c``."""
    return intern(c, ())


def graft(c: int, *subtrees: int) -> int:
    """``[t_1, ..., t_k]_c``: a new root of color ``c`` under the given trees."""
    return intern(c, subtrees)


def colors_used(t: int) -> frozenset[int]:
    c, ch = _KEYS[t]
    out = {c}
    for u in ch:
        out |= colors_used(u)
    return frozenset(out)


# --------------------------------------------------------------------------- enumeration

# Plain count of (uncolored) rooted trees; used to refuse impractical requests early.
_TREE_COUNTS = [0, 1, 1, 2, 4, 9, 20, 48, 115, 286, 719, 1842, 4766, 12486, 32973, 87811,
                235381, 634847, 1721159, 4688676, 12826228]


def count_trees(n: int, ncolors: int = 1) -> int:
    """Number of colored rooted trees of order ``n`` with ``ncolors`` colors.

    Computed by the Cayley/Polya recursion
    ``n T_{n+1} = sum_{k=1}^{n} (sum_{d|k} d T_d) T_{n-k+1}`` with ``T_1 = C`` colors
    (from ``T(x) = C x exp(sum_k T(x^k)/k)``),
    without building the trees.
    """
    return _count_table(ncolors, n)[n]


@cache
def _count_table(ncolors: int, nmax: int) -> tuple[int, ...]:
    T = [0, ncolors]
    for n in range(1, nmax):
        s = 0
        for k in range(1, n + 1):
            s += sum(d * T[d] for d in range(1, k + 1) if k % d == 0) * T[n - k + 1]
        T.append(s // n)
    return tuple(T[: nmax + 1]) if nmax >= 1 else (0,)


_BY_ORDER: dict[tuple[int, int], list[int]] = {}


def trees_of_order(n: int, ncolors: int = 1) -> list[int]:
    """All colored rooted trees of order ``n`` (colors ``0..ncolors-1``), as ids.

    Built as ``B+_c(forest)`` over all forests of weight ``n-1`` made of smaller trees;
    forests are non-decreasing id sequences, so each tree is produced once.
    """
    if n < 1:
        return []
    cached = _BY_ORDER.get((n, ncolors))
    if cached is not None:
        return cached
    by_order = [[]] + [sorted(trees_of_order(m, ncolors)) for m in range(1, n)]
    forests = list(_forests(n - 1, by_order, -1))
    out = []
    for c in range(ncolors):
        for f in forests:
            out.append(intern(c, f))
    _BY_ORDER[(n, ncolors)] = out
    return out


def _forests(w: int, by_order: list[list[int]], min_id: int) -> Iterator[tuple[int, ...]]:
    """Non-decreasing id tuples of trees (ids >= ``min_id``) of total order ``w``."""
    if w == 0:
        yield ()
        return
    for o in range(1, w + 1):
        pool = by_order[o]
        for i in range(bisect_left(pool, min_id), len(pool)):
            t = pool[i]
            if o == w:
                yield (t,)
            else:
                for rest in _forests(w - o, by_order, t):
                    yield (t,) + rest


def trees_up_to(n: int, ncolors: int = 1) -> list[int]:
    """All trees of orders ``1..n`` in increasing order."""
    return [t for m in range(1, n + 1) for t in trees_of_order(m, ncolors)]


# --------------------------------------------------------------------------- cuts


_CUTS: dict[int, tuple[tuple[int, int, int], ...]] = {}


def single_cuts(t: int, keep: bool = True) -> tuple[tuple[int, int, int], ...]:
    """All ways to cut one edge of ``t``: tuples ``(pruned, rest, multiplicity)``.

    ``pruned`` is the subtree below the cut edge, ``rest`` what stays with the root.
    Each edge of the (labelled) tree is counted once, so multiplicities add up to
    ``|t| - 1``.  This is the coproduct term dual to grafting (the pre-Lie product),
    used for Lie derivatives of B-series (HLW, Lemma IX.9.?; Chartier-Hairer-Vilmart 2010).
    """
    got = _CUTS.get(t)
    if got is not None:
        return got
    c, ch = _KEYS[t]
    acc: dict[tuple[int, int], int] = {}
    ids = _IDS
    prev = -1
    for i, child in enumerate(ch):
        if child == prev:   # children are sorted: a repeated child is adjacent
            continue
        prev = child
        m = ch.count(child)
        others = ch[:i] + ch[i + 1:]          # still sorted
        k0 = (child, _intern_sorted(c, others))
        acc[k0] = acc.get(k0, 0) + m      # cut the edge root--child
        for pruned, rest, k in single_cuts(child):   # cut an edge inside the child
            j = bisect_left(others, rest)
            key = (c, others[:j] + (rest,) + others[j:])
            rid = ids.get(key)   # _intern_sorted inlined: this line runs ~1M times
            k1 = (pruned, intern(c, key[1]) if rid is None else rid)
            acc[k1] = acc.get(k1, 0) + m * k
    out = tuple((p, r, m) for (p, r), m in acc.items())
    if keep:   # keep=False: the caller needs t's cuts once (trees of the top order)
        _CUTS[t] = out
    return out


def _intern_sorted(color: int, children: tuple[int, ...]) -> int:
    """:func:`intern` for an already sorted tuple of child ids (no sort, one lookup)."""
    tid = _IDS.get((color, children))
    return intern(color, children) if tid is None else tid


_SUBTREES: dict[int, tuple[tuple[int, tuple[int, ...], int], ...]] = {}


def ordered_subtrees(t: int) -> tuple[tuple[int, tuple[int, ...], int], ...]:
    """Non-empty subtrees ``s`` of ``t`` that contain the root, with the removed forest.

    Returns tuples ``(s, removed_forest, multiplicity)``, ``removed_forest`` a sorted
    tuple of tree ids (``t \\ s``).  With the empty subtree (forest ``{t}``) these are the
    admissible cuts of the composition law (HLW Theorem III.1.10):
    ``(a.b)(t) = b(0) a(t) + sum_s b(s) prod_{u in t\\s} a(u)``.
    """
    got = _SUBTREES.get(t)
    if got is not None:
        return got
    c, ch = _KEYS[t]
    # partial: list of (kept children ids, removed forest) with multiplicity
    partial: Counter[tuple[tuple[int, ...], tuple[int, ...]]] = Counter({((), ()): 1})
    for child in ch:
        options: list[tuple[int | None, tuple[int, ...], int]] = [(None, (child,), 1)]
        options += [(s, f, m) for s, f, m in ordered_subtrees(child)]
        nxt: Counter[tuple[tuple[int, ...], tuple[int, ...]]] = Counter()
        for (kept, removed), m0 in partial.items():
            for s, f, m in options:
                k2 = kept if s is None else tuple(sorted(kept + (s,)))
                nxt[(k2, tuple(sorted(removed + f)))] += m0 * m
        partial = nxt
    out = tuple((intern(c, kept), removed, m) for (kept, removed), m in partial.items())
    _SUBTREES[t] = out
    return out


# --------------------------------------------------------------------------- free trees


def _adjacency(t: int) -> tuple[list[int], list[list[int]]]:
    """Labelled copy of ``t``: vertex colors and adjacency lists; vertex 0 is the root."""
    colors: list[int] = []
    adj: list[list[int]] = []

    def walk(u: int, parent: int | None) -> None:
        v = len(colors)
        colors.append(_KEYS[u][0])
        adj.append([])
        if parent is not None:
            adj[v].append(parent)
            adj[parent].append(v)
        for ch in _KEYS[u][1]:
            walk(ch, v)

    walk(t, None)
    return colors, adj


def _rooted_at(colors: list[int], adj: list[list[int]], root: int) -> int:
    def build(v: int, parent: int) -> int:
        return intern(colors[v], [build(w, v) for w in adj[v] if w != parent])

    return build(root, -1)


@cache
def rootings(t: int) -> tuple[int, ...]:
    """The rooted tree obtained from ``t``'s free tree by rooting at each vertex.

    One entry per labelled vertex (so isomorphic rootings repeat); entry 0 is ``t``.
    Rerooting in one pass (O(|t|) interns, not O(|t|^2)): moving the root from ``u`` to
    its child ``v`` makes ``up(v) = [siblings of v, up(u)]_{color(u)}`` a new child of
    ``v``, so the tree rooted at ``v`` is ``[children of v, up(v)]_{color(v)}``.
    """
    out: list[int] = []

    def walk(u: int, up: int | None) -> None:
        c, ch = _KEYS[u]
        out.append(u if up is None else _insert_child(c, ch, up))
        prev = up_v = -1
        for i, v in enumerate(ch):
            if v == prev:
                # an identical sibling has the same up-tree
                walk(v, up_v)
                continue
            prev = v
            others = ch[:i] + ch[i + 1:]
            up_v = _intern_sorted(c, others) if up is None else _insert_child(c, others, up)
            walk(v, up_v)

    walk(t, None)
    return tuple(out)


def _insert_child(c: int, sorted_children: tuple[int, ...], extra: int) -> int:
    j = bisect_left(sorted_children, extra)
    return _intern_sorted(c, sorted_children[:j] + (extra,) + sorted_children[j:])


@cache
def free_tree(t: int) -> int:
    """Canonical representative of the free (unrooted) tree of ``t``: the smallest id
    among its rootings."""
    return min(rootings(t))


def free_sigma(t: int) -> int:
    """Order of the automorphism group of the free colored tree of ``t``.

    By orbit-stabiliser, a vertex v has ``|Aut(u)| / sigma(u_v)`` images, and the number
    of labelled vertices giving the rooting ``t`` is exactly the orbit of such a vertex.
    """
    r = rootings(t)
    n_t = sum(1 for s in r if s == t)
    return n_t * sigma(t)


def root_degree(t: int) -> int:
    return len(_KEYS[t][1])


# --------------------------------------------------------------------------- public object


class Tree:
    """A colored rooted tree, a thin wrapper over its interned id.

    >>> Tree.parse("[[.],.]").order
    4
    """

    __slots__ = ("id",)

    def __init__(self, tid: int):
        self.id = tid

    @classmethod
    def parse(cls, s: str) -> Tree:
        """Parse bracket notation: ``.`` a leaf, ``[a,b]`` a root with children a, b;
        a color is a trailing ``_k`` (``[._1,.]_0``).  Nesting deeper than
        :attr:`bea.limits.Limits.tree_depth` is refused before parsing (no recursion
        error on ``[[[[...]]]]``)."""
        from .limits import check_bracket_depth

        if not isinstance(s, str):
            raise ValueError(f"a tree is written as a string like '[[.]]', got {s!r}")
        check_bracket_depth(s)
        pos = 0

        def parse_color() -> int:
            nonlocal pos
            if pos < len(s) and s[pos] == "_":
                pos += 1
                start = pos
                while pos < len(s) and s[pos].isdigit():
                    pos += 1
                return int(s[start:pos])
            return 0

        def node() -> int:
            nonlocal pos
            if s[pos] == ".":
                pos += 1
                return leaf(parse_color())
            if s[pos] != "[":
                raise ValueError(f"cannot parse tree {s!r} at position {pos}")
            pos += 1
            kids = []
            while s[pos] != "]":
                kids.append(node())
                if s[pos] == ",":
                    pos += 1
            pos += 1
            return intern(parse_color(), kids)

        s = s.replace(" ", "")
        tid = node()
        if pos != len(s):
            raise ValueError(f"trailing characters in tree {s!r}")
        return cls(tid)

    @property
    def order(self) -> int:
        return order(self.id)

    @property
    def sigma(self) -> int:
        return sigma(self.id)

    @property
    def gamma(self) -> int:
        return gamma(self.id)

    @property
    def color(self) -> int:
        return color(self.id)

    @property
    def children(self) -> tuple[Tree, ...]:
        return tuple(Tree(c) for c in children(self.id))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tree) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __str__(self) -> str:
        return bracket(self.id)

    def __repr__(self) -> str:
        return f"Tree({bracket(self.id)!r})"


def bracket(t: int, show_colors: bool | None = None) -> str:
    """Bracket notation of ``t`` (colors shown when any is non-zero)."""
    if show_colors is None:
        show_colors = colors_used(t) != frozenset({0})
    c, ch = _KEYS[t]
    suffix = f"_{c}" if show_colors else ""
    if not ch:
        return "." + suffix
    return "[" + ",".join(bracket(u, show_colors) for u in ch) + "]" + suffix


_CANON: dict[int, tuple] = {}


def canonical_key(t: int) -> tuple:
    """A sort key of ``t`` independent of interning order: ``(order, color, sorted
    children keys)``.  Sorting the trees of one order by it gives the order in which a
    fresh process enumerates them, so printed output is the same whether trees were
    first made by a derivation or read from the cache."""
    got = _CANON.get(t)
    if got is None:
        c, ch = _KEYS[t]
        got = (_ORDER[t], c, tuple(sorted(canonical_key(u) for u in ch)))
        _CANON[t] = got
    return got


def canonical_sort(trees: Iterable[int]) -> list[int]:
    """``trees`` in :func:`canonical_key` order."""
    return sorted(trees, key=canonical_key)

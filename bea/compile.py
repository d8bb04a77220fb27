"""Compile modified equations and losses to Hessian-free JAX functions.

The terms ``f_k = sum_t c_t F(t)`` are evaluated on a DAG holding every tree needed (and
all their subtrees) once: bottom-up, each node one directional derivative of its root's
field (:mod:`kernels.elementary`).  For gradient fields ``f_c = -grad L_c`` a node is one
reverse pass over nested forward passes of the scalar loss, and ``F(t) = (-1)^|t| G(t)``.
Memory stays O(parameters) per node; nothing builds a Hessian.

Losses are functions ``L(params, batch) -> scalar`` (or ``L(params)`` when no batches are
passed).  One loss serves every color (batch c is ``batches[c]``), or give one loss per
color.  For methods on parameter blocks (:func:`block_names`: the players of a game, any
number of them), ``params = (p_1, .., p_n)`` and each ``L_c`` takes the joint ``params``;
field c is ``-grad_c L_c`` on block c, zero on the others.

Step size and batches are call arguments, so one compilation serves a whole run.
Verification numerics want float64: enable ``jax.config.update("jax_enable_x64", True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import sympy

import kernels
from kernels import tree_util as tu

from . import trees as T
from .factorise import Plan
from .methods import block_names

Loss = Callable[..., jax.Array]


class TreeDAG:
    """Trees (and their subtrees) as kernel nodes, children first: ``nodes[i] = (color,
    children)`` (:mod:`kernels.elementary`), ``index[tree] = i``; a subtree shared by
    several trees is one node, evaluated once."""

    def __init__(self, roots: Sequence[int]):
        self.index: dict[int, int] = {}
        self.nodes: list[tuple[int, tuple[int, ...]]] = []
        for t in roots:
            self.add(t)

    def add(self, t: int) -> int:
        got = self.index.get(t)
        if got is not None:
            return got
        c, ch = T.key(t)
        kids = tuple(self.add(u) for u in ch)
        self.index[t] = len(self.nodes)
        self.nodes.append((c, kids))
        return self.index[t]


class TreeSums:
    """``sum_k h^k sum_t c_t F(t)`` over one :class:`TreeDAG`: the one evaluator of sums
    of elementary differentials (modified equations, modifying integrators, series maps).

    ``rows[k]`` lists ``(tree, c)`` for the power ``powers[k]`` of ``h``.
    :meth:`factorised_total` and :meth:`factorised_rows` (what the compiled objects,
    transforms and verification call) evaluate the sums by a :class:`bea.factorise.Plan`,
    merging terms that share an outer derivative.  :meth:`values` with :meth:`total` /
    :meth:`row` is the plain per-node evaluation (every DAG node once: for gradient fields
    ``f_c = -grad L_c`` on the losses, ``F(t) = (-1)^|t| G(t)``, else on the fields), kept
    as the reference the tests and ``benchmarks/bench_hand.py`` compare with.
    """

    def __init__(self, rows: Sequence[Sequence[tuple[int, float]]], powers: Sequence[int]):
        self.powers = list(powers)
        if len(self.powers) != len(rows):
            raise ValueError("need one power of h per row")
        # rows are added in order and every tree after its subtrees, so the nodes that the
        # rows of powers <= p need are a prefix of the node list: a truncated sum evaluates
        # only that prefix (verification traces one branch per order; most are short)
        self.dag = TreeDAG([])
        self._prefix: list[int] = []
        for row in rows:
            for t, _ in row:
                self.dag.add(t)
            self._prefix.append(len(self.dag.nodes))
        self.rows = [[(self.dag.index[t], c) for t, c in row] for row in rows]
        self._orders_of = kernels.node_orders(self.dag.nodes)
        self._plans: dict[tuple, Plan] = {}

    def needed(self, up_to: int | None) -> int:
        """How many nodes (a prefix of ``dag.nodes``) the rows of powers ``<= up_to`` use."""
        if up_to is None:
            return len(self.dag.nodes)
        pairs = zip(self._prefix, self.powers, strict=True)
        return max([n for n, p in pairs if p <= up_to], default=0)

    def values(self, params: Any, *, losses: Sequence[Callable] | None = None,
               fields: Sequence[Callable] | None = None, up_to: int | None = None
               ) -> list[Any]:
        """``F`` of every node at ``params`` (of those the powers ``<= up_to`` need), from
        ``losses`` (gradient fields) or ``fields`` (already bound to their batches)."""
        nodes = self.dag.nodes[:self.needed(up_to)]
        if not nodes:
            return []
        if fields is not None:
            return kernels.elementary_differentials(nodes, fields, params)
        G = kernels.gradient_elementary_differentials(nodes, losses, params)
        return [v if self._orders_of[i] % 2 == 0 else tu.tree_scale(-1.0, v)
                for i, v in enumerate(G)]

    # -- factorised evaluation (bea.factorise): terms sharing an outer derivative merged
    def plan(self, ks: tuple[int, ...], gradient: bool, with_h: bool) -> Plan:
        """The factorised plan (cached) of rows ``ks``: weights ``c h^power`` (``with_h``)
        or ``c``; ``gradient``: in the G form of gradient fields (signs ``(-1)^|t|``)."""
        key = (ks, gradient, with_h)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(self.dag.nodes, self.plan_terms(ks, gradient,
                                                                            with_h))
        return plan

    def plan_terms(self, ks: tuple[int, ...], gradient: bool, with_h: bool
                   ) -> list[tuple[tuple[tuple[float, int], ...], int]]:
        """The ``(weight, node)`` terms :meth:`plan` factorises (same arguments)."""
        terms = []
        for k in ks:
            p = self.powers[k] if with_h else 0
            for i, c in self.rows[k]:
                sign = -1.0 if gradient and self._orders_of[i] % 2 else 1.0
                terms.append((((sign * c, p),), i))
        return terms

    #: how a gradient-field node ``grad D^k L[v_1..v_k]`` is differentiated:
    #: ``"by-arity"`` (default) is reverse-over-forward for k <= 1 and forward-over-reverse
    #: for k >= 2, the faster of the two (or within 2%) at every arity on the MLPs of
    #: benchmarks/bench_hand.py (e.g. k = 3 on 1e6 parameters: forward-over-reverse 0.54x
    #: the time; k = 1: reverse-over-forward 0.77x); one of kernels.elementary.AD_MODES for
    #: every node; or a pair ``(mode for k <= 1, mode for k >= 2)``, what
    #: :meth:`CompiledModifiedEquation.tune_ad_mode` picks by timing on the user's problem
    ad_mode: str | tuple[str, str] = "by-arity"

    def _apply(self, losses: Sequence[Callable] | None, fields: Sequence[Callable] | None,
               ad_mode: str | tuple[str, str] | None = None) -> Callable:
        if fields is not None:
            return lambda c, p, vals: kernels.elementary_differential(fields[c], p, vals)
        mode = self.ad_mode if ad_mode is None else ad_mode
        if mode == "by-arity":
            low, high = "reverse-over-forward", "forward-over-reverse"
        elif isinstance(mode, tuple):
            low, high = mode
        else:
            low = high = mode

        def apply(c, p, vals):
            mode = high if len(vals) >= 2 else low
            return kernels.gradient_elementary_differential(losses[c], p, vals, mode=mode)

        return apply

    def factorised_total(self, params: Any, h: Any, *, losses: Sequence[Callable] | None = None,
                         fields: Sequence[Callable] | None = None, up_to: int | None = None,
                         ad_mode: str | tuple[str, str] | None = None) -> Any:
        """``sum_k h^powers[k] row_k`` (powers ``<= up_to``) by one factorised plan
        (:mod:`bea.factorise`): equal to :meth:`total` of :meth:`values`, with terms that
        share an outer derivative evaluated as one."""
        ks = tuple(k for k, p in enumerate(self.powers)
                   if (up_to is None or p <= up_to) and self.rows[k])
        if not ks:
            return tu.tree_zeros_like(params)
        plan = self.plan(ks, fields is None, True)
        return plan.evaluate(self._apply(losses, fields, ad_mode), params, h)

    def factorised_rows(self, params: Any, *, losses: Sequence[Callable] | None = None,
                        fields: Sequence[Callable] | None = None) -> list[Any]:
        """Every row ``sum_t c_t F(t)``, each by its factorised plan, the DAG nodes shared
        between rows evaluated once."""
        memo: dict[int, Any] = {}
        apply = self._apply(losses, fields)
        return [self.plan((k,), fields is None, False).evaluate(apply, params, 1.0, memo)
                if self.rows[k] else tu.tree_zeros_like(params)
                for k in range(len(self.rows))]

    def row(self, values: list[Any], k: int, params: Any) -> Any:
        """``sum_t c_t F(t)`` of row ``k``."""
        row = self.rows[k]
        if not row:
            return tu.tree_zeros_like(params)
        return tu.linear_combination([c for _, c in row], [values[i] for i, _ in row])

    def total(self, values: list[Any], params: Any, h: Any, up_to: int | None = None) -> Any:
        """``sum_k h^powers[k] row_k`` over the rows with ``powers[k] <= up_to``."""
        out = tu.tree_zeros_like(params)
        for k, p in enumerate(self.powers):
            if (up_to is not None and p > up_to) or not self.rows[k]:
                continue
            out = tu.tree_add(out, tu.tree_scale(h ** p, self.row(values, k, params)))
        return out


def check_ad_mode(ad_mode: Any, who: str) -> str | tuple[str, str]:
    """``ad_mode`` as :class:`TreeSums` takes it (``"by-arity"``, one of
    ``kernels.elementary.AD_MODES``, or a pair ``(mode for k <= 1, mode for k >= 2)``), or
    a ``ValueError`` naming the choices."""
    modes = kernels.elementary.AD_MODES
    if ad_mode == "by-arity" or (isinstance(ad_mode, str) and ad_mode in modes):
        return ad_mode
    if (isinstance(ad_mode, (tuple, list)) and len(ad_mode) == 2
            and all(isinstance(m, str) and m in modes for m in ad_mode)):
        return (ad_mode[0], ad_mode[1])
    raise ValueError(f"{who}: ad_mode must be 'by-arity', one of {modes}, or a pair of "
                     f"them (mode for nodes with <= 1 tangent, mode for >= 2), got "
                     f"{ad_mode!r}")


_STEP_ARRAYS: dict[float, Any] = {}


def _step_arg(h: Any) -> Any:
    """``h`` as a jit argument.  A Python number becomes a weakly typed device scalar
    (``jax.device_put``: the same abstract value, hence the same compiled program and
    result dtype, as the number itself), made once per value and kept: jit converting a
    Python float on every call cost ~3% of a 0.45 ms field on the small net of
    ``benchmarks/bench_hand.py``.  At most 64 values are kept (a schedule of many step
    sizes converts the others per call, as before)."""
    if isinstance(h, (int, float)) and not isinstance(h, bool):
        h = float(h)
        out = _STEP_ARRAYS.get(h)
        if out is None:
            out = jax.device_put(h)
            # under a trace (field called inside the user's jit) device_put gives a
            # tracer: never keep one
            if len(_STEP_ARRAYS) < 64 and not isinstance(out, jax.core.Tracer):
                _STEP_ARRAYS[h] = out
        return out
    return jnp.asarray(h)


def numeric_coefficient(coef: sympy.Expr, subs: dict | None, what: str) -> float:
    """A series coefficient as a float, its symbols given by ``subs``; a named error
    when symbols remain."""
    from .symbol_table import exact_subs, substitute

    # by name, exact validated values, xreplace (never sympy's .subs on user strings)
    c = substitute(coef, exact_subs(subs))
    if c.free_symbols:
        names = sorted(str(s) for s in c.free_symbols)
        raise ValueError(f"{what} depends on the symbols {', '.join(names)}: give numbers, "
                         f"e.g. method.bind({names[0]}=0.9), or subs={{'{names[0]}': 0.9}} "
                         f"to to_jax()/verify()")
    return float(c)


def equation_sums(equation: Any, orders: Sequence[int], subs: dict | None = None) -> TreeSums:
    """The :class:`TreeSums` of ``equation``'s terms ``f_k``, ``k`` in ``orders`` (powers
    ``h^k``), coefficients as floats (symbols given by ``subs``), zero terms left out."""
    rows = []
    for k in orders:
        row = []
        for term in equation.terms(k):
            c = numeric_coefficient(term.coefficient, subs,
                                    f"the coefficient of {T.bracket(term.tree)}")
            if c != 0.0:
                row.append((term.tree, c))
        rows.append(row)
    return TreeSums(rows, orders)


def _leaf_signature(v: Any) -> Any:
    try:
        return v.shape, v.dtype
    except AttributeError:
        return type(v)


class BoundProblem:
    """Losses (or fields) given for a method: validation, binding to batches, and the
    per-color fields (block fields for methods with :func:`block_names`)."""

    def __init__(self, method: Any, loss: Loss | Sequence[Loss] | None,
                 fields: Sequence[Callable] | None):
        self.method = method
        self.ncolors = method.ncolors
        self.blocks = block_names(method)
        self.players = self.blocks   # the name games use
        if (loss is None) == (fields is None):
            raise ValueError("give either loss=... (gradient fields) or fields=... (general)")
        self.general = fields is not None
        given = fields if fields is not None else loss
        if callable(given):
            given = [given] * self.ncolors if not self.blocks or fields is not None else None
            if given is None:
                raise ValueError(f"{method.name} has one field per parameter block "
                                 f"{self.blocks}: pass one loss per block (L_1, .., "
                                 f"L_{self.ncolors}), each on the joint params")
        given = list(given)
        if len(given) != self.ncolors:
            raise ValueError(f"{method.name} needs {self.ncolors} "
                             f"{'fields' if self.general else 'losses'} (one per "
                             f"{'block' if self.blocks else 'color/batch'}), got {len(given)}")
        self.items = given
        self._checked: set = set()

    def bind(self, batches: Sequence[Any] | None) -> list[Callable]:
        if batches is not None and len(batches) != self.ncolors:
            raise ValueError(f"need {self.ncolors} batches (one per batch of the method), "
                             f"got {len(batches)}")
        out = []
        for c, f in enumerate(self.items):
            if batches is None:
                out.append(f)
            else:
                out.append(lambda p, f=f, b=batches[c]: f(p, b))
        return out

    def check_cached(self, params: Any, batches: Sequence[Any] | None) -> None:
        """:meth:`check` once per signature (structure, shapes, dtypes of params and
        batches): the checks trace the losses (``eval_shape``), which otherwise costs
        about a millisecond on every call."""
        try:
            leaves, treedef = jax.tree.flatten((params, batches))
            sig = (treedef, tuple([_leaf_signature(v) for v in leaves]))
            hash(sig)
        except TypeError:
            sig = None
        if sig is not None and sig in self._checked:
            return
        self.check(params, self.bind(batches))
        if sig is not None:
            self._checked.add(sig)

    def check(self, params: Any, bound: list[Callable]) -> None:
        """Clear errors before any tracing error: integer params, non-scalar losses,
        structure mismatches, block params of the wrong length."""
        tu.check_float_params(params)
        if self.blocks is not None and not (isinstance(params, (tuple, list))
                                            and len(params) == len(self.blocks)):
            names = ", ".join(self.blocks)
            raise ValueError(f"{self.method.name} acts on {len(self.blocks)} parameter blocks: "
                             f"params = ({names}), one pytree per block")
        for c, f in enumerate(bound):
            try:
                out = jax.eval_shape(f, params)
            except TypeError as e:
                raise ValueError(f"calling {'field' if self.general else 'loss'} {c} on the "
                                 f"params failed: {e}") from e
            if self.general:
                tu.check_same_structure(params, out, f"field {c} output vs params")
            elif getattr(out, "shape", None) != ():
                raise ValueError(f"loss {c} must return a scalar, got shape "
                                 f"{getattr(out, 'shape', type(out))}: reduce it (e.g. .mean())")

    def fields(self, bound: list[Callable]) -> list[Callable]:
        if self.general:
            return bound
        if self.blocks is None:
            return [lambda p, L=L: tu.tree_scale(-1.0, jax.grad(L)(p)) for L in bound]
        out = []
        for c, L in enumerate(bound):
            # block field c: -grad of L_c with respect to block c, zero on the other blocks
            def f(p, L=L, c=c):
                g = jax.grad(L)(p)
                return tuple(tu.tree_scale(-1.0, g[i]) if i == c else tu.tree_zeros_like(p[i])
                             for i in range(len(p)))
            out.append(f)
        return out


class CompiledModifiedEquation:
    """Jitted modified field of ``equation`` on JAX losses or fields.

    ``terms(params, batches)`` -> ``[f_0, .., f_p]`` (pytrees like params);
    ``field(params, h, batches, order=None)`` -> ``sum_k h^k f_k``.
    """

    def __init__(self, equation: Any, loss: Any = None, fields: Any = None,
                 subs: dict | None = None, orders: Sequence[int] | None = None):
        self.equation = equation
        self.problem = BoundProblem(equation.method, loss, fields)
        self.orders = list(range(equation.order + 1)) if orders is None else list(orders)
        self.sums = equation_sums(equation, self.orders, subs)
        self.dag = self.sums.dag
        self._terms = jax.jit(self._checked_terms)
        self._field = jax.jit(self._checked_field, static_argnames=("order",))

    def _sources(self, batches):
        bound = self.problem.bind(batches)
        if self.problem.general or self.problem.blocks is not None:
            return {"fields": self.problem.fields(bound)}
        return {"losses": bound}

    def _terms_impl(self, params, batches):
        return self.sums.factorised_rows(params, **self._sources(batches))

    # The jitted terms and field run the problem's checks while jit traces them: once per
    # signature (structure, shapes, dtypes), which jit's own cache keys on, instead of a
    # check_cached lookup on every call (~15 us, 3% of the small net's order-2 field in
    # benchmarks/bench_hand.py).  Same errors, raised from the first call.
    def _checked_terms(self, params, batches):
        self.problem.check(params, self.problem.bind(batches))
        return self._terms_impl(params, batches)

    def _checked_field(self, params, h, batches, order=None):
        self.problem.check(params, self.problem.bind(batches))
        return self.evaluate(params, h, batches, order)

    def evaluate(self, params: Any, h: Any, batches: tuple | None, order: int | None = None
                 ) -> Any:
        """The field without checks or jit (traced by the caller: verification kernels,
        transforms): ``sum_{k <= order} h^k f_k``, batches a tuple or None.  Terms that
        share an outer derivative are evaluated as one (:mod:`bea.factorise`)."""
        return self.sums.factorised_total(params, h, up_to=order, **self._sources(batches))

    def terms(self, params: Any, batches: Sequence[Any] | None = None) -> list[Any]:
        return self._terms(params, None if batches is None else tuple(batches))

    def field(self, params: Any, h: float, batches: Sequence[Any] | None = None,
              order: int | None = None) -> Any:
        """``f_0 + h f_1 + .. + h^order f_order`` at ``params`` (all orders by default)."""
        return self._field(params, _step_arg(h), None if batches is None else tuple(batches),
                           order)

    __call__ = field

    def tune_ad_mode(self, params: Any, h: float, batches: Sequence[Any] | None = None,
                     repeats: int = 5, rounds: int = 3) -> dict[tuple[str, str], float]:
        """Choose how the field's derivative nodes are differentiated by timing them here.

        Tries the four pairs (mode for nodes ``grad D^k L`` with ``k <= 1``, mode for
        ``k >= 2``) of reverse-over-forward / forward-over-reverse on ``field(params, h,
        batches)``: all four compiled first, then timed in ``rounds`` alternating rounds
        of ``repeats`` calls each; a pair's score is its fastest round's median, so load
        from other processes hits the candidates alike.  Keeps the fastest
        (``self.sums.ad_mode``) and returns every pair's score in seconds.  Same value
        every way (multilinear derivatives); only the cost differs, by the model, size and
        device (``benchmarks/bench_hand.py``; the default rule ``"by-arity"`` is the first
        pair).  General fields and games have one mode and return ``{}``.  Compiles four
        programs: worth it before a long run, not per call.
        """
        from .timing import AD_MODE_PAIRS, fastest_by_rounds

        if self.problem.general or self.problem.blocks is not None:
            return {}
        self.problem.check_cached(params, batches)
        hj = _step_arg(h)   # as field() passes it
        bt = None if batches is None else tuple(batches)
        sums = self.sums

        def under(pair: tuple[str, str]) -> Callable:
            # a fresh function per pair: jit caches traces by the function, and two jits of
            # the same bound method share one cache (the mode is read while tracing)
            def run(p: Any, hh: Any, b: Any) -> Any:
                sums.ad_mode = pair
                return self.evaluate(p, hh, b)
            return jax.jit(run)

        jitted = {pair: under(pair) for pair in AD_MODE_PAIRS}
        fns = {pair: (lambda f=f: f(params, hj, bt)) for pair, f in jitted.items()}
        best = fastest_by_rounds(fns, repeats, rounds)
        chosen = min(best, key=best.get)
        sums.ad_mode = chosen

        def field(p: Any, hh: Any, b: Any, order: int | None = None) -> Any:
            sums.ad_mode = chosen
            return self._checked_field(p, hh, b, order)

        def terms(p: Any, b: Any) -> Any:
            sums.ad_mode = chosen
            return self._checked_terms(p, b)

        self._field = jax.jit(field, static_argnames=("order",))
        self._terms = jax.jit(terms)
        return best


class CompiledModifiedLoss:
    """Jitted modified loss: ``loss(params, h, batches, player=None)`` -> scalar with
    ``-grad loss == field`` (stop-gradients as ``jax.lax.stop_gradient``), and
    ``regularizer(...)``: the same without the order-0 term."""

    def __init__(self, modified_loss: Any, loss: Any, subs: dict | None = None,
                 orders: Sequence[int] | None = None):
        self.ml = modified_loss
        self.problem = BoundProblem(modified_loss.method, loss, None)
        self.orders = list(range(modified_loss.order + 1)) if orders is None else list(orders)
        groups = list(range(modified_loss.method.ncolors)) if modified_loss.players else [None]
        self.groups = groups
        roots: list[int] = []
        spec: dict[Any, list[list[tuple[int, float, bool]]]] = {}
        for g in groups:
            rows = []
            for k in self.orders:
                row = []
                player = g
                for p in modified_loss.potential(k, player):
                    c = numeric_coefficient(p.coefficient, subs, "a potential coefficient")
                    row.append((p.tree, c, False))
                    roots.extend(T.children(p.tree))
                for r in modified_loss.remainder(k, player):
                    c = numeric_coefficient(r.coefficient, subs, "a remainder coefficient")
                    row.append((r.tree, c, True))
                    roots.extend(T.children(r.tree))
                rows.append(row)
            spec[g] = rows
        self.prefactor = numeric_coefficient(modified_loss.prefactor, subs, "the prefactor") \
            if not modified_loss.players else 1.0
        self.dag = TreeDAG(roots)
        self.spec = spec
        self._loss = jax.jit(self._loss_impl, static_argnames=("group", "skip0"))
        self._subs = subs
        self._reg_sums: TreeSums | None = None   # built by regularizer_gradient when used

    def _loss_impl(self, params, h, batches, group, skip0):
        bound = self.problem.bind(batches)
        if self.problem.blocks is None:
            G = kernels.gradient_elementary_differentials(self.dag.nodes, bound, params) \
                if self.dag.nodes else []
        else:
            orders = kernels.node_orders(self.dag.nodes)
            F = kernels.elementary_differentials(self.dag.nodes, self.problem.fields(bound),
                                                 params) if self.dag.nodes else []
            G = [v if orders[i] % 2 == 0 else tu.tree_scale(-1.0, v) for i, v in enumerate(F)]
        total = jnp.zeros((), dtype=jnp.result_type(*jax.tree.leaves(params)))
        for k, row in zip(self.orders, self.spec[group], strict=True):
            if skip0 and k == 0:
                continue
            acc = 0.0
            for t, c, stop in row:
                col, ch = T.key(t)
                vals = [G[self.dag.index[u]] for u in ch]
                if stop:
                    vals = [jax.lax.stop_gradient(v) for v in vals]
                acc = acc + c * kernels.nested_jvp(bound[col], params, vals)
            total = total + h ** k * acc
        return self.prefactor * total

    def _group(self, player):
        blocks = self.problem.blocks
        if blocks is None:
            return None
        if player is None:
            raise ValueError(f"{self.ml.method.name} has one modified loss per parameter "
                             f"block: pass player=0..{len(blocks) - 1} or a name in {blocks}")
        return blocks.index(player) if isinstance(player, str) else int(player)

    def loss(self, params: Any, h: float, batches: Sequence[Any] | None = None,
             player: Any = None) -> jax.Array:
        """``L~(params)`` (shared parameters: ``theta' = -grad L~``; games: player p's
        loss normalised so that ``p' = -r_p grad_p L~_p``)."""
        self.problem.check_cached(params, batches)
        return self._loss(params, _step_arg(h), None if batches is None else tuple(batches),
                          self._group(player), False)

    def regularizer(self, params: Any, h: float, batches: Sequence[Any] | None = None,
                    player: Any = None) -> jax.Array:
        """The implicit regulariser: ``L~ - L~_0`` (orders >= 1)."""
        self.problem.check_cached(params, batches)
        return self._loss(params, _step_arg(h), None if batches is None else tuple(batches),
                          self._group(player), True)

    def regularizer_gradient(self, params: Any, h: Any, batches: Sequence[Any] | None = None,
                             static: Any = None,
                             ad_mode: str | tuple[str, str] = "by-arity") -> Any:
        """``grad`` of :meth:`regularizer` (stop-gradients honoured) without a reverse pass
        through it: ``-grad L~ = f~`` term by term, so ``grad (L~ - L~_0) = -sum_{k>=1} h^k
        f_k``, evaluated by the modified field's factorised plan (Hessian-free, one
        derivative evaluation per merged node).  Not jitted: call it inside your ``jit``
        (the ``bea.optax`` transforms do).  ``static``: leaves held fixed, the loss seeing
        ``equinox.combine(params, static)`` (``equinox.partition``'d models).  Shared
        parameters only (games: one regulariser per player, use ``jax.grad``).
        ``ad_mode``: how each derivative node is differentiated (:class:`TreeSums`); same
        value every way, cost depends on the model and size."""
        ad_mode = check_ad_mode(ad_mode, "regularizer_gradient")
        if self.ml.players:
            raise ValueError(f"{self.ml.method.name} is a game: each player has its own "
                             f"regulariser; differentiate regularizer(..., player=p)")
        if self._reg_sums is None:
            # -grad L~ is the modified field (the split's defining identity, stop-gradients
            # included), so grad of the regulariser is -(sum_{k>=1} h^k f_k): the field's
            # factorised plan, not a reverse pass through the loss's elementary
            # differentials (issue 20: 1.9x a hand-written step that way, 1e5-param MLP)
            self._reg_sums = equation_sums(self.ml.equation,
                                           [k for k in self.orders if k >= 1], self._subs)
        bt = None if batches is None else tuple(batches)
        bound = self.problem.bind(bt)
        if static is not None:
            import equinox as eqx

            self.problem.check_cached(eqx.combine(params, static), bt)
            bound = [lambda d, f=f: f(eqx.combine(d, static)) for f in bound]
        else:
            self.problem.check_cached(params, bt)
        # a negation rather than a multiply by -1.0 (XLA fuses it better: see drift_correction)
        return jax.tree.map(jnp.negative, self._reg_sums.factorised_total(
            params, h, losses=bound, ad_mode=ad_mode))

    __call__ = loss


def compile_equation(equation: Any, loss: Any = None, *, fields: Any = None,
                     subs: dict | None = None, orders: Sequence[int] | None = None
                     ) -> CompiledModifiedEquation:
    """``ModifiedEquation`` -> jitted JAX field (see :class:`CompiledModifiedEquation`)."""
    return CompiledModifiedEquation(equation, loss, fields, subs, orders)


def compile_loss(modified_loss: Any, loss: Any, *, subs: dict | None = None,
                 orders: Sequence[int] | None = None) -> CompiledModifiedLoss:
    """``ModifiedLoss`` -> jitted JAX scalar (see :class:`CompiledModifiedLoss`)."""
    return CompiledModifiedLoss(modified_loss, loss, subs, orders)

"""Factorised sums of elementary differentials (bea.factorise) against the plain sum of
every tree's value (one derivative evaluation per DAG node), on gradient fields (G form)
and on general fields (F form), and the evaluation counts they save."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from bea import methods as M
from bea import modified_equation
from bea.compile import TreeSums
from bea.factorise import Apply, Node, Plan, Sum, fold_into_applies

jax.config.update("jax_enable_x64", True)


def L1(p):
    return jnp.sum(jnp.sin(p) ** 2) + 0.3 * p[0] * p[1] ** 3 + jnp.sum(p ** 4) / 7


def L2(p):
    return jnp.sum(jnp.cosh(0.5 * p)) + p[1] * p[2] ** 2


P = jnp.array([0.3, -0.7, 1.1])


def _sums(method, order):
    me = modified_equation(method, order)
    rows = [[(t.tree, float(t.coefficient)) for t in me.terms(k)] for k in range(order + 1)]
    return TreeSums(rows, range(order + 1))


def _close(a, b):
    scale = 1.0 + float(jnp.max(jnp.abs(a)))
    assert float(jnp.max(jnp.abs(a - b))) <= 1e-13 * scale


@pytest.mark.parametrize("method,order", [
    (M.gd(), 3), (M.rk4(), 4), (M.sgd(2), 2),
    pytest.param(M.sgd(2), 3, marks=pytest.mark.slow),            # ~5 s each, eager
    pytest.param(M.heavy_ball(0.5), 3, marks=pytest.mark.slow)])
def test_factorised_equals_the_plain_sum_on_gradient_fields(method, order):
    s = _sums(method, order)
    losses = [L1, L2][:method.ncolors]
    values = s.values(P, losses=losses)
    for h in (0.1, 0.37):
        _close(s.factorised_total(P, h, losses=losses), s.total(values, P, h))
    for up_to in (1, order - 1):
        _close(s.factorised_total(P, 0.2, losses=losses, up_to=up_to),
               s.total(s.values(P, losses=losses, up_to=up_to), P, 0.2, up_to))
    for k, row in enumerate(s.factorised_rows(P, losses=losses)):
        _close(row, s.row(values, k, P))


def test_factorised_equals_the_plain_sum_on_general_fields():
    """F form (no gradient structure): two non-gradient fields, sgd(2)'s trees."""
    fields = [lambda x: jnp.array([x[1], -jnp.sin(x[0]), x[0] * x[2]]),
              lambda x: -jax.grad(L2)(x) + 0.3 * x[::-1]]
    s = _sums(M.sgd(2), 3)
    values = s.values(P, fields=fields)
    _close(s.factorised_total(P, 0.15, fields=fields), s.total(values, P, 0.15))
    for k, row in enumerate(s.factorised_rows(P, fields=fields)):
        _close(row, s.row(values, k, P))


def test_gd_order_3_shares_the_outer_hessian():
    """f_3 of GD has f'f''(f, f)/12 + f'f'f'f/4 (and f''(f, f'f)/12): the first two become
    f'[f''(f, f)/12 + f'f'f/4], one evaluation fewer than one per tree."""
    s = _sums(M.gd(), 3)
    plan = s.plan((3,), True, False)
    assert plan.applies == len(s.dag.nodes) - 1 == 6
    one_child = [e for _, e in plan.root.terms if isinstance(e, Apply)]
    assert len(one_child) == 1 and isinstance(one_child[0].children[0], Sum)
    assert len(one_child[0].children[0].terms) == 2


def test_gd_field_folds_the_single_hvp_into_the_outer_hessian():
    """GD through order 3: the plan keeps -(h/2) H g beside H[..] (H g is computed anyway,
    for D^3 L[g, H g, .]); fold_into_applies writes it as H[-(h/2) g + ..], the hand-merged
    form: no term of the root is a one-tangent node of the Hessian's color, the inner sum
    holds g with weight -(1/2) h, and the evaluation count stays 6."""
    s = _sums(M.gd(), 3)
    plan = s.plan(tuple(range(4)), True, True)
    assert plan.applies == 6
    applies = [(w, e) for w, e in plan.root.terms if isinstance(e, Apply)]
    assert len(applies) == 1 and applies[0][0] == ((1.0, 0),)
    for _, e in plan.root.terms:
        assert not (isinstance(e, Node) and len(s.dag.nodes[e.index][1]) == 1), e
    inner = applies[0][1].children[0]
    g = [w for w, e in inner.terms if e == Node(0)]
    assert g == [((-0.5, 1),)]   # G form: -(h/2) H g, its sign in the weight


def test_fold_into_applies_divides_by_a_constant_weight_only():
    """w H[v] + c H[S] = c H[S + (w/c) v] for a number c; an h-dependent c is left alone
    (w/c would not be a polynomial weight), and so is a node of another color."""
    nodes = [(0, ()), (0, (0,)), (1, ()), (1, (2,))]
    inner = Sum(((((1.0, 1),), Node(2)),))
    plan = Sum(((((3.0, 2),), Node(1)), (((2.0, 0),), Apply(0, (inner,))),
                (((5.0, 0),), Node(3))))
    out = fold_into_applies(plan, nodes)
    assert out.terms[0] == (((2.0, 0),), Apply(0, (Sum(inner.terms + ((((1.5, 2),),
                                                                       Node(0)),)),)))
    assert out.terms[1] == (((5.0, 0),), Node(3))
    h_weighted = Sum(((((3.0, 2),), Node(1)), (((2.0, 1),), Apply(0, (inner,)))))
    assert fold_into_applies(h_weighted, nodes) == h_weighted
    # the folded plan evaluates to the same value: apply(c, p, [v]) = A_c v (linear)
    A = [jnp.array([[1.0, 2.0], [0.5, -1.0]]), jnp.array([[0.3, 0.0], [1.0, 2.0]])]
    leaf = [jnp.array([1.0, -2.0]), None, jnp.array([0.7, 0.2]), None]

    def apply(c, p, vals):
        return A[c] @ vals[0] if vals else leaf[2 * c]

    for root in (plan, out):
        pl = Plan(nodes, [])
        pl.root, pl._reached = root, []
        val = pl.evaluate(apply, None, 0.3)
        if root is plan:
            ref = val
    _close(val, ref)


@pytest.mark.parametrize("method,order,most", [(M.gd(), 5, 22), (M.rk4(), 5, 18),
                                               (M.sgd(2), 3, 33)])
def test_the_plan_never_costs_more_than_the_dag(method, order, most):
    s = _sums(method, order)
    ks = tuple(range(order + 1))
    plan = s.plan(ks, True, True)
    assert plan.applies <= most < len(s.dag.nodes)
    for k in ks:   # each row alone: at most the nodes that row reaches
        assert s.plan((k,), True, False).applies <= len(s.dag.nodes)


def test_plan_of_nothing_is_zero():
    plan = Plan([(0, ())], [])
    out = plan.evaluate(lambda c, p, v: p, P, 0.1)
    assert float(jnp.max(jnp.abs(out))) == 0.0


@pytest.mark.parametrize("mode", ["by-arity", "reverse-over-forward", "forward-over-reverse",
                                  ("forward-over-reverse", "reverse-over-forward")])
def test_every_ad_mode_gives_the_same_field(mode):
    s = _sums(M.gd(), 3)
    want = s.total(s.values(P, losses=[L1]), P, 0.2)
    s.ad_mode = mode
    _close(s.factorised_total(P, 0.2, losses=[L1]), want)


def test_unknown_ad_mode_is_refused():
    import kernels

    with pytest.raises(ValueError, match="mode must be one of"):
        kernels.gradient_elementary_differential(L1, P, [P], mode="sideways")


def test_tune_ad_mode_keeps_the_field_and_picks_the_fastest_pair(monkeypatch):
    import kernels

    c = modified_equation(M.gd(), 3).to_jax(lambda p: L1(p))
    want = c.field(P, 0.2)   # traced before tuning: the tuned field must not reuse it
    times = c.tune_ad_mode(P, 0.2, repeats=2, rounds=2)
    assert len(times) == 4 and all(t > 0 for t in times.values())
    chosen = min(times, key=times.get)
    assert c.sums.ad_mode == chosen
    seen = []
    inner = kernels.gradient_elementary_differential

    def spy(loss, params, tangents, mode):
        seen.append((len(tangents), mode))
        return inner(loss, params, tangents, mode=mode)

    monkeypatch.setattr(kernels, "gradient_elementary_differential", spy)
    _close(c.field(P, 0.2), want)
    assert seen, "the tuned field was not traced anew"
    assert all(mode == chosen[k >= 2] for k, mode in seen)


def _mlp_problem():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    params = [jax.random.normal(k1, (8, 24)) / 3.0, jax.random.normal(k2, (24, 1)) / 5.0]
    x = jax.random.normal(k3, (16, 8))

    def loss(p):
        return 0.5 * jnp.mean((jnp.tanh(x @ p[0]) @ p[1] - jnp.sin(x[:, :1])) ** 2)

    return params, loss


def _hand_gd3(loss, h):
    """GD's order-3 field merged by hand (benchmarks/bench_hand.py): six evaluations,
    ``H H g`` taken from the same tangent as ``D^3 L[g, H g, .]``."""
    grad = jax.grad(loss)

    def hvp(q, v):
        return jax.jvp(grad, (q,), (v,))[1]

    def d3(p, u, v):
        return jax.jvp(lambda q: hvp(q, u), (p,), (v,))[1]

    def field(p):
        def lc(*ab):   # c_1, tree_1, c_2, tree_2, ..: sum_j c_j tree_j
            return jax.tree.map(lambda *xs: sum(c * x for c, x in zip(ab[::2], xs,
                                                                       strict=True)),
                                *ab[1::2])

        g = grad(p)
        hg, d3gg = hvp(p, g), d3(p, g, g)
        hhg, d3ghg = hvp(p, hg), d3(p, g, hg)
        inner = lc(-h / 2, g, -h ** 2 / 3, hg, -h ** 3 / 12, d3gg, -h ** 3 / 4, hhg)
        return lc(-1.0, g, 1.0, hvp(p, inner), -h ** 2 / 12, d3gg, -h ** 3 / 12, d3ghg)

    return field


def _flops(fn, *args):
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def test_gd_order_3_field_costs_what_the_hand_merged_one_costs():
    """Oracle: XLA's flop count of the hand-merged field.  The plain merge evaluates
    ``H[a]`` with ``a = c_1 g + c_2 H g``; the optimised plan reads it from ``H g`` and
    ``H H g``, which comes with ``D^3 L[g, H g, .]`` (one HVP less), and matches the hand
    version's count (forward-over-reverse everywhere, as the hand version)."""
    import kernels

    params, loss = _mlp_problem()
    h = 0.05
    c = modified_equation(M.gd(), 3).to_jax(loss)
    s = c.sums
    ks = tuple(range(4))
    plan = s.plan(ks, True, True)
    plain = Plan(s.dag.nodes, s.plan_terms(ks, True, True), optimised=False)
    assert plan.cost < plain.cost
    s.ad_mode = "forward-over-reverse"
    hand = _hand_gd3(loss, h)
    _close_tree(c.evaluate(params, h, None), hand(params))
    bea_flops = _flops(lambda p: c.evaluate(p, h, None), params)
    hand_flops = _flops(hand, params)
    assert bea_flops <= 1.001 * hand_flops
    # and the plain merge costs more by that one HVP (the model is not vacuous)
    def apply(color, p, tangents):
        return kernels.gradient_elementary_differential(loss, p, tangents,
                                                        mode="forward-over-reverse")

    assert _flops(lambda p: plain.evaluate(apply, p, h), params) > 1.03 * hand_flops


def _close_tree(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert float(jnp.max(jnp.abs(x - y))) <= 1e-12 * (1.0 + float(jnp.max(jnp.abs(y))))


@pytest.mark.parametrize("method,order", [
    pytest.param(M.gd(), 5, marks=pytest.mark.slow),   # ~5 s: the eager per-node sum
    (M.gd(), 4), (M.rk4(), 3), (M.sgd(2), 2), (M.heavy_ball(0.5), 3)])
def test_optimised_plan_never_costs_more_than_the_plain_merge(method, order):
    s = _sums(method, order)
    ks = tuple(range(order + 1))
    plan = s.plan(ks, True, True)
    plain = Plan(s.dag.nodes, s.plan_terms(ks, True, True), optimised=False)
    assert plan.cost <= plain.cost
    losses = [L1, L2][:len({c for c, _ in s.dag.nodes})]
    values = s.values(P, losses=losses)
    _close(s.factorised_total(P, 0.07, losses=losses), s.total(values, P, 0.07))

"""bea.optax: explicit regularisers, modifying-integrator drift corrections, game drift terms."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy

import bea.optax as bo
import games
import games.optax as go
from bea import methods as M
from bea import modified_loss
from bea import series as S
from bea import trees as T
from bea.verification import fit_slope, integer_step_sizes, run_verification

try:
    from tests import oracle
except ImportError:  # pragma: no cover - run from inside tests/
    import oracle

jax.config.update("jax_enable_x64", True)

BATCH = (1.0, 0.5)
P0 = jnp.array([1.0, 0.5])


def quartic(p, b):
    """Non-quadratic 2-D loss with a valley (as bea.verify's default problem)."""
    a, c = b
    return (p[0] * p[1] - a) ** 2 / 2 + c * p[0] ** 4 / 4 + p[1] ** 2 / 20


def _grad(p):
    return jax.grad(quartic)(p, BATCH)


def _hvp(p, v):
    return jax.jvp(_grad, (p,), (v,))[1]


def _apply(tx, p, state, **extra):
    u, state = tx.update(_grad(p), state, p, loss_fn=quartic, batch=BATCH, **extra)
    return optax.apply_updates(p, u), state


# ----------------------------------------------------------------------------- derivation


@pytest.mark.parametrize("method", [M.gd(), M.heavy_ball(0.9), M.heavy_ball(M.BETA),
                                    M.explicit_midpoint()], ids=str)
def test_modifying_series_cancels_the_drift(method):
    # the method applied to F has the modified field c f exactly (c = a(.)), up to order 4
    p = 3
    b = bo.modifying_series(method, p)
    a = method.series(p + 1)
    mod = S.modified_field(S.substitute(b, a))
    c = a.to_sympy(T.leaf(0))
    assert sympy.simplify(mod.to_sympy(T.leaf(0)) - c) == 0
    for t in T.trees_up_to(p + 1, 1):
        if T.order(t) > 1:
            assert sympy.simplify(mod.to_sympy(t)) == 0, T.bracket(t)


def test_gd_modifying_field_is_the_scaled_exact_flow():
    # for explicit Euler b(t) = 1/gamma(t): GD on F reproduces the Taylor series of the flow
    b = bo.modifying_series(M.gd(), 3)
    for t in T.trees_up_to(4, 1):
        assert b.to_sympy(t) == sympy.Rational(1, T.gamma(t))
    me = bo.modifying_equation(M.gd(), 2)
    assert me.field_text(1) == "(1/2) H grad L"
    assert me.field_text(2) == "-(1/6) D^3L[grad L, grad L] - (1/6) H^2 grad L"
    assert "Modifying integrator of gd" in str(me)


@pytest.mark.parametrize("order", [1, 2])
def test_oracle_gd_on_corrected_field_has_modified_equation_minus_grad(order):
    # plain Taylor expansion, no trees: GD on the corrected field F (in sympy coordinates)
    # has the modified equation -grad L + O(h^(order+1)), and not beyond
    x, y = sympy.symbols("x y")
    xs = [x, y]
    L = (x * y - 1) ** 2 / 2 + x**4 / 8 + y**2 / 20
    me = bo.modifying_equation(M.gd(), order)
    h = me.h
    F = list(me.evaluate(L, xs, summed=True))

    def step(yv, hh):
        Fy = oracle.compose(F, xs, yv)
        return [yi + hh * fi for yi, fi in zip(yv, Fy, strict=True)]

    ds = oracle.map_series(step, xs, h, order + 2)
    fs = oracle.modified_field(ds, xs, order + 1)
    minus_grad = [-sympy.diff(L, v) for v in xs]
    assert [sympy.expand(a - b) for a, b in zip(fs[0], minus_grad, strict=True)] == [0, 0]
    for k in range(1, order + 1):
        assert [sympy.expand(e) for e in fs[k]] == [0, 0], k
    assert any(sympy.expand(e) != 0 for e in fs[order + 1])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_transform_matches_compiled_modifying_equation(order):
    h = 0.07
    tx = bo.drift_correction(M.gd(), order, h)
    u, _ = tx.update(_grad(P0), tx.init(P0), P0, loss_fn=quartic, batch=BATCH)
    F = bo.modifying_equation(M.gd(), order).to_jax(quartic).field(P0, h, [BATCH])
    np.testing.assert_allclose(u, -F, rtol=1e-12, atol=1e-14)
    if order == 1:   # grad L - (h/2) H grad L: note the sign
        g = _grad(P0)
        np.testing.assert_allclose(u, g - h / 2 * _hvp(P0, g), rtol=1e-12)


# ----------------------------------------------------------------------------- acceptance 1


def _corrected_gd_step(order):
    def step(p, h):
        tx = optax.chain(bo.drift_correction(M.gd(), order, h), optax.sgd(h))
        return _apply(tx, p, tx.init(p))[0]
    return step


def _gradient_flow(p, h, order):
    return -_grad(p)


@pytest.mark.parametrize("order", [1, 2])
def test_drift_correction_tracks_gradient_flow(order):
    hs = integer_step_sizes(1.0, 0.1)
    rep = run_verification(_corrected_gd_step(order), _gradient_flow, P0, hs, [order], 1.0,
                           progress=False, h_batching="loop")
    assert abs(rep.slopes[order] - (order + 1)) < 0.15, rep
    assert abs(rep.local_slopes[order] - (order + 2)) < 0.15, rep


@pytest.mark.slow
def test_plain_gd_tracks_gradient_flow_at_first_order_only():
    hs = integer_step_sizes(1.0, 0.1)
    plain = run_verification(lambda p, h: p - h * _grad(p), _gradient_flow, P0, hs, [0], 1.0,
                             progress=False, local=False, h_batching="loop")
    corrected = run_verification(_corrected_gd_step(1), _gradient_flow, P0, hs, [1], 1.0,
                                 progress=False, local=False, h_batching="loop")
    assert abs(plain.slopes[0] - 1) < 0.15
    assert corrected.errors[0, -1] < 0.1 * plain.errors[0, -1]


# ----------------------------------------------------------------------------- acceptance 2


def _run(p, h, n, coeff):
    tx = optax.chain(bo.explicit_regularizer(bo.implicit_gradient_regularizer(), coeff),
                     optax.sgd(h))

    def body(carry, _):
        p, s = carry
        return _apply(tx, p, s), None

    (p, s), _ = jax.lax.scan(body, (p, tx.init(p)), None, length=n)
    return p, s


_run = jax.jit(_run, static_argnums=2)


def test_small_step_plus_regulariser_follows_large_step_gd():
    T_ = 1.0
    ns = [8, 11, 16, 23, 32]
    hs = np.array([T_ / n for n in ns])
    with_term, without = [], []
    for h, n in zip(hs, ns, strict=True):
        big, _ = _run(P0, h, n, 0.0)
        small_reg, st = _run(P0, h / 10, 10 * n, h - h / 10)
        small, _ = _run(P0, h / 10, 10 * n, 0.0)
        assert int(st[0].skipped) == 0 and int(st[0].count) == 10 * n
        with_term.append(float(jnp.linalg.norm(big - small_reg)))
        without.append(float(jnp.linalg.norm(big - small)))
    s_reg, _ = fit_slope(hs, np.array(with_term))
    s_plain, _ = fit_slope(hs, np.array(without))
    assert abs(s_reg - 2) < 0.2, (s_reg, with_term)
    assert abs(s_plain - 1) < 0.2, (s_plain, without)
    assert with_term[0] < 0.2 * without[0]


# ----------------------------------------------------------------------------- terms


def test_modified_loss_term_equals_gradient_norm_term():
    h = 0.1
    g = _grad(P0)
    out = []
    for term, kw in [(bo.implicit_gradient_regularizer(), {}),
                     (modified_loss(M.gd(), 1).to_jax(quartic), {"learning_rate": h}),
                     (modified_loss(M.gd(), 1), {"learning_rate": h}),
                     (lambda p, b: 0.25 * jnp.sum(jax.grad(quartic)(p, b) ** 2), {})]:
        coeff = -h if not kw else -1.0
        tx = bo.explicit_regularizer(term, coeff, **kw)
        out.append(tx.update(g, tx.init(P0), P0, loss_fn=quartic, batch=BATCH)[0])
    for u in out:
        np.testing.assert_allclose(u, g - h / 2 * _hvp(P0, g), rtol=1e-12)


def test_order2_modified_loss_term_cancels_the_gd_drift_to_order_2():
    # coeff = +1 adds grad(L~ - L) (orders 1 and 2, stop-gradients honoured): the update
    # becomes grad L~ = -(modified field of GD to order 2)
    h = 0.05
    ml = modified_loss(M.gd(), 2).to_jax(quartic)
    tx = bo.explicit_regularizer(ml, 1.0, learning_rate=h)
    g = _grad(P0)
    u, _ = tx.update(g, tx.init(P0), P0, loss_fn=quartic, batch=BATCH)
    F = modified_loss(M.gd(), 2)
    me = F.equation.to_jax(quartic)
    np.testing.assert_allclose(u, -me.field(P0, h, [BATCH]), rtol=1e-10)


# ----------------------------------------------------------------------------- acceptance 3


def test_jit_and_chain_with_momentum_and_schedule():
    sched = optax.piecewise_constant_schedule(0.05, {10: 0.5, 20: 0.5})
    tx = optax.chain(
        bo.explicit_regularizer(bo.implicit_gradient_regularizer(), lambda c: -sched(c)),
        bo.drift_correction(M.gd(), 1, sched),
        optax.sgd(sched, momentum=0.9))
    step = jax.jit(lambda p, s: _apply(tx, p, s))
    p, s = P0, tx.init(P0)
    # the same by hand: heavy ball on g - h Hg/2 - (h/2) H g
    q, m = P0, jnp.zeros(2)
    for k in range(25):
        p, s = step(p, s)
        h = sched(jnp.asarray(k, jnp.int32))
        g = _grad(q)
        m = g - h * _hvp(q, g) + 0.9 * m
        q = q - h * m
    np.testing.assert_allclose(p, q, rtol=1e-10)
    assert int(s[0].count) == 25 and int(s[0].skipped) == 0 and int(s[1].skipped) == 0
    assert float(s[1].correction_norm) > 0
    # not jitted: the same
    p2, s2 = P0, tx.init(P0)
    for _ in range(3):
        p2, s2 = _apply(tx, p2, s2)
    p3, s3 = P0, tx.init(P0)
    for _ in range(3):
        p3, s3 = step(p3, s3)
    np.testing.assert_allclose(p2, p3, rtol=1e-12)


def _mlp_data():
    X = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
    Y = jnp.sin(X[:, :1]) + 0.5 * X[:, 1:] ** 2
    return X, Y


@pytest.mark.parametrize("filtered", [True, False])
def test_equinox_model_with_non_array_leaves(filtered):
    model = eqx.nn.MLP(2, 1, 8, 2, activation=jnp.tanh, key=jax.random.PRNGKey(0))
    batch = _mlp_data()
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def model_loss(m, b):
        X, Y = b
        return 0.5 * jnp.mean((jax.vmap(m)(X) - Y) ** 2)

    if filtered:
        def loss_fn(p, b):
            return model_loss(eqx.combine(p, static), b)
        target = params
    else:   # the whole model, activation functions included, as "params"
        loss_fn = model_loss
        target = model
    h = 0.1
    tx = optax.chain(bo.explicit_regularizer(bo.implicit_gradient_regularizer(), -h),
                     bo.drift_correction(M.gd(), 2, h), optax.sgd(h))
    state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(target, state):
        grads = eqx.filter_grad(loss_fn)(target, batch)
        updates, state = tx.update(grads, state, target, loss_fn=loss_fn, batch=batch)
        return eqx.apply_updates(target, updates), state

    new, state = step(target, state)
    assert int(state[0].skipped) == 0 and int(state[1].skipped) == 0
    # reference on the flat vector of the differentiable leaves
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    @jax.jit
    def reference(flat):
        def lf(v):
            return model_loss(eqx.combine(unravel(v), static), batch)

        g = jax.grad(lf)(flat)
        Hv = lambda v: jax.jvp(jax.grad(lf), (flat,), (v,))[1]
        D3 = jax.jvp(lambda w: jax.jvp(jax.grad(lf), (w,), (g,))[1], (flat,), (g,))[1]
        corrected = g - h / 2 * Hv(g) - h / 2 * Hv(g) + h**2 / 6 * (D3 + Hv(Hv(g)))
        return flat - h * corrected

    new_flat = jax.flatten_util.ravel_pytree(eqx.filter(new, eqx.is_inexact_array))[0]
    np.testing.assert_allclose(new_flat, reference(flat), rtol=1e-10, atol=1e-12)
    if not filtered:
        assert new.activation is jnp.tanh


def test_pytree_params_dict_and_float32():
    params = {"w": jnp.ones((3,), jnp.float32), "b": jnp.zeros((), jnp.float32)}

    def loss(p):
        return jnp.sum((p["w"] * 2.0 + p["b"] - 1.0) ** 2) + jnp.sum(p["w"] ** 4) / 4

    tx = optax.chain(bo.drift_correction(M.gd(), 2, 0.01), optax.sgd(0.01))
    g = jax.grad(loss)(params)
    u, s = jax.jit(lambda g, s, p: tx.update(g, s, p, loss_fn=loss))(g, tx.init(params), params)
    assert u["w"].dtype == jnp.float32 and u["b"].dtype == jnp.float32
    assert s[0].correction_norm.dtype == jnp.float32


# ----------------------------------------------------------------------------- games


def _game_losses():
    def L1(p):
        x, y = p
        return 0.5 * jnp.sum(x**2) + x[0] * y[0] + 0.25 * x[1] * y[0] ** 2 + 0.1 * x[0] ** 4

    def L2(p):
        x, y = p
        return 0.5 * y[0] ** 2 - x[0] * y[0] + 0.5 * x[1] * y[0] + 0.05 * y[0] ** 4

    return L1, L2, (jnp.array([0.8, -0.5]), jnp.array([0.6]))


@pytest.mark.parametrize("make,name", [(games.simultaneous, "simultaneous"),
                                       (games.alternating, "alternating")])
def test_game_drift_regularizer_is_the_engine_modified_loss(make, name):
    L1, L2, p = _game_losses()
    rates = (0.1, 0.05)
    grads = (jax.grad(L1)(p)[0], jax.grad(L2)(p)[1])
    tx = go.game_drift_regularizer((L1, L2), rates, dict.fromkeys(go.GAME_TERMS, 1.0),
                                   method=name)
    u, s = tx.update(grads, tx.init(p), p)
    compiled = modified_loss(make(rates), 1).to_jax((L1, L2))
    for q in range(2):
        want = jax.grad(lambda pp, q=q: compiled.regularizer(pp, 1.0, player=q))(p)[q]
        np.testing.assert_allclose(u[q] - grads[q], want, rtol=1e-12, atol=1e-15)
    # the same through explicit_regularizer on the compiled game modified loss
    tx2 = bo.explicit_regularizer(compiled, 1.0, learning_rate=1.0)
    u2, _ = tx2.update(grads, tx2.init(p), p)
    for q in range(2):
        np.testing.assert_allclose(u2[q], u[q], rtol=1e-12)
    # single terms: interaction_x of simultaneous GD is (lr_y/2) <grad_y L1, sg grad_y L2>
    if name == "simultaneous":
        tx3 = go.game_drift_regularizer((L1, L2), rates, {"interaction_x": -1.0})
        u3, _ = tx3.update(grads, tx3.init(p), p)

        def inter(x):
            gy1 = jax.grad(L1)((x, p[1]))[1]
            gy2 = jax.lax.stop_gradient(jax.grad(L2)(p)[1])
            return rates[1] / 2 * jnp.sum(gy1 * gy2)

        np.testing.assert_allclose(u3[0], grads[0] - jax.grad(inter)(p[0]), rtol=1e-12)
        np.testing.assert_allclose(u3[1], grads[1])


def test_cancelling_interaction_drift_in_dirac_gan():
    # L1 = psi theta, L2 = -psi theta: the flow conserves theta^2 + psi^2, simultaneous GD
    # spirals out at O(h) per unit time; with the interaction terms cancelled the growth
    # is O(h^2)
    L1 = lambda p: jnp.sum(p[0] * p[1])
    L2 = lambda p: -jnp.sum(p[0] * p[1])
    h, n = 0.05, 200
    p0 = (jnp.array([1.0]), jnp.array([0.5]))
    r0 = float(jnp.sqrt(p0[0][0] ** 2 + p0[1][0] ** 2))

    def run(coeffs):
        tx = optax.chain(go.game_drift_regularizer((L1, L2), (h, h), coeffs), optax.sgd(h))

        def body(c, _):
            p, s = c
            g = (jax.grad(L1)(p)[0], jax.grad(L2)(p)[1])
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, s), _ = jax.lax.scan(body, (p0, tx.init(p0)), None, length=n)
        return float(jnp.sqrt(p[0][0] ** 2 + p[1][0] ** 2)), s

    r_plain, _ = run({})
    r_cancel, s = run({"interaction_x": -1.0, "interaction_y": -1.0})
    assert r_plain / r0 - 1 > 0.2
    assert abs(r_cancel / r0 - 1) < 0.1 * (r_plain / r0 - 1)
    assert int(s[0].count) == n


# ----------------------------------------------------------------------------- acceptance 6


def test_warns_when_term_method_does_not_match_optimizer():
    term = bo.implicit_gradient_regularizer()
    with pytest.warns(UserWarning, match="derived for gd, but the optimiser is heavy_ball"):
        bo.explicit_regularizer(term, -0.1, optimizer=M.heavy_ball(0.9))
    with pytest.warns(UserWarning, match="derived for gd"):
        bo.sgd(0.1, bo.explicit_regularizer(term, -0.1), momentum=0.9)
    with pytest.warns(UserWarning, match="derived for gd"):
        bo.sgd(0.1, bo.drift_correction(M.gd(), 1, 0.1), momentum=0.9)
    with pytest.warns(UserWarning, match="derived for gd, but the optimiser is 'adam'"):
        bo.drift_correction(M.gd(), 1, 0.1, optimizer="adam")
    with pytest.warns(UserWarning, match="step size 0.2"):
        bo.sgd(0.1, bo.drift_correction(M.gd(), 1, 0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bo.sgd(0.1, bo.explicit_regularizer(term, -0.1), bo.drift_correction(M.gd(), 1, 0.1))
        bo.sgd(0.1, bo.drift_correction(M.heavy_ball(0.9), 1, 0.1), momentum=0.9)
        bo.explicit_regularizer(lambda p: jnp.sum(p), 1.0, optimizer=M.heavy_ball(0.9))
    info = bo.transform_info(bo.drift_correction(M.gd(), 2, 0.1))
    assert info.method == M.gd() and info.learning_rate == 0.1


def test_missing_extra_arguments_are_named():
    g = _grad(P0)
    tx = bo.explicit_regularizer(bo.implicit_gradient_regularizer(), -0.1)
    with pytest.raises(ValueError, match="needs `loss_fn=` passed to update"):
        tx.update(g, tx.init(P0), P0, batch=BATCH)
    with pytest.raises(ValueError, match="needs `batch=` passed to update"):
        tx.update(g, tx.init(P0), P0, loss_fn=quartic)
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(g, tx.init(P0), loss_fn=quartic, batch=BATCH)
    dc = bo.drift_correction(M.gd(), 1, 0.1)
    with pytest.raises(ValueError, match=r"drift_correction\(gd, order=1\) needs `loss_fn=`"):
        dc.update(g, dc.init(P0), P0)
    cml = bo.explicit_regularizer(modified_loss(M.gd(), 1).to_jax(quartic), -1.0,
                                  learning_rate=0.1)
    with pytest.raises(ValueError, match="needs `batch=`"):
        cml.update(g, cml.init(P0), P0)
    game = go.game_drift_regularizer(rates=(0.1, 0.1), coeffs={"self_x": 1.0})
    p = (jnp.ones(1), jnp.ones(1))
    with pytest.raises(ValueError, match=r"needs `loss_fn=\(L_1, L_2\)`"):
        game.update(p, game.init(p), p)
    # the loss given to the constructor is enough
    tx2 = bo.explicit_regularizer(bo.implicit_gradient_regularizer(), -0.1, loss_fn=quartic)
    tx2.update(g, tx2.init(P0), P0, batch=BATCH)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="learning_rate="):
        bo.drift_correction(M.gd(), 1)
    with pytest.raises(ValueError, match="positive"):
        bo.drift_correction(M.gd(), 1, -0.1)
    with pytest.raises(ValueError, match="symbolic parameters"):
        bo.drift_correction(M.heavy_ball(), 1, 0.1)
    with pytest.raises(ValueError, match="one-field methods"):
        bo.drift_correction(M.sgd(2), 1, 0.1)
    with pytest.raises(ValueError, match="order must be"):
        bo.drift_correction(M.gd(), -1, 0.1)
    with pytest.raises(ValueError, match="learning_rate="):
        bo.explicit_regularizer(modified_loss(M.gd(), 1), -1.0)
    with pytest.raises(TypeError, match="coeff must be a number"):
        bo.explicit_regularizer(bo.implicit_gradient_regularizer(), "strong")
    with pytest.raises(TypeError, match="term must be"):
        bo.explicit_regularizer(3.0, 1.0)
    with pytest.raises(ValueError, match="unknown drift terms"):
        go.game_drift_regularizer(rates=(0.1, 0.1), coeffs={"interaction_z": -1.0})
    with pytest.raises(ValueError, match="rates=\\(lr_x, lr_y\\)"):
        go.game_drift_regularizer(coeffs={"self_x": -1.0})
    with pytest.raises(TypeError, match="optimizer="):
        bo.explicit_regularizer(bo.implicit_gradient_regularizer(), 1.0, optimizer=3)


def test_non_finite_corrections_are_skipped_and_counted():
    # |p| has an infinite/NaN gradient at 0: the correction is skipped, the step is plain
    tx = optax.chain(bo.explicit_regularizer(lambda p: jnp.sqrt(jnp.sum(p**2)), 0.5),
                     optax.sgd(0.1))
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    p = jnp.zeros(2)
    g = jnp.array([1.0, -2.0])
    u, s = step(g, tx.init(p), p)
    np.testing.assert_allclose(u, -0.1 * g)
    assert int(s[0].skipped) == 1 and int(s[0].count) == 1
    assert float(s[0].correction_norm) == 0.0
    p1 = jnp.array([3.0, 4.0])
    u, s = step(g, s, p1)
    np.testing.assert_allclose(u, -0.1 * (g + 0.5 * p1 / 5.0))
    assert int(s[0].skipped) == 1 and int(s[0].count) == 2
    # a loss that overflows in the Hessian-vector product: drift correction skipped too
    dc = bo.drift_correction(M.gd(), 1, 0.1)
    loss = lambda p: jnp.sum(jnp.exp(jnp.exp(p)))
    p = jnp.array([7.0, 0.0])
    with np.errstate(all="ignore"):
        u, s = jax.jit(lambda g, s, p: dc.update(g, s, p, loss_fn=loss))(
            jnp.ones(2), dc.init(p), p)
    np.testing.assert_allclose(u, jnp.ones(2))
    assert int(s.skipped) == 1


def test_correction_with_an_overflowing_norm_counts_as_not_finite():
    """The guard decides by the correction's norm (one reduction): float32 entries of 1e18
    are applied (norm ~1.4e18), entries of 1e20 are finite but their norm overflows, so
    the step is skipped like a NaN one; a NaN in one leaf of a pytree skips all leaves."""
    tx = bo.explicit_regularizer(lambda p: jnp.sum(p["a"] * p["b"]), 1.0)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    zero = {"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    for big, applied in ((1e18, True), (1e20, False)):
        p = {"a": jnp.full(2, big, jnp.float32), "b": jnp.ones(2, jnp.float32)}
        u, s = step(zero, tx.init(p), p)
        assert int(s.skipped) == (0 if applied else 1)
        # grad of sum(a b) is (b, a): the "b" leaf of the update is the huge one
        assert float(u["b"][0]) == (np.float32(big) if applied else 0.0)
        assert bool(jnp.isfinite(s.correction_norm))
    p = {"a": jnp.array([jnp.nan, 1.0]), "b": jnp.ones(2)}
    u, s = step(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
    assert int(s.skipped) == 1
    assert float(jnp.max(jnp.abs(u["a"]))) == 0.0


def test_guard_false_adds_the_correction_unchecked():
    """guard=False: the same update as the guarded transform where the correction is
    finite (counters: count moves, skipped and correction_norm stay 0), and a NaN
    correction reaches the updates instead of being skipped."""
    loss = lambda p, b: quartic(p, b)
    g = jax.grad(quartic)(P0, BATCH)
    builds = {
        "drift": lambda guard: bo.drift_correction(M.gd(), 2, 0.1, guard=guard),
        "modified loss": lambda guard: bo.explicit_regularizer(
            modified_loss(M.gd(), 2), -1.0, learning_rate=0.1, guard=guard),
        "igr": lambda guard: bo.explicit_regularizer(bo.implicit_gradient_regularizer(),
                                                     -0.1, guard=guard),
    }
    for name, build in builds.items():
        on, off = build(True), build(False)
        u_on, s_on = on.update(g, on.init(P0), P0, loss_fn=loss, batch=BATCH)
        u_off, s_off = off.update(g, off.init(P0), P0, loss_fn=loss, batch=BATCH)
        np.testing.assert_allclose(u_off, u_on, rtol=1e-14, err_msg=name)
        assert not np.allclose(u_on, g), name          # the correction is not zero
        assert int(s_off.count) == 1 and int(s_off.skipped) == 0, name
        assert float(s_off.correction_norm) == 0.0 and float(s_on.correction_norm) > 0, name
    tx = bo.explicit_regularizer(lambda p: jnp.sqrt(jnp.sum(p**2)), 0.5, guard=False)
    u, s = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2))
    assert bool(jnp.all(jnp.isnan(u))) and int(s.skipped) == 0
    with pytest.raises(TypeError, match="guard must be True or False"):
        bo.drift_correction(M.gd(), 1, 0.1, guard="no")


def test_a_scaled_correction_is_multiplied_in_the_update_and_its_norm():
    """explicit_regularizer hands coeff * grad R to the guard as Scaled(coeff, grad R):
    the update and the recorded norm are those of the product (|coeff| |grad R|), for a
    negative coeff and for a schedule."""
    R = lambda p: jnp.sum(p ** 3)
    p = jnp.array([1.0, -2.0, 0.5])
    g = jnp.array([0.1, 0.2, 0.3])
    for coeff, c in ((-0.7, -0.7), (lambda n: 2.0 + n, 2.0)):
        tx = bo.explicit_regularizer(R, coeff)
        u, s = tx.update(g, tx.init(p), p)
        corr = c * 3 * p ** 2
        np.testing.assert_allclose(u, g + corr, rtol=1e-14)
        np.testing.assert_allclose(float(s.correction_norm), float(jnp.linalg.norm(corr)),
                                   rtol=1e-14)


def test_tune_ad_mode_of_a_transform_returns_a_mode_it_timed():
    """bea.optax.tune_ad_mode builds the transform four ways (one per AD-mode pair), times
    each jitted step and returns the fastest; every way gives the same update."""
    h = 0.1
    seen = []

    def build(mode):
        seen.append(mode)
        return bo.drift_correction(M.gd(), 2, h, ad_mode=mode)

    mode, times = bo.tune_ad_mode(build, P0, loss_fn=quartic, batch=BATCH, repeats=2,
                                  rounds=1)
    assert set(times) == set(seen) and len(times) == 4
    assert mode in times and times[mode] == min(times.values())
    assert all(t > 0 for t in times.values())
    g = jax.grad(quartic)(P0, BATCH)
    ups = [build(m).update(g, build(m).init(P0), P0, loss_fn=quartic, batch=BATCH)[0]
           for m in times]
    for u in ups[1:]:
        np.testing.assert_allclose(u, ups[0], rtol=1e-12)
    with pytest.raises(TypeError, match="forwards ad_mode"):
        bo.tune_ad_mode(lambda m: bo.implicit_gradient_regularizer(m), P0, loss_fn=quartic,
                        batch=BATCH)
    with pytest.raises(TypeError, match="must return an optax transform"):
        bo.tune_ad_mode(lambda m: m, P0, loss_fn=quartic, batch=BATCH)
    with pytest.raises(ValueError, match="needs `batch=`"):   # quartic takes (params, batch)
        bo.tune_ad_mode(build, P0, loss_fn=quartic)


@pytest.mark.slow
def test_heavy_ball_drift_correction_needs_a_consistent_momentum_start():
    # heavy ball (optax.sgd with momentum) + drift_correction(heavy_ball(beta), 1) tracks
    # theta' = -grad L/(1-beta) at second order once the momentum starts consistently
    beta = 0.5

    def make(consistent):
        def chain(h):
            return optax.chain(bo.drift_correction(M.heavy_ball(beta), 1, h),
                               optax.sgd(h, momentum=beta))

        def init_state(p, h):
            s = chain(h).init(p)
            if consistent:
                s = (s[0], (optax.TraceState(trace=_grad(p) / (1 - beta)), s[1][1]))
            return p, s

        def step(state, h):
            p, s = state
            u, s = chain(h).update(_grad(p), s, p, loss_fn=quartic, batch=BATCH)
            return optax.apply_updates(p, u), s

        return init_state, step

    hs = integer_step_sizes(1.0, 0.05)
    slopes = {}
    for consistent in (False, True):
        init_state, step = make(consistent)
        rep = run_verification(step, lambda p, h, order: -_grad(p) / (1 - beta), P0, hs, [1],
                               1.0, init_state=init_state, project=lambda s: s[0],
                               progress=False, local=False, h_batching="loop")
        slopes[consistent] = rep.slopes[1]
    assert abs(slopes[True] - 2) < 0.3, slopes
    assert slopes[False] < 1.5, slopes


def test_modified_loss_term_names_a_non_scalar_loss():
    # the regulariser's gradient comes from the modified field (no reverse pass through
    # the compiled loss): the loss checks still run first and name the problem
    tx = optax.chain(bo.explicit_regularizer(modified_loss(M.gd(), 1), -1.0, learning_rate=0.1,
                                             loss_fn=lambda p: p ** 2), optax.sgd(0.1))
    p = jnp.ones(3)
    with pytest.raises(ValueError, match="must return a scalar"):
        tx.update(p, tx.init(p), p)


AD_MODE_CHOICES = ["by-arity", "forward-over-reverse", "reverse-over-forward",
                   ("forward-over-reverse", "reverse-over-forward")]


def test_ad_mode_of_the_transforms_changes_the_cost_not_the_value():
    """drift_correction(..., ad_mode=) and modified_loss_term(..., ad_mode=): every mode
    gives the same update (multilinear derivatives, differentiated either way); a wrong
    mode is refused by name before any work."""
    h = 0.05
    g = _grad(P0)
    drift, reg = [], []
    for mode in AD_MODE_CHOICES:
        tx = bo.drift_correction(M.gd(), 3, h, ad_mode=mode)
        drift.append(tx.update(g, tx.init(P0), P0, loss_fn=quartic, batch=BATCH)[0])
        term = bo.modified_loss_term(modified_loss(M.gd(), 2), ad_mode=mode)
        tx = bo.explicit_regularizer(term, 1.0, learning_rate=h)
        reg.append(tx.update(g, tx.init(P0), P0, loss_fn=quartic, batch=BATCH)[0])
    for u in drift[1:]:
        np.testing.assert_allclose(u, drift[0], rtol=1e-13)
    for u in reg[1:]:
        np.testing.assert_allclose(u, reg[0], rtol=1e-13)
    assert float(jnp.max(jnp.abs(drift[0] - g))) > 1e-3   # a correction was applied
    for bad in ("forward", ("forward-over-reverse",), 3):
        with pytest.raises(ValueError, match="ad_mode must be 'by-arity'"):
            bo.drift_correction(M.gd(), 2, h, ad_mode=bad)
        with pytest.raises(ValueError, match="ad_mode must be 'by-arity'"):
            bo.modified_loss_term(modified_loss(M.gd(), 2), ad_mode=bad)


def test_ad_mode_reaches_the_derivative_nodes(monkeypatch):
    """The pair (mode for <= 1 tangent, mode for >= 2) is what each node is evaluated with."""
    import kernels

    seen = []
    real = kernels.gradient_elementary_differential

    def spy(loss, params, tangents, mode="reverse-over-forward"):
        seen.append((len(tangents), mode))
        return real(loss, params, tangents, mode=mode)

    monkeypatch.setattr(kernels, "gradient_elementary_differential", spy)
    pair = ("forward-over-reverse", "reverse-over-forward")
    tx = bo.drift_correction(M.gd(), 3, 0.05, ad_mode=pair)
    tx.update(_grad(P0), tx.init(P0), P0, loss_fn=quartic, batch=BATCH)
    assert {k for k, _ in seen} >= {0, 1, 2}
    assert all(m == (pair[0] if k <= 1 else pair[1]) for k, m in seen)

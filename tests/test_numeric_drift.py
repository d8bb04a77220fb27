"""bea.optax.numeric_drift_correction: the numeric correction to the leading-order flow.

Oracles: the symbolic modifying integrator of GD (``bea.optax.drift_correction``), which the
numeric correction of ``optax.sgd`` must reproduce; the corrected optimiser's own numeric
modified field (``f_1..f_p`` must vanish); measured global-error slopes of real corrected
Adam iterates against an RK4 solution of ``x' = f_0(x)``; the closed form of
``d f_0/d g`` for Adam, ``-eps/(|g|+eps)^2``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bea
import bea.optax as bo
from bea.numeric import NonSmoothUpdateError, NotAnOptimizerError

jax.config.update("jax_enable_x64", True)


def loss(p):
    return (jnp.sum(jnp.log(jnp.cosh(p - jnp.array([1.0, -0.5])))) + 0.3 * p[0] * p[1]
            + 0.1 * p[0] ** 3 * p[1])


P0 = jnp.array([0.4, 0.7])


@pytest.mark.parametrize("order", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_sgd_equals_symbolic_drift_correction(order):
    nc = bo.numeric_correction(lambda h: optax.sgd(h), loss, P0, order)
    h = 0.05
    sym = bo.drift_correction(bea.methods.gd(), order, h, loss_fn=loss)
    num = bo.numeric_drift_correction(lambda h: optax.sgd(h), loss, P0, order, h)
    assert len(nc.terms) == order
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = jnp.asarray(rng.normal(size=2))
        g = jax.grad(loss)(x)
        u_sym, _ = jax.jit(sym.update)(g, sym.init(x), x)
        u_num, st = jax.jit(num.update)(g, num.init(x), x)
        assert float(jnp.max(jnp.abs(u_num - g))) > 1e-3       # a real correction
        assert float(jnp.max(jnp.abs(u_num - u_sym))) < 1e-10
        assert int(st.skipped) == 0


@pytest.mark.slow
def test_adam_lead_derivative_closed_form():
    eps = 0.5
    nc = bo.numeric_correction(lambda h: optax.adam(h, b1=0.8, b2=0.9, eps=eps), loss, P0, 1)
    g = jax.grad(loss)(P0)
    want = -eps / (jnp.abs(g) + eps) ** 2
    assert float(jnp.max(jnp.abs(nc.lead_derivative(P0) - want))) < 1e-12


def _rk4_flow(f, x, T, n=4000):
    dt = T / n

    def body(x, _):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    return jax.lax.scan(body, x, None, length=n)[0]


def _global_errors(factory, eq, ref, T, hs):
    errs = []
    for h in hs:
        x, s = eq.initial_state(P0, h)
        tx = factory(h)

        def body(c, _, tx=tx):
            x, s = c
            u, s = tx.update(jax.grad(loss)(x), s, x)
            return (x + u, s), None

        xT = jax.lax.scan(body, (x, s), None, length=int(round(T / h)))[0][0]
        errs.append(float(jnp.linalg.norm(xT - ref)))
    return errs


@pytest.mark.slow
def test_corrected_adam_tracks_f0_flow_with_slope_2():
    """Order-1 correction of Adam (eps = 0.5, so that d f_0/d g = -eps/(|g|+eps)^2 is of
    order 1 and the series is usable at these h): the corrected field's f_1 vanishes, and
    real iterates (started on the slaved manifold) follow x' = f_0(x) with global error
    slope 2, against slope 1 uncorrected."""
    opt = lambda h: optax.adam(h, b1=0.8, b2=0.9, eps=0.5)  # noqa: E731
    nc = bo.numeric_correction(opt, loss, P0, 1)
    eqc = nc.corrected_equation(P0)
    eq0 = bea.numeric_modified_equation(opt, loss, P0, 1)
    assert float(jnp.max(jnp.abs(eqc.terms[0] - eq0.terms[0]))) < 1e-14
    assert float(jnp.max(jnp.abs(eq0.terms[1]))) > 0.05
    assert float(jnp.max(jnp.abs(eqc.terms[1]))) < 1e-13
    T = 0.5
    ref = _rk4_flow(jax.jit(eq0.term(0)), P0, T)
    hs = [0.005, 0.0025, 0.00125]
    plain = _global_errors(opt, eq0, ref, T, hs)
    corr = _global_errors(nc.corrected, eqc, ref, T, hs)
    s_plain = np.polyfit(np.log(hs), np.log(plain), 1)[0]
    s_corr = np.polyfit(np.log(hs), np.log(corr), 1)[0]
    print("plain", plain, s_plain, "corrected", corr, s_corr)
    assert abs(s_plain - 1) < 0.15
    assert abs(s_corr - 2) < 0.15


def test_adam_eps_zero_is_refused():
    with pytest.raises(bo.CorrectionNotInvertibleError, match="eps"):
        bo.numeric_correction(lambda h: optax.adam(h, eps=0.0), loss, P0, 1)


def test_non_elementwise_optimiser_is_refused():
    def normalised(h):
        def update(g, s, params=None):
            n = jnp.sqrt(sum(jnp.sum(a ** 2) for a in jax.tree.leaves(g)) + 1.0)
            return jax.tree.map(lambda a: -h * a / n, g), s
        return optax.GradientTransformation(lambda p: optax.EmptyState(), update)

    with pytest.raises(bo.CorrectionNotElementwiseError, match="diagonal"):
        bo.numeric_correction(normalised, loss, P0, 1)


def test_bad_inputs():
    with pytest.raises(NonSmoothUpdateError, match="sign"):
        bo.numeric_correction(lambda h: optax.lion(h), loss, P0, 1)
    with pytest.raises(NotAnOptimizerError):
        bo.numeric_correction(optax.sgd(0.1), loss, P0, 1)
    with pytest.raises(ValueError, match="order"):
        bo.numeric_correction(lambda h: optax.sgd(h), loss, P0, 0)
    with pytest.raises(ValueError, match="learning_rate"):
        bo.numeric_drift_correction(lambda h: optax.sgd(h), loss, P0, 1)

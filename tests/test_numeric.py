"""bea.numeric_modified_equation (optax optimisers, numeric BEA) vs independent oracles.

Oracles: the symbolic engine evaluated exactly in sympy coordinates on a polynomial loss
(``ModifiedEquation.evaluate``, then the point substituted), a closed-form Adam order-1
term derived by hand, measured global-error slopes of real iterates (``bea.verify``).

optax's momentum convention (optax 0.2.8, ``optax.trace``): ``t' = g + beta t``; the update
is ``-h t'``, or with ``nesterov=True`` ``-h (g + beta t')``.  Heavy ball: the first is
Polyak's ``x_{n+1} = x_n - h g_n + beta (x_n - x_{n-1})`` = ``bea.methods.heavy_ball``.
Nesterov: eliminating ``t`` gives the two-step method

    x_{n+1} = (1+beta) x_n - beta x_{n-1} - h [(1+beta) g(x_n) - beta g(x_{n-1})],

which is the recursion of the *look-ahead points* ``y_n = x_n + beta (x_n - x_{n-1})`` of
``bea.methods.nesterov``, not of its iterates.  The two underlying one-step methods are
conjugate by ``y = x + beta (x - Phi^{-1}(x)) = x + O(h)``, so their fields agree at orders
0 and 1 and differ from order 2 on; the exact counterpart is :func:`optax_nesterov` below.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy

import bea
from bea import methods, modified_equation
from bea.methods import LinearMultistep
from bea.numeric import (
    LearningRateError,
    NonFiniteInputError,
    NonSmoothUpdateError,
    NotAnOptimizerError,
    StateJumpError,
    StateNotContractingError,
)

jax.config.update("jax_enable_x64", True)

X, Y = sympy.symbols("x y")
R = sympy.Rational
L_SYM = X ** 4 / 4 + Y ** 4 / 8 + X * Y / 2 + X ** 2 * Y / 3 + Y ** 2 / 2 + X / 5


def loss(p):
    x, y = p[0], p[1]
    return x ** 4 / 4 + y ** 4 / 8 + x * y / 2 + x ** 2 * y / 3 + y ** 2 / 2 + x / 5


POINTS = [jnp.array([0.7, -0.4]), jnp.array([-0.3, 0.9])]


def optax_nesterov(beta):
    """optax's nesterov as a bea LinearMultistep (see the module docstring)."""
    b = sympy.sympify(beta)
    return LinearMultistep([1 + b, -b], [(1 + b, [1, 0]), (-b, [0, 1])],
                           name=f"optax_nesterov({b})")


def symbolic_terms(method, order, point):
    out = modified_equation(method, order).evaluate(L_SYM, [X, Y])
    rep = {X: sympy.Float(float(point[0]), 40), Y: sympy.Float(float(point[1]), 40)}
    return [np.array([float(e.xreplace(rep)) for e in m]) for m in out]


def assert_agree(opt, method, order, tol=1e-10):
    for p in POINTS:
        eq = bea.numeric_modified_equation(opt, loss, p, order)
        sym = symbolic_terms(method, order, p)
        for k in range(order + 1):
            err = float(np.max(np.abs(np.asarray(eq.terms[k]) - sym[k])))
            assert err < tol * max(1.0, float(np.max(np.abs(sym[k])))), (k, err)


def test_sgd_matches_gd_orders_0_to_3():
    assert_agree(lambda h: optax.sgd(h), methods.gd(), 3)


def test_ready_made_transformation_with_learning_rate():
    # optax.sgd(0.1) with learning_rate=0.1: update scaled by h / 0.1
    p = POINTS[0]
    a = bea.numeric_modified_equation(optax.sgd(0.1), loss, p, 2, learning_rate=0.1)
    b = bea.numeric_modified_equation(lambda h: optax.sgd(h), loss, p, 2)
    for s, t in zip(a.terms, b.terms, strict=True):
        assert float(jnp.max(jnp.abs(s - t))) < 1e-13


@pytest.mark.parametrize("order", [1, pytest.param(2, marks=pytest.mark.slow),
                                   pytest.param(3, marks=pytest.mark.slow)])
def test_momentum_matches_heavy_ball(order):
    assert_agree(lambda h: optax.sgd(h, momentum=0.6), methods.heavy_ball(R(3, 5)), order)


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2, 3])
def test_optax_nesterov_matches_its_multistep_form(order):
    assert_agree(lambda h: optax.sgd(h, momentum=0.6, nesterov=True),
                 optax_nesterov(R(3, 5)), order)


@pytest.mark.slow
def test_optax_nesterov_vs_bea_nesterov_differ_from_order_2():
    p = POINTS[0]
    eq = bea.numeric_modified_equation(lambda h: optax.sgd(h, momentum=0.6, nesterov=True),
                                       loss, p, 2)
    sym = symbolic_terms(methods.nesterov(R(3, 5)), 2, p)
    for k in (0, 1):
        assert float(np.max(np.abs(np.asarray(eq.terms[k]) - sym[k]))) < 1e-10
    assert float(np.max(np.abs(np.asarray(eq.terms[2]) - sym[2]))) > 1e-3


def test_field_is_callable_anywhere_and_jittable():
    eq = bea.numeric_modified_equation(lambda h: optax.sgd(h, momentum=0.6), loss,
                                       POINTS[0], 1)
    q = POINTS[1]
    sym = symbolic_terms(methods.heavy_ball(R(3, 5)), 1, q)
    got = eq.field(0.01)(q)
    assert float(jnp.max(jnp.abs(got - (sym[0] + 0.01 * sym[1])))) < 1e-10
    assert float(jnp.max(jnp.abs(eq(q, 0.01) - got))) < 1e-13
    assert "mode='slaved'" in repr(eq) and "order=1" in repr(eq)


# --------------------------------------------------------------------------- Adam


def adam_f1_closed_form(p, b1, b2, eps):
    """Adam's order-1 term, derived by hand (no bias correction: count -> infinity).

    Slaved state to O(h): m = g + h HA/(1-b1), v = g^2 + 2h g HA/(1-b2), A = g/(|g|+eps);
    then Psi_h = x - h A - h^2 B, B = HA [r1/(|g|+eps) - r2 |g|/(|g|+eps)^2] with
    r_i = b_i/(1-b_i), and f_1 = -B - A'A/2, A'A = eps HA/(|g|+eps)^2, so

        f_0 = -g/(|g|+eps),
        f_1 = -HA * [ r1/(|g|+eps) - r2 |g|/(|g|+eps)^2 + eps/(2 (|g|+eps)^2) ].

    Conditions: fixed b1, b2 < 1 and eps >= 0, every g_i != 0, h -> 0 (bias corrections
    off).  For eps -> 0 this is f_1 = -(r1 - r2) grad ||grad L||_1 / |g|: the
    ``||grad L||_1`` penalty (b1 > b2) or anti-penalty (b1 < b2, Adam's defaults) of
    Cattaneo, Klusowski and Shigida (ICML 2024, "On the implicit bias of Adam"); the formula
    here is our derivation for eps *outside* the root (optax's ``eps``); the paper's
    eps-inside form is :func:`cattaneo_klusowski_shigida_f1`.
    """
    g = jax.grad(loss)(p)
    a = jnp.abs(g) + eps
    A = g / a
    HA = jax.jvp(jax.grad(loss), (p,), (A,))[1]
    r1, r2 = b1 / (1 - b1), b2 / (1 - b2)
    return -A, -HA * (r1 / a - r2 * jnp.abs(g) / a ** 2 + eps / (2 * a ** 2))


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_adam_order_1_closed_form(eps):
    b1, b2 = 0.8, 0.6
    p = POINTS[0]
    eq = bea.numeric_modified_equation(lambda h: optax.adam(h, b1=b1, b2=b2, eps=eps),
                                       loss, p, 1)
    f0, f1 = adam_f1_closed_form(p, b1, b2, eps)
    assert float(jnp.max(jnp.abs(eq.terms[0] - f0))) < 1e-12
    assert float(jnp.max(jnp.abs(eq.terms[1] - f1))) < 1e-10


def cattaneo_klusowski_shigida_f1(p, beta, rho, eps):
    """Adam's order-1 modified field in the variables of Cattaneo, Klusowski and Shigida
    ("On the implicit bias of Adam", ICML 2024): loss ``E``, ``beta`` (gradient momentum),
    ``rho`` (squared-gradient momentum), ``eps`` *inside* the root (their Adam:
    ``theta_j <- theta_j - h m_j / sqrt(nu_j + eps)``; optax: ``eps=0, eps_root=eps``),
    after the bias-correction transient (corrections ``1 - beta^n``, ``1 - rho^n`` -> 1),
    full batch, ``h -> 0``.  With the perturbed one-norm
    ``||grad E||_{1,eps} = sum_j sqrt((d_j E)^2 + eps)``:

        theta_j' = -( d_j E + h (beta/(1-beta) - rho/(1-rho)) d_j ||grad E||_{1,eps}
                     + h (rho/(1-rho) + 1/2) eps d_j ||grad E||_{1,eps} / ((d_j E)^2 + eps) )
                   / sqrt((d_j E)^2 + eps)  + O(h^2).

    Conditions: fixed beta, rho in (0, 1), eps > 0, E smooth (three derivatives).  The
    sign of beta/(1-beta) - rho/(1-rho) decides penalty (beta > rho) or anti-penalty
    (rho > beta, the typical case) of the one-norm, as the paper states.  Its theorem's
    text could not be read from this workplace (only the abstract), so the two
    coefficients are our derivation (slaved state m = g + h r1 H u, nu = g^2 + 2h r2 g H u
    with u = g/sqrt(g^2 + eps), then f_1 = F_1 - F_0' F_0 / 2), written in the paper's
    form; ``d_j ||grad E||_{1,eps} = (H u)_j`` is computed here by differentiating the
    one-norm itself, not through the engine's formula.
    """
    g = jax.grad(loss)(p)
    s = jnp.sqrt(g ** 2 + eps)
    one_norm = lambda q: jnp.sum(jnp.sqrt(jax.grad(loss)(q) ** 2 + eps))  # noqa: E731
    dN = jax.grad(one_norm)(p)
    r1, r2 = beta / (1 - beta), rho / (1 - rho)
    return -g / s, -((r1 - r2) * dN + (r2 + 0.5) * eps * dN / s ** 2) / s


@pytest.mark.parametrize("beta,rho,eps,point", [(0.9, 0.999, 1e-3, 0), (0.8, 0.6, 0.3, 1),
                                                (0.5, 0.9, 1e-8, 0)])
def test_adam_order_1_is_cattaneo_klusowski_shigida(beta, rho, eps, point):
    for p in POINTS[point:point + 1]:
        eq = bea.numeric_modified_equation(
            lambda h: optax.adam(h, b1=beta, b2=rho, eps=0.0, eps_root=eps), loss, p, 1)
        f0, f1 = cattaneo_klusowski_shigida_f1(p, beta, rho, eps)
        assert float(jnp.max(jnp.abs(eq.terms[0] - f0))) < 1e-12
        scale = float(jnp.max(jnp.abs(f1)))
        assert float(jnp.max(jnp.abs(eq.terms[1] - f1))) < 1e-10 * max(1.0, scale)


def test_adam_real_step_is_optax_update_at_asymptotic_count():
    p = POINTS[0]
    h = 0.01
    eq = bea.numeric_modified_equation(lambda h: optax.adam(h, b1=0.8, b2=0.6), loss, p, 0)
    x, s = eq.initial_state(p, h)
    opt = optax.adam(h, b1=0.8, b2=0.6)
    u, _ = opt.update(jax.grad(loss)(x), s, x)
    x1, _ = eq.step((x, s), h)
    assert float(jnp.max(jnp.abs(x1 - (x + u)))) == 0.0


def loss_logcosh(p):
    return jnp.sum(jnp.log(jnp.cosh(p - jnp.array([1.0, -0.5])))) + 0.3 * p[0] * p[1]


ADAM = lambda h: optax.adam(h, b1=0.5, b2=0.6)  # noqa: E731
RMSPROP = lambda h: optax.rmsprop(h, decay=0.5)  # noqa: E731
# far from the minimisers: every gradient component stays away from 0 over the horizon
P1 = jnp.array([1.5, 1.2])
P2 = jnp.array([2.5, 2.0])


@pytest.mark.parametrize("name,opt,lossfn,p,order", [
    pytest.param("adam", ADAM, loss, P1, 1, marks=pytest.mark.slow),
    pytest.param("adam", ADAM, loss, P1, 2, marks=pytest.mark.slow),
    pytest.param("adam-logcosh", ADAM, loss_logcosh, P2, 2, marks=pytest.mark.slow),
    pytest.param("rmsprop", RMSPROP, loss, P1, 2, marks=pytest.mark.slow),
    pytest.param("rmsprop-logcosh", RMSPROP, loss_logcosh, P2, 2, marks=pytest.mark.slow),
])
def test_verify_slopes(name, opt, lossfn, p, order):
    """Real iterates from the slaved initial state vs the truncated numeric flow."""
    eq = bea.numeric_modified_equation(opt, lossfn, p, order)
    rep = bea.verify(eq, params0=p, orders=list(range(order + 1)), horizon=0.1,
                     hs=[0.004, 0.002, 0.001, 0.0005])
    ok = rep.check_slopes(tol=0.15)
    assert all(ok.values()), (name, rep.slopes)


# --------------------------------------------------------------------------- refusals


def test_verify_refuses_orders_beyond_the_equation():
    eq = bea.numeric_modified_equation(lambda h: optax.sgd(h), loss, POINTS[0], 1)
    with pytest.raises(ValueError, match="beyond the order 1"):
        bea.verify(eq, params0=POINTS[0], orders=[0, 1, 2])


def test_lion_is_refused():
    with pytest.raises(NonSmoothUpdateError, match="sign"):
        bea.numeric_modified_equation(lambda h: optax.lion(h), loss, POINTS[0], 1)


def test_bad_inputs():
    p = POINTS[0]
    with pytest.raises(NotAnOptimizerError):
        bea.numeric_modified_equation("adam", loss, p, 1)
    with pytest.raises(NotAnOptimizerError):
        bea.numeric_modified_equation(lambda h: 3, loss, p, 1)
    with pytest.raises(LearningRateError, match="learning_rate="):
        bea.numeric_modified_equation(optax.adam(1e-3), loss, p, 1)
    with pytest.raises(NonFiniteInputError):
        bea.numeric_modified_equation(lambda h: optax.sgd(h), loss, jnp.array([jnp.nan, 1.]), 1)
    with pytest.raises(ValueError, match=">= 0"):
        bea.numeric_modified_equation(lambda h: optax.sgd(h), loss, p, -1)
    with pytest.raises(bea.limits.LimitError, match="numeric_order"):
        bea.numeric_modified_equation(lambda h: optax.sgd(h), loss, p, 40)
    with pytest.raises(NonSmoothUpdateError, match="not finite"):
        # a vanishing gradient component: sqrt(nu) at nu = 0
        bea.numeric_modified_equation(lambda h: optax.adam(h), lambda q: q[0] ** 2 + 0 * q[1],
                                      jnp.array([0.5, 0.0]), 1)


def test_state_errors():
    p = POINTS[0]
    with pytest.raises(StateNotContractingError, match='mode="full"'):
        bea.numeric_modified_equation(lambda h: optax.adagrad(h), loss, p, 1)
    with pytest.raises(StateJumpError, match="slaved"):
        bea.numeric_modified_equation(lambda h: optax.sgd(h, momentum=0.6), loss, p, 1,
                                      mode="full")


def test_full_mode_with_rates_tied_to_h():
    """EMA momentum with decay 1 - 2h: m' = m + 2h (g - m), x' = x - h m'.  By hand:
    f_0 = (-m, 2(g - m)); psi_2 = (-2(g - m), 0); f_1 = psi_2 - f_0' f_0 / 2 =
    (-(g - m), H m + 2(g - m))."""
    p = POINTS[0]
    m0 = jnp.array([0.1, -0.2])
    opt = lambda h: optax.chain(optax.ema(1.0 - 2.0 * h, debias=False),  # noqa: E731
                                optax.scale(-h))
    state = opt(0.1).init(p)
    state = (state[0]._replace(ema=m0), state[1])
    eq = bea.numeric_modified_equation(opt, loss, p, 1, mode="full", state=state)
    (f0x, (f0s,)), (f1x, (f1s,)) = eq.terms
    g = jax.grad(loss)(p)
    Hm = jax.jvp(jax.grad(loss), (p,), (m0,))[1]
    for got, want in [(f0x, -m0), (f0s, 2 * (g - m0)), (f1x, -(g - m0)),
                      (f1s, Hm + 2 * (g - m0))]:
        assert float(jnp.max(jnp.abs(got - want))) < 1e-12

"""Limiting flows on the zero-loss manifold and the principal flow of GD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bea.optax as bo
from bea.dynamics import eos
from bea.dynamics.eos.flows import limiting_flow, limiting_flow_field, tangent_projection
from bea.dynamics.eos.principal import (
    principal_flow,
    principal_flow_field,
    principal_flow_quadratic,
)
from bea.dynamics.eos.toys import TOYS, reference_flow

jax.config.update("jax_enable_x64", True)


def test_tangent_projection_matches_dense_null_space_projector():
    w = jax.random.normal(jax.random.PRNGKey(0), (2, 6))
    residuals = lambda x: jnp.tanh(w @ x) + 0.1 * jnp.sum(x ** 2)
    x = jax.random.normal(jax.random.PRNGKey(1), (6,))
    j = jax.jacobian(residuals)(x)
    p_dense = jnp.eye(6) - j.T @ jnp.linalg.solve(j @ j.T, j)
    v = jax.random.normal(jax.random.PRNGKey(2), (6,))
    np.testing.assert_allclose(tangent_projection(residuals, x)(v), p_dense @ v, atol=1e-10)


def _discrete(toy, kind, eta, t1):
    """Run the optimiser for t1/eta^2 steps from embed(q0) + eta * normal."""
    q0 = toy.q0
    z0 = jnp.asarray(toy.embed(q0) + eta * toy.normal(toy.embed(q0)))
    opt = bo.normalized_gd(eta) if kind == "normalized_gd" else bo.sqrt_loss(eta)
    n = int(round(t1 / eta ** 2))

    def step(c, _):
        z, st = c
        v, g = jax.value_and_grad(toy.loss)(z)
        u, st = opt.update(g, st, z, value=v)
        return (z + u, st), None

    (z, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=n))((z0, opt.init(z0)))
    return np.asarray(z)


@pytest.mark.parametrize("kind", ["normalized_gd", "sqrt_loss"])
@pytest.mark.parametrize("name", ["flat", "circle"])
def test_discrete_runs_converge_to_the_limiting_flow_as_eta_shrinks(name, kind):
    toy = TOYS[name]
    t1 = 1.0
    ref = reference_flow(toy, kind, t1)[-1]          # scipy on the reduced closed-form ODE
    errs = [np.linalg.norm(toy.chart(_discrete(toy, kind, eta, t1)) - ref)
            for eta in (0.04, 0.02, 0.01)]
    moved = np.linalg.norm(ref - toy.q0)
    assert moved > 0.05                               # the flow moves the point visibly
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.25 * errs[0] and errs[2] < 1e-2 * moved, errs


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["normalized_gd", "sqrt_loss"])
def test_lab_flow_field_matches_the_closed_form(kind):
    # the matrix-free field (Lanczos + D^3L + CG projection) against the reduced ODE
    for name in ("flat", "circle", "product"):
        toy = TOYS[name]
        z = toy.embed(toy.q0)
        f = np.asarray(limiting_flow_field(toy.loss, toy.residuals, kind)(jnp.asarray(z)))
        if name == "product":
            want = toy.rhs[kind](0.0, z)
        else:   # push the coordinate velocity forward by finite differences of embed
            dq = toy.rhs[kind](0.0, toy.q0)
            e = 1e-6
            want = (toy.embed(toy.q0 + e * dq) - toy.embed(toy.q0 - e * dq)) / (2 * e)
        np.testing.assert_allclose(f, want, rtol=1e-7, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["circle", "product"])
def test_lab_limiting_flow_integrates_like_scipy(name):
    toy = TOYS[name]
    for kind in ("normalized_gd", "sqrt_loss"):
        sol = limiting_flow(toy.loss, toy.residuals, jnp.asarray(toy.embed(toy.q0)), 2.0, kind)
        z = np.asarray(sol.ys[-1])
        np.testing.assert_allclose(toy.chart(z), reference_flow(toy, kind, 2.0)[-1],
                                   atol=1e-7)
        assert abs(float(toy.residual(jnp.asarray(z)))) < 1e-7


@pytest.mark.parametrize("h_lam", [0.5, 1.5, 2.3])
def test_principal_flow_is_exact_on_quadratics(h_lam):
    a = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.2]])
    lam_max = jnp.linalg.eigvalsh(a)[-1]
    h = float(h_lam / lam_max)
    x_star = jnp.array([0.5, -1.0, 2.0])
    x = x0 = jnp.array([1.0, 2.0, -1.0])
    n = jnp.arange(8)
    pf = principal_flow_quadratic(a, x_star, x0, h, n * h)
    iterates = []
    for _ in range(8):
        iterates.append(x)
        x = x - h * a @ (x - x_star)
    np.testing.assert_allclose(pf.real, jnp.stack(iterates), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pf.imag, 0.0, atol=1e-9 * float(jnp.max(jnp.abs(pf))))
    # between iterates the flow is complex once h lambda > 1
    mid = principal_flow_quadratic(a, x_star, x0, h, 0.5 * h)
    assert (float(jnp.max(jnp.abs(mid.imag))) > 1e-3) == (h_lam > 1)


@pytest.mark.slow
def test_principal_flow_integration_and_series():
    a = jnp.array([[2.0, 0.3], [0.3, 1.0]])
    x_star = jnp.array([0.5, -1.0])
    loss = lambda x: 0.5 * (x - x_star) @ a @ (x - x_star)
    h, x0 = 0.3, jnp.array([1.0, 2.0])
    sol = principal_flow(loss, x0, h, 5 * h, ts=jnp.arange(1, 6) * h)
    np.testing.assert_allclose(sol.ys, principal_flow_quadratic(a, x_star, x0, h,
                                                                jnp.arange(1, 6) * h).real,
                               atol=1e-9)
    # non-quadratic: the field's h-expansion is -g - (h/2) H g - (h^2/3) H^2 g + O(h^3)
    loss2 = lambda x: jnp.sum(jnp.cosh(x)) + x[0] * x[1] ** 2
    x = jnp.array([0.3, -0.4])
    g, hh = jax.grad(loss2)(x), jax.hessian(loss2)(x)
    errs = []
    for hs in (0.02, 0.01):
        series = -g - hs / 2 * hh @ g - hs ** 2 / 3 * hh @ hh @ g
        errs.append(float(jnp.linalg.norm(principal_flow_field(loss2, hs)(x) - series)))
    np.testing.assert_allclose(np.log2(errs[0] / errs[1]), 3.0, atol=0.1)


def test_limiting_flow_bad_input_named_errors():
    toy = TOYS["circle"]
    x0 = jnp.asarray(toy.embed(toy.q0))
    with pytest.raises(eos.NonScalarLossError, match="must return a scalar"):
        limiting_flow(lambda x: x ** 2, toy.residuals, x0, 0.1)
    with pytest.raises(eos.EosInputError, match="kind must be one of"):
        limiting_flow(toy.loss, toy.residuals, x0, 0.1, kind="adam")
    with pytest.raises(eos.EosInputError, match="t1 .* must be > 0"):
        limiting_flow(toy.loss, toy.residuals, x0, 0.0)
    with pytest.raises(eos.EosInputError, match="float array"):
        limiting_flow(toy.loss, lambda x: x > 0, x0, 0.1)
    with pytest.raises(TypeError, match="residuals must be callable"):
        limiting_flow(toy.loss, None, x0, 0.1)

"""Numeric modified fields (kernels.modified_flow, kernels.slaved) vs the symbolic engine."""

import jax
import jax.numpy as jnp
import pytest

from bea import methods, modified_equation
from kernels.modified_flow import modified_field_functions, taylor_coefficients
from kernels.slaved import slaved_manifold

jax.config.update("jax_enable_x64", True)


def loss(p):
    a, b = p["a"], p["b"]
    return jnp.sum(jnp.cos(a)) + (a[0] * b - 1.0) ** 2 / 2 + jnp.sum(a ** 4) / 4


def points(n=2):
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    return [{"a": jax.random.normal(k, (2,)), "b": jax.random.normal(k, ())} for k in keys]


def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_taylor_coefficients_of_exp():
    c = taylor_coefficients(lambda h: jnp.exp(2.0 * h), 4)
    for k, ck in enumerate(c):
        assert abs(float(ck) - 2.0 ** k / [1, 1, 2, 6, 24][k]) < 1e-14


def test_gd_matches_symbolic_orders_0_to_3():
    step = lambda h, x: jax.tree.map(lambda v, g: v - h * g, x, jax.grad(loss)(x))  # noqa: E731
    fs = modified_field_functions(step, 3)
    sym = modified_equation(methods.gd(), 3).to_jax(loss)
    for p in points():
        num = jax.jit(lambda x: [f(x) for f in fs])(p)
        for a, b in zip(num, sym.terms(p), strict=True):
            assert max_diff(a, b) < 1e-10


def heavy_ball_joint(beta):
    # optax.sgd(h, momentum=beta): v' = g + beta v, x' = x - h v'  (trace convention)
    def joint(h, x, v):
        v1 = jax.tree.map(lambda g, u: g + beta * u, jax.grad(loss)(x), v)
        return jax.tree.map(lambda a, u: a - h * u, x, v1), v1
    return joint


@pytest.mark.parametrize("order", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_slaved_heavy_ball_matches_symbolic(order):
    beta = 0.6
    p = points(1)[0]
    _, phi = slaved_manifold(heavy_ball_joint(beta), order, jax.tree.map(jnp.zeros_like, p))
    fs = modified_field_functions(phi, order)
    num = jax.jit(lambda x: [f(x) for f in fs])(p)
    sym = modified_equation(methods.heavy_ball(beta), order).to_jax(loss).terms(p)
    for a, b in zip(num, sym, strict=True):
        assert max_diff(a, b) < 1e-10

"""SDE lab: SVAG transform, samplers, bad input, closed-form weak error (slow)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

jax.config.update("jax_enable_x64", True)

import bea.optax as bo  # noqa: E402
from bea.dynamics import sde as S  # noqa: E402


def test_svag_weights_mean_and_covariance():
    for l in (1, 2, 4.5, 8, 100):
        wp, wm = bo.svag_weights(l)
        assert math.isclose(wp + wm, 1.0) and math.isclose(wp**2 + wm**2, l)


def test_svag_l1_is_sgd():
    g = {"a": jnp.arange(3.0)}
    u, _ = bo.svag(0.1, 1).update(g, bo.svag(0.1, 1).init(g))
    ref, _ = optax.sgd(0.1).update(g, optax.sgd(0.1).init(g))
    np.testing.assert_allclose(u["a"], ref["a"])


def test_bad_input_named_errors():
    with pytest.raises(bo.AmplificationError):
        bo.svag(0.1, 0.5)
    tx = bo.svag(0.1, 4)
    with pytest.raises(ValueError, match="grad2"):
        tx.update(jnp.ones(2), tx.init(None))
    with pytest.raises(S.BatchSizeError):
        S.check_same_batch_size(jnp.ones((4, 2)), jnp.ones((5, 2)))
    with pytest.raises(S.PerExampleLossError):
        S.check_per_example_loss(lambda p, b: jnp.sum((b - p) ** 2, axis=1),
                                 jnp.zeros(2), jnp.ones((5, 3, 2)))


def test_sampler_reproducible_and_without_replacement():
    s = S.BatchSampler(20, 5, replace=False, seed=3)
    a = np.asarray(s.indices(7))
    np.testing.assert_array_equal(a, np.asarray(s.indices(7)))
    epoch = np.concatenate([np.asarray(s.indices(k)) for k in range(4)])
    assert sorted(epoch) == list(range(20))
    i1, i2 = s.pair(0)
    assert not np.array_equal(np.asarray(i1), np.asarray(i2))


def test_noise_trace_quadratic_closed_form():
    p = S.QuadraticProblem.random(16, 2, 0)
    tr = S.noise_trace(p.example_loss(), jnp.zeros(2), p.data, 4)
    np.testing.assert_allclose(float(tr), np.trace(p.q(4)), rtol=1e-10)


@pytest.mark.slow
def test_weak_error_svag_order_one():
    p = S.QuadraticProblem.random(16, 2, 0)
    x0, eta, b, t = jnp.array([2.0, -1.0]), 0.5, 4, 1.0
    m, s = p.sde_moments(np.asarray(x0), t, eta, b)
    f0 = p.second_moment(m, s)
    ls, errs = [2, 4, 8, 16], []
    for l in ls:
        k = int(t * l / eta)
        fn = lambda r, l=l, k=k: jnp.sum(S.run_svag(
            p.example_loss(), x0, p.data, learning_rate=eta, l=l, batch_size=b, steps=k,
            run=r, seed=1)[0] ** 2)
        errs.append(S.weak_error(S.ensemble(fn, 32768), f0))
    assert all(e.excludes_zero() for e in errs)
    fit = S.fit_order([1 / l for l in ls], errs)
    assert 0.8 <= fit.order <= 1.2

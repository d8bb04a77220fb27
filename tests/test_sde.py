"""SDE lab: SVAG transform, samplers, bad input, closed-form weak error (slow)."""

from __future__ import annotations

import functools
import math
import os
from statistics import NormalDist

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


def test_bad_input_named_errors_through_the_runners():
    """The same errors reach a user of the runners, the SDE and the sampler."""
    p = S.QuadraticProblem.random(8, 2, 0)
    x0, data = jnp.zeros(2), p.data
    kw = dict(learning_rate=0.1, batch_size=2, steps=3)
    for l in (0.5, 0, -2, float("nan"), True):                  # l < 1 (and not a number)
        with pytest.raises(bo.AmplificationError, match="l must be"):
            S.run_svag(p.example_loss(), x0, data, l=l, **kw)
    with pytest.raises(S.BatchSizeError, match="same size"):    # batches of different sizes
        S.svag_gradients(p.example_loss(), x0, data[:3], data[:4])
    with pytest.raises(S.BatchSizeError, match="batch_size"):
        S.run_svag(p.example_loss(), x0, data, l=2, learning_rate=0.1, batch_size=0, steps=1)
    with pytest.raises(S.BatchSizeError, match="without replacement"):
        S.run_svag(p.example_loss(), x0, data, l=2, learning_rate=0.1, batch_size=9, steps=1,
                   replace=False)
    with pytest.raises(S.BatchSizeError, match="leading"):
        S.check_same_batch_size({"a": jnp.ones((3, 2)), "b": jnp.ones((4,))}, data[:3])
    # a loss of the whole batch only (no per-example structure), where the SDE needs it
    batch_mean = lambda x, batch: 0.5 * jnp.mean(jnp.sum((x - batch) ** 2, axis=-1), axis=0)
    params_only = lambda x: jnp.sum(x ** 2)
    for loss in (batch_mean, params_only):
        with pytest.raises(S.PerExampleLossError, match="per-example loss"):
            S.simulate_sde(S.SGDSDE(loss, data, 0.1, 2), x0, jax.random.PRNGKey(0), t1=1.0,
                           dt=0.1)
        with pytest.raises(S.PerExampleLossError, match="per-example loss"):
            S.run_noisy_gd(loss, x0, data, **kw)
        with pytest.raises(S.PerExampleLossError, match="per-example loss"):
            S.noise_trace(loss, x0, data, 2) if loss is params_only else \
                S.minibatch_noise(jax.random.PRNGKey(0), loss, x0, data, 2)
    # weak order 2 asked for state-dependent noise
    quartic = lambda x, c: jnp.sum((x - c) ** 4)
    with pytest.raises(S.NotAdditiveNoiseError, match="euler"):
        S.simulate_sde(S.SGDSDE(quartic, data, 0.1, 2), x0, jax.random.PRNGKey(0), t1=1.0,
                       dt=0.1, scheme="sra1")
    assert issubclass(bo.AmplificationError, ValueError)
    assert issubclass(S.BatchSizeError, ValueError)
    assert issubclass(S.PerExampleLossError, TypeError)


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


def test_weak_error_closed_form_order_one_and_ensemble_agrees():
    """Fast representative of the slow Monte Carlo test below.  Oracle: the SVAG(l)
    moments after ``K = T l / eta`` steps (linear recursion) against the SDE's
    (Ornstein-Uhlenbeck, Ito isometry), both closed forms in :class:`QuadraticProblem`;
    the recursion itself is checked by an ensemble at l = 2 (its CI holds the exact
    value and excludes the SDE's)."""
    p = S.QuadraticProblem.random(16, 2, 0)
    x0, eta, b, t = np.array([2.0, -1.0]), 0.5, 4, 1.0
    f0 = p.second_moment(*p.sde_moments(x0, t, eta, b))
    ls = [2, 4, 8, 16]
    exact = [p.second_moment(*p.svag_moments(x0, int(t * l / eta), eta, l, b)) - f0
             for l in ls]
    slope = np.polyfit(np.log([1 / l for l in ls]), np.log(np.abs(exact)), 1)[0]
    assert 0.9 <= slope <= 1.1, slope
    fn = lambda r: jnp.sum(S.run_svag(p.example_loss(), jnp.asarray(x0), p.data,
                                      learning_rate=eta, l=2, batch_size=b, steps=4,
                                      run=r, seed=1)[0] ** 2)
    samples = np.asarray(S.ensemble(fn, 8192))
    e = S.weak_error(samples, f0, 0.99)
    assert e.excludes_zero() and e.low < exact[0] < e.high, (e, exact[0])
    # fit_order: exact slope and the delta-method interval on synthetic errors
    est = [S.Estimate(3 * h ** 1.5, 0.1 * 3 * h ** 1.5, 1.96 * 0.1 * 3 * h ** 1.5)
           for h in (0.5, 0.25, 0.125)]
    fit = S.fit_order([0.5, 0.25, 0.125], est)
    xc = np.log([0.5, 0.25, 0.125]) - np.log([0.5, 0.25, 0.125]).mean()
    assert math.isclose(fit.order, 1.5) and math.isclose(fit.log_c, math.log(3))
    z = NormalDist().inv_cdf(0.975)
    assert math.isclose(fit.hw, z * 0.1 / math.sqrt(np.sum(xc ** 2)))
    with pytest.raises(ValueError, match="not resolved"):
        S.fit_order([0.5, 0.25], [est[0], S.Estimate(0.01, 0.1, 0.2)])


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
    assert 0.8 <= fit.order <= 1.2, fit
    assert fit.order - fit.hw > 0.5 and fit.hw < 0.3, fit      # the order is resolved


# ---- statistical tests of the noise covariance -----------------------------------------
# Oracle: the dense per-example covariance Sigma_1 = (1/n) sum_i (g_i - gbar)(g_i - gbar)^T
# built here with jax.jacobian on a tiny problem (d = 3), times the sampling scale derived
# independently below.  Test: project the M centred samples on K random unit directions u;
# by the CLT z_u = (mean(p^2) - u^T Sigma u) / se(p^2) ~ N(0, 1) (the mean of the samples
# is known to be 0, E g_B = gbar exactly).  Reject if any |z_u| > z_{1 - alpha / (2K)}
# (Bonferroni): false-alarm rate <= alpha = 0.01 asymptotically, checked over seeds below.
ALPHA, K_DIRS = 0.01, 4


@functools.cache
def _toy(seed=0, n=12, d=3):
    rng = np.random.default_rng(seed)
    data = jnp.asarray(rng.normal(size=(n, d)))
    x = jnp.asarray(rng.normal(size=d))
    # non-quadratic: the per-example gradients depend on x non-linearly
    loss = lambda p, z: jnp.log1p(jnp.exp(jnp.dot(p, z))) + 0.25 * jnp.sum((p - z) ** 4)
    g = np.asarray(jax.vmap(jax.grad(loss), (None, 0))(x, data))
    dev = g - g.mean(axis=0)
    return loss, x, data, g.mean(axis=0), dev.T @ dev / n


def _projection_test(samples, cov, seed, alpha=ALPHA, k=K_DIRS) -> bool:
    """True if the test rejects ``Cov(samples) == cov`` (samples have mean 0)."""
    u = np.random.default_rng(10_000 + seed).normal(size=(k, cov.shape[0]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    p2 = (np.asarray(samples) @ u.T) ** 2                      # M x K
    v = np.einsum("kd,de,ke->k", u, cov, u)
    z = (p2.mean(0) - v) / (p2.std(0, ddof=1) / np.sqrt(p2.shape[0]))
    return bool(np.any(np.abs(z) > NormalDist().inv_cdf(1 - alpha / (2 * k))))


def _minibatch_deviations(loss, x, data, gbar, b, replace, m, seed):
    s = S.BatchSampler(data.shape[0], b, replace=replace, seed=seed)
    # one batch per run (step 0): batches of different runs are independent, also
    # without replacement (batches of one epoch are not)
    grad = lambda r: jax.grad(S.batch_loss, argnums=1)(loss, x, S.take(data, s.indices(0, r)))
    # eager vmap, not jit: a fresh jit per seed would recompile in the 100-seed test
    return np.asarray(jax.vmap(grad)(jnp.arange(m))) - gbar


def _noise_samples(loss, x, data, b, replace, m, seed):
    keys = jax.random.split(jax.random.PRNGKey(seed), m)
    draw = lambda k: S.minibatch_noise(k, loss, x, data, b, replace)
    return np.asarray(jax.vmap(draw)(keys))


@pytest.mark.parametrize("replace", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_per_example_noise_matches_minibatch_covariance(replace):
    loss, x, data, gbar, sig1 = _toy()
    n, b, m = data.shape[0], 3, 6000
    # sampling scales derived here: i.i.d. draws -> 1/B; simple random sample ->
    # (1/B)(n - B)/(n - 1) (finite-population correction)
    c = 1 / b if replace else (n - b) / ((n - 1) * b)
    # the factor A of the code reproduces the dense covariance exactly
    _, at = S.gradient_and_noise_factor(loss, x, data)
    np.testing.assert_allclose(np.asarray(at.T @ at), sig1, rtol=1e-12, atol=1e-12)
    emp = _minibatch_deviations(loss, x, data, gbar, b, replace, m, seed=0)
    noise = _noise_samples(loss, x, data, b, replace, m, seed=0)
    assert not _projection_test(emp, c * sig1, 0)        # empirical minibatch covariance
    assert not _projection_test(noise, c * sig1, 0)      # per-example-gradient noise
    # power: a 25 % wrong covariance is rejected by the same test on the same samples
    assert _projection_test(emp, 1.25 * c * sig1, 0)
    assert _projection_test(noise, 1.25 * c * sig1, 0)


@pytest.mark.slow
def test_noise_covariance_test_false_alarm_rate():
    """Over 100 seeds the level-0.01 test rejects a true null about once; P(Binomial(
    100, 0.01) >= 6) = 5e-4, so >= 6 false alarms would mean a miscalibrated test."""
    loss, x, data, gbar, sig1 = _toy()
    b, m, seeds = 3, 3000, 100
    rej_emp = rej_noise = 0
    for sd in range(seeds):
        emp = _minibatch_deviations(loss, x, data, gbar, b, True, m, seed=sd)
        rej_emp += _projection_test(emp, sig1 / b, sd)
        noise = _noise_samples(loss, x, data, b, True, m, seed=sd)
        rej_noise += _projection_test(noise, sig1 / b, sd)
    assert rej_emp < 6 and rej_noise < 6, (rej_emp, rej_noise)


def test_noisy_gd_noise_covariance_matches_sigma():
    loss, x, data, gbar, sig1 = _toy()
    b, eta, m = 4, 0.1, 6000
    fn = lambda r: S.run_noisy_gd(loss, x, data, learning_rate=eta, batch_size=b, steps=1,
                                  run=r, seed=2)[0]
    x1 = np.asarray(S.ensemble(fn, m))
    xi = (np.asarray(x) - eta * gbar - x1) / eta          # the injected noise of each run
    assert abs(xi.mean(0)).max() < 5 * np.sqrt(np.diag(sig1 / b).max() / m)
    assert not _projection_test(xi, sig1 / b, 1)
    assert _projection_test(xi, 1.25 * sig1 / b, 1)


# ---- Ornstein-Uhlenbeck: stationary moments of the simulated SDE ----------------------
@pytest.mark.parametrize("scheme", ["euler", pytest.param("sra1", marks=pytest.mark.slow)])
def test_sde_stationary_moments_ornstein_uhlenbeck(scheme):
    """``dX = -a (X - cbar) dt + s dW`` with ``s^2 = eta c a^2 var(centres)`` (d = 1):
    stationary law N(cbar, s^2 / (2a)).  Euler-Maruyama's own stationary variance is
    ``s^2 dt / (1 - (1 - a dt)^2) = s^2 / (2a - a^2 dt)`` (derived: linear recursion), so
    both the limit and the scheme's bias are checked."""
    a, eta, b, dt, t1, m = 1.5, 0.4, 2, 0.05, 8.0, 3000
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(8, 1))
    cbar, var_c = centres.mean(), centres.var()
    s2 = eta * a ** 2 * var_c / b
    loss = lambda x, c: 0.5 * a * jnp.sum((x - c) ** 2)
    sde = S.SGDSDE(loss, jnp.asarray(centres), learning_rate=eta, batch_size=b)
    x0 = jnp.array([cbar + 3.0])        # e^{-a t1} * 3 ~ 2e-5: stationary by t1
    keys = jax.random.split(jax.random.PRNGKey(0), m)
    ys = jax.vmap(lambda k: S.simulate_sde(sde, x0, k, t1=t1, dt=dt, scheme=scheme)[1])(keys)
    xs = np.asarray(ys)[:, -1, 0]
    var_exact = s2 / (2 * a)
    var_scheme = s2 / (2 * a - a ** 2 * dt) if scheme == "euler" else var_exact
    mean = S.mean_ci(xs, 0.99)
    assert mean.low < cbar < mean.high
    v = S.mean_ci((xs - cbar) ** 2, 0.99)
    assert v.low < var_scheme < v.high


# ---- sharding: 4 forced host devices give the one-device result -----------------------
_SHARD_HEAD = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from bea.dynamics import sde as S
assert len(jax.devices()) == 4, jax.devices()
"""
_SHARD_SVAG = r"""
p = S.QuadraticProblem.random(16, 2, 0)
fn = lambda r: S.run_svag(p.example_loss(), jnp.array([1.0, -1.0]), p.data,
                          learning_rate=0.2, l=4, batch_size=4, steps=20, run=r, seed=5)[0]
"""
_SHARD_CHEAP = r"""
key = jax.random.PRNGKey(5)
fn = lambda r: jnp.cumsum(jax.random.normal(jax.random.fold_in(key, r), (20, 2)), 0)[-1]
try:
    S.ensemble(fn, 62)
except ValueError as e:
    assert "multiple of 4" in str(e), e
else:
    raise AssertionError("62 runs over 4 devices did not raise")
"""
_SHARD_CHECK = r"""
many = S.ensemble(fn, 64)
one = S.ensemble(fn, 64, devices=jax.devices()[:1])
assert len(many.sharding.device_set) == 4, many.sharding
assert {s.data.shape[0] for s in many.addressable_shards} == {16}   # 16 runs per device
np.testing.assert_array_equal(np.asarray(many), np.asarray(one))
assert np.unique(np.asarray(many), axis=0).shape[0] == 64    # runs differ
print("OK")
"""


def _run_sharded(body: str) -> None:
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "-c", _SHARD_HEAD + body + _SHARD_CHECK], cwd=root,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr[-3000:]


def test_ensemble_sharded_over_4_host_devices_cheap_runs():
    """Fast representative: a cheap run function (no diffrax import), uneven split error."""
    _run_sharded(_SHARD_CHEAP)


@pytest.mark.slow
def test_ensemble_sharded_over_4_host_devices_matches_one_device():
    _run_sharded(_SHARD_SVAG)


def test_ensemble_jit_is_cached_per_function():
    """A second call with the same function object traces (and compiles) nothing."""
    traces = []

    def fn(r):
        traces.append(1)                     # runs only while tracing
        return jnp.sum(jax.random.normal(jax.random.PRNGKey(r), (3,)))

    a = S.ensemble(fn, 16)
    b = S.ensemble(fn, 16)
    assert len(traces) == 1
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    S.ensemble(fn, 32)                       # new shape: jit retraces once
    assert len(traces) == 2
    S.ensemble(lambda r: fn(r), 16)          # a new function object: its own entry
    assert len(traces) == 3


def test_equilibrium_statistics_closed_form_and_one_compilation_per_loss():
    """Quadratic problem: |x|^2, G = |H (x - cbar)|^2 and N = tr Q_B in closed form,
    averaged over snapshots; batch sizes 2 and 4 share one compiled function."""
    p = S.QuadraticProblem.random(12, 3, 1)
    loss = p.example_loss()
    snaps = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))
    from bea.dynamics.sde import equilibrium as E
    E._per_snapshot.cache_clear()
    for b in (2, 4):
        st = S.equilibrium_statistics(loss, snaps, p.data, b)
        x = np.asarray(snaps)
        g = (x - p.mean) * p.hessian
        np.testing.assert_allclose(st.sq_norm, np.mean(np.sum(x ** 2, 1)), rtol=1e-12)
        np.testing.assert_allclose(st.grad_sq, np.mean(np.sum(g ** 2, 1)), rtol=1e-12)
        np.testing.assert_allclose(st.trace_sigma, np.trace(p.q(b)), rtol=1e-12)
    assert E._per_snapshot.cache_info().misses == 1
    c = S.lsr_condition(st, 2.0)
    assert math.isclose(c.bound, 1.0) and math.isclose(c.k_max, st.nsr)
    assert c.holds == (st.nsr / 2 >= 1.0)

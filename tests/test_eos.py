"""Edge-of-stability lab: sharpness, transforms, runner, bad input (tests/test_eos_flows.py
has the limiting and principal flows)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import bea.optax as bo
from bea.dynamics import eos
from bea.dynamics.eos.digits import accuracy, digits_data, mse_loss, tanh_mlp
from bea.dynamics.eos.runner import train

jax.config.update("jax_enable_x64", True)


def _net_problem(dtype=jnp.float64):
    """A ~1e3-parameter tanh MLP (891 parameters) on 40 random examples."""
    key = jax.random.PRNGKey(1)
    model = eqx.nn.MLP(8, 3, 24, 2, activation=jnp.tanh, key=key)
    model = jax.tree.map(lambda x: x.astype(jnp.float64).astype(dtype)
                         if eqx.is_inexact_array(x) else x, model)
    x = jax.random.normal(key, (40, 8), jnp.float64).astype(dtype)
    y = jax.random.normal(jax.random.PRNGKey(2), (40, 3), jnp.float64).astype(dtype)
    return model, (x, y)


def _loss(m, batch):
    x, y = batch
    return 0.5 * jnp.mean(jnp.sum((jax.vmap(m)(x) - y) ** 2, -1))


@pytest.fixture(scope="module")
def net():
    model, data = _net_problem()
    diff, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)
    h = jax.hessian(lambda f: _loss(eqx.combine(unravel(f), static), data))(flat)
    evals, evecs = jnp.linalg.eigh(h)
    return model, data, unravel, h, evals[::-1], evecs[:, ::-1]


@pytest.mark.slow
def test_lanczos_top_k_matches_dense_eigvalsh(net):
    model, data, unravel, h, evals, evecs = net
    assert h.shape[0] >= 800
    s = eos.sharpness(_loss, model, 3, data=data, chunk_size=10, num_steps=60)
    np.testing.assert_allclose(s.values, evals[:3], rtol=0, atol=1e-8 * evals[0])
    v = jax.vmap(lambda t: ravel_pytree(t)[0])(s.vectors)
    np.testing.assert_allclose(np.abs(np.sum(v * evecs[:, :3].T, axis=1)), 1.0, atol=1e-8)
    assert np.all(s.residuals < 1e-8)


@pytest.mark.slow
def test_warm_start_and_chunking_and_float32(net):
    model, data, _, _, evals, _ = net
    cold = eos.sharpness(_loss, model, 2, data=data, chunk_size=20, num_steps=40)
    warm = eos.sharpness(_loss, model, 2, data=data, chunk_size=40, num_steps=8, init=cold)
    short = eos.sharpness(_loss, model, 2, data=data, chunk_size=40, num_steps=8)
    err_warm = np.max(np.abs(warm.values - evals[:2]))
    assert err_warm < 1e-9 * evals[0]
    assert err_warm < np.max(np.abs(short.values - evals[:2]))
    # no data argument: the loss closes over the data
    full = eos.sharpness(lambda m: _loss(m, data), model, 1, num_steps=40)
    np.testing.assert_allclose(full.values[0], evals[0], rtol=1e-10)
    m32, d32 = _net_problem(jnp.float32)
    s32 = eos.sharpness(_loss, m32, 1, data=d32, chunk_size=10, num_steps=40)
    assert s32.values.dtype == jnp.float32
    np.testing.assert_allclose(float(s32.values[0]), float(evals[0]), rtol=1e-4)
    s64 = eos.sharpness(_loss, m32, 1, data=d32, chunk_size=10, num_steps=40,
                        dtype=jnp.float64)
    assert s64.values.dtype == jnp.float64


@pytest.mark.slow
def test_hutchinson_trace_within_its_standard_error(net):
    model, data, _, h, _, _ = net
    s = 400
    est = eos.hessian_trace(_loss, model, data=data, chunk_size=20, num_samples=s,
                            key=jax.random.PRNGKey(3))
    var = 2 * (jnp.sum(h ** 2) - jnp.sum(jnp.diag(h) ** 2)) / s
    assert abs(float(est - jnp.trace(h))) < 4 * float(jnp.sqrt(var))


@pytest.mark.slow
def test_sharpness_gradient_matches_finite_differences():
    model, data = _net_problem()
    model = eqx.nn.MLP(4, 2, 6, 1, activation=jnp.tanh, key=jax.random.PRNGKey(4))
    model = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x,
                         model)
    x, y = data[0][:, :4], data[1][:, :2]
    diff, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)

    def lam1(f):
        return jnp.linalg.eigvalsh(jax.hessian(
            lambda g: _loss(eqx.combine(unravel(g), static), (x, y)))(f))[-1]

    lam, g = eos.sharpness_gradient(_loss, model, data=(x, y), chunk_size=8, num_steps=60)
    np.testing.assert_allclose(float(lam), float(lam1(flat)), rtol=1e-10)
    v = jax.random.normal(jax.random.PRNGKey(5), flat.shape, flat.dtype)
    eps = 1e-5
    fd = (lam1(flat + eps * v) - lam1(flat - eps * v)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(ravel_pytree(g)[0], v)), float(fd), rtol=1e-6)


def test_bad_input_named_errors():
    model, data = _net_problem()
    with pytest.raises(eos.NonScalarLossError, match="scalar"):
        eos.sharpness(lambda m, b: jax.vmap(m)(b[0]).sum(-1), model, data=data, chunk_size=8)
    with pytest.raises(eos.DimensionError, match="k <= 891"):
        eos.sharpness(_loss, model, 892, data=data, chunk_size=8)
    with pytest.raises(eos.ChunkingError, match="not a multiple of chunk_size=7"):
        eos.sharpness(_loss, model, data=data, chunk_size=7)
    with pytest.raises(eos.ChunkingError, match="not a multiple"):
        eos.hessian_trace(_loss, model, data=data, chunk_size=30)
    opt = bo.sqrt_loss(0.1, loss_min=1.0)
    p = jnp.ones(2)
    st = opt.init(p)
    with pytest.raises(bo.LossMinError, match="below loss_min"):
        opt.update(p, st, p, value=jnp.asarray(0.5))
    with pytest.raises(Exception, match="below loss_min"):
        jax.jit(lambda v: opt.update(p, st, p, value=v)[0])(jnp.asarray(0.5))
    with pytest.raises(ValueError, match="value="):
        opt.update(p, st, p)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        bo.normalized_gd(0.0)


def test_runner_bad_input_named_errors_before_training():
    # train validates the loss, k and the chunking (through sharpness) before any step
    model, data = _net_problem()
    opt = optax.sgd(0.1)
    kw = dict(steps=2, progress=False)
    with pytest.raises(eos.NonScalarLossError, match="must return a scalar"):
        train(model, lambda m, b: jax.vmap(m)(b[0]), opt, data, **kw)
    with pytest.raises(eos.DimensionError, match="only 891 parameters"):
        train(model, _loss, opt, data, k=900, **kw)
    with pytest.raises(eos.ChunkingError, match="40 examples, which is not a multiple of "
                                                "chunk_size=7"):
        train(model, _loss, opt, data, chunk_size=7, **kw)
    sub = jax.tree.map(lambda a: a[:30], data)            # a sharpness subset of 30
    with pytest.raises(eos.ChunkingError, match="30 examples"):
        train(model, _loss, opt, data, sharpness_data=sub, chunk_size=20, **kw)
    with pytest.raises(eos.EosInputError, match="steps and log_every must be >= 1"):
        train(model, _loss, opt, data, steps=0, progress=False)
    with pytest.raises(eos.EosInputError, match="must be a multiple of log_every"):
        train(model, _loss, opt, data, log_every=4, sharpness_every=6, **kw)


@pytest.mark.slow   # 9 s on a loaded 2-core machine: compiles the sharpness and the step
def test_runner_sqrt_loss_with_loss_min_above_the_loss_stops():
    # L_min above the training loss: sqrt(L - L_min) is undefined; the jitted step raises
    data = digits_data(10, dtype=jnp.float64)
    model = tanh_mlp(2, 1, dtype=jnp.float64)
    with pytest.raises(Exception, match="below loss_min"):
        train(model, mse_loss, bo.sqrt_loss(0.1, loss_min=100.0), data, steps=1,
              progress=False, num_lanczos=5)


def test_normalized_gd_and_sqrt_loss_updates_and_thresholds():
    a = jnp.diag(jnp.array([3.0, 1.0, 0.5]))
    loss = lambda x: 0.5 * x @ a @ x
    x = jnp.array([0.3, -0.2, 0.9])
    g = jax.grad(loss)(x)
    eta = 0.05
    u, _ = bo.normalized_gd(eta).update(g, bo.normalized_gd(eta).init(x), x)
    np.testing.assert_allclose(u, -eta * g / jnp.linalg.norm(g), rtol=1e-14)
    sq = bo.sqrt_loss(eta, loss_min=-0.1)
    u, _ = sq.update(g, sq.init(x), x, value=loss(x))
    np.testing.assert_allclose(u, -eta * jax.grad(lambda z: jnp.sqrt(loss(z) + 0.1))(x),
                               rtol=1e-14)

    def run(opt, n=4000):
        st = opt.init(x)

        def step(c, _):
            z, st = c
            v, gg = jax.value_and_grad(loss)(z)
            up, st = opt.update(gg, st, z, value=v)
            return (z + up, st), (z, jnp.linalg.norm(gg))

        return jax.lax.scan(step, (x, st), None, length=n)[1]

    # normalised GD settles at eta_eff * lambda_1 = 2 (mean over the 2-cycle of eta/|g|)
    zs, norms = run(bo.normalized_gd(eta))
    eff = eta * 3.0 / norms[-200:]
    assert abs(float(jnp.mean(eff[::2] ** -1 + eff[1::2] ** -1)) ** -1 * 2 - 2.0) < 0.05 * 2
    # GD on sqrt(L): the curvature sqrt(lambda_1/2)/|s| of sqrt(L) along u averages 2/eta
    zs, _ = run(bo.sqrt_loss(eta))
    s = jnp.abs(zs[-200:, 0])
    np.testing.assert_allclose(float(jnp.mean(s)), eta * jnp.sqrt(3.0 / 2) / 2, rtol=0.05)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_heavy_ball_threshold_on_a_quadratic(beta):
    lam = 4.0

    def final(eta):
        opt = optax.sgd(eta, momentum=beta or None)
        x = jnp.array([1.0])
        st = opt.init(x)
        for _ in range(400):
            u, st = opt.update(lam * x, st, x)
            x = x + u
        return abs(float(x[0]))

    thr = (2 + 2 * beta) / lam
    assert final(0.97 * thr) < 1.0 < final(1.03 * thr)


@pytest.mark.slow
def test_runner_logs_resumes_identically_and_tracks_gradient_flow(tmp_path):
    data = digits_data(40, dtype=jnp.float64)
    model = tanh_mlp(8, 1, dtype=jnp.float64)
    kw = dict(steps=40, log_every=10, sharpness_every=20, chunk_size=20,
              accuracy_fn=accuracy, progress=False, flow_lr=0.05, normalized_lr=None)
    full = train(model, mse_loss, optax.sgd(0.05), data, **kw)
    ck = tmp_path / "ck.json"
    part = train(model, mse_loss, optax.sgd(0.05), data, checkpoint=str(ck), stop_at=20,
                 **kw)
    assert part["steps"] == 20 and ck.exists()
    rest = train(model, mse_loss, optax.sgd(0.05), data, checkpoint=str(ck), resume=True,
                 out=str(tmp_path / "log.json"), **kw)
    for key in ("loss", "sharpness", "accuracy", "flow_distance", "grad_norm"):
        np.testing.assert_allclose(rest[key], full[key], rtol=1e-12, atol=1e-14)
    assert (tmp_path / "log.json").exists()
    assert len(full["loss"]) == 40 and full["sharpness_step"] == [0, 20]
    # distance to gradient flow is O(eta): halving eta roughly halves it
    half = train(model, mse_loss, optax.sgd(0.025), data,
                 **{**kw, "steps": 80, "sharpness_every": 40, "flow_lr": 0.025})
    ratio = half["flow_distance"][-1] / full["flow_distance"][-1]
    assert full["flow_distance"][0] == 0.0 and 0.4 < ratio < 0.6


@pytest.mark.slow
def test_runner_normalized_gd_effective_step_and_sqrt_loss():
    data = digits_data(20, dtype=jnp.float64)
    model = tanh_mlp(8, 1, dtype=jnp.float64)
    log = train(model, mse_loss, bo.normalized_gd(0.05), data, steps=600, log_every=50,
                progress=False, normalized_lr=0.05, num_lanczos=30)
    # at EoS eta_eff * lambda_1 oscillates around 2 (a 2-cycle: 2/(1 +- delta))
    pairs = np.asarray(log["eta_eff_sharpness"][-4:])
    assert np.all(pairs > 1.0) and abs(np.median(pairs) - 2.0) < 0.6
    log2 = train(model, mse_loss, bo.sqrt_loss(0.01), data, steps=50, log_every=50,
                 progress=False)
    assert log2["loss"][-1] < log2["loss"][0]

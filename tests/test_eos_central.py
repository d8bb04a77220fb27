"""The central flow of GD (bea.dynamics.eos.central) against independent oracles: scipy's
NNLS, an independent diffrax gradient flow below the edge, a closed-form projected flow on
a 3-D toy at the edge, and (slow) discrete GD on digits."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.optimize import nnls

from bea.dynamics import eos
from bea.dynamics.eos import digits as D
from bea.dynamics.eos.central import nnls_small

jax.config.update("jax_enable_x64", True)

C = jnp.array([3.0, 0.0])
R = 2.0                      # the edge lambda_1 = 1 + |x|^2 = 2/eta is the circle |x| = R


def toy(w):
    # L = (1/2) s(x) y^2 + (1/2)|x - c|^2, s = 1 + |x|^2: on y = 0 the Hessian is
    # diag(1, 1, s), lambda_1 = s, u = e_y, grad lambda_1 = (2x, 0)
    x, y = w[:2], w[2]
    return 0.5 * (1.0 + x @ x) * y ** 2 + 0.5 * jnp.sum((x - C) ** 2)


def test_nnls_small_matches_scipy():
    rng = np.random.default_rng(0)
    for trial in range(6):
        k = 1 + trial % 4
        b = rng.normal(size=(k, 7))
        if trial == 5:
            b[-1] = b[0]                                   # rank-deficient Gram matrix
        g = rng.normal(size=7)
        x = np.asarray(nnls_small(jnp.asarray(b @ b.T), jnp.asarray(b @ g)))
        ref, _ = nnls(b.T, -g)
        np.testing.assert_allclose(b.T @ x + g, b.T @ ref + g, atol=1e-10)
        assert np.all(x >= 0)
    b = rng.normal(size=(3, 7))
    mask = jnp.array([True, False, True])
    x = np.asarray(nnls_small(jnp.asarray(b @ b.T), jnp.asarray(b @ g), mask))
    ref, _ = nnls(b[[0, 2]].T, -g)
    np.testing.assert_allclose(x[[0, 2]], ref, atol=1e-10)
    assert x[1] == 0


def test_below_the_edge_it_is_gradient_flow():
    eta, t1 = 0.1, 3.0                                     # 2/eta = 20 > lambda_1 <= ~11
    w0 = jnp.array([0.0, 1.0, 0.5])
    cf = eos.central_flow(toy, w0, eta, t1, k=2, num_saves=6, dt=0.02)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, w, a: -jax.grad(toy)(w)), diffrax.Tsit5(), 0.0, t1, 0.01,
        w0, saveat=diffrax.SaveAt(ts=cf.ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12))
    np.testing.assert_allclose(cf.params, sol.ys, atol=1e-7)
    assert float(jnp.max(cf.sigma2)) == 0.0 and not bool(jnp.any(cf.active))
    assert float(jnp.max(cf.sharpness)) < 0.6 * 2 / eta
    np.testing.assert_allclose(cf.predicted_loss, jax.vmap(toy)(sol.ys), atol=1e-7)


def _closed_form(t):
    # gradient flow x = c + (x0 - c) e^{-t} from x0 = (0, 1) until |x| = R (q = e^{-t*}
    # solves 10 q^2 - 18 q + 5 = 0), then gradient flow of (1/2)|x - c|^2 on the circle:
    # theta' = -(|c|/R) sin(theta), tan(theta/2) = tan(theta*/2) e^{-|c| (t - t*)/R}
    q = (18 - np.sqrt(124)) / 20
    ts = -np.log(q)
    if t <= ts:
        return np.array([3.0, 0.0]) + np.array([-3.0, 1.0]) * np.exp(-t), ts
    th0 = np.arctan2(q, 3 - 3 * q)
    th = 2 * np.arctan(np.tan(th0 / 2) * np.exp(-3.0 * (t - ts) / R))
    return R * np.array([np.cos(th), np.sin(th)]), ts


def test_at_the_edge_it_is_the_projected_flow_in_closed_form():
    eta = 2 / (1 + R ** 2)                                 # 0.4
    cf = eos.central_flow(toy, jnp.array([0.0, 1.0, 0.0]), eta, 4.0, dt=0.005, num_saves=40)
    ts = np.asarray(cf.ts)
    ref = np.array([_closed_form(t)[0] for t in ts])
    t_star = _closed_form(0.0)[1]
    np.testing.assert_allclose(np.asarray(cf.params)[:, :2], ref, atol=2e-5)
    np.testing.assert_allclose(np.asarray(cf.params)[:, 2], 0.0, atol=1e-14)
    on = ts > t_star + 0.3
    np.testing.assert_allclose(cf.sharpness[on, 0], 2 / eta, atol=1e-6)
    assert bool(jnp.all(cf.active[on, 0])) and not bool(jnp.any(cf.active[ts < t_star - 0.1]))
    # x = sigma^2/2 = -grad lambda . grad L / |grad lambda|^2 = (|c| R cos(th) - R^2)/(2 R^2)
    th = np.arctan2(ref[:, 1], ref[:, 0])
    np.testing.assert_allclose(cf.sigma2[on, 0] / 2, ((3 * R * np.cos(th) - R ** 2)
                                                      / (2 * R ** 2))[on], atol=1e-5)
    np.testing.assert_allclose(cf.predicted_loss[on],
                               (jax.vmap(toy)(cf.params) + cf.sigma2[:, 0] / eta)[on],
                               atol=1e-7)             # lambda_1 = 2/eta to 1e-6 here


@pytest.mark.slow   # 16 s: two compilations of the chunked field
def test_chunked_data_gives_the_same_flow():
    x, y = D.digits_data(20, dtype=jnp.float64)
    model = D.tanh_mlp(4, dtype=jnp.float64)
    a = eos.central_flow(D.mse_loss, model, 2.0, 1.0, data=(x, y), chunk_size=10,
                         num_saves=1, k=2)
    b = eos.central_flow(D.mse_loss, model, 2.0, 1.0, data=(x, y), num_saves=1, k=2)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(u, v, atol=1e-10)
    np.testing.assert_allclose(a.predicted_loss, b.predicted_loss, rtol=1e-10)


def test_bad_input_named_errors():
    w = jnp.zeros(3)
    with pytest.raises(eos.NonScalarLossError, match="scalar"):
        eos.central_flow(lambda v: v ** 2, w, 0.1, 1.0)
    with pytest.raises(eos.DimensionError, match="k <= 3"):
        eos.central_flow(toy, w, 0.1, 1.0, k=4)
    with pytest.raises(eos.EosInputError, match="k must be an integer in 1..10"):
        eos.central_flow(toy, w, 0.1, 1.0, k=11)
    with pytest.raises(eos.EosInputError, match="must be > 0"):
        eos.central_flow(toy, w, 0.0, 1.0)
    x, y = D.digits_data(20, dtype=jnp.float64)
    with pytest.raises(eos.ChunkingError, match="not a multiple of chunk_size=7"):
        eos.central_flow(D.mse_loss, D.tanh_mlp(4), 0.5, 1.0, data=(x, y), chunk_size=7)


@pytest.mark.slow
def test_digits_central_flow_predicts_gd_loss_and_sharpness_better_than_gradient_flow():
    # Cohen et al.'s setting, small: GD at eta = 0.7 reaches 2/eta ~ 2.86 near step 110
    eta, steps, win = 0.7, 600, 10
    x, y = D.digits_data(200, dtype=jnp.float64)
    model = D.tanh_mlp(16, dtype=jnp.float64)
    diff, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)

    def loss(w):
        return D.mse_loss(eqx.combine(unravel(w), static), (x, y))

    def step(w, _):
        v, g = jax.value_and_grad(loss)(w)
        return w - eta * g, v

    _, gd_loss = jax.jit(lambda w: jax.lax.scan(step, w, None, length=steps))(flat)
    gd_loss = np.asarray(gd_loss)
    cf = eos.central_flow(loss, flat, eta, eta * steps, num_saves=20)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, w, a: -jax.grad(loss)(w)), diffrax.Tsit5(), 0.0,
        eta * steps, eta / 2, flat, saveat=diffrax.SaveAt(ts=cf.ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
    gf_loss = np.asarray(jax.vmap(loss)(sol.ys))
    idx = np.rint(np.asarray(cf.ts) / eta).astype(int)
    late = idx >= 300                                     # well after the EoS onset
    avg = np.array([gd_loss[i - win:i + win].mean() for i in np.minimum(idx, steps - win)])
    err_cf = np.mean(np.abs(np.asarray(cf.predicted_loss) - avg)[late] / avg[late])
    err_gf = np.mean(np.abs(gf_loss - avg)[late] / avg[late])
    assert err_cf < 0.5 * err_gf, (err_cf, err_gf)
    np.testing.assert_allclose(cf.sharpness[late, 0], 2 / eta, rtol=5e-3)
    gf_sharp = [float(eos.sharpness(loss, w, num_steps=30).top) for w in sol.ys[late]]
    assert min(gf_sharp) > 1.2 * 2 / eta                  # gradient flow keeps sharpening

"""Tests for games.zoo, games.runners and games.stability (float64, fast)."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from games import runners, stability, zoo  # noqa: E402

EPS, H = 0.09, 0.2


# ----------------------------------------------------------------------------------------
# rotational game
# ----------------------------------------------------------------------------------------


def _norm2(traj: runners.Trajectory) -> np.ndarray:
    return np.asarray(traj.x) ** 2 + np.asarray(traj.y) ** 2


def test_rotational_losses_give_stated_field() -> None:
    g = zoo.rotational(EPS)
    x, y = jnp.asarray(0.7), jnp.asarray(-1.3)
    vx, vy = g.vector_field(x, y)
    np.testing.assert_allclose(vx, -EPS * x + y, rtol=1e-14)
    np.testing.assert_allclose(vy, -x - EPS * y, rtol=1e-14)


def test_rotational_simultaneous_diverges() -> None:
    g = zoo.rotational(EPS)
    traj = runners.simultaneous(g, lr=(H, H), steps=300)
    assert traj.x.shape == (301,)
    r2 = _norm2(traj)
    assert r2[-1] > 2.0 * r2[0]
    eigs = stability.discrete_map_eigenvalues(g, "simultaneous", (H, H))
    rho_expected = np.hypot(1 - H * EPS, H)
    np.testing.assert_allclose(stability.spectral_radius(eigs), rho_expected, rtol=1e-12)
    assert stability.spectral_radius(eigs) > 1
    assert not stability.is_stable_map(eigs)


def test_rotational_alternating_converges() -> None:
    g = zoo.rotational(EPS)
    traj = runners.alternating(g, lr=H, steps=300)
    r2 = _norm2(traj)
    assert r2[-1] < 0.1 * r2[0]
    eigs = stability.discrete_map_eigenvalues(g, "alternating", H)
    # det = (1 - h eps)^2 and the eigenvalues are a complex pair: |lambda| = 1 - h eps.
    np.testing.assert_allclose(np.abs(eigs), 1 - H * EPS, rtol=1e-12)
    assert stability.is_stable_map(eigs)


def test_rotational_flow_converges_and_matches_closed_form() -> None:
    g = zoo.rotational(EPS)
    eigs = stability.flow_eigenvalues(g)
    np.testing.assert_allclose(
        np.sort_complex(eigs), np.sort_complex([-EPS - 1j, -EPS + 1j]), atol=1e-14
    )
    assert stability.is_stable_flow(eigs)
    ts, traj = runners.flow(g, T=30.0, n_save=31)
    # z(t) = e^{-eps t} R(-t) z0 with R the rotation matrix
    t = np.asarray(ts)
    c, s = np.cos(t), np.sin(t)
    x_exact = np.exp(-EPS * t) * (c * 1.0 + s * 1.0)
    y_exact = np.exp(-EPS * t) * (-s * 1.0 + c * 1.0)
    np.testing.assert_allclose(traj.x, x_exact, atol=1e-8)
    np.testing.assert_allclose(traj.y, y_exact, atol=1e-8)
    assert _norm2(traj)[-1] < 0.01 * _norm2(traj)[0]


def test_flow_eigenvalues_from_callable_and_drift() -> None:
    g = zoo.rotational(EPS)
    field, z = stability.flat_vector_field(g)
    e1 = stability.flow_eigenvalues(field, z)
    np.testing.assert_allclose(np.sort(e1.real), [-EPS, -EPS], atol=1e-14)
    # a drift -c z shifts every eigenvalue by -c
    drift = lambda x, y: (-0.5 * x, -0.5 * y)
    e2 = stability.flow_eigenvalues(g, drift=drift)
    np.testing.assert_allclose(np.sort(e2.real), [-EPS - 0.5] * 2, atol=1e-14)
    _, traj = runners.flow(g, T=5.0, n_save=6, drift=drift, solver="tsit5", rtol=1e-9)
    np.testing.assert_allclose(
        _norm2(traj)[-1], 2.0 * np.exp(-2 * (EPS + 0.5) * 5.0), rtol=1e-6
    )


# ----------------------------------------------------------------------------------------
# Dirac GAN
# ----------------------------------------------------------------------------------------


def test_dirac_wgan_flow_conserves_radius_and_gd_spirals_out() -> None:
    g = zoo.dirac_gan("wgan", theta0=1.0, psi0=0.5)
    _, traj = runners.flow(g, T=20.0, n_save=41, rtol=1e-12, atol=1e-12)
    r2 = _norm2(traj)
    np.testing.assert_allclose(r2, r2[0], rtol=1e-9)
    sim = runners.simultaneous(g, lr=0.1, steps=200)
    r2s = _norm2(sim)
    # each step multiplies theta^2 + psi^2 by exactly 1 + h^2
    np.testing.assert_allclose(r2s[1:] / r2s[:-1], 1.01, rtol=1e-12)
    assert np.all(np.diff(r2s) > 0)


def test_dirac_gan_variants_and_equilibrium() -> None:
    for loss in ("non_saturating", "saturating", "wgan"):
        g = zoo.dirac_gan(loss)
        xs, ys = g.equilibrium
        gx, gy = g.grads(xs, ys)
        assert float(gx) == 0.0 and float(gy) == 0.0
        eigs = stability.flow_eigenvalues(g)
        np.testing.assert_allclose(eigs.real, 0.0, atol=1e-14)
        scale = 1.0 if loss == "wgan" else 0.5
        np.testing.assert_allclose(np.sort(eigs.imag), [-scale, scale], atol=1e-14)
    ns = zoo.dirac_gan("non_saturating")
    l1, l2 = ns.losses(jnp.asarray(0.3), jnp.asarray(-2.0))
    sig = lambda u: 1 / (1 + np.exp(-u))
    np.testing.assert_allclose(l1, -np.log(sig(-0.6)), rtol=1e-13)
    np.testing.assert_allclose(l2, -np.log(0.5) - np.log(1 - sig(-0.6)), rtol=1e-13)
    with pytest.raises(ValueError, match="loss must be one of"):
        zoo.dirac_gan("hinge")


# ----------------------------------------------------------------------------------------
# runners vs hand-written loops
# ----------------------------------------------------------------------------------------


def _game_and_grads() -> tuple[zoo.Game, object, object]:
    g = zoo.random_quadratic(jax.random.PRNGKey(3), 3, 2)
    gx = jax.jit(lambda x, y: jax.grad(g.loss1, argnums=0)(x, y))
    gy = jax.jit(lambda x, y: jax.grad(g.loss2, argnums=1)(x, y))
    return g, gx, gy


def test_runners_match_python_loops() -> None:
    g, gx, gy = _game_and_grads()
    a, lam, n = 0.05, 0.08, 25
    x0, y0 = g.x0, g.y0

    # simultaneous
    x, y = x0, y0
    xs, ys = [x], [y]
    for _ in range(n):
        x, y = x - a * gx(x, y), y - lam * gy(x, y)
        xs.append(x)
        ys.append(y)
    tr = runners.simultaneous(g, lr=(a, lam), steps=n)
    np.testing.assert_allclose(tr.x, np.stack(xs), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr.y, np.stack(ys), rtol=1e-12, atol=1e-14)

    # alternating with inner=(2, 3)
    x, y = x0, y0
    for _ in range(n):
        for _ in range(2):
            x = x - a * gx(x, y)
        for _ in range(3):
            y = y - lam * gy(x, y)
    tr = runners.alternating(g, lr=(a, lam), steps=n, inner=(2, 3))
    np.testing.assert_allclose(tr.x[-1], x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr.y[-1], y, rtol=1e-12, atol=1e-14)

    # extragradient
    x, y = x0, y0
    for _ in range(n):
        xh, yh = x - a * gx(x, y), y - lam * gy(x, y)
        x, y = x - a * gx(xh, yh), y - lam * gy(xh, yh)
    tr = runners.extragradient(g, lr=(a, lam), steps=n)
    np.testing.assert_allclose(tr.x[-1], x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr.y[-1], y, rtol=1e-12, atol=1e-14)

    # optimistic with a given z_{-1}
    xp, yp = 0.9 * x0, 1.1 * y0
    x, y = x0, y0
    for _ in range(n):
        xn = x - 2 * a * gx(x, y) + a * gx(xp, yp)
        yn = y - 2 * lam * gy(x, y) + lam * gy(xp, yp)
        xp, yp, x, y = x, y, xn, yn
    tr = runners.optimistic(g, lr=(a, lam), steps=n, x_prev=0.9 * x0, y_prev=1.1 * y0)
    np.testing.assert_allclose(tr.x[-1], x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr.y[-1], y, rtol=1e-12, atol=1e-14)

    # optimistic default z_{-1} = z_0: first step equals simultaneous GD
    tr_o = runners.optimistic(g, lr=(a, lam), steps=1)
    tr_s = runners.simultaneous(g, lr=(a, lam), steps=1)
    np.testing.assert_allclose(tr_o.x, tr_s.x, rtol=1e-14)


def test_runner_lr_is_method_rate_times_step() -> None:
    """One step-size convention: ``games.methods.<name>(r)`` stepped at ``h`` (its own
    ``Method.step`` on the unscaled block fields) is ``runners.run(name, lr=r h)``."""
    import games

    g, gx, gy = _game_and_grads()
    r, h = (0.5, 0.8), 0.1
    fields = [lambda z: (-gx(*z), jnp.zeros_like(z[1])),
              lambda z: (jnp.zeros_like(z[0]), -gy(*z))]
    z0 = (g.x0, g.y0)
    cases = [("simultaneous", games.simultaneous(r), {}, z0),
             ("alternating", games.alternating(r, steps=(2, 1)), {"inner": (2, 1)}, z0),
             ("extragradient", games.extragradient(r), {}, z0),
             ("optimistic", games.optimistic(r), {}, (z0, z0))]
    for name, method, kw, state in cases:
        got = method.step(fields, state, h)
        x1, y1 = got[0] if name == "optimistic" else got
        tr = runners.run(name, g, lr=(r[0] * h, r[1] * h), steps=1, **kw)
        np.testing.assert_allclose(tr.x[1], x1, rtol=1e-13, err_msg=name)
        np.testing.assert_allclose(tr.y[1], y1, rtol=1e-13, err_msg=name)


def test_save_every_and_custom_start() -> None:
    g, _, _ = _game_and_grads()
    full = runners.extragradient(g, lr=0.05, steps=12)
    sub = runners.extragradient(g, lr=0.05, steps=12, save_every=4)
    assert sub.x.shape == (4, 3)
    np.testing.assert_allclose(sub.x, full.x[::4], rtol=1e-14)
    tr = runners.simultaneous(g, 2 * g.x0, g.y0, lr=0.05, steps=0)
    np.testing.assert_allclose(tr.x[0], 2 * g.x0)
    # python-float starting points for a scalar game
    tr = runners.alternating(zoo.rotational(), 2.0, 0.5, lr=0.1, steps=3)
    assert tr.x.dtype == jnp.float64 and float(tr.x[0]) == 2.0


def test_pytree_players() -> None:
    A = jnp.array([[1.0, 2.0], [0.5, -1.0]])

    def l1(x: dict, y: tuple) -> jax.Array:
        return x["u"] @ A @ y[0] + 0.5 * jnp.sum(x["v"] ** 2) * y[1]

    def l2(x: dict, y: tuple) -> jax.Array:
        return -(x["u"] @ A @ y[0]) + 0.5 * jnp.sum(y[1] ** 2)

    g = zoo.Game(
        l1, l2, x0={"u": jnp.ones(2), "v": jnp.ones(3)}, y0=(jnp.ones(2), jnp.asarray(1.0))
    )
    tr = runners.alternating(g, lr=0.1, steps=5)
    assert tr.x["v"].shape == (6, 3) and tr.y[1].shape == (6,)
    eigs = stability.discrete_map_eigenvalues(g, "optimistic", 0.1, at=(g.x0, g.y0))
    assert eigs.shape == (2 * 8,)


# ----------------------------------------------------------------------------------------
# stability of other zoo games / methods
# ----------------------------------------------------------------------------------------


def test_random_quadratic_is_stable() -> None:
    g = zoo.random_quadratic(jax.random.PRNGKey(0), 4, 3, margin=0.1)
    eigs = stability.flow_eigenvalues(g)
    assert eigs.shape == (7,)
    assert np.max(eigs.real) <= -0.1 + 1e-12
    J = np.asarray(g.loss1.J)
    np.testing.assert_allclose(
        np.sort_complex(eigs), np.sort_complex(np.linalg.eigvals(-J)), atol=1e-12
    )
    # own blocks positive definite
    assert np.linalg.eigvalsh(J[:4, :4]).min() > 0 and np.linalg.eigvalsh(J[4:, 4:]).min() > 0


def test_bilinear_methods() -> None:
    g = zoo.bilinear(jnp.eye(2))
    h = 0.1
    assert not stability.is_stable_map(stability.discrete_map_eigenvalues(g, "simultaneous", h))
    for m in ("extragradient", "optimistic"):
        assert stability.is_stable_map(stability.discrete_map_eigenvalues(g, m, h)), m
    # alternating on bilinear: |lambda| = 1 exactly (area-preserving)
    ea = stability.discrete_map_eigenvalues(g, "alternating", h)
    np.testing.assert_allclose(np.abs(ea), 1.0, atol=1e-12)
    tr = runners.extragradient(g, lr=h, steps=400)
    assert float(jnp.sum(tr.x[-1] ** 2 + tr.y[-1] ** 2)) < 0.5 * 4


# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------


def test_bad_rates_raise() -> None:
    g = zoo.rotational()
    for lr in (-0.1, 0.0, (0.1, -0.2), float("nan"), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="lr|learning rate"):
            runners.simultaneous(g, lr=lr, steps=3)
    with pytest.raises(ValueError, match="learning rate"):
        stability.discrete_map_eigenvalues(g, "alternating", (0.1, 0.0))
    with pytest.raises(ValueError, match="steps"):
        runners.simultaneous(g, lr=0.1, steps=-1)
    with pytest.raises(ValueError, match="inner"):
        runners.alternating(g, lr=0.1, steps=3, inner=(0, 1))
    with pytest.raises(ValueError, match="divide"):
        runners.simultaneous(g, lr=0.1, steps=10, save_every=3)
    with pytest.raises(ValueError, match="unknown method"):
        runners.run("adam", g, lr=0.1, steps=3)
    with pytest.raises(ValueError, match="only used by the optimistic"):
        runners.run("simultaneous", g, lr=0.1, steps=3, x_prev=1.0)


def test_mismatched_pytrees_raise() -> None:
    A = jnp.ones((3, 2))
    with pytest.raises(ValueError, match="loss1 does not accept"):
        zoo.bilinear(A, x0=jnp.ones(2))
    with pytest.raises(ValueError, match="same object"):
        shared = jnp.ones(2)
        zoo.Game(lambda x, y: x @ y, lambda x, y: -(x @ y), x0=shared, y0=shared)
    with pytest.raises(ValueError, match="share"):
        leaf = jnp.ones(2)
        zoo.Game(
            lambda x, y: x[0] @ y[0],
            lambda x, y: -(x[0] @ y[0]),
            x0=(leaf,),
            y0=(leaf,),
        )
    with pytest.raises(ValueError, match="scalar"):
        zoo.Game(lambda x, y: x * y, lambda x, y: -x @ y, x0=jnp.ones(2), y0=jnp.ones(2))
    g = zoo.bilinear(A)
    with pytest.raises(ValueError, match="leaf shapes"):
        runners.simultaneous(g, jnp.ones(2), None, lr=0.1, steps=2)
    with pytest.raises(ValueError, match="structure"):
        runners.simultaneous(g, (jnp.ones(3),), None, lr=0.1, steps=2)
    with pytest.raises(ValueError, match="no known equilibrium|at"):
        stability.discrete_map_eigenvalues(g, "simultaneous", 0.1, at=(jnp.ones(3), 1.0))
    with pytest.raises(ValueError, match="deterministic"):
        runners.simultaneous(g, lr=0.1, steps=2, key=jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------------------
# mixture-of-Gaussians GAN
# ----------------------------------------------------------------------------------------


def test_mog_gan_losses_and_steps() -> None:
    gan = zoo.mog_gan(jax.random.PRNGKey(0), width=16, depth=1, batch_size=64)
    key = jax.random.PRNGKey(1)
    batch = gan.sample_batch(key)
    assert batch[0].shape == (64, 2) and batch[1].shape == (64, gan.latent_dim)
    l1, l2 = gan.losses(gan.x0, gan.y0, batch)
    assert np.isfinite(l1) and np.isfinite(l2) and l1 > 0 and l2 > 0

    # data metrics: real data covers every mode at full quality
    data = gan.sample_data(jax.random.PRNGKey(2), 2000)
    assert int(gan.mode_coverage(data)) == 8
    assert float(gan.high_quality_fraction(data)) > 0.98
    assert int(gan.mode_coverage(jnp.zeros_like(data))) == 0

    tr = runners.simultaneous(gan, lr=(1e-2, 1e-2), steps=6, key=key, save_every=3)
    assert jax.tree.leaves(tr.x)[0].shape[0] == 3
    x_last = jax.tree.map(lambda a: a[-1], tr.x)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(tr))
    samples = gan.sample_generator(x_last, jax.random.PRNGKey(4), 100)
    assert samples.shape == (100, 2)

    batches = jax.tree.map(lambda a: jnp.stack([a, a[::-1], a, a[::-1]]), batch)
    tr2 = runners.alternating(gan, lr=1e-2, steps=4, batches=batches)
    assert jax.tree.leaves(tr2.y)[0].shape[0] == 5
    with pytest.raises(ValueError, match="exactly one of"):
        runners.simultaneous(gan, lr=1e-2, steps=2)
    with pytest.raises(ValueError, match="leading axis"):
        runners.simultaneous(gan, lr=1e-2, steps=3, batches=batches)

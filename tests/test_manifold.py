"""Zero-loss-manifold lab: Reg by AD vs closed forms, limiting flows vs closed forms,
ensemble means vs flows (error shrinking with the step size, inside the Monte-Carlo CI
at the smallest), minibatch noise without drift, the optax step, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

jax.config.update("jax_enable_x64", True)

import bea.dynamics.manifold as M  # noqa: E402
from bea.optax import noise_injection  # noqa: E402

HYP = lambda w: jnp.array([w[0] * w[1] - 1.0])           # Gamma: uv = 1


def hyperbola_label_flow(u0, t):
    """Label noise on r = uv - 1 (n = 1): dX/dt = -(1/4) P grad (u^2 + v^2); with
    z = 2 log u on Gamma this is dz/dt = -tanh z, so sinh z(t) = sinh z0 e^{-t}."""
    z = np.arcsinh(np.sinh(2 * np.log(u0)) * np.exp(-t))
    return np.array([np.exp(z / 2), np.exp(-z / 2)])


def hetero_noise():
    """r = w1 with the label perturbed by exp(w0) eta: Reg = exp(2 w0)/2 on Gamma = {w1 = 0},
    fast flow dw0/dt = -exp(2 w0), so exp(-2 w0(t)) = exp(-2 w0(0)) + 2t."""
    return M.custom_noise(lambda w, e: 0.5 * (w[1] - jnp.exp(w[0]) * e[0]) ** 2,
                          lambda w: jnp.zeros(1), residuals=lambda w: jnp.array([w[1]]))


# ------------------------------------------------------------------ Reg by AD
def _net():
    x = jnp.array([[0.3, -1.0], [1.2, 0.4], [-0.7, 0.9]])
    y = jnp.array([0.5, -0.2, 0.1])
    f = lambda w: jnp.tanh(x @ w["a"]) @ w["b"]           # 2 -> 3 -> 1 tanh net
    w = {"a": jnp.array([[0.4, -0.3, 0.8], [0.1, 0.7, -0.5]]), "b": jnp.array([0.6, -1.1, 0.3])}
    return f, y, w


@pytest.mark.slow
def test_reg_label_noise_and_dropconnect_closed_forms():
    f, y, w = _net()
    res = lambda p: f(p) - y
    n = y.size
    assert float(M.regulariser(M.label_noise(res, n), w)) == pytest.approx(0.5, abs=1e-12)
    # DropConnect: (1/2n) sum_ij (w_j d_j r_i)^2 + (1/2n) sum_i r_i sum_j w_j^2 d_jj r_i
    from jax.flatten_util import ravel_pytree
    flat, unr = ravel_pytree(w)
    rf = lambda v: res(unr(v))
    jac = jax.jacfwd(rf)(flat)                                # dense: tiny reference model
    hdiag = jnp.stack([jnp.diag(jax.hessian(lambda v, i=i: rf(v)[i])(flat)) for i in range(n)])
    closed = (0.5 / n) * jnp.sum((jac * flat) ** 2) + (0.5 / n) * jnp.sum(
        rf(flat) * (hdiag @ flat ** 2))
    dc = M.dropconnect(res)
    assert float(M.regulariser(dc, w)) == pytest.approx(float(closed), rel=1e-12)
    # Hutchinson: unbiased, within 4 standard errors
    est = [float(M.regulariser(dc, w, method="hutchinson", key=jax.random.PRNGKey(i),
                               num_samples=200)) for i in range(5)]
    assert abs(np.mean(est) - float(closed)) < 4 * np.std(est, ddof=1) / np.sqrt(5) + 1e-12


def test_reg_minibatch_zero_and_weight_perturbation_half_trace():
    f, y, w = _net()
    res = lambda p: f(p) - y
    assert float(M.regulariser(M.minibatch(res, 3, 2), w)) == pytest.approx(0.0, abs=1e-14)
    from jax.flatten_util import ravel_pytree
    flat, unr = ravel_pytree(w)
    loss = lambda p: 0.5 * jnp.mean(res(p) ** 2)
    tr = jnp.trace(jax.hessian(lambda v: loss(unr(v)))(flat))
    assert float(M.regulariser(M.weight_perturbation(loss, res), w)) == pytest.approx(
        0.5 * float(tr), rel=1e-12)


# ------------------------------------------------------------------ limiting flows
@pytest.mark.slow
def test_limiting_flows_match_closed_forms_and_scales():
    w0 = jnp.array([2.0, 0.5])
    fl = M.limiting_flow(M.label_noise(HYP, 1), w0, 1.0, sigma=1.0, num_points=3)
    assert fl.scale == "slow" and "Slow scale" in str(fl.verdict)
    for t, w in zip(fl.ts, fl.ws, strict=True):
        np.testing.assert_allclose(np.asarray(w), hyperbola_label_flow(2.0, t), atol=1e-7)
    fl = M.limiting_flow(hetero_noise(), jnp.zeros(2), 0.5, sigma=1.0, num_points=3)
    assert fl.scale == "fast" and "Fast scale" in str(fl.verdict)
    np.testing.assert_allclose(np.asarray(fl.ws[:, 0]), -0.5 * np.log1p(2 * fl.ts), atol=1e-7)
    assert fl.steps(0.01) == 50   # 0.5 / (alpha sigma^2)


# ------------------------------------------------------------------ ensembles vs flows
@pytest.mark.parametrize("case", [
    pytest.param("label-noise hyperbola (slow)", marks=pytest.mark.slow),
    "hetero label noise (fast)"])
def test_ensemble_mean_converges_to_flow(case):
    if case.startswith("label"):
        nl, w0, sigma, T = M.label_noise(HYP, 1), jnp.array([2.0, 0.5]), 2.0, 0.5
        exact = hyperbola_label_flow(2.0, T)
        per = lambda a: a * a * sigma * sigma
        alphas, runs = (0.02, 0.01, 0.0025), 1024   # bias ~0.56 alpha in u
    else:
        nl, w0, sigma, T = hetero_noise(), jnp.zeros(2), 0.5, 0.5
        exact = np.array([-0.5 * np.log1p(2 * T), 0.0])
        per = lambda a: a * sigma * sigma
        alphas, runs = (0.02, 0.01, 0.005), 1024
    errs, inside = [], []
    for a in alphas:
        e = M.ensemble(nl, w0, alpha=a, sigma=sigma, steps=int(round(T / per(a))), runs=runs,
                       num_records=2, seed=1)
        err = np.abs(e.mean[-1] - exact)
        errs.append(np.linalg.norm(err))
        inside.append(bool(np.all(err <= e.half_width(0.99))))
    assert errs[0] > errs[1] > errs[2], errs
    assert inside[-1], (errs, inside)
    assert errs[0] > 2 * errs[2], errs           # a real decrease, not Monte-Carlo jitter


@pytest.mark.slow
def test_minibatch_at_interpolation_no_drift_on_either_scale():
    res3 = lambda w: jnp.array([w[0] * w[1] - 1.0, w[2] - w[0]])   # curve in R^3
    mb, ln = M.minibatch(res3, 2, 1), M.label_noise(res3, 2)
    wg = jnp.array([2.0, 0.5, 2.0])
    verdict = M.scale_of(mb, wg, sigma=mb.natural_sigma)
    assert verdict.scale == "none" and "Neither scale" in str(verdict)
    assert M.scale_of(ln, wg, sigma=0.5).scale == "slow"             # the control moves
    woff = wg + jnp.array([0.05, -0.05, 0.05])
    phi = np.asarray(M.project_to_manifold(mb, woff))
    s, a = mb.natural_sigma, 0.05
    fast_steps, slow_steps = round(1 / (a * s * s)), round(1 / (a * a * s * s))
    moved = {}
    for nl in (mb, ln):
        e = M.ensemble(nl, woff, alpha=a, sigma=s, steps=slow_steps, runs=128, num_records=21)
        i = int(np.argmin(np.abs(e.steps - fast_steps)))
        # position along Gamma: project the mean (the approach to Gamma is not a drift)
        along = lambda m, nl=nl: np.linalg.norm(
            np.asarray(M.project_to_manifold(nl, jnp.asarray(m))) - phi)
        moved[nl.name] = (along(e.mean[i]), along(e.mean[-1]))
    mb_fast, mb_slow = moved[mb.name]
    ln_slow = moved[ln.name][1]
    assert ln_slow > 0.05                        # label noise drifts O(1) on the slow scale
    assert mb_fast < 1e-4 and mb_slow < 1e-4 and mb_slow < 1e-3 * ln_slow, moved


# ------------------------------------------------------------------ optax, sharding
def test_optax_transform_reproduces_ensemble_run():
    nl, w0, a, s, steps = M.label_noise(HYP, 1), jnp.array([2.0, 0.5]), 0.05, 0.7, 40
    e = M.ensemble(nl, w0, alpha=a, sigma=s, steps=steps, runs=4, seed=3, num_records=2)
    key = jax.random.split(jax.random.PRNGKey(3), 4)[2]
    opt = optax.chain(noise_injection(nl, s, key=key), optax.sgd(a))
    w, st = w0, opt.init(w0)
    for _ in range(steps):
        g = jax.grad(nl.loss)(w)
        up, st = opt.update(g, st, w)
        w = optax.apply_updates(w, up)
    np.testing.assert_allclose(np.asarray(w), e.final[2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(M.ensemble_loop(nl, w0, alpha=a, sigma=s, steps=steps, runs=4,
                                               seed=3), e.final, rtol=1e-12)


@pytest.mark.slow
def test_ensemble_sharded_over_four_host_devices():
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        import bea.dynamics.manifold as M
        assert len(jax.devices()) == 4
        nl = M.label_noise(lambda w: jnp.array([w[0] * w[1] - 1.0]), 1)
        kw = dict(alpha=0.05, sigma=0.7, steps=30, runs=16, seed=2, num_records=3)
        e4 = M.ensemble(nl, jnp.array([2.0, 0.5]), **kw)
        e1 = M.ensemble(nl, jnp.array([2.0, 0.5]), devices=jax.devices()[:1], **kw)
        np.testing.assert_allclose(e4.final, e1.final, rtol=1e-12)
        np.testing.assert_allclose(e4.mean, e1.mean, rtol=1e-12)
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=root, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


# ------------------------------------------------------------------ bad input
@pytest.mark.slow
def test_bad_input_named_errors():
    nl = M.label_noise(HYP, 1)
    with pytest.raises(M.FarFromManifoldError, match=r"distance.*project_to_manifold"):
        M.limiting_flow(nl, jnp.array([2.0, 1.0]), 0.1, sigma=1.0)
    fl = M.limiting_flow(nl, jnp.array([2.0, 0.52]), 0.1, sigma=1.0, project=True, num_points=2)
    assert abs(float(fl.ws[0][0] * fl.ws[0][1]) - 1.0) < 1e-9
    for bad in (0.0, -1.0, float("nan"), "x"):
        with pytest.raises(M.SigmaError):
            M.limiting_flow(nl, jnp.array([2.0, 0.5]), 0.1, sigma=bad)
    biased = M.custom_noise(nl.fn, nl.noise_like,
                            lambda k, w: 0.3 + jax.random.normal(k, (1,)), residuals=HYP)
    with pytest.raises(M.NoiseMeanError, match="non-zero mean"):
        M.ensemble(biased, jnp.array([2.0, 0.5]), alpha=0.1, sigma=1.0, steps=2, runs=2)
    sgld = M.gaussian_sgld(lambda w: 0.5 * (w[0] * w[1] - 1.0) ** 2, HYP)
    with pytest.raises(M.StochasticLimitError, match="diffusion"):
        M.limiting_flow(sgld, jnp.array([2.0, 0.5]), 0.1, sigma=1.0)


@pytest.mark.slow
def test_notebook_executes():
    import nbformat
    from nbclient import NotebookClient

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    nb = nbformat.read(os.path.join(root, "notebooks", "zero_loss_manifold.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": root}}).execute()


@pytest.mark.slow
def test_reproduce_small(tmp_path, monkeypatch):
    from bea.dynamics.manifold import experiment

    cases = experiment._cases(False)
    monkeypatch.setattr(experiment, "_cases", lambda large: [
        dict(cases[1], sigmas=(0.5,), alphas=(0.02, 0.01))])
    rep = M.reproduce(str(tmp_path), progress=False)
    assert "error shrinks" in rep and (tmp_path / "manifold_errors.png").exists()
    rep2 = M.reproduce(str(tmp_path), progress=False, resume=True)
    assert rep2 == rep

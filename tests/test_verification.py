"""Tests for bea.verification: BEA modified flows vs discrete iterates.

Model problem: gradient descent theta_{k+1} = theta_k - h grad L(theta_k) on the
non-quadratic loss L(x, y) = (x y - 1)^2 / 2 + 0.1 x^4.  With g = grad L and
H = hess L the modified field of GD (f = -g) is

    f~ = f + h f_1 + h^2 f_2,
    f_1 = -(1/2) f'f          = -(1/2) H g,
    f_2 = (1/12) f''(f, f) + (1/3) f'f'f = -(1/12) D^3L[g, g] - (1/3) H^2 g,

written by hand here (jax.hessian is fine in 2-D) so the test does not depend on
the symbolic engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bea.verification import (
    DIVERGED,
    ROUNDOFF,
    SOLVER_FAILED,
    VerificationReport,
    fit_slope,
    integer_step_sizes,
    load_json,
    run_verification,
)

jax.config.update("jax_enable_x64", True)

T = 1.0
# n = 13, 18, 26, 37, 52, 74, 104: h geometric in [0.0096, 0.077], T/h integer
HS = integer_step_sizes(T, 0.08, factor=8, num=7)
THETA0 = np.array([1.0, 0.5])


def loss(p: jax.Array) -> jax.Array:
    x, y = p[0], p[1]
    return 0.5 * (x * y - 1.0) ** 2 + 0.1 * x**4


grad = jax.grad(loss)
hess = jax.hessian(loss)


def gd_step(p: jax.Array, h: jax.Array) -> jax.Array:
    return p - h * grad(p)


def make_field(c1: float = -0.5):
    """Truncated modified field of GD; ``c1`` is the coefficient of H g in f_1."""

    def field(p: jax.Array, h: jax.Array, order: int) -> jax.Array:
        g = grad(p)
        f = -g
        if order >= 1:
            H = hess(p)
            f = f + h * c1 * (H @ g)
        if order >= 2:
            d3 = jax.grad(lambda q: g @ hess(q) @ g)(p)  # D^3L[g, g]
            f = f + h**2 * (-d3 / 12.0 - H @ (H @ g) / 3.0)
        return f

    return field


gd_field = make_field()


@pytest.fixture(scope="module")
def report() -> VerificationReport:
    return run_verification(
        gd_step, gd_field, jnp.asarray(THETA0), HS, [0, 1, 2], T, progress=False
    )


def test_hs_are_integer_divisors():
    ns = [T / h for h in HS]
    assert all(abs(n - round(n)) < 1e-9 for n in ns)
    assert max(HS) / min(HS) >= 4
    assert min(round(n) for n in ns) >= 4


def test_gd_global_and_local_slopes(report):
    for p in (0, 1, 2):
        assert report.slopes[p] == pytest.approx(p + 1, abs=0.15), str(report)
        assert report.local_slopes[p] == pytest.approx(p + 2, abs=0.15), str(report)
    assert report.expected_slopes == {0: 1, 1: 2, 2: 3}
    assert report.expected_local_slopes == {0: 2, 1: 3, 2: 4}
    assert report.dtype == "float64" and not report.low_precision
    assert all(not c for row in report.flags for c in row), report.flags
    assert report.errors.shape == (3, len(HS))
    # errors decrease with the order at every h
    assert np.all(np.diff(report.errors, axis=0) < 0)
    report.assert_slopes(0.15, "global")
    report.assert_slopes(0.15, "local")


def test_wrong_coefficient_drops_order():
    """f_1 = -(1/4) H g instead of -(1/2) H g: order 1 only as good as order 0."""
    rep = run_verification(
        gd_step, make_field(-0.25), jnp.asarray(THETA0), HS, [1], T, progress=False
    )
    assert rep.slopes[1] == pytest.approx(1.0, abs=0.15), str(rep)
    assert rep.local_slopes[1] == pytest.approx(2.0, abs=0.15), str(rep)
    assert rep.check_slopes(0.15) == {1: False}
    with pytest.raises(AssertionError, match="orders \\[1\\]"):
        rep.assert_slopes(0.15)


def test_batch_of_initial_points_and_loop_mode(report):
    pts = jnp.asarray([THETA0, [0.8, 0.9], [1.2, 0.2]])
    rep = run_verification(
        gd_step,
        gd_field,
        pts,
        HS,
        [0, 2],
        T,
        batch_initial=True,
        progress=False,
        h_batching="loop",
        local=False,
    )
    assert rep.n_initial == 3 and rep.errors_all.shape == (2, len(HS), 3)
    assert rep.local_errors is None and rep.local_flags is None
    # point 0 is the single-point run
    np.testing.assert_allclose(rep.errors_all[:, :, 0], report.errors[[0, 2]], rtol=1e-6)
    for p in (0, 2):
        assert len(rep.slopes_all[p]) == 3
        assert all(abs(s - (p + 1)) < 0.2 for s in rep.slopes_all[p])
        assert rep.slopes[p] == pytest.approx(np.median(rep.slopes_all[p]))


@pytest.mark.slow  # ~10 s: the per-order kernels compile once per order; the fused kernel
# itself runs in every fast verification test (test_gd_global_and_local_slopes checks it)
def test_fused_orders_equal_per_order_kernels(report):
    """One kernel for all orders (lax.switch on the order) == one kernel per order, and the
    vectorised slope fits (report and fit_slope) == np.polyfit point by point."""
    pts = jnp.asarray([THETA0, [0.8, 0.9], [1.2, 0.2]])
    kw = dict(batch_initial=True, progress=False)
    fused = run_verification(gd_step, gd_field, pts, HS, [2, 0, 1], T, **kw)
    split = run_verification(gd_step, gd_field, pts, HS, [2, 0, 1], T, fuse_orders=False, **kw)
    assert fused.orders == [2, 0, 1]
    np.testing.assert_allclose(fused.errors_all, split.errors_all, rtol=1e-9)
    np.testing.assert_allclose(fused.local_errors_all, split.local_errors_all, rtol=1e-9)
    np.testing.assert_allclose(fused.errors_all[[1, 2, 0], :, 0], report.errors, rtol=1e-6)
    assert np.all(np.diff(fused.hs) < 0) or np.all(np.diff(fused.hs) > 0)
    assert all(not c for row in fused.flags for c in row)
    for i, p in enumerate(fused.orders):
        for b in range(3):
            # independent of bea's own least squares: numpy's polyfit
            s = np.polyfit(np.log(fused.hs), np.log(fused.errors_all[i, :, b]), 1)[0]
            assert fused.slopes_all[p][b] == pytest.approx(s, rel=1e-10)
            assert fit_slope(fused.hs, fused.errors_all[i, :, b])[0] == pytest.approx(s, rel=1e-10)


def test_float32_flattens_and_flags_roundoff():
    hs = integer_step_sizes(T, 0.08, factor=16, num=6)  # down to h ~ 0.005
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="jax_enable_x64"):
            run_verification(gd_step, gd_field, jnp.asarray(THETA0), hs, [0], T, progress=False)
        rep = run_verification(
            gd_step,
            gd_field,
            jnp.asarray(THETA0, dtype=jnp.float32),
            hs,
            [0, 2],
            T,
            progress=False,
            allow_float32=True,
            local=False,
        )
    assert rep.dtype == "float32" and rep.low_precision
    assert "LOW PRECISION" in str(rep)
    assert any("LOW PRECISION" in w for w in rep.warnings)
    assert rep.rtol > 1e-12  # tolerances raised to >= 10 eps(float32)
    i2 = rep.orders.index(2)
    assert ROUNDOFF in rep.flags[i2][0]  # smallest h: order 2 sits on the round-off floor
    assert ROUNDOFF in rep.flag(2, min(hs))
    assert any("order 2 (global)" in w and "roundoff" in w for w in rep.warnings)
    # order 0 is far above the floor and keeps its slope
    assert not any(rep.flags[0][j] for j in range(len(hs)))
    assert rep.slopes[0] == pytest.approx(1.0, abs=0.15)
    # what is left of order 2 is not a clean h^3
    assert (
        rep.slopes[2] is None
        or abs(rep.slopes[2] - 3) > 0.15
        or sum(ROUNDOFF in c for c in rep.flags[i2]) >= 2
    )


def test_float32_params_under_x64_need_allow_float32():
    with pytest.raises(ValueError, match="allow_float32"):
        run_verification(
            gd_step, gd_field, jnp.asarray(THETA0, dtype=jnp.float32), HS, [0], T, progress=False
        )


@pytest.mark.parametrize(
    "hs, horizon, match",
    [
        ([0.05, 0.04], 1.0, "h range too coarse for a slope: use hs spanning at least a factor 4"),
        ([0.05, 0.025, 0.0125], 0.1, r"h=0\.05 .*horizon T=0\.1"),
        ([0.03, 0.02, 0.01], 1.0, "not an integer multiple of h=0.03"),
        ([0.1, -0.05], 1.0, "positive"),
    ],
)
def test_bad_grids(hs, horizon, match):
    with pytest.raises(ValueError, match=match):
        run_verification(gd_step, gd_field, jnp.asarray(THETA0), hs, [0], horizon, progress=False)


def test_bad_orders():
    with pytest.raises(ValueError, match="orders"):
        run_verification(gd_step, gd_field, jnp.asarray(THETA0), HS, [1, 1], T, progress=False)


def nan_step(threshold: float):
    """GD whose trajectory becomes NaN for step sizes above ``threshold``."""

    def step(p, h):
        return jnp.where(h > threshold, jnp.nan, 1.0) * gd_step(p, h)

    return step


def test_nan_trajectory_is_flagged_and_excluded():
    rep = run_verification(
        nan_step(0.04), gd_field, jnp.asarray(THETA0), HS, [0], T, progress=False, local=False
    )
    bad = np.asarray(HS)[np.asarray(HS) > 0.04]
    assert bad.size == 2
    for j, h in enumerate(rep.hs):
        assert (DIVERGED in rep.flags[0][j]) == (h > 0.04)
    assert np.all(np.isnan(rep.errors[0][rep.hs > 0.04]))
    good = rep.hs < 0.04
    expected, _ = fit_slope(rep.hs[good], rep.errors[0][good])
    assert rep.slopes[0] == pytest.approx(expected, rel=1e-12)  # no slope through the NaNs
    assert rep.slopes[0] == pytest.approx(1.0, abs=0.15)
    assert any("diverged" in w for w in rep.warnings)
    assert "D" in str(rep)
    json.dumps(rep.to_dict(), allow_nan=False)  # NaN errors serialise as null


def test_too_few_usable_points_gives_no_slope():
    rep = run_verification(
        nan_step(0.012), gd_field, jnp.asarray(THETA0), HS, [0], T, progress=False, local=False
    )
    assert rep.slopes[0] is None
    assert any("no slope fitted" in w and "order 0" in w for w in rep.warnings)
    assert "global None" in str(rep)
    rep.plot()  # no usable points: still plots


def test_str_plot_and_json_roundtrip(report, tmp_path):
    text = str(report)
    for p in (0, 1, 2):
        assert f"{report.slopes[p]:.3f}" in text
        assert f"{report.local_slopes[p]:.3f}" in text
        assert f"(expected {p + 1})" in text
    assert "order 2" in text and f"{report.hs[0]:11.4e}" in text

    png = tmp_path / "global.png"
    fig = report.plot(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "order 0" in fig.axes[0].get_legend().get_texts()[0].get_text()
    pdf = tmp_path / "local.pdf"
    report.plot(pdf, kind="local")
    assert pdf.stat().st_size > 0
    with pytest.raises(ValueError, match="kind"):
        report.plot(kind="nope")

    path = tmp_path / "report.json"
    report.save_json(path)
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".tmp")] == []
    back = load_json(path)
    assert back.to_dict() == report.to_dict()
    np.testing.assert_array_equal(back.errors, report.errors)
    np.testing.assert_array_equal(back.local_errors, report.local_errors)
    assert back.slopes == report.slopes and back.flags == report.flags
    assert str(back) == str(report)


def test_notes_and_multistep_state():
    """Heavy ball as a two-step state; only the order-0 field (of the rescaled flow)."""
    beta = 0.5

    def init_state(p, h):
        return (p, p)  # theta_{-1} = theta_0

    def step(s, h):
        p, prev = s
        return (p - h * grad(p) + beta * (p - prev), p)

    def field(p, h, order):
        return -grad(p) / (1 - beta)

    rep = run_verification(
        step,
        field,
        jnp.asarray(THETA0),
        HS,
        [0],
        T,
        init_state=init_state,
        project=lambda s: s[0],
        notes=["theta_{-1} = theta_0"],
        progress=False,
        local=False,
    )
    assert rep.notes[0] == "theta_{-1} = theta_0"
    assert "theta_{-1} = theta_0" in str(rep)
    # the zero-velocity start gives an O(1)-in-h transient, so the error does not vanish
    assert np.all(np.isfinite(rep.errors))


SHARD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {tests_dir!r})
    from test_verification import gd_step, gd_field, HS, T
    from bea.verification import run_verification
    pts = jnp.asarray([[1.0, 0.5], [0.8, 0.9], [1.2, 0.2], [0.9, 0.7]])
    rep = run_verification(gd_step, gd_field, pts, HS, [1], T, batch_initial=True,
                           progress=False, local=False)
    print(json.dumps({{"devices": jax.device_count(), "sharded": rep.sharded,
                      "errors": rep.errors_all.tolist(), "notes": rep.notes}}))
    """
)


@pytest.mark.slow  # ~10 s (a subprocess with 4 host devices); the fast suite keeps
# tests/test_sde.py::test_ensemble_sharded_over_4_host_devices_cheap_runs for sharding
def test_sharding_over_forced_host_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    code = SHARD_SCRIPT.format(tests_dir=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["devices"] == 4 and res["sharded"] is True
    assert any("sharded" in n for n in res["notes"])
    pts = jnp.asarray([[1.0, 0.5], [0.8, 0.9], [1.2, 0.2], [0.9, 0.7]])
    ref = run_verification(
        gd_step,
        gd_field,
        pts,
        HS,
        [1],
        T,
        batch_initial=True,
        progress=False,
        local=False,
        shard=False,
    )
    np.testing.assert_allclose(np.asarray(res["errors"]), ref.errors_all, rtol=1e-8)


def test_failed_ode_solve_is_flagged_and_excluded():
    def bad_field(p, h, order):
        return jnp.where(h > 0.04, jnp.nan, 1.0) * gd_field(p, h, order)

    rep = run_verification(
        gd_step, bad_field, jnp.asarray(THETA0), HS, [0], T, progress=True, max_steps=2048
    )
    for flags in (rep.flags, rep.local_flags):
        assert [SOLVER_FAILED in c for c in flags[0]] == [h > 0.04 for h in rep.hs]
    assert rep.slopes[0] == pytest.approx(1.0, abs=0.15)
    assert rep.local_slopes[0] == pytest.approx(2.0, abs=0.15)
    assert any("solver_failed" in w for w in rep.warnings)


def test_nan_median_equals_numpy_nanmedian_on_finite_entries():
    import warnings

    from bea.verification.fits import nan_median

    rng = np.random.default_rng(0)
    for shape in [(3, 5, 8), (4, 7), (2, 3, 1), (5,)]:
        a = rng.normal(size=shape)
        a[rng.random(shape) < 0.3] = np.nan
        a[rng.random(shape) < 0.1] = np.inf          # non-finite counts as missing
        a.reshape(-1)[0] = -np.inf
        for axis in range(-1, -len(shape) - 1, -1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-nan slices
                want = np.nanmedian(np.where(np.isfinite(a), a, np.nan), axis=axis)
            np.testing.assert_array_equal(nan_median(a, axis=axis), want)
    assert np.isnan(nan_median(np.full((2, 3), np.nan))).all()


def _flows_both_end_times(orders):
    """build_flow's output with the traced ``n h`` and with the constant end time."""
    from bea.verification.grid import validate_grid
    from bea.verification.kernels import (
        build_discrete,
        build_flow,
        default_init_state,
        identity,
        make_solver,
    )

    hs, ns = validate_grid(HS[:4], T)
    assert np.all(ns * hs == T)                      # the premise: every n h is T
    ns32 = ns.astype(np.int32)
    pts = jnp.asarray([THETA0, [0.8, 0.9]])
    th_n, th_1 = build_discrete(gd_step, default_init_state, identity, int(ns.max()),
                                "vmap")(pts, hs, ns32)
    solver, _ = make_solver("tsit5")
    outs = [np.asarray(build_flow(gd_field, orders, solver, 1e-12, 1e-14, 4096, False,
                                  "vmap", end)(pts, hs, ns32, th_n, th_1))
            for end in (None, T)]
    return hs, pts, th_n, outs


def test_constant_end_time_is_bitwise_the_traced_end_time():
    """The flows end at ``n h`` (traced per cell) or, when all ``n h`` are one number, at
    that number compiled in as a constant (``build_flow(end_time=...)``, what
    run_verification picks then): the same errors, scales and status to the bit."""
    from bea.verification.kernels import flow_keys

    hs, _, _, outs = _flows_both_end_times((0,))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert flow_keys(False) == ("err", "ok", "scale", "norm0")
    assert outs[1].shape == (4, 1, len(hs), 2) and np.all(outs[1][1] == 1.0)


@pytest.mark.slow  # ~5 s (three solver compilations); the fast test above keeps the
# bitwise comparison of the two end times
def test_flow_errors_equal_plain_diffrax_solves():
    """build_flow's errors (both end times, orders 0 and 1) == an unbatched
    ``diffrax.diffeqsolve`` to ``t1 = T`` per (h, point), to round-off."""
    import diffrax

    hs, pts, th_n, outs = _flows_both_end_times((0, 1))
    np.testing.assert_array_equal(outs[0], outs[1])
    solve = jax.jit(lambda y0, h: diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, h: gd_field(y, h, 1)), diffrax.Tsit5(), 0.0, T, None,
        y0, args=h, max_steps=4096,
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-14)).ys[-1])
    for k in range(len(hs)):
        for b in range(2):
            want = float(jnp.linalg.norm(th_n[k, b] - solve(pts[b], hs[k])))
            assert outs[1][0, 1, k, b] == pytest.approx(want, rel=1e-6)

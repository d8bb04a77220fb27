"""bea.verify: slopes of the global error against real iterates for every method."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import games
from bea import methods as M
from bea import verify

jax.config.update("jax_enable_x64", True)

CASES = {
    "gd": M.gd,
    "heavy_ball": lambda: M.heavy_ball(0.9),
    "nesterov": lambda: M.nesterov(0.5),
    "sgd2": lambda: M.sgd(2),
    "extragradient": M.extragradient,
    "proximal_point": M.proximal_point,
    "simultaneous_equal": lambda: games.simultaneous((1.0, 1.0)),
    "simultaneous_unequal": lambda: games.simultaneous((1.0, 0.5)),
    "alternating_equal": lambda: games.alternating((1.0, 1.0)),
    "alternating_unequal": lambda: games.alternating((0.5, 1.0)),
}
SLOW_CASES = {
    "sgd3": lambda: M.sgd(3),
    "optimistic": lambda: games.optimistic((1.0, 0.5)),
    "game_extragradient": lambda: games.extragradient((0.5, 1.0)),
}


def _check(report):
    for p in report.orders:
        s = report.slopes[p]
        assert s is not None, report
        assert abs(s - (p + 1)) <= 0.15, f"order {p}: slope {s}\n{report}"


# the fast suite keeps one case per kind of method (one-step gd, multistep heavy_ball,
# implicit proximal_point, and a game to order 2 below); the others (nesterov is a multistep
# method like heavy_ball, extragradient a one-step method like gd) run with -m slow
_SLOW_DEFAULT = {"sgd2", "simultaneous_equal", "simultaneous_unequal", "alternating_equal",
                 "nesterov", "extragradient", "alternating_unequal"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_DEFAULT
                                  else n for n in sorted(CASES)])
def test_slopes_default_problem(name):
    _check(verify(CASES[name](), orders=(0, 1, 2, 3), progress=False))


def test_slopes_default_problem_game_to_order_2():
    """The fast suite's game case: alternating_unequal to order 2 (its order-3 field is
    most of the ~14 s the full case takes; that case runs with -m slow above)."""
    _check(verify(CASES["alternating_unequal"](), orders=(0, 1, 2), progress=False))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_CASES))
def test_slopes_default_problem_slow(name):
    # sgd(3) to order 3 compiles 303 elementary differentials, over verify's default
    # limit (120): a slow test accepts that cost explicitly, as a user would
    _check(verify(SLOW_CASES[name](), orders=(0, 1, 2, 3), progress=False, max_trees=400))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gd", "heavy_ball"])
def test_slopes_mlp(name):
    _check(verify(CASES[name](), problem="mlp", orders=(0, 1, 2, 3), progress=False))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nesterov", "sgd2", "extragradient", "proximal_point"])
def test_slopes_mlp_slow(name):
    _check(verify(CASES[name](), problem="mlp", orders=(0, 1, 2, 3), progress=False))


def test_user_loss_and_consistent_start_note():
    def loss(p, b):
        return jnp.sum((p - b) ** 2 * (1 + p**2)) / 2

    r = verify(M.heavy_ball(0.5), loss, jnp.array([0.3, -0.4]), batches=[jnp.array([1.0, 0.0])],
               orders=(0, 1, 2), progress=False)
    _check(r)
    assert any("consistent previous iterate" in n for n in r.notes)


def test_inconsistent_start_breaks_the_slope():
    # starting heavy ball at rest (theta_{-1} = theta_0) leaves an O(h) offset: order-2
    # slope is no longer 3 -- the test of the consistent start can fail
    def loss(p, b):
        return jnp.sum((p - b) ** 2 * (1 + p**2)) / 2

    p0 = jnp.array([0.3, -0.4])
    r = verify(M.heavy_ball(0.5), loss, p0, batches=[jnp.array([1.0, 0.0])],
               orders=(2,), previous=p0, progress=False)
    assert r.slopes[2] is not None and r.slopes[2] < 2.5
    assert any("given by the user" in n for n in r.notes)


def test_symbolic_parameter_needs_numbers():
    with pytest.raises(ValueError, match="symbolic parameters"):
        verify(M.heavy_ball(), progress=False)


def test_initial_points_and_points_sweep():
    from bea.verification import initial_points

    p0 = (jnp.array([0.8, -0.5]), jnp.array([0.6]))
    pts = initial_points(p0, 5, spread=0.2, seed=1)
    assert pts[0].shape == (5, 2) and pts[1].shape == (5, 1)
    assert jnp.array_equal(pts[0][0], p0[0]) and jnp.array_equal(pts[1][0], p0[1])
    assert float(jnp.min(jnp.abs(pts[0][1:] - p0[0]))) > 0  # the others are moved
    with pytest.raises(ValueError, match=">= 1"):
        initial_points(p0, 0)

    single = verify(M.gd(), orders=(0, 1), progress=False)
    many = verify(M.gd(), orders=(0, 1), points=4, progress=False)
    assert many.n_initial == 4 and many.errors_all.shape[-1] == 4
    # point 0 is the problem's own start: same errors as the single-point run
    assert jnp.allclose(many.errors_all[:, :, 0], single.errors, rtol=1e-8)
    for p in (0, 1):
        assert all(abs(s - (p + 1)) <= 0.15 for s in many.slopes_all[p]), many
    with pytest.raises(ValueError, match="either points="):
        verify(M.gd(), lambda p, b: jnp.sum(p**2), jnp.zeros((2, 2)), batches=[None],
               batch_initial=True, points=2)

"""``bea.verify``: real iterates against truncated modified flows, for any method.

Runs the update as users write it (:meth:`bea.methods.Method.step`: multi-batch,
multistep, two-player) and integrates ``theta' = f_0 + h f_1 + .. + h^p f_p`` with a
high-order adaptive solver (diffrax Dopri8, rtol 1e-12) over the same horizon, in
float64; reports global and one-step errors per (h, order) and fitted slopes (expected
``p + 1`` and ``p + 2``), flagging cells where round-off or the solver, not truncation,
dominates.  See :func:`bea.verification.run_verification` for the numerical core.

Multistep methods start from the *consistent* previous iterate
``theta_{-1} = Phi_h^{-1}(theta_0)`` of the underlying one-step method (its series
evaluated on the loss to order ``max(orders) + 2``), unless ``previous=`` is given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import limits as _limits
from . import series as S
from . import symbols as _safe
from . import trees as T
from .compile import _DAG, _numeric, _Problem
from .methods import Method
from .modified import modified_equation
from .verification import VerificationReport, integer_step_sizes, run_verification


@dataclass
class Problem:
    """A verification problem: losses, initial point(s), batches and a default grid."""

    name: str
    loss: Any                      # L(params, batch) / list per color / (L_1, L_2)
    params0: Any
    batches: Sequence[Any] | None = None
    horizon: float = 1.0
    h_max: float = 0.1
    batch_initial: bool = False


# ----------------------------------------------------------------------------- problems


def _quartic(p, b):
    # a non-quadratic 2-D loss with a valley: (x y - a)^2/2 + c x^4/4 + y^2/20
    a, c = b[0], b[1]
    return (p[0] * p[1] - a) ** 2 / 2 + c * p[0] ** 4 / 4 + p[1] ** 2 / 20


def default_problem(method: Method, which: str = "default") -> Problem:
    """Built-in problem for ``method`` (memoised, so repeated verifications reuse their
    compiled code); see :func:`_default_problem`."""
    players = getattr(method, "players", None)
    if players is None and which == "game":
        raise ValueError(f"problem 'game' needs a two-player method, not {method.name}")
    return _default_problem(method.ncolors, players is not None, which)


@functools.lru_cache(maxsize=16)
def _default_problem(ncolors: int, game: bool, which: str) -> Problem:
    """Built-in problems: ``"default"`` (non-quadratic 2-D loss; one batch per color for
    SGD), ``"mlp"`` (a small tanh MLP regression), ``"game"`` for two-player methods
    (a non-quadratic general-sum game, params ``(x, y)``)."""
    if game:
        def L1(p):
            x, y = p
            return (0.5 * jnp.sum(x**2) + x[0] * y[0] + 0.25 * x[1] * y[0] ** 2
                    + 0.1 * x[0] ** 4)

        def L2(p):
            x, y = p
            return 0.5 * y[0] ** 2 - x[0] * y[0] + 0.5 * x[1] * y[0] + 0.05 * y[0] ** 4

        p0 = (jnp.array([0.8, -0.5]), jnp.array([0.6]))
        return Problem("game", (L1, L2), p0, horizon=1.0, h_max=0.1)
    m = ncolors
    if which == "default":
        rng = np.random.default_rng(0)
        batches = [jnp.array([1.0 + 0.3 * rng.standard_normal(), 0.5 + 0.2 * rng.random()])
                   for _ in range(m)]
        return Problem("default (x y - a)^2/2 + c x^4/4 + y^2/20", _quartic,
                       jnp.array([1.0, 0.5]), batches=batches, horizon=1.0, h_max=0.1)
    if which == "mlp":
        key = jax.random.PRNGKey(0)
        k1, k2, k3 = jax.random.split(key, 3)
        X = jax.random.normal(k1, (16, 2))
        Y = jnp.sin(X[:, :1]) + 0.5 * X[:, 1:] ** 2
        params = {"W1": 0.5 * jax.random.normal(k2, (2, 8)), "b1": jnp.zeros(8),
                  "W2": 0.5 * jax.random.normal(k3, (8, 1)), "b2": jnp.zeros(1)}

        def mlp_loss(p, batch):
            Xb, Yb = batch
            hdn = jnp.tanh(Xb @ p["W1"] + p["b1"])
            return 0.5 * jnp.mean((hdn @ p["W2"] + p["b2"] - Yb) ** 2)

        split = np.array_split(np.arange(16), m)
        batches = [(X[i], Y[i]) for i in split]
        return Problem("mlp (2-8-1 tanh regression)", mlp_loss, params, batches=batches,
                       horizon=1.0, h_max=0.2)
    raise ValueError(f"unknown problem {which!r}: use 'default', 'mlp' or 'game'")


def initial_points(params0: Any, n: int, *, spread: float = 0.1, seed: int = 0) -> Any:
    """``n`` initial points around ``params0`` for a sweep with ``batch_initial=True``:
    every leaf gets a leading axis of size ``n``; point 0 is ``params0`` itself and the
    others add independent ``N(0, spread^2)`` noise to every entry."""
    if int(n) < 1:
        raise ValueError(f"the number of initial points must be >= 1, got {n}")
    leaves, treedef = jax.tree.flatten(params0)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    out = []
    for key, leaf in zip(keys, leaves, strict=True):
        leaf = jnp.asarray(leaf)
        noise = spread * jax.random.normal(key, (int(n), *leaf.shape), dtype=leaf.dtype)
        out.append((leaf[None] + noise).at[0].set(leaf))
    return jax.tree.unflatten(treedef, out)


# ----------------------------------------------------------------------------- series map


def series_map(series: S.BSeries, method: Method, loss: Any, order: int,
               subs: dict | None = None) -> Callable:
    """``(params, h, batches) -> B(a, params)``: a B-series map evaluated on JAX losses,
    truncated at trees of ``order`` vertices (used for the consistent previous iterate)."""
    import kernels
    from kernels import tree_util as tu

    terms = []
    for t in T.trees_up_to(order, series.ncolors):
        v = series[t]
        if v:
            c = _numeric(series.domain.to_sympy(v) / T.sigma(t), subs, "a series coefficient")
            terms.append((t, c))
    dag = _DAG([t for t, _ in terms])
    problem = _Problem(method, loss, None)
    orders_of = kernels.node_orders(dag.nodes)

    def apply(params, h, batches=None):
        bound = problem.bind(batches)
        F = kernels.elementary_differentials(dag.nodes, problem.fields(bound), params)
        out = params
        for t, c in terms:
            i = dag.index[t]
            out = tu.tree_add(out, tu.tree_scale(c * h ** orders_of[i], F[i]))
        return out

    return apply


# ----------------------------------------------------------------------------- verify


def _auto_grid(method: Method, problem: Problem, subs: dict | None,
               max_order: int = 3) -> tuple[list[float], float]:
    """Scale the default grid by the method's own time scales: the order-0 speed ``c_0``
    (``1/(1-beta)`` for heavy ball) sets the horizon, and the growth rate of the series
    ``r = max_k (|c_k|/|c_0|)^(1/k)`` (``c_k`` the largest coefficient of ``f_k``) sets
    the step: ``h r <= 0.04`` keeps every order in the asymptotic regime (measured on
    GD, heavy ball 0.5/0.9, Nesterov, extragradient, optimistic GD, games)."""
    me = modified_equation(method, max(1, max_order))
    c0 = max(abs(_numeric(t.coefficient, subs, "f_0")) for t in me.terms(0))
    r = 0.0
    for k in range(1, me.order + 1):
        ck = max([abs(_numeric(t.coefficient, subs, f"f_{k}")) for t in me.terms(k)] or [0.0])
        r = max(r, (ck / c0) ** (1.0 / k))
    horizon = problem.horizon / max(1.0, c0)
    h_max = min(problem.h_max, 0.04 / r if r > 0 else problem.h_max, horizon / 8)
    return integer_step_sizes(horizon, h_max), horizon


# Compiled closures are reused across calls with the same method, loss and batches, so
# run_verification's jit caches (keyed on the function objects) make repeat calls warm.
_CLOSURES: dict[Any, tuple] = {}


def _batches_key(batches: Sequence[Any] | None) -> Any:
    if batches is None:
        return None
    return tuple(id(x) for x in jax.tree.leaves(batches))


def _closures(method, loss, batches, orders, subs, previous):
    me = modified_equation(method, max(orders))
    compiled = me.to_jax(loss, subs=subs)
    problem_ = compiled.problem
    b = None if batches is None else tuple(batches)

    def field(params, h, order):
        return compiled._field(params, h, b, order)

    def fields_now():
        return problem_.fields(problem_.bind(b))

    def step(state, h):
        return method.step(fields_now(), state, h)

    if method.history == 0:
        return step, field, None, None, problem_, b, None
    k = method.history
    if previous is not None:
        prev_list = list(previous) if isinstance(previous, (list, tuple)) and len(
            previous) == k and k > 1 else [previous]

        def init_state(p0, h):
            return (p0, *prev_list)
        note = "multistep start: previous iterate(s) given by the user"
    else:
        inv = S.inverse(method.series(max(orders) + 2))
        back = series_map(inv, method, loss, max(orders) + 2, subs)

        def init_state(p0, h):
            xs = [p0]
            for _ in range(k):
                xs.append(back(xs[-1], h, b))
            return tuple(xs)
        note = (f"multistep start: consistent previous iterate Phi_h^-1(theta_0) from the "
                f"underlying one-step method (trees up to order {max(orders) + 2})")

    def project(state):
        return state[0]

    return step, field, init_state, project, problem_, b, note


def verify(method: Method, loss: Any = None, params0: Any = None, *,
           problem: str | Problem | None = None, batches: Sequence[Any] | None = None,
           hs: Sequence[float] | None = None, orders: Sequence[int] = (0, 1, 2, 3),
           horizon: float | None = None, previous: Any = None, subs: dict | None = None,
           batch_initial: bool = False, points: int | None = None,
           **kw: Any) -> VerificationReport:
    """Verify the modified equation of ``method`` against its real iterates.

    Give ``loss`` (``L(params, batch)``, one per color, or ``(L_1, L_2)`` for games) and
    ``params0``, or ``problem="default" | "mlp" | "game"`` for a built-in one.  ``hs``
    and ``horizon`` default to a grid scaled by the method's time scales; ``T/h`` must
    be an integer.  ``subs`` gives numeric values for symbolic method parameters.
    ``points=N`` sweeps ``N`` initial points around ``params0`` (see
    :func:`initial_points`) in the same compiled computation; errors are then medians
    over points and ``report.slopes_all`` has the slope of every point.
    Needs ``jax_enable_x64`` (float64); other keywords go to
    :func:`bea.verification.run_verification` (``allow_float32``, ``rtol``, ...).
    """
    if not isinstance(method, Method):
        raise TypeError(f"expected a bea method (e.g. bea.methods.gd()), got {method!r}")
    if loss is None:
        prob = problem if isinstance(problem, Problem) else default_problem(
            method, problem or "default")
        loss, params0 = prob.loss, prob.params0
        batches = prob.batches if batches is None else batches
        batch_initial = prob.batch_initial
    else:
        if params0 is None:
            raise ValueError("give params0 with a loss (or use problem='default')")
        prob = Problem("user", loss, params0, batches, horizon or 1.0, 0.1, batch_initial)
    subs = _safe.bind_values(subs, method.parameters, "subs") or None   # bea.symbols
    _safe.require_numeric(method, subs, "verify")
    _limits.check_verify(max(int(p) for p in orders), method.ncolors, kw.pop("max_trees", None))
    if points is not None:
        if batch_initial:
            raise ValueError("points= makes the initial points itself; give either points= "
                             "or batch_initial=True with batched params0, not both")
        _limits.check_points(points, len(hs) if hs is not None else 5, len(orders),
                             sum(np.size(x) for x in jax.tree.leaves(params0)))
        params0 = initial_points(params0, points)
        batch_initial = True
    orders = [int(p) for p in orders]
    if hs is None:
        grid, T_auto = _auto_grid(method, prob, subs, max(orders))
        hs = grid if horizon is None else integer_step_sizes(horizon, min(grid[0], horizon / 8))
        horizon = T_auto if horizon is None else horizon
    elif horizon is None:
        horizon = prob.horizon
    key = (method.cache_key(), max(orders), id(loss), _batches_key(batches),
           None if subs is None else tuple(sorted((str(k), v) for k, v in subs.items())),
           None if previous is not None else "consistent")
    got = _CLOSURES.get(key) if previous is None else None
    if got is None:
        got = _closures(method, loss, batches, orders, subs, previous)
        if previous is None:
            _CLOSURES[key] = got
            while len(_CLOSURES) > 32:
                _CLOSURES.pop(next(iter(_CLOSURES)))
    step, field, init_state, project, problem_, b, start_note = got
    notes = [f"method: {method.name}; problem: {prob.name}; float64 iterates and Dopri8 flows"]
    if start_note:
        notes.append(start_note)
    problem_.check_cached(
        params0 if not batch_initial else jax.tree.map(lambda a: a[0], params0), b)
    return run_verification(step, field, params0, hs, orders, horizon, init_state=init_state,
                            project=project, batch_initial=batch_initial, notes=notes, **kw)

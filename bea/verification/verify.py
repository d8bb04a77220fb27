"""``bea.verify``: real iterates against truncated modified flows, for what you derived.

``verify`` accepts

* a :class:`bea.ModifiedEquation` (what ``bea.modified_equation`` returned: it is compiled
  as it is, nothing is derived again), with a loss (or ``problem=``);
* a method (``bea.methods.gd()``, ``heavy_ball(0.9)``, a game): its modified equation is
  derived to ``max(orders)``;
* any :class:`bea.verification.Dynamics` (``step``, ``modified_field``,
  ``method_order``), with ``params0``.

It runs the update as users write it (:meth:`bea.methods.Method.step`: multi-batch,
multistep, several parameter blocks) and integrates ``theta' = f_0 + h f_1 + .. + h^p
f_p`` with a high-order adaptive solver (diffrax Dopri8, rtol 1e-12) over the same
horizon, in float64 (:func:`bea.verification.run_verification`).  Expected slopes use
the method's order q (``f_1 = .. = f_{q-1} = 0``): ``max(p+1, q)`` globally.

Multistep methods start from the *consistent* previous iterate
``theta_{-1} = Phi_h^{-1}(theta_0)`` of the underlying one-step method (its series
evaluated on the loss to order ``max(orders) + 2``), unless ``previous=`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from .. import limits as _limits
from .. import series as S
from .. import symbol_table as _safe
from .. import trees as T
from ..compile import BoundProblem, TreeSums, numeric_coefficient
from ..methods import Method
from ..modified import ModifiedEquation, modified_equation
from .dynamics import Dynamics, method_order_of
from .grid import integer_step_sizes
from .problems import Problem, default_problem, initial_points
from .report import VerificationReport
from .run import run_verification

__all__ = ["EquationDynamics", "equation_order", "series_map", "verify"]


def series_map(series: S.BSeries, method: Method, loss: Any, order: int,
               subs: dict | None = None) -> Callable:
    """``(params, h, batches) -> B(a, params)``: a B-series map evaluated on JAX losses,
    truncated at trees of ``order`` vertices (used for the consistent previous iterate)."""
    rows = []
    for n in range(1, order + 1):
        row = []
        for t in T.trees_of_order(n, series.ncolors):
            v = series[t]
            if v:
                row.append((t, numeric_coefficient(series.domain.to_sympy(v) / T.sigma(t), subs,
                                                   "a series coefficient")))
        rows.append(row)
    sums = TreeSums(rows, range(1, order + 1))
    problem = BoundProblem(method, loss, None)

    def apply(params, h, batches=None):
        fields = problem.fields(problem.bind(batches))
        return jax.tree.map(lambda a, b: a + b, params,
                            sums.factorised_total(params, h, fields=fields))

    return apply


def equation_order(equation: ModifiedEquation, look_ahead: int = 3) -> int:
    """The order q of ``equation.method``: the first ``k >= 1`` with ``f_k != 0``.

    Read off the equation's own terms; when ``f_1..f_p`` all vanish (``p`` the order it was
    derived to), up to ``look_ahead`` further orders are derived (disk-cached) to find it.
    """
    for k in range(1, equation.order + 1):
        if equation.terms(k):
            return k
    method = equation.method
    for n in range(equation.order + 1, equation.order + 1 + look_ahead):
        if modified_equation(method, n).terms(n):
            return n
    return equation.order + 1 + look_ahead


class EquationDynamics:
    """:class:`Dynamics` of a modified equation on JAX losses: the method's own step on
    the bound fields, and the compiled truncated field."""

    def __init__(self, equation: ModifiedEquation, loss: Any, batches: Sequence[Any] | None,
                 *, subs: dict | None = None, previous: Any = None, start_order: int = 2):
        self.equation = equation
        self.method = method = equation.method
        self.method_order = equation_order(equation)
        self.compiled = equation.to_jax(loss, subs=subs)
        self.problem = self.compiled.problem
        self.batches = None if batches is None else tuple(batches)
        self.note = None
        self._back = None
        self._previous = None
        if method.history:
            if previous is not None:
                k = method.history
                self._previous = (list(previous) if isinstance(previous, (list, tuple))
                                  and len(previous) == k and k > 1 else [previous])
                self.note = "multistep start: previous iterate(s) given by the user"
            else:
                inv = S.inverse(method.series(start_order))
                self._back = series_map(inv, method, loss, start_order, subs)
                self.note = (f"multistep start: consistent previous iterate "
                             f"Phi_h^-1(theta_0) from the underlying one-step method (trees "
                             f"up to order {start_order})")

    def _fields(self) -> list[Callable]:
        return self.problem.fields(self.problem.bind(self.batches))

    def step(self, state: Any, h: Any) -> Any:
        return self.method.step(self._fields(), state, h)

    def modified_field(self, params: Any, h: Any, order: int) -> Any:
        return self.compiled.evaluate(params, h, self.batches, order)

    def initial_state(self, params: Any, h: Any) -> Any:
        if not self.method.history:
            return params
        if self._previous is not None:
            return (params, *self._previous)
        xs = [params]
        for _ in range(self.method.history):
            xs.append(self._back(xs[-1], h, self.batches))
        return tuple(xs)

    def params_of(self, state: Any) -> Any:
        return state[0] if self.method.history else state


def _auto_grid(equation: ModifiedEquation, problem: Problem, subs: dict | None
               ) -> tuple[list[float], float]:
    """Scale the default grid by the method's own time scales: the order-0 speed ``c_0``
    (``1/(1-beta)`` for heavy ball) sets the horizon, and the growth rate of the series
    ``r = max_k (|c_k|/|c_0|)^(1/k)`` (``c_k`` the largest coefficient of ``f_k``) sets
    the step: ``h r <= 0.04`` keeps every order in the asymptotic regime (measured on
    GD, heavy ball 0.5/0.9, Nesterov, extragradient, optimistic GD, games)."""
    me = equation if equation.order >= 1 else modified_equation(equation.method, 1)
    c0 = max(abs(numeric_coefficient(t.coefficient, subs, "f_0")) for t in me.terms(0))
    r = 0.0
    for k in range(1, me.order + 1):
        ck = max([abs(numeric_coefficient(t.coefficient, subs, f"f_{k}"))
                  for t in me.terms(k)] or [0.0])
        r = max(r, (ck / c0) ** (1.0 / k))
    horizon = problem.horizon / max(1.0, c0)
    h_max = min(problem.h_max, 0.04 / r if r > 0 else problem.h_max, horizon / 8)
    return integer_step_sizes(horizon, h_max), horizon


# Dynamics are reused across calls with the same equation, loss and batches, so the
# verification kernels' caches (keyed on the bound methods) make repeat calls warm.
_DYNAMICS: dict[Any, EquationDynamics] = {}


def _batches_key(batches: Sequence[Any] | None) -> Any:
    if batches is None:
        return None
    return tuple(id(x) for x in jax.tree.leaves(batches))


def _dynamics_for(equation: ModifiedEquation, loss: Any, batches: Any, subs: dict | None,
                  previous: Any, start_order: int, method_key: str) -> EquationDynamics:
    """``method_key``: ``equation.method.cache_key()``, computed once by the caller."""
    if previous is not None:
        return EquationDynamics(equation, loss, batches, subs=subs, previous=previous)
    key = (id(equation), method_key, equation.order, id(loss),
           _batches_key(batches), start_order,
           None if subs is None else tuple(sorted((str(k), v) for k, v in subs.items())))
    got = _DYNAMICS.get(key)
    if got is None or got.equation is not equation:
        got = EquationDynamics(equation, loss, batches, subs=subs, start_order=start_order)
        _DYNAMICS[key] = got
        while len(_DYNAMICS) > 32:
            _DYNAMICS.pop(next(iter(_DYNAMICS)))
    return got


# one derived equation per (method, order), so that verify(method) twice reuses everything
_EQUATIONS: dict[Any, ModifiedEquation] = {}


def _equation_of(method: Method, order: int, method_key: str) -> ModifiedEquation:
    """``method_key``: ``method.cache_key()``, computed once by the caller."""
    key = (method_key, order)
    if key not in _EQUATIONS:
        _EQUATIONS[key] = modified_equation(method, order)
        while len(_EQUATIONS) > 32:
            _EQUATIONS.pop(next(iter(_EQUATIONS)))
    return _EQUATIONS[key]


def verify(what: ModifiedEquation | Method | Dynamics, loss: Any = None, params0: Any = None,
           *, problem: str | Problem | None = None, batches: Sequence[Any] | None = None,
           hs: Sequence[float] | None = None, orders: Sequence[int] | None = None,
           horizon: float | None = None, previous: Any = None, subs: dict | None = None,
           batch_initial: bool = False, points: int | None = None,
           **kw: Any) -> VerificationReport:
    """Verify a modified equation (or a method's, or any :class:`Dynamics`) against real
    iterates.

    ``what``: a :class:`bea.ModifiedEquation` (``orders`` default to all it has), a method
    (``orders`` default ``(0, 1, 2, 3)``) or a :class:`Dynamics` (give ``params0``;
    ``orders`` default to ``0..order`` when it has an integer ``order``, such as a
    :class:`bea.NumericModifiedEquation`, else ``(0, 1, 2)``).
    Give ``loss`` (``L(params, batch)``, one per color, or one per parameter block for
    games) and ``params0``, or ``problem="default" | "mlp" | "game"`` for a built-in one.
    ``hs`` and ``horizon`` default to a grid scaled by the method's time scales; ``T/h``
    must be an integer.  ``subs`` gives numeric values for symbolic method parameters.
    ``points=N`` sweeps ``N`` initial points around ``params0`` (see
    :func:`initial_points`) in the same compiled computation; errors are then medians
    over points.  Needs ``jax_enable_x64`` (float64); other keywords go to
    :func:`bea.verification.run_verification` (``allow_float32``, ``rtol``, ...).
    """
    if isinstance(what, ModifiedEquation):
        equation, method = what, what.method
        orders = list(range(equation.order + 1)) if orders is None else [int(p) for p in orders]
        if max(orders) > equation.order:
            raise ValueError(f"orders {orders} go beyond the order {equation.order} the "
                             f"equation was derived to: derive it to {max(orders)} "
                             f"(bea.modified_equation(method, {max(orders)})) or drop them")
    elif isinstance(what, Method):
        method = what
        orders = [0, 1, 2, 3] if orders is None else [int(p) for p in orders]
        equation = None
    elif callable(getattr(what, "step", None)) and callable(getattr(what, "modified_field", None)):
        return _verify_dynamics(what, params0, hs=hs, orders=orders, horizon=horizon,
                                batch_initial=batch_initial, points=points, **kw)
    else:
        raise TypeError(f"expected a ModifiedEquation, a bea method (e.g. bea.methods.gd()) "
                        f"or a bea.verification.Dynamics, got {what!r}")
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
    subs = _safe.bind_values(subs, method.parameters, "subs") or None   # bea.symbol_table
    _safe.require_numeric(method, subs, "verify")
    _limits.check_verify(max(orders), method.ncolors, kw.pop("max_trees", None))
    if points is not None:
        _limits.check_points(points, len(hs) if hs is not None else 5, len(orders),
                             sum(np.size(x) for x in jax.tree.leaves(params0)))
        params0, batch_initial = _points(params0, points, batch_initial)
    method_key = method.cache_key()       # once: it prints the method's parameters
    if equation is None:
        equation = _equation_of(method, max(orders), method_key)
    if hs is None:
        grid, T_auto = _auto_grid(equation, prob, subs)
        hs = grid if horizon is None else integer_step_sizes(horizon, min(grid[0], horizon / 8))
        horizon = T_auto if horizon is None else horizon
    elif horizon is None:
        horizon = prob.horizon
    dyn = _dynamics_for(equation, loss, batches, subs, previous, max(orders) + 2,
                        method_key)
    notes = [f"method: {method.name}; problem: {prob.name}; float64 iterates and Dopri8 flows"]
    if dyn.note:
        notes.append(dyn.note)
    dyn.problem.check_cached(params0 if not batch_initial else _first_point(params0),
                             dyn.batches)
    return run_verification(dyn.step, dyn.modified_field, params0, hs, orders, horizon,
                            init_state=dyn.initial_state, project=dyn.params_of,
                            batch_initial=batch_initial, notes=notes, method=method.name,
                            method_order=dyn.method_order, **kw)


def _first_point(params0: Any) -> Any:
    """The shape and dtype of one initial point of batched ``params0`` (what the loss checks
    need; slicing the arrays themselves costs a dispatch per leaf on every call)."""
    def first(a: Any) -> Any:
        if hasattr(a, "shape") and hasattr(a, "dtype") and len(a.shape) >= 1:
            return jax.ShapeDtypeStruct(tuple(a.shape[1:]), a.dtype)
        return a[0]
    return jax.tree.map(first, params0)


def _points(params0: Any, points: int, batch_initial: bool) -> tuple[Any, bool]:
    if batch_initial:
        raise ValueError("points= makes the initial points itself; give either points= "
                         "or batch_initial=True with batched params0, not both")
    return initial_points(params0, points), True


def _verify_dynamics(dyn: Dynamics, params0: Any, *, hs: Sequence[float] | None,
                     orders: Sequence[int] | None, horizon: float | None,
                     batch_initial: bool, points: int | None, **kw: Any
                     ) -> VerificationReport:
    if params0 is None:
        raise ValueError("verifying a Dynamics needs params0= (its initial parameters)")
    kw.pop("max_trees", None)   # a Dynamics has no trees to price
    top = getattr(dyn, "order", None)   # e.g. a NumericModifiedEquation built to order p
    if orders is None:
        orders = [0, 1, 2] if not isinstance(top, int) else list(range(top + 1))
    else:
        orders = [int(p) for p in orders]
    if isinstance(top, int) and max(orders) > top:
        raise ValueError(f"orders {orders} go beyond the order {top} the dynamics were built "
                         f"to: build them to order {max(orders)} or drop those orders")
    if points is not None:
        params0, batch_initial = _points(params0, points, batch_initial)
    horizon = 1.0 if horizon is None else horizon
    hs = integer_step_sizes(horizon, horizon / 10) if hs is None else hs
    name = getattr(dyn, "name", type(dyn).__name__)
    kw.setdefault("method", name)
    return run_verification(dyn.step, dyn.modified_field, params0, hs, orders, horizon,
                            init_state=getattr(dyn, "initial_state", None),
                            project=getattr(dyn, "params_of", None),
                            batch_initial=batch_initial, method_order=method_order_of(dyn),
                            notes=[f"dynamics: {name}"], **kw)

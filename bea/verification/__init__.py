r"""Numerical verification of backward error analysis (BEA) modified equations.

Setting
-------
An optimiser step is a map :math:`\theta \mapsto \Psi_h(\theta)` (for multistep
methods the map acts on a state that also carries previous iterates; ``project``
extracts the current parameters from it).  Backward error analysis produces a
*modified vector field*

.. math::

    \tilde f_p(\theta; h) = f_0(\theta) + h f_1(\theta) + h^2 f_2(\theta) + \dots + h^p f_p(\theta),

truncated at order :math:`p`, such that, writing :math:`\varphi^{\tilde f_p}_t`
for the exact flow of :math:`\dot y = \tilde f_p(y; h)`,

* **local error**:  :math:`\|\Psi_h(\theta_0) - \varphi^{\tilde f_p}_h(\theta_0)\| = O(h^{p+2})`;
* **global error**: for :math:`T = n h` fixed,
  :math:`\|\theta_n - \varphi^{\tilde f_p}_T(\theta_0)\| = O(h^{p+1})`,
  where :math:`\theta_n = \Psi_h^n(\theta_0)`.

This module checks those two statements numerically, independently of how the
:math:`f_k` were obtained.  For every step size :math:`h` in a sweep and every
truncation order :math:`p` it

1. runs the :math:`n = T/h` discrete iterates with :func:`jax.lax.scan` (jitted,
   ``vmap``-ed over initial points and step sizes),
2. integrates the truncated modified flow over the same horizon with a
   high-order adaptive Runge--Kutta method (diffrax ``Dopri8`` or ``Tsit5`` with a
   PID step-size controller at tight tolerances, in float64),
3. measures :math:`e_{\mathrm{glob}}(h, p) = \|\theta_n - y(T)\|_2` and
   :math:`e_{\mathrm{loc}}(h, p) = \|\Psi_h(\theta_0) - y(h)\|_2` (2-norm over all
   pytree leaves),
4. fits :math:`\log e = s \log h + c` by least squares and compares the slope
   :math:`s` with the expected :math:`p + 1` (global) and :math:`p + 2` (local).

Errors at the round-off / solver-noise floor

.. math::

    e \le \max\bigl(100\,\varepsilon_{\mathrm{dtype}}\, s,\;
                    10\,(\mathrm{rtol}\, s + \mathrm{atol})\bigr),
    \qquad s = \max(\|\theta_0\|, \|\theta_n\|, \|y(T)\|),

are flagged ``'roundoff'`` and excluded from the fit (they measure arithmetic
noise, not truncation error); non-finite or huge errors are flagged
``'diverged'`` and failed ODE solves ``'solver_failed'``, all excluded.

Only :mod:`jax`, :mod:`diffrax`, :mod:`numpy`, :mod:`tqdm` and (lazily)
:mod:`matplotlib` are imported: this module does not depend on the rest of
``bea``.

Example
-------
>>> import jax, jax.numpy as jnp
>>> jax.config.update("jax_enable_x64", True)
>>> loss = lambda p: 0.5 * (p[0] * p[1] - 1) ** 2
>>> g = jax.grad(loss)
>>> step = lambda p, h: p - h * g(p)
>>> field = lambda p, h, order: -g(p)          # order-0 field only
>>> rep = run_verification(step, field, jnp.array([1.0, 0.5]),
...                        integer_step_sizes(1.0, 0.08), [0], 1.0, progress=False)
>>> round(rep.slopes[0])
1
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
import warnings as _warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .dynamics import Dynamics, expected_slopes, method_order_of

__all__ = [
    "DIVERGED",
    "Dynamics",
    "expected_slopes",
    "method_order_of",
    "ROUNDOFF",
    "SOLVER_FAILED",
    "VerificationReport",
    "fit_slope",
    "integer_step_sizes",
    "load_json",
    "run_verification",
]

PyTree = Any
StepFn = Callable[[PyTree, jax.Array], PyTree]
"""``step(state, h) -> state``: one step of the discrete method."""
FieldFn = Callable[[PyTree, jax.Array, int], PyTree]
"""``field(params, h, order) -> pytree``: :math:`f_0 + h f_1 + \\dots + h^{order} f_{order}`."""

ROUNDOFF = "roundoff"
DIVERGED = "diverged"
SOLVER_FAILED = "solver_failed"
_EXCLUDED = (ROUNDOFF, DIVERGED, SOLVER_FAILED)
_MARK = {ROUNDOFF: "R", DIVERGED: "D", SOLVER_FAILED: "F"}

_MIN_STEPS = 4
_MIN_SPAN = 2.0
_SUGGESTED_SPAN = 4.0
_INTEGER_RTOL = 1e-9


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------


def _identity(x: PyTree) -> PyTree:
    return x


def _default_init_state(params: PyTree, h: jax.Array) -> PyTree:
    del h
    return params


def _tree_norm(a: PyTree) -> jax.Array:
    """:math:`\\|a\\|_2 = (\\sum_{\\text{leaves}} \\sum |a_i|^2)^{1/2}`."""
    leaves = jax.tree.leaves(a)
    if not leaves:
        return jnp.zeros(())
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves))


def _tree_dist(a: PyTree, b: PyTree) -> jax.Array:
    """:math:`\\|a - b\\|_2` over all leaves."""
    return _tree_norm(jax.tree.map(lambda x, y: x - y, a, b))


def _x64_enabled() -> bool:
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.dtype("float64")


def _fmt_h(h: float) -> str:
    return f"{h:.6g}"


def integer_step_sizes(
    horizon: float, h_max: float, *, factor: float = _SUGGESTED_SPAN, num: int = 5
) -> list[float]:
    """Step sizes ``T / n`` with integer ``n``, roughly geometric, spanning ``factor``.

    The smallest step count is :math:`n_{\\min} = \\max(4, \\lceil T / h_{\\max} \\rceil)`;
    the counts are geometric between :math:`n_{\\min}` and
    :math:`\\mathrm{round}(\\mathrm{factor} \\cdot n_{\\min})` (rounded, deduplicated), so
    every returned ``h`` divides ``horizon`` exactly (up to float round-off) and the
    ``h`` values span at least ``factor`` (for ``num >= 2``).

    Returns the step sizes in decreasing order.
    """
    if not (horizon > 0 and h_max > 0 and math.isfinite(horizon) and math.isfinite(h_max)):
        raise ValueError("horizon and h_max must be positive and finite")
    n_min = max(_MIN_STEPS, math.ceil(horizon / h_max - 1e-9))
    n_max = max(n_min + 1, round(factor * n_min))
    ns = sorted({round(x) for x in np.geomspace(n_min, n_max, max(num, 2))})
    return [horizon / n for n in ns]


def _suggestion(horizon: float, h_max: float) -> str:
    hs = integer_step_sizes(horizon, h_max)
    ns = tuple(round(horizon / h) for h in hs)
    approx = ", ".join(f"{h:.4g}" for h in hs)
    return f"hs = [T / n for n in {ns}] with T = {horizon:g}, i.e. approximately [{approx}]"


def _validate_grid(hs: Sequence[float], horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Check the step sizes and horizon; return (hs ascending, n per h)."""
    try:
        T = float(horizon)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"horizon must be a positive number, got {horizon!r}") from exc
    if not (T > 0 and math.isfinite(T)):
        raise ValueError(f"horizon must be positive and finite, got {horizon!r}")
    h_arr = np.asarray([float(h) for h in hs], dtype=np.float64)
    if h_arr.ndim != 1 or h_arr.size == 0:
        raise ValueError("hs must be a non-empty sequence of step sizes")
    if not np.all(np.isfinite(h_arr) & (h_arr > 0)):
        raise ValueError(f"all step sizes must be positive and finite, got {list(h_arr)}")
    h_arr = np.sort(h_arr)
    ns = np.empty(h_arr.shape, dtype=np.int64)
    for i, h in enumerate(h_arr):
        ratio = T / h
        if ratio < _MIN_STEPS - 1e-9:
            raise ValueError(
                f"h={_fmt_h(h)} gives only {ratio:.3g} < {_MIN_STEPS} steps over the horizon "
                f"T={T:g}: a global-error test needs at least {_MIN_STEPS} steps; use "
                f"h <= T/{_MIN_STEPS} = {T / _MIN_STEPS:.4g} or a longer horizon"
            )
        n = round(ratio)
        if abs(n * h - T) > _INTEGER_RTOL * T:
            raise ValueError(
                f"horizon T={T:g} is not an integer multiple of h={_fmt_h(h)} "
                f"(T/h = {ratio:.6g}); choose hs so that T/h is an integer, e.g. "
                + _suggestion(T, float(h_arr.max()))
            )
        ns[i] = n
    span = float(h_arr.max() / h_arr.min())
    if span < _MIN_SPAN:
        raise ValueError(
            f"h range too coarse for a slope: use hs spanning at least a factor "
            f"{_SUGGESTED_SPAN:g}, e.g. {_suggestion(T, float(h_arr.max()))} "
            f"(the given hs span only a factor {span:.3g})"
        )
    return h_arr, ns


def fit_slope(
    hs: np.ndarray, errors: np.ndarray, usable: np.ndarray | None = None, *, min_points: int = 3
) -> tuple[float | None, str | None]:
    """Least-squares slope :math:`s` of :math:`\\log e = s \\log h + c` over usable points.

    Returns ``(slope, None)``, or ``(None, reason)`` when fewer than ``min_points``
    usable (finite, positive, not excluded) points remain.
    """
    errors = np.asarray(errors, dtype=np.float64)[:, None]
    usable = None if usable is None else np.asarray(usable, dtype=bool)[:, None]
    slope, count, _ = _fit_slopes(hs, errors, usable)
    k = int(count[0])
    if k < min_points or not np.isfinite(slope[0]):
        return None, f"only {k} usable h value(s), need >= {min_points}"
    return float(slope[0]), None


def _fit_slopes(
    hs: np.ndarray, errors: np.ndarray, usable: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slopes of :math:`\\log e` against :math:`\\log h` along axis ``-2``
    of ``errors`` (``[..., K, B]``, ``K = len(hs)``), every column at once, over the cells
    that are finite, positive and ``usable``.  Returns ``(slopes, counts, spans)`` of
    shape ``[..., B]``: the slope (nan with fewer than two distinct usable ``h``), the
    number of usable cells and ``max h / min h`` over them."""
    hs = np.asarray(hs, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    with np.errstate(all="ignore"):
        use = np.isfinite(errors) & (errors > 0)
        if usable is not None:
            use &= usable
        shape = (len(hs), 1)
        x = np.log(hs).reshape(shape)
        y = np.where(use, np.log(np.where(use, errors, 1.0)), 0.0)
        m = use.astype(np.float64)
        cnt = m.sum(axis=-2)
        mx = (m * x).sum(axis=-2, keepdims=True) / np.maximum(cnt, 1)[..., None, :]
        my = y.sum(axis=-2, keepdims=True) / np.maximum(cnt, 1)[..., None, :]
        sxy = (m * (x - mx) * (y - my)).sum(axis=-2)
        sxx = (m * (x - mx) ** 2).sum(axis=-2)
        slopes = np.where(sxx > 0, sxy / sxx, np.nan)
        hs_b = np.broadcast_to(hs.reshape(shape), use.shape)
        spans = (np.where(use, hs_b, -np.inf).max(axis=-2)
                 / np.where(use, hs_b, np.inf).min(axis=-2))
    return slopes, cnt, spans


# ----------------------------------------------------------------------------
# jitted kernels (cached so that repeated sweeps with the same functions reuse them)
# ----------------------------------------------------------------------------


def _cached(builder: Callable[..., Any]) -> Callable[..., Any]:
    """lru_cache that silently falls back to no caching for unhashable arguments."""
    cached = functools.lru_cache(maxsize=64)(builder)

    @functools.wraps(builder)
    def wrapper(*args: Any) -> Any:
        try:
            return cached(*args)
        except TypeError:
            return builder(*args)

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return wrapper


@_cached
def _build_discrete(
    step: StepFn, init_state: Callable, project: Callable, n_max: int, mode: str
) -> Callable:
    """Jitted ``(params0[B], hs, ns) -> (theta_n, Psi_h(theta_0))`` per (h, point)."""

    def one_step(p0: PyTree, h: jax.Array) -> tuple[PyTree, PyTree]:
        s0 = init_state(p0, h)
        return s0, project(step(s0, h))

    if mode == "vmap":

        def per_point(p0: PyTree, h: jax.Array, n: jax.Array) -> tuple[PyTree, PyTree]:
            s0, th1 = one_step(p0, h)

            def body(s: PyTree, i: jax.Array) -> tuple[PyTree, None]:
                s_new = step(s, h)
                keep = i < n  # masked steps (i >= n) leave the state unchanged
                return jax.tree.map(lambda a, b: jnp.where(keep, a, b), s_new, s), None

            s_n, _ = lax.scan(body, s0, jnp.arange(n_max))
            return project(s_n), th1

        fn = jax.vmap(jax.vmap(per_point, in_axes=(0, None, None)), in_axes=(None, 0, 0))
    else:

        def per_point(p0: PyTree, h: jax.Array, n: jax.Array) -> tuple[PyTree, PyTree]:
            s0, th1 = one_step(p0, h)
            s_n = lax.fori_loop(0, n, lambda i, s: step(s, h), s0)  # traced n: one compile
            return project(s_n), th1

        fn = jax.vmap(per_point, in_axes=(0, None, None))
    return jax.jit(fn)


def _make_solver(solver: str | diffrax.AbstractSolver) -> tuple[diffrax.AbstractSolver, str]:
    if isinstance(solver, diffrax.AbstractSolver):
        return solver, type(solver).__name__.lower()
    name = str(solver).lower()
    table = {"dopri8": diffrax.Dopri8, "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}
    if name not in table:
        raise ValueError(
            f"unknown solver {solver!r}; use one of {sorted(table)} or a diffrax solver"
        )
    return table[name](), name


@_cached
def _build_flow(
    vfield: FieldFn,
    orders: tuple[int, ...],
    solver: diffrax.AbstractSolver,
    rtol: float,
    atol: float,
    max_steps: int,
    local: bool,
    mode: str,
) -> Callable:
    """One jitted kernel returning errors, scales and solver status for ``orders``.

    ``(params0[B], hs, ns, theta_n, theta_1) -> dict`` of ``[O, K, B]`` arrays
    (``mode='vmap'``) or ``[O, B]`` (``mode='loop'``, one ``h``).  Several orders share
    one compilation and one dispatch: they run one after another (``lax.map`` over an
    order index); inside, the truncated field is picked with ``lax.switch`` on that
    *unbatched* index, so it stays a real branch under ``vmap`` and order ``p`` costs
    only the terms up to ``p``.  The ODE solver is traced once for all orders.
    """
    branches = [functools.partial(_field_at_order, vfield, p) for p in orders]

    def rhs(t: jax.Array, y: PyTree, args: tuple[jax.Array, jax.Array]) -> PyTree:
        h, idx = args
        return lax.switch(idx, branches, y, h)

    term = diffrax.ODETerm(rhs)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def solve(y0: PyTree, h: jax.Array, idx: jax.Array, t1: jax.Array):
        sol = diffrax.diffeqsolve(
            term, solver, t0=jnp.zeros_like(t1), t1=t1, dt0=None, y0=y0, args=(h, idx),
            saveat=diffrax.SaveAt(t1=True), stepsize_controller=controller,
            max_steps=max_steps, throw=False,
        )
        return jax.tree.map(lambda a: a[-1], sol.ys), sol.result == diffrax.RESULTS.successful

    def per_point(p0, h, n, th_n, th_1, idx):
        norm0 = _tree_norm(p0)
        y_T, ok_T = solve(p0, h, idx, n.astype(h.dtype) * h)
        out = {
            "err": _tree_dist(th_n, y_T),
            "scale": jnp.maximum(norm0, jnp.maximum(_tree_norm(th_n), _tree_norm(y_T))),
            "ok": ok_T,
            "norm0": norm0,
        }
        if local:
            y_h, ok_h = solve(p0, h, idx, h)
            out["lerr"] = _tree_dist(th_1, y_h)
            out["lscale"] = jnp.maximum(norm0, jnp.maximum(_tree_norm(th_1), _tree_norm(y_h)))
            out["lok"] = ok_h
        return out

    fn = jax.vmap(per_point, in_axes=(0, None, None, 0, 0, None))          # points
    if mode == "vmap":
        fn = jax.vmap(fn, in_axes=(None, 0, 0, 0, 0, None))                # step sizes

    def all_orders(p0, hs, ns, th_n, th_1):
        return lax.map(lambda i: fn(p0, hs, ns, th_n, th_1, i), jnp.arange(len(orders)))

    return jax.jit(all_orders)


def _field_at_order(vfield: FieldFn, order: int, y: PyTree, h: jax.Array) -> PyTree:
    return vfield(y, h, order)


# ----------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------


def _nan_median(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median over ``axis`` of the finite entries (nan where none is finite)."""
    a = np.where(np.isfinite(a), a, np.nan)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)  # all-nan slices
        return np.nanmedian(a, axis=axis)


def _json_array(a: np.ndarray | None) -> Any:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()


def _from_json_array(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    return np.array(x, dtype=object).astype(np.float64)  # None -> nan


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class VerificationReport:
    """Result of :func:`run_verification`.

    Array axes: ``[order, h]`` for medians over initial points and
    ``[order, h, point]`` for the ``*_all`` arrays; ``hs`` are sorted ascending.

    Attributes
    ----------
    hs, n_steps:
        Step sizes and the number of steps :math:`n = T / h` for each.
    orders:
        Truncation orders :math:`p` that were tested.
    errors, local_errors:
        Median (over initial points, finite values only) of the global error
        :math:`\\|\\theta_n - \\varphi^{\\tilde f_p}_T(\\theta_0)\\|` and of the local error
        :math:`\\|\\Psi_h(\\theta_0) - \\varphi^{\\tilde f_p}_h(\\theta_0)\\|`
        (``local_errors`` is ``None`` when ``local=False``).
    slopes, local_slopes:
        ``order -> fitted slope`` (median over initial points), ``None`` when no slope
        could be fitted (the reason is in ``warnings``).
    expected_slopes, expected_local_slopes:
        :math:`p + 1` and :math:`p + 2`.
    flags, local_flags:
        ``flags[i_order][i_h]`` is the list of flags (``'roundoff'``, ``'diverged'``,
        ``'solver_failed'``) raised for that cell by any initial point; flagged
        points are excluded from the fits.
    floors, local_floors:
        Median round-off / solver-noise threshold per cell.
    notes:
        Caller-supplied notes (e.g. how a multistep state was initialised)
        followed by automatic notes on how the sweep was run.
    warnings:
        Everything a reader should know before trusting the slopes.
    dtype, low_precision:
        Working floating dtype; ``low_precision`` is True when it is not float64.
    """

    hs: np.ndarray
    orders: list[int]
    horizon: float
    n_steps: np.ndarray
    errors: np.ndarray
    local_errors: np.ndarray | None
    slopes: dict[int, float | None]
    local_slopes: dict[int, float | None]
    expected_slopes: dict[int, int]
    expected_local_slopes: dict[int, int]
    flags: list[list[list[str]]]
    local_flags: list[list[list[str]]] | None
    notes: list[str]
    dtype: str
    warnings: list[str] = dc_field(default_factory=list)
    low_precision: bool = False
    solver: str = "dopri8"
    rtol: float = 1e-12
    atol: float = 1e-14
    n_initial: int = 1
    errors_all: np.ndarray | None = None
    local_errors_all: np.ndarray | None = None
    floors: np.ndarray | None = None
    local_floors: np.ndarray | None = None
    slopes_all: dict[int, list[float | None]] = dc_field(default_factory=dict)
    local_slopes_all: dict[int, list[float | None]] = dc_field(default_factory=dict)
    sharded: bool = False
    timings: dict[str, float] = dc_field(default_factory=dict)

    # -- queries ------------------------------------------------------------

    def flag(self, order: int, h: float, kind: str = "global") -> list[str]:
        """Flags of the cell (order, h); ``h`` is matched to the nearest swept step size."""
        i = self.orders.index(order)
        j = int(np.argmin(np.abs(np.log(self.hs) - math.log(h))))
        table = self.flags if kind == "global" else self.local_flags
        if table is None:
            raise ValueError("local errors were not computed (local=False)")
        return list(table[i][j])

    def check_slopes(self, tol: float = 0.15, kind: str = "global") -> dict[int, bool]:
        """``order -> |fitted - expected| <= tol`` (False when no slope was fitted)."""
        slopes, expected = self._slopes(kind)
        return {
            p: slopes[p] is not None and abs(slopes[p] - expected[p]) <= tol for p in self.orders
        }

    def assert_slopes(self, tol: float = 0.15, kind: str = "global") -> None:
        """Raise ``AssertionError`` (with the full table) unless every slope is within ``tol``."""
        ok = self.check_slopes(tol, kind)
        if not all(ok.values()):
            bad = [p for p, good in ok.items() if not good]
            raise AssertionError(f"{kind} slopes off by more than {tol} for orders {bad}\n{self}")

    def _slopes(self, kind: str) -> tuple[dict[int, float | None], dict[int, int]]:
        if kind == "global":
            return self.slopes, self.expected_slopes
        if kind == "local":
            if self.local_errors is None:
                raise ValueError("local errors were not computed (local=False)")
            return self.local_slopes, self.expected_local_slopes
        raise ValueError(f"kind must be 'global' or 'local', got {kind!r}")

    # -- text ---------------------------------------------------------------

    def _table(self, title: str, errs: np.ndarray, flags: list[list[list[str]]]) -> list[str]:
        head = f"{'h':>11} {'n':>6} |" + "".join(f"{'order ' + str(p):>14}" for p in self.orders)
        lines = [title, head, "-" * len(head)]
        for j, h in enumerate(self.hs):
            row = f"{h:11.4e} {int(self.n_steps[j]):6d} |"
            for i in range(len(self.orders)):
                e = errs[i, j]
                mark = "".join(_MARK[f] for f in flags[i][j] if f in _MARK)
                cell = f"{e:.3e}" if np.isfinite(e) else "nan"
                row += f"{cell:>11} {mark:<2}"
            lines.append(row)
        return lines

    def __str__(self) -> str:
        prec = "  [LOW PRECISION]" if self.low_precision else ""
        lines = [
            f"BEA verification: T={self.horizon:g}, dtype={self.dtype}{prec}, solver={self.solver} "
            f"(rtol={self.rtol:.1e}, atol={self.atol:.1e}), {self.n_initial} initial point(s)"
            + (" [sharded]" if self.sharded else ""),
            "",
        ]
        med = " (median over initial points)" if self.n_initial > 1 else ""
        lines += self._table(f"Global error ||theta_n - y(T)||{med}", self.errors, self.flags)
        if self.local_errors is not None and self.local_flags is not None:
            lines.append("")
            lines += self._table(
                f"Local error ||Psi_h(theta_0) - y(h)||{med}", self.local_errors, self.local_flags
            )
        lines += ["", "Fitted slopes of log(error) vs log(h) (flagged cells excluded):"]
        for p in self.orders:
            s = self.slopes[p]
            g = f"{s:.3f}" if s is not None else "None"
            row = f"  order {p}: global {g} (expected {self.expected_slopes[p]})"
            if self.local_errors is not None:
                ls = self.local_slopes.get(p)
                lg = f"{ls:.3f}" if ls is not None else "None"
                row += f" | local {lg} (expected {self.expected_local_slopes[p]})"
            lines.append(row)
        lines.append(
            "Flags: R = round-off/solver-noise floor, D = diverged (non-finite or huge), "
            "F = ODE solver failed"
        )
        if self.warnings:
            lines += ["", "Warnings:"] + [f"  - {w}" for w in self.warnings]
        if self.notes:
            lines += ["", "Notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    # -- plotting -----------------------------------------------------------

    def plot(self, path: str | os.PathLike | None = None, kind: str = "global") -> Any:
        r"""Log-log plot of error vs ``h`` per order, with dashed reference slopes.

        The reference line for order :math:`p` is :math:`0.4\, e_0 (h / h_0)^{s}` with
        :math:`s = p + 1` (global) or :math:`p + 2` (local), anchored just below the
        order's smallest-``h`` usable point :math:`(h_0, e_0)` (offset so that it stays
        visible when the data follow it exactly).  Flagged cells are
        drawn hollow; the round-off floor is dotted grey.  Uses the Agg canvas (no
        pyplot state); saves to ``path`` (format from the suffix, e.g. png/pdf) when
        given and returns the :class:`matplotlib.figure.Figure`.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        slopes, expected = self._slopes(kind)
        errs = self.errors if kind == "global" else self.local_errors
        flags = self.flags if kind == "global" else self.local_flags
        floors = self.floors if kind == "global" else self.local_floors
        assert errs is not None and flags is not None

        fig = Figure(figsize=(6.4, 4.8))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        colors = [f"C{i % 10}" for i in range(len(self.orders))]
        for i, p in enumerate(self.orders):
            e = errs[i]
            bad = np.array([any(f in _EXCLUDED for f in flags[i][j]) for j in range(len(self.hs))])
            good = np.isfinite(e) & (e > 0) & ~bad
            s = slopes[p]
            lab = f"order {p}: slope {s:.2f}" if s is not None else f"order {p}: no slope"
            lab += f" (expected {expected[p]})"
            ax.loglog(self.hs[good], e[good], "o-", color=colors[i], label=lab)
            hollow = np.isfinite(e) & (e > 0) & bad
            if np.any(hollow):
                ax.loglog(self.hs[hollow], e[hollow], "o", mfc="none", color=colors[i])
            if np.any(good):
                j0 = int(np.flatnonzero(good)[0])  # hs ascending: smallest usable h
                h0, e0 = self.hs[j0], e[j0]
                ax.loglog(
                    self.hs, 0.4 * e0 * (self.hs / h0) ** expected[p], "--", color=colors[i],
                    alpha=0.6, label="reference slopes (offset)" if i == 0 else None,
                )
        if floors is not None and np.any(np.isfinite(floors)):
            ax.loglog(self.hs, np.nanmax(floors, axis=0), ":", color="0.5", label="round-off floor")
        ax.set_xlabel("step size h")
        ax.set_ylabel("global error" if kind == "global" else "local (one-step) error")
        what = f"Global error at T = {self.horizon:g}" if kind == "global" else "Local error"
        ax.set_title(f"BEA verification: {what} ({self.solver}, {self.dtype})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        if path is not None:
            fig.savefig(os.fspath(path))
        return fig

    # -- serialisation ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become ``None``)."""

        def sl(d: dict[int, float | None]) -> dict[str, float | None]:
            return {str(k): _json_float(v) for k, v in d.items()}

        return {
            "hs": [float(h) for h in self.hs],
            "orders": [int(p) for p in self.orders],
            "horizon": float(self.horizon),
            "n_steps": [int(n) for n in self.n_steps],
            "errors": _json_array(self.errors),
            "local_errors": _json_array(self.local_errors),
            "slopes": sl(self.slopes),
            "local_slopes": sl(self.local_slopes),
            "expected_slopes": {str(k): int(v) for k, v in self.expected_slopes.items()},
            "expected_local_slopes": {
                str(k): int(v) for k, v in self.expected_local_slopes.items()
            },
            "flags": [[list(c) for c in row] for row in self.flags],
            "local_flags": None
            if self.local_flags is None
            else [[list(c) for c in row] for row in self.local_flags],
            "notes": list(self.notes),
            "dtype": self.dtype,
            "warnings": list(self.warnings),
            "low_precision": bool(self.low_precision),
            "solver": self.solver,
            "rtol": float(self.rtol),
            "atol": float(self.atol),
            "n_initial": int(self.n_initial),
            "errors_all": _json_array(self.errors_all),
            "local_errors_all": _json_array(self.local_errors_all),
            "floors": _json_array(self.floors),
            "local_floors": _json_array(self.local_floors),
            "slopes_all": {str(k): [_json_float(x) for x in v] for k, v in self.slopes_all.items()},
            "local_slopes_all": {
                str(k): [_json_float(x) for x in v] for k, v in self.local_slopes_all.items()
            },
            "sharded": bool(self.sharded),
            "timings": {k: float(v) for k, v in self.timings.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerificationReport:
        """Inverse of :meth:`to_dict` (``None`` numbers come back as nan / ``None``)."""

        def sl(x: dict[str, Any]) -> dict[int, Any]:
            return {int(k): v for k, v in x.items()}

        return cls(
            hs=np.asarray(d["hs"], dtype=np.float64),
            orders=[int(p) for p in d["orders"]],
            horizon=float(d["horizon"]),
            n_steps=np.asarray(d["n_steps"], dtype=np.int64),
            errors=_from_json_array(d["errors"]),
            local_errors=_from_json_array(d.get("local_errors")),
            slopes=sl(d["slopes"]),
            local_slopes=sl(d.get("local_slopes", {})),
            expected_slopes=sl(d["expected_slopes"]),
            expected_local_slopes=sl(d.get("expected_local_slopes", {})),
            flags=[[list(c) for c in row] for row in d["flags"]],
            local_flags=None
            if d.get("local_flags") is None
            else [[list(c) for c in row] for row in d["local_flags"]],
            notes=list(d.get("notes", [])),
            dtype=d["dtype"],
            warnings=list(d.get("warnings", [])),
            low_precision=bool(d.get("low_precision", False)),
            solver=d.get("solver", "dopri8"),
            rtol=float(d.get("rtol", 1e-12)),
            atol=float(d.get("atol", 1e-14)),
            n_initial=int(d.get("n_initial", 1)),
            errors_all=_from_json_array(d.get("errors_all")),
            local_errors_all=_from_json_array(d.get("local_errors_all")),
            floors=_from_json_array(d.get("floors")),
            local_floors=_from_json_array(d.get("local_floors")),
            slopes_all=sl(d.get("slopes_all", {})),
            local_slopes_all=sl(d.get("local_slopes_all", {})),
            sharded=bool(d.get("sharded", False)),
            timings={k: float(v) for k, v in d.get("timings", {}).items()},
        )

    def save_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON atomically (temporary file, then ``os.replace``)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2, allow_nan=False)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def load_json(path: str | os.PathLike) -> VerificationReport:
    """Read a report written by :meth:`VerificationReport.save_json`."""
    with open(os.fspath(path), encoding="utf-8") as fh:
        return VerificationReport.from_dict(json.load(fh))


# ----------------------------------------------------------------------------
# main entry point
# ----------------------------------------------------------------------------


def _prepare_params(
    params0: PyTree, batch_initial: bool, allow_float32: bool
) -> tuple[PyTree, int, jnp.dtype]:
    leaves, treedef = jax.tree.flatten(params0)
    if not leaves:
        raise ValueError("params0 has no array leaves")
    leaves = [jnp.asarray(x) for x in leaves]
    if not _x64_enabled():
        if not allow_float32:
            raise ValueError(
                "jax_enable_x64 is off, so the verification would run in float32, whose "
                "round-off floor (~1e-7) hides the higher-order truncation errors. Call "
                "jax.config.update('jax_enable_x64', True) before creating any arrays, or pass "
                "allow_float32=True to accept (flagged) low-precision results."
            )
        dtype = jnp.dtype("float32")
    else:
        floats = [x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
        dtype = jnp.dtype(jnp.result_type(*floats)) if floats else jnp.dtype("float64")
        if dtype != jnp.dtype("float64") and not allow_float32:
            raise ValueError(
                f"params0 has dtype {dtype}, not float64: cast it to float64 or pass "
                "allow_float32=True to accept (flagged) low-precision results."
            )
    leaves = [x.astype(dtype) for x in leaves]
    if batch_initial:
        sizes = {x.shape[0] if x.ndim else None for x in leaves}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                "batch_initial=True needs every leaf of params0 to have the same leading "
                f"(batch) dimension, got leading sizes {sorted(map(str, sizes))}"
            )
        batch = int(next(iter(sizes)))
        if batch == 0:
            raise ValueError("batch_initial=True with an empty batch")
    else:
        leaves = [x[None] for x in leaves]
        batch = 1
    return jax.tree.unflatten(treedef, leaves), batch, dtype


def _classify(
    err: np.ndarray,
    ok: np.ndarray,
    scale: np.ndarray,
    norm0: np.ndarray,
    eps: float,
    rtol: float,
    atol: float,
    roundoff_factor: float,
    solver_factor: float,
    diverge_factor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-point masks (roundoff, diverged, failed) and the noise floor."""
    with np.errstate(all="ignore"):
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        floor = np.maximum(roundoff_factor * eps * scale, solver_factor * (rtol * scale + atol))
        diverged = ~np.isfinite(err) | (err > diverge_factor * np.maximum(1.0, norm0))
        failed = ~ok & ~diverged
        roundoff = ~diverged & ~failed & (err <= floor)
    return roundoff, diverged, failed, floor


def _cell_flags(roundoff: np.ndarray, diverged: np.ndarray, failed: np.ndarray) -> list:
    """Union over points of the flags: ``[O, K, B]`` masks -> ``[O][K]`` lists."""
    out = []
    for i in range(roundoff.shape[0]):
        row = []
        for j in range(roundoff.shape[1]):
            f = []
            if roundoff[i, j].any():
                f.append(ROUNDOFF)
            if diverged[i, j].any():
                f.append(DIVERGED)
            if failed[i, j].any():
                f.append(SOLVER_FAILED)
            row.append(f)
        out.append(row)
    return out


def _fit_all(
    kind: str,
    hs: np.ndarray,
    orders: list[int],
    err: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray, np.ndarray],
    min_points: int,
    warnings_out: list[str],
) -> tuple[dict[int, float | None], dict[int, list[float | None]]]:
    roundoff, diverged, failed = masks
    excluded = roundoff | diverged | failed
    slopes: dict[int, float | None] = {}
    per_point: dict[int, list[float | None]] = {}
    n_points = err.shape[2]
    # least-squares slopes of log e against log h for every (order, point) at once
    fitted_all, cnt, span_all = _fit_slopes(hs, err, ~excluded)         # [O, B] each
    enough = (cnt >= min_points) & np.isfinite(fitted_all)
    for i, p in enumerate(orders):
        vals: list[float | None] = [
            float(fitted_all[i, b]) if enough[i, b] else None for b in range(n_points)
        ]
        per_point[p] = vals
        fitted = [v for v in vals if v is not None]
        slopes[p] = float(np.median(fitted)) if fitted else None
        # explain exclusions
        for name, m in ((ROUNDOFF, roundoff), (DIVERGED, diverged), (SOLVER_FAILED, failed)):
            rows = np.flatnonzero(m[i].any(axis=1))
            if rows.size:
                hs_txt = ", ".join(_fmt_h(hs[j]) for j in rows)
                why = {
                    ROUNDOFF: "error at the round-off/solver-noise floor, not truncation error",
                    DIVERGED: "non-finite or huge error",
                    SOLVER_FAILED: "the ODE solver did not reach the end time",
                }[name]
                warnings_out.append(
                    f"order {p} ({kind}): h = {hs_txt} flagged '{name}' ({why}); "
                    "excluded from the slope fit"
                )
        if not fitted:
            usable = (~excluded[i]).sum(axis=0)
            warnings_out.append(
                f"order {p} ({kind}): no slope fitted (None): at most {int(usable.max())} usable "
                f"h value(s) per initial point, need >= {min_points} "
                f"(excluded cells: roundoff={int(roundoff[i].sum())}, "
                f"diverged={int(diverged[i].sum())}, solver_failed={int(failed[i].sum())})"
            )
        elif len(fitted) < n_points:
            warnings_out.append(
                f"order {p} ({kind}): slope fitted for only {len(fitted)}/{n_points} initial "
                "points; the median is over those"
            )
        if fitted:
            spans = span_all[i][enough[i]]
            if spans.size and spans.min() < _MIN_SPAN:
                warnings_out.append(
                    f"order {p} ({kind}): the usable hs span only a factor {spans.min():.3g}; "
                    "the slope is unreliable"
                )
    return slopes, per_point


def run_verification(
    step: StepFn,
    field: FieldFn,
    params0: PyTree,
    hs: Sequence[float],
    orders: Sequence[int],
    horizon: float,
    *,
    init_state: Callable[[PyTree, jax.Array], PyTree] | None = None,
    project: Callable[[PyTree], PyTree] | None = None,
    batch_initial: bool = False,
    rtol: float = 1e-12,
    atol: float = 1e-14,
    solver: str | diffrax.AbstractSolver = "dopri8",
    local: bool = True,
    progress: bool = True,
    allow_float32: bool = False,
    notes: Sequence[str] | None = None,
    h_batching: str = "vmap",
    fuse_orders: bool = True,
    shard: bool | None = None,
    max_steps: int = 65536,
    min_points: int = 3,
    roundoff_factor: float = 100.0,
    solver_factor: float = 10.0,
    diverge_factor: float = 1e4,
) -> VerificationReport:
    r"""Check that truncated modified flows track the discrete iterates at the right order.

    For every step size :math:`h` in ``hs`` (with :math:`n = T/h` an integer,
    :math:`n \ge 4`) and every order :math:`p` in ``orders``:

    * :math:`\theta_n = \mathrm{project}(\mathrm{step}^n(\mathrm{init\_state}(\theta_0, h)))`,
    * :math:`y(T)`: solution at :math:`T = n h` of
      :math:`\dot y = \mathrm{field}(y, h, p) = \sum_{k \le p} h^k f_k(y)`, :math:`y(0) = \theta_0`,
    * global error :math:`\|\theta_n - y(T)\|_2`, expected :math:`O(h^{p+1})`,
    * local error :math:`\|\theta_1 - y(h)\|_2`, expected :math:`O(h^{p+2})` (if ``local``).

    Parameters
    ----------
    step:
        ``step(state, h) -> state``, one optimiser step; must preserve the pytree
        structure and dtypes of ``state``.
    field:
        ``field(params, h, order) -> pytree`` (same structure as ``params``), the
        truncated modified field :math:`f_0 + h f_1 + \dots + h^{order} f_{order}`;
        ``order`` is a static Python int.
    params0:
        Initial parameters (pytree).  With ``batch_initial=True`` every leaf carries a
        leading batch axis of initial points; the computation is ``vmap``-ed over it
        and errors are reported as medians over points.
    hs:
        Step sizes; ``horizon / h`` must be an integer >= 4 for each and the ``hs`` must
        span at least a factor 2 (4 or more recommended; see :func:`integer_step_sizes`).
    orders:
        Truncation orders :math:`p` to test.
    horizon:
        :math:`T`.
    init_state, project:
        For multistep methods: ``init_state(params0, h) -> state`` (default: the
        parameters themselves) and ``project(state) -> params`` (default identity).
        Describe the initialisation in ``notes``.
    rtol, atol, solver:
        ODE tolerances and solver (``'dopri8'``, ``'tsit5'``, ``'dopri5'`` or a diffrax
        solver instance).  In low precision both tolerances are raised to at least
        :math:`10\,\varepsilon` (noted in the report).
    local:
        Also compute the one-step (local) error.
    progress:
        Show a tqdm bar over the (h, order) grid.
    allow_float32:
        Without x64 (or with non-float64 ``params0``) raise unless this is True; the
        report is then marked ``low_precision``.
    notes:
        Free-text notes copied into the report.
    h_batching:
        ``'vmap'`` (default): one masked ``lax.scan`` of :math:`\max n` steps and one
        ODE solve, both ``vmap``-ed over all ``hs`` (one compilation, one dispatch;
        memory grows with ``len(hs)``).  ``'loop'``: a Python loop over ``hs`` calling
        kernels compiled once with traced ``h`` and ``n`` (a ``fori_loop`` of exactly
        :math:`n` steps); use it for large models.
    fuse_orders:
        ``True`` (default): all orders in one compiled kernel (``lax.map`` over orders,
        ``lax.switch`` picks the truncated field): one compilation of the ODE solver
        instead of one per order.  ``False``: one kernel per order.
    shard:
        Shard the initial-point axis over a 1-D device mesh.  ``None`` (default):
        automatically when ``jax.device_count() > 1`` and the batch is divisible by it.
    max_steps:
        Maximum number of ODE solver steps per solve.
    min_points:
        Minimum number of usable ``h`` values for a slope fit.
    roundoff_factor, solver_factor, diverge_factor:
        Cell thresholds: round-off floor
        :math:`\max(r\,\varepsilon\,s,\; q\,(\mathrm{rtol}\,s + \mathrm{atol}))`
        and divergence :math:`e > d \max(1, \|\theta_0\|)`.

    Returns
    -------
    VerificationReport

    Raises
    ------
    ValueError
        Non-integer :math:`T/h`, fewer than 4 steps, ``hs`` spanning less than a factor
        2, float32 without ``allow_float32``, malformed inputs.
    """
    t_start = time.perf_counter()
    hs_arr, ns = _validate_grid(hs, horizon)
    orders_l = [int(p) for p in orders]
    if not orders_l:
        raise ValueError("orders must be a non-empty sequence of non-negative ints")
    if any(p < 0 for p in orders_l) or len(set(orders_l)) != len(orders_l):
        raise ValueError(f"orders must be distinct non-negative ints, got {list(orders)}")
    if h_batching not in ("vmap", "loop"):
        raise ValueError(f"h_batching must be 'vmap' or 'loop', got {h_batching!r}")
    if min_points < 2:
        raise ValueError("min_points must be >= 2")
    init_state = _default_init_state if init_state is None else init_state
    project = _identity if project is None else project
    horizon = float(horizon)

    params_b, batch, dtype = _prepare_params(params0, batch_initial, allow_float32)
    low_precision = dtype != jnp.dtype("float64")
    eps = float(jnp.finfo(dtype).eps)
    all_notes = [str(n) for n in (notes or [])]
    warns: list[str] = []
    rtol_eff, atol_eff = max(float(rtol), 10 * eps), max(float(atol), 10 * eps)
    if low_precision:
        warns.append(
            f"LOW PRECISION: computed in {dtype} (allow_float32=True); errors below "
            f"~{roundoff_factor * eps:.1e} x scale are round-off, so high orders flatten"
        )
    if (rtol_eff, atol_eff) != (float(rtol), float(atol)):
        all_notes.append(
            f"solver tolerances raised to rtol={rtol_eff:.1e}, atol={atol_eff:.1e} "
            f"(>= 10 eps of {dtype})"
        )
    ode_solver, solver_name = _make_solver(solver)

    # optional sharding of the initial-point axis
    ndev = jax.device_count()
    if shard is None:
        shard = batch_initial and ndev > 1 and batch % ndev == 0
    if shard:
        if batch % ndev != 0:
            raise ValueError(f"shard=True needs the batch ({batch}) divisible by {ndev} devices")
        mesh = Mesh(np.asarray(jax.devices()), ("points",))
        params_b = jax.device_put(params_b, NamedSharding(mesh, PartitionSpec("points")))
        all_notes.append(f"initial-point axis sharded over a 1-D mesh of {ndev} devices")

    K, O = len(hs_arr), len(orders_l)
    n_max = int(ns.max())
    h_dev = jnp.asarray(hs_arr, dtype=dtype)
    n_dev = jnp.asarray(ns, dtype=jnp.int32)
    timings: dict[str, float] = {}

    # 1. discrete iterates
    t0 = time.perf_counter()
    disc = _build_discrete(step, init_state, project, n_max, h_batching)
    if h_batching == "vmap":
        th_n, th_1 = disc(params_b, h_dev, n_dev)
        all_notes.append(f"h sweep: masked lax.scan of {n_max} steps vmapped over {K} step sizes")
    else:
        outs = [disc(params_b, h_dev[j], n_dev[j]) for j in range(K)]
        th_n = jax.tree.map(lambda *a: jnp.stack(a), *[o[0] for o in outs])
        th_1 = jax.tree.map(lambda *a: jnp.stack(a), *[o[1] for o in outs])
        all_notes.append(f"h sweep: loop over {K} step sizes, fori_loop compiled once")
    jax.block_until_ready(th_n)
    timings["discrete_s"] = time.perf_counter() - t0

    # 2. modified flows, one compiled kernel per order
    err = np.empty((O, K, batch))
    ok = np.empty((O, K, batch), dtype=bool)
    scale = np.empty((O, K, batch))
    norm0 = np.empty((O, K, batch))
    lerr = np.empty((O, K, batch)) if local else None
    lok = np.empty((O, K, batch), dtype=bool) if local else None
    lscale = np.empty((O, K, batch)) if local else None
    keys = ("err", "ok", "scale", "norm0") + (("lerr", "lok", "lscale") if local else ())
    with tqdm(
        total=O * K, disable=not progress, desc="BEA verification (h x order)", leave=False
    ) as bar:
        # one kernel for all orders, or (fuse_orders=False) one kernel per order
        groups = [tuple(orders_l)] if fuse_orders else [(p,) for p in orders_l]
        for group in groups:
            t0 = time.perf_counter()
            flow = _build_flow(
                field, group, ode_solver, rtol_eff, atol_eff, int(max_steps), bool(local),
                h_batching,
            )
            if h_batching == "vmap":
                res = jax.device_get(flow(params_b, h_dev, n_dev, th_n, th_1))
                bar.update(len(group) * K)
            else:
                parts = []
                for j in range(K):
                    sl = lambda a, j=j: a[j]
                    parts.append(jax.device_get(flow(
                        params_b, h_dev[j], n_dev[j], jax.tree.map(sl, th_n),
                        jax.tree.map(sl, th_1))))
                    bar.update(len(group))
                res = {k: np.stack([q[k] for q in parts], axis=1) for k in keys}
            rows = [orders_l.index(p) for p in group]
            err[rows], ok[rows], scale[rows], norm0[rows] = (
                res["err"], res["ok"], res["scale"], res["norm0"])
            if local:
                lerr[rows], lok[rows], lscale[rows] = res["lerr"], res["lok"], res["lscale"]
            name = "flows_s" if fuse_orders else f"order_{group[0]}_s"
            timings[name] = time.perf_counter() - t0
    if fuse_orders and O > 1:
        all_notes.append(f"all {O} orders integrated by one compiled kernel")

    # 3. classify and fit
    cls_args = (eps, rtol_eff, atol_eff, roundoff_factor, solver_factor, diverge_factor)
    r, d, f, floor = _classify(err, ok, scale, norm0, *cls_args)
    slopes, slopes_all = _fit_all("global", hs_arr, orders_l, err, (r, d, f), min_points, warns)
    flags = _cell_flags(r, d, f)
    local_errors = local_flags = local_floor = None
    local_slopes: dict[int, float | None] = {}
    local_slopes_all: dict[int, list[float | None]] = {}
    if local:
        lr, ld, lf, local_floor = _classify(lerr, lok, lscale, norm0, *cls_args)
        local_slopes, local_slopes_all = _fit_all(
            "local", hs_arr, orders_l, lerr, (lr, ld, lf), min_points, warns
        )
        local_flags = _cell_flags(lr, ld, lf)
        local_errors = _nan_median(lerr)
    timings["total_s"] = time.perf_counter() - t_start

    return VerificationReport(
        hs=hs_arr,
        orders=orders_l,
        horizon=horizon,
        n_steps=ns,
        errors=_nan_median(err),
        local_errors=local_errors,
        slopes=slopes,
        local_slopes=local_slopes,
        expected_slopes={p: p + 1 for p in orders_l},
        expected_local_slopes={p: p + 2 for p in orders_l},
        flags=flags,
        local_flags=local_flags,
        notes=all_notes,
        dtype=str(dtype),
        warnings=warns,
        low_precision=low_precision,
        solver=solver_name,
        rtol=rtol_eff,
        atol=atol_eff,
        n_initial=batch,
        errors_all=err,
        local_errors_all=lerr,
        floors=_nan_median(floor),
        local_floors=None if local_floor is None else _nan_median(local_floor),
        slopes_all=slopes_all,
        local_slopes_all=local_slopes_all,
        sharded=bool(shard),
        timings=timings,
    )

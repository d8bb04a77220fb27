r"""The numerical core of a verification: real iterates against truncated modified flows.

For every step size :math:`h` of a sweep and truncation order :math:`p` it runs the
:math:`n = T/h` discrete iterates (:func:`jax.lax.scan`, ``vmap``-ed over initial points and
step sizes), integrates :math:`\dot y = f_0 + h f_1 + \dots + h^p f_p` over the same
horizon with a high-order adaptive solver (diffrax Dopri8, tight tolerances, float64),
measures the global error :math:`\|\theta_n - y(T)\|` and the local error
:math:`\|\Psi_h(\theta_0) - y(h)\|`, flags cells at the round-off floor and fits slopes
(:mod:`bea.verification.fits`), expected :math:`\max(p+1, q)` and :math:`\max(p+2, q+1)`
for a method of order :math:`q`.  Only JAX, diffrax, numpy and tqdm: independent of how
the :math:`f_k` were obtained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .dynamics import expected_slopes
from .fits import cell_flags, classify, fit_table, nan_median
from .grid import validate_grid
from .kernels import (
    FieldFn,
    StepFn,
    build_discrete,
    build_flow,
    default_init_state,
    flow_keys,
    identity,
    make_solver,
)
from .report import ErrorTable, VerificationReport

__all__ = ["run_verification"]

PyTree = Any


def x64_enabled() -> bool:
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.dtype("float64")



def prepare_params(
    params0: PyTree, batch_initial: bool, allow_float32: bool
) -> tuple[PyTree, int, jnp.dtype]:
    leaves, treedef = jax.tree.flatten(params0)
    if not leaves:
        raise ValueError("params0 has no array leaves")
    leaves = [x if isinstance(x, jax.Array) else jnp.asarray(x) for x in leaves]
    if not x64_enabled():
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
    leaves = [x if x.dtype == dtype and not getattr(x, "weak_type", False) else x.astype(dtype)
              for x in leaves]
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
    method: str | None = None,
    method_order: int = 1,
) -> VerificationReport:
    r"""Check that truncated modified flows track the discrete iterates at the right order.

    For every step size :math:`h` in ``hs`` (with :math:`n = T/h` an integer,
    :math:`n \ge 4`) and every order :math:`p` in ``orders``:

    * :math:`\theta_n = \mathrm{project}(\mathrm{step}^n(\mathrm{init\_state}(\theta_0, h)))`,
    * :math:`y(T)`: solution at :math:`T = n h` of
      :math:`\dot y = \mathrm{field}(y, h, p) = \sum_{k \le p} h^k f_k(y)`, :math:`y(0) = \theta_0`,
    * global error :math:`\|\theta_n - y(T)\|_2`, expected :math:`O(h^{p+1})`,
    * local error :math:`\|\theta_1 - y(h)\|_2`, expected :math:`O(h^{p+2})` (if ``local``)

    (for a method of order :math:`q`, ``method_order=q``, the expected slopes are
    :math:`\max(p+1, q)` and :math:`\max(p+2, q+1)`: :func:`expected_slopes`).

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
    method, method_order:
        Name of what is verified (report titles, plot file names) and its order ``q``.

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
    hs_arr, ns = validate_grid(hs, horizon)
    orders_l = [int(p) for p in orders]
    if not orders_l:
        raise ValueError("orders must be a non-empty sequence of non-negative ints")
    if any(p < 0 for p in orders_l) or len(set(orders_l)) != len(orders_l):
        raise ValueError(f"orders must be distinct non-negative ints, got {list(orders)}")
    if h_batching not in ("vmap", "loop"):
        raise ValueError(f"h_batching must be 'vmap' or 'loop', got {h_batching!r}")
    if min_points < 2:
        raise ValueError("min_points must be >= 2")
    init_state = default_init_state if init_state is None else init_state
    project = identity if project is None else project
    horizon = float(horizon)

    params_b, batch, dtype = prepare_params(params0, batch_initial, allow_float32)
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
    ode_solver, solver_name = make_solver(solver)

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
    # numpy arguments: the jitted kernels transfer them (cheaper than jnp.asarray here)
    h_dev = hs_arr.astype(dtype)
    n_dev = ns.astype(np.int32)
    timings: dict[str, float] = {}

    # 1. discrete iterates
    t0 = time.perf_counter()
    disc = build_discrete(step, init_state, project, n_max, h_batching)
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
    # the end time n h of every global solve, as the kernel computes it: when all are one
    # number (the usual case, h = T / n), it is compiled in as a constant (build_flow)
    t_ends = ns.astype(dtype) * h_dev
    end_time = float(t_ends[0]) if h_batching == "vmap" and np.all(t_ends == t_ends[0]) \
        else None
    keys = flow_keys(bool(local))
    res = np.empty((len(keys), O, K, batch))      # rows: flow_keys, ok/lok as 0/1
    # tqdm only when shown: building a disabled bar costs ~0.1 ms of a few-ms warm call
    bar = tqdm(total=O * K, desc="BEA verification (h x order)", leave=False) \
        if progress else None
    try:
        # one kernel for all orders, or (fuse_orders=False) one kernel per order
        groups = [tuple(orders_l)] if fuse_orders else [(p,) for p in orders_l]
        for group in groups:
            t0 = time.perf_counter()
            flow = build_flow(
                field, group, ode_solver, rtol_eff, atol_eff, int(max_steps), bool(local),
                h_batching, end_time,
            )
            rows = [orders_l.index(p) for p in group]
            if h_batching == "vmap":
                res[:, rows] = jax.device_get(flow(params_b, h_dev, n_dev, th_n, th_1))
                if bar is not None:
                    bar.update(len(group) * K)
            else:
                for j in range(K):
                    sl = lambda a, j=j: a[j]
                    res[:, rows, j] = jax.device_get(flow(
                        params_b, h_dev[j], n_dev[j], jax.tree.map(sl, th_n),
                        jax.tree.map(sl, th_1)))
                    if bar is not None:
                        bar.update(len(group))
            name = "flows_s" if fuse_orders else f"order_{group[0]}_s"
            timings[name] = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
    out = dict(zip(keys, res, strict=True))
    err, ok, scale, norm0 = out["err"], out["ok"] != 0, out["scale"], out["norm0"]
    if local:
        lerr, lok, lscale = out["lerr"], out["lok"] != 0, out["lscale"]
    if fuse_orders and O > 1:
        all_notes.append(f"all {O} orders integrated by one compiled kernel")

    # 3. classify and fit: one error table per kind
    cls_args = (eps, rtol_eff, atol_eff, roundoff_factor, solver_factor, diverge_factor)
    measured = {"global": (err, ok, scale)}
    if local:
        measured["local"] = (lerr, lok, lscale)
    tables = {kind: _error_table(kind, hs_arr, orders_l, e, o, sc, norm0, cls_args,
                                 min_points, method_order, warns)
              for kind, (e, o, sc) in measured.items()}
    timings["total_s"] = time.perf_counter() - t_start
    return VerificationReport(
        hs=hs_arr, orders=orders_l, horizon=horizon, n_steps=ns, tables=tables,
        notes=all_notes, dtype=str(dtype), warnings=warns, low_precision=low_precision,
        solver=solver_name, rtol=rtol_eff, atol=atol_eff, n_initial=batch,
        sharded=bool(shard), timings=timings, method=method, method_order=method_order,
    )


def _error_table(kind: str, hs: np.ndarray, orders: list[int], err: np.ndarray,
                 ok: np.ndarray, scale: np.ndarray, norm0: np.ndarray, cls_args: tuple,
                 min_points: int, method_order: int, warns: list[str]) -> ErrorTable:
    """Flags, fits and expected slopes of one kind of error (``[O, K, B]`` arrays)."""
    r, d, f, floor = classify(err, ok, scale, norm0, *cls_args)
    slopes, slopes_all = fit_table(kind, hs, orders, err, (r, d, f), min_points, warns)
    pick = 0 if kind == "global" else 1
    return ErrorTable(
        kind=kind, errors=nan_median(err), errors_all=err, slopes=slopes,
        slopes_all=slopes_all, floors=nan_median(floor), flags=cell_flags(r, d, f),
        expected={p: expected_slopes(p, method_order)[pick] for p in orders},
    )

"""The jitted kernels of a verification: discrete iterates and truncated modified flows.

Both are cached on the functions they are built from, so repeated sweeps with the same
step and field reuse their compilations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["FieldFn", "StepFn", "build_discrete", "build_flow", "flow_keys", "make_solver",
           "tree_dist", "tree_norm"]

PyTree = Any
StepFn = Callable[[PyTree, jax.Array], PyTree]
"""``step(state, h) -> state``: one step of the discrete method."""
FieldFn = Callable[[PyTree, jax.Array, int], PyTree]
"""``field(params, h, order) -> pytree``: :math:`f_0 + h f_1 + \\dots + h^{order} f_{order}`."""


def identity(x: PyTree) -> PyTree:
    return x


def default_init_state(params: PyTree, h: jax.Array) -> PyTree:
    del h
    return params


def tree_norm(a: PyTree) -> jax.Array:
    """:math:`\\|a\\|_2 = (\\sum_{\\text{leaves}} \\sum |a_i|^2)^{1/2}`."""
    leaves = jax.tree.leaves(a)
    if not leaves:
        return jnp.zeros(())
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves))


def tree_dist(a: PyTree, b: PyTree) -> jax.Array:
    """:math:`\\|a - b\\|_2` over all leaves."""
    return tree_norm(jax.tree.map(lambda x, y: x - y, a, b))




def cached_builder(builder: Callable[..., Any]) -> Callable[..., Any]:
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


@cached_builder
def build_discrete(
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


def make_solver(solver: str | diffrax.AbstractSolver) -> tuple[diffrax.AbstractSolver, str]:
    if isinstance(solver, diffrax.AbstractSolver):
        return solver, type(solver).__name__.lower()
    name = str(solver).lower()
    table = {"dopri8": diffrax.Dopri8, "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}
    if name not in table:
        raise ValueError(
            f"unknown solver {solver!r}; use one of {sorted(table)} or a diffrax solver"
        )
    if name not in _SOLVERS:        # one (immutable) instance per name: cheap cache keys
        _SOLVERS[name] = table[name]()
    return _SOLVERS[name], name


_SOLVERS: dict[str, diffrax.AbstractSolver] = {}


@cached_builder
def build_flow(
    vfield: FieldFn,
    orders: tuple[int, ...],
    solver: diffrax.AbstractSolver,
    rtol: float,
    atol: float,
    max_steps: int,
    local: bool,
    mode: str,
    end_time: float | None = None,
) -> Callable:
    """One jitted kernel returning errors, scales and solver status for ``orders``.

    ``(params0[B], hs, ns, theta_n, theta_1) -> [len(flow_keys(local)), O, K, B]``
    (``mode='vmap'``) or ``[.., O, B]`` (``mode='loop'``, one ``h``): the rows named by
    :func:`flow_keys` (errors, 0/1 solver status, scales) stacked.  Several orders share
    one compilation and one dispatch: they run one after another (``lax.map`` over an
    order index); inside, the truncated field is picked with ``lax.switch`` on that
    *unbatched* index, so it stays a real branch under ``vmap`` and order ``p`` costs
    only the terms up to ``p``.  The ODE solver is traced once for all orders.

    ``end_time``: when every ``n h`` (computed in the dtype of ``hs``, as the kernel would)
    is this one number, the global solves end at it as a compile-time constant instead
    of the traced ``n h``: same end time, but diffrax's end-time rounding threshold
    (``t1`` minus 100 ulps, a chain of 100 ``prevbefore``) is then folded by XLA instead
    of compiled as one large fused kernel (~0.3-0.5 s of compilation on CPU).  A kernel
    is then built per distinct end time (a sweep over horizons compiles once per horizon).
    """
    branches = [functools.partial(field_at_order, vfield, p) for p in orders]

    # jitted so the (large, nested-jvp) truncated field is traced once and the solver's
    # many stage calls reuse its jaxpr instead of re-tracing it under vmap each time
    @jax.jit
    def truncated(y: PyTree, h: jax.Array, idx: jax.Array) -> PyTree:
        return lax.switch(idx, branches, y, h)

    def rhs(t: jax.Array, y: PyTree, args: tuple[jax.Array, jax.Array]) -> PyTree:
        h, idx = args
        return truncated(y, h, idx)

    term = diffrax.ODETerm(rhs)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def solve(y0: PyTree, h: jax.Array, idx: jax.Array, t1: jax.Array):
        sol = diffrax.diffeqsolve(
            term, solver, t0=jnp.zeros_like(t1), t1=t1, dt0=None, y0=y0, args=(h, idx),
            saveat=diffrax.SaveAt(t1=True), stepsize_controller=controller,
            max_steps=max_steps, throw=False, adjoint=diffrax.ForwardMode(),
        )
        return jax.tree.map(lambda a: a[-1], sol.ys), sol.result == diffrax.RESULTS.successful

    def per_point(p0, h, n, th_n, th_1, idx):
        norm0 = tree_norm(p0)
        t1 = n.astype(h.dtype) * h if end_time is None else jnp.asarray(end_time, h.dtype)
        y_T, ok_T = solve(p0, h, idx, t1)
        out = {
            "err": tree_dist(th_n, y_T),
            "scale": jnp.maximum(norm0, jnp.maximum(tree_norm(th_n), tree_norm(y_T))),
            "ok": ok_T,
            "norm0": norm0,
        }
        if local:
            y_h, ok_h = solve(p0, h, idx, h)
            out["lerr"] = tree_dist(th_1, y_h)
            out["lscale"] = jnp.maximum(norm0, jnp.maximum(tree_norm(th_1), tree_norm(y_h)))
            out["lok"] = ok_h
        return out

    if mode == "vmap":
        fn = _flat_vmap(per_point)                                  # (step size, point) pairs
    else:
        fn = jax.vmap(per_point, in_axes=(0, None, None, 0, 0, None))      # points

    keys = flow_keys(local)

    def all_orders(p0, hs, ns, th_n, th_1):
        out = lax.map(lambda i: fn(p0, hs, ns, th_n, th_1, i), jnp.arange(len(orders)))
        dtype = out["err"].dtype                # one array, so one device-to-host copy
        return jnp.stack([out[k].astype(dtype) for k in keys])

    return jax.jit(all_orders)


def flow_keys(local: bool) -> tuple[str, ...]:
    """The rows of :func:`build_flow`'s output, in order (``ok``/``lok`` as 0/1)."""
    return ("err", "ok", "scale", "norm0") + (("lerr", "lok", "lscale") if local else ())


def _flat_vmap(per_point: Callable) -> Callable:
    """``per_point`` over all ``B x K`` (point, step size) pairs as *one* ``vmap`` of a
    flattened axis: ``(p0[B], hs[K], ns[K], th_n[K, B], th_1[K, B], idx) -> [K, B]``.

    Same computation per pair as ``vmap(vmap(per_point, points), step sizes)``, but the
    ODE solver's while loop is batched once instead of twice (half the tracing).  The
    flat axis is point-major, so a sharding of the points stays contiguous blocks of it.
    """
    flat = jax.vmap(per_point, in_axes=(0, 0, 0, 0, 0, None))

    def fn(p0, hs, ns, th_n, th_1, idx):
        K, B = hs.shape[0], jax.tree.leaves(p0)[0].shape[0]

        def spread(a):                                              # [B, ...] -> [B K, ...]
            return jnp.repeat(a, K, axis=0)

        def merge(a):                                               # [K, B, ...] -> [B K, ...]
            return jnp.swapaxes(a, 0, 1).reshape(B * K, *a.shape[2:])

        out = flat(jax.tree.map(spread, p0), jnp.tile(hs, B), jnp.tile(ns, B),
                   jax.tree.map(merge, th_n), jax.tree.map(merge, th_1), idx)
        return jax.tree.map(lambda a: jnp.swapaxes(a.reshape(B, K, *a.shape[1:]), 0, 1), out)

    return fn


def field_at_order(vfield: FieldFn, order: int, y: PyTree, h: jax.Array) -> PyTree:
    return vfield(y, h, order)


"""What every ``bea.optax`` transform shares: one state, the finite check, extra arguments.

A transform here is a *correction* ``correction(updates, params, count, extra) -> pytree``
(gradient units, ``None`` on leaves that are not differentiated) wrapped by
:func:`make_transform` into an :class:`optax.GradientTransformationExtraArgs` that adds it
to the incoming updates where it is finite, counts the skipped steps and records what the
term was derived for (:class:`TransformInfo`, read with :func:`transform_info`).  Labs and
``games.optax`` build their transforms from these pieces.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import kernels

from .. import methods as M

__all__ = ["MISSING", "CorrectionState", "PyTree", "Scalar", "ScalarOrSchedule", "Scaled",
           "TransformInfo", "bind_batch", "check_scalar", "float_dtype", "get_loss",
           "is_param_leaf", "make_transform", "positional_arity", "schedule_value",
           "split_params", "transform_info", "warn_mismatch"]

PyTree = Any
Scalar = float | jax.Array
ScalarOrSchedule = float | Callable[[jax.Array], Scalar]


class CorrectionState(NamedTuple):
    """State of every ``bea.optax`` transform.  ``count``: updates so far; ``skipped``:
    updates whose correction was not finite (not applied); ``correction_norm``: 2-norm of
    the last applied correction (0 if skipped; over all players for games)."""

    count: jax.Array
    skipped: jax.Array
    correction_norm: jax.Array

@dataclass(frozen=True)
class TransformInfo:
    """What a transform was derived for: ``method`` (a ``bea`` method, or None for a
    user term), ``learning_rate`` (the step size it assumes, if any)."""

    name: str
    method: Any
    learning_rate: Any = None


def transform_info(tx: Any) -> TransformInfo | None:
    """The :class:`TransformInfo` of a transform built here (None for other transforms),
    e.g. ``transform_info(tx).method`` is the method a correction was derived for."""
    return getattr(getattr(tx, "update", None), "bea_info", None)


# ----------------------------------------------------------------------------- helpers


def is_param_leaf(x: Any) -> bool:
    """Leaves that are differentiated: inexact arrays (and Python floats)."""
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (float, complex)):
        return True
    return eqx.is_inexact_array(x)


def split_params(params: PyTree) -> tuple[PyTree, PyTree]:
    return eqx.partition(params, is_param_leaf)


def schedule_value(x: ScalarOrSchedule, count: jax.Array) -> Scalar:
    return x(count) if callable(x) else x


def check_scalar(x: Any, what: str, positive: bool = False) -> None:
    if callable(x):
        return
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.ndarray, jax.Array)):
        raise TypeError(f"{what} must be a number or a schedule count -> number, got {x!r}")
    try:
        arr = np.asarray(x)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return   # a traced value (e.g. a step size vmapped over): checked by the caller
    if arr.shape != ():
        raise ValueError(f"{what} must be a scalar, got shape {arr.shape}")
    v = float(arr)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{what} must be positive, got {v}")


def positional_arity(fn: Callable) -> tuple[int | None, float | None]:
    """``(required, maximum)`` positional arguments of ``fn`` (None if unknown)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, None
    req, total = 0, 0.0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            total += 1
            if p.default is p.empty:
                req += 1
        elif p.kind == p.VAR_POSITIONAL:
            total = math.inf
    return req, total


MISSING = object()


def bind_batch(fn: Callable, batch: Any, who: str, what: str = "loss_fn") -> Callable:
    """``params -> fn(params, batch)`` (or ``fn(params)`` if ``fn`` takes no batch);
    a clear error when the batch is needed but was not passed."""
    req, total = positional_arity(fn)
    if batch is MISSING:
        if req is not None and req >= 2:
            raise ValueError(f"{who} needs `batch=` passed to update(...): its {what} takes "
                             f"(params, batch)")
        return fn
    if total is not None and total < 2:
        return fn
    return lambda p: fn(p, batch)


def get_loss(extra: Mapping[str, Any], default: Callable | None, who: str,
              batch_hint: bool = True) -> Callable:
    fn = extra.get("loss_fn", None)
    if fn is None:
        fn = default
    if fn is None:
        more = " (and `batch=` if the loss takes one)" if batch_hint else ""
        raise ValueError(f"{who} needs `loss_fn=` passed to update(...){more}, or loss_fn= "
                         f"given to the constructor")
    if not callable(fn):
        raise TypeError(f"{who}: loss_fn must be callable, got {type(fn).__name__}")
    return fn


class Scaled(NamedTuple):
    """A correction ``factor * tree`` that a correction function may return instead of
    the product: :func:`make_transform` multiplies inside the update it adds (and scales
    the norm by ``|factor|``), so the correction itself is materialised once, read by the
    finite check and by the update.  A multiply by a coefficient after a plan's last
    linear combination made XLA (CPU) fuse that combination into both readers, computing
    it twice (1.09x a hand-written step at 1e5 parameters; issue 20)."""

    factor: Any
    tree: PyTree


def _add_correction(updates: PyTree, corr: PyTree, finite: jax.Array | None,
                    factor: Any = None) -> PyTree:
    """``updates + factor * corr`` where ``finite`` (always if None), else ``updates``;
    ``corr`` has None on leaves that are not differentiated (they pass through)."""
    def add(c, u):
        if c is None or u is None:
            return u
        if factor is not None:
            c = factor * c
        new = u + c if finite is None else jnp.where(finite, u + c, u)
        return new.astype(jnp.result_type(u))

    try:
        return jax.tree.map(add, corr, updates, is_leaf=lambda x: x is None)
    except ValueError as e:
        raise ValueError(f"updates and params have different tree structures ({e}); pass "
                         f"the gradient pytree of the params given to update(...)") from e


def _norm_and_finite(tree: PyTree) -> tuple[jax.Array, jax.Array]:
    """``(||c||_2, ||c||_2 is finite)`` by one reduction: a NaN or inf entry makes the
    sum of squares NaN or inf, so no second pass (``isfinite`` of every entry) is needed;
    the price is that a finite correction whose norm overflows (|c| > ~1e19 in float32,
    ~1e154 in float64) also counts as not finite, and is skipped."""
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    if not leaves:
        return jnp.zeros([]), jnp.asarray(True)
    norm = kernels.tree_norm(leaves)
    return norm, jnp.isfinite(norm)


def float_dtype(params: PyTree):
    leaves = [x for x in jax.tree.leaves(eqx.filter(params, is_param_leaf))]
    if not leaves:
        return jnp.result_type(float)
    return jnp.result_type(*leaves)


def _optimizer_method(optimizer: Any) -> Any:
    if optimizer is None or isinstance(optimizer, M.Method):
        return optimizer
    if isinstance(optimizer, str):
        key = optimizer.strip().lower()
        return M.gd() if key in ("sgd", "gd") else key
    raise TypeError(f"optimizer= takes a bea method (bea.methods.gd(), heavy_ball(0.9), a "
                    f"game method) or 'sgd', got {optimizer!r}")


def warn_mismatch(who: str, method: Any, optimizer: Any, stacklevel: int = 3) -> None:
    opt = _optimizer_method(optimizer)
    if opt is None or method is None:
        return
    if isinstance(opt, M.Method) and opt == method:
        return
    oname = opt.name if isinstance(opt, M.Method) else repr(opt)
    hint = (f"derive it for the optimiser you use, e.g. bea.modified_loss({oname}, 1)"
            if isinstance(opt, M.Method) else "a B-series analysis of that optimiser is "
            "not available here")
    warnings.warn(f"{who} was derived for {method.name}, but the optimiser is {oname}: its "
                  f"implicit regulariser / drift has other coefficients, so the term is not "
                  f"cancelled or strengthened as intended; {hint}", stacklevel=stacklevel)


def make_transform(name: str, correction: Callable, info: TransformInfo,
                   state_cls: type = CorrectionState, guard: bool = True
                   ) -> optax.GradientTransformationExtraArgs:
    """Wrap ``correction(updates, params, count, extra) -> pytree`` (gradient units, None
    on undifferentiated leaves; or a :class:`Scaled`) as a transform with the finite check
    and counters.

    ``guard=False`` leaves out the finite check: the correction is always added (a NaN in
    it reaches the parameters), ``state.skipped`` stays 0 and ``state.correction_norm`` is
    not computed (stays 0).  The check is one reduction over the parameters plus a select;
    that is ~10% of a step on a ~3e4-parameter float64 net (0.27 ms a step, where the
    reduction's dispatch shows) and ~1% at 1e5-1e6 parameters
    (``benchmarks/bench_transforms.py``)."""
    if not isinstance(guard, bool):
        raise TypeError(f"{name}: guard must be True or False, got {guard!r}")

    def init(params: PyTree) -> NamedTuple:
        return state_cls(count=jnp.zeros([], jnp.int32), skipped=jnp.zeros([], jnp.int32),
                         correction_norm=jnp.zeros([], float_dtype(params)))

    def update(updates: PyTree, state: NamedTuple, params: PyTree = None,
               **extra_args: Any) -> tuple[PyTree, NamedTuple]:
        if params is None:
            raise ValueError(f"{name} needs the params: call update(updates, state, params, "
                             f"loss_fn=..., batch=...)")
        corr = correction(updates, params, state.count, extra_args)
        factor = None
        if isinstance(corr, Scaled):
            # the factor as a runtime scalar (a constant coeff * 2 scale of IGR was folded
            # into the update's fusions: 1.07x the hand step at 1e5 parameters, 1.04x so)
            factor, corr = jax.lax.optimization_barrier(jnp.asarray(corr.factor)), corr.tree
        if guard:
            norm, finite = _norm_and_finite(corr)
            if factor is not None:
                norm = jnp.abs(factor) * norm
                finite = jnp.isfinite(norm)
            new = _add_correction(updates, corr, finite, factor)
            norm = jnp.where(finite, norm, 0.0).astype(state.correction_norm.dtype)
            skipped = state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32)
        else:   # no check: always added, counters other than count unchanged
            new = _add_correction(updates, corr, None, factor)
            norm, skipped = state.correction_norm, state.skipped
        return new, state_cls(count=optax.safe_int32_increment(state.count), skipped=skipped,
                              correction_norm=norm)

    update.bea_info = info  # type: ignore[attr-defined]
    return optax.GradientTransformationExtraArgs(init, update)

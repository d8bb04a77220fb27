r"""Optax transforms that strengthen, cancel or add the terms backward error analysis derives.

Every transform here is an :class:`optax.GradientTransformationExtraArgs`: ``init(params)``
gives a NamedTuple state, ``update(updates, state, params, **extra_args)`` returns the new
updates and state; all of them chain with :func:`optax.chain`, work under :func:`jax.jit`
and take any parameter pytree (dicts, tuples, equinox models, filtered or not).  Like
optax's line searches (``value_fn``), the extra inputs travel as keyword arguments of
``update``:

* ``loss_fn=``: the loss, ``loss_fn(params, batch) -> scalar`` (or ``loss_fn(params)``
  when no batch is passed); it may also be given once, to the constructor;
* ``batch=``: the batch the loss is evaluated on (the same one the gradient came from).

Convention: **the transforms act on gradients**.  They sit *before* the learning-rate
scaling, so ``updates`` entering them is ``grad L`` and what they add is in gradient
units::

    optax.chain(explicit_regularizer(term, coeff), optax.sgd(h))
        # theta <- theta - h (grad L + coeff * grad R)  : GD on  L + coeff * R

Corrections are additive (each transform adds its term to whatever updates arrive), so
several can be chained in any order before the optimiser; nonlinear gradient transforms
(clipping, Adam's scaling) belong after them.  Positive ``coeff`` strengthens a term,
negative cancels it.  Gradient descent with step
``h`` implicitly descends ``L + (h/4)|grad L|^2 + O(h^2)`` (``bea.modified_loss(gd(),
1)``), so with ``R = implicit_gradient_regularizer() = (1/4)|grad L|^2``, ``coeff = -h``
cancels the order-1 implicit regulariser and ``coeff = +h`` doubles it.

Transforms
----------
* :func:`explicit_regularizer`: adds ``coeff * grad R`` for a term ``R``: the Hessian-free
  :func:`implicit_gradient_regularizer`, a compiled modified loss's regulariser
  (``modified_loss(method, k).to_jax(loss)``, order 0 skipped; two-player games per
  player), or any ``R(params, batch) -> scalar``.
* :func:`drift_correction`: a *modifying integrator* (Chartier, Hairer, Vilmart 2007).
  The corrected gradient is ``-F`` where ``F = f + h f_1 + .. + h^p f_p`` (``f = -grad L``)
  is chosen so that the optimiser applied to ``F`` has the modified equation
  ``theta' = f + O(h^(p+1))``: the iterates then follow gradient flow with global error
  ``O(h^(p+1))`` instead of ``O(h)``.  The series of ``F`` is derived by the engine from the
  substitution law (:func:`modifying_equation`); for GD it is the Taylor series of the
  exact flow divided by ``h``, so the corrected gradient is::

      order 1:  grad L - (h/2) H grad L                                  (one HVP)
      order 2:  ... + (h^2/6) (D^3L[grad L, grad L] + H^2 grad L)
      order 3:  ... - (h^3/24) (D^4L[g,g,g] + 3 D^3L[g, Hg] + H D^3L[g,g] + H^3 g)

  (note the sign: GD drifts along ``-(h/2) H grad L``, which the correction removes).
* :func:`game_drift_regularizer`: per-player strengthening/cancelling of the self and
  interaction drift terms of two-player GD (Rosca et al., ICML 2021), with coefficients
  read off the engine's order-1 modified loss.

Robustness
----------
* A correction that is not finite (NaN/inf anywhere) is *not applied*: the updates pass
  through unchanged and ``state.skipped`` counts the skipped steps (``jnp.where``, so jit
  safe); ``state.correction_norm`` holds the norm of the last applied correction.
* Missing extra arguments raise a ``ValueError`` naming them.
* Every transform records the method its term was derived for
  (:func:`transform_info`).  Pass ``optimizer=`` (a ``bea`` method or ``"sgd"``) to a
  constructor, or build the optimiser with :func:`sgd` (which knows its momentum), and a
  mismatch (e.g. a plain-GD term chained with momentum) is reported by
  ``warnings.warn`` at construction.
* Parameters: only inexact array leaves are differentiated; other leaves (an equinox
  model's activation functions, integer buffers) are held fixed and get no correction,
  so ``params`` may be a whole equinox model or ``eqx.filter(model, eqx.is_array)``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import kernels

from .. import methods as M
from .. import series as S
from .. import trees as T

__all__ = [
    "DriftCorrectionState",
    "ExplicitRegularizerState",
    "GameDriftRegularizerState",
    "Term",
    "TransformInfo",
    "drift_correction",
    "explicit_regularizer",
    "game_drift_regularizer",
    "implicit_gradient_regularizer",
    "modified_loss_term",
    "modifying_equation",
    "modifying_series",
    "sgd",
    "transform_info",
]

PyTree = Any
Scalar = float | jax.Array
ScalarOrSchedule = float | Callable[[jax.Array], Scalar]

_GAME_TERMS = ("self_x", "interaction_x", "self_y", "interaction_y")


# ----------------------------------------------------------------------------- states


class ExplicitRegularizerState(NamedTuple):
    """``count``: updates so far; ``skipped``: updates whose correction was not finite
    (not applied); ``correction_norm``: 2-norm of the last applied correction (0 if
    skipped)."""

    count: jax.Array
    skipped: jax.Array
    correction_norm: jax.Array


class DriftCorrectionState(NamedTuple):
    """As :class:`ExplicitRegularizerState`."""

    count: jax.Array
    skipped: jax.Array
    correction_norm: jax.Array


class GameDriftRegularizerState(NamedTuple):
    """As :class:`ExplicitRegularizerState` (the norm is over both players)."""

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
    """The :class:`TransformInfo` of a transform built here (None for other transforms)."""
    return getattr(getattr(tx, "update", None), "bea_info", None)


# ----------------------------------------------------------------------------- helpers


def _is_param_leaf(x: Any) -> bool:
    """Leaves that are differentiated: inexact arrays (and Python floats)."""
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (float, complex)):
        return True
    return eqx.is_inexact_array(x)


def _split(params: PyTree) -> tuple[PyTree, PyTree]:
    return eqx.partition(params, _is_param_leaf)


def _value(x: ScalarOrSchedule, count: jax.Array) -> Scalar:
    return x(count) if callable(x) else x


def _check_scalar(x: Any, what: str, positive: bool = False) -> None:
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


def _arity(fn: Callable) -> tuple[int | None, float | None]:
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


_MISSING = object()


def _bind(fn: Callable, batch: Any, who: str, what: str = "loss_fn") -> Callable:
    """``params -> fn(params, batch)`` (or ``fn(params)`` if ``fn`` takes no batch);
    a clear error when the batch is needed but was not passed."""
    req, total = _arity(fn)
    if batch is _MISSING:
        if req is not None and req >= 2:
            raise ValueError(f"{who} needs `batch=` passed to update(...): its {what} takes "
                             f"(params, batch)")
        return fn
    if total is not None and total < 2:
        return fn
    return lambda p: fn(p, batch)


def _get_loss(extra: Mapping[str, Any], default: Callable | None, who: str,
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


def _add_correction(updates: PyTree, corr: PyTree, finite: jax.Array) -> PyTree:
    """``updates + corr`` where ``finite``, else ``updates``; ``corr`` has None on leaves
    that are not differentiated (they pass through)."""
    def add(c, u):
        if c is None or u is None:
            return u
        return jnp.where(finite, u + c, u).astype(jnp.result_type(u))

    try:
        return jax.tree.map(add, corr, updates, is_leaf=lambda x: x is None)
    except ValueError as e:
        raise ValueError(f"updates and params have different tree structures ({e}); pass "
                         f"the gradient pytree of the params given to update(...)") from e


def _finite(tree: PyTree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _float_dtype(params: PyTree):
    leaves = [x for x in jax.tree.leaves(eqx.filter(params, _is_param_leaf))]
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


def _warn_mismatch(who: str, method: Any, optimizer: Any, stacklevel: int = 3) -> None:
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


def _transform(name: str, state_cls: type, correction: Callable, info: TransformInfo
               ) -> optax.GradientTransformationExtraArgs:
    """Wrap ``correction(updates, params, count, extra) -> pytree`` (gradient units, None
    on undifferentiated leaves) as a transform with the finite check and counters."""

    def init(params: PyTree) -> NamedTuple:
        return state_cls(count=jnp.zeros([], jnp.int32), skipped=jnp.zeros([], jnp.int32),
                         correction_norm=jnp.zeros([], _float_dtype(params)))

    def update(updates: PyTree, state: NamedTuple, params: PyTree = None,
               **extra_args: Any) -> tuple[PyTree, NamedTuple]:
        if params is None:
            raise ValueError(f"{name} needs the params: call update(updates, state, params, "
                             f"loss_fn=..., batch=...)")
        corr = correction(updates, params, state.count, extra_args)
        finite = _finite(corr)
        new = _add_correction(updates, corr, finite)
        norm = kernels.tree_norm(eqx.filter(corr, lambda x: x is not None))
        norm = jnp.where(finite, norm, 0.0).astype(state.correction_norm.dtype)
        return new, state_cls(count=optax.safe_int32_increment(state.count),
                              skipped=state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32),
                              correction_norm=norm)

    update.bea_info = info  # type: ignore[attr-defined]
    return optax.GradientTransformationExtraArgs(init, update)


# ----------------------------------------------------------------------------- terms


class Term:
    """A scalar term ``R(params)`` to add to the loss, with its gradient.

    ``value(params, ctx)`` and ``gradient(diff, static, ctx)`` (the gradient with respect
    to the differentiated leaves ``diff``, ``params = eqx.combine(diff, static)``).
    ``ctx`` carries ``loss`` (``params -> scalar``, batch bound, or None), ``batch``
    (or the ``_MISSING`` marker), ``h`` and ``who``.  ``method`` is the ``bea`` method the
    term was derived for (None: no claim), ``needs_loss`` whether a ``loss_fn`` is needed.
    """

    name = "term"
    method: Any = None
    needs_loss = False

    def value(self, params: PyTree, ctx: _Ctx) -> jax.Array:
        raise NotImplementedError

    def gradient(self, diff: PyTree, static: PyTree, ctx: _Ctx) -> PyTree:
        return jax.grad(lambda d: self.value(eqx.combine(d, static), ctx))(diff)

    def __repr__(self) -> str:
        return f"<Term {self.name}>"


@dataclass
class _Ctx:
    loss: Callable | None
    batch: Any
    h: Any
    who: str


class _GradNormTerm(Term):
    """``scale |grad L|^2``; gradient ``2 scale H grad L`` as the reverse pass over the
    gradient's own computation (a vector-Jacobian product of ``grad L`` with ``grad L``:
    one Hessian-vector product, no Hessian).  Measured on a 1e6-parameter MLP (CPU) at
    2.1 gradients, against 3.3 for ``grad L`` followed by a forward-over-reverse HVP."""

    needs_loss = True

    def __init__(self, scale: float):
        self.scale = scale
        self.name = f"({scale:g}) |grad L|^2"
        self.method = M.gd() if scale == 0.25 else None

    def _on_diff(self, diff, static, ctx):
        g = jax.grad(lambda d: ctx.loss(eqx.combine(d, static)))(diff)
        return self.scale * kernels.tree_vdot(g, g)

    def value(self, params, ctx):
        return self._on_diff(*_split(params), ctx)

    def gradient(self, diff, static, ctx):
        return jax.grad(lambda d: self._on_diff(d, static, ctx))(diff)


def implicit_gradient_regularizer(scale: float = 0.25) -> Term:
    """``R = scale |grad L|^2``, by default ``(1/4)|grad L|^2``: the order-1 term of the
    modified loss of gradient descent (``L~ = L + h R + O(h^2)``).

    Its gradient ``2 scale H grad L`` is computed Hessian-free: one reverse pass over the
    computation of ``grad L`` (a Hessian-vector product; measured at about 1.5-2 gradient
    evaluations per step on top of the optimiser's own gradient, CPU MLPs of 1e5-1e6
    parameters, ``benchmarks/bench_optax.py``).  Use with
    :func:`explicit_regularizer`: ``coeff = -h`` cancels GD's order-1 implicit
    regularisation, ``+h`` doubles it.  Needs ``loss_fn`` (and ``batch`` if the loss takes
    one).
    """
    _check_scalar(scale, "scale")
    return _GradNormTerm(float(scale))


class _CallableTerm(Term):
    def __init__(self, fn: Callable, name: str | None, method: Any):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "term")
        self.method = method

    def value(self, params, ctx):
        out = _bind(self.fn, ctx.batch, ctx.who, "term")(params)
        if jnp.shape(out) != ():
            raise ValueError(f"{ctx.who}: the term must return a scalar, got shape "
                             f"{jnp.shape(out)}")
        return out


class _ModifiedLossTerm(Term):
    """The regulariser (orders >= 1) of a modified loss, evaluated at step size ``h``."""

    def __init__(self, ml: Any, loss_fn: Callable | None, orders: Sequence[int] | None,
                 subs: dict | None):
        from ..compile import CompiledModifiedLoss
        from ..modified_loss import ModifiedLoss

        if isinstance(ml, CompiledModifiedLoss):
            self.compiled, self.ml = ml, ml.ml
        elif isinstance(ml, ModifiedLoss):
            self.compiled, self.ml = None, ml
        else:
            raise TypeError(f"expected a ModifiedLoss or CompiledModifiedLoss, got {ml!r}")
        self.method = self.ml.method
        self.players = self.ml.players
        self.orders, self.subs = orders, subs
        self.needs_loss = self.compiled is None and loss_fn is None
        self._default_loss = loss_fn
        self._cache: dict[int, Any] = {}
        self.name = f"modified loss regulariser of {self.method.name} (order {self.ml.order})"

    def _compiled_for(self, loss_fn: Any) -> Any:
        if self.compiled is not None:
            return self.compiled
        got = self._cache.get(id(loss_fn))
        if got is None or got[0] is not loss_fn:
            got = (loss_fn, self.ml.to_jax(loss_fn, subs=self.subs, orders=self.orders))
            self._cache = {id(loss_fn): got}   # keep one: closures change between calls
        return got[1]

    def _batches(self, compiled: Any, batch: Any, who: str) -> Any:
        items = compiled.problem.items
        req, _ = _arity(items[0])
        if batch is _MISSING:
            if req is not None and req >= 2:
                raise ValueError(f"{who} needs `batch=` passed to update(...): the compiled "
                                 f"loss takes (params, batch)")
            return None
        nc = compiled.problem.ncolors
        if compiled.problem.players is not None or nc == 1:
            return (batch,) * nc
        if not isinstance(batch, (tuple, list)) or len(batch) != nc:
            raise ValueError(f"{who}: {self.method.name} has {nc} colors (batches): pass "
                             f"batch=(b_1, .., b_{nc})")
        return tuple(batch)

    def raw(self, params, ctx, player=None):
        compiled = self._compiled_for(ctx.loss)
        batches = self._batches(compiled, ctx.batch, ctx.who)
        return compiled.regularizer(params, ctx.h, batches, player=player)

    def value(self, params, ctx):
        if self.players is not None:
            raise ValueError("a game has one regulariser per player")
        return self.raw(params, ctx)

    def gradient(self, diff, static, ctx):
        if self.players is None:
            return super().gradient(diff, static, ctx)
        if not (isinstance(diff, (tuple, list)) and len(diff) == 2):
            raise ValueError(f"{ctx.who}: a two-player game needs params = (x, y)")
        blocks = []
        for p in range(2):
            g = jax.grad(lambda d, p=p: self.raw(eqx.combine(d, static), ctx, p))(diff)
            blocks.append(g[p])
        return type(diff)(blocks) if isinstance(diff, tuple) else blocks


def modified_loss_term(modified_loss: Any, *, loss_fn: Callable | None = None,
                       orders: Sequence[int] | None = None, subs: dict | None = None) -> Term:
    """The implicit regulariser ``L~ - L`` (orders >= 1, evaluated at the transform's
    ``learning_rate``) of a ``bea.ModifiedLoss`` or of its compiled form
    (``modified_loss(method, k).to_jax(loss)``).  An uncompiled one is compiled on the
    ``loss_fn`` (given here or to ``update``).  For two-player games each player's block
    gets the gradient of its own regulariser."""
    return _ModifiedLossTerm(modified_loss, loss_fn, orders, subs)


def _as_term(term: Any) -> Term:
    from ..compile import CompiledModifiedLoss
    from ..modified_loss import ModifiedLoss

    if isinstance(term, Term):
        return term
    if isinstance(term, (CompiledModifiedLoss, ModifiedLoss)):
        return _ModifiedLossTerm(term, None, None, None)
    if callable(term):
        return _CallableTerm(term, None, None)
    raise TypeError(f"term must be a bea.optax.Term, a (compiled) modified loss or a callable "
                    f"R(params, batch) -> scalar, got {term!r}")


# ----------------------------------------------------------------------------- explicit


def explicit_regularizer(term: Any, coeff: ScalarOrSchedule, *,
                         learning_rate: ScalarOrSchedule | None = None,
                         loss_fn: Callable | None = None, optimizer: Any = None,
                         name: str | None = None) -> optax.GradientTransformationExtraArgs:
    """Add ``coeff * grad R`` to the incoming gradients (see the module docstring for the
    convention): chained before ``optax.sgd(h)``, GD descends ``L + coeff * R``.

    Args:
      term: ``R``. :func:`implicit_gradient_regularizer` (``(1/4)|grad L|^2``), a
        (compiled) modified loss (its regulariser at step ``learning_rate``, order 0
        skipped; ``coeff = -1`` cancels it, ``+1`` doubles it), a :class:`Term`, or any
        callable ``R(params, batch) -> scalar`` (``R(params)`` without batches).
      coeff: number or schedule ``count -> number``; > 0 strengthens, < 0 cancels.
      learning_rate: the step size ``h`` a modified-loss term is evaluated at (number or
        schedule); required for those, ignored otherwise.
      loss_fn: default ``loss_fn(params, batch)``; ``update(..., loss_fn=)`` overrides it.
      optimizer: what the corrected gradients feed (a ``bea`` method or ``"sgd"``); a
        term derived for another method triggers a warning.
      name: label used in messages.

    ``update(updates, state, params, *, loss_fn=None, batch=None)``.
    """
    t = _as_term(term)
    who = name or "explicit_regularizer"
    _check_scalar(coeff, f"{who}: coeff")
    is_ml = isinstance(t, _ModifiedLossTerm)
    if is_ml and learning_rate is None:
        raise ValueError(f"{who}: a modified-loss term depends on the step size: pass "
                         f"learning_rate= (the h of the optimiser)")
    if learning_rate is not None:
        _check_scalar(learning_rate, f"{who}: learning_rate", positive=True)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"{who}: loss_fn must be callable")
    _warn_mismatch(f"{who}: the term {t.name}", t.method, optimizer)

    def correction(updates, params, count, extra):
        batch = extra.get("batch", _MISSING)
        loss = None
        if is_ml:   # compiled on the user's loss_fn itself (cached by identity)
            if t.compiled is None:
                loss = _get_loss(extra, t._default_loss or loss_fn, who)
        elif t.needs_loss:
            loss = _bind(_get_loss(extra, loss_fn, who), batch, who)
        h = _value(learning_rate, count) if learning_rate is not None else None
        ctx = _Ctx(loss, batch, h, who)
        diff, static = _split(params)
        g = t.gradient(diff, static, ctx)
        return kernels.tree_scale(_value(coeff, count), g)

    return _transform(who, ExplicitRegularizerState, correction,
                      TransformInfo(who, t.method, learning_rate))


# ----------------------------------------------------------------------------- drift


def modifying_series(method: M.Method, order: int) -> S.BSeries:
    """Field series ``b`` (``b(.) = 1``) of the modifying integrator of a one-field method.

    ``F = sum_t h^(|t|-1) b(t)/sigma(t) F_f(t)`` makes the method applied to ``F``
    reproduce the exact flow of ``c f`` up to ``O(h^(order+2))`` per step, ``c = a(.)``
    the method's order-0 coefficient (1 for GD and RK methods, ``1/(1-beta)`` for heavy
    ball): by the substitution law ``(b * a)(t) = c b(t) + (terms in b on smaller trees)
    = c^|t| / gamma(t)``, solved tree by tree.  So the method on ``F`` has the modified
    equation ``theta' = c f + O(h^(order+1))``.
    """
    M._check_order(order)
    if not isinstance(method, M.Method):
        raise TypeError(f"expected a bea method, got {method!r}")
    if method.ncolors != 1:
        raise ValueError(f"{method.name} acts on {method.ncolors} fields: a modifying "
                         f"integrator is derived here for one-field methods only")
    return _modifying_series(method, order)


@lru_cache(maxsize=32)
def _modifying_series(method: M.Method, order: int) -> S.BSeries:
    a = method.series(order + 1)
    dom = a.domain
    c = a[T.leaf(0)]
    if not c:
        raise ValueError(f"{method.name} has no order-0 term")
    b = S.BSeries(dom, 1, order + 1, dom.zero, {T.leaf(0): dom.one})
    for n in range(2, order + 2):
        s = S.substitute(b, a)      # b is still 0 on the trees of order n
        for t in T.trees_of_order(n, 1):
            v = (c ** n / dom.convert(T.gamma(t)) - s[t]) / c
            if v:
                b.coeffs[t] = v
    return b


def modifying_equation(method: M.Method | None = None, order: int = 1) -> Any:
    """The corrected field ``F = f + h f_1 + .. + h^order f_order`` of
    :func:`modifying_series` as a ``bea.ModifiedEquation`` (printing, LaTeX, exact
    ``evaluate`` on sympy losses, ``to_jax``).  For GD::

        f_1 = (1/2) H grad L
        f_2 = -(1/6) D^3L[grad L, grad L] - (1/6) H^2 grad L
    """
    from ..modified import ModifiedEquation

    class ModifyingEquation(ModifiedEquation):
        def __str__(self) -> str:
            head, _, rest = super().__str__().partition("\n")
            return (f"Modifying integrator of {self.method.name} to order {self.order} "
                    f"(run {self.method.name} on F = f_0 + h f_1 + ...; its modified "
                    f"equation is then theta' = f_0 + O(h^{self.order + 1})):\n{rest}")

        def __repr__(self) -> str:
            return f"<ModifyingEquation {self.method.name} order={self.order}>"

    method = M.gd() if method is None else method
    return ModifyingEquation(method, order, series=modifying_series(method, order))


class _Evaluator:
    """``sum_{k=1..p} h^k c_k`` in gradient units (``-`` the field's orders >= 1), from
    the gradient-path elementary differentials ``G`` over a DAG of the trees."""

    def __init__(self, method: M.Method, order: int):
        b = modifying_series(method, order)
        terms = []
        for t in T.trees_up_to(order + 1, 1):
            if T.order(t) < 2 or not b[t]:
                continue
            coef = b.domain.to_sympy(b[t]) / T.sigma(t)
            if not coef.is_number:
                raise ValueError(f"{method.name} has symbolic parameters "
                                 f"{sorted(map(str, coef.free_symbols))}: pass numbers, e.g. "
                                 f"heavy_ball(0.9)")
            # F(t) = (-1)^|t| G(t); the corrected gradient is -F
            terms.append((t, -float(coef) * (-1) ** T.order(t)))
        index: dict[int, int] = {}
        nodes: list[tuple[int, ...]] = []

        def add(t: int) -> int:
            if t in index:
                return index[t]
            kids = tuple(add(u) for u in T.children(t))
            index[t] = len(nodes)
            nodes.append(kids)
            return index[t]

        for t, _ in terms:
            add(t)
        self.nodes = nodes
        self.terms = [(index[t], T.order(t) - 1, c) for t, c in terms]
        # order 1: the only product is H grad L, one reverse pass over grad L (with grad L
        # as an auxiliary output) is cheapest; otherwise linearise grad L once and reuse it
        self._hg_only = all(len(k) == 0 or k == (0,) for k in nodes) and (
            nodes[:1] == [()]) and sum(len(k) == 1 for k in nodes) <= 1

    def __call__(self, loss: Callable, diff: PyTree, h: Any) -> PyTree:
        if self._hg_only:
            def half_sq(d):
                g = jax.grad(loss)(d)
                return 0.5 * kernels.tree_vdot(g, g), g

            hg, g = jax.grad(half_sq, has_aux=True)(diff)
            lin = lambda v: hg
        else:
            g, lin = jax.linearize(jax.grad(loss), diff)
        values: list[PyTree] = []
        for kids in self.nodes:
            if not kids:
                values.append(g)
            elif len(kids) == 1:
                values.append(lin(values[kids[0]]))       # H v
            else:                                         # D^(k+1) L[v_1..v_k, .]
                values.append(kernels.nested_jvp(jax.grad(loss), diff,
                                                 [values[c] for c in kids]))
        if not self.terms:
            return kernels.tree_zeros_like(diff)
        h = jnp.asarray(h, dtype=_float_dtype(diff))   # powers of h in the params' precision
        return kernels.linear_combination([c * h ** k for _, k, c in self.terms],
                                          [values[i] for i, _, _ in self.terms])


def drift_correction(method: M.Method | None = None, order: int = 1,
                     learning_rate: ScalarOrSchedule | None = None, *,
                     loss_fn: Callable | None = None, optimizer: Any = None,
                     name: str | None = None) -> optax.GradientTransformationExtraArgs:
    """Modifying-integrator correction: the optimiser then tracks gradient flow to
    ``O(h^(order+1))`` (global error), instead of ``O(h)``.

    Replaces the incoming gradient ``grad L`` by ``-F`` with ``F`` the field of
    :func:`modifying_equation` at ``h = learning_rate``; for GD, order 1 gives
    ``grad L - (h/2) H grad L`` (one Hessian-vector product), order 2 adds
    ``(h^2/6)(D^3L[grad L, grad L] + H^2 grad L)``.  Chain it before the optimiser of
    ``method`` with the *same* step size::

        optax.chain(drift_correction(gd(), 2, h), optax.sgd(h))

    ``method``: a one-field ``bea`` method run by the optimiser (default GD = ``optax.sgd``;
    ``heavy_ball(beta)`` = ``optax.sgd(h, momentum=beta)``, whose flow is then
    ``theta' = -grad L/(1-beta)``).  Momentum needs a *consistent* start: optax's zero
    initial momentum puts the iterates an ``O(h)`` distance off the underlying one-step
    method for good (measured: global error slope 1.2 instead of 2 at order 1); setting
    the trace to ``grad L(theta_0)/(1-beta)`` restores slope 2 at order 1 (higher orders
    need the previous iterate ``Phi_h^{-1}(theta_0)`` to higher accuracy, as in
    :func:`bea.verify`).  The transform adds
    ``-F - grad L`` (the orders >= 1, computed from ``loss_fn`` on ``batch``) to the
    incoming updates, which should be ``grad L`` on the same batch (other additive
    ``bea.optax`` corrections may precede it).
    ``update(updates, state, params, *, loss_fn, batch)``.
    """
    method = M.gd() if method is None else method
    who = name or f"drift_correction({method.name}, order={order})"
    if learning_rate is None:
        raise ValueError(f"{who}: pass learning_rate= (the step size h of the optimiser)")
    _check_scalar(learning_rate, f"{who}: learning_rate", positive=True)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"{who}: loss_fn must be callable")
    ev = _Evaluator(method, order)
    _warn_mismatch(who, method, optimizer)

    def correction(updates, params, count, extra):
        batch = extra.get("batch", _MISSING)
        loss = _bind(_get_loss(extra, loss_fn, who), batch, who)
        diff, static = _split(params)
        h = _value(learning_rate, count)
        return ev(lambda d: loss(eqx.combine(d, static)), diff, h)

    return _transform(who, DriftCorrectionState, correction,
                      TransformInfo(who, method, learning_rate))


# ----------------------------------------------------------------------------- games


def _game_method(method: Any, rates: Any) -> Any:
    import games

    if isinstance(method, M.Method):
        if getattr(method, "players", None) is None:
            raise ValueError(f"{method.name} is not a two-player method")
        if rates is not None:
            method = method.with_rates(tuple(rates))
        return method
    makers = {"simultaneous": games.simultaneous, "alternating": games.alternating}
    if method not in makers:
        raise ValueError(f"unknown game method {method!r}: use one of {sorted(makers)} or a "
                         f"games method object")
    if rates is None:
        raise ValueError("pass rates=(lr_x, lr_y): the players' learning rates")
    return makers[method](tuple(rates))


@lru_cache(maxsize=32)
def _game_coefficients(method: Any) -> dict[str, float]:
    from ..modified_loss import modified_loss

    ml = modified_loss(method, 1)
    out: dict[str, float] = {}
    for p, name in enumerate(("x", "y")):
        pot, rem = ml.potential(1, p), ml.remainder(1, p)
        other = 1 - p
        ok = (len(pot) <= 1 and len(rem) <= 1
              and all(T.key(x.tree) == (p, (T.leaf(p),)) for x in pot)
              and all(T.key(x.tree) == (p, (T.leaf(other),)) for x in rem))
        if not ok:
            raise ValueError(f"{method.name}: the order-1 modified loss is not of the form "
                             f"self + interaction; use explicit_regularizer with "
                             f"modified_loss_term instead")
        for key, items in (("self", pot), ("interaction", rem)):
            c = items[0].coefficient if items else 0
            c = c if not hasattr(c, "free_symbols") or not c.free_symbols else None
            if c is None:
                raise ValueError(f"{method.name} has symbolic rates: pass numbers")
            out[f"{key}_{name}"] = float(c)
    return out


def game_drift_regularizer(losses: Sequence[Callable] | None = None,
                           rates: Sequence[float] | None = None,
                           coeffs: Mapping[str, ScalarOrSchedule] | None = None, *,
                           method: Any = "simultaneous", optimizer: Any = None,
                           name: str | None = None) -> optax.GradientTransformationExtraArgs:
    """Strengthen or cancel the order-1 discretisation drift of two-player GD, per player
    and per term (Rosca et al., ICML 2021).

    ``params = (x, y)``, ``updates = (grad_x L_1, grad_y L_2)``; losses ``L_i(params,
    batch)`` (or ``L_i(params)``) on the joint params.  With learning rates ``rates =
    (lr_x, lr_y)`` (the actual step sizes, ``alpha h`` and ``lam h``) the engine's order-1
    modified losses of simultaneous GD are ``L_1 + self_x + interaction_x`` and ``L_2 +
    self_y + interaction_y``::

        self_x        = (lr_x/4) |grad_x L_1|^2
        interaction_x = (lr_y/2) <grad_y L_1, sg(grad_y L_2)>
        self_y        = (lr_y/4) |grad_y L_2|^2
        interaction_y = (lr_x/2) <grad_x L_2, sg(grad_x L_1)>

    (coefficients read from ``bea.modified_loss(method, 1)``; ``method="alternating"``
    gives its own).  The transform adds ``coeffs[k] * grad_p term_k`` to player p's
    gradient: ``-1`` cancels the term, ``+1`` doubles it; missing keys are 0.  Each
    player costs one ``jax.linearize`` of its gradient plus one Hessian-vector product.
    Chain it before per-player SGD, e.g. ``optax.multi_transform({"x": optax.sgd(lr_x),
    "y": optax.sgd(lr_y)}, ("x", "y"))``.
    ``update(updates, state, params, *, loss_fn=(L_1, L_2), batch=...)``.
    """
    who = name or "game_drift_regularizer"
    coeffs = dict(coeffs or {})
    unknown = set(coeffs) - set(_GAME_TERMS)
    if unknown:
        raise ValueError(f"{who}: unknown drift terms {sorted(unknown)}; use "
                         f"{list(_GAME_TERMS)}")
    for k, v in coeffs.items():
        _check_scalar(v, f"{who}: coeffs[{k!r}]")
    if rates is not None:
        if len(rates) != 2:
            raise ValueError(f"{who}: rates must be (lr_x, lr_y), got {rates!r}")
        for r in rates:
            _check_scalar(r, f"{who}: rate", positive=True)
        if any(callable(r) for r in rates):
            raise TypeError(f"{who}: rates must be numbers (the engine derives the "
                            f"coefficients from them); scale coeffs with a schedule instead")
    gm = _game_method(method, rates)
    base = _game_coefficients(gm)
    if losses is not None and (len(losses) != 2 or not all(callable(f) for f in losses)):
        raise ValueError(f"{who}: losses must be a pair (L_1, L_2) of callables")
    _warn_mismatch(who, gm, optimizer)

    def correction(updates, params, count, extra):
        fns = extra.get("loss_fn", None) or losses
        if fns is None:
            raise ValueError(f"{who} needs `loss_fn=(L_1, L_2)` passed to update(...) (and "
                             f"`batch=` if the losses take one), or losses= given to the "
                             f"constructor")
        if len(fns) != 2:
            raise ValueError(f"{who}: loss_fn must be a pair (L_1, L_2)")
        if not (isinstance(params, (tuple, list)) and len(params) == 2):
            raise ValueError(f"{who}: a two-player game needs params = (x, y)")
        batch = extra.get("batch", _MISSING)
        bound = [_bind(f, batch, who, "loss") for f in fns]
        diff, static = _split(params)
        c = {k: _value(coeffs.get(k, 0.0), count) * base[k] for k in _GAME_TERMS}
        lin = []
        for f in bound:
            lin.append(jax.linearize(jax.grad(lambda d, f=f: f(eqx.combine(d, static))), diff))
        (g1, lin1), (g2, lin2) = lin
        g1x, g2y = jax.lax.stop_gradient(g1[0]), jax.lax.stop_gradient(g2[1])
        pair = (lambda a, b: type(diff)((a, b))) if isinstance(diff, tuple) else (
            lambda a, b: [a, b])
        # grad_x self_x = 2 c H1_xx g1_x, grad_x interaction_x = c H1_xy sg(g2_y): one
        # tangent pass of player x's linearised gradient; the mirror for y
        out_x = lin1(pair(kernels.tree_scale(2.0 * c["self_x"], g1x),
                          kernels.tree_scale(c["interaction_x"], g2y)))[0]
        out_y = lin2(pair(kernels.tree_scale(c["interaction_y"], g1x),
                          kernels.tree_scale(2.0 * c["self_y"], g2y)))[1]
        out = [out_x, out_y]
        return type(params)(out) if isinstance(params, tuple) else out

    return _transform(who, GameDriftRegularizerState, correction,
                      TransformInfo(who, gm, tuple(rates) if rates is not None else None))


# ----------------------------------------------------------------------------- sgd


def sgd(learning_rate: ScalarOrSchedule, *transforms: Any, momentum: float | None = None,
        nesterov: bool = False) -> optax.GradientTransformationExtraArgs:
    """``optax.chain(*transforms, optax.sgd(learning_rate, momentum, nesterov))`` that
    checks the chained ``bea`` transforms: a term derived for another method than the
    optimiser (plain GD is ``bea.methods.gd()``, momentum ``heavy_ball(momentum)``,
    Nesterov ``nesterov(momentum)``) or a drift correction with another step size is
    reported with ``warnings.warn``."""
    if momentum is None or momentum == 0:
        opt_method = M.gd()
    else:
        opt_method = (M.nesterov if nesterov else M.heavy_ball)(momentum)
    for tx in transforms:
        info = transform_info(tx)
        if info is None:
            continue
        if isinstance(info.method, M.Method) and getattr(info.method, "players", None) is None:
            _warn_mismatch(info.name, info.method, opt_method, stacklevel=3)
        lr = info.learning_rate
        if (isinstance(lr, numbers.Real) and isinstance(learning_rate, numbers.Real)
                and not math.isclose(float(lr), float(learning_rate), rel_tol=1e-9)):
            warnings.warn(f"{info.name} assumes the step size {lr}, but the optimiser's "
                          f"learning rate is {learning_rate}", stacklevel=2)
        elif callable(lr) != callable(learning_rate) and lr is not None:
            warnings.warn(f"{info.name}: one of its learning rate and the optimiser's is a "
                          f"schedule and the other is not; pass the same to both",
                          stacklevel=2)
    return optax.chain(*transforms, optax.sgd(learning_rate, momentum=momentum,
                                              nesterov=nesterov))

from .eos import LossMinError, normalized_gd, sqrt_loss  # noqa: E402  (edge-of-stability lab)

__all__ += ["LossMinError", "normalized_gd", "sqrt_loss"]

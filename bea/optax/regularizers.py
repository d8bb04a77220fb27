"""Terms added to the loss: ``explicit_regularizer(term, coeff)`` adds ``coeff * grad R``.

``R`` is a :class:`Term`: the Hessian-free :func:`implicit_gradient_regularizer`
(``(1/4)|grad L|^2``, GD's order-1 implicit regulariser), the regulariser of a derived
:class:`bea.ModifiedLoss` (or of its compiled form, :func:`modified_loss_term`), or any
callable ``R(params, batch) -> scalar``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import kernels

from .. import methods as M
from ..compile import CompiledModifiedLoss, check_ad_mode
from ..modified_loss import ModifiedLoss
from .transform import (
    MISSING,
    PyTree,
    ScalarOrSchedule,
    Scaled,
    TransformInfo,
    bind_batch,
    check_scalar,
    get_loss,
    make_transform,
    positional_arity,
    schedule_value,
    split_params,
    warn_mismatch,
)

__all__ = ["Context", "Term", "explicit_regularizer", "implicit_gradient_regularizer",
           "modified_loss_term"]


# ----------------------------------------------------------------------------- terms


class Term:
    """A scalar term ``R(params)`` to add to the loss, with its gradient.

    ``value(params, ctx)`` and ``gradient(diff, static, ctx)`` (the gradient with respect
    to the differentiated leaves ``diff``, ``params = eqx.combine(diff, static)``).
    ``ctx`` carries ``loss`` (``params -> scalar``, batch bound, or None), ``batch``
    (or the ``MISSING`` marker), ``h`` and ``who``.  ``method`` is the ``bea`` method the
    term was derived for (None: no claim), ``needs_loss`` whether a ``loss_fn`` is needed.
    """

    name = "term"
    method: Any = None
    needs_loss = False

    def value(self, params: PyTree, ctx: Context) -> jax.Array:
        raise NotImplementedError

    def gradient(self, diff: PyTree, static: PyTree, ctx: Context) -> PyTree:
        return jax.grad(lambda d: self.value(eqx.combine(d, static), ctx))(diff)

    def scaled_gradient(self, diff: PyTree, static: PyTree, ctx: Context) -> Scaled:
        """The gradient as ``Scaled(factor, tree)`` (``factor * tree``), for terms whose
        gradient ends in a multiply by a number: :func:`explicit_regularizer` merges that
        number with its ``coeff`` into the one multiply of the update (see
        :class:`bea.optax.transform.Scaled`).  Default: ``Scaled(1.0, gradient(..))``."""
        return Scaled(1.0, self.gradient(diff, static, ctx))

    def __repr__(self) -> str:
        return f"<Term {self.name}>"


@dataclass
class Context:
    loss: Callable | None
    batch: Any
    h: Any
    who: str


class GradNormTerm(Term):
    """``scale |grad L|^2``; gradient ``2 scale H g`` (``g = grad L``) as one
    Hessian-vector product ``grad_theta (D L[g])`` (reverse over one forward pass, ``g``
    held constant: the node evaluation the compiled fields use for arity 1).  The
    optimiser's own ``grad L`` and the one computed here are the same computation, which
    XLA merges inside the jitted step.  Measured against the hand-written step
    ``g - (h/2) H g`` (benchmarks/bench_transforms.py): the reverse pass over the
    computation of ``|grad L|^2`` used before cost 1.8x that step on a small float64 net."""

    needs_loss = True

    def __init__(self, scale: float):
        self.scale = scale
        self.name = f"({scale:g}) |grad L|^2"
        self.method = M.gd() if scale == 0.25 else None

    def _on_diff(self, diff, static, ctx):
        g = jax.grad(lambda d: ctx.loss(eqx.combine(d, static)))(diff)
        return self.scale * kernels.tree_vdot(g, g)

    def value(self, params, ctx):
        return self._on_diff(*split_params(params), ctx)

    def _hessian_gradient(self, diff, static, ctx):
        on_diff = lambda d: ctx.loss(eqx.combine(d, static))
        g = jax.grad(on_diff)(diff)
        return kernels.gradient_elementary_differential(on_diff, diff, [g],
                                                        mode="reverse-over-forward")

    def gradient(self, diff, static, ctx):
        return kernels.tree_scale(2.0 * self.scale, self._hessian_gradient(diff, static, ctx))

    def scaled_gradient(self, diff, static, ctx):
        return Scaled(2.0 * self.scale, self._hessian_gradient(diff, static, ctx))


def implicit_gradient_regularizer(scale: float = 0.25) -> Term:
    """``R = scale |grad L|^2``, by default ``(1/4)|grad L|^2``: the order-1 term of the
    modified loss of gradient descent (``L~ = L + h R + O(h^2)``).

    Its gradient ``2 scale H grad L`` is computed Hessian-free: one Hessian-vector
    product on top of the optimiser's own gradient (which it shares inside a jitted step;
    per-step costs in ``benchmarks/bench_optax.py`` and, against a hand-written step,
    ``benchmarks/bench_transforms.py``).  Use with
    :func:`explicit_regularizer`: ``coeff = -h`` cancels GD's order-1 implicit
    regularisation, ``+h`` doubles it.  Needs ``loss_fn`` (and ``batch`` if the loss takes
    one).
    """
    check_scalar(scale, "scale")
    return GradNormTerm(float(scale))


class CallableTerm(Term):
    def __init__(self, fn: Callable, name: str | None, method: Any):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "term")
        self.method = method

    def value(self, params, ctx):
        out = bind_batch(self.fn, ctx.batch, ctx.who, "term")(params)
        if jnp.shape(out) != ():
            raise ValueError(f"{ctx.who}: the term must return a scalar, got shape "
                             f"{jnp.shape(out)}")
        return out


class ModifiedLossTerm(Term):
    """The regulariser (orders >= 1) of a modified loss, evaluated at step size ``h``."""

    def __init__(self, ml: Any, loss_fn: Callable | None, orders: Sequence[int] | None,
                 subs: dict | None, ad_mode: str | tuple[str, str] = "by-arity"):
        if isinstance(ml, CompiledModifiedLoss):
            self.compiled, self.ml = ml, ml.ml
        elif isinstance(ml, ModifiedLoss):
            self.compiled, self.ml = None, ml
        else:
            raise TypeError(f"expected a ModifiedLoss or CompiledModifiedLoss, got {ml!r}")
        self.method = self.ml.method
        self.players = self.ml.players
        self.orders, self.subs = orders, subs
        self.ad_mode = check_ad_mode(ad_mode, "modified_loss_term")
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
        req, _ = positional_arity(items[0])
        if batch is MISSING:
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
        if self.players is None:   # -grad L~ is the modified field: no reverse pass needed
            compiled = self._compiled_for(ctx.loss)
            batches = self._batches(compiled, ctx.batch, ctx.who)
            return compiled.regularizer_gradient(diff, ctx.h, batches, static=static,
                                                 ad_mode=self.ad_mode)
        if not (isinstance(diff, (tuple, list)) and len(diff) == 2):
            raise ValueError(f"{ctx.who}: a two-player game needs params = (x, y)")
        blocks = []
        for p in range(2):
            g = jax.grad(lambda d, p=p: self.raw(eqx.combine(d, static), ctx, p))(diff)
            blocks.append(g[p])
        return type(diff)(blocks) if isinstance(diff, tuple) else blocks


def modified_loss_term(modified_loss: Any, *, loss_fn: Callable | None = None,
                       orders: Sequence[int] | None = None, subs: dict | None = None,
                       ad_mode: str | tuple[str, str] = "by-arity") -> Term:
    """The implicit regulariser ``L~ - L`` (orders >= 1, evaluated at the transform's
    ``learning_rate``) of a ``bea.ModifiedLoss`` or of its compiled form
    (``modified_loss(method, k).to_jax(loss)``).  An uncompiled one is compiled on the
    ``loss_fn`` (given here or to ``update``).  For two-player games each player's block
    gets the gradient of its own regulariser.  ``ad_mode``: how its gradient's derivative
    nodes are differentiated (``"by-arity"``, ``"forward-over-reverse"``,
    ``"reverse-over-forward"`` or a pair for nodes with <= 1 / >= 2 tangents; same value,
    the cost depends on the model: ``benchmarks/bench_transforms.py``)."""
    return ModifiedLossTerm(modified_loss, loss_fn, orders, subs, ad_mode)


def as_term(term: Any) -> Term:
    if isinstance(term, Term):
        return term
    if isinstance(term, (CompiledModifiedLoss, ModifiedLoss)):
        return ModifiedLossTerm(term, None, None, None)
    if callable(term):
        return CallableTerm(term, None, None)
    raise TypeError(f"term must be a bea.optax.Term, a (compiled) modified loss or a callable "
                    f"R(params, batch) -> scalar, got {term!r}")


# ----------------------------------------------------------------------------- explicit


def explicit_regularizer(term: Any, coeff: ScalarOrSchedule, *,
                         learning_rate: ScalarOrSchedule | None = None,
                         loss_fn: Callable | None = None, optimizer: Any = None,
                         name: str | None = None, guard: bool = True
                         ) -> optax.GradientTransformationExtraArgs:
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
      guard: skip a non-finite ``coeff * grad R`` (default; counted in ``state.skipped``);
        ``False`` adds it unchecked, one reduction over the parameters less per step.

    ``update(updates, state, params, *, loss_fn=None, batch=None)``.
    """
    t = as_term(term)
    who = name or "explicit_regularizer"
    check_scalar(coeff, f"{who}: coeff")
    is_ml = isinstance(t, ModifiedLossTerm)
    if is_ml and learning_rate is None:
        raise ValueError(f"{who}: a modified-loss term depends on the step size: pass "
                         f"learning_rate= (the h of the optimiser)")
    if learning_rate is not None:
        check_scalar(learning_rate, f"{who}: learning_rate", positive=True)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"{who}: loss_fn must be callable")
    warn_mismatch(f"{who}: the term {t.name}", t.method, optimizer)

    def correction(updates, params, count, extra):
        batch = extra.get("batch", MISSING)
        loss = None
        if is_ml:   # compiled on the user's loss_fn itself (cached by identity)
            if t.compiled is None:
                loss = get_loss(extra, t._default_loss or loss_fn, who)
        elif t.needs_loss:
            loss = bind_batch(get_loss(extra, loss_fn, who), batch, who)
        h = schedule_value(learning_rate, count) if learning_rate is not None else None
        ctx = Context(loss, batch, h, who)
        diff, static = split_params(params)
        g = t.scaled_gradient(diff, static, ctx)   # coeff * g, multiplied in the update
        return Scaled(schedule_value(coeff, count) * g.factor, g.tree)

    return make_transform(who, correction, TransformInfo(who, t.method, learning_rate),
                          guard=guard)

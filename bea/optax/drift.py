"""``drift_correction``: run the optimiser on a modifying integrator's field.

The field ``F = f + h f_1 + .. + h^p f_p`` of :func:`bea.modifying_equation` (Chartier,
Hairer, Vilmart 2007) makes the optimiser's own modified equation ``theta' = f +
O(h^(p+1))``; the transform replaces ``grad L`` by ``-F``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .. import methods as M
from ..compile import TreeSums, check_ad_mode, equation_sums
from ..modified import modifying_equation
from .transform import (
    MISSING,
    ScalarOrSchedule,
    TransformInfo,
    bind_batch,
    check_scalar,
    float_dtype,
    get_loss,
    make_transform,
    schedule_value,
    split_params,
    warn_mismatch,
)

__all__ = ["drift_correction"]


def _corrections(method: M.Method, order: int) -> TreeSums:
    """``sum_{k=1..order} h^k f_k`` of the modifying integrator's field (``-`` of what the
    transform adds, in gradient units), through the compiled objects' one evaluator."""
    if method.parameters:
        names = ", ".join(sorted(map(str, method.parameters)))
        raise ValueError(f"{method.name} has symbolic parameters ({names}): pass numbers, "
                         f"e.g. heavy_ball(0.9)")
    return equation_sums(modifying_equation(method, order), range(1, order + 1))


def drift_correction(method: M.Method | None = None, order: int = 1,
                     learning_rate: ScalarOrSchedule | None = None, *,
                     loss_fn: Callable | None = None, optimizer: Any = None,
                     name: str | None = None, ad_mode: str | tuple[str, str] = "by-arity",
                     guard: bool = True) -> optax.GradientTransformationExtraArgs:
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

    ``ad_mode``: how each derivative node is differentiated (``"by-arity"``: reverse-over-
    forward for one tangent, forward-over-reverse for more; ``"forward-over-reverse"``,
    ``"reverse-over-forward"``, or a pair for nodes with <= 1 / >= 2 tangents).  Same
    value every way; which is fastest depends on the model, its size and the order (on
    the MLPs of ``benchmarks/bench_transforms.py``, 2 CPU cores: forward-over-reverse
    everywhere for order 2 at 1e5 and 1e6 parameters, 0.95x and 0.71x the default's
    time; for order 3 forward-over-reverse at 1e5, reverse-over-forward at 1e6);
    :func:`bea.optax.tune_ad_mode` picks one by timing the step on your problem.

    ``guard``: skip a correction that is not finite (default; ``state.skipped`` counts
    them); ``False`` adds it unchecked, saving one reduction over the parameters per step
    (:func:`bea.optax.transform.make_transform`).
    """
    method = M.gd() if method is None else method
    who = name or f"drift_correction({method.name}, order={order})"
    if learning_rate is None:
        raise ValueError(f"{who}: pass learning_rate= (the step size h of the optimiser)")
    check_scalar(learning_rate, f"{who}: learning_rate", positive=True)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"{who}: loss_fn must be callable")
    mode = check_ad_mode(ad_mode, who)
    sums = _corrections(method, order)
    warn_mismatch(who, method, optimizer)

    def correction(updates, params, count, extra):
        batch = extra.get("batch", MISSING)
        loss = bind_batch(get_loss(extra, loss_fn, who), batch, who)
        diff, static = split_params(params)
        h = jnp.asarray(schedule_value(learning_rate, count), dtype=float_dtype(diff))
        on_diff = lambda d: loss(eqx.combine(d, static))
        # corrected gradient -F = grad L - sum_k h^k f_k: add minus the orders >= 1
        # a negation, not a multiply by -1.0: with the multiply XLA (CPU) fused the last
        # linear combination into both readers of the correction (the guard's norm and the
        # update), recomputing it and materialising a transposed copy: 1.10x the
        # hand-written step at 1e5 parameters against 0.98-1.00x (with h opaque, see
        # bea.factorise.Plan.evaluate; issue 20)
        return jax.tree.map(jnp.negative, sums.factorised_total(diff, h, losses=[on_diff],
                                                                ad_mode=mode))

    return make_transform(who, correction, TransformInfo(who, method, learning_rate),
                          guard=guard)


# ----------------------------------------------------------------------------- games

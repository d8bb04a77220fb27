"""``tune_ad_mode``: choose how a transform's derivative nodes are differentiated, by timing.

A node ``grad D^k L[v_1..v_k]`` can be differentiated forward-over-reverse (``jvp`` of
``grad``) or reverse-over-forward (``grad`` of ``jvp``): the same value, a different cost,
and which is cheaper depends on the model, its size and the device (on the MLPs of
``benchmarks/bench_transforms.py`` forward-over-reverse everywhere was fastest for order-2
transforms and reverse-over-forward HVPs for order 1, on a 2-core CPU).  Timing the step
on the user's own problem settles it, as :meth:`bea.compile.CompiledModifiedEquation.
tune_ad_mode` does for compiled fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from ..timing import AD_MODE_PAIRS, fastest_by_rounds
from .transform import MISSING, PyTree, bind_batch

__all__ = ["tune_ad_mode"]


def tune_ad_mode(build: Callable[[Any], optax.GradientTransformation], params: PyTree, *,
                 loss_fn: Callable, batch: Any = MISSING, repeats: int = 5, rounds: int = 3
                 ) -> tuple[tuple[str, str], dict[tuple[str, str], float]]:
    """The fastest ``ad_mode`` for a transform on this problem, and every candidate's time.

    ``build(ad_mode) -> transform``, e.g. ``lambda m: drift_correction(gd(), 2, h,
    ad_mode=m)`` or ``lambda m: explicit_regularizer(modified_loss_term(ml, ad_mode=m), -1,
    learning_rate=h)``.  Each of the four pairs (mode for nodes with <= 1 tangent, mode
    for >= 2; the first is the default ``"by-arity"``) is built and one jitted step
    (``grad L`` on ``batch``, then ``update(grad, state, params, loss_fn=, batch=)``) is
    compiled and timed in alternating rounds (:func:`bea.timing.fastest_by_rounds`).
    Returns ``(pair, {pair: seconds per step})``; build the transform you train with as
    ``build(pair)``.  Four compilations: worth it before a long run, not per step::

        mode, times = bea.optax.tune_ad_mode(
            lambda m: drift_correction(gd(), 2, h, ad_mode=m), params,
            loss_fn=loss, batch=batch)
        tx = optax.chain(drift_correction(gd(), 2, h, ad_mode=mode), optax.sgd(h))
    """
    if not callable(build):
        raise TypeError(f"tune_ad_mode: build must be a function ad_mode -> transform, got "
                        f"{type(build).__name__}")
    if not callable(loss_fn):
        raise TypeError("tune_ad_mode: loss_fn must be callable (params, batch) -> scalar")
    value = bind_batch(loss_fn, batch, "tune_ad_mode")
    extra = {"loss_fn": loss_fn} | ({} if batch is MISSING else {"batch": batch})
    fns = {}
    for pair in AD_MODE_PAIRS:
        try:
            tx = build(pair)
        except TypeError as e:
            raise TypeError(f"tune_ad_mode: build(ad_mode) failed for ad_mode={pair!r} "
                            f"({e}); pass a function that forwards ad_mode to a transform "
                            f"that takes it (drift_correction, modified_loss_term)") from e
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"tune_ad_mode: build(ad_mode) must return an optax "
                            f"transform, got {type(tx).__name__}")
        state = tx.init(params)

        @jax.jit
        def step(p: PyTree, s: Any, tx: Any = tx) -> PyTree:
            return tx.update(jax.grad(value)(p), s, p, **extra)[0]

        fns[pair] = lambda step=step, state=state: step(params, state)
    times = fastest_by_rounds(fns, repeats, rounds)
    return min(times, key=times.get), times

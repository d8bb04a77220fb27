"""Optax transform for two-player games: the discretisation drift of GD, per player.

:func:`game_drift_regularizer` strengthens or cancels the order-1 drift terms (self and
interaction, Rosca et al., ICML 2021) with coefficients read off ``bea``'s order-1
modified loss of the game method.  Built from the shared pieces of
:mod:`bea.optax.transform`; lives here because it is game-specific (``bea`` never imports
``games``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import equinox as eqx
import jax
import optax

import kernels
from bea import trees as T
from bea.methods import Method
from bea.modified_loss import modified_loss
from bea.optax.transform import (
    MISSING,
    CorrectionState,
    ScalarOrSchedule,
    TransformInfo,
    bind_batch,
    check_scalar,
    make_transform,
    schedule_value,
    split_params,
    warn_mismatch,
)

from . import methods as GM

__all__ = ["GAME_TERMS", "GameDriftRegularizerState", "game_drift_regularizer"]

#: the drift terms of each player, the keys of ``coeffs``
GAME_TERMS = ("self_x", "interaction_x", "self_y", "interaction_y")

#: the state of :func:`game_drift_regularizer` (the norm is over both players)
GameDriftRegularizerState = CorrectionState


def _game_method(method: Any, rates: Any) -> Any:
    if isinstance(method, Method):
        if getattr(method, "players", None) is None:
            raise ValueError(f"{method.name} is not a two-player method")
        if rates is not None:
            method = method.with_rates(tuple(rates))
        return method
    if method not in ("simultaneous", "alternating"):
        raise ValueError(f"unknown game method {method!r}: use 'simultaneous', "
                         f"'alternating' or a games method object")
    if rates is None:
        raise ValueError("pass rates=(lr_x, lr_y): the players' learning rates")
    return GM.get(method, tuple(rates))


@lru_cache(maxsize=32)
def _game_coefficients(method: Any) -> dict[str, float]:
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
                           name: str | None = None, guard: bool = True
                           ) -> optax.GradientTransformationExtraArgs:
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
    "y": optax.sgd(lr_y)}, ("x", "y"))``.  ``guard=False`` adds the correction without
    the finite check (``bea.optax.transform.make_transform``).
    ``update(updates, state, params, *, loss_fn=(L_1, L_2), batch=...)``.
    """
    who = name or "game_drift_regularizer"
    coeffs = dict(coeffs or {})
    unknown = set(coeffs) - set(GAME_TERMS)
    if unknown:
        raise ValueError(f"{who}: unknown drift terms {sorted(unknown)}; use "
                         f"{list(GAME_TERMS)}")
    for k, v in coeffs.items():
        check_scalar(v, f"{who}: coeffs[{k!r}]")
    if rates is not None:
        if len(rates) != 2:
            raise ValueError(f"{who}: rates must be (lr_x, lr_y), got {rates!r}")
        for r in rates:
            check_scalar(r, f"{who}: rate", positive=True)
        if any(callable(r) for r in rates):
            raise TypeError(f"{who}: rates must be numbers (the engine derives the "
                            f"coefficients from them); scale coeffs with a schedule instead")
    gm = _game_method(method, rates)
    base = _game_coefficients(gm)
    if losses is not None and (len(losses) != 2 or not all(callable(f) for f in losses)):
        raise ValueError(f"{who}: losses must be a pair (L_1, L_2) of callables")
    warn_mismatch(who, gm, optimizer)

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
        batch = extra.get("batch", MISSING)
        bound = [bind_batch(f, batch, who, "loss") for f in fns]
        diff, static = split_params(params)
        c = {k: schedule_value(coeffs.get(k, 0.0), count) * base[k] for k in GAME_TERMS}
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

    return make_transform(who, correction,
                          TransformInfo(who, gm, tuple(rates) if rates is not None else None),
                          guard=guard)

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
  ``O(h^(p+1))`` instead of ``O(h)``.  The series of ``F`` is derived by the engine from
  the substitution law (:func:`bea.modifying_equation`, re-exported here); for GD it is
  the Taylor series of the exact flow divided by ``h``, so the corrected gradient is::

      order 1:  grad L - (h/2) H grad L                                  (one HVP)
      order 2:  ... + (h^2/6) (D^3L[grad L, grad L] + H^2 grad L)
      order 3:  ... - (h^3/24) (D^4L[g,g,g] + 3 D^3L[g, Hg] + H D^3L[g,g] + H^3 g)

  (note the sign: GD drifts along ``-(h/2) H grad L``, which the correction removes).
* :func:`numeric_drift_correction` (:func:`numeric_correction` for the pieces): the same
  idea for any elementwise optax optimiser (momentum, Adam, RMSProp), from its *numeric*
  modified field (:func:`bea.numeric_modified_equation`): the gradient fed to the optimiser
  becomes ``G_h = g + h c_1 + .. + h^p c_p`` with ``c_k = -(d f_0/d g)^(-1) r_k``, so that it
  follows its own leading-order flow ``x' = f_0(x)`` (Adam: ``-g/(|g|+eps)``) with global
  error ``O(h^(p+1))``; measured on Adam (eps 0.5), order 1: slope 1.92 vs 0.92 uncorrected.
* :func:`tune_ad_mode`: times a transform's step with each way of differentiating its
  derivative nodes (``ad_mode=`` of :func:`drift_correction` and
  :func:`modified_loss_term`) on your problem and returns the fastest.
* ``games.optax.game_drift_regularizer`` (in ``games``, which builds on these pieces):
  per-player strengthening/cancelling of the self and interaction drift terms of
  two-player GD (Rosca et al., ICML 2021).

Robustness
----------
* A correction that is not finite (NaN/inf anywhere, or a norm that overflows) is *not
  applied* (one reduction decides: the norm, which is recorded anyway): the updates pass
  through unchanged and ``state.skipped`` counts the skipped steps (``jnp.where``, so jit
  safe); ``state.correction_norm`` holds the norm of the last applied correction.
  ``guard=False`` (every constructor) leaves that check out: one reduction over the
  parameters less per step (~10% of a step on a 3e4-parameter net, ~1% from 1e5 on), and
  a NaN correction then reaches the parameters.
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
# One module per idea: the shared transform machinery (transform), terms added to the loss
# (regularizers), the modifying-integrator correction (drift), the checked sgd (sgd).  The
# modifying integrator itself is part of the engine (bea.modified), re-exported here.
from ..modified import ModifyingEquation, modifying_equation, modifying_series
from .drift import drift_correction
from .numeric_drift import (
    CorrectionNotElementwiseError,
    CorrectionNotInvertibleError,
    NumericCorrection,
    numeric_correction,
    numeric_drift_correction,
)
from .regularizers import (
    Term,
    explicit_regularizer,
    implicit_gradient_regularizer,
    modified_loss_term,
)
from .sgd import sgd
from .transform import CorrectionState, TransformInfo, transform_info
from .tune import tune_ad_mode

#: the state of every transform here (one NamedTuple: count, skipped, correction_norm)
ExplicitRegularizerState = DriftCorrectionState = CorrectionState

__all__ = [
    "CorrectionNotElementwiseError",
    "CorrectionNotInvertibleError",
    "CorrectionState",
    "DriftCorrectionState",
    "ExplicitRegularizerState",
    "ModifyingEquation",
    "Term",
    "TransformInfo",
    "drift_correction",
    "explicit_regularizer",
    "implicit_gradient_regularizer",
    "modified_loss_term",
    "modifying_equation",
    "modifying_series",
    "NumericCorrection",
    "numeric_correction",
    "numeric_drift_correction",
    "sgd",
    "transform_info",
    "tune_ad_mode",
]

# ----------------------------------------------------------------------------- labs
# Lab transforms live in bea/optax/<topic>.py.  Each lab appends, below this line, one
# import line and one `__all__ +=` line, e.g.
#     from .eos import sharpness_aware   # noqa: E402
#     __all__ += ["sharpness_aware"]

from .steepest import (  # noqa: E402
    SteepestDescentState,
    UnknownNormError,
    coordinate_descent,
    norm_exponent,
    sign_descent,
    steepest_descent,
)

__all__ += ["SteepestDescentState", "UnknownNormError", "coordinate_descent",
            "norm_exponent", "sign_descent", "steepest_descent"]

from .manifold import NoiseInjectionState, noise_injection  # noqa: E402

__all__ += ["NoiseInjectionState", "noise_injection"]

from .sde import AmplificationError, SVAGState, svag, svag_weights  # noqa: E402

__all__ += ["AmplificationError", "SVAGState", "svag", "svag_weights"]

from .eos import LossMinError, normalized_gd, sqrt_loss  # noqa: E402  (edge-of-stability lab)

__all__ += ["LossMinError", "normalized_gd", "sqrt_loss"]

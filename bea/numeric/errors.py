"""Named errors of :mod:`bea.numeric`, each saying what went wrong and what to do."""

from __future__ import annotations

__all__ = ["NumericBEAError", "NotAnOptimizerError", "LearningRateError",
           "StateNotContractingError", "StateNotElementwiseError", "StateJumpError",
           "NonSmoothUpdateError", "NonFiniteInputError"]


class NumericBEAError(ValueError):
    """Base class: the numeric modified equation cannot be computed for this input."""


class NotAnOptimizerError(TypeError):
    """The optimiser is neither an optax ``GradientTransformation`` nor a factory
    ``h -> GradientTransformation``."""


class LearningRateError(NumericBEAError):
    """The step size ``h`` cannot be identified (no ``learning_rate`` for a ready-made
    transformation, a zero or non-finite rate, a schedule without ``count``)."""


class StateNotContractingError(NumericBEAError):
    """``mode="slaved"`` needs a contracting state map at ``h = 0`` (rate < 1); an
    accumulator (rate 1) or a growing state has no invariant manifold."""


class StateNotElementwiseError(NumericBEAError):
    """``mode="slaved"`` solves ``(I - d_s S) sigma = b`` elementwise; the state map
    couples state entries."""


class StateJumpError(NumericBEAError):
    """``mode="full"`` needs a joint map that is the identity at ``h = 0``; with fixed
    momentum/decay parameters the state jumps by ``O(1)`` per step."""


class NonSmoothUpdateError(NumericBEAError):
    """The update is not smooth where it is evaluated (``sign``, rounding, ``sqrt`` at 0),
    so its Taylor expansion in ``h`` does not describe the iterates."""


class NonFiniteInputError(NumericBEAError):
    """NaN or infinite parameters, state or learning rate."""

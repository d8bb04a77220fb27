"""Numeric backward error analysis of any optax optimiser (Adam, RMSProp, momentum, ...).

:func:`numeric_modified_equation` returns the modified field ``f_0 + h f_1 + ..`` of an
optax optimiser at a point, by Taylor mode in the learning rate ``h`` (nested jvp), with
the optimiser's state slaved to the parameters on its invariant manifold
(``mode="slaved"``) or carried along (``mode="full"``).  Maths in
:mod:`bea.numeric.equation`; step-size conventions in :mod:`bea.numeric.maps`.
"""

from .equation import MODES, NumericModifiedEquation, numeric_modified_equation
from .errors import (
    LearningRateError,
    NonFiniteInputError,
    NonSmoothUpdateError,
    NotAnOptimizerError,
    NumericBEAError,
    StateJumpError,
    StateNotContractingError,
    StateNotElementwiseError,
)
from .maps import ASYMPTOTIC_COUNT, NON_SMOOTH_PRIMITIVES

__all__ = ["numeric_modified_equation", "NumericModifiedEquation", "MODES",
           "ASYMPTOTIC_COUNT", "NON_SMOOTH_PRIMITIVES", "NumericBEAError",
           "NotAnOptimizerError", "LearningRateError", "StateNotContractingError",
           "StateNotElementwiseError", "StateJumpError", "NonSmoothUpdateError",
           "NonFiniteInputError"]

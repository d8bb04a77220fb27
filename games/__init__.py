"""Two-player games: update rules, modified flows and losses per player, drift analysis.

Built on ``bea`` (symbolic engine) and ``kernels`` (JAX primitives).
"""

from . import drift, methods
from .drift import modified_equation
from .methods import alternating, extragradient, optimistic, simultaneous

__all__ = ["drift", "methods", "modified_equation", "simultaneous", "alternating",
           "extragradient", "optimistic"]

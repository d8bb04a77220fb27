"""bea: backward error analysis and implicit regularisation of optimisers.

Derive modified equations and losses of update rules to any order in the step size
(sympy), compile them to Hessian-free JAX functions, verify them against real iterates,
and use them as optax transforms.

``import bea`` loads only the symbolic engine (sympy); the JAX side (``compile_equation``,
``verify``, ``optax``, ...) is imported on first use of its names.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from . import methods, series, trees
from .methods import Method, symbols
from .modified import (
    ModifiedEquation,
    ModifyingEquation,
    h,
    modified_equation,
    modifying_equation,
    modifying_series,
)
from .modified_loss import ModifiedLoss, modified_loss
from .registry import get_method
from .trees import Tree

# name -> (module, attribute or None for the module itself); imported on first access
_LAZY: dict[str, tuple[str, str | None]] = {
    "compile_equation": ("bea.compile", "compile_equation"),
    "compile_loss": ("bea.compile", "compile_loss"),
    "CompiledModifiedEquation": ("bea.compile", "CompiledModifiedEquation"),
    "CompiledModifiedLoss": ("bea.compile", "CompiledModifiedLoss"),
    "verify": ("bea.verification", "verify"),
    "Dynamics": ("bea.verification", "Dynamics"),
    "VerificationReport": ("bea.verification", "VerificationReport"),
    "verification": ("bea.verification", None),
    "optax": ("bea.optax", None),
    "files": ("bea.files", None),
    "experiments": ("bea.experiments", None),
    "numeric": ("bea.numeric", None),
    "numeric_modified_equation": ("bea.numeric", "numeric_modified_equation"),
    "NumericModifiedEquation": ("bea.numeric", "NumericModifiedEquation"),
}

__all__ = ["methods", "series", "trees", "Tree", "Method", "symbols", "get_method",
           "h", "ModifiedEquation", "modified_equation", "ModifyingEquation", "modifying_equation",
           "modifying_series", "ModifiedLoss", "modified_loss", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'bea' has no attribute {name!r}") from None
    mod = import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

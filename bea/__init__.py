"""bea: backward error analysis and implicit regularisation of optimisers.

Derive modified equations and losses of update rules to any order in the step size
(sympy), compile them to Hessian-free JAX functions, verify them against real iterates,
and use them as optax transforms.
"""

from . import methods, series, trees
from .modified import ModifiedEquation, h, modified_equation
from .modified_loss import ModifiedLoss, modified_loss
from .trees import Tree
from .verify import verify

__all__ = ["methods", "series", "trees", "Tree", "ModifiedEquation", "modified_equation",
           "ModifiedLoss", "modified_loss", "verify", "h"]
__version__ = "0.1.0"

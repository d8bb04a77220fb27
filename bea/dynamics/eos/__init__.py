"""Edge-of-stability lab (Cohen et al., ICLR 2021; Arora, Li, Panigrahi, ICML 2022).

* :mod:`.sharpness`: top-k Hessian eigenpairs by chunked HVPs and Lanczos, the Hessian
  trace, the gradient of lambda_1.
* :mod:`.flows`: the limiting flows of normalised GD and GD on sqrt(L) on the zero-loss
  manifold, with a matrix-free tangent projection.
* :mod:`.central`: the central flow of GD at the edge of stability (Cohen, Damian et al.,
  ICLR 2025): gradient flow with the components that would raise ``lambda_i`` above
  ``2/eta`` projected out, and its prediction of GD's time-averaged loss.
* :mod:`.principal`: the principal flow of GD (Rosca et al., TMLR 2023).
* :mod:`.runner`: full-batch training of an equinox model with any optax optimiser, with
  sharpness, gradient-flow distance and effective-step logs (resumable).
* :mod:`.reproduce`: ``bea reproduce eos`` (GD at 2/eta on digits, the heavy-ball
  threshold, the limiting flows against discrete runs).

The optimisers are :func:`bea.optax.normalized_gd` and :func:`bea.optax.sqrt_loss`.
"""

from .central import CentralFlow, central_flow
from .reproduce import reproduce
from .sharpness import (
    ChunkingError,
    DimensionError,
    EosInputError,
    NonScalarLossError,
    Sharpness,
    hessian_trace,
    hvp_fn,
    sharpness,
    sharpness_gradient,
)

__all__ = ["CentralFlow", "ChunkingError", "DimensionError", "EosInputError", "NonScalarLossError",
           "Sharpness", "central_flow", "hessian_trace", "hvp_fn", "reproduce", "sharpness",
           "sharpness_gradient"]

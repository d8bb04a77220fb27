"""Steepest descent and the margins it maximises (Tsilivis, Vardi, Kempe 2024; Gunasekar
et al. 2018; Lyu & Li 2020).

* :mod:`.geometry`: homogeneity degree check, normalised / soft margins in any l_p norm,
  exponential and logistic losses in log space (no underflow at ``L < 1e-300``).
* :mod:`.maxmargin`: LP (HiGHS) / QP (Lawson-Hanson least distance) maximum margins of
  linear models in l1, l2, l_inf; non-separable data refused.
* :mod:`.train`: the training runner (per-step margins in one ``lax.scan``).
* :func:`reproduce`: ``bea reproduce margins``.

Optimisers: :func:`bea.optax.steepest_descent`, ``sign_descent``, ``coordinate_descent``.
"""

from .geometry import (
    LOSSES,
    LabelError,
    NotHomogeneousError,
    check_labels,
    homogeneity_degree,
    log_exp_loss,
    log_logistic_loss,
    log_loss,
    normalized_margin,
    param_norm,
    soft_margin,
)
from .maxmargin import MaxMargin, NotSeparableError, linear_margin, max_margin
from .reproduce import reproduce
from .train import (
    Run,
    init_relu_net,
    linear_model,
    monotone_after_fit,
    relu_net,
    run_function,
    train,
)

__all__ = ["LOSSES", "LabelError", "MaxMargin", "NotHomogeneousError", "NotSeparableError",
           "Run", "check_labels", "homogeneity_degree", "init_relu_net", "linear_margin",
           "linear_model", "log_exp_loss", "log_logistic_loss", "log_loss", "max_margin",
           "monotone_after_fit", "normalized_margin", "param_norm", "relu_net", "reproduce",
           "run_function", "soft_margin", "train"]

"""``bea.optax.sgd``: ``optax.sgd`` that checks the ``bea`` transforms chained before it."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import optax

from .. import methods as M
from .transform import ScalarOrSchedule, transform_info, warn_mismatch

__all__ = ["sgd"]


def sgd(learning_rate: ScalarOrSchedule, *transforms: Any, momentum: float | None = None,
        nesterov: bool = False) -> optax.GradientTransformationExtraArgs:
    """``optax.chain(*transforms, optax.sgd(learning_rate, momentum, nesterov))`` that
    checks the chained ``bea`` transforms: a term derived for another method than the
    optimiser (plain GD is ``bea.methods.gd()``, momentum ``heavy_ball(momentum)``,
    Nesterov ``nesterov(momentum)``) or a drift correction with another step size is
    reported with ``warnings.warn``."""
    if momentum is None or momentum == 0:
        opt_method = M.gd()
    else:
        opt_method = (M.nesterov if nesterov else M.heavy_ball)(momentum)
    for tx in transforms:
        info = transform_info(tx)
        if info is None:
            continue
        if isinstance(info.method, M.Method) and getattr(info.method, "players", None) is None:
            warn_mismatch(info.name, info.method, opt_method, stacklevel=3)
        lr = info.learning_rate
        if (isinstance(lr, numbers.Real) and isinstance(learning_rate, numbers.Real)
                and not math.isclose(float(lr), float(learning_rate), rel_tol=1e-9)):
            warnings.warn(f"{info.name} assumes the step size {lr}, but the optimiser's "
                          f"learning rate is {learning_rate}", stacklevel=2)
        elif callable(lr) != callable(learning_rate) and lr is not None:
            warnings.warn(f"{info.name}: one of its learning rate and the optimiser's is a "
                          f"schedule and the other is not; pass the same to both",
                          stacklevel=2)
    return optax.chain(*transforms, optax.sgd(learning_rate, momentum=momentum,
                                              nesterov=nesterov))

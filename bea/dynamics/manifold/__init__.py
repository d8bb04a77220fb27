"""Noisy GD near the zero-loss manifold: label noise, dropout and minibatch noise on their
two time scales (Shalova, Schlichting, Peletier 2024; Li, Wang, Arora, ICLR 2022).

* noise models (:mod:`.noise`): :func:`label_noise`, :func:`dropconnect`, :func:`dropout`,
  :func:`minibatch`, :func:`weight_perturbation` (anti-correlated perturbed GD),
  :func:`gaussian_sgld`, :func:`custom_noise`; each is a ``loss_hat(w, eta)``.
* :func:`regulariser` (Reg = (1/2) Lap_eta Lhat(w, 0), AD), :func:`scale_of` (fast, slow
  or neither, in words), :func:`limiting_flow`, :func:`project_to_manifold`.
* :func:`ensemble` (seeded, vmapped, sharded noisy-GD runs with confidence bands).
* :func:`reproduce`: the ``bea reproduce manifold`` experiment.
"""

from __future__ import annotations

from .ensemble import Ensemble, ensemble, ensemble_loop, noisy_gd_step
from .flow import LimitingFlow, limiting_flow, project_to_manifold, regulariser, scale_of
from .geometry import (
    FarFromManifoldError,
    FlatProblem,
    ManifoldError,
    NoiseMeanError,
    SigmaError,
    StochasticLimitError,
    tangent_project,
)
from .noise import (
    NoisyLoss,
    custom_noise,
    dropconnect,
    dropout,
    gaussian_sgld,
    label_noise,
    minibatch,
    weight_perturbation,
    with_distribution,
)
from .reg import ScaleVerdict, detect_scale, slow_drift


def reproduce(out: str, *, large: bool = False, progress: bool = True,
              resume: bool = False) -> str:
    """``bea reproduce manifold``: see :mod:`.experiment`."""
    from .experiment import reproduce as _reproduce

    return _reproduce(out, large=large, progress=progress, resume=resume)


__all__ = [
    "Ensemble", "FarFromManifoldError", "FlatProblem", "LimitingFlow", "ManifoldError",
    "NoiseMeanError", "NoisyLoss", "ScaleVerdict", "SigmaError", "StochasticLimitError",
    "custom_noise", "detect_scale", "dropconnect", "dropout", "ensemble", "ensemble_loop",
    "gaussian_sgld", "label_noise", "limiting_flow", "minibatch", "noisy_gd_step",
    "project_to_manifold", "regulariser", "reproduce", "scale_of", "slow_drift",
    "tangent_project", "weight_perturbation", "with_distribution",
]


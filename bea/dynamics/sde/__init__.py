r"""SGD as an SDE, SVAG and the linear scaling rule (Li, Malladi, Arora, NeurIPS 2021).

* :class:`BatchSampler` - seeded minibatch samplers (with / without replacement), and
  :func:`bea.optax.svag` - SVAG(l), ``l = 1`` is SGD.
* :func:`run_svag`, :func:`run_noisy_gd` - jitted runners (pure in the run index);
  :class:`SGDSDE` + :func:`simulate_sde` - the SDE ``dX = -grad L dt + (eta Sigma)^(1/2)
  dW`` with diffrax (Euler-Maruyama, SRA1), diffusion from centred per-example gradients.
* :func:`ensemble` - many runs vmapped and sharded over devices; :func:`weak_error`,
  :func:`fit_order` - Monte Carlo weak errors with confidence intervals.
* :func:`equilibrium_statistics`, :func:`lsr_condition` - ``|x|^2``, ``|grad L|^2``,
  ``tr Sigma`` and the noise-to-signal condition on scale-invariant nets.
* :class:`QuadraticProblem` - closed-form moments (Ornstein-Uhlenbeck SDE, SVAG(l)).
* :func:`reproduce` - ``bea reproduce svag``.

Names are imported on first use (JAX is only loaded then).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {
    "BatchSampler": "sampling", "BatchSizeError": "sampling", "covariance_scale": "sampling",
    "take": "sampling", "check_same_batch_size": "sampling",
    "PerExampleLossError": "noise", "check_per_example_loss": "noise",
    "gradient_and_noise_factor": "noise", "minibatch_noise": "noise", "noise_trace": "noise",
    "NotAdditiveNoiseError": "simulate", "SGDSDE": "simulate", "batch_loss": "simulate",
    "run_noisy_gd": "simulate", "run_svag": "simulate", "simulate_sde": "simulate",
    "svag_gradients": "simulate",
    "Estimate": "ensembles", "OrderFit": "ensembles", "ensemble": "ensembles",
    "fit_order": "ensembles", "mean_ci": "ensembles", "weak_error": "ensembles",
    "EquilibriumStats": "equilibrium", "LSRCondition": "equilibrium",
    "equilibrium_statistics": "equilibrium", "lsr_condition": "equilibrium",
    "QuadraticProblem": "quadratic",
    "DigitsMLP": "digits", "load_digits_data": "digits",
    "reproduce": "experiments",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))

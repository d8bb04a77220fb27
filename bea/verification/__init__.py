r"""Numerical verification of backward error analysis (BEA) modified equations.

An update :math:`\theta \mapsto \Psi_h(\theta)` and its modified field truncated after
:math:`h^p`, :math:`\tilde f_p = f_0 + h f_1 + \dots + h^p f_p`, should satisfy, for an
update of order :math:`q` (:math:`f_1 = \dots = f_{q-1} = 0`; ``q = 1`` for GD/SGD),

* **local error**  :math:`\|\Psi_h(\theta_0) - \varphi^{\tilde f_p}_h(\theta_0)\| =
  O(h^{\max(p+2,\,q+1)})`;
* **global error** :math:`\|\theta_n - \varphi^{\tilde f_p}_T(\theta_0)\| =
  O(h^{\max(p+1,\,q)})` for :math:`T = n h` fixed.

This package checks both numerically, one idea per module:

* :mod:`~bea.verification.dynamics`: the :class:`Dynamics` protocol (what is verified);
* :mod:`~bea.verification.grid`: step sizes with integer ``T/h``;
* :mod:`~bea.verification.kernels`: jitted discrete iterates and modified flows (diffrax);
* :mod:`~bea.verification.fits`: cell flags (round-off, divergence, solver failure) and
  slope fits;
* :mod:`~bea.verification.report`: :class:`ErrorTable` (one type for global and local
  errors) and :class:`VerificationReport` (text, plot, JSON);
* :mod:`~bea.verification.run`: :func:`run_verification`, the numerical core on plain
  ``step``/``field`` functions;
* :mod:`~bea.verification.problems`: built-in problems; :mod:`~bea.verification.verify`:
  :func:`verify` on derived objects (``ModifiedEquation``, methods, any ``Dynamics``).

Example
-------
>>> import jax, jax.numpy as jnp
>>> jax.config.update("jax_enable_x64", True)
>>> loss = lambda p: 0.5 * (p[0] * p[1] - 1) ** 2
>>> g = jax.grad(loss)
>>> step = lambda p, h: p - h * g(p)
>>> field = lambda p, h, order: -g(p)          # order-0 field only
>>> rep = run_verification(step, field, jnp.array([1.0, 0.5]),
...                        integer_step_sizes(1.0, 0.08), [0], 1.0, progress=False)
>>> round(rep.slopes[0])
1
"""

from .dynamics import Dynamics, expected_slopes, method_order_of
from .fits import DIVERGED, ROUNDOFF, SOLVER_FAILED, fit_slope
from .grid import integer_step_sizes
from .problems import Problem, default_problem, initial_points
from .report import ErrorTable, VerificationReport, load_json
from .run import run_verification
from .verify import EquationDynamics, equation_order, series_map, verify

__all__ = [
    "DIVERGED",
    "ROUNDOFF",
    "SOLVER_FAILED",
    "Dynamics",
    "EquationDynamics",
    "ErrorTable",
    "Problem",
    "VerificationReport",
    "default_problem",
    "equation_order",
    "expected_slopes",
    "fit_slope",
    "initial_points",
    "integer_step_sizes",
    "load_json",
    "method_order_of",
    "run_verification",
    "series_map",
    "verify",
]

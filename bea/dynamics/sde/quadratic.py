r"""A closed-form test problem: quadratic per-example losses with one diagonal Hessian.

Example ``i`` is a centre ``c_i`` in ``R^d``; ``loss(x, c_i) = (1/2) sum_j h_j (x_j - c_ij)^2``.
Then ``grad L = H (x - cbar)`` and the centred per-example gradients ``H (cbar - c_i)`` do
not depend on ``x``: the minibatch noise is additive with covariance ``Q = c H S_c H``
(``S_c`` the covariance of the centres, normalised by ``n``; ``c`` =
:func:`covariance_scale`).  The SDE of SGD is an Ornstein-Uhlenbeck process.  All moments
below are derived here (linear recursions / Ito isometry), with ``a_j = 1 - (eta/l) h_j``:

* SDE:  ``m(T) - cbar = e^{-hT} (x0 - cbar)``,
  ``S(T)_jk = eta Q_jk (1 - e^{-(h_j+h_k)T}) / (h_j + h_k)`` (stationary: drop the
  exponential).
* SVAG(l) after ``K`` steps (time ``T = K eta / l``): ``m_K - cbar = a^K (x0 - cbar)``,
  ``S_K = (eta^2/l) Q (1 - (a_j a_k)^K) / (1 - a_j a_k)``; stationary
  ``S_jk = eta Q_jk / (h_j + h_k - (eta/l) h_j h_k)``, which tends to the SDE's as
  ``l -> inf`` with error ``O(1/l)``.

Only first and second moments of the noise enter, so the SVAG formulas hold for any
minibatch sampler with the stated covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from .sampling import covariance_scale

__all__ = ["QuadraticProblem"]


@dataclass(frozen=True)
class QuadraticProblem:
    """``centres`` (``n x d``), ``hessian`` (the diagonal ``h``, ``d``)."""

    centres: np.ndarray
    hessian: np.ndarray

    @staticmethod
    def random(n: int = 16, d: int = 2, seed: int = 0, hessian=None) -> QuadraticProblem:
        rng = np.random.default_rng(seed)
        h = np.linspace(1.0, 2.0, d) if hessian is None else np.asarray(hessian, float)
        return QuadraticProblem(rng.normal(size=(n, d)), h)

    @property
    def data(self) -> jnp.ndarray:
        return jnp.asarray(self.centres)

    @staticmethod
    def loss(x: jnp.ndarray, c: jnp.ndarray, h: jnp.ndarray) -> jnp.ndarray:
        return 0.5 * jnp.sum(h * (x - c) ** 2)

    def example_loss(self):
        h = jnp.asarray(self.hessian)
        return lambda x, c: QuadraticProblem.loss(x, c, h)

    @property
    def mean(self) -> np.ndarray:
        return self.centres.mean(axis=0)

    def q(self, batch_size: int, replace: bool = True) -> np.ndarray:
        """Covariance of one minibatch gradient."""
        n = self.centres.shape[0]
        dev = self.centres - self.mean
        sc = dev.T @ dev / n
        h = self.hessian
        return covariance_scale(n, batch_size, replace) * (h[:, None] * sc * h[None, :])

    # ---- SDE (Ornstein-Uhlenbeck)
    def sde_moments(self, x0, t: float, eta: float, batch_size: int, replace: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
        h = self.hessian
        hs = h[:, None] + h[None, :]
        m = self.mean + np.exp(-h * t) * (np.asarray(x0, float) - self.mean)
        s = eta * self.q(batch_size, replace) * (1 - np.exp(-hs * t)) / hs
        return m, s

    def sde_stationary_cov(self, eta: float, batch_size: int, replace: bool = True
                           ) -> np.ndarray:
        h = self.hessian
        return eta * self.q(batch_size, replace) / (h[:, None] + h[None, :])

    # ---- SVAG(l) (l = 1: SGD)
    def svag_moments(self, x0, steps: int, eta: float, l: float, batch_size: int,
                     replace: bool = True) -> tuple[np.ndarray, np.ndarray]:
        h = self.hessian
        a = 1.0 - (eta / l) * h
        aa = a[:, None] * a[None, :]
        m = self.mean + a ** steps * (np.asarray(x0, float) - self.mean)
        q = self.q(batch_size, replace)
        s = (eta ** 2 / l) * q * (1 - aa ** steps) / (1 - aa)
        return m, s

    def svag_stationary_cov(self, eta: float, l: float, batch_size: int,
                            replace: bool = True) -> np.ndarray:
        h = self.hessian
        if np.any(np.abs(1 - (eta / l) * h) >= 1):
            raise ValueError(f"SVAG is unstable: need (eta/l) h_j < 2, got eta/l = {eta / l}"
                             f" and max h = {h.max()}")
        hs = h[:, None] + h[None, :]
        return eta * self.q(batch_size, replace) / (hs - (eta / l) * h[:, None] * h[None, :])

    @staticmethod
    def second_moment(m: np.ndarray, s: np.ndarray) -> float:
        """``E|x|^2 = |m|^2 + tr S``."""
        return float(m @ m + np.trace(s))

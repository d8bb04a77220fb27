r"""Toy losses whose zero-loss manifold is known in closed form, with independent references.

Each :class:`Toy` has a JAX loss ``L = (1/2) r^2`` (its residual ``r``), the closed-form
map ``chart`` from a point near ``Gamma`` to manifold coordinates, ``embed`` back, and the
reduced limiting-flow ODEs in those coordinates written by hand in NumPy (used with
:func:`scipy.integrate.solve_ivp` as an oracle independent of the lab's JAX/lineax/diffrax
path).  In all of them ``lambda_1 = |grad r|^2`` on ``Gamma`` (the Hessian there is
``grad r grad r^T``).

* ``flat``: ``z = (x_1, x_2, y)``, ``r = sqrt(1 + |x|^2) y``, ``Gamma = {y = 0}``,
  ``lambda_1 = 1 + |x|^2``; normalised GD ``x' = -x / (2 (1 + |x|^2))``, GD on sqrt(L)
  ``x' = -x/4``.
* ``circle``: ``r = sqrt(2 + z_1) (|z|^2 - 1)/2``, ``Gamma`` the unit circle,
  ``lambda_1 = 2 + cos(phi)``; ``phi' = sin(phi) / (4 (2 + cos phi))`` resp. ``sin(phi)/8``.
* ``product``: a depth-3 scalar linear net, ``r = z_1 z_2 z_3 - 1``, ``Gamma = {prod = 1}``,
  ``lambda_1 = sum_i 1/z_i^2``; the flow balances the layers (``lambda_1 -> 3``).  Its
  reference integrates the ambient ODE with the analytic normal ``n = grad r`` and
  ``P = I - n n^T / |n|^2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TOYS", "Toy", "reference_flow"]


@dataclass(frozen=True)
class Toy:
    name: str
    residual: Callable[[jax.Array], jax.Array]
    chart: Callable[[np.ndarray], np.ndarray]      # point near Gamma -> coordinates
    embed: Callable[[np.ndarray], np.ndarray]      # coordinates -> point on Gamma
    rhs: dict[str, Callable[[float, np.ndarray], np.ndarray]]  # reduced ODEs, NumPy
    sharpness: Callable[[np.ndarray], float]       # lambda_1 on Gamma, from coordinates
    normal: Callable[[np.ndarray], np.ndarray]     # unit normal at embed(q) (top eigvec)
    q0: np.ndarray

    def loss(self, z: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum(self.residuals(z) ** 2)

    def residuals(self, z: jax.Array) -> jax.Array:
        return jnp.atleast_1d(self.residual(z))


def _flat() -> Toy:
    def rhs_n(t, q):
        return -q / (2.0 * (1.0 + q @ q))

    return Toy("flat", lambda z: jnp.sqrt(1.0 + z[0] ** 2 + z[1] ** 2) * z[2],
               lambda z: np.asarray(z)[:2], lambda q: np.array([q[0], q[1], 0.0]),
               {"normalized_gd": rhs_n, "sqrt_loss": lambda t, q: -q / 4.0},
               lambda q: 1.0 + float(q @ q), lambda q: np.array([0.0, 0.0, 1.0]),
               np.array([1.2, -0.7]))


def _circle() -> Toy:
    return Toy("circle", lambda z: jnp.sqrt(2.0 + z[0]) * (z @ z - 1.0) / 2.0,
               lambda z: np.array([np.arctan2(z[1], z[0])]),
               lambda q: np.array([np.cos(q[0]), np.sin(q[0])]),
               {"normalized_gd": lambda t, q: np.sin(q) / (4.0 * (2.0 + np.cos(q))),
                "sqrt_loss": lambda t, q: np.sin(q) / 8.0},
               lambda q: 2.0 + float(np.cos(q[0])),
               lambda q: np.array([np.cos(q[0]), np.sin(q[0])]), np.array([0.7]))


def _product() -> Toy:
    def grad_lam(z):  # grad of |grad r|^2 = sum_i prod_{j != i} z_j^2
        a, b, c = z
        return np.array([2 * a * (b * b + c * c), 2 * b * (a * a + c * c),
                         2 * c * (a * a + b * b)])

    def rhs(kind):
        def f(t, z):
            n = np.array([z[1] * z[2], z[0] * z[2], z[0] * z[1]])
            g = grad_lam(z)
            lam = n @ n
            if kind == "normalized_gd":
                g, c = g / lam, 0.25
            else:
                c = 0.125
            return -c * (g - n * (n @ g) / lam)
        return f

    def chart(z):  # nearest point on prod = 1 is not closed form; rescale instead (O(dist))
        z = np.asarray(z, float)
        return z / np.cbrt(np.prod(z))

    def normal(z):
        n = np.array([z[1] * z[2], z[0] * z[2], z[0] * z[1]])
        return n / np.linalg.norm(n)

    return Toy("product", lambda z: z[0] * z[1] * z[2] - 1.0, chart, lambda q: np.asarray(q),
               {"normalized_gd": rhs("normalized_gd"), "sqrt_loss": rhs("sqrt_loss")},
               lambda z: float(np.sum(1.0 / np.asarray(z) ** 2)), normal,
               np.array([2.0, 1.0, 0.5]))


TOYS: dict[str, Toy] = {t.name: t for t in (_flat(), _circle(), _product())}


def reference_flow(toy: Toy, kind: str, t1: float, ts: np.ndarray | None = None
                   ) -> np.ndarray:
    """The reduced ODE integrated by scipy (DOP853, rtol 1e-12): coordinates at ``ts``."""
    from scipy.integrate import solve_ivp

    ts = np.array([t1]) if ts is None else np.asarray(ts)
    sol = solve_ivp(toy.rhs[kind], (0.0, t1), toy.q0, method="DOP853", t_eval=ts,
                    rtol=1e-12, atol=1e-12)
    return sol.y.T

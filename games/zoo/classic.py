"""The deterministic games: bilinear, rotational, Dirac-GAN, random quadratic."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .game import Game, as_float_array, default_float

PyTree = Any
Array = jax.Array


# ----------------------------------------------------------------------------------------
# deterministic zoo
# ----------------------------------------------------------------------------------------


def bilinear(
    A: Any,
    x0: Any = None,
    y0: Any = None,
) -> Game:
    r"""The zero-sum bilinear game :math:`\ell_1 = x^\top A y`, :math:`\ell_2 = -x^\top A y`.

    :math:`x \in \mathbb{R}^n`, :math:`y \in \mathbb{R}^m`, :math:`A \in \mathbb{R}^{n\times m}`.
    The flow is :math:`x' = -A y`, :math:`y' = A^\top x`, a pure rotation (eigenvalues
    :math:`\pm i\sigma_k(A)`) that conserves :math:`\|x\|^2 + \|y\|^2`.  The equilibrium is
    :math:`(0, 0)` (unique when :math:`A` is square and invertible).

    Args:
        A: the ``(n, m)`` coupling matrix.
        x0: initial ``x`` (default ``ones(n)``).
        y0: initial ``y`` (default ``ones(m)``).
    """
    A = as_float_array(A)
    if A.ndim != 2:
        raise ValueError(f"bilinear: A must be a matrix, got shape {A.shape}")
    n, m = A.shape
    x0 = jnp.ones(n) if x0 is None else x0
    y0 = jnp.ones(m) if y0 is None else y0

    return Game(
        loss1=_BilinearLoss(A, 1.0),
        loss2=_BilinearLoss(A, -1.0),
        x0=x0,
        y0=y0,
        name=f"bilinear({n}x{m})",
        equilibrium=(jnp.zeros(n), jnp.zeros(m)),
    )


# Zoo losses are small equinox Modules (not closures) so that two games built with the same
# arguments compare equal as static data and share :func:`equinox.filter_jit` compilations.


class _BilinearLoss(eqx.Module):
    r""":math:`(x, y) \mapsto s\, x^\top A y`."""

    A: Array
    sign: float = eqx.field(static=True)

    def __call__(self, x: Array, y: Array) -> Array:
        return self.sign * (x @ self.A @ y)


class _RotationalLoss(eqx.Module):
    r"""Player ``p``'s loss of :func:`rotational`."""

    eps: float = eqx.field(static=True)
    player: int = eqx.field(static=True)

    def __call__(self, x: Array, y: Array) -> Array:
        if self.player == 1:
            return 0.5 * self.eps * x**2 - x * y
        return 0.5 * self.eps * y**2 + x * y


def rotational(eps: float = 0.09, x0: float = 1.0, y0: float = 1.0) -> Game:
    r"""The damped rotational game on scalars :math:`x, y`.

    .. math::

        \ell_1 = \tfrac{\varepsilon}{2} x^2 - x y, \qquad
        \ell_2 = \tfrac{\varepsilon}{2} y^2 + x y,

    so the gradient flow is :math:`x' = -\partial_x\ell_1 = -\varepsilon x + y`,
    :math:`y' = -\partial_y \ell_2 = -x - \varepsilon y`, i.e. :math:`z' = M z` with
    :math:`M = \begin{pmatrix}-\varepsilon & 1\\ -1 & -\varepsilon\end{pmatrix}`, eigenvalues
    :math:`-\varepsilon \pm i`: for :math:`\varepsilon > 0` the flow spirals into :math:`0`.
    Simultaneous GD with step :math:`h` has map eigenvalues :math:`1 + h(-\varepsilon \pm i)`,
    of modulus :math:`\sqrt{(1-h\varepsilon)^2 + h^2}`, which exceeds 1 when
    :math:`h > 2\varepsilon/(1+\varepsilon^2)` (e.g. :math:`\varepsilon=0.09, h=0.2`), while
    alternating GD has determinant :math:`(1-h\varepsilon)^2 < 1` and converges there.
    """
    eps = float(eps)

    return Game(
        loss1=_RotationalLoss(eps, 1),
        loss2=_RotationalLoss(eps, 2),
        x0=x0,
        y0=y0,
        name=f"rotational(eps={eps:g})",
        equilibrium=(0.0, 0.0),
    )


def _wgan_gen(theta: Array, psi: Array) -> Array:
    return psi * theta


def _wgan_disc(theta: Array, psi: Array) -> Array:
    return -psi * theta


def _bce_disc(theta: Array, psi: Array) -> Array:
    return -(jax.nn.log_sigmoid(psi * 0.0) + jax.nn.log_sigmoid(-psi * theta))


def _ns_gen(theta: Array, psi: Array) -> Array:
    return -jax.nn.log_sigmoid(psi * theta)


def _sat_gen(theta: Array, psi: Array) -> Array:
    return jax.nn.log_sigmoid(-psi * theta)


_DIRAC = {
    "non_saturating": (_ns_gen, _bce_disc),
    "saturating": (_sat_gen, _bce_disc),
    "wgan": (_wgan_gen, _wgan_disc),
}
_DIRAC_LOSSES = tuple(_DIRAC)


def dirac_gan(loss: str = "non_saturating", theta0: float = 1.0, psi0: float = 1.0) -> Game:
    r"""The Dirac-GAN (Mescheder et al. 2018; Rosca et al. 2021, "Discretization drift").

    The data distribution is a point mass at :math:`0`; the generator is a point mass at
    :math:`\theta` and the discriminator is linear, :math:`D_\psi(u) = \psi u` (a logit).

    **Players**: player 1 (``x``) is the **generator** parameter :math:`\theta`; player 2
    (``y``) is the **discriminator** parameter :math:`\psi`.  Both are scalars.

    With :math:`\sigma` the logistic sigmoid, the discriminator's BCE loss is

    .. math::

        \ell_2(\theta, \psi) = -[\log\sigma(D_\psi(0)) + \log(1 - \sigma(D_\psi(\theta)))]
                             = -\log\sigma(0) - \log\sigma(-\psi\theta),

    and the generator's loss :math:`\ell_1` is

    * ``"non_saturating"``: :math:`\ell_1 = -\log\sigma(\psi\theta)` (general-sum);
    * ``"saturating"``: :math:`\ell_1 = \log(1-\sigma(\psi\theta)) = \log\sigma(-\psi\theta)`
      (zero-sum up to the constant :math:`\log 2`);
    * ``"wgan"``: the zero-sum WGAN-type variant :math:`\ell_1 = \psi\theta`,
      :math:`\ell_2 = -\psi\theta`, whose flow :math:`\theta' = -\psi`, :math:`\psi' = \theta`
      is a pure rotation conserving :math:`\theta^2 + \psi^2`.

    The equilibrium is :math:`(\theta^*, \psi^*) = (0, 0)`.  For the sigmoid losses the
    Jacobian of the flow field :math:`-\xi` there is
    :math:`\tfrac12 \begin{pmatrix}0&1\\-1&0\end{pmatrix}`
    (a rotation too), so the flow has purely imaginary eigenvalues :math:`\pm i/2`.
    """
    if loss not in _DIRAC_LOSSES:
        raise ValueError(f"dirac_gan: loss must be one of {_DIRAC_LOSSES}, got {loss!r}")
    loss1, loss2 = _DIRAC[loss]
    return Game(
        loss1=loss1,
        loss2=loss2,
        x0=theta0,
        y0=psi0,
        name=f"dirac_gan({loss})",
        equilibrium=(0.0, 0.0),
    )


def random_quadratic(
    key: Array,
    n: int,
    m: int,
    *,
    coupling: float = 1.0,
    margin: float = 0.1,
) -> Game:
    r"""A random general-sum quadratic game with a stable equilibrium at :math:`z^* = 0`.

    With :math:`z = (x, y) \in \mathbb{R}^{n+m}`,
    :math:`\ell_i(z) = \tfrac12 z^\top Q_i z` for random symmetric :math:`Q_1, Q_2`.  Writing

    .. math::

        Q_1 = \begin{pmatrix} A & B \\ B^\top & E_1 \end{pmatrix}, \qquad
        Q_2 = \begin{pmatrix} E_2 & C^\top \\ C & D \end{pmatrix},

    the simultaneous gradient is :math:`\xi(z) = J z` with game Jacobian
    :math:`J = \begin{pmatrix} A & B \\ C & D \end{pmatrix}`.  :math:`A` and :math:`D` (each
    player's own block) are made positive definite and then shifted by
    :math:`s I` so that the symmetric part :math:`\tfrac12(J + J^\top)` has smallest
    eigenvalue at least ``margin``; hence :math:`\operatorname{Re}\lambda(J) \ge` ``margin``
    and the flow :math:`z' = -Jz` is exponentially stable at :math:`0`.
    The blocks :math:`E_1, E_2` do not affect the dynamics but make the game general-sum.

    Args:
        key: PRNG key.
        n, m: dimensions of ``x`` and ``y``.
        coupling: scale of the off-diagonal (interaction) blocks :math:`B, C`.
        margin: lower bound on the real parts of the eigenvalues of :math:`J`.

    The matrices are available as ``game.loss1.Q`` and ``game.loss2.Q`` (and :math:`J` as
    ``game.loss1.J``).
    """
    if n < 1 or m < 1:
        raise ValueError(f"random_quadratic: need n, m >= 1, got n={n}, m={m}")
    if margin <= 0:
        raise ValueError(f"random_quadratic: margin must be positive, got {margin}")
    k = jax.random.split(key, 7)
    dt = default_float()

    def spd(kk: Array, d: int) -> np.ndarray:
        g = np.asarray(jax.random.normal(kk, (d, d), dtype=dt))
        return g @ g.T / d + 0.1 * np.eye(d)

    def sym(kk: Array, d: int) -> np.ndarray:
        g = np.asarray(jax.random.normal(kk, (d, d), dtype=dt))
        return 0.5 * (g + g.T)

    A, D = spd(k[0], n), spd(k[1], m)
    B = coupling * np.asarray(jax.random.normal(k[2], (n, m), dtype=dt)) / np.sqrt(n + m)
    C = coupling * np.asarray(jax.random.normal(k[3], (m, n), dtype=dt)) / np.sqrt(n + m)
    E1, E2 = sym(k[4], m), sym(k[5], n)
    J = np.block([[A, B], [C, D]])
    lam_min = float(np.linalg.eigvalsh(0.5 * (J + J.T)).min())
    shift = max(0.0, margin - lam_min)
    A = A + shift * np.eye(n)
    D = D + shift * np.eye(m)
    J = np.block([[A, B], [C, D]])
    Q1 = jnp.asarray(np.block([[A, B], [B.T, E1]]), dtype=dt)
    Q2 = jnp.asarray(np.block([[E2, C.T], [C, D]]), dtype=dt)

    loss1 = _QuadraticLoss(Q1, jnp.asarray(J, dtype=dt))
    loss2 = _QuadraticLoss(Q2, jnp.asarray(J, dtype=dt))
    x0 = jax.random.normal(k[6], (n + m,), dtype=dt)
    return Game(
        loss1=loss1,
        loss2=loss2,
        x0=x0[:n],
        y0=x0[n:],
        name=f"random_quadratic({n},{m})",
        equilibrium=(jnp.zeros(n, dtype=dt), jnp.zeros(m, dtype=dt)),
    )


class _QuadraticLoss(eqx.Module):
    r"""Callable :math:`(x, y) \mapsto \tfrac12 z^\top Q z`, :math:`z = (x, y)`."""

    Q: Array
    J: Array

    def __call__(self, x: Array, y: Array) -> Array:
        z = jnp.concatenate([jnp.ravel(x), jnp.ravel(y)])
        return 0.5 * z @ self.Q @ z

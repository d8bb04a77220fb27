r"""A zoo of small two-player differentiable games.

A two-player game is a pair of losses :math:`(\ell_1, \ell_2)` on a joint parameter
:math:`z = (x, y)`.  Player 1 controls :math:`x` and minimises :math:`\ell_1(x, y)`; player 2
controls :math:`y` and minimises :math:`\ell_2(x, y)`.  Both :math:`x` and :math:`y` may be
arbitrary pytrees of floating-point arrays.  The *simultaneous gradient* (the game's
vector field, up to sign) is

.. math::

    \xi(z) = \big(\nabla_x \ell_1(x, y),\; \nabla_y \ell_2(x, y)\big),
    \qquad z'(t) = -\xi(z(t))

is the continuous-time gradient flow that the discrete optimisers in :mod:`games.runners`
discretise.  A game is *zero-sum* when :math:`\ell_2 = -\ell_1`.

Batch-taking (stochastic) games, such as :func:`mog_gan`, have losses with signature
``loss(x, y, batch)`` and carry a ``batch_fn(key) -> batch`` that samples one training batch.

Constructors
------------
* :func:`bilinear` -- :math:`\ell_1 = x^\top A y = -\ell_2`.
* :func:`rotational` -- the damped rotation :math:`z' = (-\varepsilon x + y, -x - \varepsilon y)`.
* :func:`dirac_gan` -- the Dirac-GAN of Mescheder et al. (2018) / Rosca et al. (2021).
* :func:`random_quadratic` -- a random general-sum quadratic game with a stable equilibrium at 0.
* :func:`mog_gan` -- a small MLP GAN on a ring of 8 Gaussians (:class:`MixtureGAN`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Array = jax.Array

__all__ = [
    "Game",
    "MixtureGAN",
    "bilinear",
    "dirac_gan",
    "high_quality_fraction",
    "mode_coverage",
    "mog_centers",
    "mog_gan",
    "random_quadratic",
    "rotational",
]


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def _default_float() -> np.dtype:
    """The default floating dtype (float64 when ``jax_enable_x64`` is on, else float32)."""
    return jnp.zeros(()).dtype


def _as_float_array(a: Any) -> Array:
    """Convert one leaf to a jax array; integer/bool/python-scalar leaves become floats."""
    if isinstance(a, jax.ShapeDtypeStruct):
        return a
    arr = jnp.asarray(a)
    if not jnp.issubdtype(arr.dtype, jnp.inexact) or getattr(arr, "weak_type", False):
        arr = jnp.asarray(a, dtype=_default_float())
    return arr


def _as_float_tree(tree: PyTree) -> PyTree:
    """Map :func:`_as_float_array` over a pytree (``None`` is left alone)."""
    if tree is None:
        return None
    return jax.tree.map(_as_float_array, tree)


def _as_optional_pair(pair: Any) -> tuple[PyTree, PyTree] | None:
    if pair is None:
        return None
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise ValueError("equilibrium must be a pair (x_star, y_star) or None")
    return (_as_float_tree(pair[0]), _as_float_tree(pair[1]))


def _tree_signature(tree: PyTree) -> tuple[Any, tuple[tuple[tuple[int, ...], Any], ...]]:
    """Tree structure plus (shape, dtype) of each leaf -- what a compatible point must share."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(a)), jnp.result_type(a)) for a in leaves)


def check_compatible(ref: PyTree, other: PyTree, what: str) -> None:
    """Raise ``ValueError`` unless ``other`` has the tree structure and leaf shapes of ``ref``.

    Dtypes are not compared (a float32 point may be used in a float64 game and vice versa);
    structure and shapes are.
    """
    ref_def, ref_leaves = _tree_signature(ref)
    oth_def, oth_leaves = _tree_signature(other)
    if ref_def != oth_def:
        raise ValueError(
            f"{what} has pytree structure {oth_def}, but the game expects {ref_def}"
        )
    ref_shapes = [s for s, _ in ref_leaves]
    oth_shapes = [s for s, _ in oth_leaves]
    if ref_shapes != oth_shapes:
        raise ValueError(
            f"{what} has leaf shapes {oth_shapes}, but the game expects {ref_shapes}"
        )


# ----------------------------------------------------------------------------------------
# the Game container
# ----------------------------------------------------------------------------------------


class Game(eqx.Module):
    r"""A two-player differentiable game.

    Player 1 minimises ``loss1(x, y)`` over ``x``; player 2 minimises ``loss2(x, y)`` over
    ``y``.  For batch-taking games (``batch_fn`` not ``None``) the losses are
    ``loss(x, y, batch)`` and ``batch_fn(key)`` samples a batch.

    Attributes:
        loss1: player 1's loss :math:`\ell_1(x, y[, b])`, a real scalar.
        loss2: player 2's loss :math:`\ell_2(x, y[, b])`, a real scalar.
        x0: default initial point of player 1 (a pytree of float arrays).
        y0: default initial point of player 2 (a pytree of float arrays).
        name: a human-readable name.
        equilibrium: optional known fixed point :math:`(x^*, y^*)` with
            :math:`\xi(x^*, y^*) = 0`.
        batch_fn: ``None`` for deterministic games; otherwise ``key -> batch``.

    Validation (at construction): ``x0`` and ``y0`` must be distinct objects sharing no
    array leaf (the two players own disjoint parameters), every leaf must be a
    floating-point array (python scalars and integer arrays are cast to the default float
    dtype), both losses must accept ``(x0, y0[, batch])`` and return a real scalar, and the
    equilibrium (if given) must have the structure of ``(x0, y0)``.  Any violation raises
    ``ValueError``.

    ``Game`` is an equinox Module, hence a pytree: the loss functions are non-array leaves
    (treated as static by :func:`equinox.filter_jit`), ``x0``/``y0`` are array leaves.

    **Loss convention.** Each player *minimises* its own loss (a GAN generator's loss is
    its own, not minus the discriminator's); a loss is written ``loss(x, y[, batch])``.
    ``bea`` takes losses on the joint parameters, ``L_c(params[, batch])`` with
    ``params = (x, y)``: :meth:`joint_losses` is that view, the one bridge between the two.
    """

    loss1: Callable[..., Array]
    loss2: Callable[..., Array]
    x0: PyTree = eqx.field(converter=_as_float_tree)
    y0: PyTree = eqx.field(converter=_as_float_tree)
    name: str = eqx.field(default="game", static=True)
    equilibrium: tuple[PyTree, PyTree] | None = eqx.field(
        default=None, converter=_as_optional_pair
    )
    batch_fn: Callable[[Array], PyTree] | None = None

    def __check_init__(self) -> None:
        if not callable(self.loss1) or not callable(self.loss2):
            raise ValueError(f"game {self.name!r}: loss1 and loss2 must be callables")
        if self.x0 is None or self.y0 is None:
            raise ValueError(f"game {self.name!r}: x0 and y0 must be given (not None)")
        if self.x0 is self.y0:
            raise ValueError(
                f"game {self.name!r}: x0 and y0 are the same object; the two players must "
                "own distinct parameter pytrees"
            )
        x_leaves = jax.tree.leaves(self.x0)
        y_leaves = jax.tree.leaves(self.y0)
        if not x_leaves or not y_leaves:
            raise ValueError(
                f"game {self.name!r}: each player needs at least one array parameter "
                f"(got {len(x_leaves)} leaves in x0, {len(y_leaves)} in y0)"
            )
        shared = {id(a) for a in x_leaves} & {id(a) for a in y_leaves}
        if shared:
            raise ValueError(
                f"game {self.name!r}: x0 and y0 share {len(shared)} array leaf/leaves; the "
                "players' parameters must not overlap"
            )
        for who, leaves in (("x0", x_leaves), ("y0", y_leaves)):
            for a in leaves:
                if not jnp.issubdtype(jnp.result_type(a), jnp.inexact):
                    raise ValueError(
                        f"game {self.name!r}: {who} has a non-floating leaf of dtype "
                        f"{jnp.result_type(a)}; parameters must be floating point"
                    )
        self._check_losses()
        if self.equilibrium is not None:
            check_compatible(self.x0, self.equilibrium[0], f"game {self.name!r}: x_star")
            check_compatible(self.y0, self.equilibrium[1], f"game {self.name!r}: y_star")

    def _check_losses(self) -> None:
        """Abstractly evaluate both losses at ``(x0, y0)`` and check they are real scalars."""
        args: tuple[Any, ...] = (self.x0, self.y0)
        if self.batch_fn is not None:
            try:
                batch = jax.eval_shape(self.batch_fn, jax.random.PRNGKey(0))
            except Exception as err:  # noqa: BLE001 - re-raised with context
                raise ValueError(
                    f"game {self.name!r}: batch_fn(key) failed: {err}"
                ) from err
            args = (*args, batch)
        for label, fn in (("loss1", self.loss1), ("loss2", self.loss2)):
            try:
                out = jax.eval_shape(fn, *args)
            except Exception as err:  # noqa: BLE001 - re-raised with context
                sig = "(x0, y0, batch)" if self.batch_fn is not None else "(x0, y0)"
                raise ValueError(
                    f"game {self.name!r}: {label} does not accept {sig} -- the initial points' "
                    f"pytree structure/shapes do not match what the loss expects: "
                    f"{type(err).__name__}: {err}"
                ) from err
            if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
                raise ValueError(
                    f"game {self.name!r}: {label} must return a scalar, got "
                    f"{getattr(out, 'shape', type(out))}"
                )
            if not jnp.issubdtype(out.dtype, jnp.floating):
                raise ValueError(
                    f"game {self.name!r}: {label} must return a real float, got {out.dtype}"
                )

    # -- evaluation --------------------------------------------------------------------

    @property
    def takes_batch(self) -> bool:
        """Whether the losses take a third ``batch`` argument."""
        return self.batch_fn is not None

    def _args(self, x: PyTree, y: PyTree, batch: PyTree) -> tuple[Any, ...]:
        if self.batch_fn is None:
            if batch is not None:
                raise ValueError(f"game {self.name!r} is deterministic; do not pass a batch")
            return (x, y)
        if batch is None:
            raise ValueError(f"game {self.name!r} takes a batch; pass batch=...")
        return (x, y, batch)

    def losses(self, x: PyTree, y: PyTree, batch: PyTree = None) -> tuple[Array, Array]:
        r"""Return :math:`(\ell_1(x, y), \ell_2(x, y))`."""
        args = self._args(x, y, batch)
        return self.loss1(*args), self.loss2(*args)

    def grads(self, x: PyTree, y: PyTree, batch: PyTree = None) -> tuple[PyTree, PyTree]:
        r"""Simultaneous gradient :math:`\xi = (\nabla_x \ell_1, \nabla_y \ell_2)` at ``(x, y)``."""
        if self.batch_fn is None:
            if batch is not None:
                raise ValueError(f"game {self.name!r} is deterministic; do not pass a batch")
            gx = jax.grad(lambda x_: self.loss1(x_, y))(x)
            gy = jax.grad(lambda y_: self.loss2(x, y_))(y)
        else:
            if batch is None:
                raise ValueError(f"game {self.name!r} takes a batch; pass batch=...")
            gx = jax.grad(lambda x_: self.loss1(x_, y, batch))(x)
            gy = jax.grad(lambda y_: self.loss2(x, y_, batch))(y)
        return gx, gy

    def grad_x(self, x: PyTree, y: PyTree, batch: PyTree = None) -> PyTree:
        r""":math:`\nabla_x \ell_1(x, y)` only (player 1's gradient)."""
        args = self._args(x, y, batch)
        return jax.grad(lambda x_: self.loss1(x_, *args[1:]))(x)

    def grad_y(self, x: PyTree, y: PyTree, batch: PyTree = None) -> PyTree:
        r""":math:`\nabla_y \ell_2(x, y)` only (player 2's gradient)."""
        args = self._args(x, y, batch)
        return jax.grad(lambda y_: self.loss2(x, y_, *args[2:]))(y)

    def vector_field(self, x: PyTree, y: PyTree, batch: PyTree = None) -> tuple[PyTree, PyTree]:
        r"""The gradient-flow field :math:`-\xi(z) = (-\nabla_x \ell_1, -\nabla_y \ell_2)`."""
        gx, gy = self.grads(x, y, batch)
        return jax.tree.map(jnp.negative, gx), jax.tree.map(jnp.negative, gy)

    def joint_losses(self) -> tuple[Callable[..., Array], Callable[..., Array]]:
        r"""The losses on the joint parameters, ``L_c((x, y)[, batch]) = loss_c(x, y[,
        batch])``: what :func:`bea.modified_equation` ``.to_jax`` and
        :func:`games.optax.game_drift_regularizer` take."""
        return (lambda p, *b: self.loss1(p[0], p[1], *b),
                lambda p, *b: self.loss2(p[0], p[1], *b))

    def sample_batch(self, key: Array) -> PyTree:
        """Sample one batch with ``batch_fn`` (``ValueError`` for deterministic games)."""
        if self.batch_fn is None:
            raise ValueError(f"game {self.name!r} is deterministic and has no batch_fn")
        return self.batch_fn(key)


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
    A = _as_float_array(A)
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
    dt = _default_float()

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


# ----------------------------------------------------------------------------------------
# mixture-of-Gaussians GAN
# ----------------------------------------------------------------------------------------


def mog_centers(n_modes: int = 8, radius: float = 2.0) -> Array:
    r"""Centres :math:`\mu_k = r(\cos 2\pi k/K, \sin 2\pi k/K)`, :math:`k < K`, shape ``(K, 2)``."""
    angles = 2.0 * np.pi * np.arange(n_modes) / n_modes
    c = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return jnp.asarray(c, dtype=_default_float())


def _nearest_mode(samples: Array, centers: Array) -> tuple[Array, Array]:
    """Index of and distance to the nearest centre for each sample."""
    d = jnp.linalg.norm(samples[:, None, :] - centers[None, :, :], axis=-1)
    return jnp.argmin(d, axis=1), jnp.min(d, axis=1)


@jax.jit
def high_quality_fraction(
    samples: Array, centers: Array, std: float, n_std: float = 3.0
) -> Array:
    r"""Fraction of samples within ``n_std`` standard deviations of some mode.

    :math:`\frac1N \#\{i : \min_k \|s_i - \mu_k\| \le n_{\rm std}\,\sigma\}`.
    """
    _, dist = _nearest_mode(jnp.asarray(samples), jnp.asarray(centers))
    return jnp.mean(dist <= n_std * std)


@partial(jax.jit, static_argnames=("min_fraction",))
def mode_coverage(
    samples: Array,
    centers: Array,
    std: float,
    n_std: float = 3.0,
    min_fraction: float | None = None,
) -> Array:
    r"""Number of modes that receive at least ``min_fraction`` of the samples within ``n_std``.

    Mode :math:`k` is *covered* when
    :math:`\frac1N\#\{i : \|s_i - \mu_k\| \le n_{\rm std}\sigma\} \ge` ``min_fraction``.
    ``min_fraction`` defaults to :math:`1/(4K)`, a quarter of the mass a mode receives under
    the (uniform) data distribution.
    """
    samples = jnp.asarray(samples)
    centers = jnp.asarray(centers)
    k = centers.shape[0]
    if min_fraction is None:
        min_fraction = 1.0 / (4 * k)
    idx, dist = _nearest_mode(samples, centers)
    good = dist <= n_std * std
    counts = jnp.zeros(k).at[idx].add(good.astype(jnp.zeros(()).dtype))
    return jnp.sum(counts / samples.shape[0] >= min_fraction)


def _init_mlp(
    key: Array,
    in_size: int,
    out_size: int | str,
    width: int,
    depth: int,
    activation: Callable[[Array], Array],
    dtype: Any,
) -> eqx.nn.MLP:
    r"""An :class:`equinox.nn.MLP` initialised on the host with NumPy.

    Same distribution as equinox's default (weights and biases of each linear layer
    :math:`\sim U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`), seeded from ``key``;
    this avoids compiling the PRNG-heavy initialiser, which dominates start-up on CPU.
    """
    abstract = eqx.filter_eval_shape(
        eqx.nn.MLP, in_size, out_size, width, depth, activation=activation, key=key,
        dtype=dtype,
    )
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    weights, biases = [], []
    for layer in abstract.layers:
        lim = 1.0 / np.sqrt(layer.weight.shape[-1])
        weights.append(jnp.asarray(rng.uniform(-lim, lim, layer.weight.shape), dtype=dtype))
        biases.append(jnp.asarray(rng.uniform(-lim, lim, layer.bias.shape), dtype=dtype))
    return eqx.tree_at(
        lambda m: [f(layer) for layer in m.layers for f in (lambda u: u.weight, lambda u: u.bias)],
        abstract,
        [a for pair in zip(weights, biases, strict=True) for a in pair],
    )


class MixtureGAN(Game):
    r"""A small MLP GAN on a ring of Gaussians (returned by :func:`mog_gan`).

    Player 1 (``x``) is the **generator** parameters, player 2 (``y``) the **discriminator**
    parameters; both are pytrees of arrays (the array part of an :class:`equinox.nn.MLP`,
    obtained with :func:`equinox.partition`; the non-array part is stored in
    ``gen_static``/``disc_static``).  A batch is ``(real, z)`` with ``real`` of shape
    ``(B, 2)`` and latent noise ``z`` of shape ``(B, latent_dim)``.  With
    :math:`D` the discriminator logit and :math:`G` the generator,

    .. math::

        \ell_1(x, y; b) = -\tfrac1B\sum_j \log\sigma(D_y(G_x(z_j)))
        \quad\text{(non-saturating generator loss)},

        \ell_2(x, y; b) = -\tfrac1B\sum_j \big[\log\sigma(D_y(r_j))
                          + \log\sigma(-D_y(G_x(z_j)))\big] \quad\text{(BCE)}.
    """

    centers: Array
    std: float = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    gen_static: Any
    disc_static: Any

    def __init__(
        self,
        key: Array,
        *,
        n_modes: int = 8,
        radius: float = 2.0,
        std: float = 0.02,
        latent_dim: int = 2,
        width: int = 32,
        depth: int = 2,
        batch_size: int = 128,
    ) -> None:
        if latent_dim < 1 or width < 1 or depth < 1 or batch_size < 1 or n_modes < 1:
            raise ValueError("mog_gan: n_modes, latent_dim, width, depth, batch_size must be >= 1")
        if std <= 0 or radius <= 0:
            raise ValueError("mog_gan: std and radius must be positive")
        kg, kd = jax.random.split(key)
        dt = _default_float()
        gen = _init_mlp(kg, latent_dim, 2, width, depth, jax.nn.relu, dt)
        disc = _init_mlp(kd, 2, "scalar", width, depth, jax.nn.leaky_relu, dt)
        gen_params, gen_static = eqx.partition(gen, eqx.is_inexact_array)
        disc_params, disc_static = eqx.partition(disc, eqx.is_inexact_array)
        centers = mog_centers(n_modes, radius)

        def generate(x: PyTree, z: Array) -> Array:
            return jax.vmap(eqx.combine(x, gen_static))(z)

        def logits(y: PyTree, u: Array) -> Array:
            return jax.vmap(eqx.combine(y, disc_static))(u)

        def loss1(x: PyTree, y: PyTree, batch: tuple[Array, Array]) -> Array:
            _, z = batch
            return -jnp.mean(jax.nn.log_sigmoid(logits(y, generate(x, z))))

        def loss2(x: PyTree, y: PyTree, batch: tuple[Array, Array]) -> Array:
            real, z = batch
            fake = generate(x, z)
            return -jnp.mean(jax.nn.log_sigmoid(logits(y, real))) - jnp.mean(
                jax.nn.log_sigmoid(-logits(y, fake))
            )

        @jax.jit
        def batch_fn(k: Array) -> tuple[Array, Array]:
            k1, k2 = jax.random.split(k)
            return (
                _sample_mog(k1, batch_size, centers, std),
                jax.random.normal(k2, (batch_size, latent_dim), dtype=dt),
            )

        self.loss1 = loss1
        self.loss2 = loss2
        self.x0 = gen_params
        self.y0 = disc_params
        self.name = f"mog_gan({n_modes} modes, latent={latent_dim}, width={width})"
        self.equilibrium = None
        self.batch_fn = batch_fn
        self.centers = centers
        self.std = float(std)
        self.latent_dim = int(latent_dim)
        self.batch_size = int(batch_size)
        self.gen_static = gen_static
        self.disc_static = disc_static

    @eqx.filter_jit
    def sample_data(self, key: Array, n: int) -> Array:
        """``n`` samples from the data mixture: a uniform mode plus ``std`` Gaussian noise."""
        return _sample_mog(key, n, self.centers, self.std)

    def sample_latent(self, key: Array, n: int) -> Array:
        """``n`` standard-normal latent vectors, shape ``(n, latent_dim)``."""
        return jax.random.normal(key, (n, self.latent_dim), dtype=self.centers.dtype)

    @eqx.filter_jit
    def generate(self, x: PyTree, z: Array) -> Array:
        """Generator samples :math:`G_x(z)` for a batch of latents ``z`` (shape ``(B, 2)``)."""
        return jax.vmap(eqx.combine(x, self.gen_static))(z)

    @eqx.filter_jit
    def sample_generator(self, x: PyTree, key: Array, n: int) -> Array:
        """``n`` generator samples with fresh latent noise."""
        return self.generate(x, self.sample_latent(key, n))

    @eqx.filter_jit
    def discriminator(self, y: PyTree, u: Array) -> Array:
        """Discriminator logits :math:`D_y(u)` for points ``u`` of shape ``(B, 2)``."""
        return jax.vmap(eqx.combine(y, self.disc_static))(u)

    def mode_coverage(
        self, samples: Array, n_std: float = 3.0, min_fraction: float | None = None
    ) -> Array:
        """Number of covered modes; see the module function :func:`mode_coverage`."""
        return mode_coverage(samples, self.centers, self.std, n_std, min_fraction)

    def high_quality_fraction(self, samples: Array, n_std: float = 3.0) -> Array:
        """Fraction of samples within ``n_std`` std of a mode; see :func:`high_quality_fraction`."""
        return high_quality_fraction(samples, self.centers, self.std, n_std)


@partial(jax.jit, static_argnums=(1,))
def _sample_mog(key: Array, n: int, centers: Array, std: float) -> Array:
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (n,), 0, centers.shape[0])
    return centers[idx] + std * jax.random.normal(k2, (n, 2), dtype=centers.dtype)


def mog_gan(
    key: Array,
    *,
    n_modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    latent_dim: int = 2,
    width: int = 32,
    depth: int = 2,
    batch_size: int = 128,
) -> MixtureGAN:
    r"""A small GAN on a 2-D mixture of ``n_modes`` Gaussians on a circle.

    Data: :math:`\mu_k = r(\cos\frac{2\pi k}{K}, \sin\frac{2\pi k}{K})` plus isotropic noise of
    standard deviation ``std`` (defaults :math:`K=8`, :math:`r=2`, :math:`\sigma=0.02`).
    Generator and discriminator are :class:`equinox.nn.MLP` s of ``depth`` hidden layers of
    ``width`` units (ReLU / leaky-ReLU).  Player 1 = generator (non-saturating loss),
    player 2 = discriminator (BCE loss); losses are ``loss(x, y, batch)`` with
    ``batch = (real, z)``.  See :class:`MixtureGAN` for the helpers ``sample_data``,
    ``generate``, ``mode_coverage``, ``high_quality_fraction``.  Defaults are CPU-sized.
    """
    return MixtureGAN(
        key,
        n_modes=n_modes,
        radius=radius,
        std=std,
        latent_dim=latent_dim,
        width=width,
        depth=depth,
        batch_size=batch_size,
    )

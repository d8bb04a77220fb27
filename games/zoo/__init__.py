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

from .classic import bilinear, dirac_gan, random_quadratic, rotational
from .game import Game, check_compatible
from .mixture import MixtureGAN, high_quality_fraction, mode_coverage, mog_centers, mog_gan

__all__ = [
    "Game",
    "check_compatible",
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

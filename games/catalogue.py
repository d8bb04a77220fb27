"""The games' ``bea reproduce`` experiments, listed without importing them (the
``bea.experiments`` entry point; each target is loaded only when run)."""

from __future__ import annotations

from bea.experiments import Experiment


def experiments() -> list[Experiment]:
    """The ``bea.experiments`` entry point: the games' ``bea reproduce`` experiments."""
    return [
        Experiment("rotational-game", "rotational game: drift of simultaneous GD and its "
                   "cancellation (Rosca et al. 2021)",
                   "games.experiments:reproduce_rotational_game"),
        Experiment("dirac-gan", "Dirac-GAN: conservation and drift regularisers",
                   "games.experiments:reproduce_dirac_gan"),
        Experiment("mog-gan", "GAN on a mixture of Gaussians with drift regularisers",
                   "games.experiments:reproduce_mog_gan"),
    ]

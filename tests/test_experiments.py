"""The ``bea reproduce`` catalogue: built-in labs and entry-point experiments, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bea import experiments


def test_games_register_through_entry_points():
    table = experiments.available_experiments()
    assert {"dirac-gan", "rotational-game", "mog-gan"} <= set(table)
    assert table["dirac-gan"].target.startswith("games.")


def test_unknown_experiment_suggests_names():
    with pytest.raises(ValueError, match="Did you mean dirac-gan"):
        experiments.get_experiment("dirac_gn")


def test_listing_loads_no_experiment():
    # listing the catalogue must not import the experiments' modules (they need JAX)
    code = ("import sys, bea.experiments as e; before = set(sys.modules); "
            "e.available_experiments(); new = set(sys.modules) - before; "
            "bad = [m for m in new if m.startswith(('games.experiments', 'games.mog', "
            "'bea.dynamics.', 'diffrax', 'optax'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

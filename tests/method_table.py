"""The methods that the compile and modified-loss tests run over, in one place.

``SHARED``: one-player methods on shared parameters (numeric method parameters, so that
coefficients are exact rationals); ``GAMES``: two-player methods with per-player rates.
"""

from __future__ import annotations

import sympy as sp

from bea.registry import get_method

R = sp.Rational


def _get(name, **options):
    return lambda: get_method(name, **options)


# keys are test ids; every method comes from bea's registry (games' through its entry point)
SHARED = {
    "gd": _get("gd"), "explicit_midpoint": _get("explicit-midpoint"), "heun": _get("heun"),
    "rk4": _get("rk4"), "extragradient": _get("extragradient"),
    "proximal_point": _get("proximal-point"),
    "heavy_ball": _get("heavy-ball", beta=R(1, 3)), "nesterov": _get("nesterov", beta=R(1, 2)),
    "sgd2": _get("sgd", batches=2), "sgd3": _get("sgd", batches=3),
    "sgd3_avg": _get("sgd", batches=3, average_orderings=True),
}
GAMES = {
    "simultaneous": _get("simultaneous", lr=(1, 2)),
    "alternating": _get("alternating", lr=(R(1, 2), 1)),
    "game_extragradient": _get("game-extragradient", lr=(1, 1)),
    "optimistic": _get("optimistic", lr=(1, R(1, 3))),
}

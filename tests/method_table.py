"""The methods that the compile and modified-loss tests run over, in one place.

``SHARED``: one-player methods on shared parameters (numeric method parameters, so that
coefficients are exact rationals); ``GAMES``: two-player methods with per-player rates.
"""

from __future__ import annotations

import sympy as sp

import games
from bea import methods as M

R = sp.Rational

SHARED = {
    "gd": M.gd, "explicit_midpoint": M.explicit_midpoint, "heun": M.heun, "rk4": M.rk4,
    "extragradient": M.extragradient, "proximal_point": M.proximal_point,
    "heavy_ball": lambda: M.heavy_ball(R(1, 3)), "nesterov": lambda: M.nesterov(R(1, 2)),
    "sgd2": lambda: M.sgd(2), "sgd3": lambda: M.sgd(3),
    "sgd3_avg": lambda: M.sgd(3, average_orderings=True),
}
GAMES = {
    "simultaneous": lambda: games.simultaneous((1, 2)),
    "alternating": lambda: games.alternating((R(1, 2), 1)),
    "game_extragradient": lambda: games.extragradient((1, 1)),
    "optimistic": lambda: games.optimistic((1, R(1, 3))),
}

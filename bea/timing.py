"""Choosing between equivalent compiled programs by timing them where they will run.

Used by :meth:`bea.compile.CompiledModifiedEquation.tune_ad_mode` and
:func:`bea.optax.tune_ad_mode`: the candidates compute the same value (the AD modes of a
multilinear derivative), and which is fastest depends on the model, its size and the
device, so the choice is measured rather than predicted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping

import jax

__all__ = ["AD_MODE_PAIRS", "fastest_by_rounds"]

#: the AD-mode pairs ``(mode for nodes with <= 1 tangent, mode for >= 2)`` a tuner tries;
#: the first is the default rule ``"by-arity"``
AD_MODE_PAIRS = (("reverse-over-forward", "forward-over-reverse"),
                 ("reverse-over-forward", "reverse-over-forward"),
                 ("forward-over-reverse", "reverse-over-forward"),
                 ("forward-over-reverse", "forward-over-reverse"))


def fastest_by_rounds(fns: Mapping[Hashable, Callable[[], object]], repeats: int = 5,
                      rounds: int = 3) -> dict[Hashable, float]:
    """Seconds per call of each ``fns[key]()`` (blocked until ready): every candidate is
    called once first (compilation), then timed in ``rounds`` alternating rounds of
    ``repeats`` calls; a candidate's score is its fastest round's median, so load from
    other processes hits the candidates alike."""
    if not fns:
        raise ValueError("fastest_by_rounds: no candidates")
    for fn in fns.values():
        jax.block_until_ready(fn())
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(max(1, int(rounds))):
        for key, fn in fns.items():
            ts = []
            for _ in range(max(1, int(repeats))):
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                ts.append(time.perf_counter() - t0)
            best[key] = min(best[key], statistics.median(ts))
    return best

"""The step-size grid of a verification: ``T/h`` an integer, a span wide enough for a slope."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_SPAN", "MIN_STEPS", "format_h", "integer_step_sizes", "suggest_grid",
           "validate_grid"]

MIN_STEPS = 4
MIN_SPAN = 2.0
SUGGESTED_SPAN = 4.0
INTEGER_RTOL = 1e-9


def format_h(h: float) -> str:
    return f"{h:.6g}"


def integer_step_sizes(
    horizon: float, h_max: float, *, factor: float = SUGGESTED_SPAN, num: int = 5
) -> list[float]:
    """Step sizes ``T / n`` with integer ``n``, roughly geometric, spanning ``factor``.

    The smallest step count is :math:`n_{\\min} = \\max(4, \\lceil T / h_{\\max} \\rceil)`;
    the counts are geometric between :math:`n_{\\min}` and
    :math:`\\mathrm{round}(\\mathrm{factor} \\cdot n_{\\min})` (rounded, deduplicated), so
    every returned ``h`` divides ``horizon`` exactly (up to float round-off) and the
    ``h`` values span at least ``factor`` (for ``num >= 2``).

    Returns the step sizes in decreasing order.
    """
    if not (horizon > 0 and h_max > 0 and math.isfinite(horizon) and math.isfinite(h_max)):
        raise ValueError("horizon and h_max must be positive and finite")
    n_min = max(MIN_STEPS, math.ceil(horizon / h_max - 1e-9))
    n_max = max(n_min + 1, round(factor * n_min))
    ns = sorted({round(x) for x in np.geomspace(n_min, n_max, max(num, 2))})
    return [horizon / n for n in ns]


def suggest_grid(horizon: float, h_max: float) -> str:
    hs = integer_step_sizes(horizon, h_max)
    ns = tuple(round(horizon / h) for h in hs)
    approx = ", ".join(f"{h:.4g}" for h in hs)
    return f"hs = [T / n for n in {ns}] with T = {horizon:g}, i.e. approximately [{approx}]"


def validate_grid(hs: Sequence[float], horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Check the step sizes and horizon; return (hs ascending, n per h)."""
    try:
        T = float(horizon)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"horizon must be a positive number, got {horizon!r}") from exc
    if not (T > 0 and math.isfinite(T)):
        raise ValueError(f"horizon must be positive and finite, got {horizon!r}")
    h_arr = np.asarray([float(h) for h in hs], dtype=np.float64)
    if h_arr.ndim != 1 or h_arr.size == 0:
        raise ValueError("hs must be a non-empty sequence of step sizes")
    if not np.all(np.isfinite(h_arr) & (h_arr > 0)):
        raise ValueError(f"all step sizes must be positive and finite, got {list(h_arr)}")
    h_arr = np.sort(h_arr)
    ns = np.empty(h_arr.shape, dtype=np.int64)
    for i, h in enumerate(h_arr):
        ratio = T / h
        if ratio < MIN_STEPS - 1e-9:
            raise ValueError(
                f"h={format_h(h)} gives only {ratio:.3g} < {MIN_STEPS} steps over the horizon "
                f"T={T:g}: a global-error test needs at least {MIN_STEPS} steps; use "
                f"h <= T/{MIN_STEPS} = {T / MIN_STEPS:.4g} or a longer horizon"
            )
        n = round(ratio)
        if abs(n * h - T) > INTEGER_RTOL * T:
            raise ValueError(
                f"horizon T={T:g} is not an integer multiple of h={format_h(h)} "
                f"(T/h = {ratio:.6g}); choose hs so that T/h is an integer, e.g. "
                + suggest_grid(T, float(h_arr.max()))
            )
        ns[i] = n
    span = float(h_arr.max() / h_arr.min())
    if span < MIN_SPAN:
        raise ValueError(
            f"h range too coarse for a slope: use hs spanning at least a factor "
            f"{SUGGESTED_SPAN:g}, e.g. {suggest_grid(T, float(h_arr.max()))} "
            f"(the given hs span only a factor {span:.3g})"
        )
    return h_arr, ns


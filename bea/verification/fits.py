"""Slope fits of log(error) against log(h), and the cell flags that exclude points from them.

A cell (order, h, initial point) is flagged ``'roundoff'`` when its error is at the
round-off / solver-noise floor ``max(r eps s, q (rtol s + atol))`` (``s`` the size of the
iterates), ``'diverged'`` when non-finite or huge, ``'solver_failed'`` when the ODE solve
did not reach its end time; flagged cells are left out of the fits.
"""

from __future__ import annotations

import statistics

import numpy as np

from .grid import MIN_SPAN, format_h

__all__ = ["DIVERGED", "EXCLUDED", "MARKS", "ROUNDOFF", "SOLVER_FAILED", "cell_flags",
           "classify", "fit_slope", "fit_slopes", "fit_table", "nan_median"]

ROUNDOFF = "roundoff"
DIVERGED = "diverged"
SOLVER_FAILED = "solver_failed"
EXCLUDED = (ROUNDOFF, DIVERGED, SOLVER_FAILED)
MARKS = {ROUNDOFF: "R", DIVERGED: "D", SOLVER_FAILED: "F"}


def fit_slope(
    hs: np.ndarray, errors: np.ndarray, usable: np.ndarray | None = None, *, min_points: int = 3
) -> tuple[float | None, str | None]:
    """Least-squares slope :math:`s` of :math:`\\log e = s \\log h + c` over usable points.

    Returns ``(slope, None)``, or ``(None, reason)`` when fewer than ``min_points``
    usable (finite, positive, not excluded) points remain.
    """
    errors = np.asarray(errors, dtype=np.float64)[:, None]
    usable = None if usable is None else np.asarray(usable, dtype=bool)[:, None]
    slope, count, _ = fit_slopes(hs, errors, usable)
    k = int(count[0])
    if k < min_points or not np.isfinite(slope[0]):
        return None, f"only {k} usable h value(s), need >= {min_points}"
    return float(slope[0]), None


def fit_slopes(
    hs: np.ndarray, errors: np.ndarray, usable: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slopes of :math:`\\log e` against :math:`\\log h` along axis ``-2``
    of ``errors`` (``[..., K, B]``, ``K = len(hs)``), every column at once, over the cells
    that are finite, positive and ``usable``.  Returns ``(slopes, counts, spans)`` of
    shape ``[..., B]``: the slope (nan with fewer than two distinct usable ``h``), the
    number of usable cells and ``max h / min h`` over them."""
    hs = np.asarray(hs, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    with np.errstate(all="ignore"):
        use = np.isfinite(errors) & (errors > 0)
        if usable is not None:
            use &= usable
        shape = (len(hs), 1)
        x = np.log(hs).reshape(shape)
        y = np.where(use, np.log(np.where(use, errors, 1.0)), 0.0)
        m = use.astype(np.float64)
        cnt = m.sum(axis=-2)
        mx = (m * x).sum(axis=-2, keepdims=True) / np.maximum(cnt, 1)[..., None, :]
        my = y.sum(axis=-2, keepdims=True) / np.maximum(cnt, 1)[..., None, :]
        sxy = (m * (x - mx) * (y - my)).sum(axis=-2)
        sxx = (m * (x - mx) ** 2).sum(axis=-2)
        slopes = np.where(sxx > 0, sxy / sxx, np.nan)
        hs_b = np.broadcast_to(hs.reshape(shape), use.shape)
        spans = (np.where(use, hs_b, -np.inf).max(axis=-2)
                 / np.where(use, hs_b, np.inf).min(axis=-2))
    return slopes, cnt, spans



def nan_median(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median over ``axis`` of the finite entries (nan where none is finite).

    One sort (non-finite entries mapped to nan sort last) and two gathers: ``np.nanmedian``
    goes through masked arrays on small inputs, which cost more than the whole warm
    verification kernel at a few initial points (bench_verify)."""
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    s = np.sort(np.where(np.isfinite(a), a, np.nan), axis=-1)
    n = np.isfinite(s).sum(axis=-1)
    lo = np.maximum((n - 1) // 2, 0)[..., None]
    hi = np.maximum(n // 2, 0)[..., None]
    med = 0.5 * (np.take_along_axis(s, lo, -1) + np.take_along_axis(s, hi, -1))[..., 0]
    return np.where(n > 0, med, np.nan)


def classify(
    err: np.ndarray,
    ok: np.ndarray,
    scale: np.ndarray,
    norm0: np.ndarray,
    eps: float,
    rtol: float,
    atol: float,
    roundoff_factor: float,
    solver_factor: float,
    diverge_factor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-point masks (roundoff, diverged, failed) and the noise floor."""
    with np.errstate(all="ignore"):
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        floor = np.maximum(roundoff_factor * eps * scale, solver_factor * (rtol * scale + atol))
        diverged = ~np.isfinite(err) | (err > diverge_factor * np.maximum(1.0, norm0))
        failed = ~ok & ~diverged
        roundoff = ~diverged & ~failed & (err <= floor)
    return roundoff, diverged, failed, floor


def _flagged_cells(roundoff: np.ndarray, diverged: np.ndarray, failed: np.ndarray
                   ) -> list[tuple[str, np.ndarray]]:
    """``(flag, [O, K] mask)``: the ``[O, K, B]`` masks reduced over the points, one
    reduction per mask (per-cell numpy calls dominate the warm call at a few points)."""
    return [(name, m.any(axis=-1)) for name, m in
            ((ROUNDOFF, roundoff), (DIVERGED, diverged), (SOLVER_FAILED, failed))]


def cell_flags(roundoff: np.ndarray, diverged: np.ndarray, failed: np.ndarray) -> list:
    """Union over points of the flags: ``[O, K, B]`` masks -> ``[O][K]`` lists."""
    masks = [(name, m.tolist()) for name, m in _flagged_cells(roundoff, diverged, failed)]
    return [[[name for name, m in masks if m[i][j]] for j in range(roundoff.shape[1])]
            for i in range(roundoff.shape[0])]


def fit_table(
    kind: str,
    hs: np.ndarray,
    orders: list[int],
    err: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray, np.ndarray],
    min_points: int,
    warnings_out: list[str],
) -> tuple[dict[int, float | None], dict[int, list[float | None]]]:
    roundoff, diverged, failed = masks
    excluded = roundoff | diverged | failed
    slopes: dict[int, float | None] = {}
    per_point: dict[int, list[float | None]] = {}
    n_points = err.shape[2]
    # least-squares slopes of log e against log h for every (order, point) at once
    fitted_all, cnt, span_all = fit_slopes(hs, err, ~excluded)         # [O, B] each
    enough = (cnt >= min_points) & np.isfinite(fitted_all)
    fitted_l, enough_l = fitted_all.tolist(), enough.tolist()
    flagged = _flagged_cells(roundoff, diverged, failed)
    for i, p in enumerate(orders):
        vals: list[float | None] = [
            fitted_l[i][b] if enough_l[i][b] else None for b in range(n_points)
        ]
        per_point[p] = vals
        fitted = [v for v in vals if v is not None]
        slopes[p] = float(statistics.median(fitted)) if fitted else None
        # explain exclusions
        for name, m in flagged:
            rows = np.flatnonzero(m[i])
            if rows.size:
                hs_txt = ", ".join(format_h(hs[j]) for j in rows)
                why = {
                    ROUNDOFF: "error at the round-off/solver-noise floor, not truncation error",
                    DIVERGED: "non-finite or huge error",
                    SOLVER_FAILED: "the ODE solver did not reach the end time",
                }[name]
                warnings_out.append(
                    f"order {p} ({kind}): h = {hs_txt} flagged '{name}' ({why}); "
                    "excluded from the slope fit"
                )
        if not fitted:
            usable = (~excluded[i]).sum(axis=0)
            warnings_out.append(
                f"order {p} ({kind}): no slope fitted (None): at most {int(usable.max())} usable "
                f"h value(s) per initial point, need >= {min_points} "
                f"(excluded cells: roundoff={int(roundoff[i].sum())}, "
                f"diverged={int(diverged[i].sum())}, solver_failed={int(failed[i].sum())})"
            )
        elif len(fitted) < n_points:
            warnings_out.append(
                f"order {p} ({kind}): slope fitted for only {len(fitted)}/{n_points} initial "
                "points; the median is over those"
            )
        if fitted:
            spans = span_all[i][enough[i]]
            if spans.size and spans.min() < MIN_SPAN:
                warnings_out.append(
                    f"order {p} ({kind}): the usable hs span only a factor {spans.min():.3g}; "
                    "the slope is unreliable"
                )
    return slopes, per_point


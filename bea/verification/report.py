"""The result of a verification: one :class:`ErrorTable` per kind of error, and the report.

Global errors ``||theta_n - y(T)||`` and local (one-step) errors ``||Psi_h(theta_0) -
y(h)||`` are the same kind of object: errors per ``[order, h]`` (medians over initial
points) and per ``[order, h, point]``, fitted slopes, expected slopes, cell flags and the
round-off floor.  :class:`VerificationReport` holds one table per kind (``report.tables``)
plus what the sweep was; its JSON goes through :mod:`bea.files` (atomic, non-finite
numbers as ``null``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np

from ..files import atomic_write_json, save_figure
from .fits import EXCLUDED, MARKS

__all__ = ["KINDS", "ErrorTable", "VerificationReport", "load_json"]

#: the kinds of error a verification measures
KINDS = ("global", "local")

_TITLES = {"global": "Global error ||theta_n - y(T)||",
           "local": "Local error ||Psi_h(theta_0) - y(h)||"}


def _json_array(a: np.ndarray | None) -> Any:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()


def _from_json_array(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    return np.array(x, dtype=object).astype(np.float64)  # None -> nan


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _int_keys(x: dict[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in x.items()}


@dataclass
class ErrorTable:
    """Errors of one kind (``"global"`` or ``"local"``) over the ``[order, h]`` grid.

    ``errors``: median over initial points (finite values only) per ``[order, h]``;
    ``errors_all``: per ``[order, h, point]``; ``slopes``: ``order ->`` fitted slope
    (median over points, None when none could be fitted: the reason is in the report's
    warnings); ``slopes_all``: per point; ``expected``: ``order ->`` expected slope;
    ``flags[i_order][i_h]``: flags raised by any point (``'roundoff'``, ``'diverged'``,
    ``'solver_failed'``; flagged points are excluded from the fits); ``floors``: median
    round-off / solver-noise threshold per cell.
    """

    kind: str
    errors: np.ndarray
    slopes: dict[int, float | None]
    expected: dict[int, int]
    flags: list[list[list[str]]]
    errors_all: np.ndarray | None = None
    slopes_all: dict[int, list[float | None]] = dc_field(default_factory=dict)
    floors: np.ndarray | None = None

    def check(self, orders: list[int], tol: float = 0.15) -> dict[int, bool]:
        """``order -> |fitted - expected| <= tol`` (False when no slope was fitted)."""
        return {p: self.slopes[p] is not None and abs(self.slopes[p] - self.expected[p]) <= tol
                for p in orders}

    def lines(self, hs: np.ndarray, n_steps: np.ndarray, orders: list[int],
              title: str) -> list[str]:
        head = f"{'h':>11} {'n':>6} |" + "".join(f"{'order ' + str(p):>14}" for p in orders)
        lines = [title, head, "-" * len(head)]
        for j, h in enumerate(hs):
            row = f"{h:11.4e} {int(n_steps[j]):6d} |"
            for i in range(len(orders)):
                e = self.errors[i, j]
                mark = "".join(MARKS[f] for f in self.flags[i][j] if f in MARKS)
                cell = f"{e:.3e}" if np.isfinite(e) else "nan"
                row += f"{cell:>11} {mark:<2}"
            lines.append(row)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "errors": _json_array(self.errors),
            "errors_all": _json_array(self.errors_all),
            "slopes": {str(k): _json_float(v) for k, v in self.slopes.items()},
            "slopes_all": {str(k): [_json_float(x) for x in v]
                           for k, v in self.slopes_all.items()},
            "expected": {str(k): int(v) for k, v in self.expected.items()},
            "flags": [[list(c) for c in row] for row in self.flags],
            "floors": _json_array(self.floors),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ErrorTable:
        return cls(kind=d["kind"], errors=_from_json_array(d["errors"]),
                   errors_all=_from_json_array(d.get("errors_all")),
                   slopes=_int_keys(d["slopes"]), slopes_all=_int_keys(d.get("slopes_all", {})),
                   expected=_int_keys(d["expected"]),
                   flags=[[list(c) for c in row] for row in d["flags"]],
                   floors=_from_json_array(d.get("floors")))


@dataclass
class VerificationReport:
    """Result of :func:`bea.verification.run_verification` / :func:`bea.verify`.

    ``hs`` (ascending) and ``n_steps`` (``n = T/h``), ``orders`` tested, ``horizon``;
    ``tables["global"]`` and (unless ``local=False``) ``tables["local"]`` are the
    :class:`ErrorTable` of each kind.  ``method`` names what was verified (titles, file
    names) and ``method_order`` its order q (expected slopes ``max(p+1, q)`` and
    ``max(p+2, q+1)``).  ``notes``: how the sweep was run; ``warnings``: what a reader
    should know before trusting the slopes; ``dtype``/``low_precision``: the working
    precision.  The old flat names (``errors``, ``local_slopes``, ...) read the tables.
    """

    hs: np.ndarray
    orders: list[int]
    horizon: float
    n_steps: np.ndarray
    tables: dict[str, ErrorTable]
    notes: list[str]
    dtype: str
    warnings: list[str] = dc_field(default_factory=list)
    low_precision: bool = False
    solver: str = "dopri8"
    rtol: float = 1e-12
    atol: float = 1e-14
    n_initial: int = 1
    sharded: bool = False
    timings: dict[str, float] = dc_field(default_factory=dict)
    method: str | None = None
    method_order: int = 1

    # -- tables -------------------------------------------------------------

    def table(self, kind: str = "global") -> ErrorTable:
        """The :class:`ErrorTable` of ``kind`` (``"global"`` or ``"local"``)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be 'global' or 'local', got {kind!r}")
        if kind not in self.tables:
            raise ValueError("local errors were not computed (local=False)")
        return self.tables[kind]

    def _get(self, kind: str, attr: str, empty: Any = None) -> Any:
        t = self.tables.get(kind)
        return empty if t is None else getattr(t, attr)

    # flat views of the tables (one storage: the tables)
    errors = property(lambda self: self._get("global", "errors"))
    errors_all = property(lambda self: self._get("global", "errors_all"))
    slopes = property(lambda self: self._get("global", "slopes", {}))
    slopes_all = property(lambda self: self._get("global", "slopes_all", {}))
    expected_slopes = property(lambda self: self._get("global", "expected", {}))
    flags = property(lambda self: self._get("global", "flags"))
    floors = property(lambda self: self._get("global", "floors"))
    local_errors = property(lambda self: self._get("local", "errors"))
    local_errors_all = property(lambda self: self._get("local", "errors_all"))
    local_slopes = property(lambda self: self._get("local", "slopes", {}))
    local_slopes_all = property(lambda self: self._get("local", "slopes_all", {}))
    expected_local_slopes = property(lambda self: self._get("local", "expected", {}))
    local_flags = property(lambda self: self._get("local", "flags"))
    local_floors = property(lambda self: self._get("local", "floors"))

    # -- queries ------------------------------------------------------------

    def flag(self, order: int, h: float, kind: str = "global") -> list[str]:
        """Flags of the cell (order, h); ``h`` is matched to the nearest swept step size."""
        i = self.orders.index(order)
        j = int(np.argmin(np.abs(np.log(self.hs) - math.log(h))))
        return list(self.table(kind).flags[i][j])

    def check_slopes(self, tol: float = 0.15, kind: str = "global") -> dict[int, bool]:
        """``order -> |fitted - expected| <= tol`` (False when no slope was fitted)."""
        return self.table(kind).check(self.orders, tol)

    def assert_slopes(self, tol: float = 0.15, kind: str = "global") -> None:
        """Raise ``AssertionError`` (with the full table) unless every slope is within ``tol``."""
        ok = self.check_slopes(tol, kind)
        if not all(ok.values()):
            bad = [p for p, good in ok.items() if not good]
            raise AssertionError(f"{kind} slopes off by more than {tol} for orders {bad}\n{self}")

    def passed(self, tol: float = 0.15) -> bool:
        """Every global slope within ``tol`` of its expected value."""
        return all(self.check_slopes(tol).values())

    # -- text ---------------------------------------------------------------

    def __str__(self) -> str:
        prec = "  [LOW PRECISION]" if self.low_precision else ""
        what = f" of {self.method}" if self.method else ""
        lines = [
            f"BEA verification{what}: T={self.horizon:g}, dtype={self.dtype}{prec}, "
            f"solver={self.solver} (rtol={self.rtol:.1e}, atol={self.atol:.1e}), "
            f"{self.n_initial} initial point(s)" + (" [sharded]" if self.sharded else ""),
            "",
        ]
        med = " (median over initial points)" if self.n_initial > 1 else ""
        for kind in KINDS:
            if kind in self.tables:
                if kind != "global":
                    lines.append("")
                lines += self.tables[kind].lines(self.hs, self.n_steps, self.orders,
                                                 _TITLES[kind] + med)
        lines += ["", "Fitted slopes of log(error) vs log(h) (flagged cells excluded):"]
        for p in self.orders:
            parts = []
            for kind in KINDS:
                if kind in self.tables:
                    t = self.tables[kind]
                    s = t.slopes.get(p)
                    g = f"{s:.3f}" if s is not None else "None"
                    parts.append(f"{kind} {g} (expected {t.expected[p]})")
            lines.append(f"  order {p}: " + " | ".join(parts))
        if self.method_order > 1:
            lines.append(f"(the method has order {self.method_order}: f_1..f_"
                         f"{self.method_order - 1} vanish, so no truncation beats "
                         f"h^{self.method_order} globally)")
        lines.append(
            "Flags: R = round-off/solver-noise floor, D = diverged (non-finite or huge), "
            "F = ODE solver failed"
        )
        if self.warnings:
            lines += ["", "Warnings:"] + [f"  - {w}" for w in self.warnings]
        if self.notes:
            lines += ["", "Notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    # -- plotting -----------------------------------------------------------

    def _draw(self, ax: Any, kind: str) -> None:
        t = self.table(kind)
        colors = [f"C{i % 10}" for i in range(len(self.orders))]
        for i, p in enumerate(self.orders):
            e = t.errors[i]
            bad = np.array([any(f in EXCLUDED for f in t.flags[i][j])
                            for j in range(len(self.hs))])
            good = np.isfinite(e) & (e > 0) & ~bad
            s = t.slopes[p]
            lab = f"order {p}: slope {s:.2f}" if s is not None else f"order {p}: no slope"
            lab += f" (expected {t.expected[p]})"
            ax.loglog(self.hs[good], e[good], "o-", color=colors[i], label=lab)
            hollow = np.isfinite(e) & (e > 0) & bad
            if np.any(hollow):
                ax.loglog(self.hs[hollow], e[hollow], "o", mfc="none", color=colors[i])
            if np.any(good):
                j0 = int(np.flatnonzero(good)[0])  # hs ascending: smallest usable h
                h0, e0 = self.hs[j0], e[j0]
                ax.loglog(
                    self.hs, 0.4 * e0 * (self.hs / h0) ** t.expected[p], "--", color=colors[i],
                    alpha=0.6, label="reference slopes (offset)" if i == 0 else None,
                )
        if t.floors is not None and np.any(np.isfinite(t.floors)):
            ax.loglog(self.hs, np.nanmax(t.floors, axis=0), ":", color="0.5",
                      label="round-off floor")
        ax.set_xlabel("step size h")
        ax.set_ylabel("global error" if kind == "global" else "local (one-step) error")
        what = f"Global error at T = {self.horizon:g}" if kind == "global" else "Local error"
        ax.set_title(what, fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")

    def plot(self, path: str | os.PathLike | None = None, kind: str = "both") -> Any:
        r"""Log-log plot of error vs ``h`` per order, with dashed reference slopes.

        ``kind``: ``"global"``, ``"local"`` or ``"both"`` (default: side by side, global
        first, when local errors were computed).  The reference line for order :math:`p`
        is :math:`0.4\, e_0 (h / h_0)^{s}` with :math:`s` the expected slope, anchored
        just below the order's smallest-``h`` usable point :math:`(h_0, e_0)` (offset so
        that it stays visible when the data follow it exactly).  Flagged cells are drawn
        hollow; the round-off floor is dotted grey.  The title names the method.  Uses the
        Agg canvas (no pyplot state); saves to ``path`` atomically
        (:func:`bea.files.save_figure`, format from the suffix) when given and returns
        the :class:`matplotlib.figure.Figure`.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if kind == "both":
            kinds = [k for k in KINDS if k in self.tables]
        elif kind in KINDS:
            self.table(kind)
            kinds = [kind]
        else:
            raise ValueError(f"kind must be 'global', 'local' or 'both', got {kind!r}")
        fig = Figure(figsize=(6.4 * len(kinds), 4.8))
        FigureCanvasAgg(fig)
        for n, k in enumerate(kinds):
            self._draw(fig.add_subplot(1, len(kinds), n + 1), k)
        what = f" of {self.method}" if self.method else ""
        fig.suptitle(f"BEA verification{what} ({self.solver}, {self.dtype})")
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
        return fig

    # -- serialisation ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become ``None``)."""
        return {
            "hs": [float(h) for h in self.hs],
            "orders": [int(p) for p in self.orders],
            "horizon": float(self.horizon),
            "n_steps": [int(n) for n in self.n_steps],
            "tables": {k: t.to_dict() for k, t in self.tables.items()},
            "notes": list(self.notes),
            "dtype": self.dtype,
            "warnings": list(self.warnings),
            "low_precision": bool(self.low_precision),
            "solver": self.solver,
            "rtol": float(self.rtol),
            "atol": float(self.atol),
            "n_initial": int(self.n_initial),
            "sharded": bool(self.sharded),
            "timings": {k: float(v) for k, v in self.timings.items()},
            "method": self.method,
            "method_order": int(self.method_order),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerificationReport:
        """Inverse of :meth:`to_dict` (``None`` numbers come back as nan / ``None``)."""
        return cls(
            hs=np.asarray(d["hs"], dtype=np.float64),
            orders=[int(p) for p in d["orders"]],
            horizon=float(d["horizon"]),
            n_steps=np.asarray(d["n_steps"], dtype=np.int64),
            tables={k: ErrorTable.from_dict(t) for k, t in d["tables"].items()},
            notes=list(d.get("notes", [])),
            dtype=d["dtype"],
            warnings=list(d.get("warnings", [])),
            low_precision=bool(d.get("low_precision", False)),
            solver=d.get("solver", "dopri8"),
            rtol=float(d.get("rtol", 1e-12)),
            atol=float(d.get("atol", 1e-14)),
            n_initial=int(d.get("n_initial", 1)),
            sharded=bool(d.get("sharded", False)),
            timings={k: float(v) for k, v in d.get("timings", {}).items()},
            method=d.get("method"),
            method_order=int(d.get("method_order", 1)),
        )

    def save_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON atomically (:func:`bea.files.atomic_write_json`)."""
        atomic_write_json(path, self.to_dict(), indent=2)


def load_json(path: str | os.PathLike) -> VerificationReport:
    """Read a report written by :meth:`VerificationReport.save_json`."""
    with open(os.fspath(path), encoding="utf-8") as fh:
        return VerificationReport.from_dict(json.load(fh))

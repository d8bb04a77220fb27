"""Composition: methods applied one after the other."""

from __future__ import annotations

from collections.abc import Sequence

from .. import series as S
from .base import Method


class Composition(Method):
    """Methods applied in sequence (first ``methods[0]``), on a common set of colors."""

    def __init__(self, methods: Sequence[Method], name: str | None = None):
        if not methods:
            raise ValueError("compose needs at least one method")
        if any(m.history for m in methods):
            raise ValueError("compose takes one-step methods only (not multistep ones)")
        self.methods = tuple(methods)
        self.ncolors = max(m.ncolors for m in methods)
        self.name = name or " then ".join(m.name for m in methods)
        self.color_names = max((m.color_names for m in methods), key=len)

    def __repr__(self) -> str:
        return f"Composition({[repr(m) for m in self.methods]})"

    @property
    def parameters(self):
        return tuple(sorted({p for m in self.methods for p in m.parameters}, key=str))

    def _build_series(self, max_order):
        out = self.methods[0].series(max_order)
        for m in self.methods[1:]:
            out = S.compose(out, m.series(max_order))
        out.ncolors = self.ncolors
        return out

    def step(self, fields, state, h):
        for m in self.methods:
            state = m.step(fields, state, h)
        return state


def compose(methods: Sequence[Method], name: str | None = None) -> Composition:
    """The method that applies ``methods`` one after the other (each with step h)."""
    return Composition(methods, name)

"""Markdown tables for the benchmark reports in ``benchmarks/results/``."""

from __future__ import annotations

from collections.abc import Iterable


def table(header: list[str], rows: Iterable[str | list[str]]) -> list[str]:
    """Lines of a Markdown table: ``| a | b |``, the ``|---|`` rule, then one line per
    row.  A row is a list of cell strings, or a whole line already formatted (e.g. an
    error that spans the row)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(r if isinstance(r, str) else "| " + " | ".join(r) + " |")
    return lines

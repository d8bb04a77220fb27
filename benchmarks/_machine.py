"""Machine and load of a benchmark run: JSON fields, one Markdown line, and the writer of
``benchmarks/results/<stem>.{json,md}`` (the machine is shared: the load is part of the
result)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def begin_run() -> tuple[float, float, float]:
    """Set up a CPU benchmark process before JAX is imported (``JAX_PLATFORMS=cpu`` unless
    set, the repository root importable) and return the load average it starts under."""
    import sys

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return os.getloadavg()


def machine_info(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Platform, CPUs, jax version and device, and the load average before (given) and
    now (after the timed work)."""
    import jax

    return {"machine": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0]),
            "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())}


def machine_line(info: dict[str, Any]) -> str:
    """``Load average a -> b on N cores (shared machine); platform, jax v, device.``"""
    return (f"Load average {info['loadavg_before'][0]:.2f} -> {info['loadavg_after'][0]:.2f} "
            f"on {info['cpus']} cores (shared machine); {info['machine']}, "
            f"jax {info['jax']}, {info['device']}.")


def write_results(stem: str, result: dict[str, Any], markdown: str) -> None:
    """``results/<stem>.json`` and ``results/<stem>.md``, atomically (``bea.files``)."""
    from bea.files import atomic_write_json, atomic_write_text

    atomic_write_json(RESULTS / f"{stem}.json", result)
    atomic_write_text(RESULTS / f"{stem}.md", markdown)

"""Progress bars for long work (a thin layer over tqdm).

Uses the notebook widget only where ``ipywidgets`` is installed, so notebooks without it
get a plain text bar instead of tqdm's ``IProgress not found`` warning.
"""

from __future__ import annotations

from typing import Any


def progress_bar(total: int | None = None, *, desc: str = "", enabled: bool = True,
                 **kwargs: Any) -> Any:
    """A tqdm bar (``update(n)``, ``set_postfix(...)``, ``close()``, context manager)."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=False, **kwargs)

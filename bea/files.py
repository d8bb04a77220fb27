"""Files a run writes: atomic writes, output paths checked before work, resumable runs.

Every file ``bea`` writes (JSON reports, plots, checkpoints, caches) goes through
:func:`atomic_write_bytes`: a temporary file in the target's directory, flushed and
fsynced, then ``os.replace``, so an interrupted run never leaves a truncated file behind.
Output paths are checked with :func:`check_writable` *before* a long computation starts,
so a typo in ``--plot`` fails in a second, not after an hour.

Long runs (``bea reproduce``) keep their finished units of work in a :class:`Checkpoint`,
a small JSON file (never pickle) rewritten atomically after each unit; ``resume=True``
skips what is already there, provided the run's configuration is the same.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Checkpoint", "OutputPathError", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "check_writable", "check_writable_dir", "save_figure",
           "stop_cleanly", "Interrupted", "to_jsonable"]


class OutputPathError(ValueError):
    """An output path that cannot be written (missing folder, no permission, a folder)."""


def check_writable(path: str | os.PathLike, *, what: str = "output file") -> Path:
    """Refuse, before any work, a path that the run could not write at the end.

    The parent folder is created if missing (as the run would); the check writes and
    removes a temporary file there, so permissions, read-only mounts and full disks are
    caught too.
    """
    p = Path(os.fspath(path)).expanduser()
    if p.is_dir():
        raise OutputPathError(f"{what} {str(p)!r} is a folder: give a file name, e.g. "
                              f"{str(p / 'result')!r} plus the right suffix")
    _probe(p.parent if str(p.parent) else Path("."), f"{what} {str(p)!r}")
    return p


def _probe(folder: Path, what: str) -> None:
    """Create ``folder`` if missing and write and remove a temporary file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".bea-check-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputPathError(f"cannot write {what}: {e.strerror or e}; choose a folder you "
                              "can write to") from None


def check_writable_dir(path: str | os.PathLike, *, what: str = "output folder") -> Path:
    """Like :func:`check_writable` for a folder the run will fill."""
    p = Path(os.fspath(path)).expanduser()
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{what} {str(p)!r} exists and is not a folder")
    _probe(p, f"into {what} {str(p)!r}")
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from numpy/JAX scalars and arrays; non-finite floats become
    ``None`` (JSON has no NaN), so every file written here is strict JSON."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> None:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`) atomically."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, sort_keys=False)
    atomic_write_text(path, text + "\n")


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure atomically; the format is taken from the suffix."""
    import io

    p = Path(os.fspath(path))
    fmt = p.suffix.lstrip(".") or "png"
    buf = io.BytesIO()
    savefig_kwargs.setdefault("dpi", 110)
    fig.savefig(buf, format=fmt, **savefig_kwargs)
    atomic_write_bytes(p, buf.getvalue())
    return p


# a checkpoint file is small: refuse to read anything larger (a symlink to /dev/zero, a
# wrong file) instead of filling memory
_MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024


class Checkpoint:
    """Finished units of a long run, kept in one JSON file and rewritten atomically.

    ``config`` describes the run (sizes, seeds, step counts); a checkpoint written for a
    different config, or one that is unreadable, is ignored with a warning and started
    afresh, never half-trusted.  Values must be JSON-able (see :func:`to_jsonable`)::

        ckpt = Checkpoint(out / "eos.checkpoint.json", config, resume=args.resume)
        for lr in lrs:
            if ckpt.has(str(lr)):
                continue
            ckpt.put(str(lr), run_one(lr))      # written at once
    """

    version = 1

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any], *,
                 resume: bool = True) -> None:
        self.path = Path(os.fspath(path))
        self.config = to_jsonable(dict(config))
        self.units: dict[str, Any] = {}
        self.discarded: str | None = None
        if resume:
            self._load()

    def _load(self) -> None:
        p = self.path
        if not p.exists():
            return
        if not p.is_file():
            self.discarded = "not a regular file"
        else:
            self._read(p)
        if self.discarded:
            import warnings

            warnings.warn(f"ignoring checkpoint {str(p)!r}: {self.discarded}; starting afresh",
                          stacklevel=3)

    def _read(self, p: Path) -> None:
        try:
            if p.stat().st_size > _MAX_CHECKPOINT_BYTES:
                raise ValueError("too large")
            with open(p, "rb") as fh:
                data = json.loads(fh.read(_MAX_CHECKPOINT_BYTES + 1).decode("utf-8"))
            if not isinstance(data, dict) or data.get("version") != self.version:
                raise ValueError("unknown format")
            units = data.get("units")
            if not isinstance(units, dict):
                raise ValueError("no units")
            if data.get("config") != self.config:
                self.discarded = "written for another configuration"
            else:
                self.units = units
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
            self.discarded = f"unreadable ({e})"

    def has(self, key: str) -> bool:
        return key in self.units

    def get(self, key: str, default: Any = None) -> Any:
        return self.units.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.units[key] = to_jsonable(value)
        atomic_write_json(self.path, {"version": self.version, "config": self.config,
                                      "units": self.units}, indent=None)

    def __len__(self) -> int:
        return len(self.units)


@contextmanager
def stop_cleanly(what: str = "run") -> Iterator[None]:
    """Turn Ctrl-C into a plain message (results already written stay written); the CLI
    maps :class:`Interrupted` to exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"{what} interrupted; finished parts are saved, rerun with "
                          "--resume to continue") from None


class Interrupted(RuntimeError):
    """Raised by :func:`stop_cleanly` when the user pressed Ctrl-C."""

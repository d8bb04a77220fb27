r"""Opt-in on-disk cache of the verification kernels' compiled programs.

Off by default.  Compiling the verification kernels (the masked iterates and the batched
Dopri8 flows) is about half of the first :func:`bea.verify` call in a fresh process
(~1.2 s of ~2.2 s for GD on the built-in problem, 2-core EPYC of
``benchmarks/results/amd-epyc-2c``; a later process with the cache: ~1.0 s).  With a
cache folder, the compiled executables are written there and loaded by later processes;
tracing and lowering still run every time (they give the key), so the results are those
of a fresh compile.

Turn it on for the verification kernels only (no JAX setting is touched; JAX's own
persistent compilation cache stays as the user configured it):

* ``bea.verification.set_compile_cache("~/.cache/bea-verify")`` (``None`` turns it off);
* ``with bea.verification.compile_cache(path): ...`` (restores the previous setting);
* or the environment variable ``BEA_COMPILE_CACHE=/some/folder`` (read on every call;
  an explicit :func:`set_compile_cache` wins; ``BEA_COMPILE_CACHE=`` is off).

The key of an entry is the SHA-256 of the lowered program text (StableHLO: shapes,
dtypes, constants, the whole computation), the JAX and jaxlib versions, the backend and
device kind and ``XLA_FLAGS``: a changed loss, grid, batch or version misses and
compiles afresh.  Unreadable or stale entries are recompiled and rewritten.  Inputs
spread over several devices (sharded initial points) are never cached.

Entries are serialised executables (:mod:`jax.experimental.serialize_executable`, which
unpickles): point the cache only at a folder you own, as with any compilation cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax

__all__ = ["CachedKernel", "compile_cache", "compile_cache_dir", "set_compile_cache"]

ENV = "BEA_COMPILE_CACHE"
_UNSET = object()
_setting: Any = _UNSET          # _UNSET: follow the environment; None: off; else a folder


def set_compile_cache(path: str | os.PathLike | None) -> None:
    """Cache the verification kernels' compiled programs in ``path`` (created when
    needed), or turn the cache off with ``None``.  Overrides ``BEA_COMPILE_CACHE``."""
    global _setting
    _setting = None if path is None else str(Path(path).expanduser())


@contextlib.contextmanager
def compile_cache(path: str | os.PathLike | None) -> Iterator[None]:
    """:func:`set_compile_cache` for the ``with`` block only (the previous setting,
    environment included, is restored on exit)."""
    global _setting
    before = _setting
    set_compile_cache(path)
    try:
        yield
    finally:
        _setting = before


def compile_cache_dir() -> str | None:
    """The cache folder in use, or ``None`` (off): :func:`set_compile_cache` if it was
    called, else ``$BEA_COMPILE_CACHE`` (empty: off)."""
    if _setting is not _UNSET:
        return _setting
    env = os.environ.get(ENV)
    return str(Path(env).expanduser()) if env else None


def _single_device(leaves: list[Any]) -> bool:
    for x in leaves:
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
            return False
    return True


def _signature(leaves: list[Any], treedef: Any) -> Any:
    return (treedef, tuple((getattr(x, "shape", None), str(getattr(x, "dtype", type(x))),
                            bool(getattr(x, "weak_type", False))) for x in leaves))


class CachedKernel:
    """A jitted function that, while a cache folder is set (:func:`compile_cache_dir`),
    loads its compiled executable from that folder or compiles and stores it; otherwise
    it is the jitted function itself (no cost but one check).

    Within a process each input signature (structure, shapes, dtypes) is looked up on
    disk once; later calls go straight to the loaded executable.
    """

    def __init__(self, jitted: Callable[..., Any]):
        self.jitted = jitted
        self._loaded: dict[Any, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "jitted":            # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.jitted, name)   # trace, lower, eval_shape, ... of the jit

    def __call__(self, *args: Any) -> Any:
        folder = compile_cache_dir()
        if folder is None:
            return self.jitted(*args)
        leaves, treedef = jax.tree.flatten(args)
        if not _single_device(leaves):
            return self.jitted(*args)
        sig = (folder, _signature(leaves, treedef))
        exe = self._loaded.get(sig)
        if exe is None:
            exe = self._loaded[sig] = _load_or_compile(self.jitted, args, Path(folder))
        return exe(*args)


def _key(text: str) -> str:
    import jaxlib

    dev = jax.devices()[0]
    parts = [text, jax.__version__, jaxlib.__version__, jax.default_backend(),
             getattr(dev, "device_kind", ""), os.environ.get("XLA_FLAGS", "")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _load_or_compile(jitted: Any, args: tuple, folder: Path) -> Any:
    from jax.experimental import serialize_executable as se

    from ..files import atomic_write_bytes

    lowered = jitted.trace(*args).lower()
    path = folder / f"verify-{_key(lowered.as_text())}.xla"
    if path.is_file():
        try:
            return se.deserialize_and_load(path.read_bytes(), lowered.in_tree,
                                           lowered.out_tree)
        except Exception:       # stale or unreadable entry: compile afresh, rewrite below
            pass
    compiled = lowered.compile()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, se.serialize(compiled)[0])
    except OSError:             # read-only or full folder: the result is still right
        pass
    return compiled

"""Test-wide settings: keep the derivation cache out of the user's home directory, and
compile XLA:CPU programs without LLVM's expensive optimisation passes.

Why the XLA flags: most of the fast suite's time is XLA:CPU compiling the many small,
different programs the tests build once each (a compiled modified field per method and
order); these programs run for microseconds, so backend optimisation costs far more than
it saves (tests/test_compile.py: 87 s -> 68 s of CPU time).  The flags change code
generation only, not the float64 operations the assertions compare.  They are set before
any test module imports JAX; a caller's own XLA_FLAGS are kept (and win when they set the
same flag).  ``BEA_TEST_XLA_OPT=1`` turns this off to run the suite with the default
backend.
"""

from __future__ import annotations

import os
import tempfile

import pytest

_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("BEA_TEST_XLA_OPT", "0") != "1":
    os.environ["XLA_FLAGS"] = (_FAST_COMPILE + " " + os.environ.get("XLA_FLAGS", "")).strip()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache():
    old = os.environ.get("BEA_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="bea-cache-") as d:
        os.environ["BEA_CACHE_DIR"] = d
        yield
    if old is None:
        os.environ.pop("BEA_CACHE_DIR", None)
    else:
        os.environ["BEA_CACHE_DIR"] = old

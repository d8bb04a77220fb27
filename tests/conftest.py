"""Test-wide settings: keep the derivation cache out of the user's home directory."""

from __future__ import annotations

import os
import tempfile

import pytest


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

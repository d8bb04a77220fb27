"""The example notebooks execute headless (nbclient, the venv's ipykernel) and save figures."""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def test_implicit_regularisation_notebook(tmp_path, monkeypatch):
    # the kernel inherits the environment: headless matplotlib, figures into tmp_path (the
    # committed notebooks/figures/*.png are not touched)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BEA_FIGURES_DIR", str(tmp_path))
    root = str(NOTEBOOKS.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    nb = nbformat.read(NOTEBOOKS / "implicit_regularisation.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    for name in ("loss", "grad_norm", "sharpness"):
        path = tmp_path / f"implicit_regularisation_{name}.png"
        assert path.exists() and 0 < path.stat().st_size < 200_000, path
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "doubled" in text and "skipped" in text

"""The example notebooks execute headless (nbclient, the venv's ipykernel) and save figures."""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def _execute(name: str, tmp_path, monkeypatch, timeout: int, small: bool = True):
    """Execute ``notebooks/<name>`` headless and return it with its outputs.

    The kernel inherits the environment: headless matplotlib, figures into ``tmp_path``
    (the committed notebooks/figures/*.png are not touched), the notebooks' small size, and
    this checkout first on the path."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BEA_FIGURES_DIR", str(tmp_path))
    if small:
        monkeypatch.setenv("BEA_NOTEBOOK_SIZE", "small")
    root = str(NOTEBOOKS.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def test_implicit_regularisation_notebook(tmp_path, monkeypatch):
    nb = _execute("implicit_regularisation.ipynb", tmp_path, monkeypatch, timeout=120, small=False)
    for name in ("loss", "grad_norm", "sharpness"):
        path = tmp_path / f"implicit_regularisation_{name}.png"
        assert path.exists() and 0 < path.stat().st_size < 200_000, path
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "doubled" in text and "skipped" in text
    # issue 13 defect 9: the markdown once said the skipped counter "stays 0" while the
    # printed counter of the diverging (cancelled) run was 511; the text must allow non-zero
    prose = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "stays 0 here" not in prose and "counted as skipped" in prose


@pytest.mark.slow
def test_margins_notebook(tmp_path, monkeypatch):
    nb = _execute("margins.ipynb", tmp_path, monkeypatch, timeout=300)
    path = tmp_path / "margins_linear.png"
    assert path.exists() and 0 < path.stat().st_size < 300_000
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.split() and line.split()[0] in ("l2", "linf", "l1")}
    order = ["l2", "linf", "l1"]
    for norm, cols in rows.items():      # own norm has the largest ratio; monotone True
        ratios = [float(v) for v in cols[1:4]]
        assert max(range(3), key=ratios.__getitem__) == order.index(norm), cols
        assert cols[-1] == "True"
    assert len(rows) == 3


@pytest.mark.slow
def test_sde_notebook(tmp_path, monkeypatch):
    """The three experiments of ``bea reproduce svag`` at size small: three figures under
    $BEA_FIGURES_DIR, the three report parts printed, no warnings (tqdm widget or other)."""
    nb = _execute("sde.ipynb", tmp_path, monkeypatch, timeout=900)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "svag_digits.png", "svag_lsr.png", "svag_stationary.png"]
    for p in tmp_path.iterdir():
        assert 0 < p.stat().st_size < 300_000, p
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outs)
    for part in ("(1) stationary", "(2) digits", "(3) linear scaling rule", "N/G"):
        assert part in text, part
    stderr = "".join(o.get("text", "") for o in outs if o.get("name") == "stderr")
    assert "Warning" not in stderr and "IProgress" not in stderr, stderr[-2000:]
    assert not any(o.get("output_type") == "error" for o in outs)


@pytest.mark.slow   # ~3 min on 2 cores: six training runs, three central flows
def test_eos_notebook(tmp_path, monkeypatch):
    """The three experiments of ``bea reproduce eos`` at size small: both figures under
    $BEA_FIGURES_DIR (only there), the sharpness at 2/eta with the central flow closer to
    GD's time-averaged loss than gradient flow, heavy ball at (2 + 2 beta)/eta, the
    manifold runs on their limiting flows, no warnings."""
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    nb = _execute("eos.ipynb", tmp_path, monkeypatch, timeout=900)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eos_manifold.png",
                                                          "eos_sharpness.png"]
    for p in tmp_path.iterdir():
        assert 0 < p.stat().st_size < 300_000, p
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before   # nothing written there
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outs)
    # (1): rows "eta 2/eta onset ratio in-band <L_gd> L_cf L_gf err-cf err-gf cf-ratio"
    rows = [ln.split() for ln in text.splitlines()
            if ln.split() and ln.split()[0] in ("0.65", "0.7", "0.75") and len(ln.split()) == 11]
    assert len(rows) == 3, text
    for r in rows:
        assert r[3] != "nan" and r[4] == "True", r                      # ratio in the band
        err_cf, err_gf = float(r[8].rstrip("%")), float(r[9].rstrip("%"))
        assert err_cf < err_gf, r                        # central flow beats gradient flow
        assert abs(float(r[10]) - 1) < 0.01, r           # central flow's lambda_1 at 2/eta
    assert "ratio to (2 + 2 beta)/eta" in text
    hb = float(text.split("ratio to (2 + 2 beta)/eta")[1].split()[0])
    assert 0.95 <= hb <= 1.15, hb
    assert text.count("max relative gap") == 2
    assert "bea reproduce eos (small)" in text
    assert "as their limiting flows predict" in text
    stderr = "".join(o.get("text", "") for o in outs if o.get("name") == "stderr")
    assert "Warning" not in stderr and "IProgress" not in stderr, stderr[-2000:]
    assert not any(o.get("output_type") == "error" for o in outs)


@pytest.mark.slow
def test_adaptive_optimisers_notebook(tmp_path, monkeypatch):
    """Adam and RMSProp on an equinox MLP (order 1 at size small, ~90 s): three figures,
    the sign of the order-1 term's rate on the smoothed l1 gradient norm as Cattaneo et al.
    predict from r1 - r2, and global-error slopes p + 1 (+-0.15) for every optimiser."""
    nb = _execute("adaptive_optimisers.ipynb", tmp_path, monkeypatch, timeout=600)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adaptive_optimisers_terms.png", "adaptive_optimisers_trajectory.png",
        "adaptive_optimisers_verify.png"]
    for p in tmp_path.iterdir():
        assert 0 < p.stat().st_size < 300_000, p
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    rows = [line.split() for line in text.splitlines()
            if line.split()[-3:-2] in (["penalty"], ["anti-penalty"])]
    assert len(rows) == 3, text
    for cols in rows:
        predicted, at_x0, mean = cols[-3], float(cols[-2]), float(cols[-1])
        sign = -1.0 if predicted == "penalty" else 1.0   # a penalty lowers ||grad L||_1
        assert sign * at_x0 > 0 and sign * mean > 0, cols
    oks = [line.rsplit("slopes ok:", 1)[1].strip() for line in text.splitlines()
           if "slopes ok:" in line]
    assert oks == ["True"] * 3, text

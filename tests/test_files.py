"""bea.files: atomic writes, output paths checked before work, resumable checkpoints."""

from __future__ import annotations

import json
import os

import pytest

from bea import files


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    files.atomic_write_json(target, {"a": 1})

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_json(target, {"a": 2})
    # the old content survives and no temporary file is left behind
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_json_is_strict(tmp_path):
    import numpy as np

    files.atomic_write_json(tmp_path / "x.json", {"v": np.float64("nan"), "w": np.arange(3)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": None, "w": [0, 1, 2]}
    with pytest.raises(TypeError, match="cannot store"):
        files.to_jsonable(object())


def test_check_writable_refuses_before_work(tmp_path):
    with pytest.raises(files.OutputPathError, match="is a folder"):
        files.check_writable(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(files.OutputPathError, match="cannot write"):
        files.check_writable(blocker / "sub" / "plot.png")
    with pytest.raises(files.OutputPathError, match="not a folder"):
        files.check_writable_dir(blocker)
    assert files.check_writable(tmp_path / "new" / "plot.png").parent.is_dir()


def test_save_figure_is_atomic_and_complete(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    p = files.save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_resumes_and_rejects_other_configs(tmp_path):
    path = tmp_path / "ck.json"
    ck = files.Checkpoint(path, {"steps": 10})
    ck.put("lr=0.1", {"loss": 0.5})
    again = files.Checkpoint(path, {"steps": 10})
    assert again.has("lr=0.1") and again.get("lr=0.1") == {"loss": 0.5}
    assert len(files.Checkpoint(path, {"steps": 10}, resume=False)) == 0
    with pytest.warns(UserWarning, match="another configuration"):
        other = files.Checkpoint(path, {"steps": 20})
    assert len(other) == 0


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe", b"[" * 100_000, b'{"version": 1}'])
def test_checkpoint_corrupt_is_rebuilt(tmp_path, content):
    path = tmp_path / "ck.json"
    path.write_bytes(content)
    with pytest.warns(UserWarning, match="starting afresh"):
        ck = files.Checkpoint(path, {"n": 1})
    ck.put("a", 1)
    assert files.Checkpoint(path, {"n": 1}).get("a") == 1


def test_checkpoint_refuses_non_regular_files(tmp_path):
    fifo = tmp_path / "ck.json"
    os.mkfifo(fifo)
    with pytest.warns(UserWarning, match="not a regular file"):
        assert len(files.Checkpoint(fifo, {})) == 0


def test_stop_cleanly_turns_ctrl_c_into_a_message():
    with pytest.raises(files.Interrupted, match="--resume"):
        with files.stop_cleanly("demo"):
            raise KeyboardInterrupt

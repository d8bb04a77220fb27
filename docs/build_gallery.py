"""Build the site's gallery: every ``bea reproduce`` experiment's figure and table.

Usage::

    python docs/build_gallery.py [NAME ...] [--work DIR] [--resume] [--timeout S]

Each experiment runs at its default size (what ``bea reproduce NAME`` does) into
``DIR/NAME`` (default ``.cache/gallery/NAME``, outside the tree's tracked files); its
figures, shrunk to at most :data:`MAX_WIDTH` pixels wide, its printed report (the table and
the conclusion drawn from it) and ``meta.json`` (command, run time, commit) are then copied
into ``docs/gallery/NAME/``, which the gallery page (``{{ gallery }}`` in ``docs/hooks.py``)
shows under the command that made them.

To use a results folder you already have from ``bea reproduce NAME --out F``, pass
``--work`` its parent and ``--resume``: the experiment's checkpoint there is read, so the
finished units are not run again and only the report and figures are rewritten.

An experiment that takes longer than ``--timeout`` seconds (default 600) is stopped and
left out (its page entry then says it is not built yet); the rest go on.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "docs" / "gallery"
MAX_WIDTH = 900  # pixels: a figure column of the site, and small committed files

# run in a child process so that one experiment's timeout cannot take the others with it
_CHILD = """
import sys, jax
jax.config.update("jax_enable_x64", True)
from bea.experiments import get_experiment
from bea.files import atomic_write_text
name, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
report = get_experiment(name).load()(out, progress=False, resume=resume)
atomic_write_text(out + "/report.txt", report)
"""


def shrink_png(src: Path) -> bytes:
    """The PNG at ``src``, at most ``MAX_WIDTH`` pixels wide (aspect kept), optimised."""
    from PIL import Image

    with Image.open(src) as im:
        if im.width > MAX_WIDTH:
            im = im.resize((MAX_WIDTH, round(im.height * MAX_WIDTH / im.width)),
                           Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                       capture_output=True)
    return r.stdout.strip() or "unknown"


def publish(name: str, out: Path, seconds: float | None) -> Path:
    """Copy ``out``'s figures and report into ``docs/gallery/name/`` (replacing them)."""
    from bea.files import atomic_write_bytes, atomic_write_json, atomic_write_text

    pngs = sorted(out.glob("*.png"))
    report = out / "report.txt"
    if not pngs or not report.is_file():
        raise FileNotFoundError(f"{out} has no figure or no report.txt: run the experiment "
                                f"there first (python docs/build_gallery.py {name})")
    dest = GALLERY / name
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.png"):
        if old.name not in {p.name for p in pngs}:
            old.unlink()
    for png in pngs:
        atomic_write_bytes(dest / png.name, shrink_png(png))
    atomic_write_text(dest / "report.txt", report.read_text().rstrip() + "\n")
    atomic_write_json(dest / "meta.json", {
        "command": f"bea reproduce {name}", "seconds": seconds, "commit": _commit(),
        "date": time.strftime("%Y-%m-%d"), "figures": [p.name for p in pngs]})
    return dest


def main(argv: list[str] | None = None) -> int:
    from bea.experiments import available_experiments
    from bea.files import check_writable_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--work", default=str(ROOT / ".cache" / "gallery"),
                        help="where the experiments write their results")
    parser.add_argument("--resume", action="store_true",
                        help="continue from (or re-read) the checkpoints in --work")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds an experiment may take before it is skipped")
    args = parser.parse_args(argv)
    table = available_experiments()
    unknown = [n for n in args.names if n not in table]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; available: "
                     f"{', '.join(sorted(table))}")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    failed = []
    for name in args.names or sorted(table):
        out = check_writable_dir(Path(args.work) / name)
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-c", _CHILD, name, str(out),
                                "1" if args.resume else "0"], cwd=ROOT, env=env,
                               timeout=args.timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            print(f"{name}: skipped, longer than {args.timeout:.0f} s", flush=True)
            failed.append(name)
            continue
        seconds = round(time.perf_counter() - t0, 1)
        if r.returncode:
            print(f"{name}: failed\n{r.stderr[-3000:]}", flush=True)
            failed.append(name)
            continue
        dest = publish(name, out, seconds)
        print(f"{name}: {seconds} s, written to {dest.relative_to(ROOT)}", flush=True)
    if failed:
        print(f"not built: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every ``bea reproduce`` experiment into ``docs/gallery/<name>/`` for the site.

Usage: ``python docs/build_gallery.py [NAME ...] [--resume]``. Each experiment writes its
figures and JSON there, and its printed report goes to ``report.txt`` (atomically), which
the gallery page shows under the command that made it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GALLERY = Path(__file__).resolve().parent / "gallery"


def main(argv: list[str] | None = None) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from bea.experiments import available_experiments
    from bea.files import atomic_write_text, check_writable_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    table = available_experiments()
    for name in args.names or sorted(table):
        out = check_writable_dir(GALLERY / name)
        report = table[name].load()(str(out), progress=True, resume=args.resume)
        atomic_write_text(out / "report.txt", report)
        print(f"{name}: written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""mkdocs hooks: pages generated from the code, so the site cannot drift from it.

* ``{{ api:PACKAGE }}``: one mkdocstrings entry per name in ``PACKAGE.__all__``, at the
  object's canonical path (where it is defined), so re-exports and lazy names resolve.
* ``{{ latex:NAME }}``: display maths printed by the engine's own objects (``.latex()``),
  from the fixed table :data:`EQUATIONS` (names only; nothing from a page is evaluated).
* ``{{ readme:HEADING }}``: the README's section ``## HEADING`` (one source for both).
* ``{{ cli }}``: the ``--help`` text of every ``bea`` sub-command.
* ``{{ gallery }}``: every ``bea reproduce`` experiment with its command and, where
  ``docs/gallery/<name>/`` holds them, its figures and report.
* The notebooks in ``notebooks/`` are added to the site under ``notebooks/``; when they
  are executed (``BEA_DOCS_EXECUTE=true``) matplotlib's inline backend is used (an
  inherited ``MPLBACKEND=Agg`` would leave them without figures) and the figure files they
  save go to a temporary ``BEA_FIGURES_DIR`` unless one is set, so a build never dirties
  ``notebooks/figures/``.
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import re
import tempfile
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
GALLERY = ROOT / "docs" / "gallery"


def _latex_of(make: Callable[[], object]) -> Callable[[], str]:
    def run() -> str:
        return make().latex()

    return run


def _gd(order: int) -> object:
    from bea import methods, modified_equation

    return modified_equation(methods.gd(), order)


def _gd_loss(order: int) -> object:
    from bea import methods, modified_loss

    return modified_loss(methods.gd(), order)


def _heavy_ball(order: int) -> object:
    from bea import methods, modified_equation

    return modified_equation(methods.heavy_ball(), order)


def _sgd2(order: int) -> object:
    from bea import methods, modified_loss

    return modified_loss(methods.sgd(batches=2), order)


EQUATIONS: dict[str, Callable[[], str]] = {
    "gd-3": _latex_of(lambda: _gd(3)),
    "gd-loss-2": _latex_of(lambda: _gd_loss(2)),
    "heavy-ball-1": _latex_of(lambda: _heavy_ball(1)),
    "sgd2-loss-1": _latex_of(lambda: _sgd2(1)),
}

_MARK = re.compile(r"\{\{\s*(api|latex):([A-Za-z0-9_.\-]+)\s*\}\}|\{\{\s*(cli|gallery)\s*\}\}"
                   r"|\{\{\s*readme:([^}]+?)\s*\}\}")


def canonical_path(pkg_name: str, name: str) -> str:
    """Where ``pkg.name`` is defined (``bea.modified.modified_equation``), for mkdocstrings."""
    pkg = importlib.import_module(pkg_name)
    obj = getattr(pkg, name)
    if inspect.ismodule(obj):
        return obj.__name__
    top = pkg_name.split(".")[0]
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not (inspect.isfunction(obj) or inspect.isclass(obj)) or not (module or "").startswith(
            top):
        # a type alias or constant: the submodule that binds it and lists it in __all__
        import sys

        for mod_name in sorted(m for m in sys.modules if m.startswith(top + ".")):
            mod = sys.modules[mod_name]
            if vars(mod).get(name) is obj and name in getattr(mod, "__all__", ()):
                return f"{mod_name}.{name}"
        return f"{pkg_name}.{name}"
    if module and qual and "<" not in qual:
        try:
            target = importlib.import_module(module)
            for part in qual.split("."):
                target = getattr(target, part)
            if target is obj:
                return f"{module}.{qual}"
        except (ImportError, AttributeError):
            pass
    return f"{pkg_name}.{name}"


def api_block(pkg_name: str) -> str:
    pkg = importlib.import_module(pkg_name)
    names = list(getattr(pkg, "__all__", []))
    if not names:
        raise ValueError(f"{pkg_name} has no __all__: the API page lists __all__")
    out = [f"Public names of `{pkg_name}` (its `__all__`), documented where they are defined.\n"]
    for name in names:
        obj = getattr(pkg, name)
        opts = "\n    options:\n      members: false" if inspect.ismodule(obj) else ""
        out.append(f"::: {canonical_path(pkg_name, name)}{opts}\n")
    return "\n".join(out)


def cli_block() -> str:
    import argparse

    from bea import cli

    parser = cli.build_parser() if hasattr(cli, "build_parser") else None
    if parser is None:  # older cli: capture main's parser through --help of each command
        return _cli_by_help()
    return _format_parser(parser, argparse)


def _help_of(argv: list[str]) -> str:
    from bea import cli

    buf = io.StringIO()
    with redirect_stdout(buf):
        try:
            cli.main(argv)
        except SystemExit:
            pass
    return buf.getvalue()


def _cli_by_help() -> str:
    top = _help_of(["--help"])
    commands = re.findall(r"^\s{4}(\w[\w-]*)\s", top.split("positional arguments:")[-1], re.M)
    parts = ["```text\n$ bea --help\n" + top + "```\n"]
    for c in dict.fromkeys(commands):
        if c in ("command",):
            continue
        parts.append(f"### bea {c}\n\n```text\n$ bea {c} --help\n{_help_of([c, '--help'])}```\n")
    return "\n".join(parts)


def _format_parser(parser: object, argparse: object) -> str:  # pragma: no cover - future cli
    return _cli_by_help()


def gallery_entry(name: str, summary: str, folder: Path) -> str:
    """One experiment on the gallery page: its command, then the figures and the report
    (table and conclusion) that ``docs/build_gallery.py`` copied into ``folder``, or a
    note saying how to build them."""
    import json

    parts = [f"## {name}\n\n{summary}.\n\n```bash\nbea reproduce {name} --out "
             f"bea-figures/{name}\n```\n"]
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    report = folder / "report.txt"
    if not pngs or not report.is_file():
        parts.append(f'!!! note "Not built yet"\n    Its figure and table are not in the '
                     f"gallery yet: run `python docs/build_gallery.py {name}` (or "
                     f"`bea reproduce {name}` to see them locally).\n")
        return "\n".join(parts)
    for png in pngs:
        parts.append(f"![{name}: {png.stem}](gallery/{name}/{png.name})\n")
    meta_file = folder / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    made = "Printed by the command"
    if meta.get("seconds") is not None:
        made += (f" (default size, {meta['seconds']:.0f} s on 2 loaded CPU cores, commit "
                 f"`{meta.get('commit', '?')}`, {meta.get('date', '?')})")
    parts.append(f"{made}:\n\n```text\n{report.read_text().rstrip()}\n```\n")
    return "\n".join(parts)


def gallery_block() -> str:
    from bea.experiments import available_experiments

    return "\n".join(gallery_entry(name, e.summary, GALLERY / name)
                     for name, e in sorted(available_experiments().items()))


def readme_section(heading: str) -> str:
    """The README's section ``## heading`` (without its title), so a lab's page and the
    README say the same thing from one source."""
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    if m is None:
        raise ValueError(f"README has no section '## {heading}'")
    return m.group(1).strip() + "\n"


def _replace(match: re.Match) -> str:
    kind, arg, bare = match.group(1), match.group(2), match.group(3)
    if match.group(4) is not None:
        return readme_section(match.group(4))
    if kind == "api":
        return api_block(arg)
    if kind == "latex":
        if arg not in EQUATIONS:
            raise ValueError(f"unknown equation {arg!r}; known: {', '.join(EQUATIONS)}")
        return "$$\n" + EQUATIONS[arg]() + "\n$$"
    if bare == "cli":
        return cli_block()
    return gallery_block()


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001
    try:
        return _MARK.sub(_replace, markdown)
    except Exception as e:
        raise RuntimeError(f"{page.file.src_path}: {e}") from e


@event_priority(100)  # before mkdocs-jupyter, which turns the notebooks into pages
def on_files(files, config):  # noqa: ANN001
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(File(f"notebooks/{nb.name}", str(ROOT), config["site_dir"],
                          config["use_directory_urls"]))
    return files


def on_config(config):  # noqa: ANN001
    jupyter = config["plugins"].get("mkdocs-jupyter")
    if jupyter is not None and jupyter.config.get("execute"):
        # the kernels inherit this process's environment
        os.environ.pop("MPLBACKEND", None)
        if not os.environ.get("BEA_FIGURES_DIR"):
            os.environ["BEA_FIGURES_DIR"] = tempfile.mkdtemp(prefix="bea-docs-figures-")
    return config

"""The documentation site: generated from the code, its examples executed, built strictly.

* Every public name (``__all__`` of ``bea``, ``bea.optax``, ``kernels``, ``games``) has a
  docstring, as griffe (what mkdocstrings renders) reads it, with maths or an example.
* Every ``python`` block of the docs pages runs as written (blocks of one page share a
  namespace, like a tutorial; pages are independent), and every block of the README runs
  on its own.
* ``mkdocs build --strict`` succeeds (slow: about 40 s on 2 loaded cores), and in a real
  headless browser the home page, an API page and a notebook page render with equations.
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGES = ("bea", "bea.optax", "kernels", "games")
# maths (an equation, a norm, a derivative) or an example (``code``, >>>, ::)
_MATHS_OR_EXAMPLE = re.compile(r"[=^\\|]|grad|\bsum\b|O\(h|>>>|::|``[^`]+``")

sys.path.insert(0, str(DOCS))
hooks = importlib.import_module("hooks")


def _public(pkg_name: str) -> list[str]:
    return list(importlib.import_module(pkg_name).__all__)


class _Griffe:
    """griffe's view of the packages (what mkdocstrings renders), each top-level package
    loaded once for all the names checked (a load per name took ~30 s per package)."""

    def __init__(self, search_paths: list[str]) -> None:
        griffe = pytest.importorskip("griffe")
        self._loader = griffe.GriffeLoader(search_paths=search_paths)
        self._tops: dict[str, object] = {}

    def docstring(self, path: str) -> str:
        top, *parts = path.split(".")
        if top not in self._tops:
            self._tops[top] = self._loader.load(top)
        obj = self._tops[top]
        for part in parts:
            obj = obj[part]
        return obj.docstring.value if obj.docstring else ""


def docstring_problems(pkg_name: str, griffe_view: _Griffe) -> tuple[list[str], list[str]]:
    """``(missing, bare)``: the public names of ``pkg_name`` with no docstring, and those
    (modules excepted) whose docstring has neither maths nor an example.  Also checks that
    the API page lists each name."""
    block = hooks.api_block(pkg_name)
    pkg = importlib.import_module(pkg_name)
    missing, bare = [], []
    for name in _public(pkg_name):
        path = hooks.canonical_path(pkg_name, name)
        assert f"::: {path}" in block, (name, path)
        doc = griffe_view.docstring(path)
        if not doc.strip():
            missing.append(path)
        elif not inspect.ismodule(getattr(pkg, name)) and not _MATHS_OR_EXAMPLE.search(doc):
            bare.append(path)
    return missing, bare


@pytest.fixture(scope="module")
def griffe_view():
    return _Griffe([str(ROOT)])


@pytest.mark.parametrize("pkg_name", PACKAGES)
def test_every_public_name_is_in_the_api_reference_with_a_docstring(pkg_name, griffe_view):
    assert _public(pkg_name), pkg_name
    missing, bare = docstring_problems(pkg_name, griffe_view)
    assert not missing, f"public names without a docstring: {missing}"
    assert not bare, f"docstrings with neither maths nor an example: {bare}"


def test_the_docstring_check_catches_a_missing_or_bare_docstring(tmp_path, monkeypatch):
    pkg = tmp_path / "docfixture_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        '"""A package."""\n__all__ = ["good", "example", "bare", "none"]\n\n\n'
        'def good(x):\n    """The square, ``y = x^2``."""\n\n\n'
        'def example(x):\n    """Twice x::\n\n        example(1)  # 2\n    """\n\n\n'
        'def bare(x):\n    """Does a thing."""\n\n\n'
        'def none(x):\n    return x\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    missing, bare = docstring_problems("docfixture_pkg", _Griffe([str(tmp_path)]))
    assert missing == ["docfixture_pkg.none"]
    assert bare == ["docfixture_pkg.bare"]


def test_equations_come_from_the_engine():
    for name, make in hooks.EQUATIONS.items():
        tex = make()
        assert "h" in tex and "\\" in tex, name
    page = hooks.on_page_markdown("a {{ latex:gd-3 }} b", page=None, config=None, files=None)
    from bea import methods, modified_equation

    assert modified_equation(methods.gd(), 3).latex() in page
    with pytest.raises(RuntimeError, match="unknown equation"):
        hooks.on_page_markdown("{{ latex:nope }}", page=_Page(), config=None, files=None)


class _Page:
    class file:  # noqa: N801 - mimics mkdocs' page.file
        src_path = "test.md"


def test_cli_reference_lists_every_command():
    text = hooks.cli_block()
    for command in ("derive", "verify", "reproduce", "demo"):
        assert f"bea {command}" in text


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _code_pages() -> dict[str, list[str]]:
    """``{page: [block, ...]}``: each docs page with its python blocks (run in sequence in
    one namespace, like a tutorial), and each README block on its own page
    ``README.md#<section>`` (``#<section>-2`` for a section's second block; a reader may
    copy any one of them), named by its ``## `` heading so that a new block elsewhere does
    not rename the others."""
    pages = {p.relative_to(DOCS).as_posix(): _python_blocks(p.read_text())
             for p in sorted(DOCS.rglob("*.md"))}
    for section in re.split(r"^## ", (ROOT / "README.md").read_text(), flags=re.M)[1:]:
        slug = re.sub(r"[^a-z0-9]+", "-", section.splitlines()[0].lower()).strip("-")
        for j, block in enumerate(_python_blocks(section)):
            pages[f"README.md#{slug}" + (f"-{j + 1}" if j else "")] = [block]
    return {k: v for k, v in pages.items() if v}


_CODE_PAGES = _code_pages()
# pages whose blocks take longer than the fast budget (10 s) on 2 loaded cores, with what
# costs the time (measured with --durations; tracing verify's all-orders kernel dominates)
_SLOW_PAGES = {
    "README.md#verify": "verify(heavy_ball, orders 0-3): 62 s wall (loaded machine)",
    "getting-started.md": "verify(gd, orders 0-2): 49 s wall",
    "README.md#zero-loss-manifold-noisy-gd-past-interpolation":
        "limiting_flow + a 64-run ensemble: 46 s wall",
}


def test_every_page_with_code_is_run():
    assert "getting-started.md" in _CODE_PAGES
    assert set(_SLOW_PAGES) <= set(_CODE_PAGES), set(_SLOW_PAGES) - set(_CODE_PAGES)


@pytest.mark.parametrize("page", [
    pytest.param(name, marks=[pytest.mark.slow] if name in _SLOW_PAGES else [])
    for name in _CODE_PAGES])
def test_docs_and_readme_python_blocks_run_as_written(page, tmp_path, monkeypatch):
    """The page's blocks in order, in this interpreter (JAX and bea imported once for
    all pages), in a fresh namespace per page, from a temporary folder (files a block
    writes land there); a failure names the page and block and shows its source line."""
    import linecache
    import traceback

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns = {"__name__": "__main__"}
    try:
        for i, code in enumerate(_CODE_PAGES[page]):
            filename = f"<{page} block {i}>"
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            try:
                exec(compile(code, filename, "exec"), ns)  # noqa: S102 - the repo's own docs
            except Exception:
                pytest.fail(f"{page} block {i} failed:\n{traceback.format_exc()}",
                            pytrace=False)
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


def _build(site: Path, execute: bool) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    # MPLBACKEND=Agg as in CI: docs/hooks.py must drop it for the executed notebooks
    # (Agg would leave them without inline figures); their saved figure files go to a
    # temporary folder, not into notebooks/
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1",
           "BEA_DOCS_EXECUTE": "true" if execute else "false",
           "BEA_FIGURES_DIR": str(site.parent / "figures")}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-6000:]


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    _build(site, execute=False)
    api = (site / "api" / "bea" / "index.html").read_text()
    for name in _public("bea"):
        assert name in api
    assert (site / "notebooks" / "implicit_regularisation" / "index.html").exists()
    assert "arithmatex" in (site / "index.html").read_text()


_BROWSER_SETUP = ("Browser test setup (Debian): apt-get install -y chromium nodejs npm && "
                  ".venv/bin/pip install -e '.[dev]' (includes playwright; no "
                  "'playwright install' needed, Debian's /usr/bin/chromium is used; npm "
                  "fetches mathjax@3 from its registry)")

# every <img> of the page that shows a real PNG (a notebook's inline output is a data URI)
_SHOWN_PNGS = """() => Array.from(document.images).filter(i => i.complete && i.naturalWidth > 50
    && i.src.startsWith('data:image/png')).length"""


@pytest.mark.slow
def test_site_renders_in_a_browser(tmp_path):
    """Headless Chromium (Debian's) through playwright; MathJax is served from npm's copy
    (the machine is offline) by routing the page's CDN request to it."""
    sync_api = pytest.importorskip("playwright.sync_api", reason=_BROWSER_SETUP)
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip(f"{chromium} is missing. {_BROWSER_SETUP}")
    mathjax = tmp_path / "mj"
    r = subprocess.run(["npm", "pack", "mathjax@3", "--pack-destination", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path)
    if r.returncode:
        pytest.skip(f"npm could not fetch mathjax ({r.stderr[-300:]}). {_BROWSER_SETUP}")
    import tarfile

    with tarfile.open(next(tmp_path.glob("mathjax-*.tgz"))) as tar:
        tar.extractall(mathjax, filter="data")
    es5 = mathjax / "package" / "es5"
    site = tmp_path / "site"
    _build(site, execute=True)
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def cdn(route):
        rel = route.request.url.split("/es5/", 1)[-1].split("?")[0]
        f = es5 / rel
        if f.is_file():
            route.fulfill(path=str(f))
        else:
            route.abort()

    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            page.route("https://cdn.jsdelivr.net/**", cdn)
            for path, needs_figure in (("/", False), ("/api/bea/", False),
                                       ("/notebooks/implicit_regularisation/", True)):
                page.goto(base + path)
                page.wait_for_selector("mjx-container", timeout=60_000)
                # MathJax typesets asynchronously: wait for its promise, then count
                page.evaluate("() => MathJax.startup.promise")
                assert page.locator("mjx-container").count() > 0, path
                assert page.locator("mjx-merror").count() == 0, f"{path}: TeX errors"
                assert page.locator(".arithmatex:not(:has(mjx-container))").count() == 0, \
                    f"{path}: equations left untypeset"
                if needs_figure:
                    assert page.evaluate(_SHOWN_PNGS) > 0, f"{path}: no figure shown"
                    page.screenshot(path=str(tmp_path / "notebook.png"), full_page=True)
            page.goto(base + "/")
            page.screenshot(path=str(tmp_path / "home.png"))
            browser.close()
    finally:
        server.shutdown()


def test_gallery_shows_every_experiment_with_its_command_figure_and_table(tmp_path):
    from bea.experiments import available_experiments

    page = hooks.gallery_block()
    for name in available_experiments():
        assert f"## {name}\n" in page and f"bea reproduce {name} --out" in page, name
        folder = hooks.GALLERY / name
        if any(folder.glob("*.png")):
            for png in folder.glob("*.png"):
                assert f"(gallery/{name}/{png.name})" in page, png
            assert (folder / "report.txt").read_text().strip()[:40] in page, name
        else:
            assert f"python docs/build_gallery.py {name}`" in page, name
    # an experiment not built yet gets a note, not a broken image
    entry = hooks.gallery_entry("eos", "edge of stability", tmp_path / "eos")
    assert '!!! note "Not built yet"' in entry and "docs/build_gallery.py eos" in entry
    assert "![" not in entry
    # the committed figures stay small
    total = sum(f.stat().st_size for f in hooks.GALLERY.rglob("*") if f.is_file())
    assert total < 3 * 2**20, f"docs/gallery/ is {total / 2**20:.1f} MB (limit 3 MB)"


def test_gallery_figures_are_shrunk(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    build_gallery = importlib.import_module("build_gallery")
    fig = plt.figure(figsize=(20, 5), dpi=100)    # 2000 x 500 pixels
    fig.savefig(tmp_path / "wide.png")
    plt.close(fig)
    from PIL import Image

    with Image.open(io.BytesIO(build_gallery.shrink_png(tmp_path / "wide.png"))) as im:
        assert im.size == (build_gallery.MAX_WIDTH, round(500 * build_gallery.MAX_WIDTH / 2000))

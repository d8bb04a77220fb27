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


@pytest.mark.parametrize("pkg_name", PACKAGES)
def test_every_public_name_is_in_the_api_reference_with_a_docstring(pkg_name):
    griffe = pytest.importorskip("griffe")
    block = hooks.api_block(pkg_name)
    loader = griffe.GriffeLoader(search_paths=[str(ROOT)])
    missing, bare = [], []
    for name in _public(pkg_name):
        path = hooks.canonical_path(pkg_name, name)
        assert f"::: {path}" in block, (name, path)
        top = path.split(".")[0]
        obj = loader.load(top)
        for part in path.split(".")[1:]:
            obj = obj[part]
        doc = obj.docstring.value if obj.docstring else ""
        if not doc.strip():
            missing.append(path)
        elif not inspect.ismodule(getattr(importlib.import_module(pkg_name), name)) \
                and not _MATHS_OR_EXAMPLE.search(doc):
            bare.append(path)
    assert not missing, f"public names without a docstring: {missing}"
    assert not bare, f"docstrings with neither maths nor an example: {bare}"


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


def test_docs_and_readme_python_blocks_run_as_written(tmp_path):
    pages = {p.relative_to(DOCS).as_posix(): _python_blocks(p.read_text())
             for p in sorted(DOCS.rglob("*.md"))}
    # the README too: each of its blocks on its own (a reader may copy any one of them)
    for i, block in enumerate(_python_blocks((ROOT / "README.md").read_text())):
        pages[f"README.md#{i}"] = [block]
    pages = {k: v for k, v in pages.items() if v}
    assert "getting-started.md" in pages
    # one interpreter for all pages (one JAX start-up), a fresh namespace per page; the
    # code is the repository's own documentation, run from a temporary folder
    runner = (
        "import json, sys, traceback\n"
        "pages = json.loads(sys.stdin.read())\n"
        "failed = []\n"
        "for name, blocks in pages.items():\n"
        "    ns = {'__name__': '__main__'}\n"
        "    for i, code in enumerate(blocks):\n"
        "        try:\n"
        "            exec(compile(code, f'{name}[{i}]', 'exec'), ns)\n"
        "        except Exception:\n"
        "            failed.append(f'{name} block {i}:\\n' + traceback.format_exc())\n"
        "            break\n"
        "print('\\n'.join(failed) or 'ALL OK')\n"
        "sys.exit(1 if failed else 0)\n")
    import json

    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", runner], input=json.dumps(pages), text=True,
                       capture_output=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


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

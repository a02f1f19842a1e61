"""The offline book checker (analysis.book_check) in the system's headless Chromium.

Pages are small static HTML files written into tmp_path, plus one tiny jupyter-book built
with this project's own _config.yml settings and vendored MathJax. No test reaches the
internet: outside requests are aborted by the checker (a local HTTP server proves it).
"""

from __future__ import annotations

import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml
from PIL import Image

from analysis import book_check
from analysis.book import build_book
from analysis.book_check import check_pages, inspect_pages

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not book_check.chromium_available(),
    reason=f"{book_check.CHROMIUM} is missing: `make browser` installs Debian's chromium "
           "(`make test` does it first)")


def page(body: str, head: str = "") -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>t</title>{head}</head>"
            f"<body><h1>Page</h1>{body}</body></html>")


@pytest.fixture
def site(tmp_path):
    """A folder with a valid local image and stylesheet next to the pages."""
    root = tmp_path / "html"
    (root / "_images").mkdir(parents=True)
    Image.new("RGB", (8, 6), (200, 30, 30)).save(root / "_images" / "ok.png")
    (root / "style.css").write_text("body { font-family: sans-serif; }\n")
    return root


@pytest.fixture
def local_server():
    """An HTTP server on 127.0.0.1 that counts the requests reaching it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_clean_page_passes_and_screenshot_is_written(site, tmp_path):
    (site / "sub").mkdir()
    (site / "sub" / "clean.html").write_text(page(
        "<p>Fine.</p><img src='../_images/ok.png' alt='ok'>"
        "<img src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlE"
        "QVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==' alt='inline'>",
        head="<link rel='stylesheet' href='../style.css'>"))
    shots = tmp_path / "shots"
    reports = inspect_pages(site, ["sub/clean.html"], shots)
    assert [r.problems for r in reports] == [[]]
    assert any(url.endswith("/_images/ok.png") for url in reports[0].requests)
    assert reports[0].screenshot == shots / "sub__clean.png"
    assert Image.open(reports[0].screenshot).size[0] == book_check.VIEWPORT["width"]


def test_outside_requests_are_reported_and_never_leave(site, local_server):
    base, hits = local_server
    (site / "outside.html").write_text(page(
        "<img src='https://example.org/x.png' alt='remote'>"
        f"<img src='{base}/pixel.png' alt='local server'>"
        f"<script>fetch('{base}/api').catch(() => {{}});"
        f"new WebSocket('{base.replace('http', 'ws')}/socket');</script>",
        head=f"<link rel='stylesheet' href='{base}/remote.css'>"))
    problems = check_pages(site, ["outside.html"])
    outside = [p for p in problems if "outside request" in p]
    assert "outside.html: outside request: https://example.org/x.png" in outside
    for path in ("/pixel.png", "/api", "/remote.css"):
        assert f"outside.html: outside request: {base}{path}" in outside
    assert f"outside.html: outside request: {base.replace('http', 'ws')}/socket" in outside
    assert hits == [], f"requests reached the server: {hits}"


def test_broken_local_image_is_reported_by_src(site):
    (site / "broken.html").write_text(page(
        "<img src='_images/ok.png' alt='ok'><img src='_images/missing.png' alt='gone'>"))
    (site / "_images" / "corrupt.png").write_bytes(b"not a png at all")
    (site / "corrupt.html").write_text(page("<img src='_images/corrupt.png' alt='bad'>"))
    problems = check_pages(site, ["broken.html", "corrupt.html"])
    assert "broken.html: broken image: _images/missing.png" in problems
    assert "corrupt.html: broken image: _images/corrupt.png" in problems
    assert "broken.html: local file failed to load: _images/missing.png" in problems
    assert not any("_images/ok.png" in p and "broken image" in p for p in problems)
    assert not any("outside request" in p for p in problems)


def test_error_output_cells_are_reported(site):
    # The markup myst-nb 1.x writes for an `error` output, and papermill's red marker.
    (site / "traceback.html").write_text(page(
        "<div class='cell docutils container'><div class='cell_output docutils container'>"
        "<div class='output traceback highlight-ipythontb notranslate'><div class='highlight'>"
        "<pre>ValueError  Traceback (most recent call last)\nValueError: boom</pre>"
        "</div></div></div></div>"))
    (site / "papermill.html").write_text(page(
        "<p><span id='papermill-error-cell' style='color:red'>Execution using papermill "
        "encountered an exception here and stopped:</span></p>"))
    (site / "fine.html").write_text(page(
        "<div class='cell_output docutils container'><div class='output stderr'>"
        "<pre>a warning on stderr is not an error</pre></div></div>"))
    problems = check_pages(site, ["traceback.html", "papermill.html", "fine.html"])
    assert len(problems) == 3, problems
    assert problems[0].startswith("traceback.html: error output cell:")
    assert "ValueError: boom" in problems[0]
    assert problems[1].startswith("papermill.html: error output cell:")
    # Not an error, but a results site shows readers no stderr: reported as such.
    assert problems[2] == "fine.html: 1 stderr output block(s)"


def test_reader_defects_are_reported(site):
    """Stderr blocks, unfolded code and a table spilling over the column are reported;
    the same table inside a horizontally scrolling output is fine."""
    wide = "<table><tr>" + "".join(f"<td>column{i:03d}</td>" for i in range(80)) + "</tr></table>"
    folded = ("<div class='cell'><details><summary>code</summary>"
              "<div class='cell_input'>x = 1</div></details></div>")
    (site / "good.html").write_text(page(
        f"<article>{folded}<div style='overflow-x: auto'>{wide}</div></article>"))
    (site / "bad.html").write_text(page(
        "<article style='width: 600px'><div class='cell'><div class='cell_input'>x = 1</div>"
        "<div class='output stderr'>UserWarning: random init</div></div>"
        f"{wide}</article>"))
    assert check_pages(site, ["good.html"]) == []
    bad = check_pages(site, ["bad.html"])
    assert "bad.html: 1 stderr output block(s)" in bad
    assert "bad.html: 1 code cell(s) not folded" in bad
    assert [p for p in bad if p.startswith("bad.html: table wider than the page: column000")]
    assert len(bad) == 3, bad


def test_missing_page_is_reported(site):
    (site / "there.html").write_text(page("<p>here</p>"))
    problems = check_pages(site, ["there.html", "book/not-there.html"])
    assert len(problems) == 1
    assert problems[0].startswith("book/not-there.html: missing page")


def test_cli_exit_status(site, capsys):
    (site / "ok.html").write_text(page("<p>ok</p>"))
    assert book_check.main([str(site), "ok.html"]) == 0
    assert book_check.main([str(site), "ok.html", "gone.html"]) == 1
    out = capsys.readouterr().out
    assert "gone.html: missing page" in out
    assert book_check.main([str(site / "nope"), "ok.html"]) == 2


def _error_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    # Saved widget state makes myst-nb add require.js + the widget manager from CDNs
    # unless nb_ipywidgets_js is emptied in _config.yml.
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"w": {"model_name": "LayoutModel", "model_module": "@jupyter-widgets/base",
                        "model_module_version": "1.2.0", "state": {}}},
        "version_major": 2, "version_minor": 0}}
    nb.cells = [
        new_markdown_cell("# Failed notebook\n\nThe next cell failed."),
        new_code_cell("1 / 0", execution_count=1, metadata={"tags": ["hide-input"]},
                      outputs=[new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero",
            traceback=["\x1b[0;31mZeroDivisionError\x1b[0m  Traceback (most recent call last)",
                       "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"])]),
    ]
    nbformat.write(nb, path)


def _reader_notebook(path: Path) -> None:
    """A page as the runner leaves it: folded code, a stderr warning, a wide table."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    wide = "<table><tr>" + "".join(f"<td>column{i:03d}</td>" for i in range(80)) + "</tr></table>"
    nb.cells = [
        new_markdown_cell("# Results\n\nA wide table follows."),
        new_code_cell("table", execution_count=1, metadata={"tags": ["hide-input"]}, outputs=[
            new_output("stream", name="stderr", text="UserWarning: random init\n"),
            new_output("execute_result", data={"text/html": wide, "text/plain": "table"},
                       execution_count=1)]),
    ]
    nbformat.write(nb, path)


@pytest.mark.slow
def test_tiny_book_with_project_config_reads_offline_with_vendored_mathjax(tmp_path):
    """A jupyter-book built with this project's settings: math renders from _vendor/."""
    project = yaml.safe_load((REPO / "_config.yml").read_text())
    sphinx_config = project["sphinx"]["config"]
    assert sphinx_config["mathjax_path"].endswith("mathjax/tex-mml-chtml.js")
    assert sphinx_config["html_extra_path"] == ["_vendor"]
    config = {key: project[key] for key in
              ("title", "author", "execute", "html", "launch_buttons", "sphinx") if key in project}
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n"
                                       "  - file: failed\n  - file: reader\n")
    _reader_notebook(tmp_path / "reader.ipynb")
    shutil.copytree(REPO / "_static", tmp_path / "_static")
    (tmp_path / "intro.md").write_text(
        "# Math\n\nEuler: $e^{i\\pi} + 1 = 0$.\n\n"
        "$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$\n")
    _error_notebook(tmp_path / "failed.ipynb")
    for extra in sphinx_config["html_extra_path"]:
        shutil.copytree(REPO / extra, tmp_path / extra)

    assert build_book(tmp_path) == 0
    html = tmp_path / "_build" / "html"

    # No script, stylesheet, image or frame in the built pages names an outside host.
    attribute = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(https?://[^\"]+)")
    for built in html.glob("*.html"):
        assert attribute.findall(built.read_text()) == [], built.name

    reports = {r.page: r for r in inspect_pages(html, ["index.html", "intro.html",
                                                       "failed.html", "reader.html"])}
    # The project's settings drop stderr, fold tagged code and let wide tables scroll.
    assert reports["reader.html"].problems == []
    assert "column079" in (html / "reader.html").read_text()
    assert "random init" not in (html / "reader.html").read_text()
    intro = reports["intro.html"]
    assert intro.problems == []
    assert intro.mathjax_version and intro.mathjax_version.startswith("3.")
    assert intro.math_elements >= 2  # the inline and the display equation
    vendored = (html / "mathjax").as_uri()
    assert any(url.startswith(vendored + "/tex-mml-chtml.js") for url in intro.requests)
    assert any(url.startswith(vendored + "/output/chtml/fonts/woff-v2/") for url in
               intro.requests), "MathJax fonts did not come from the vendored copy"
    assert reports["index.html"].problems == []  # the redirect to the root page

    failed = reports["failed.html"].problems
    assert len(failed) == 1, failed
    assert failed[0].startswith("failed.html: error output cell:")
    assert "ZeroDivisionError" in failed[0]

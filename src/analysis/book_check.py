"""Open built book pages in headless Chromium and report what a reader would see broken.

The book must read fully offline. For every page given, :func:`check_pages` opens
``file://<html_root>/<page>`` in the system Chromium (Debian's ``/usr/bin/chromium``,
driven by Python Playwright; ``playwright install`` is never needed) and reports:

- a page that does not exist;
- any request to something other than ``file:``, ``data:``, ``about:`` or ``blob:`` (an
  *outside request*). Such requests are aborted before they leave the machine, and the
  browser's host resolver maps every name to "not found" as a second guard;
- a local file the page asked for that could not be read (a missing script, style, font);
- an ``<img>`` that did not load (``naturalWidth`` 0 or undecodable), named by its src;
- an error output cell (a notebook traceback rendered by myst-nb, papermill's error
  marker, a Sphinx system message);
- an uncaught JavaScript exception (except the known harmless ones listed in
  ``KNOWN_HARMLESS_JS_ERRORS``);
- what a results site should not show its readers: a stderr output block, a code cell
  whose source is not folded away (the runner tags every code cell ``hide-input``), a
  table wider than the page column that cannot scroll inside it.

Optionally it writes a full-page screenshot of every page into a folder.

Command line (exit status 1 when there is any problem, 2 on usage errors)::

    python -m analysis.book_check _build/html index.html book/intro.html --screenshots shots/
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = Path("/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    # Second guard behind request routing: no host name resolves, so even a request that
    # escaped the route could not reach anything.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]

LOCAL_SCHEMES = frozenset({"file", "data", "about", "blob"})

# How a failed notebook cell renders in this book (jupyter-book 1.x / myst-nb 1.x):
# myst-nb renders an ``error`` output as ``<div class="output traceback ...">``;
# papermill marks the failing notebook with a red ``<span id="papermill-error-cell">``
# and tags cells ``papermill-error-cell-tag`` (myst-nb turns tags into ``tag_<tag>``
# classes); Sphinx writes parse errors left in a page as ``div.system-message``.
# ``.output.error`` / ``.output_area.error`` cover nbsphinx-style and older renderers.
ERROR_OUTPUT_SELECTORS = (
    ".output.traceback",
    ".output.error",
    ".output_area.error",
    ".output_error",
    "#papermill-error-cell",
    ".tag_papermill-error-cell-tag",
    ".system-message",
)

VIEWPORT = {"width": 1280, "height": 900}

# Uncaught JavaScript errors that are known, harmless upstream bugs and not reported.
# jupyter-book 1.0.4 / Sphinx 7.4 write sphinx-thebe's inline config script twice into
# every page that has a doctree; the second `const THEBE_JS_URL` throws, the first one
# already defined everything (and thebe stays off: no launch buttons are configured).
KNOWN_HARMLESS_JS_ERRORS = (
    "Identifier 'THEBE_JS_URL' has already been declared",
)

_SETTLE_JS = """
async (timeoutMs) => {
  const withTimeout = (p) => Promise.race([
    p, new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs))]);
  const out = {mathjax: null, mathjaxError: null};
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    try { await withTimeout(mj.startup.promise); out.mathjax = mj.version || 'unknown'; }
    catch (e) { out.mathjaxError = String(e); }
  }
  try { await withTimeout(document.fonts.ready); } catch (e) {}
  return out;
}
"""

_IMAGES_JS = """
async (timeoutMs) => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === 'lazy') img.loading = 'eager'; }
  const results = [];
  for (const img of imgs) {
    let decoded = true;
    try {
      await Promise.race([img.decode(), new Promise((_, reject) =>
        setTimeout(() => reject(new Error('timeout')), timeoutMs))]);
    } catch (e) { decoded = false; }
    const src = img.getAttribute('src') || '';
    // An SVG without intrinsic size can decode fine and still report naturalWidth 0.
    const svg = /\\.svgz?([?#]|$)/i.test(src) || src.startsWith('data:image/svg');
    results.push({src: src, width: img.naturalWidth,
                  ok: decoded && (img.naturalWidth > 0 || svg)});
  }
  return results;
}
"""

_ERRORS_JS = """
(selectors) => {
  const found = [];
  for (const el of document.querySelectorAll(selectors.join(','))) {
    if (found.some((f) => f.el.contains(el))) continue;  // count a cell once
    found.push({el: el, text: (el.innerText || el.textContent || '').trim()});
  }
  return found.map((f) => f.text.replace(/\\s+/g, ' ').slice(0, 200));
}
"""


# Reader-facing defects. myst-nb renders a stderr stream as ``div.output.stderr`` and a
# ``hide-input`` cell's source inside ``<details>``; a table may be wider than the article
# column only inside an ancestor that scrolls horizontally (the book's CSS gives cell
# outputs ``overflow-x: auto``).
_READER_JS = """
() => {
  const stderr = document.querySelectorAll('.output.stderr').length;
  const unfolded = Array.from(document.querySelectorAll('.cell_input'))
    .filter((el) => !el.closest('details')).length;
  const article = document.querySelector('article') || document.body;
  const limit = article.getBoundingClientRect().right + 1;
  const scrolls = (el) => {
    for (let a = el.parentElement; a && a !== article; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll') return true;
    }
    return false;
  };
  const wide = Array.from(article.querySelectorAll('table'))
    .filter((t) => t.getBoundingClientRect().right > limit && !scrolls(t))
    .map((t) => (t.innerText || '').trim().split('\\n')[0].slice(0, 80));
  return {stderr: stderr, unfolded: unfolded, wide: wide};
}
"""


@dataclass
class PageReport:
    """What :func:`inspect_pages` saw on one page."""

    page: str
    url: str
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)   # every URL the page asked for
    mathjax_version: str | None = None                  # set when MathJax started up
    math_elements: int = 0                              # rendered <mjx-container> count
    screenshot: Path | None = None


def _is_local(url: str) -> bool:
    return urlsplit(url).scheme.lower() in LOCAL_SCHEMES


def _screenshot_name(page: str) -> str:
    stem = page.strip("/").replace("/", "__") or "index.html"
    return stem.rsplit(".", 1)[0] + ".png" if stem.endswith((".html", ".htm")) else stem + ".png"


def chromium_available(executable: Path = CHROMIUM) -> bool:
    """True when the system Chromium the checker drives is installed."""
    return Path(executable).is_file()


def inspect_pages(html_root: Path, pages: list[str], screenshots: Path | None = None, *,
                  executable: Path = CHROMIUM, timeout_s: float = 30.0) -> list[PageReport]:
    """Open each page (a path relative to ``html_root``) and report what it did.

    See the module docstring for what counts as a problem. Raises ``FileNotFoundError``
    when ``html_root`` or the Chromium executable is missing.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    html_root = Path(html_root).resolve()
    if not html_root.is_dir():
        raise FileNotFoundError(f"{html_root} is not a folder: build the book first")
    executable = Path(executable)
    if not executable.is_file():
        raise FileNotFoundError(
            f"{executable} not found: install Debian's chromium (`make browser`)")
    if screenshots is not None:
        screenshots = Path(screenshots)
        screenshots.mkdir(parents=True, exist_ok=True)
    timeout_ms = int(timeout_s * 1000)

    reports: list[PageReport] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            for page_name in pages:
                reports.append(_inspect_one(browser, html_root, page_name, screenshots,
                                            timeout_ms, PlaywrightError))
        finally:
            browser.close()
    return reports


def _inspect_one(browser, html_root: Path, page_name: str, screenshots: Path | None,
                 timeout_ms: int, playwright_error) -> PageReport:
    path = (html_root / page_name).resolve()
    report = PageReport(page=page_name, url=path.as_uri())
    if not path.is_relative_to(html_root):
        report.problems.append(f"{page_name}: not inside {html_root}")
        return report
    if not path.is_file():
        report.problems.append(f"{page_name}: missing page ({path} does not exist)")
        return report

    outside: list[str] = []
    failed_local: list[str] = []
    js_errors: list[str] = []

    # A fresh context per page: no cache or storage carries over between pages.
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")

    def route(r):
        url = r.request.url
        if _is_local(url):
            r.continue_()
        else:
            if url not in outside:
                outside.append(url)
            r.abort("blockedbyclient")

    def on_request(request):
        report.requests.append(request.url)
        if not _is_local(request.url) and request.url not in outside:
            outside.append(request.url)  # seen even if routing somehow missed it

    def on_failed(request):
        url = request.url
        if urlsplit(url).scheme != "file" or url in failed_local:
            return
        # A navigation (index.html's meta refresh) cancels loads still in flight: not a
        # problem as long as the file is there.
        local = Path(unquote(urlsplit(url).path))
        if "ERR_ABORTED" in (request.failure or "") and local.is_file():
            return
        failed_local.append(url)

    context.route("**/*", route)
    try:
        context.route_web_socket("**/*", lambda ws: outside.append(ws.url) or ws.close())
    except AttributeError:  # older Playwright: no WebSocket routing; the resolver guards
        pass
    context.on("request", on_request)
    context.on("requestfailed", on_failed)
    page = context.new_page()
    page.on("pageerror", lambda exc: js_errors.append(str(exc).splitlines()[0]))
    try:
        try:
            page.goto(report.url, wait_until="load", timeout=timeout_ms)
            page.wait_for_load_state("networkidle", timeout=timeout_ms)
        except playwright_error as exc:
            report.problems.append(f"{page_name}: did not load: {str(exc).splitlines()[0]}")
        # index.html of a jupyter-book is a meta-refresh redirect: if the page navigates
        # while being inspected, wait for the new one and inspect that instead.
        for attempt in range(3):
            try:
                found = _inspect_dom(page, timeout_ms)
                break
            except playwright_error as exc:
                if attempt == 2 or "context was destroyed" not in str(exc):
                    raise
                page.wait_for_load_state("networkidle", timeout=timeout_ms)
        report.mathjax_version = found["mathjax"]
        if found["mathjaxError"]:
            report.problems.append(f"{page_name}: MathJax did not start: "
                                   f"{found['mathjaxError']}")
        report.math_elements = found["math"]
        for img in found["images"]:
            if not img["ok"]:
                report.problems.append(f"{page_name}: broken image: {img['src'] or '(no src)'}")
        for text in found["errors"]:
            report.problems.append(f"{page_name}: error output cell: {text}")
        reader = found["reader"]
        if reader["stderr"]:
            report.problems.append(f"{page_name}: {reader['stderr']} stderr output block(s)")
        if reader["unfolded"]:
            report.problems.append(f"{page_name}: {reader['unfolded']} code cell(s) not folded")
        for text in reader["wide"]:
            report.problems.append(f"{page_name}: table wider than the page: {text}")
        if screenshots is not None:
            report.screenshot = screenshots / _screenshot_name(page_name)
            # animations off: the theme's sticky sidebars are mid-transition right after load
            page.screenshot(path=str(report.screenshot), full_page=True, timeout=timeout_ms,
                            animations="disabled")
    finally:
        context.close()

    for url in outside:
        report.problems.append(f"{page_name}: outside request: {url}")
    for url in failed_local:
        local = Path(unquote(urlsplit(url).path))
        shown = local.relative_to(html_root) if local.is_relative_to(html_root) else local
        report.problems.append(f"{page_name}: local file failed to load: {shown}")
    for message in js_errors:
        if any(known in message for known in KNOWN_HARMLESS_JS_ERRORS):
            continue
        report.problems.append(f"{page_name}: JavaScript error: {message}")
    return report


def _inspect_dom(page, timeout_ms: int) -> dict:
    found = dict(page.evaluate(_SETTLE_JS, timeout_ms))
    found["math"] = page.locator("mjx-container").count()
    found["images"] = page.evaluate(_IMAGES_JS, timeout_ms)
    found["errors"] = page.evaluate(_ERRORS_JS, list(ERROR_OUTPUT_SELECTORS))
    found["reader"] = page.evaluate(_READER_JS)
    return found


def check_pages(html_root: Path, pages: list[str],
                screenshots: Path | None = None) -> list[str]:
    """Problems found on ``pages`` (paths relative to ``html_root``); empty means OK."""
    return [problem for report in inspect_pages(html_root, pages, screenshots)
            for problem in report.problems]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.book_check",
        description="Open built book pages in headless Chromium (offline) and fail on a "
                    "missing page, an error output cell, a broken image or any request "
                    "to an outside host.")
    parser.add_argument("html_root", type=Path, help="the built HTML folder, e.g. _build/html")
    parser.add_argument("pages", nargs="+",
                        help="pages relative to html_root, e.g. index.html book/intro.html")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder to write a full-page PNG of every page into")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM,
                        help=f"Chromium executable (default {CHROMIUM})")
    args = parser.parse_args(argv)
    try:
        reports = inspect_pages(args.html_root, args.pages, args.screenshots,
                                executable=args.chromium)
    except FileNotFoundError as exc:
        print(f"book_check: {exc}", file=sys.stderr)
        return 2
    problems = [p for r in reports for p in r.problems]
    for report in reports:
        status = "FAIL" if report.problems else "ok"
        extra = f", {report.math_elements} math (MathJax {report.mathjax_version})" \
            if report.mathjax_version else ""
        shot = f", screenshot {report.screenshot}" if report.screenshot else ""
        print(f"{status:4} {report.page}: {len(report.requests)} requests{extra}{shot}")
    for problem in problems:
        print(f"  problem: {problem}")
    print(f"book_check: {len(problems)} problem(s) on {len(reports)} page(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

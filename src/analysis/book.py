"""Build the HTML book with jupyter-book 1.x (Sphinx).

Notebooks are executed beforehand by papermill (``execute_notebooks: 'off'`` in
``_config.yml``), so building only renders; the build goes to a temporary folder and
replaces ``_build/html`` only when it succeeded, so a failed build never destroys the book
of the last good run.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

#: The table of contents ``python -m analysis run`` writes (relative to the book root): the
#: committed ``_toc.yml`` (hand-written pages only) plus every executed page. Under the
#: git-ignored ``_build/``, so a build leaves ``git status`` clean.
GENERATED_TOC = Path("_build") / "_toc.yml"


def build_book(book_root: Path) -> int:
    """Run ``jupyter-book build`` on ``book_root`` with the runner's table of contents
    (:data:`GENERATED_TOC`) when there is one; returns the process exit code.

    The HTML ends up in ``book_root/_build/html``.
    """
    book_root = Path(book_root).resolve()
    if not (book_root / "_config.yml").is_file():
        raise FileNotFoundError(f"{book_root / '_config.yml'} not found: not a book folder")
    staging = book_root / "_build" / "staging"
    if staging.exists():
        shutil.rmtree(staging)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(book_root), "--path-output", str(staging),
               "--keep-going", "-W", "-n"]
    toc = book_root / GENERATED_TOC
    if toc.is_file():  # written by the runner; without it only the hand-written pages build
        command += ["--toc", str(toc)]
    logger.info("building the book: %s", " ".join(command))
    result = subprocess.run(command)
    if result.returncode != 0:
        logger.error("book build failed; the previous _build/html is left as it was")
        return result.returncode
    final = book_root / "_build" / "html"
    if final.exists():
        shutil.rmtree(final)
    (staging / "_build" / "html").rename(final)
    shutil.rmtree(staging)
    print(f"book built: {final / 'index.html'}")
    return 0

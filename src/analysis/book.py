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


def build_book(book_root: Path) -> int:
    """Run ``jupyter-book build`` on ``book_root``; returns the process exit code.

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

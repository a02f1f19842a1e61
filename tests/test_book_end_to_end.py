"""The runner end to end at `ci` size: 2 subjects, then a third added; the built book is
opened in headless Chromium (no missing page, error cell, broken image or outside request)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from analysis.book_check import check_pages
from analysis.runner import GROUP_NOTEBOOKS, SUBJECT_NOTEBOOKS, run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """A copy of the book skeleton, so the run never touches the repository's book/."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("book", "notebooks", "_vendor"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("subjects", "group", "_work", "*.tmp*"))
    assert run("simulated", [1, 2], profile="ci", book_root=root, workdir=root / "work") == 0
    return root


def toc_files(root: Path) -> list[str]:
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = []
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files += [s["file"] for s in chapter.get("sections", [])]
    return files


def test_pages_for_every_subject_and_the_group_are_built(book):
    html = book / "_build" / "html"
    files = toc_files(book)
    for subject in (1, 2):
        for name in SUBJECT_NOTEBOOKS:
            page = f"book/subjects/simulated/sub-{subject:02d}/{name}"
            assert page in files and (html / f"{page}.html").is_file()
    for name in GROUP_NOTEBOOKS:
        assert (html / f"book/group/simulated/{name}.html").is_file()
    # The sidebar names each subject's chapter (their first pages share one H1).
    sidebar = (html / "book" / "group" / "simulated" / "group_summary.html").read_text()
    for subject in (1, 2):
        assert re.search(rf'sub-0{subject}/subject_01_overview.html">Subject {subject}\s*</a>', sidebar)


def test_built_pages_open_offline_without_errors(book, tmp_path):
    html = book / "_build" / "html"
    pages = ["index.html", "book/methods.html",
             "book/subjects/simulated/sub-01/subject_03_fidelity.html",
             "book/group/simulated/group_topography.html",
             "book/group/simulated/group_summary.html"]
    assert check_pages(html, pages, screenshots=tmp_path) == []


def test_adding_a_subject_adds_its_pages_and_updates_the_group(book):
    summary = book / "book" / "group" / "simulated" / "group_summary.ipynb"
    subject_page = book / "book" / "subjects" / "simulated" / "sub-01" / f"{SUBJECT_NOTEBOOKS[0]}.ipynb"
    before = subject_page.stat().st_mtime_ns
    assert run("simulated", [3], profile="ci", book_root=book, workdir=book / "work") == 0
    assert subject_page.stat().st_mtime_ns == before  # subject 1 was not redone
    assert "book/subjects/simulated/sub-03/subject_01_overview" in toc_files(book)
    assert "[1, 2, 3]" in summary.read_text()  # the group pages now cover all three

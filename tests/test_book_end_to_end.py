"""The runner end to end at `ci` size: one subject, then a second added; one subject of a
THINGS-EEG2-format dataset (63 channels, 250 Hz). The built books are opened in headless
Chromium (no missing page, error cell, broken image, outside request, stderr block or
unfolded code), and building leaves the clone's ``git status`` clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from analysis.book import GENERATED_TOC
from analysis.book_check import check_pages
from analysis.config import SimulationSize
from analysis.data.simulated import SimulationConfig, simulate_dataset
from analysis.runner import GROUP_NOTEBOOKS, SUBJECT_NOTEBOOKS, run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def skeleton(root: Path) -> Path:
    """A git clone-like copy of the book skeleton (committed), so a run never touches the
    repository's book/ and ``git status`` shows what a build leaves behind."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    for folder in ("book", "notebooks", "_vendor", "_static"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("subjects", "group", "_work", "*.tmp*"))
    git = ["git", "-C", str(root), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "skeleton"], check=True)
    return root


def git_status(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root), "status", "--porcelain"], check=True,
                          capture_output=True, text=True).stdout


#: The templates' default work folder (their parameters cell: ``workdir = "_work"``, beside
#: them). The simulated book is built there from scratch, so nbmake, which executes every
#: template at its defaults after these tests (``make test``), loads the models and tables
#: this run made instead of training them again.
NOTEBOOK_WORKDIR = REPO / "notebooks" / "_work"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    """Subject 1 alone, then subject 2 added, as a user adds a subject: their data, caches
    and checkpoints in the templates' work folder (the 63-channel run below keeps them
    under its book root, the README's default). Returns the book root and what the pages
    were before subject 2 was added."""
    root = skeleton(tmp_path_factory.mktemp("book"))
    shutil.rmtree(NOTEBOOK_WORKDIR, ignore_errors=True)
    assert run("simulated", [1], profile="ci", book_root=root, workdir=NOTEBOOK_WORKDIR) == 0
    first_page = root / "book" / "subjects" / "simulated" / "sub-01" / f"{SUBJECT_NOTEBOOKS[0]}.ipynb"
    summary = root / "book" / "group" / "simulated" / "group_summary.ipynb"
    before = {"first_page_mtime": first_page.stat().st_mtime_ns, "summary": summary.read_text(),
              "toc": toc_files(root)}
    # What a run killed in the middle of a page leaves behind: its partial page. The next
    # build must not read it (an orphan document fails the build).
    (summary.parent / ".group_sampling.999999.tmp.ipynb").write_text(summary.read_text())
    assert run("simulated", [2], profile="ci", book_root=root, workdir=NOTEBOOK_WORKDIR) == 0
    return root, before


@pytest.fixture(scope="module")
def book(built) -> Path:
    return built[0]


def toc_files(root: Path) -> list[str]:
    toc = yaml.safe_load((root / GENERATED_TOC).read_text())
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


def test_adding_a_subject_adds_its_pages_and_updates_the_group(built):
    book, before = built
    summary = book / "book" / "group" / "simulated" / "group_summary.ipynb"
    subject_page = book / "book" / "subjects" / "simulated" / "sub-01" / f"{SUBJECT_NOTEBOOKS[0]}.ipynb"
    assert subject_page.stat().st_mtime_ns == before["first_page_mtime"]  # not redone
    assert "book/subjects/simulated/sub-02/subject_01_overview" not in before["toc"]
    assert "book/subjects/simulated/sub-02/subject_01_overview" in toc_files(book)
    assert "subjects [1]," in before["summary"]
    assert "subjects [1, 2]," in summary.read_text()  # the group pages now cover both


def test_building_leaves_git_status_clean(book):
    assert (book / "_build" / "html" / "index.html").is_file()
    assert git_status(book) == ""


def test_one_subject_of_a_63_channel_things_eeg2_dataset_builds(tmp_path):
    """A new user's first run: one subject in the NICE/ATM layout (63 channels, 250 Hz),
    not simulated as far as the pages know (no noiseless truth, no attributes)."""
    data = tmp_path / "things-eeg2"
    # Smaller than the ci profile's data (the pages' cost grows with 63 × 250 features).
    size = SimulationSize(n_subjects=1, n_train_concepts=40, n_train_images_per_concept=2,
                          n_test_concepts=24, n_train_reps=4, n_test_reps=8)
    simulate_dataset(data, SimulationConfig(size=size, eeg_variant="nice"), progress=False)
    shutil.rmtree(data / "simulation")  # what only a simulation knows is not there
    (data / "simulation.json").unlink()
    root = skeleton(tmp_path / "book")
    assert run("things-eeg2", [1], profile="ci", root=data, book_root=root) == 0
    html = root / "_build" / "html"
    pages = [f"book/subjects/things-eeg2/sub-01/{name}.html" for name in SUBJECT_NOTEBOOKS]
    pages += [f"book/group/things-eeg2/{name}.html" for name in GROUP_NOTEBOOKS]
    assert check_pages(html, pages) == []
    topography = (html / "book/group/things-eeg2/group_topography.html").read_text()
    assert "needs at least two" in topography
    overview = (root / "book/subjects/things-eeg2/sub-01/subject_01_overview.ipynb").read_text()
    assert "63" in overview and "250" in overview
    assert git_status(root) == ""

"""``python -m analysis run``: execute the notebooks for some subjects and rebuild the book.

For each subject, the per-subject templates in ``notebooks/`` are executed with papermill
into ``book/subjects/<dataset>/sub-XX/``; then the group templates are executed into
``book/group/<dataset>/`` over *every* subject that has pages, so adding a subject later
(``--subjects 4``) updates the group pages without redoing subjects 1–3. Models and features
are cached on disk, so re-executing a page is cheap.

Pages execute in parallel worker processes, one per CPU core by default: a subject's pages
run in order, different subjects side by side, and each kernel gets its share of the cores.

Safety: each notebook executes into a temporary file that replaces the page only when it
succeeded; a failing notebook stops the run with its cell and error, leaving the pages and
the HTML of the last good run in place.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import resource
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
import papermill
import psutil
import yaml

from .book import GENERATED_TOC, build_book
from .config import get_profile
from .files import atomic_write_text

logger = logging.getLogger(__name__)

SUBJECT_NOTEBOOKS = ("subject_01_overview", "subject_02_training", "subject_03_fidelity",
                     "subject_04_topography", "subject_05_decoding", "subject_06_realism")
GROUP_NOTEBOOKS = ("group_features", "group_validation", "group_realism", "group_summary",
                   "group_ablation", "group_seeds", "group_sampling", "group_topography",
                   "group_reproducibility")
# Group pages that read the first subject only, mapped to the last of its pages they need:
# they may start while the other subjects' pages are still executing. The ablation page
# compares the generators of the subjects that train them all: the first subject's only,
# unless the profile ablates every subject (then it waits for every subject). The seeds
# page retrains the first subject's generators with other seeds: it needs that subject's
# data only, so it trains beside the first subject's training page, not after it (its
# default-seed models are that page's; a model being trained by one page is waited for,
# not trained twice: training.train_or_load).
FIRST_SUBJECT_PAGES = {"group_sampling": "subject_03_fidelity",
                       "group_ablation": "subject_03_fidelity",
                       "group_seeds": "subject_01_overview"}
ABLATION_PAGE = "group_ablation"
# Every subject page takes ``ablation``: the first subject trains and shows the ablation's
# generators (Profile.conditionings).
# Group pages that load models another group page trains: they wait for it, rather than
# train the same checkpoint at the same time (none today: the seeds page trains its
# seed models itself).
AFTER_GROUP_PAGES: dict[str, tuple[str, ...]] = {}
# Seconds each page takes in the default-profile book on 2 CPU cores, two pages at a time
# with one thread each (measured 2026-12-07 at a4cff94, benchmarks/results/book-default.json;
# training: the mean of the first subject's 664 s and the others' ~250 s); used only to
# order the work (longest remaining chain first), never to judge it.
TYPICAL_SECONDS = {"subject_01_overview": 71, "subject_02_training": 457,
                   "subject_03_fidelity": 77, "subject_04_topography": 18,
                   "subject_05_decoding": 62, "subject_06_realism": 56,
                   "group_features": 8, "group_validation": 25, "group_realism": 10,
                   "group_summary": 10, "group_ablation": 165, "group_seeds": 769,
                   "group_sampling": 156, "group_topography": 24, "group_reproducibility": 8}
# A page whose kernel dies before it runs a cell is started again, at most this many times
# in all: kernels starting at once can race for the same free TCP port ("Address already
# in use"), a failure of the machine, not of the page.
KERNEL_START_ATTEMPTS = 3
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"
# Honoured by torch (OpenMP) and the BLAS libraries when a kernel starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DATASET_TITLES = {"simulated": "Built-in simulated dataset", "things-eeg2": "THINGS-EEG2",
                  "things-meg": "THINGS-MEG"}


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


def subject_folder(book_root: Path, dataset: str, subject: int) -> Path:
    return book_root / "book" / "subjects" / dataset / f"sub-{subject:02d}"


@dataclass(frozen=True)
class PageCost:
    """What executing one page took: wall-clock seconds and the peak resident memory of
    its kernel (GB, sampled every :data:`MEMORY_SAMPLE_S`; a shorter spike can be missed)."""

    seconds: float
    peak_gb: float


MEMORY_SAMPLE_S = 0.25


@contextmanager
def _peak_child_memory():
    """Samples the resident memory of this process's children (a page's kernel) in a thread;
    yields a one-element list that holds the peak in bytes once the block ends."""
    peak, done = [0], threading.Event()
    me = psutil.Process()

    def sample():
        while not done.wait(MEMORY_SAMPLE_S):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # the process ended between listing and reading
                    pass
            peak[0] = max(peak[0], total)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def execute_notebook(template: Path, output: Path, parameters: dict, cwd: Path) -> PageCost:
    """Execute ``template`` with ``parameters`` into ``output`` atomically.

    Raises
    ------
    NotebookFailed
        With the failing cell's source and the error; ``output`` is left untouched.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.{os.getpid()}.tmp.ipynb")
    start = time.perf_counter()
    try:
        with _peak_child_memory() as peak:
            for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
                try:
                    papermill.execute_notebook(str(template), str(tmp), parameters=parameters,
                                               cwd=str(cwd), kernel_name="python3",
                                               progress_bar=False, log_output=False)
                    break
                except RuntimeError as error:
                    # No cell ran, so starting again is safe.
                    if KERNEL_START_FAILURE not in str(error) or attempt == KERNEL_START_ATTEMPTS:
                        raise
                    logger.warning("%s: %s; starting its kernel again (attempt %d of %d)",
                                   template.name, error, attempt + 1, KERNEL_START_ATTEMPTS)
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(
            f"{template.name} failed in cell {error.exec_count}:\n{error.source}\n\n"
            f"{error.ename}: {error.evalue}\n(the executed copy with the error is {tmp})"
        ) from None
    fold_code_cells(tmp)
    os.replace(tmp, output)
    return PageCost(time.perf_counter() - start, peak[0] / 1e9)


def fold_code_cells(notebook: Path) -> None:
    """Tag every code cell ``hide-input``: the results site shows outputs first, and
    readers open the code when they want it (Jupyter Book folds tagged cells)."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
    nbformat.write(nb, str(notebook))


def _title(notebook: Path) -> str:
    """The page's H1, for logging."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^# (.+)$", cell.source, flags=re.MULTILINE)
            if match:
                return match.group(1).strip()
    return notebook.stem


def subjects_with_pages(book_root: Path, dataset: str) -> list[int]:
    folder = book_root / "book" / "subjects" / dataset
    return sorted(int(p.name[4:]) for p in folder.glob("sub-*") if p.is_dir()
                  and all((p / f"{name}.ipynb").is_file() for name in SUBJECT_NOTEBOOKS))


def write_toc(book_root: Path) -> Path:
    """Write the book's table of contents: the hand-written pages of the committed
    ``_toc.yml`` followed by every executed page.

    It goes to :data:`~analysis.book.GENERATED_TOC` (under ``_build/``, which git ignores),
    so building the book leaves a clone's ``git status`` clean.
    """
    committed = yaml.safe_load((book_root / "_toc.yml").read_text())
    parts = list(committed.get("parts", []))
    for dataset, title in DATASET_TITLES.items():
        group = book_root / "book" / "group" / dataset
        group_pages = [{"file": f"book/group/{dataset}/{name}"} for name in GROUP_NOTEBOOKS
                       if (group / f"{name}.ipynb").is_file()]
        if group_pages:
            parts.append({"caption": f"{title}: group results", "chapters": group_pages})
        chapters = []
        for subject in subjects_with_pages(book_root, dataset):
            base = f"book/subjects/{dataset}/sub-{subject:02d}"
            # Every subject's first page has the same H1 ("Data overview"); the title makes
            # the sidebar say which subject a chapter is.
            chapters.append({"file": f"{base}/{SUBJECT_NOTEBOOKS[0]}",
                             "title": f"Subject {subject}",
                             "sections": [{"file": f"{base}/{n}"} for n in SUBJECT_NOTEBOOKS[1:]]})
        if chapters:
            parts.append({"caption": f"{title}: subjects", "chapters": chapters})
    toc = {**committed, "parts": parts}
    path = book_root / GENERATED_TOC
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Generated by `python -m analysis run` from _toc.yml and the pages under "
              "book/; edit those, not this file.\n")
    return atomic_write_text(path, header + yaml.safe_dump(toc, sort_keys=False))


@dataclass(frozen=True)
class Page:
    """One notebook to execute: ``after`` names the pages (by ``key``) it reads results of."""

    key: str
    template: Path
    output: Path
    parameters: dict
    after: tuple[str, ...] = ()


def plan_pages(dataset: str, subjects: list[int], everyone: list[int], common: dict,
               book_root: Path, *, ablate_every_subject: bool = False) -> list[Page]:
    """Every page of a run, with the dependencies that decide what may execute in parallel.

    A subject's pages run in order (each reads what the previous one trained or generated);
    different subjects are independent. Group pages wait for every subject of this run,
    except those in :data:`FIRST_SUBJECT_PAGES`, which wait only for the first subject's
    pages up to the one named there (the ablation page too, unless
    ``ablate_every_subject``: the profile's :attr:`~analysis.config.Profile.ablation_on_every_subject`).
    Each subject page's ``ablation`` parameter is true for the first subject of ``everyone``.
    """
    first_only = dict(FIRST_SUBJECT_PAGES)
    if ablate_every_subject:
        first_only.pop(ABLATION_PAGE)
    templates = book_root / "notebooks"
    pages = []
    for subject in subjects:
        previous: tuple[str, ...] = ()
        for name in SUBJECT_NOTEBOOKS:
            key = f"sub-{subject:02d}/{name}"
            parameters = {**common, "subject": subject, "ablation": subject == everyone[0]}
            pages.append(Page(key, templates / f"{name}.ipynb",
                              subject_folder(book_root, dataset, subject) / f"{name}.ipynb",
                              parameters, previous))
            previous = (key,)
    subject_keys = tuple(page.key for page in pages)
    for name in GROUP_NOTEBOOKS:
        after = subject_keys
        if name in first_only:
            last = SUBJECT_NOTEBOOKS.index(first_only[name])
            after = tuple(key for key in subject_keys if key.startswith(f"sub-{everyone[0]:02d}/")
                          and SUBJECT_NOTEBOOKS.index(key.split("/")[1]) <= last)
        after += tuple(f"group/{other}" for other in AFTER_GROUP_PAGES.get(name, ()))
        pages.append(Page(f"group/{name}", templates / f"{name}.ipynb",
                          book_root / "book" / "group" / dataset / f"{name}.ipynb",
                          {**common, "subjects": everyone}, after))
    return pages


def critical_path_seconds(pages: list[Page]) -> dict[str, float]:
    """Expected seconds from starting each page to finishing everything that waits on it.

    Starting the page with the longest such path first (list scheduling) keeps the long
    chains, like the first subject's pages followed by the sampling ablation, off the end
    of the run, where they would leave the other workers idle.
    """
    waiting_on = {page.key: [] for page in pages}
    for page in pages:
        for key in page.after:
            waiting_on[key].append(page.key)
    cost = {page.key: TYPICAL_SECONDS.get(page.template.stem, 60.0) for page in pages}
    path: dict[str, float] = {}

    def longest(key: str) -> float:
        if key not in path:
            path[key] = cost[key] + max((longest(k) for k in waiting_on[key]), default=0.0)
        return path[key]

    return {page.key: longest(page.key) for page in pages}


def _limit_threads(threads: int) -> None:
    """Worker initialiser: the kernels a worker starts inherit its environment, so each
    kernel's torch / BLAS use ``threads`` threads and the workers do not oversubscribe."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


def _log_cost(key: str, cost: PageCost) -> None:
    # As each page ends, so that a run killed later (e.g. out of memory) still says it.
    logger.info("%s finished: %.1f s, peak %.2f GB", key, cost.seconds, cost.peak_gb)


def execute_pages(pages: list[Page], cwd: Path, jobs: int) -> dict[str, PageCost]:
    """Execute ``pages`` respecting their dependencies, ``jobs`` notebooks at a time.

    With ``jobs > 1`` each notebook runs in its own worker process whose kernel gets
    ``cpu_count // jobs`` threads. When a notebook fails, nothing new starts; the notebooks
    already running finish (their pages are complete and valid) and the first failure is
    raised. Returns what each page took.
    """
    timings: dict[str, PageCost] = {}
    if jobs <= 1:
        remaining = list(pages)
        while remaining:  # in plan order, each page once the pages it reads are done
            page = next(p for p in remaining if set(p.after) <= timings.keys())
            remaining.remove(page)
            logger.info("executing %s", page.key)
            timings[page.key] = execute_notebook(page.template, page.output, page.parameters, cwd)
            _log_cost(page.key, timings[page.key])
        return timings
    priority = critical_path_seconds(pages)
    pending = {page.key: page for page in pages}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failure: NotebookFailed | None = None
    running: dict[Future, Page] = {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_threads, initargs=(threads,)) as pool:
        while pending or running:
            if failure is None:
                ready = sorted((p for p in pending.values() if set(p.after) <= timings.keys()),
                               key=lambda p: -priority[p.key])
                for page in ready[:jobs - len(running)]:
                    logger.info("executing %s (%d thread%s)", page.key, threads,
                                "" if threads == 1 else "s")
                    running[pool.submit(execute_notebook, page.template, page.output,
                                        page.parameters, cwd)] = pending.pop(page.key)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                page = running.pop(future)
                try:
                    timings[page.key] = future.result()
                    _log_cost(page.key, timings[page.key])
                except NotebookFailed as error:
                    logger.error("%s failed; waiting for the %d page(s) still running",
                                 page.key, len(running))
                    failure = failure or error
    if failure is not None:
        raise failure
    return timings


def run(dataset: str, subjects: list[int], *, profile: str = "default", root: str | Path | None = None,
        book_root: str | Path = ".", workdir: str | Path | None = None, device: str | None = None,
        build: bool = True, jobs: int | None = None, encoder=None) -> int:
    """Execute per-subject pages for ``subjects`` and the group pages, then build the book.

    The dataset and the image features every subject shares are prepared first, in this
    process; then the pages execute ``jobs`` at a time (default: one per CPU core, at most
    one per subject plus one). ``encoder`` (an :class:`~analysis.config.EncoderConfig`)
    replaces the profile's image encoder on every page.

    What each step took (wall seconds, peak memory) is printed and written to
    ``<workdir>/results/<dataset>/run-costs.json`` (see :func:`write_run_costs`).

    Returns the book build's exit code (0 on success).
    """
    from .experiment import SubjectRun, ensure_dataset

    book_root = Path(book_root).resolve()
    workdir = Path(workdir).resolve() if workdir else book_root
    start = time.perf_counter()
    root = ensure_dataset(dataset, root, profile, workdir, subjects=subjects)
    encoder = None if encoder is None else asdict(encoder)  # papermill takes plain values
    for subject in subjects:  # cached per image set: computed once, then only checked
        prepared = SubjectRun(dataset, root, subject, profile, workdir, device, encoder=encoder)
        prepared.features, prepared.readout_features
        # The pages load the signals themselves; held here they would sit in memory beside
        # every kernel's copy (4.2 GB at THINGS-EEG2's 250 Hz layout).
        del prepared
    # This process's own peak so far: the dataset, simulated or checked, and the features.
    costs = {"prepare": PageCost(time.perf_counter() - start,
                                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9)}
    common = {"dataset": dataset, "root": str(root), "profile": profile,
              "workdir": str(workdir), "device": device, "encoder": encoder}
    everyone = sorted(set(subjects_with_pages(book_root, dataset)) | set(subjects))
    pages = plan_pages(dataset, subjects, everyone, common, book_root,
                       ablate_every_subject=get_profile(profile).ablation_on_every_subject)
    # More workers than subjects + 1 would only wait on dependencies.
    jobs = jobs or min(os.cpu_count() or 1, len(subjects) + 1)
    start = time.perf_counter()
    costs.update(execute_pages(pages, workdir, jobs))
    pages_seconds = time.perf_counter() - start
    for step, cost in costs.items():
        print(f"  {step}: {cost.seconds:.1f} s, peak {cost.peak_gb:.2f} GB", file=sys.stderr)
    print(f"  {len(costs) - 1} pages in {pages_seconds:.0f} s ({jobs} at a time)", file=sys.stderr)
    write_toc(book_root)
    status = 0
    if build:
        start = time.perf_counter()
        with _peak_child_memory() as peak:  # jupyter-book runs in a child process
            status = build_book(book_root)
        costs["build"] = PageCost(time.perf_counter() - start, peak[0] / 1e9)
    write_run_costs(workdir / "results" / dataset / "run-costs.json", costs,
                    profile=profile, subjects=subjects, jobs=jobs, pages_seconds=pages_seconds)
    return status


def write_run_costs(path: Path, costs: dict[str, PageCost], **context) -> Path:
    """Record a run's costs as JSON: ``context`` (profile, subjects, …), the machine, the
    package versions and one ``{'step', 'seconds', 'peak_gb'}`` row per step (``prepare``:
    dataset and features in the runner's process; a page: its kernel; ``build``: the HTML)."""
    from .provenance import package_versions

    record = {**context, "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "versions": package_versions(),
              "steps": [{"step": step, "seconds": round(cost.seconds, 1),
                         "peak_gb": round(cost.peak_gb, 2)} for step, cost in costs.items()]}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(record, indent=1) + "\n")

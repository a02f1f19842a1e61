"""The runner's plan and parallel execution, on tiny notebooks (the book end to end is in
test_book_end_to_end.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nbformat
import pytest
import yaml

from analysis.book import GENERATED_TOC
from analysis.runner import (GROUP_NOTEBOOKS, SUBJECT_NOTEBOOKS, TYPICAL_SECONDS,
                             NotebookFailed, Page, critical_path_seconds, execute_pages,
                             plan_pages, write_run_costs, write_toc)


def test_plan_chains_each_subject_and_waits_for_all_before_the_group(tmp_path):
    pages = {p.key: p for p in plan_pages("simulated", [1, 2], [1, 2], {}, tmp_path)}
    assert len(pages) == 2 * len(SUBJECT_NOTEBOOKS) + len(GROUP_NOTEBOOKS)
    assert pages["sub-02/subject_01_overview"].after == ()
    assert pages["sub-02/subject_02_training"].after == ("sub-02/subject_01_overview",)
    assert pages["sub-01/subject_03_fidelity"].parameters["subject"] == 1
    # Every page of the first subject trains and shows the ablation's generators.
    assert {k for k, p in pages.items() if p.parameters.get("ablation")} == {
        f"sub-01/{name}" for name in SUBJECT_NOTEBOOKS}
    assert pages["sub-02/subject_05_decoding"].parameters["ablation"] is False
    summary = pages["group/group_summary"]
    assert set(summary.after) == {k for k in pages if k.startswith("sub-")}
    assert summary.parameters["subjects"] == [1, 2]
    assert summary.output == tmp_path / "book/group/simulated/group_summary.ipynb"
    # The sampling page and the ablation (the first subject's generators only) read the
    # first subject's models: they wait for its fidelity page, not for the other subjects.
    first = {"sub-01/subject_01_overview", "sub-01/subject_02_training",
             "sub-01/subject_03_fidelity"}
    assert set(pages["group/group_sampling"].after) == first
    assert set(pages["group/group_ablation"].after) == first
    # The seeds page retrains the first subject's generators: it needs its data only.
    assert pages["group/group_seeds"].after == ("sub-01/subject_01_overview",)
    # A profile that ablates every subject: the ablation page compares them all.
    every = {p.key: p for p in plan_pages("simulated", [1, 2], [1, 2], {}, tmp_path,
                                          ablate_every_subject=True)}
    assert set(every["group/group_ablation"].after) == set(summary.after)
    assert set(every["group/group_sampling"].after) == first


def test_plan_adding_a_subject_lets_the_first_subject_pages_start_at_once(tmp_path):
    pages = {p.key: p for p in plan_pages("simulated", [4], [1, 2, 3, 4], {}, tmp_path)}
    assert pages["group/group_sampling"].after == ()  # subject 1's pages exist already
    assert pages["group/group_sampling"].parameters["subjects"] == [1, 2, 3, 4]
    assert set(pages["group/group_summary"].after) == {k for k in pages if k.startswith("sub-04")}


def test_critical_path_starts_the_first_subject_first(tmp_path):
    pages = plan_pages("simulated", [1, 2, 3], [1, 2, 3], {}, tmp_path)
    path = critical_path_seconds(pages)
    # sub-01 carries the long sampling page behind it; sub-02 and sub-03 do not.
    assert path["sub-01/subject_01_overview"] > path["sub-02/subject_01_overview"]
    assert path["sub-02/subject_01_overview"] == path["sub-03/subject_01_overview"]
    # A page's path is its own cost plus the longest path waiting on it, by hand:
    t = TYPICAL_SECONDS
    assert path["group/group_summary"] == t["group_summary"]
    # the group pages but sampling, ablation and seeds wait on the last subject page
    # (realism), which waits on decoding:
    last = ("group_features", "group_validation", "group_realism", "group_summary",
            "group_topography", "group_reproducibility")
    assert path["sub-03/subject_06_realism"] == t["subject_06_realism"] + max(t[p] for p in last)
    assert path["sub-03/subject_05_decoding"] == (t["subject_05_decoding"]
                                                  + path["sub-03/subject_06_realism"])
    assert path["group/group_sampling"] == t["group_sampling"]  # nothing waits on it
    # The first subject's overview carries both its training chain and the seeds page.
    assert path["sub-01/subject_01_overview"] == t["subject_01_overview"] + max(
        path["sub-01/subject_02_training"], t["group_seeds"])


def _notebook(path: Path, *sources: str) -> Path:
    """A notebook with a tagged parameters cell (`out`, `value`) and ``sources`` after it."""
    cells = [nbformat.v4.new_code_cell('out = ""\nvalue = 0', metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


RECORD = ("import json, os\n"
          "json.dump({'value': value, 'threads': os.environ.get('OMP_NUM_THREADS')}, open(out, 'w'))")


def test_parallel_pages_run_in_dependency_order_with_their_thread_share(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    record = _notebook(tmp_path / "record.nb.ipynb", RECORD)
    # "second" reads what "first" wrote, so it fails unless it starts after first finished.
    check = _notebook(tmp_path / "check.nb.ipynb",
                      "import json\nassert json.load(open(out))['value'] == 1\n" + RECORD.replace(
                          "'value': value", "'value': value + 1"))
    pages = [Page("first", record, tmp_path / "pages/first.ipynb",
                  {"out": str(tmp_path / "a.json"), "value": 1}),
             Page("other", record, tmp_path / "pages/other.ipynb",
                  {"out": str(tmp_path / "b.json"), "value": 7}),
             Page("second", check, tmp_path / "pages/second.ipynb",
                  {"out": str(tmp_path / "a.json"), "value": 1}, after=("first",))]
    timings = execute_pages(pages, tmp_path, jobs=2)
    assert set(timings) == {"first", "other", "second"}
    assert json.loads((tmp_path / "a.json").read_text()) == {"value": 2, "threads": "1"}
    assert json.loads((tmp_path / "b.json").read_text()) == {"value": 7, "threads": "1"}
    assert all((tmp_path / f"pages/{k}.ipynb").is_file() for k in timings)


def test_a_page_whose_kernel_dies_at_start_is_started_again(tmp_path, monkeypatch):
    import papermill

    from analysis import runner

    record = _notebook(tmp_path / "record.nb.ipynb", RECORD)
    real = papermill.execute_notebook
    calls = []

    def flaky(*args, **kwargs):  # the port race: the first two kernels die at start
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(runner.KERNEL_START_FAILURE)
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    out = tmp_path / "a.json"
    runner.execute_notebook(record, tmp_path / "page.ipynb", {"out": str(out), "value": 3},
                            tmp_path)
    assert len(calls) == 3 and json.loads(out.read_text())["value"] == 3
    # A kernel that keeps dying is raised after the last attempt; any other error at once.
    for message, attempts in ((runner.KERNEL_START_FAILURE, runner.KERNEL_START_ATTEMPTS),
                              ("something else", 1)):
        calls.clear()

        def dies(*args, message=message, **kwargs):
            calls.append(1)
            raise RuntimeError(message)

        monkeypatch.setattr(papermill, "execute_notebook", dies)
        with pytest.raises(RuntimeError, match=message):
            runner.execute_notebook(record, tmp_path / "page2.ipynb", {"out": str(out)},
                                    tmp_path)
        assert len(calls) == attempts
    assert not (tmp_path / "page2.ipynb").exists()


def test_one_job_runs_a_page_after_those_it_reads_even_if_planned_before_them(tmp_path):
    record = _notebook(tmp_path / "record.nb.ipynb", RECORD)
    check = _notebook(tmp_path / "check.nb.ipynb",
                      "import json\nassert json.load(open(out))['value'] == 1\n" + RECORD.replace(
                          "'value': value", "'value': value + 1"))
    # Listed first, but it reads what "first" writes (as a group page reads the pages of
    # the subjects it summarises).
    pages = [Page("second", check, tmp_path / "pages/second.ipynb",
                  {"out": str(tmp_path / "a.json"), "value": 1}, after=("first",)),
             Page("first", record, tmp_path / "pages/first.ipynb",
                  {"out": str(tmp_path / "a.json"), "value": 1})]
    assert list(execute_pages(pages, tmp_path, jobs=1)) == ["first", "second"]
    assert json.loads((tmp_path / "a.json").read_text())["value"] == 2
    # Executed pages fold every code cell for the results site; markdown stays as it was.
    cells = nbformat.read(tmp_path / "pages/first.ipynb", as_version=4).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert code and all("hide-input" in c.metadata["tags"] for c in code)
    assert all("tags" not in c.metadata for c in cells if c.cell_type == "markdown")


def test_page_costs_see_the_kernel_memory_and_are_recorded_as_json(tmp_path):
    light = _notebook(tmp_path / "light.nb.ipynb", "x = 1")
    # 400 MB written to (so resident), held for four memory samples.
    heavy = _notebook(tmp_path / "heavy.nb.ipynb",
                      "import time\nimport numpy as np\nx = np.ones(50_000_000)\ntime.sleep(1.0)")
    costs = execute_pages([Page("light", light, tmp_path / "pages/light.ipynb", {}),
                           Page("heavy", heavy, tmp_path / "pages/heavy.ipynb", {})],
                          tmp_path, jobs=1)
    assert costs["heavy"].peak_gb - costs["light"].peak_gb > 0.3
    assert costs["light"].peak_gb > 0.01 and costs["heavy"].seconds > 1.0
    path = write_run_costs(tmp_path / "results/run-costs.json", costs, profile="ci", jobs=1)
    record = json.loads(path.read_text())
    assert (record["profile"], record["jobs"]) == ("ci", 1) and "mne" in record["versions"]
    assert [row["step"] for row in record["steps"]] == ["light", "heavy"]
    assert record["steps"][1]["peak_gb"] == round(costs["heavy"].peak_gb, 2)


def test_toc_keeps_the_hand_written_pages_and_leaves_the_committed_file_alone(tmp_path):
    committed = ("format: jb-book\nroot: book/intro\nparts:\n- caption: About\n  chapters:\n"
                 "  - file: book/methods\n")
    (tmp_path / "_toc.yml").write_text(committed)
    for subject in (2, 1):
        folder = tmp_path / "book" / "subjects" / "simulated" / f"sub-{subject:02d}"
        folder.mkdir(parents=True)
        for name in SUBJECT_NOTEBOOKS:
            (folder / f"{name}.ipynb").write_text("{}")
    group = tmp_path / "book" / "group" / "simulated"
    group.mkdir(parents=True)
    (group / "group_summary.ipynb").write_text("{}")
    path = write_toc(tmp_path)
    assert path == tmp_path / GENERATED_TOC
    assert (tmp_path / "_toc.yml").read_text() == committed
    toc = yaml.safe_load(path.read_text())
    assert toc["root"] == "book/intro"
    assert [p["caption"] for p in toc["parts"]] == [
        "About", "Built-in simulated dataset: group results", "Built-in simulated dataset: subjects"]
    assert toc["parts"][1]["chapters"] == [{"file": "book/group/simulated/group_summary"}]
    subjects = toc["parts"][2]["chapters"]
    assert [c["title"] for c in subjects] == ["Subject 1", "Subject 2"]
    assert len(subjects[0]["sections"]) == len(SUBJECT_NOTEBOOKS) - 1


def test_a_failing_page_stops_what_depends_on_it_and_names_the_cell(tmp_path):
    fail = _notebook(tmp_path / "fail.nb.ipynb", "raise ValueError('bad field x')")
    record = _notebook(tmp_path / "record.nb.ipynb", RECORD)
    pages = [Page("broken", fail, tmp_path / "pages/broken.ipynb", {}),
             Page("independent", record, tmp_path / "pages/independent.ipynb",
                  {"out": str(tmp_path / "c.json"), "value": 3}),
             Page("dependent", record, tmp_path / "pages/dependent.ipynb",
                  {"out": str(tmp_path / "d.json"), "value": 4}, after=("broken",))]
    with pytest.raises(NotebookFailed, match="(?s)fail.nb.ipynb failed in cell.*ValueError: bad field x"):
        execute_pages(pages, tmp_path, jobs=2)
    assert not (tmp_path / "pages/broken.ipynb").exists()  # no half-written page
    assert not (tmp_path / "d.json").exists()               # the dependent never started
    assert (tmp_path / "pages/independent.ipynb").is_file()  # already running: finished


def test_the_command_line_encoder_reaches_every_page(tmp_path, monkeypatch):
    """`python -m analysis run --encoder timm ...`: features are prepared with that encoder
    and every page gets it as its `encoder` parameter."""
    from analysis import runner
    from analysis.cli import main
    from analysis.config import ENCODER_DEFAULTS, get_profile

    captured = {}

    def fake_execute(pages, cwd, jobs):
        captured["pages"] = pages
        return {}

    monkeypatch.setattr(runner, "execute_pages", fake_execute)
    monkeypatch.setattr(runner, "write_toc", lambda root: None)
    assert main(["run", "--profile", "ci", "--subjects", "1", "--book-root", str(tmp_path),
                 "--workdir", str(tmp_path / "work"), "--no-build", "--encoder", "timm",
                 "--stages", "blocks.4", "conv_head"]) == 0
    expected = dataclasses.replace(ENCODER_DEFAULTS["timm"], stages=("blocks.4", "conv_head"),
                                   batch_size=get_profile("ci").encoder.batch_size)
    encoders = [page.parameters["encoder"] for page in captured["pages"]]
    assert len(encoders) == len(SUBJECT_NOTEBOOKS) + len(GROUP_NOTEBOOKS)
    assert all(e == dataclasses.asdict(expected) for e in encoders)
    cache = tmp_path / "work" / "cache" / "features"
    # Prepared in the parent: the chosen encoder and the profile's read-out CNN (its default
    # stages), never the profile's own tiny CLIP, which the command line replaced.
    assert len(list(cache.glob("features-tf_efficientnet_lite0-*"))) == 2
    assert not list(cache.glob("features-i2b-tiny-vit-*"))
    from analysis.config import EncoderConfig
    assert EncoderConfig(**encoders[0]) == expected  # what a page rebuilds from its parameter

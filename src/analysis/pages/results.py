"""Persistence: per-subject result tables for the group pages, and dataset-level tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import pandas as pd

from ..calibration import calibration_scores
from .decoding import identification_table, plausibility_table
from .fidelity import fidelity_table, paired_tests, readout_table
from .realism import realism_scores
from .topography import topography_table

if TYPE_CHECKING:
    from ..experiment import SubjectRun


#: The per-subject tables the group pages read, and how each is computed.
RESULTS: dict[str, Callable[[SubjectRun], pd.DataFrame]] = {
    "calibration": calibration_scores,
    "fidelity": fidelity_table,
    "readouts": readout_table,
    "paired_tests": paired_tests,
    "identification": identification_table,
    "plausibility": plausibility_table,
    "topography": topography_table,
    "realism": realism_scores,
}


def save_table(run: SubjectRun, name: str, table: pd.DataFrame) -> Path:
    """Save a per-subject table for the group pages, tagged with its profile and encoder.

    Calls :meth:`SubjectRun.save_result` (which adds ``dataset`` and ``subject``) after
    adding ``profile`` and ``encoder`` columns, so :func:`load_or_compute` never mixes
    tables of different run sizes or encoders.
    """
    return run.save_result(name, table.assign(profile=run.profile.name,
                                              encoder=run.encoder_label))


def save_dataset_table(runs: Mapping[int, SubjectRun], name: str, table: pd.DataFrame) -> Path:
    """Save a table about the whole dataset (all of ``runs``) as
    ``results/<dataset>/<name>.csv``, tagged with dataset, subjects, profile and encoder."""
    from ..files import atomic_write_text

    first = next(iter(runs.values()))
    folder = Path(first.workdir) / "results" / first.dataset_name
    folder.mkdir(parents=True, exist_ok=True)
    table = table.assign(dataset=first.dataset_name,
                         subjects=" ".join(str(s) for s in runs), profile=first.profile.name,
                         encoder=first.encoder_label)
    return atomic_write_text(folder / f"{name}.csv", table.to_csv(index=False))


def load_or_compute(run: SubjectRun, name: str) -> pd.DataFrame:
    """The saved table ``name`` of this subject, computed and saved first when missing.

    A saved table made with another profile or encoder is recomputed.

    Parameters
    ----------
    name : str
        One of :data:`RESULTS`.
    """
    if name not in RESULTS:
        raise ValueError(f"name: expected one of {sorted(RESULTS)}, found '{name}'")
    path = run.results_dir / f"{name}.csv"
    if path.is_file():
        table = pd.read_csv(path)
        if ({"profile", "encoder"} <= set(table.columns)
                and (table["profile"] == run.profile.name).all()
                and (table["encoder"] == run.encoder_label).all()):
            return table
    save_table(run, name, RESULTS[name](run))
    return pd.read_csv(path)


def group_results(runs: Mapping[int, SubjectRun], name: str) -> pd.DataFrame:
    """One saved table for every subject of ``runs``, concatenated (computing missing ones)."""
    return pd.concat([load_or_compute(run, name) for run in runs.values()], ignore_index=True)

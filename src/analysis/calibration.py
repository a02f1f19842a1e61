"""The metric-validation page: every check of the book calibrated on the references.

:func:`calibration_scores` scores one subject's references and models with every check of
:data:`~analysis.evaluation.metric_validation.CHECKS`, all against the same target half of
the test repetitions and with the same number of signals per image;
:func:`calibration_verdicts` says, per subject and over subjects, which checks rank the
references as they claim (:data:`analysis.names.TIERS`). A check is marked valid for the
dataset only when it passes in every subject.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from .evaluation.metric_validation import (CHECKS, CHECKS_BY_NAME, Check, Context, score_checks,
                                           verdicts)
from .names import CONDITIONINGS, DESCRIPTIONS, MODELS, REFERENCES, TIERS, kind

if TYPE_CHECKING:
    from .experiment import SubjectRun


def available(run: SubjectRun, names: Sequence[str]) -> list[str]:
    """``names`` that this subject has: without ``oracle`` when the data are real (it needs
    the simulator), and without the conditionings the subject does not train
    (:attr:`~analysis.experiment.SubjectRun.conditionings`)."""
    return [n for n in names if (n != "oracle" or run.dataset.noiseless is not None)
            and (n not in CONDITIONINGS or n in run.conditionings)]


def available_in_all(runs: Mapping[int, SubjectRun], names: Sequence[str]) -> list[str]:
    """``names`` that every subject of ``runs`` has (:func:`available`): what a comparison
    across subjects can show."""
    return [n for n in names if all(available(run, [n]) for run in runs.values())]


def reference_table() -> pd.DataFrame:
    """The reference generators: what each is and where a valid check ranks it."""
    rank = {0: "best", 1: "middle", 2: "worst"}
    return pd.DataFrame({"what it is": [DESCRIPTIONS[r] for r in REFERENCES],
                         "a valid check ranks it": [rank[TIERS[r]] for r in REFERENCES]},
                        index=list(REFERENCES))


def calibration_scores(run: SubjectRun, names: Sequence[str] = REFERENCES + MODELS
                       ) -> pd.DataFrame:
    """Every check for every reference and model of one subject.

    Each gets :attr:`~analysis.experiment.SubjectRun.n_signals` signals per test image and
    is scored against :attr:`~analysis.experiment.SubjectRun.target`; identification uses
    the most reliable 20 % of channel × time points of the *training* trials.

    Returns
    -------
    pandas.DataFrame
        Columns ``generator``, ``kind`` (reference / generator / baseline), ``check``,
        ``value``, ``better``, ``n_signals``, ``n_target_reps``.
    """
    from .pages.decoding import identification_mask

    context = Context(run.dataset.times, run.dataset.sfreq, identification_mask(run))
    signals = {name: run.signals(name) for name in available(run, names)}
    scores = score_checks(signals, run.target, context)
    return scores.assign(kind=[kind(g) for g in scores["generator"]],
                         n_signals=run.n_signals, n_target_reps=run.target.shape[1])


#: The group-level check of the book (it compares subjects, so it has one score per
#: dataset, not per subject): the own-vs-other index of image-specific maps.
OWN_VS_OTHER = Check("own_vs_other", "own-vs-other index", "higher", compute=None,
                     what="own-subject minus other-subject r of image-specific window maps")


def own_vs_other_calibration(runs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The own-vs-other index of every reference (and model) and its verdict.

    Parameters
    ----------
    runs : mapping of subject to SubjectRun, at least 2 subjects

    Returns
    -------
    table : pandas.DataFrame
        :func:`~analysis.summaries.own_vs_other_table` rows, references first.
    verdict : pandas.DataFrame
        :func:`~analysis.evaluation.metric_validation.verdicts` of the index (one row).
    """
    from .pages.topography import own_vs_other_table

    table = own_vs_other_table(runs, available_in_all(runs, REFERENCES + MODELS))
    scores = pd.DataFrame({"generator": table["model"], "check": OWN_VS_OTHER.name,
                           "value": table["index"]})
    return table, verdicts(scores, TIERS, [OWN_VS_OTHER])


def calibration_verdicts(scores: pd.DataFrame) -> pd.DataFrame:
    """Per subject and check: does it rank the references as it claims?

    Parameters
    ----------
    scores : pandas.DataFrame
        :func:`calibration_scores` of one or more subjects (a ``subject`` column).

    Returns
    -------
    pandas.DataFrame
        :func:`~analysis.evaluation.metric_validation.verdicts` columns plus ``subject``.
    """
    if "subject" not in scores:
        scores = scores.assign(subject=0)
    return pd.concat([verdicts(part, TIERS).assign(subject=subject)
                      for subject, part in scores.groupby("subject", sort=True)],
                     ignore_index=True)


def dataset_verdicts(verdict_table: pd.DataFrame) -> pd.DataFrame:
    """One verdict per check over subjects: valid only where every subject passes.

    Returns
    -------
    pandas.DataFrame
        Columns ``check``, ``label``, ``better``, ``valid``, ``n_pass``, ``n_subjects`` and
        ``reason`` (the failing subjects' reasons, with their subject numbers).
    """
    rows = []
    for check in CHECKS:
        part = verdict_table[verdict_table["check"] == check.name]
        if part.empty:
            continue
        failing = part[~part["valid"].astype(bool)]
        reason = "; ".join(f"sub-{int(s):02d}: {r}" for s, r in
                           zip(failing["subject"], failing["reason"]))
        rows.append(dict(check=check.name, label=check.label, better=check.better,
                         valid=failing.empty, n_pass=int(len(part) - len(failing)),
                         n_subjects=int(len(part)), reason=reason))
    return pd.DataFrame(rows)


def verdict_display(dataset_table: pd.DataFrame) -> pd.DataFrame:
    """:func:`dataset_verdicts` for reading: one row per check (its label and direction),
    ``valid``, ``passes`` (e.g. ``'3 / 3'`` subjects) and the reasons it fails."""
    return pd.DataFrame({
        "check": [f"{r.label} {CHECKS_BY_NAME[r.check].arrow}"
                  for r in dataset_table.itertuples()],
        "valid": dataset_table["valid"].map({True: "yes", False: "no"}).to_numpy(),
        "passes": [f"{r.n_pass} / {r.n_subjects}" for r in dataset_table.itertuples()],
        "why it fails": dataset_table["reason"].to_numpy()}).set_index("check").rename_axis(
            index=None)


def calibration_display(scores: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Group mean of every check (rows) for every reference and model (columns)."""
    means = scores.groupby(["check", "generator"], sort=False)["value"].mean().unstack()
    order = [g for g in REFERENCES + MODELS if g in means.columns]
    table = means.loc[[c.name for c in CHECKS if c.name in means.index], order]
    table.index = [f"{CHECKS_BY_NAME[c].label} {CHECKS_BY_NAME[c].arrow}" for c in table.index]
    return table.round(digits).rename_axis(index=None, columns=None)


def calibration_findings(dataset_table: pd.DataFrame) -> str:
    """What the verdicts say, as sentences computed from them."""
    valid = dataset_table[dataset_table["valid"]]
    failed = dataset_table[~dataset_table["valid"]]
    n = int(dataset_table["n_subjects"].max()) if len(dataset_table) else 0
    lines = [f"{len(valid)} of {len(dataset_table)} checks rank the references as they claim "
             f"in all {n} subject(s): {', '.join(valid['label']) or 'none'}."]
    for row in failed.itertuples():
        lines.append(f"{row.label} fails in {row.n_subjects - row.n_pass} of {row.n_subjects} "
                     f"subject(s) ({row.reason}); its numbers elsewhere in the book are shown "
                     "as descriptions, not as evidence.")
    return "\n".join(lines)


def check_is_valid(dataset_table: pd.DataFrame, check: str) -> bool:
    """Whether ``check`` passed in every subject (False when it was not validated)."""
    row = dataset_table[dataset_table["check"] == check]
    return bool(len(row)) and bool(np.asarray(row["valid"])[0])

"""Tables of the reproducibility page: versions, git commit, provenance of every
generator."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from .training import checkpoint_record

if TYPE_CHECKING:
    from ..experiment import SubjectRun


def environment_versions() -> pd.DataFrame:
    """Versions of Python and of the packages behind every number (name, version)."""
    from ..provenance import package_versions

    rows = [*package_versions().items(), ("platform", platform.platform())]
    return pd.DataFrame(rows, columns=["name", "version"])


def git_commit(path: str | Path = ".") -> str:
    """``git rev-parse HEAD`` of the repository holding ``path`` (plus ``-dirty`` with
    uncommitted changes), or ``'unknown'`` outside a git checkout or without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=path, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_table(run: SubjectRun, conditionings: Sequence[str] | None = None
                     ) -> pd.DataFrame:
    """Per generator (default: the subject's): seeds, device, encoder weights, timings of
    training and sampling.

    Read from each checkpoint's ``config.json`` and the records saved next to its
    generated signals, so the timings are those of the original runs even when this
    session only loaded them.

    Returns
    -------
    pandas.DataFrame
        One row per conditioning: ``train_seed``, ``sampling_seed``, ``trained_on``,
        ``n_parameters``, ``encoder``, ``encoder_digest``, ``train_seconds``,
        ``generate_seconds``, ``signals_per_s``, ``started``, ``checkpoint_key``.
    """
    from ..pipeline import generated_name

    sampling = run.sampling()
    rows = []
    for conditioning in conditionings or run.conditionings:
        trained = run.model(conditioning)
        record = checkpoint_record(trained)
        generated = trained.path.parent / f"{generated_name(sampling)}.json"
        gen = json.loads(generated.read_text()) if generated.is_file() else {}
        encoder = record.get("encoder", {})
        weights = "random init" if encoder.get("random_init") else encoder.get("pretrained")
        rows.append(dict(
            conditioning=conditioning, train_seed=trained.train_config.seed,
            sampling_seed=sampling.seed, trained_on=record.get("device", "unknown"),
            n_parameters=record.get("n_parameters"),
            encoder=f"{encoder.get('model')} ({weights})",
            encoder_digest=str(encoder.get("weights_digest"))[:16],
            train_seconds=trained.info.get("train_seconds", np.nan),
            generate_seconds=gen.get("seconds", np.nan),
            signals_per_s=gen.get("signals_per_s", np.nan),
            started=record.get("started"), checkpoint_key=str(record.get("key"))[:12]))
    return pd.DataFrame(rows)


def reproducibility_findings(commit: str, info: dict, provenance: pd.DataFrame) -> str:
    """The reproducibility page's finding as Markdown: what produced the book's numbers.

    Parameters
    ----------
    commit : str
        :func:`git_commit` of the package source.
    info : dict
        The first subject's :meth:`~analysis.experiment.SubjectRun.provenance`.
    provenance : DataFrame
        :func:`provenance_table` rows of every subject, with a ``subject`` column.
    """
    state = {"unknown": "not a git checkout, so no commit identifies it"}.get(
        commit, "with uncommitted changes" if commit.endswith("-dirty") else "committed")
    n_subjects, n_models = provenance["subject"].nunique(), provenance["conditioning"].nunique()
    devices = ", ".join(sorted(provenance["trained_on"].astype(str).unique()))
    return "\n\n".join([
        f"The numbers in this book come from commit `{commit}` ({state}), profile "
        f"`{info['profile']}`, run on {info['device']}; generators were trained on {devices}.",
        f"Image features: {info['encoder']}, weights sha256 `{info['encoder_digest']}`.",
        f"Training seeds {sorted(int(s) for s in provenance['train_seed'].unique())}, sampling "
        f"seed {info['sampling']['seed']}. Training took "
        f"{provenance['train_seconds'].sum():.0f} s and sampling "
        f"{provenance['generate_seconds'].sum():.0f} s in all, over {n_subjects} subject"
        f"{'s' if n_subjects != 1 else ''} × {n_models} generators (timings of the runs that "
        "made the checkpoints; loading them is fast).",
    ])

"""Tables of the training page: checkpoints, configurations and loss curves."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..names import CONDITIONINGS

if TYPE_CHECKING:
    from ..experiment import SubjectRun


def checkpoint_record(trained) -> dict:
    path = trained.path.parent / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def training_table(run: SubjectRun, conditionings: Sequence[str] = CONDITIONINGS,
                   **train_overrides) -> pd.DataFrame:
    """What was trained (or loaded) for each conditioning, and how long it took.

    Returns
    -------
    pandas.DataFrame
        One row per conditioning: ``loaded`` (an existing checkpoint was reused),
        ``epochs``, ``final_loss``, ``n_parameters``, ``device`` (where it was trained),
        ``train_seconds`` (of the original training), ``seed`` and ``checkpoint`` (path).
    """
    rows = []
    for conditioning in conditionings:
        trained = run.model(conditioning, **train_overrides)
        record = checkpoint_record(trained)
        rows.append(dict(
            conditioning=conditioning, loaded=trained.loaded,
            epochs=trained.train_config.epochs,
            final_loss=trained.losses[-1] if trained.losses else np.nan,
            n_parameters=record.get("n_parameters", trained.model.n_parameters()),
            device=record.get("device", "unknown"),
            train_seconds=trained.info.get("train_seconds", np.nan),
            seed=trained.train_config.seed, checkpoint=str(trained.path)))
    return pd.DataFrame(rows)


def config_table(run: SubjectRun, conditionings: Sequence[str] = CONDITIONINGS) -> pd.DataFrame:
    """Model and training settings side by side, one column per conditioning.

    Returns
    -------
    pandas.DataFrame
        Index ``(section, setting)`` with ``section`` ``'model'`` or ``'train'``; values as
        strings so mixed types display cleanly.
    """
    columns = {}
    for conditioning in conditionings:
        trained = run.model(conditioning)
        entries = {("model", k): v for k, v in trained.model_config.as_dict().items()}
        entries.update({("train", k): v for k, v in trained.train_config.as_dict().items()})
        columns[conditioning] = {k: str(v) for k, v in entries.items()}
    table = pd.DataFrame(columns)
    table.index.names = ["section", "setting"]
    return table


def losses(run: SubjectRun, conditionings: Sequence[str] = CONDITIONINGS) -> dict[str, list[float]]:
    """Mean training loss per epoch of each conditioning (train-or-load)."""
    return {c: list(run.model(c).losses) for c in conditionings}

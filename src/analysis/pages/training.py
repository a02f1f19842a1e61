"""Tables of the training page: checkpoints, configurations and loss curves."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd


if TYPE_CHECKING:
    from ..experiment import SubjectRun


def checkpoint_record(trained) -> dict:
    path = trained.path.parent / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def training_table(run: SubjectRun, conditionings: Sequence[str] | None = None,
                   **train_overrides) -> pd.DataFrame:
    """What was trained (or loaded) for each conditioning (default: the subject's
    :attr:`~analysis.experiment.SubjectRun.conditionings`), and how long it took.

    Returns
    -------
    pandas.DataFrame
        One row per conditioning: ``loaded`` (an existing checkpoint was reused),
        ``epochs``, ``final_loss``, ``n_parameters``, ``device`` (where it was trained),
        ``train_seconds`` (of the original training), ``seed`` and ``checkpoint`` (path).
    """
    rows = []
    for conditioning in conditionings or run.conditionings:
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


def config_table(run: SubjectRun, conditionings: Sequence[str] | None = None) -> pd.DataFrame:
    """Model and training settings side by side, one column per conditioning.

    Returns
    -------
    pandas.DataFrame
        Index ``(section, setting)`` with ``section`` ``'model'`` or ``'train'``; values as
        strings so mixed types display cleanly.
    """
    columns = {}
    for conditioning in conditionings or run.conditionings:
        trained = run.model(conditioning)
        entries = {("model", k): v for k, v in trained.model_config.as_dict().items()}
        entries.update({("train", k): v for k, v in trained.train_config.as_dict().items()})
        columns[conditioning] = {k: str(v) for k, v in entries.items()}
    table = pd.DataFrame(columns)
    table.index.names = ["section", "setting"]
    return table


def losses(run: SubjectRun, conditionings: Sequence[str] | None = None) -> dict[str, list[float]]:
    """Mean training loss per epoch of each conditioning (train-or-load)."""
    return {c: list(run.model(c).losses) for c in conditionings or run.conditionings}


def learning_curve(run: SubjectRun, conditionings: Sequence[str] = ("cross_attention",)
                   ) -> pd.DataFrame:
    """Validation learning curves: each generator trained on the fitting concepts, its
    conditional mean scored on the validation concepts about 12 times during training.

    Returns
    -------
    pandas.DataFrame
        One row per (conditioning, scored epoch): ``epoch``, ``step`` (optimiser steps so
        far), ``encoding_r`` (mean r over channel × time points against the validation
        averages, no ceiling) and ``ridge_r``, ridge's score on the same images from the
        same features (the bar the generator's mean is judged against).
    """
    from ..evaluation.metrics import mean_encoding_score

    val = run.validation
    ridge = mean_encoding_score(val.prediction("ridge"), val.target_average)
    frames = []
    for conditioning in conditionings:
        curve = val.model(conditioning).info.get("curve", [])
        if not curve:
            raise ValueError(f"{conditioning}: its validation checkpoint has no learning curve "
                             f"({val.model(conditioning).path.parent}); it was trained without "
                             "a monitor: delete the folder to retrain it")
        frames.append(pd.DataFrame(curve).assign(conditioning=conditioning, ridge_r=ridge))
    return pd.concat(frames, ignore_index=True)


def plateau_epoch(curve: pd.DataFrame, share: float = 0.98) -> int:
    """The first scored epoch whose ``encoding_r`` reaches ``share`` of the curve's best:
    where more training stops paying (one conditioning's rows of :func:`learning_curve`).

    A curve that never rises above 0 (no image-specific signal learnt) has no such share;
    its plateau is the first epoch at its best.
    """
    values = curve["encoding_r"].to_numpy(float)
    best = np.nanmax(values)
    reached = np.flatnonzero(values >= (share * best if best > 0 else best))
    return int(curve["epoch"].iloc[reached[0]])


def oracle_conditioning(run: SubjectRun, conditioning: str = "cross_attention", *,
                        n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """Is training the bottleneck? The generator conditioned on the simulator's true image
    attributes against ridge on the same attributes (simulated data only).

    Both read the same design matrix (:func:`~analysis.readouts.oracle_image_features`),
    so a generator far below ridge here is limited by its training, not its features.

    Returns
    -------
    pandas.DataFrame
        ``fidelity_summary`` rows (``paper_r``, ``encoding_score``) for ``model``
        ``'<conditioning> on true attributes'`` (its conditional mean) and ``'ridge on true
        attributes'``, with ``pct_of_ridge``: the generator's value as % of ridge's.
    """
    from ..evaluation.metrics import fidelity_summary
    from ..models.baselines import RidgeEncoder
    from ..pipeline import train_generator
    from ..readouts import oracle_image_features
    from ..training import match_features

    oracle = oracle_image_features(run.dataset)
    trained = train_generator(run.dataset, oracle, conditioning, run.profile,
                              run.workdir / "checkpoints", device=run.device, progress=run.progress)
    test_cond = match_features(oracle, run.dataset.test.image_ids)
    train_x = match_features(oracle, run.dataset.train.image_ids).pooled.numpy()
    ridge = RidgeEncoder().fit(train_x, run.dataset.train.average()).predict(test_cond.pooled.numpy())
    noiseless = None if run.dataset.noiseless is None else run.dataset.noiseless["test"]
    frames = []
    for name, pred in ((f"{conditioning} on true attributes",
                        trained.conditional_mean(test_cond, device=run.device)),
                       ("ridge on true attributes", ridge)):
        table = fidelity_summary(pred, run.target, noiseless, n_boot=n_boot, seed=seed)
        frames.append(table[table["metric"].isin(["paper_r", "encoding_score"])].assign(model=name))
    table = pd.concat(frames, ignore_index=True)
    ridge_rows = table[table["model"] == "ridge on true attributes"].set_index(
        ["metric", "ceiling_method"])["value"]
    table["pct_of_ridge"] = [100 * v / ridge_rows[(m, c)] for v, m, c in
                             zip(table["value"], table["metric"], table["ceiling_method"])]
    return table


def loss_phases(losses: Sequence[float], config) -> dict[str, list[float]]:
    """Per-epoch losses grouped by what each epoch trained on (``'average'`` repetition
    means, then ``'trials'``; :meth:`~analysis.training.TrainConfig.targets_at`), in order."""
    phases: dict[str, list[float]] = {}
    for epoch, loss in enumerate(losses):
        phases.setdefault(config.targets_at(epoch), []).append(float(loss))
    return phases


def training_findings(run: SubjectRun, training: pd.DataFrame) -> str:
    """The training page's finding as Markdown, one sentence per conditioning: reused or
    trained now, its size, and its loss from the first to the last epoch of each phase
    (whether training still made progress there). ``training``: :func:`training_table`."""
    names = {"average": "repetition averages", "trials": "single trials"}
    sentences = []
    for row in training.itertuples():
        trained = run.model(row.conditioning)
        phases = loss_phases(trained.losses, trained.train_config)
        progress = "; ".join(f"on {names.get(kind, kind)} its loss went {values[0]:.3f} → "
                             f"{values[-1]:.3f} over {len(values)} "
                             f"epoch{'s' if len(values) != 1 else ''}"
                             for kind, values in phases.items())
        origin = "checkpoint reused" if row.loaded else "trained now"
        sentences.append(f"`{row.conditioning}` ({origin}, {row.n_parameters:,} parameters, "
                         f"{row.train_seconds:.0f} s on {row.device}): {progress}.")
    return "\n\n".join(sentences)

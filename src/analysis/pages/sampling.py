"""Tables of the sampling page: sweeps of sampling settings, choices on validation
concepts, training seeds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..evaluation.metrics import fidelity_summary

if TYPE_CHECKING:
    from ..experiment import SubjectRun


def _fidelity_rows(run: SubjectRun, pred: np.ndarray, n_boot: int, seed: int) -> pd.DataFrame:
    trials = run.target
    noiseless = None if run.dataset.noiseless is None else run.dataset.noiseless["test"]
    table = fidelity_summary(pred, trials, noiseless, n_boot=n_boot, seed=seed)
    return table[table["metric"] != "paper_mse"]


def sampling_sweep(run: SubjectRun, parameter: str, values: Sequence,
                   conditioning: str = "cross_attention", *, n_boot: int = 500,
                   seed: int = 0) -> pd.DataFrame:
    """Fidelity of one generator as one sampling setting varies (e.g. guidance, steps).

    Parameters
    ----------
    parameter : str
        A :class:`~analysis.config.SamplingConfig` field, e.g. ``'guidance_scale'`` or
        ``'steps'``.
    values : sequence
        Settings to try; generated signals are cached per setting.

    Returns
    -------
    pandas.DataFrame
        ``fidelity_summary`` rows for ``paper_r`` and ``encoding_score`` with
        ``parameter`` and ``setting`` columns.
    """
    frames = [_fidelity_rows(run, run.prediction(conditioning, **{parameter: v}), n_boot, seed)
              .assign(parameter=parameter, setting=v) for v in values]
    return pd.concat(frames, ignore_index=True)


def chosen_setting(sweep: pd.DataFrame) -> object:
    """The setting of a :func:`sampling_sweep` with the highest encoding score (the first
    one on ties, in the order tried)."""
    rows = sweep[sweep["metric"] == "encoding_score"].drop_duplicates("setting")
    value = rows.loc[rows["value"].idxmax(), "setting"]
    return value.item() if isinstance(value, np.generic) else value  # a plain number for JSON


def validation_choice(run: SubjectRun, parameter: str, values: Sequence,
                      conditioning: str = "cross_attention", *, n_boot: int = 500,
                      seed: int = 0) -> tuple[pd.DataFrame, object, pd.DataFrame]:
    """Choose a sampling setting on the validation concepts, then score the test set once.

    The sweep runs on :attr:`~analysis.experiment.SubjectRun.validation` (a generator
    trained without the validation concepts, scored on them); the setting with the highest
    encoding score there is chosen (:func:`chosen_setting`). Only then is the test set
    scored, at the chosen setting and at the profile's own, so the two can be compared.

    Returns
    -------
    validation : pandas.DataFrame
        :func:`sampling_sweep` rows on the validation concepts (``split='validation'``).
    chosen : object
        The chosen value.
    test : pandas.DataFrame
        :func:`sampling_sweep` rows on the test set for the chosen and the profile's value
        (``split='test'``, ``role`` ``'chosen on validation'`` / ``'profile default'``).
    """
    sweep = sampling_sweep(run.validation, parameter, values, conditioning, n_boot=n_boot,
                           seed=seed).assign(split="validation")
    chosen = chosen_setting(sweep)
    default = getattr(run.profile.sampling, parameter)
    roles = {chosen: "chosen on validation"}
    roles.setdefault(default, "profile default")
    if default == chosen:
        roles[chosen] = "chosen on validation = profile default"
    test = sampling_sweep(run, parameter, list(roles), conditioning, n_boot=n_boot,
                          seed=seed).assign(split="test")
    test["role"] = test["setting"].map(roles)
    return sweep, chosen, test


def seed_table(run: SubjectRun, seeds: Sequence[int] = (0, 1, 2),
               conditioning: str = "cross_attention", *, n_boot: int = 500,
               seed: int = 0) -> pd.DataFrame:
    """Fidelity of the generator trained with each training seed (train-or-load each).

    Returns
    -------
    pandas.DataFrame
        ``fidelity_summary`` rows for ``paper_r`` and ``encoding_score`` with a
        ``train_seed`` column; summarise across seeds with :func:`group_mean_table`.
    """
    default = run.profile.train.get("seed", 0)
    frames = []
    for s in seeds:
        overrides = {} if s == default else {"seed": s}
        pred = run.prediction(conditioning, train_overrides=overrides)
        frames.append(_fidelity_rows(run, pred, n_boot, seed).assign(train_seed=s))
    return pd.concat(frames, ignore_index=True)

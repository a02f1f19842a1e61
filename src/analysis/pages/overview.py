"""Tables of the data-overview page: the design and the noise ceilings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..evaluation.noise_ceiling import NoiseCeiling, exact_ceiling, gifford_bounds, noise_ceiling_r
from ..evaluation.stats import bootstrap_ci, mean_ignoring_nan

if TYPE_CHECKING:
    from ..experiment import SubjectRun


def design_table(run: SubjectRun) -> pd.DataFrame:
    """Images, repetitions, concepts, channels and times of each split.

    Returns
    -------
    pandas.DataFrame
        One row per split (``train``, ``test``): ``n_images``, ``n_reps``, ``n_trials``,
        ``n_concepts``, ``n_channels``, ``n_times``, ``sfreq`` (Hz), ``units``.
    """
    ds = run.dataset
    rows = []
    for name, split in (("train", ds.train), ("test", ds.test)):
        rows.append(dict(split=name, n_images=split.n_images, n_reps=split.n_reps,
                         n_trials=split.n_images * split.n_reps,
                         n_concepts=len(set(split.concepts)), n_channels=len(ds.ch_names),
                         n_times=len(ds.times), sfreq=ds.sfreq, units=ds.meta["units"]))
    return pd.DataFrame(rows)


def noise_ceilings(run: SubjectRun, *, n_splits: int = 20, seed: int = 0
                   ) -> dict[str, NoiseCeiling]:
    """The split-half ceiling of the test trials and, for simulated data, the exact one."""
    trials = run.target
    out = {"split-half": noise_ceiling_r(trials, n_splits=n_splits, seed=seed)}
    if run.dataset.noiseless is not None:
        out["exact"] = exact_ceiling(run.dataset.noiseless["test"], trials)
    return out


def ceiling_table(run: SubjectRun, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Noise ceilings on the paper's r and on the encoding score, with bootstrap CIs.

    The paper-r ceiling is a mean of per-image ceilings, so its CI resamples those. The
    exact encoding ceiling is the encoding score of the noiseless means, so its CI
    recomputes that score on resampled images; the split-half encoding ceiling is
    reported without a CI (resampling images inside a split-half estimate is not
    meaningful). Beside them, Gifford et al.'s (2022) lower and upper bounds of the
    encoding score (:func:`~analysis.evaluation.noise_ceiling.gifford_bounds`), so numbers
    compare with published THINGS-EEG2 curves. All of the target half of the repetitions.

    Returns
    -------
    pandas.DataFrame
        One row per (``method``, ``metric``): ``value``, ``ci_low``, ``ci_high`` (r, unitless).
    """
    from ..evaluation.metrics import encoding_score_statistic

    rows = []
    trials = run.target
    for method, ceiling in noise_ceilings(run, seed=seed).items():
        paper = ceiling.paper[np.isfinite(ceiling.paper)]
        ci = bootstrap_ci(paper, n_boot=n_boot, seed=seed)
        rows.append(dict(method=method, metric="paper_r", value=ci.value, ci_low=ci.low,
                         ci_high=ci.high))
        low = high = np.nan
        if method == "exact":
            statistic = encoding_score_statistic(run.dataset.noiseless["test"],
                                                 trials.mean(axis=1))
            interval = bootstrap_ci(statistic, n_images=len(trials), n_boot=n_boot, seed=seed,
                                    vectorized=True)
            low, high = interval.low, interval.high
        rows.append(dict(method=method, metric="encoding_score", value=ceiling.encoding_mean,
                         ci_low=low, ci_high=high))
    lower, upper = gifford_bounds(trials, seed=seed)
    for method, bound in (("Gifford lower", lower), ("Gifford upper", upper)):
        rows.append(dict(method=method, metric="encoding_score",
                         value=float(mean_ignoring_nan(bound)), ci_low=np.nan, ci_high=np.nan))
    return pd.DataFrame(rows)

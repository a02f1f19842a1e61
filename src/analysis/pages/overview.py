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


def gfp_peak_latency(run: SubjectRun) -> float:
    """When the global field power (RMS over channels) of the grand-average test response
    peaks, in seconds from image onset."""
    erp = run.dataset.test.average().mean(axis=0)  # (n_channels, n_times)
    return float(run.dataset.times[np.sqrt((erp ** 2).mean(axis=0)).argmax()])


def overview_findings(run: SubjectRun, ceilings: pd.DataFrame) -> str:
    """The overview page's finding as Markdown: the test design, the response's peak and
    the ceilings models are measured against. ``ceilings``: :func:`ceiling_table`."""
    from .display import ci_text

    test = run.dataset.test
    design = (f"The test set holds {test.n_images} images × {test.n_reps} repetitions; models "
              f"are scored against the target half ({run.target.shape[1]} repetitions per "
              f"image). The global field power of the grand-average response peaks "
              f"{1e3 * gfp_peak_latency(run):.0f} ms after image onset.")
    rows = ceilings.set_index(["method", "metric"])
    bars = []
    for method in ("exact", "split-half"):
        if (method, "encoding_score") not in rows.index:
            continue
        encoding, paper = rows.loc[(method, "encoding_score")], rows.loc[(method, "paper_r")]
        encoding_text = (ci_text(encoding) if np.isfinite(encoding["ci_low"])
                         else f"{encoding['value']:.3f}")
        bars.append(f"the {method} ceiling is {encoding_text} on the encoding score and "
                    f"{ci_text(paper)} on the paper's r")
    text = "A perfect model would score what the recording's own noise allows: " + "; ".join(
        bars) + "."
    if len(bars) == 2:
        gap = (rows.loc[("split-half", "encoding_score"), "value"]
               - rows.loc[("exact", "encoding_score"), "value"])
        text += (f" The split-half estimate is {abs(gap):.3f} {'above' if gap > 0 else 'below'} "
                 "the exact one (it overestimates when the test set is small), so the fidelity "
                 "page measures models against the exact ceiling.")
    lower = rows.loc[("Gifford lower", "encoding_score"), "value"]
    upper = rows.loc[("Gifford upper", "encoding_score"), "value"]
    bounds = (f"Gifford et al.'s (2022) bounds on the encoding score, for comparison with "
              f"published THINGS-EEG2 curves: lower {lower:.3f}, upper {upper:.3f}.")
    return "\n\n".join([design, text, bounds])

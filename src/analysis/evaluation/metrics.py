"""Fidelity of generated (predicted) M/EEG responses against real test recordings.

Three scores, each compared with a *target*: the average over the held-out test
repetitions, shape ``(n_images, n_channels, n_times)``:

* **paper MSE** and **paper r** — the generative-EEG paper's definition: for each test
  image, the MSE / Pearson r between prediction and target over all channels × time points
  (flattened), then averaged over images. The functions return the per-image values.
* **encoding score** — the encoding-model field's definition (Gifford et al. 2022; BERG):
  for each channel × time point, Pearson r *across test images* between prediction and
  target; summarised by the mean over channels × time points.

:func:`fidelity_summary` assembles all three with bootstrap CIs over images and sets each
against the best a perfect model could reach (:mod:`analysis.evaluation.noise_ceiling`).

Undefined correlations: r is NaN where either input is constant along the correlated axis
(:func:`~analysis.evaluation.stats.pearson_r`); summaries average the defined values only
(:func:`~analysis.evaluation.stats.mean_ignoring_nan`) and report how many were left out.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from analysis.evaluation.noise_ceiling import (
    RESPONSE_AXES,
    NoiseCeiling,
    check_trials,
    exact_ceiling,
    mse_floor,
    noise_ceiling_r,
)
from analysis.evaluation.stats import (PairedTestResult, bootstrap_ci, check_array,
                                       mean_ignoring_nan, pearson_r)

#: Resampled variance below this (on standardised data) makes a bootstrap r undefined.
_RESAMPLED_VARIANCE_ATOL = 1e-12
#: Float64 values per matrix product in :func:`encoding_score_statistic` (256 MB).
_MOMENT_BLOCK_VALUES = 2**25


def _check_pair(pred: np.ndarray, target: np.ndarray, target_name: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction and its target: both ``(n_images, n_channels, n_times)``."""
    target = check_array(target, target_name, RESPONSE_AXES)
    pred = check_array(pred, "pred", RESPONSE_AXES, shape=target.shape)
    return pred, target


def paper_mse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image mean squared error over channels × time points (the paper's MSE).

    Parameters
    ----------
    pred : ndarray, shape (n_images, n_channels, n_times)
        Generated / predicted responses, in signal units (e.g. µV).
    target : ndarray, shape (n_images, n_channels, n_times)
        Average of the real test repetitions, same units.

    Returns
    -------
    ndarray, shape (n_images,)
        ``mean over (channel, time) of (pred - target) ** 2``, in squared signal units
        (e.g. µV²). The paper's MSE is the mean of this over images.
    """
    pred, target = _check_pair(pred, target, "target")
    out = np.empty(len(pred))
    # a block of images at a time: float64 differences of a whole THINGS-MEG validation
    # split would be several 1.4 GB temporaries
    step = max(1, _MOMENT_BLOCK_VALUES // max(1, pred[0].size))
    for first in range(0, len(pred), step):
        diff = pred[first:first + step].astype(np.float64) - target[first:first + step]
        out[first:first + step] = (diff * diff).mean(axis=(1, 2))
    return out


def paper_pearson(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image Pearson r over channels × time points flattened (the paper's r).

    Parameters
    ----------
    pred, target : ndarray, shape (n_images, n_channels, n_times)
        Prediction and average of the real test repetitions (same units; r is unitless).

    Returns
    -------
    ndarray, shape (n_images,)
        r for each image, in [-1, 1]; NaN for an image whose prediction or target is
        constant over all channels × times. The paper's r is the mean over images.
    """
    pred, target = _check_pair(pred, target, "target")
    return pearson_r(pred, target, axis=(1, 2))


def encoding_score(pred: np.ndarray, target_avg: np.ndarray) -> np.ndarray:
    """Encoding score map: Pearson r across test images at every channel × time point.

    Parameters
    ----------
    pred : ndarray, shape (n_images, n_channels, n_times)
        Predicted responses (any units; r is unitless).
    target_avg : ndarray, shape (n_images, n_channels, n_times)
        Average of the held-out real test repetitions.

    Returns
    -------
    ndarray, shape (n_channels, n_times)
        r in [-1, 1]; NaN where prediction or target does not vary across images. The
        scalar encoding score is ``mean_ignoring_nan`` of this map (mean over defined
        channel × time points).
    """
    pred, target_avg = _check_pair(pred, target_avg, "target_avg")
    return pearson_r(pred, target_avg, axis=0)


def mean_encoding_score(pred: np.ndarray, target_avg: np.ndarray) -> float:
    """The scalar encoding score: the mean over defined channel × time points of
    :func:`encoding_score` (r across images; no ceiling, no CI). Arguments as there."""
    return float(mean_ignoring_nan(encoding_score(pred, target_avg)))


def _standardised_columns(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``values[:, columns]`` in float64, each column centred and scaled to unit standard
    deviation; built a block of columns at a time (no float64 copy of all of ``values``)."""
    out = np.empty((values.shape[0], len(columns)))
    step = max(1, _MOMENT_BLOCK_VALUES // max(1, values.shape[0]))
    for first in range(0, len(columns), step):
        part = values[:, columns[first:first + step]].astype(np.float64)
        part -= part.mean(axis=0)
        part /= part.std(axis=0)
        out[:, first:first + step] = part
    return out


def encoding_score_statistic(pred: np.ndarray, target_avg: np.ndarray
                             ) -> Callable[[np.ndarray], np.ndarray | float]:
    """The scalar encoding score as a function of resampled image indices (for bootstraps).

    A resample that draws image ``i`` ``c_i`` times is the original sample with weights
    ``c_i``; the correlation is computed from weighted moments with one matrix product per
    block of resamples, so 2000 resamples cost seconds instead of minutes. Features are
    standardised first, so the moment formula loses no precision.

    Parameters
    ----------
    pred, target_avg : ndarray, shape (n_images, n_channels, n_times)
        As in :func:`encoding_score`.

    Returns
    -------
    callable
        ``statistic(idx)``: ``idx`` int array of shape ``(n_images,)`` → float, or of shape
        ``(n_resamples, n_images)`` → ``(n_resamples,)``: the mean over channel × time
        points of r across the images ``pred[idx]`` vs ``target_avg[idx]``. Points that are
        constant on the full sample are left out; a point constant within a resample gives
        NaN there and is left out of that resample's mean. For use with
        ``bootstrap_ci(statistic, n_images=n_images, vectorized=True)``; the value at
        ``idx = arange(n_images)`` equals ``mean_ignoring_nan(encoding_score(...))``.
    """
    pred, target_avg = _check_pair(pred, target_avg, "target_avg")
    n_images = pred.shape[0]
    defined = np.flatnonzero(~np.isnan(pearson_r(pred, target_avg, axis=0)).ravel())
    x = _standardised_columns(pred.reshape(n_images, -1), defined)
    y = _standardised_columns(target_avg.reshape(n_images, -1), defined)
    # The five weighted moments of a block of points (x, y, x², y², xy) are formed inside
    # the loop: kept for all points at once they were five float64 copies of the data,
    # 6.8 GB on a THINGS-MEG validation split (2218 images × 77 275 points).
    points = max(1, _MOMENT_BLOCK_VALUES // (5 * n_images))
    block = max(1, _MOMENT_BLOCK_VALUES // (5 * min(points, max(1, x.shape[1]))))

    def statistic(idx: np.ndarray) -> np.ndarray | float:
        idx = np.asarray(idx)
        batch = np.atleast_2d(idx)
        out = np.empty(batch.shape[0])
        for start in range(0, batch.shape[0], block):
            rows = batch[start:start + block]
            n_rows = rows.shape[0]
            offsets = (rows + n_images * np.arange(n_rows)[:, None]).ravel()
            weights = np.bincount(offsets, minlength=n_rows * n_images).reshape(n_rows, n_images)
            weights = weights / rows.shape[1]
            total, count = np.zeros(n_rows), np.zeros(n_rows)
            for first in range(0, x.shape[1], points):
                xb, yb = x[:, first:first + points], y[:, first:first + points]
                moments = weights @ np.concatenate([xb, yb, xb * xb, yb * yb, xb * yb], axis=1)
                mx, my, mxx, myy, mxy = np.split(moments, 5, axis=1)
                var_x, var_y = mxx - mx * mx, myy - my * my
                valid = (var_x > _RESAMPLED_VARIANCE_ATOL) & (var_y > _RESAMPLED_VARIANCE_ATOL)
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = np.clip((mxy - mx * my) / np.sqrt(var_x * var_y), -1.0, 1.0)
                total += np.where(valid, r, 0.0).sum(axis=1)
                count += valid.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                # the mean over the defined points; NaN where none is (mean_ignoring_nan)
                out[start:start + n_rows] = np.where(count > 0, total / np.maximum(count, 1),
                                                     np.nan)
        return float(out[0]) if idx.ndim == 1 else out

    return statistic


def paired_encoding_test(pred_a: np.ndarray, pred_b: np.ndarray, target_avg: np.ndarray, *,
                         n_boot: int = 2000, ci: float = 0.95, seed: int = 0
                         ) -> PairedTestResult:
    """Is model A's encoding score higher than model B's on the same test images?

    The encoding score is a correlation *across* images, not a mean of per-image values,
    so the images are resampled jointly: each bootstrap resample scores both models on
    the same images and keeps the difference. CI: percentile interval of the resampled
    differences; p: the distribution shifted to the null, as in
    :func:`~analysis.evaluation.stats.paired_bootstrap_test`
    (``(1 + #{|d* − d| ≥ |d|}) / (n_boot + 1)``, never 0).

    Parameters
    ----------
    pred_a, pred_b, target_avg : ndarray, shape (n_images, n_channels, n_times)

    Returns
    -------
    PairedTestResult
        ``difference`` = score(A) − score(B); method ``'joint image bootstrap'``.
    """
    stat_a = encoding_score_statistic(pred_a, target_avg)
    stat_b = encoding_score_statistic(pred_b, target_avg)
    n_images = target_avg.shape[0]
    boot = bootstrap_ci(lambda idx: stat_a(idx) - stat_b(idx), n_images=n_images,
                        n_boot=n_boot, ci=ci, seed=seed, vectorized=True, batch=500)
    extreme = np.abs(boot.distribution - boot.value) >= abs(boot.value)
    return PairedTestResult(
        difference=boot.value, ci_low=boot.low, ci_high=boot.high,
        p_value=float((1 + np.sum(extreme)) / (n_boot + 1)), n_images=n_images,
        n_resamples=n_boot, method="joint image bootstrap")


def pct_of_exact_ceiling_ci(pred: np.ndarray, noiseless: np.ndarray, target_avg: np.ndarray,
                            *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
                            ) -> tuple[float, float, float]:
    """Encoding score as % of the exact ceiling, with a CI that resamples the ceiling too.

    The exact ceiling is itself the encoding score of the true means against the noisy
    target, measured on the same images, so both are recomputed on every bootstrap
    resample of the images and the ratio's percentile interval is returned; holding the
    ceiling fixed would understate the uncertainty.

    Parameters
    ----------
    pred, noiseless, target_avg : ndarray, shape (n_images, n_channels, n_times)

    Returns
    -------
    (value, low, high) : floats, in %
    """
    score = encoding_score_statistic(pred, target_avg)
    ceiling = encoding_score_statistic(noiseless, target_avg)
    n_images = target_avg.shape[0]
    boot = bootstrap_ci(lambda idx: 100 * score(idx) / ceiling(idx), n_images=n_images,
                        n_boot=n_boot, ci=ci, seed=seed, vectorized=True, batch=500)
    return boot.value, boot.low, boot.high


def _mean_statistic(per_image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Mean of per-image values (NaNs left out) over resampled image indices."""
    return lambda idx: mean_ignoring_nan(per_image[idx], axis=-1)


def fidelity_summary(
    pred: np.ndarray,
    trials: np.ndarray,
    noiseless: np.ndarray | None = None,
    *,
    n_boot: int = 2000,
    ci: float = 0.95,
    ci_method: str = "percentile",
    n_splits: int = 20,
    seed: int = 0,
    ceiling: NoiseCeiling | None = None,
) -> pd.DataFrame:
    """All fidelity scores of one prediction, with CIs and ceilings, as a tidy table.

    The target is the average over all repetitions of ``trials``. Every score gets a
    bootstrap CI over test images (images resampled with replacement and the score
    recomputed; the same resamples, from ``seed``, for every score).

    "% of ceiling" is the ratio ``100 * value / ceiling`` of a correlation score to the
    highest score a perfect model can expect against the same noisy target — about 100 for
    a perfect model, about ``100 * corr(prediction, true response)`` in general. For the
    split-half ceiling the ceiling of a scalar score is the mean of its per-image (paper r)
    or per channel × time (encoding score) ceilings.

    Parameters
    ----------
    pred : ndarray, shape (n_images, n_channels, n_times)
        Generated responses for the test images, in the units of ``trials``.
    trials : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Real (or simulated) test trials. With one repetition (THINGS-MEG's training images,
        scored as validation concepts) the scores are computed but the split-half ceiling
        and the MSE floor, which need repetitions, are NaN.
    noiseless : ndarray, shape (n_images, n_channels, n_times), optional
        Exact noise-free means (simulated data only); adds rows against the exact ceiling.
    n_boot, ci : int, float
        Bootstrap resamples and confidence level.
    ci_method : {'percentile', 'basic', 'BCa'}
        Interval method (see :func:`~analysis.evaluation.stats.bootstrap_ci`). The
        percentile interval of the encoding score inherits the small downward bias of a
        resampled r (about ``r (1 - r**2) / (2 n_images)``); when the interval is narrower
        than that (many independent channel × time points, as in some simulations) it can
        exclude ``value`` — use ``'basic'`` there.
    n_splits : int
        Random splits for the split-half ceiling (ignored when ``ceiling`` is given).
    seed : int
        Seed of the bootstrap and of the splits.
    ceiling : NoiseCeiling, optional
        A precomputed ``noise_ceiling_r(trials)``, to score many predictions against the
        same trials without recomputing it.

    Returns
    -------
    pandas.DataFrame
        One row per (metric, ceiling_method), columns:

        - ``metric``: ``'paper_mse'``, ``'paper_r'`` or ``'encoding_score'``;
        - ``ceiling_method``: ``'split-half'`` (r) or ``'repetition variance'`` (MSE),
          plus ``'exact'`` rows when ``noiseless`` is given;
        - ``value``, ``ci_low``, ``ci_high``: the score (MSE in squared signal units, r
          unitless) and its CI — identical across a metric's rows;
        - ``ceiling``: the best expected score of a perfect model — for r the noise ceiling
          (:func:`noise_ceiling_r` / :func:`exact_ceiling`), for MSE the noise floor
          (:func:`mse_floor`; exact: MSE of ``noiseless`` against the average);
        - ``pct_of_ceiling``: ``100 * value / ceiling`` for r metrics, NaN for MSE;
        - ``n_undefined``: images (paper r) or channel × time points (encoding score)
          with an undefined r, left out of the mean.

        ``DataFrame.attrs`` records ``n_images``, ``n_reps``, ``n_boot``, ``ci``,
        ``ci_method``, ``n_splits`` (None when ``ceiling`` was given) and ``seed``.
    """
    trials = check_trials(trials, min_reps=1)
    n_images, n_reps, n_channels, n_times = trials.shape
    pred = check_array(pred, "pred", RESPONSE_AXES, shape=(n_images, n_channels, n_times))
    if noiseless is not None:
        noiseless = check_array(noiseless, "noiseless", RESPONSE_AXES,
                                shape=(n_images, n_channels, n_times))
    computed_ceiling = ceiling is None
    if computed_ceiling and n_reps == 1:  # no repetitions: nothing to split
        ceiling = NoiseCeiling(np.full((n_channels, n_times), np.nan), np.full(n_images, np.nan),
                               "split-half")
    elif computed_ceiling:
        ceiling = noise_ceiling_r(trials, n_splits=n_splits, seed=seed)
    elif ceiling.encoding.shape != (n_channels, n_times) or ceiling.paper.shape != (n_images,):
        raise ValueError(
            f"ceiling: expected encoding shape {(n_channels, n_times)} and paper shape "
            f"{(n_images,)} (from trials), found {ceiling.encoding.shape} and "
            f"{ceiling.paper.shape}"
        )
    average = trials.mean(axis=1, dtype=np.float64)
    mse = paper_mse(pred, average)
    r = paper_pearson(pred, average)
    encoding = encoding_score(pred, average)
    scores = {}  # metric -> (per-image or per-feature values, their mean, ci_low, ci_high)
    for metric, values, statistic in (
        ("paper_mse", mse, lambda: _mean_statistic(mse)),
        ("paper_r", r, lambda: _mean_statistic(r)),
        ("encoding_score", encoding, lambda: encoding_score_statistic(pred, average)),
    ):
        value = mean_ignoring_nan(values)
        low = high = np.nan  # no interval around an undefined score
        if np.isfinite(value):
            interval = bootstrap_ci(statistic(), n_images=n_images, n_boot=n_boot, ci=ci,
                                    seed=seed, vectorized=True, method=ci_method)
            low, high = interval.low, interval.high
        scores[metric] = (values, value, low, high)
    ceilings = [
        ("paper_mse", "repetition variance",
         float(mse_floor(trials).mean()) if n_reps >= 2 else np.nan),
        ("paper_r", ceiling.method, ceiling.paper_mean),
        ("encoding_score", ceiling.method, ceiling.encoding_mean),
    ]
    if noiseless is not None:
        exact = exact_ceiling(noiseless, trials)
        ceilings += [
            ("paper_mse", exact.method, float(paper_mse(noiseless, average).mean())),
            ("paper_r", exact.method, exact.paper_mean),
            ("encoding_score", exact.method, exact.encoding_mean),
        ]
    rows = []
    for metric, method, best in ceilings:
        values, value, low, high = scores[metric]
        is_r = metric != "paper_mse"
        rows.append({
            "metric": metric, "ceiling_method": method, "value": value,
            "ci_low": low, "ci_high": high, "ceiling": best,
            "pct_of_ceiling": 100.0 * value / best if is_r and best > 0 else np.nan,
            "n_undefined": int(np.isnan(values).sum()),
        })
    order = {"paper_mse": 0, "paper_r": 1, "encoding_score": 2}
    table = pd.DataFrame(rows).sort_values(
        "metric", key=lambda col: col.map(order), kind="stable").reset_index(drop=True)
    table.attrs.update(
        n_images=n_images, n_reps=n_reps, n_boot=n_boot, ci=ci, ci_method=ci_method,
        n_splits=n_splits if computed_ceiling else None, seed=seed,
    )
    return table


def plot_fidelity(summaries: dict[str, pd.DataFrame], metric: str = "encoding_score",
                  ceiling_method: str = "exact"):
    """Bar chart of one fidelity metric for several models, with CIs and the ceiling.

    Parameters
    ----------
    summaries : dict
        Model name → :func:`fidelity_summary` table (all computed on the same trials).
    metric : str
        ``'encoding_score'``, ``'paper_r'`` or ``'paper_mse'``.
    ceiling_method : str
        Which ceiling row to draw as a dashed line (``'exact'`` or ``'split-half'``; for MSE
        ``'repetition variance'``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = []
    ceiling = np.nan
    for name, table in summaries.items():
        match = table[(table["metric"] == metric) & (table["ceiling_method"] == ceiling_method)]
        if match.empty:
            raise ValueError(f"summaries['{name}'] has no row for metric '{metric}' with "
                             f"ceiling '{ceiling_method}'")
        row = match.iloc[0]
        rows.append({"model": name, "value": row["value"], "low": row["ci_low"],
                     "high": row["ci_high"]})
        ceiling = row["ceiling"]
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(frame), 3.2))
    colours = sns.color_palette("deep", len(frame))
    ax.bar(frame["model"], frame["value"], color=colours)
    ax.errorbar(frame["model"], frame["value"],
                yerr=[frame["value"] - frame["low"], frame["high"] - frame["value"]],
                fmt="none", ecolor="black", capsize=4, lw=1)
    if np.isfinite(ceiling):
        ax.axhline(ceiling, ls="--", color="grey", lw=1)
        ax.annotate(f"{ceiling_method} ceiling", (1.0, ceiling), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=8, color="grey")
    ax.set_ylabel(metric.replace("_", " "))
    ax.tick_params(axis="x", rotation=20)
    sns.despine(ax=ax)
    fig.tight_layout()
    return fig

"""How well a perfect model could score: noise ceilings on r and a noise floor on MSE.

Real test trials are ``signals[i, k] = mu_i + noise_ik``: the response ``mu_i`` to image
``i`` plus trial noise that differs on each repetition ``k``. Every fidelity metric compares
a prediction with the average over the ``n`` repetitions, which still holds noise of
variance ``N / n`` (``N``: single-trial noise variance). So even a model that predicts
``mu`` exactly cannot reach r = 1 or MSE = 0; this module estimates what it *can* reach.

Two flavours follow the two correlation scores in :mod:`analysis.evaluation.metrics`:

* ``encoding`` — per channel × time point, across test images (the encoding score);
* ``paper`` — per test image, across channels × time points flattened (the paper's r).

Derivation of the ceiling on r (per feature, across images; the per-image flavour is the
same with the roles of images and features swapped). Let ``S`` be the variance of ``mu``
across images and ``Ybar = mu + noise_bar`` the n-rep average. The *reliability* of
``Ybar`` — the correlation between two independent n-rep averages — is
``rho_n = S / (S + N / n)``. A perfect prediction ``mu`` correlates with ``Ybar`` at
``cov(mu, Ybar) / sqrt(var(mu) var(Ybar)) = S / sqrt(S (S + N / n)) = sqrt(rho_n)``, and any
prediction ``f`` independent of the test noise reaches ``corr(f, mu) * sqrt(rho_n)``. Hence
the noise ceiling is ``sqrt(rho_n)`` and a score divided by it estimates the correlation
with the noiseless response.

``rho_n`` is estimated by splitting the repetitions into two disjoint halves of
``h = n // 2`` each, correlating the half-averages (reliability ``rho_h``), and predicting
the reliability of all ``n`` with the Spearman–Brown formula ``rho_n = k rho_h /
(1 + (k - 1) rho_h)``, ``k = n / h`` (``2 rho_h / (1 + rho_h)`` for even ``n``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.evaluation.stats import check_array, mean_ignoring_nan, pearson_r

#: Axis names of real test trials and of (predicted or averaged) responses.
TRIAL_AXES = ("n_images", "n_reps", "n_channels", "n_times")
RESPONSE_AXES = ("n_images", "n_channels", "n_times")

#: Most half-average values held at once by :func:`split_half_reliability` (512 MB float32).
_HALVES_BUFFER_VALUES = 2**27


def check_trials(trials: Any, name: str = "trials", *, min_reps: int = 1) -> np.ndarray:
    """Validate test trials ``[n_images, n_reps, n_channels, n_times]`` (dtype unchanged).

    Raises
    ------
    ValueError
        Wrong rank, an empty axis, non-finite values, or fewer than ``min_reps``
        repetitions on axis 1; the message names ``name`` and the shape found.
    """
    trials = check_array(trials, name, TRIAL_AXES)
    if trials.shape[1] < min_reps:
        raise ValueError(
            f"{name}: expected at least {min_reps} repetitions on axis 1 (n_reps), "
            f"found shape {trials.shape}"
        )
    return trials


def spearman_brown(r: np.ndarray | float, k: float) -> np.ndarray:
    """Reliability of an average of ``k`` times as many trials: ``k r / (1 + (k - 1) r)``.

    Parameters
    ----------
    r : ndarray or float
        Reliability (correlation between two independent averages) of the shorter average.
    k : float
        Length factor, > 0 (2 for split halves of an even number of repetitions).

    Returns
    -------
    ndarray
        Same shape as ``r``. Negative ``r`` (no reliable signal) stays negative; where the
        formula's denominator is not positive (``r <= -1 / (k - 1)``, e.g. perfectly
        anti-correlated halves) the result is NaN.
    """
    r = np.asarray(r, dtype=np.float64)
    denominator = 1.0 + (k - 1.0) * r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, k * r / denominator, np.nan)


@dataclass(frozen=True)
class SplitHalfReliability:
    """Split-half reliability of the n-rep test average, in both flavours.

    Attributes
    ----------
    encoding : ndarray, shape (n_channels, n_times)
        Spearman–Brown-corrected reliability of the full n-rep average, per channel × time,
        across images (what the encoding score is correlated against).
    paper : ndarray, shape (n_images,)
        The same per image, across channels × times.
    encoding_half, paper_half : ndarray
        The uncorrected half-vs-half correlations (averaged over splits), same shapes.
    n_reps, half_size, n_splits : int
        Repetitions in the full average, in each half, and number of random splits.
    """

    encoding: np.ndarray
    paper: np.ndarray
    encoding_half: np.ndarray
    paper_half: np.ndarray
    n_reps: int
    half_size: int
    n_splits: int


def split_half_reliability(trials: np.ndarray, *, n_splits: int = 20, seed: int = 0
                           ) -> SplitHalfReliability:
    """Estimate the reliability of the n-rep average from random split halves.

    For each of ``n_splits`` random permutations of the repetitions, the first ``h =
    n_reps // 2`` and the next ``h`` repetitions are averaged (with odd ``n_reps`` one
    repetition, a different one each split, sits out); the two half-averages are correlated
    per channel × time across images and per image across channels × times. The
    correlations are averaged over splits, then corrected with :func:`spearman_brown`
    (``k = n_reps / h``) to the reliability of the average of all ``n_reps``.

    Parameters
    ----------
    trials : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Real test trials, ``n_reps >= 2`` (any units; reliabilities are unitless).
    n_splits : int
        Number of random splits; more splits only reduce the split-to-split jitter.
    seed : int
        Seed of the splits.

    Returns
    -------
    SplitHalfReliability
        NaN where a half-average is constant (see :func:`~analysis.evaluation.stats.pearson_r`).
    """
    trials = check_trials(trials, min_reps=2)
    if n_splits < 1:
        raise ValueError(f"n_splits: expected at least 1 split, found {n_splits}")
    n_images, n_reps, n_channels, n_times = trials.shape
    n_features = n_channels * n_times
    half = n_reps // 2
    flat = trials.reshape(n_images, n_reps, n_features)
    # Row 2s / 2s+1 of `weights` averages the first / second half of split s.
    rng = np.random.default_rng(seed)
    weights = np.zeros((2 * n_splits, n_reps), dtype=np.result_type(flat.dtype, np.float32))
    for split in range(n_splits):
        order = rng.permutation(n_reps)
        weights[2 * split, order[:half]] = 1.0 / half
        weights[2 * split + 1, order[half:2 * half]] = 1.0 / half
    # All half-averages of a group of splits come from one matrix product per image (one
    # pass over the trials); groups bound the buffer to _HALVES_BUFFER_VALUES values.
    group = max(1, min(n_splits, _HALVES_BUFFER_VALUES // (2 * n_images * n_features)))
    encoding_sum = np.zeros(n_features)
    paper_sum = np.zeros(n_images)
    for first in range(0, n_splits, group):
        rows = weights[2 * first:2 * min(n_splits, first + group)]
        halves = np.empty((n_images, rows.shape[0], n_features), dtype=weights.dtype)
        for image in range(n_images):
            np.matmul(rows, flat[image], out=halves[image])
        for a in range(0, rows.shape[0], 2):
            encoding_sum += pearson_r(halves[:, a], halves[:, a + 1], axis=0)
            paper_sum += pearson_r(halves[:, a], halves[:, a + 1], axis=1)
    encoding_half = (encoding_sum / n_splits).reshape(n_channels, n_times)
    paper_half = paper_sum / n_splits
    k = n_reps / half
    return SplitHalfReliability(
        encoding=spearman_brown(encoding_half, k), paper=spearman_brown(paper_half, k),
        encoding_half=encoding_half, paper_half=paper_half,
        n_reps=n_reps, half_size=half, n_splits=n_splits,
    )


@dataclass(frozen=True)
class NoiseCeiling:
    """The highest correlation a perfect model can expect against the n-rep test average.

    Attributes
    ----------
    encoding : ndarray, shape (n_channels, n_times)
        Ceiling on the encoding score's r at each channel × time point.
    paper : ndarray, shape (n_images,)
        Ceiling on the paper's r for each image.
    method : str
        ``'split-half'`` (estimated from the trials) or ``'exact'`` (from the noiseless
        means of simulated data).
    """

    encoding: np.ndarray
    paper: np.ndarray
    method: str

    @property
    def encoding_mean(self) -> float:
        """Ceiling on the scalar encoding score: mean over defined channel × time points."""
        return mean_ignoring_nan(self.encoding)

    @property
    def paper_mean(self) -> float:
        """Ceiling on the scalar paper r: mean over images with a defined ceiling."""
        return mean_ignoring_nan(self.paper)


def noise_ceiling_r(trials: np.ndarray, *, n_splits: int = 20, seed: int = 0) -> NoiseCeiling:
    """Split-half noise ceiling on r against the n-rep average: ``sqrt(reliability)``.

    The ceiling is ``sqrt(rho_n)``, the expected correlation of the true mean response with
    the noisy n-rep average (derivation in the module docstring), with ``rho_n`` from
    :func:`split_half_reliability`. A negative estimated reliability (no reliable signal)
    gives a ceiling of 0.

    Bias: each per-feature (per-image) reliability is a noisy estimate (standard error
    about ``(1 - rho_h**2) / sqrt(n_images)`` before Spearman–Brown), and ``sqrt`` of a
    noisy value clipped at 0 is biased upward where the true reliability is small. The
    mean ceiling is therefore too high when there are few test images or many points
    without reliable signal (e.g. the pre-stimulus baseline). On the built-in ``ci``
    simulation (40 test images × 16 repetitions, 17 channels × 100 times) the split-half
    ceiling of the encoding score is 0.36 while the exact one is 0.25, so a perfect model
    reads about 69 % of the split-half ceiling; with 200 images × 80 repetitions the
    excess is about 0.02. Prefer :func:`exact_ceiling` where the noiseless means exist.

    Parameters
    ----------
    trials : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Real test trials, ``n_reps >= 2``.
    n_splits, seed : int
        As in :func:`split_half_reliability`.

    Returns
    -------
    NoiseCeiling
        ``method='split-half'``; values in [0, 1], NaN where the reliability is undefined.
    """
    reliability = split_half_reliability(trials, n_splits=n_splits, seed=seed)
    return NoiseCeiling(
        encoding=np.sqrt(np.clip(reliability.encoding, 0.0, 1.0)),
        paper=np.sqrt(np.clip(reliability.paper, 0.0, 1.0)),
        method="split-half",
    )


def exact_ceiling(noiseless: np.ndarray, trials: np.ndarray) -> NoiseCeiling:
    """Exact ceiling on r for simulated data: correlation of the true means with the average.

    Parameters
    ----------
    noiseless : ndarray, shape (n_images, n_channels, n_times)
        The true (noise-free) mean responses of the simulated test images.
    trials : ndarray, shape (n_images, n_reps, n_channels, n_times)
        The simulated test trials, same images, channels and times, same units.

    Returns
    -------
    NoiseCeiling
        ``method='exact'``: ``encoding`` is r(noiseless, trial average) per channel × time
        across images, ``paper`` the same per image across channels × times — exactly the
        scores a perfect model (one that outputs ``noiseless``) obtains on this test set.
    """
    trials = check_trials(trials)
    n_images, _, n_channels, n_times = trials.shape
    noiseless = check_array(noiseless, "noiseless", RESPONSE_AXES,
                            shape=(n_images, n_channels, n_times))
    average = trials.mean(axis=1, dtype=np.float64)
    return NoiseCeiling(
        encoding=pearson_r(noiseless, average, axis=0),
        paper=pearson_r(noiseless, average, axis=(1, 2)),
        method="exact",
    )


def mse_floor(trials: np.ndarray) -> np.ndarray:
    """Expected paper MSE of the true mean against the n-rep average, per image.

    The n-rep average differs from the true mean by averaged noise of variance ``N / n``,
    so a perfect model's expected squared error at each channel × time is ``N / n``. ``N``
    is estimated by the unbiased variance over repetitions (``ddof=1``); the floor for the
    paper MSE of an image is its mean over channels × times, divided by ``n_reps``.

    Parameters
    ----------
    trials : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Real test trials, ``n_reps >= 2``, in signal units (e.g. µV).

    Returns
    -------
    ndarray, shape (n_images,)
        MSE floor per image, in squared signal units (e.g. µV²); average it over images for
        the floor on the mean paper MSE.
    """
    trials = check_trials(trials, min_reps=2)
    n_reps = trials.shape[1]
    noise_var = np.array([image.var(axis=0, ddof=1, dtype=np.float64).mean() for image in trials])
    return noise_var / n_reps


def gifford_bounds(trials: np.ndarray, *, n_splits: int = 20, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The lower and upper noise-ceiling bounds of Gifford et al. (2022), per channel × time.

    For each random split of the repetitions into halves A and B: lower = corr across
    images of A's average with B's, upper = corr of A's average with the average of all
    repetitions (A and B each taking the role of A); both averaged over splits. These are
    not corrected to the full average, so they sit below this module's ceiling (lower) and
    around it (upper); they are reported so that scores compare with published THINGS-EEG2
    encoding curves.

    Parameters
    ----------
    trials : ndarray, shape (n_images, n_reps, n_channels, n_times), n_reps >= 2
    n_splits, seed : int

    Returns
    -------
    lower, upper : ndarrays, shape (n_channels, n_times)
        r, unitless; NaN where an average is constant.
    """
    trials = check_trials(trials, min_reps=2)
    n_images, n_reps, n_channels, n_times = trials.shape
    flat = trials.reshape(n_images, n_reps, -1).astype(np.float64)
    full = flat.mean(axis=1)
    rng = np.random.default_rng(seed)
    half = n_reps // 2
    lower = np.zeros(flat.shape[2])
    upper = np.zeros(flat.shape[2])
    for _ in range(n_splits):
        order = rng.permutation(n_reps)
        a = flat[:, order[:half]].mean(axis=1)
        b = flat[:, order[half:2 * half]].mean(axis=1)
        lower += pearson_r(a, b, axis=0)
        upper += (pearson_r(a, full, axis=0) + pearson_r(b, full, axis=0)) / 2
    shape = (n_channels, n_times)
    return (lower / n_splits).reshape(shape), (upper / n_splits).reshape(shape)

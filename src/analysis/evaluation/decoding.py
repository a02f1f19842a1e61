"""Decoding-based plausibility of generated M/EEG: do generated responses carry the
information, and look like, the real ones?

Four questions, one block of functions each (DESIGN.md, Evaluation (a)–(d)):

(a) **Zero-shot identification.** Can each test image be picked out of all test images by
    correlating its real average with every generated signal?
    :func:`identification`, :func:`identification_permutation_null`, with channel × time
    features chosen on *training* data only by :func:`select_features_by_reliability`.
(b) **Transfer decoding.** Does a classifier of an image attribute (``curved``, ``shape``,
    …) trained on real single trials work on generated signals, and the reverse, compared
    with the real → real cross-validated accuracy? :func:`transfer_decoding`.
(c) **Two-sample test.** Can a classifier tell real from generated examples?
    :func:`real_vs_generated_auc` (ROC AUC 0.5 = indistinguishable); :func:`residual_auc`
    compares equal-count averages of each image after removing that image's real response.
(d) **Signal statistics.** Power spectra and ERP peak latencies / amplitudes,
    :func:`power_spectra`, :func:`erp_peaks`, :func:`compare_signal_statistics`.

Array conventions (units are the data's own, e.g. µV or whitened units):

- real trials ``(n_images, n_reps, n_channels, n_times)``;
- real test average ``(n_images, n_channels, n_times)``;
- generated ``(n_images, n_channels, n_times)``, or ``(n_images, n_samples, n_channels,
  n_times)`` when several samples are drawn per image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from mne.decoding import SlidingEstimator, cross_val_multiscore
from mne.time_frequency import psd_array_welch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import (StratifiedGroupKFold, StratifiedKFold, cross_val_score,
                                     permutation_test_score)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)

#: ERP components of visual evoked responses: name → (tmin, tmax) in seconds. The first
#: letter gives the polarity searched for (P: maximum, N: minimum).
DEFAULT_ERP_WINDOWS: dict[str, tuple[float, float]] = {
    "P1": (0.08, 0.13), "N1": (0.13, 0.22), "P3": (0.28, 0.45),
}

#: Frequency bands (Hz) for band power; bands above Nyquist are left out.
DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0), "gamma": (30.0, 45.0),
}

_METRICS = ("correlation", "euclidean")
_STATISTICS = ("top1", "top5", "mean_rank")


# --------------------------------------------------------------------------- validation


def _error(name: str, expected: str, found: str) -> ValueError:
    return ValueError(f"{name}: expected {expected}, found {found}")


def _as_array(x, name: str, ndims: tuple[int, ...], expected: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in ndims:
        raise _error(name, expected, f"shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise _error(name, "a real numeric array", f"dtype {x.dtype}")
    if min(x.shape) == 0:
        raise _error(name, "no empty axis", f"shape {x.shape}")
    if not np.isfinite(x).all():
        raise _error(name, "only finite values", f"{int((~np.isfinite(x)).sum())} NaN/inf")
    return x


def _image_signals(x, name: str) -> np.ndarray:
    """(n_images, n_channels, n_times), averaging a samples axis when there is one."""
    x = _as_array(x, name, (3, 4), "shape (n_images, n_channels, n_times) or "
                  "(n_images, n_samples, n_channels, n_times)")
    return x.mean(axis=1) if x.ndim == 4 else x


def _examples(x, name: str) -> np.ndarray:
    """(n_examples, n_channels, n_times), merging (n_images, n_reps) when 4-D."""
    x = _as_array(x, name, (3, 4), "shape (n_examples, n_channels, n_times) or "
                  "(n_images, n_reps, n_channels, n_times)")
    return x.reshape(-1, *x.shape[-2:]) if x.ndim == 4 else x


def _check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise _error(name, f"one of {list(choices)}", repr(value))


def _check_same_axes(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str,
                     what: str = "(n_channels, n_times)") -> None:
    if a.shape[-2:] != b.shape[-2:]:
        raise _error(name_b, f"the same {what} as {name_a} {a.shape[-2:]}",
                     f"{b.shape[-2:]}")


# --------------------------------------------------------------------------- (a) identification


@dataclass(frozen=True)
class IdentificationResult:
    """Zero-shot identification of ``n_images`` test images.

    Attributes
    ----------
    top1, top5 : float
        Fraction of images whose own generated signal ranks first / within the first five.
    ranks : ndarray of int, shape (n_images,)
        Rank (1 = best) of image ``i``'s generated signal among all generated signals, by
        similarity to ``real_avg[i]``. Ties count against the correct image.
    chance_top1, chance_top5 : float
        ``1 / n_images`` and ``min(5, n_images) / n_images``.
    similarity : ndarray, shape (n_images, n_images)
        ``similarity[i, j]``: real image ``i`` vs generated image ``j`` (Pearson r, or minus
        the Euclidean distance).
    """

    top1: float
    top5: float
    ranks: np.ndarray
    chance_top1: float
    chance_top5: float
    similarity: np.ndarray

    @property
    def n_images(self) -> int:
        return len(self.ranks)

    def top_k(self, k: int) -> float:
        """Fraction of images ranked within the first ``k``."""
        return float(np.mean(self.ranks <= k))


@dataclass(frozen=True)
class PermutationNull:
    """Null distribution of an identification statistic under shuffled image labels.

    Attributes
    ----------
    statistic : str
        ``'top1'``, ``'top5'`` (higher is better) or ``'mean_rank'`` (lower is better).
    observed : float
        The statistic with the true image labels.
    null : ndarray, shape (n_perm,)
        The statistic for each random relabelling of the generated signals.
    p_value : float
        ``(1 + #null at least as good as observed) / (n_perm + 1)``; its smallest possible
        value is ``1 / (n_perm + 1)``.
    """

    statistic: str
    observed: float
    null: np.ndarray
    p_value: float


def _features(x: np.ndarray, feature_mask) -> np.ndarray:
    """(n_images, n_features) from (n_images, n_channels, n_times) and an optional mask."""
    flat = x.reshape(len(x), -1)
    if feature_mask is None:
        return flat
    mask = np.asarray(feature_mask)
    if mask.dtype != bool or mask.shape not in (x.shape[1:], (flat.shape[1],)):
        raise _error("feature_mask", f"a boolean array of shape {x.shape[1:]} or "
                     f"({flat.shape[1]},)", f"dtype {mask.dtype}, shape {mask.shape}")
    if mask.sum() < 2:
        raise _error("feature_mask", "at least 2 selected features", f"{int(mask.sum())}")
    return flat[:, mask.ravel()]


def _similarity(real: np.ndarray, generated: np.ndarray, metric: str) -> np.ndarray:
    """(n_real, n_generated) similarity of feature rows; undefined values are -inf."""
    real = real.astype(np.float64)
    generated = generated.astype(np.float64)
    if metric == "correlation":
        zr = real - real.mean(axis=1, keepdims=True)
        zg = generated - generated.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            zr /= np.linalg.norm(zr, axis=1, keepdims=True)
            zg /= np.linalg.norm(zg, axis=1, keepdims=True)
            sim = zr @ zg.T
    else:
        sq = (real ** 2).sum(1)[:, None] + (generated ** 2).sum(1)[None, :] - 2 * real @ generated.T
        sim = -np.sqrt(np.maximum(sq, 0.0))
    return np.where(np.isfinite(sim), sim, -np.inf)


def _rank_matrix(similarity: np.ndarray) -> np.ndarray:
    """rank[i, j]: rank of candidate j in row i (1 = best; ties count against j)."""
    sorted_rows = np.sort(similarity, axis=1)
    n = similarity.shape[1]
    below = np.stack([np.searchsorted(row, values, side="left")
                      for row, values in zip(sorted_rows, similarity)])
    return n - below


def _prepare_identification(generated, real_avg, feature_mask, metric):
    _check_choice(metric, "metric", _METRICS)
    real = _as_array(real_avg, "real_avg", (3,), "shape (n_images, n_channels, n_times)")
    gen = _image_signals(generated, "generated")
    if gen.shape != real.shape:
        raise _error("generated", f"{real.shape[0]} images × {real.shape[1:]} (as real_avg)",
                     f"shape {np.shape(generated)}")
    if len(real) < 2:
        raise _error("real_avg", "at least 2 images", f"{len(real)}")
    return _similarity(_features(real, feature_mask), _features(gen, feature_mask), metric)


def identification(generated, real_avg, *, feature_mask=None,
                   metric: str = "correlation") -> IdentificationResult:
    """Zero-shot identification of test images from generated signals.

    For each test image ``i``, every generated signal is scored by its similarity to the
    real average ``real_avg[i]``; the image is identified when its own generated signal
    scores best (top-1) or among the best five (top-5).

    Parameters
    ----------
    generated : ndarray, shape (n_images, [n_samples,] n_channels, n_times)
        Generated signals, in the same image order as ``real_avg``. Several samples per
        image are averaged first.
    real_avg : ndarray, shape (n_images, n_channels, n_times)
        Real test responses averaged over repetitions.
    feature_mask : ndarray of bool, shape (n_channels, n_times) or (n_channels * n_times,), optional
        Features to compare on, chosen on training data (see
        :func:`select_features_by_reliability`). Default: all.
    metric : {'correlation', 'euclidean'}
        Pearson correlation over the features, or minus the Euclidean distance.

    Returns
    -------
    IdentificationResult
        Top-1 / top-5 accuracy, per-image ranks, chance levels and the similarity matrix.
        Signals with no variance over the features score ``-inf`` (never identified).
    """
    sim = _prepare_identification(generated, real_avg, feature_mask, metric)
    ranks = np.diagonal(_rank_matrix(sim)).copy()
    n = len(ranks)
    return IdentificationResult(
        top1=float(np.mean(ranks == 1)), top5=float(np.mean(ranks <= 5)), ranks=ranks,
        chance_top1=1.0 / n, chance_top5=min(5, n) / n, similarity=sim,
    )


def identification_permutation_null(generated, real_avg, n_perm: int = 1000, seed: int = 0, *,
                                    feature_mask=None, metric: str = "correlation",
                                    statistic: str = "top1") -> PermutationNull:
    """Null distribution of identification accuracy with shuffled image labels.

    The image labels of ``generated`` are permuted at random ``n_perm`` times; each
    permutation's statistic comes from the same similarity matrix (columns relabelled), so
    this costs one identification plus ``O(n_perm * n_images)``.

    Parameters
    ----------
    generated, real_avg, feature_mask, metric
        As in :func:`identification`.
    n_perm : int
        Number of random permutations (>= 1).
    seed : int
        Seed of the permutations.
    statistic : {'top1', 'top5', 'mean_rank'}
        The identification statistic.

    Returns
    -------
    PermutationNull
        Observed statistic, null distribution ``(n_perm,)`` and p-value with the +1
        correction.
    """
    _check_choice(statistic, "statistic", _STATISTICS)
    if not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise _error("n_perm", "a positive integer", repr(n_perm))
    ranks = _rank_matrix(_prepare_identification(generated, real_avg, feature_mask, metric))
    n = len(ranks)

    def stat(r: np.ndarray) -> np.ndarray:
        if statistic == "top1":
            return (r == 1).mean(axis=-1)
        if statistic == "top5":
            return (r <= 5).mean(axis=-1)
        return r.mean(axis=-1)

    observed = float(stat(np.diagonal(ranks)))
    rng = np.random.default_rng(seed)
    null = np.empty(n_perm)
    rows = np.arange(n)
    for start in range(0, n_perm, 1000):
        stop = min(start + 1000, n_perm)
        perms = np.argsort(rng.random((stop - start, n)), axis=1)
        null[start:stop] = stat(ranks[rows, perms])
    as_good = null <= observed if statistic == "mean_rank" else null >= observed
    p_value = (1 + int(as_good.sum())) / (n_perm + 1)
    return PermutationNull(statistic=statistic, observed=observed, null=null, p_value=p_value)


def feature_reliability(train_trials, *, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Split-half reliability of every channel × time feature across images.

    The repetitions are split at random into two halves of ``n_reps // 2``; the
    correlation across images between the two half-averages, per feature, is averaged
    over ``n_splits`` splits.

    Parameters
    ----------
    train_trials : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Training trials, ``n_reps >= 2``.
    n_splits : int
        Number of random split-halves averaged.
    seed : int
        Seed of the splits.

    Returns
    -------
    ndarray, shape (n_channels, n_times)
        Pearson r per feature; NaN where a half-average does not vary across images.
    """
    x = _as_array(train_trials, "train_trials", (4,),
                  "shape (n_images, n_reps, n_channels, n_times)")
    n_img, n_reps = x.shape[:2]
    if n_reps < 2:
        raise _error("train_trials", "at least 2 repetitions on axis 1 for split halves",
                     f"shape {x.shape}")
    if n_img < 3:
        raise _error("train_trials", "at least 3 images on axis 0", f"shape {x.shape}")
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise _error("n_splits", "a positive integer", repr(n_splits))
    rng = np.random.default_rng(seed)
    half = n_reps // 2
    total = np.zeros(x.shape[2:])
    for _ in range(n_splits):
        order = rng.permutation(n_reps)
        a = x[:, order[:half]].mean(axis=1, dtype=np.float64)
        b = x[:, order[half:2 * half]].mean(axis=1, dtype=np.float64)
        a -= a.mean(axis=0)
        b -= b.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            total += (a * b).sum(0) / np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    return total / n_splits


def select_features_by_reliability(train_trials, *, k: int | None = None,
                                   quantile: float | None = None, n_splits: int = 5,
                                   seed: int = 0) -> np.ndarray:
    """The most reliable channel × time features, judged on training data only.

    Parameters
    ----------
    train_trials : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Training trials (never the test set, which would bias identification upwards).
    k : int, optional
        Number of features to keep.
    quantile : float in [0, 1), optional
        Keep the features at or above this quantile of reliability, i.e. the top
        ``round((1 - quantile) * n_features)`` (at least one). Give ``k`` or
        ``quantile``, not both.
    n_splits, seed
        As in :func:`feature_reliability`.

    Returns
    -------
    ndarray of bool, shape (n_channels, n_times)
        Exactly the requested number of ``True`` features (ties broken by channel, then
        time order); pass it as ``feature_mask`` to :func:`identification`.
    """
    if (k is None) == (quantile is None):
        raise _error("k / quantile", "exactly one of them", f"k={k!r}, quantile={quantile!r}")
    reliability = feature_reliability(train_trials, n_splits=n_splits, seed=seed)
    n_features = reliability.size
    if quantile is not None:
        if not 0.0 <= quantile < 1.0:
            raise _error("quantile", "a number in [0, 1)", repr(quantile))
        k = max(1, int(round((1.0 - quantile) * n_features)))
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n_features:
        raise _error("k", f"an integer in [1, {n_features}] (n_channels * n_times)", repr(k))
    score = np.nan_to_num(reliability.ravel(), nan=-np.inf)
    keep = np.argsort(-score, kind="stable")[:k]
    mask = np.zeros(n_features, bool)
    mask[keep] = True
    logger.debug("kept %d of %d features, reliability >= %.3f", k, n_features, score[keep].min())
    return mask.reshape(reliability.shape)


# --------------------------------------------------------------------------- (b) transfer decoding


def make_decoder(classifier: str = "logistic", seed: int = 0) -> Pipeline:
    """A linear decoder: standardisation followed by logistic regression (L2, C = 1) or
    shrinkage LDA (Ledoit–Wolf)."""
    _check_choice(classifier, "classifier", ("logistic", "lda"))
    if classifier == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    return make_pipeline(StandardScaler(),
                         LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))


def stack_examples(signals, image_labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Examples, labels and image groups for decoding, from per-image signals and labels.

    Parameters
    ----------
    signals : ndarray, shape (n_images, [n_reps,] n_channels, n_times)
        Real trials (``n_reps``), generated samples, or averages.
    image_labels : array-like, shape (n_images,)
        One label per image (e.g. ``attributes['curved']``).

    Returns
    -------
    X : ndarray, shape (n_images * n_reps, n_channels, n_times)
    y : ndarray, shape (n_images * n_reps,)
    groups : ndarray of int, shape (n_images * n_reps,)
        The image index of each example, so cross-validation can keep an image's
        repetitions together.
    """
    x = _as_array(signals, "signals", (3, 4), "shape (n_images, n_channels, n_times) or "
                  "(n_images, n_reps, n_channels, n_times)")
    labels = np.asarray(image_labels)
    if labels.shape != (len(x),):
        raise _error("image_labels", f"shape ({len(x)},) (one per image)", f"shape {labels.shape}")
    reps = x.shape[1] if x.ndim == 4 else 1
    groups = np.repeat(np.arange(len(x)), reps)
    return x.reshape(-1, *x.shape[-2:]), labels[groups], groups


def _check_labels(y, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise _error(name, f"shape ({n},) (one label per example)", f"shape {y.shape}")
    if len(np.unique(y)) < 2:
        raise _error(name, "at least 2 classes", f"{len(np.unique(y))}")
    return y


def _splitter(y: np.ndarray, groups, cv: int, seed: int, name: str):
    counts = np.unique(y, return_counts=True)[1]
    if counts.min() < cv:
        raise _error(name, f"at least cv={cv} examples of every class",
                     f"class counts {counts.tolist()}")
    if groups is None:
        return StratifiedKFold(cv, shuffle=True, random_state=seed)
    if len(np.unique(groups)) < cv:
        raise _error(f"groups of {name}", f"at least cv={cv} groups", f"{len(np.unique(groups))}")
    return StratifiedGroupKFold(cv, shuffle=True, random_state=seed)


def _chance(y: np.ndarray, scoring: str) -> float:
    counts = np.unique(y, return_counts=True)[1]
    return 1.0 / len(counts) if scoring == "balanced_accuracy" else counts.max() / counts.sum()


def transfer_decoding(X_train, y_train, X_test, y_test, times=None, time_resolved: bool = True, *,
                      names: tuple[str, str] = ("real", "generated"), groups_train=None,
                      groups_test=None, classifier: str = "logistic", cv: int = 5,
                      within: bool = True, scoring: str = "accuracy", seed: int = 0,
                      n_jobs: int = 1) -> pd.DataFrame:
    """Decode a label across data sources: train on one, test on the other, both ways.

    Typically ``X_train`` holds real single trials and ``X_test`` generated signals of
    images with known attributes (build both with :func:`stack_examples`). Four scores:
    ``real→generated`` and ``generated→real`` (fit on all of one, score on all of the
    other) and, when ``within``, the cross-validated baselines ``real→real (cv)`` and
    ``generated→generated (cv)``. Transfer close to the real → real baseline means the
    generated signals carry the label information where the real ones do.

    Parameters
    ----------
    X_train, X_test : ndarray, shape (n_examples, n_channels, n_times)
        The two sources (same channels and times).
    y_train, y_test : array-like, shape (n_examples,)
        Class labels (e.g. ``curved``, ``shape``); at least two classes each.
    times : ndarray, shape (n_times,), optional
        Time of each sample in seconds; default: sample indices.
    time_resolved : bool
        True: one decoder per time point on the channels (a decoding curve). False: one
        decoder on the whole window (all channels × times).
    names : (str, str)
        Names of the train and test sources, used in ``direction``.
    groups_train, groups_test : array-like, shape (n_examples,), optional
        Image index of each example (from :func:`stack_examples`); cross-validation then
        keeps an image's repetitions in one fold, so the baseline cannot lean on
        image-specific signals.
    classifier : {'logistic', 'lda'}
        See :func:`make_decoder`.
    cv : int
        Folds of the within-source baselines (stratified, shuffled with ``seed``).
    within : bool
        Add the within-source cross-validated baselines.
    scoring : {'accuracy', 'balanced_accuracy'}
        Score; chance is the majority-class rate for accuracy, ``1 / n_classes`` for
        balanced accuracy, computed on the scored labels.
    seed, n_jobs : int
        Seed of the folds and classifier; parallel jobs over time points / folds.

    Returns
    -------
    pandas.DataFrame
        One row per direction (and time point when ``time_resolved``), columns
        ``direction``, ``train``, ``test``, ``time`` (NaN for the whole window),
        ``accuracy``, ``chance``, ``scoring``, ``n_train``, ``n_test`` (mean fold sizes for
        the cross-validated rows).
    """
    _check_choice(scoring, "scoring", ("accuracy", "balanced_accuracy"))
    _check_choice(classifier, "classifier", ("logistic", "lda"))
    x_a = _as_array(X_train, "X_train", (3,), "shape (n_examples, n_channels, n_times)")
    x_b = _as_array(X_test, "X_test", (3,), "shape (n_examples, n_channels, n_times)")
    _check_same_axes(x_a, x_b, "X_train", "X_test")
    y_a = _check_labels(y_train, len(x_a), "y_train")
    y_b = _check_labels(y_test, len(x_b), "y_test")
    n_times = x_a.shape[2]
    times = np.arange(n_times, dtype=float) if times is None else np.asarray(times, float)
    if times.shape != (n_times,):
        raise _error("times", f"shape ({n_times},) (n_times of X_train)", f"shape {times.shape}")
    if len(names) != 2 or names[0] == names[1]:
        raise _error("names", "two different names", repr(names))
    groups = {}
    for gname, g, x in (("groups_train", groups_train, x_a), ("groups_test", groups_test, x_b)):
        if g is not None and np.shape(g) != (len(x),):
            raise _error(gname, f"shape ({len(x)},) (one group per example)",
                         f"shape {np.shape(g)}")
        groups[gname] = None if g is None else np.asarray(g)

    decoder = make_decoder(classifier, seed)

    def estimator():
        if time_resolved:
            return SlidingEstimator(decoder, scoring=scoring, n_jobs=n_jobs, verbose=False)
        return clone(decoder)

    def design(x):
        return x if time_resolved else x.reshape(len(x), -1)

    rows = []

    def add(train, test, scores, n_train, n_test, y_scored):
        scores = np.atleast_1d(scores)
        for t, s in zip(times if time_resolved else [np.nan], scores):
            rows.append(dict(direction=f"{train}→{test}" + (" (cv)" if train == test else ""),
                             train=train, test=test, time=float(t), accuracy=float(s),
                             chance=_chance(y_scored, scoring), scoring=scoring,
                             n_train=n_train, n_test=n_test))

    sources = ((names[0], x_a, y_a, groups["groups_train"], "y_train"),
               (names[1], x_b, y_b, groups["groups_test"], "y_test"))
    for (src, xs, ys, _, _), (dst, xd, yd, _, _) in (sources, sources[::-1]):
        est = estimator().fit(design(xs), ys)
        if time_resolved:
            scores = est.score(design(xd), yd)
        else:
            scores = get_scorer(scoring)(est, design(xd), yd)
        add(src, dst, scores, len(xs), len(xd), yd)
    if within:
        for src, xs, ys, gs, yname in sources:
            folds = list(_splitter(ys, gs, cv, seed, yname).split(xs, ys, gs))
            if time_resolved:
                scores = cross_val_multiscore(estimator(), xs, ys, cv=folds, n_jobs=1,
                                              verbose=False).mean(axis=0)
            else:
                scores = cross_val_score(decoder, design(xs), ys, cv=folds, scoring=scoring,
                                         n_jobs=n_jobs).mean()
            n_test = round(np.mean([len(test) for _, test in folds]))
            add(src, src, scores, len(xs) - n_test, n_test, ys)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- (c) two-sample test


@dataclass(frozen=True)
class AUCResult:
    """Cross-validated ROC AUC of a real-vs-generated classifier.

    Attributes
    ----------
    auc : float
        Mean over folds; 0.5 = indistinguishable, 1 = perfectly separable.
    fold_aucs : ndarray, shape (cv,)
    p_value : float
        Permutation p-value (labels shuffled, +1 correction) for AUC above chance; NaN
        when ``n_permutations == 0``.
    null : ndarray, shape (n_permutations,)
        Mean AUC of each permutation.
    n_real, n_generated : int
        Examples per class.
    """

    auc: float
    fold_aucs: np.ndarray
    p_value: float
    null: np.ndarray
    n_real: int
    n_generated: int


_AUC_FEATURES = ("signal", "log_power", "both")


def _log_power(x: np.ndarray) -> np.ndarray:
    """(n, n_channels * (n_times // 2 + 1)) log10 Hann-windowed periodogram per channel."""
    power = np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2
    return np.log10(power + 1e-12 * power.mean()).reshape(len(x), -1)


def real_vs_generated_auc(real, generated, cv: int = 5, seed: int = 0, *,
                          features: str = "signal", C: float = 0.01,
                          n_permutations: int = 50, n_jobs: int = 1,
                          groups=None) -> AUCResult:
    """How well a linear classifier tells real from generated examples.

    An L2 LogisticRegression is cross-validated (StratifiedKFold, shuffled with ``seed``)
    with ROC AUC as the score, and a permutation test (sklearn ``permutation_test_score``)
    says whether the AUC exceeds chance. Its input is standardised and rotated into the
    principal components of all examples, both fit without labels: an L2 fit's weights lie
    in the span of its examples, so in those coordinates every fold has the decision
    function it would have on the standardised features, at a cost set by the number of
    examples rather than of features (the permutations refit only the classifier).

    Compare like with like: real single trials against generated samples meant to be
    single trials, or real averages against generated averages. A deterministic generator
    (one output per image) resembles an average, so against single trials it is told
    apart by its low noise alone.

    A linear classifier on the raw signal only sees differences in the *mean* over
    examples (a missing or shifted component). Differences in variance or spectrum (too
    smooth, wrong noise colour) need ``features='log_power'`` or ``'both'``.

    Parameters
    ----------
    real : ndarray, shape (n_examples, n_channels, n_times) or (n_images, n_reps, ...)
        Real examples; a 4-D array is flattened to ``n_images * n_reps`` examples.
    generated : ndarray, shape (n_examples, n_channels, n_times) or (n_images, n_samples, ...)
        Generated examples; a 4-D array is flattened likewise.
    cv : int
        Number of folds (each class needs at least ``cv`` examples).
    seed : int
        Seed of the folds and the permutations.
    features : {'signal', 'log_power', 'both'}
        Classifier input per example: all channel × time values; the log10 periodogram of
        each channel (Hann window, ``n_times // 2 + 1`` bins); or both concatenated.
    C : float
        Inverse L2 penalty of the logistic regression. Strong by default, since examples are
        usually fewer than features; it also keeps the fits fast.
    n_permutations : int
        Label permutations for the p-value; 0 skips it. The cost is ``(n_permutations + 1)
        * cv`` fits.
    n_jobs : int
        Parallel jobs over folds / permutations.
    groups : array-like, shape (n_real + n_generated,), optional
        A group per example (real first, then generated), e.g. the image: a group never
        spans folds, and the permutations shuffle labels within groups.

    Returns
    -------
    AUCResult
    """
    r = _examples(real, "real")
    g = _examples(generated, "generated")
    _check_same_axes(r, g, "real", "generated")
    _check_choice(features, "features", _AUC_FEATURES)
    if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 0:
        raise _error("n_permutations", "a non-negative integer", repr(n_permutations))
    if not isinstance(cv, (int, np.integer)) or cv < 2:
        raise _error("cv", "an integer >= 2", repr(cv))
    if not np.isscalar(C) or not C > 0:
        raise _error("C", "a positive number", repr(C))
    signals = np.concatenate([r, g]).astype(np.float64)
    parts = []
    if features in ("signal", "both"):
        parts.append(signals.reshape(len(signals), -1))
    if features in ("log_power", "both"):
        parts.append(_log_power(signals))
    x = np.concatenate(parts, axis=1)
    y = np.r_[np.zeros(len(r), int), np.ones(len(g), int)]
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise _error("groups", f"shape ({len(y)},) (one group per example)",
                         f"shape {groups.shape}")
    splitter = _splitter(y, groups, cv, seed, "real / generated (examples per class)")
    # Label-free, so the permutation test stays exact; fit once instead of in each of the
    # (n_permutations + 2) * cv fits. At THINGS-MEG's test set (400 examples × 38 211
    # log-power features) this cut a generator's 19-permutation AUC from 223 s to a few
    # seconds on 2 CPU cores (benchmarks/decoding_scale.py).
    x = make_pipeline(StandardScaler(), PCA()).fit_transform(x)
    # liblinear: same L2 fit as lbfgs for a binary problem, faster with many features.
    decoder = LogisticRegression(C=C, solver="liblinear", random_state=seed)
    folds = cross_val_score(decoder, x, y, groups=groups, cv=splitter, scoring="roc_auc",
                            n_jobs=n_jobs)
    p_value, null = np.nan, np.zeros(0)
    if n_permutations:
        _, null, p_value = permutation_test_score(
            decoder, x, y, groups=groups, cv=splitter, n_permutations=n_permutations,
            scoring="roc_auc", random_state=seed, n_jobs=n_jobs)
    return AUCResult(auc=float(folds.mean()), fold_aucs=folds, p_value=float(p_value),
                     null=np.asarray(null), n_real=len(r), n_generated=len(g))


def residual_k(n_samples: int, n_reps: int) -> int:
    """Repetitions per average in :func:`residual_auc`: as many as the generator has
    samples, at most half the real repetitions (the other half anchors the residuals)."""
    return min(int(n_samples), int(n_reps) // 2)


def residual_auc(real_trials, generated, k: int | None = None, cv: int = 5, seed: int = 0, *,
                 features: str = "log_power", n_permutations: int = 0, n_jobs: int = 1
                 ) -> AUCResult:
    """Real-vs-generated AUC, like with like and image by image.

    For each image, the average of ``k`` real repetitions and the average of ``k``
    generated samples each have the average of ``k`` *other* real repetitions of the same
    image subtracted; a classifier (:func:`real_vs_generated_auc`, folds and permutations
    grouped by image) then tells the two residuals apart. The counts match (``k`` vs
    ``k``), and subtracting the image's own real response removes what every image shares
    (the grand average, which otherwise dominates) and asks whether the generated signals
    fit *their* image: a real residual is pure noise, a generated one adds the generator's
    error for that image, which log-power features see as excess power (the raw signal
    adds little: the error's sign differs from image to image; on the built-in data
    ``'both'`` separated the references no better at three times the cost). An ideal
    generator scores 0.5; an image-blind one or one with the labels shuffled scores higher.

    Parameters
    ----------
    real_trials : ndarray, shape (n_images, n_reps, n_channels, n_times), n_reps >= 2
        Real repetitions of each image (the scoring target, none of which the generator saw).
    generated : ndarray, shape (n_images, n_samples, n_channels, n_times)
    k : int, optional
        Repetitions (and samples) per average; default :func:`residual_k`.
    cv, seed, features, n_permutations, n_jobs
        As in :func:`real_vs_generated_auc`.

    Returns
    -------
    AUCResult
        ``n_real`` = ``n_generated`` = ``n_images``.
    """
    real = _as_array(real_trials, "real_trials", (4,),
                     "shape (n_images, n_reps, n_channels, n_times)")
    gen = _as_array(generated, "generated", (4,),
                    "shape (n_images, n_samples, n_channels, n_times)")
    if gen.shape[0] != real.shape[0] or gen.shape[2:] != real.shape[2:]:
        raise _error("generated", f"shape ({real.shape[0]}, n_samples, {real.shape[2]}, "
                     f"{real.shape[3]}) (the images, channels and times of real_trials)",
                     f"shape {gen.shape}")
    largest = residual_k(gen.shape[1], real.shape[1])
    k = largest if k is None else int(k)
    if not 1 <= k <= largest:
        raise _error("k", f"an integer in [1, {largest}] "
                     "(at most the samples per image and half the repetitions)", repr(k))
    anchor = real[:, k:2 * k].mean(axis=1)
    images = np.arange(len(real))
    return real_vs_generated_auc(real[:, :k].mean(axis=1) - anchor,
                                 gen[:, :k].mean(axis=1) - anchor, cv=cv, seed=seed,
                                 features=features,
                                 n_permutations=n_permutations, n_jobs=n_jobs,
                                 groups=np.r_[images, images])


# --------------------------------------------------------------------------- (d) signal statistics


def power_spectra(x, sfreq: float, *, fmin: float = 0.0, fmax: float = np.inf,
                  n_fft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density averaged over every signal in ``x``.

    Parameters
    ----------
    x : ndarray, shape (..., n_times)
        E.g. trials ``(n_images, n_reps, n_channels, n_times)`` or generated
        ``(n_images, n_channels, n_times)``; every leading index is one signal.
    sfreq : float
        Sampling frequency in Hz.
    fmin, fmax : float
        Frequency range in Hz.
    n_fft : int, optional
        FFT length (one segment); default ``min(256, n_times)``.

    Returns
    -------
    freqs : ndarray, shape (n_freqs,)
        In Hz, spaced ``sfreq / n_fft``.
    psd : ndarray, shape (n_freqs,)
        Mean PSD over images / channels (/ repetitions), in units² / Hz.
    """
    x = _as_array(x, "x", tuple(range(1, 8)), "shape (..., n_times)")
    if not np.isscalar(sfreq) or not sfreq > 0:
        raise _error("sfreq", "a positive number (Hz)", repr(sfreq))
    n_times = x.shape[-1]
    n_fft = min(256, n_times) if n_fft is None else n_fft
    if not isinstance(n_fft, (int, np.integer)) or not 2 <= n_fft <= n_times:
        raise _error("n_fft", f"an integer in [2, {n_times}] (n_times)", repr(n_fft))
    psd, freqs = psd_array_welch(x.reshape(-1, n_times).astype(np.float64), sfreq, fmin=fmin,
                                 fmax=fmax, n_fft=n_fft, verbose=False)
    return freqs, psd.mean(axis=0)


def _windows(windows, times: np.ndarray) -> list[tuple[str, float, float, int]]:
    """(name, tmin, tmax, sign) per window; sign +1 for P components, -1 for N."""
    out = []
    for name, spec in dict(windows).items():
        spec = tuple(spec)
        if len(spec) == 3:
            tmin, tmax, polarity = spec
        elif len(spec) == 2 and str(name)[:1].upper() in ("P", "N"):
            (tmin, tmax), polarity = spec, str(name)[:1].upper()
        else:
            raise _error(f"windows['{name}']", "(tmin, tmax) with a name starting with P or N, "
                         "or (tmin, tmax, 'P'|'N')", repr(spec))
        if str(polarity).upper() not in ("P", "N"):
            raise _error(f"windows['{name}']", "polarity 'P' or 'N'", repr(polarity))
        if not tmin < tmax:
            raise _error(f"windows['{name}']", "tmin < tmax", repr(spec))
        if not ((times >= tmin) & (times <= tmax)).any():
            raise _error(f"windows['{name}']", f"samples within times [{times[0]:g}, "
                         f"{times[-1]:g}] s", f"({tmin:g}, {tmax:g}) s")
        out.append((str(name), float(tmin), float(tmax), 1 if str(polarity).upper() == "P" else -1))
    return out


def _waveform(grand_average, times, picks, name: str) -> tuple[np.ndarray, np.ndarray]:
    ga = _as_array(grand_average, name, (1, 2), "shape (n_times,) or (n_channels, n_times)")
    times = np.asarray(times, float)
    if times.shape != (ga.shape[-1],):
        raise _error("times", f"shape ({ga.shape[-1]},) (n_times of {name})",
                     f"shape {times.shape}")
    if ga.ndim == 2:
        ga = ga[picks if picks is not None else slice(None)]
        ga = ga.mean(axis=0) if ga.ndim == 2 else ga
    elif picks is not None:
        raise _error("picks", f"None for a 1-D {name}", repr(picks))
    return ga, times


def erp_peaks(grand_average, times, windows: Mapping = DEFAULT_ERP_WINDOWS, *,
              picks=None) -> pd.DataFrame:
    """Peak latency and amplitude of ERP components in a grand-average waveform.

    Parameters
    ----------
    grand_average : ndarray, shape (n_times,) or (n_channels, n_times)
        Response averaged over images (and repetitions). With channels, the waveform is the
        mean over ``picks``.
    times : ndarray, shape (n_times,)
        In seconds.
    windows : mapping
        Component name → ``(tmin, tmax)`` in seconds (bounds included), the polarity taken
        from the name's first letter (``P``: maximum, ``N``: minimum), or
        ``(tmin, tmax, 'P'|'N')``. Default :data:`DEFAULT_ERP_WINDOWS`.
    picks : int, slice or array of int, optional
        Channels averaged (default all).

    Returns
    -------
    pandas.DataFrame
        One row per component: ``component``, ``tmin``, ``tmax``, ``polarity`` (+1 / -1),
        ``latency`` (s, at a sample), ``amplitude`` (signed, data units) and ``at_edge``
        (the extremum lies on a window bound, so it may not be a true peak).
    """
    wave, times = _waveform(grand_average, times, picks, "grand_average")
    rows = []
    for name, tmin, tmax, sign in _windows(windows, times):
        idx = np.flatnonzero((times >= tmin) & (times <= tmax))
        best = idx[np.argmax(sign * wave[idx])]
        rows.append(dict(component=name, tmin=tmin, tmax=tmax, polarity=sign,
                         latency=float(times[best]), amplitude=float(wave[best]),
                         at_edge=bool(best in (idx[0], idx[-1]))))
    return pd.DataFrame(rows)


def compare_signal_statistics(real, generated, sfreq: float, times, *,
                              windows: Mapping = DEFAULT_ERP_WINDOWS,
                              bands: Mapping = DEFAULT_BANDS, picks=None) -> pd.DataFrame:
    """Band power, RMS and ERP peaks of real and generated signals, side by side.

    Spectra are averaged over every signal; ERP peaks come from the grand average over
    images (and repetitions / samples), averaged over ``picks``. Compare like with like:
    the spectrum of single trials includes the trial noise that averages remove.

    Parameters
    ----------
    real : ndarray, shape (n_images, [n_reps,] n_channels, n_times)
    generated : ndarray, shape (n_images, [n_samples,] n_channels, n_times)
    sfreq : float
        Sampling frequency in Hz.
    times : ndarray, shape (n_times,)
        In seconds.
    windows : mapping
        ERP components, as in :func:`erp_peaks`.
    bands : mapping
        Band name → ``(fmin, fmax)`` in Hz; bands starting at or above Nyquist are skipped.
    picks : optional
        Channels for the ERP waveform, as in :func:`erp_peaks`.

    Returns
    -------
    pandas.DataFrame
        Long format, columns ``source`` ('real' / 'generated'), ``statistic``
        ('band_power' in units²/Hz, 'rms' in units, 'peak_latency' in s,
        'peak_amplitude' in units), ``feature`` (band, 'all' or component) and ``value``.
        ``df.pivot_table(index=['statistic', 'feature'], columns='source', values='value')``
        puts real and generated side by side.
    """
    sources = {
        "real": _as_array(real, "real", (3, 4), "shape (n_images, [n_reps,] n_channels, n_times)"),
        "generated": _as_array(generated, "generated", (3, 4),
                               "shape (n_images, [n_samples,] n_channels, n_times)"),
    }
    _check_same_axes(sources["real"], sources["generated"], "real", "generated")
    rows = []
    for source, x in sources.items():
        freqs, psd = power_spectra(x, sfreq)
        for band, (lo, hi) in bands.items():
            sel = (freqs >= lo) & (freqs < hi)
            if lo < sfreq / 2 and sel.any():
                rows.append(dict(source=source, statistic="band_power", feature=band,
                                 value=float(psd[sel].mean())))
        rows.append(dict(source=source, statistic="rms", feature="all",
                         value=float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))))
        grand = x.reshape(-1, *x.shape[-2:]).mean(axis=0)
        peaks = erp_peaks(grand, times, windows, picks=picks)
        for p in peaks.itertuples():
            rows.append(dict(source=source, statistic="peak_latency", feature=p.component,
                             value=p.latency))
            rows.append(dict(source=source, statistic="peak_amplitude", feature=p.component,
                             value=p.amplitude))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- (e) plots


def _figure(ncols: int = 1, width: float = 5.0, height: float = 3.6):
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained")
    return fig, np.atleast_1d(axes)


def plot_identification_ranks(result: IdentificationResult, *, max_k: int | None = None) -> Figure:
    """Histogram of the correct image's rank, and top-k accuracy against chance.

    Parameters
    ----------
    result : IdentificationResult
        From :func:`identification`.
    max_k : int, optional
        Largest k on the top-k curve (default all images).
    """
    n = result.n_images
    fig, (ax_hist, ax_topk) = _figure(2)
    ax_hist.hist(result.ranks, bins=np.linspace(0.5, n + 0.5, min(n, 40) + 1), color="C0")
    ax_hist.axhline(n / min(n, 40), color="k", ls="--", lw=1, label="chance (uniform ranks)")
    ax_hist.set(xlabel="rank of the correct image (1 = best)", ylabel="images",
                title=f"top-1 {100 * result.top1:.1f} % (chance {100 * result.chance_top1:.1f} %), "
                      f"top-5 {100 * result.top5:.1f} %")
    ax_hist.legend(loc="upper right", fontsize="small")
    k = np.arange(1, (max_k or n) + 1)
    ax_topk.plot(k, 100 * np.array([result.top_k(i) for i in k]), color="C0", label="generated")
    ax_topk.plot(k, 100 * k / n, color="k", ls="--", lw=1, label="chance")
    ax_topk.set(xlabel="k", ylabel="top-k accuracy (%)", ylim=(0, 101),
                title=f"{n}-way identification")
    ax_topk.legend(loc="lower right", fontsize="small")
    return fig


def plot_transfer_curves(results: pd.DataFrame) -> Figure:
    """Decoding accuracy per direction from :func:`transfer_decoding`: curves over time for
    time-resolved results, bars for whole-window results; chance dashed."""
    needed = {"direction", "time", "accuracy", "chance"}
    if not needed <= set(results.columns):
        raise _error("results", f"columns {sorted(needed)}", f"{sorted(results.columns)}")
    fig, (ax,) = _figure(1, 7.0, 3.8)
    curves = results[results["time"].notna()]
    windows = results[results["time"].isna()]
    scoring = results["scoring"].iloc[0] if "scoring" in results else "accuracy"
    if len(curves):
        sns.lineplot(curves, x="time", y="accuracy", hue="direction", ax=ax)
        ax.axvline(0, color="0.5", lw=0.8)
        for chance in curves["chance"].unique():
            ax.axhline(chance, color="k", ls="--", lw=1)
        ax.set(xlabel="time (s)", ylabel=scoring.replace("_", " "))
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    else:
        sns.barplot(windows, y="direction", x="accuracy", hue="direction", ax=ax)
        for i, chance in enumerate(windows.groupby("direction", sort=False)["chance"].first()):
            ax.plot([chance] * 2, [i - 0.4, i + 0.4], color="k", ls="--", lw=1)
        ax.set(ylabel="", xlabel=f"{scoring.replace('_', ' ')} (whole window)")
    ax.set(title="decoding across real and generated (dashed: chance)")
    return fig


def plot_spectra(freqs, psds: Mapping[str, np.ndarray], *, log: bool = True) -> Figure:
    """Power spectra of several sources (e.g. ``{'real': …, 'generated': …}``) on one axis.

    Parameters
    ----------
    freqs : ndarray, shape (n_freqs,)
        In Hz, from :func:`power_spectra`.
    psds : mapping of str → ndarray, shape (n_freqs,)
    log : bool
        Logarithmic power axis.
    """
    freqs = np.asarray(freqs)
    fig, (ax,) = _figure(1)
    for label, psd in psds.items():
        if np.shape(psd) != freqs.shape:
            raise _error(f"psds['{label}']", f"shape {freqs.shape} (as freqs)",
                         f"shape {np.shape(psd)}")
        ax.plot(freqs, psd, label=label)
    ax.set(xlabel="frequency (Hz)", ylabel="PSD (units²/Hz)", yscale="log" if log else "linear",
           title="power spectra")
    ax.legend()
    return fig


def plot_erp_comparison(times, grand_averages: Mapping[str, np.ndarray], *,
                        windows: Mapping = DEFAULT_ERP_WINDOWS, picks=None) -> Figure:
    """Grand-average waveforms of several sources, component windows shaded, peaks marked.

    Parameters
    ----------
    times : ndarray, shape (n_times,)
        In seconds.
    grand_averages : mapping of str → ndarray, shape (n_times,) or (n_channels, n_times)
        E.g. ``{'real': real_avg.mean(0), 'generated': generated.mean(0)}``.
    windows, picks
        As in :func:`erp_peaks`.
    """
    fig, (ax,) = _figure(1, 6.5, 3.8)
    times = np.asarray(times, float)
    for name, tmin, tmax, _ in _windows(windows, times):
        ax.axvspan(tmin, tmax, color="0.9", zorder=0)
        ax.text((tmin + tmax) / 2, 0.98, name, transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize="small")
    for i, (label, ga) in enumerate(grand_averages.items()):
        wave, _ = _waveform(ga, times, picks, f"grand_averages['{label}']")
        ax.plot(times, wave, color=f"C{i}", label=label)
        peaks = erp_peaks(wave, times, windows)
        ax.plot(peaks["latency"], peaks["amplitude"], "o", color=f"C{i}", ms=5)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set(xlabel="time (s)", ylabel="amplitude", title="grand-average ERP (dots: peaks)")
    ax.legend(loc="lower right", fontsize="small")
    return fig

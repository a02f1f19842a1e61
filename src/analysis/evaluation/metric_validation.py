"""Can each check fail? Every metric of the book scored on reference generators.

A metric is evidence only if it ranks signals of known quality the way it claims
(:mod:`analysis.names`): the real data's own held-out repetitions (``real_half``) and the
simulator's perfect generator (``oracle``) above the linear-Gaussian model
(``ridge_noise``) above generators that know nothing of the image (``mean_noise``,
``shuffled``). :func:`score_checks` computes every check of :data:`CHECKS` for any named
signals against the same real target repetitions; :func:`verdicts` says which checks order
the references correctly.

Arrays: signals ``(n_images, n, n_channels, n_times)`` (``n`` samples per image, equal for
every generator so that averages compare like with like); target ``(n_images, n_reps,
n_channels, n_times)``: real test repetitions none of the signals were drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from . import decoding, topography
from .metrics import mean_encoding_score, paper_mse, paper_pearson
from .stats import mean_ignoring_nan, pearson_r


@dataclass(frozen=True)
class Context:
    """What checks need besides the signals.

    Attributes
    ----------
    times : ndarray, shape (n_times,)
        Seconds.
    sfreq : float
        Hz.
    feature_mask : ndarray of bool, shape (n_channels, n_times), optional
        Identification features, chosen on training data (None: all).
    seed : int
    """

    times: np.ndarray
    sfreq: float
    feature_mask: np.ndarray | None = None
    seed: int = 0


@dataclass(frozen=True)
class Check:
    """One metric: how to compute it and which direction it calls better.

    ``better`` is ``'higher'``, ``'lower'`` or ``'chance'`` (real-vs-generated AUCs: lower
    is better down to 0.5, and anything below 0.5 counts as 0.5). ``compute(signals, target, context) -> float``.
    """

    name: str
    label: str
    better: str
    compute: Callable[[np.ndarray, np.ndarray, Context], float] = field(repr=False)
    what: str = ""

    @property
    def arrow(self) -> str:
        """The direction for a reader: ``'↑'``, ``'↓'`` or ``'→ 0.5'``."""
        return {"higher": "↑", "lower": "↓", "chance": "→ 0.5"}[self.better]

    def goodness(self, value: float) -> float:
        """``value`` mapped so that larger is always better."""
        if self.better == "higher":
            return value
        if self.better == "lower":
            return -value
        # A classifier below chance is noise (it cannot tell the classes apart either), so
        # every AUC up to 0.5 counts as chance.
        return -max(value, 0.5)


def _mean(signals: np.ndarray) -> np.ndarray:
    return signals.mean(axis=1)


def _encoding(signals, target, context) -> float:
    return mean_encoding_score(_mean(signals), target.mean(axis=1))


def _paper_r(signals, target, context) -> float:
    return float(mean_ignoring_nan(paper_pearson(_mean(signals), target.mean(axis=1))))


def _paper_mse(signals, target, context) -> float:
    return float(np.mean(paper_mse(_mean(signals), target.mean(axis=1))))


def _top1(signals, target, context) -> float:
    return decoding.identification(_mean(signals), target.mean(axis=1),
                                   feature_mask=context.feature_mask).top1


def _window_maps(signals, target, context):
    windows = topography.default_windows()
    return (topography.window_maps(target.mean(axis=1), context.times, windows),
            topography.window_maps(_mean(signals), context.times, windows))


def _map_r(signals, target, context) -> float:
    real, gen = _window_maps(signals, target, context)  # (n_windows, n_images, n_channels)
    # One response for every image has no image-specific map: zeros, so r is NaN.
    r = pearson_r(topography.image_specific_maps(real, axis=1),
                  topography.image_specific_maps(gen, axis=1), axis=-1)
    return float(mean_ignoring_nan(r))


def _rsa(signals, target, context) -> float:
    real, gen = _window_maps(signals, target, context)
    upper = np.triu_indices(real.shape[1], k=1)
    rhos = []
    for r, g in zip(real, gen):
        g_rdm = topography.rdm(g)[upper]
        if not np.isfinite(g_rdm).all() or np.ptp(g_rdm) <= 0:
            return np.nan
        rhos.append(scipy_stats.spearmanr(topography.rdm(r)[upper], g_rdm).statistic)
    return float(np.mean(rhos))


def _auc_unmatched(signals, target, context) -> float:
    # The book's former check: target averages vs the mean of n signals, raw signal.
    return decoding.real_vs_generated_auc(target.mean(axis=1), _mean(signals),
                                          seed=context.seed, n_permutations=0).auc


def _auc_residual(signals, target, context) -> float:
    return decoding.residual_auc(target, signals, seed=context.seed).auc


def _log_psd(x: np.ndarray) -> np.ndarray:
    """log10 of the mean Hann-windowed periodogram over every signal, shape (n_freqs,).
    A single periodogram per signal, not Welch: epochs are short, and this is ~50× faster
    than :func:`~analysis.evaluation.decoding.power_spectra` on 50 000 signals."""
    x = x.reshape(-1, x.shape[-1])
    power = np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2
    return np.log10(power.mean(axis=0)[1:])  # without the DC bin


def _spectrum_error(signals, target, context) -> float:
    # Single samples against single trials: equal counts of one-repetition signals.
    n = min(signals.shape[1], target.shape[1])
    return float(np.mean(np.abs(_log_psd(signals[:, :n]) - _log_psd(target[:, :n]))))


def _erp_latency_error(signals, target, context) -> float:
    n = min(signals.shape[1], target.shape[1])
    peaks = [decoding.erp_peaks(x[:, :n].reshape(-1, *x.shape[2:]).mean(axis=0), context.times)
             for x in (target, signals)]
    return float(np.mean(np.abs(peaks[0]["latency"].to_numpy() - peaks[1]["latency"].to_numpy())))


#: Every check the book reports, in page order.
CHECKS: tuple[Check, ...] = (
    Check("encoding_score", "encoding score (r)", "higher", _encoding,
          "r across images of the mean of n signals with the target average, per channel × "
          "time, averaged"),
    Check("paper_r", "paper r", "higher", _paper_r,
          "r over channel × time of each image's mean signal with its target average"),
    Check("paper_mse", "paper MSE", "lower", _paper_mse,
          "mean squared error of each image's mean signal against its target average"),
    Check("top1", "top-1 identification", "higher", _top1,
          "fraction of images whose mean signal correlates best with their own target average"),
    Check("map_r", "image-specific map r", "higher", _map_r,
          "r across channels of window maps with the mean over images removed"),
    Check("rsa", "RSA (Spearman ρ)", "higher", _rsa,
          "similarity of the image × image dissimilarity matrices of window maps"),
    Check("auc_unmatched", "AUC, unmatched", "chance", _auc_unmatched,
          "classifier: target averages vs mean of n signals, raw (the book's former check)"),
    Check("auc_residual", "AUC, like with like", "chance", _auc_residual,
          "classifier: k-averages of real vs generated, each minus k other real repetitions "
          "of the same image"),
    Check("spectrum_error", "spectrum error (log10)", "lower", _spectrum_error,
          "mean |log10 PSD| difference, single signals vs single trials"),
    Check("erp_latency_error", "ERP peak latency error (s)", "lower", _erp_latency_error,
          "mean |latency| difference of P1 / N1 / P3 of the grand averages, equal counts"),
)
CHECKS_BY_NAME = {c.name: c for c in CHECKS}


def score_checks(signals: Mapping[str, np.ndarray], target: np.ndarray, context: Context,
                 checks: Sequence[Check] = CHECKS) -> pd.DataFrame:
    """Every check for every named set of signals, against the same target repetitions.

    Parameters
    ----------
    signals : mapping of str to ndarray, shape (n_images, n, n_channels, n_times)
        Equal ``n`` for every entry (averages of different counts do not compare).
    target : ndarray, shape (n_images, n_reps, n_channels, n_times)

    Returns
    -------
    pandas.DataFrame
        Columns ``generator``, ``check``, ``value``, ``better``.

    Raises
    ------
    ValueError
        Shapes that differ from the target's images / channels / times, or unequal ``n``.
    """
    if target.ndim != 4 or target.shape[1] < 2:
        raise ValueError("target: expected shape (n_images, n_reps >= 2, n_channels, n_times), "
                         f"found {target.shape}")
    counts = {}
    for name, x in signals.items():
        if x.ndim != 4 or x.shape[0] != target.shape[0] or x.shape[2:] != target.shape[2:]:
            raise ValueError(f"signals['{name}']: expected shape ({target.shape[0]}, n, "
                             f"{target.shape[2]}, {target.shape[3]}), found {x.shape}")
        counts[name] = x.shape[1]
    if len(set(counts.values())) > 1:
        raise ValueError(f"signals: expected the same number of signals per image for every "
                         f"generator, found {counts}")
    rows = [dict(generator=name, check=c.name, value=float(c.compute(x, target, context)),
                 better=c.better) for name, x in signals.items() for c in checks]
    return pd.DataFrame(rows)


def _beats(a: float, b: float) -> bool:
    """``a > b`` beyond rounding (a permutation can change a float sum in its last bits)."""
    return a - b > 1e-9 * max(abs(a), abs(b), 1e-12)


def verdicts(scores: pd.DataFrame, tiers: Mapping[str, int],
             checks: Sequence[Check] = CHECKS) -> pd.DataFrame:
    """Does each check order the references as it claims?

    A check passes when, in its own direction, its worst tier-0 reference beats tier 1 and
    tier 1 beats the best of tier 2 (strictly, beyond rounding, on the point estimates). References missing
    from ``scores`` (``oracle`` on real data) are skipped; a tier with no finite score
    fails the check (it cannot be ranked).

    Parameters
    ----------
    scores : pandas.DataFrame
        From :func:`score_checks` (one subject) — columns ``generator``, ``check``, ``value``.
    tiers : mapping of str to int
        Reference → tier (:data:`analysis.names.TIERS`).

    Returns
    -------
    pandas.DataFrame
        One row per check: ``check``, ``better``, ``tier0`` (worst of tier 0), ``tier1``,
        ``tier2`` (best of tier 2, in the check's direction; raw values), ``valid`` (bool)
        and ``reason`` (why it fails, empty when it passes).
    """
    rows = []
    for check in checks:
        part = scores[scores["check"] == check.name].set_index("generator")["value"]
        by_tier = {}
        for tier in (0, 1, 2):
            values = [part[g] for g in tiers if tiers[g] == tier and g in part.index
                      and np.isfinite(part[g])]
            pick = min if tier == 0 else max
            by_tier[tier] = pick(values, key=check.goodness) if values else np.nan
        reason = ""
        if not all(np.isfinite(v) for v in by_tier.values()):
            missing = [f"tier {t}" for t, v in by_tier.items() if not np.isfinite(v)]
            reason = f"no finite score for {', '.join(missing)}"
        elif not _beats(check.goodness(by_tier[0]), check.goodness(by_tier[1])):
            reason = "ridge_noise scores as well as real data"
        elif not _beats(check.goodness(by_tier[1]), check.goodness(by_tier[2])):
            reason = "an image-blind reference scores as well as ridge_noise"
        rows.append(dict(check=check.name, better=check.better, tier0=by_tier[0],
                         tier1=by_tier[1], tier2=by_tier[2], valid=not reason, reason=reason))
    return pd.DataFrame(rows)

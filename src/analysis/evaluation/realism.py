"""Single-trial realism: is a generator's *distribution* of trials that of the recording?

A mean predictor can score well on every fidelity metric and still produce signals no
recording would contain (too smooth, too Gaussian, the same trial variability for every
image, copies of training trials). Each test here compares ``generated`` signals of the
test images with ``real`` repetitions of the same images and returns a p-value for the
null hypothesis *"the generator draws trials like the recording"*; the perfect generator
(the simulator's own trial process) is rejected at the nominal rate.

Inputs are plain arrays: ``(n_images, n, n_channels, n_times)`` for generated signals and
``(n_images, m, n_channels, n_times)`` for real repetitions (``m >= 2``). Tests that
compare a *level* (SNR, reliability, spread, attribute effects) use the first
``min(n, m)`` repetitions of each, so both sides average the same number of trials.

The tests, by what they can see (``TESTS``):

- **conditional** — ``energy``: a per-image energy-distance permutation test between the
  image's real repetitions and its generated samples; the rejection rate over images is
  ≈ α for a real-like generator (``rejection_rate``);
- **residual statistics** (trial minus its image's mean, pooled over images; p-values by
  permuting trials between the two sets within each image): ``covariance`` (Riemannian
  distance of spatial covariances, :mod:`pyriemann`), ``autocorrelation``, ``spectrum``
  (log power; the 1/f slope and alpha peak are reported beside it), ``kurtosis``;
- **variability calibration** (paired bootstrap over images): ``snr`` (single-trial
  image-specific SNR), ``reliability`` (split-half reliability of averages),
  ``spread`` (per-image trial spread, a collapse detector), ``variability_range`` (how
  much trial variability differs between images: image-dependent latency jitter and gain
  make it larger than sampling alone);
- **single trials** — ``classifier``: tangent-space covariance + logistic regression,
  cross-validated with images as groups (AUC 0.5 for a real-like generator);
- **memorisation** — ``memorisation``: how often a generated signal is at most half as far
  from its nearest training trial as from its second nearest, against how often a real test
  trial is (≈ 0; copies of training trials give 1);
- **attribute effects** (simulated data: :func:`attribute_effects`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _stats

from .stats import bootstrap_ci, wilson_interval

ALPHA = 0.05


@dataclass(frozen=True)
class RealismTest:
    """One row of the battery: what it is called, what it sees, how to read it.

    ``tested=False`` marks a descriptive row (a number shown beside the tests, no p-value).
    """

    name: str
    label: str
    sees: str  # "conditional", "residual", "variability", "single trial", "memorisation", "attributes"
    what: str
    tested: bool = True


TESTS = {t.name: t for t in (
    RealismTest("energy", "energy test per image: reject rate", "conditional",
                "fraction of images whose real and generated trials an energy-distance "
                "permutation test tells apart at α = .05 (≈ .05 if real-like)"),
    RealismTest("covariance", "residual covariance: Riemann distance", "residual",
                "distance between the channel covariances of trial-minus-image-mean residuals"),
    RealismTest("autocorrelation", "residual autocorrelation error", "residual",
                "mean absolute difference of the residuals' autocorrelation functions"),
    RealismTest("spectrum", "residual log-spectrum error", "residual",
                "mean absolute difference of the residuals' log10 power spectra"),
    RealismTest("kurtosis", "residual excess kurtosis", "residual",
                "tailedness of standardised residuals; latency jitter, trial gain and alpha "
                "bursts make real trials heavier-tailed than Gaussian noise"),
    RealismTest("snr", "single-trial SNR", "variability",
                "image-specific signal variance over residual variance, per trial"),
    RealismTest("reliability", "split-half reliability", "variability",
                "correlation of two independent half-averages' image-specific parts"),
    RealismTest("spread", "per-image spread: log SD ratio", "variability",
                "mean log ratio of each image's residual SD, generated over real (0 if real-like, "
                "very negative for a collapsed generator)"),
    RealismTest("variability_range", "image dependence of variability", "variability",
                "SD over images of each image's log residual power: image-dependent jitter and "
                "gain make it larger than sampling noise alone"),
    RealismTest("classifier", "single-trial classifier: AUC", "single trial",
                "tangent-space covariances + logistic regression, images as CV groups"),
    RealismTest("memorisation", "memorisation: near-copy rate", "memorisation",
                "share of generated signals at most half as far from their nearest training "
                "trial as from the second nearest (≈ 0 if real-like; copies give 1)"),
    RealismTest("variability_pattern", "variability pattern vs real (r)",
                "variability", "correlation over images of generated and real log trial "
                "variance", tested=False),
    RealismTest("spectral_slope", "residual 1/f slope", "residual",
                "slope of log power against log frequency, 2–40 Hz without alpha", tested=False),
    RealismTest("alpha_peak_hz", "residual alpha peak (Hz)", "residual",
                "frequency of the largest excess over the 1/f fit, 7–14 Hz", tested=False),
)}


def _check(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] < 2:
        raise ValueError(f"{name}: expected shape (n_images, n >= 2, n_channels, n_times), "
                         f"found {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return x


def _check_pair(real, generated) -> tuple[np.ndarray, np.ndarray]:
    real, generated = _check(real, "real"), _check(generated, "generated")
    if real.shape[0] != generated.shape[0] or real.shape[2:] != generated.shape[2:]:
        raise ValueError(f"real {real.shape} and generated {generated.shape}: expected the same "
                         "images, channels and times")
    return real.astype(np.float64), generated.astype(np.float64)


def _bootstrap_p(observed: float, resampled: np.ndarray, null: float = 0.0,
                 alternative: str = "two-sided") -> float:
    """p-value of ``observed`` against ``null`` from the bootstrap standard error (normal
    approximation). Unlike counting resamples beyond the null it has no floor at
    ``1 / n_boot``, so it survives a Holm correction over a dozen tests."""
    se = float(np.nanstd(resampled, ddof=1))
    if not np.isfinite(se) or se == 0:
        return 1.0 if observed == null else 0.0
    z = (observed - null) / se
    if alternative == "greater":
        return float(_stats.norm.sf(z))
    return float(2 * _stats.norm.sf(abs(z)))


def equal_counts(real, generated) -> tuple[np.ndarray, np.ndarray]:
    """The first ``min(n, m)`` repetitions of each (like with like for level comparisons)."""
    n = min(real.shape[1], generated.shape[1])
    return real[:, :n], generated[:, :n]


def image_residuals(signals: np.ndarray) -> np.ndarray:
    """Each trial minus its image's mean, scaled by ``√(n / (n − 1))`` so that the residual
    variance estimates the trial variance whatever the number of trials ``n``.

    Parameters
    ----------
    signals : ndarray, shape (n_images, n, n_channels, n_times)
    """
    n = signals.shape[1]
    return (signals - signals.mean(axis=1, keepdims=True)) * np.sqrt(n / (n - 1))


# ------------------------------------------------------------------ conditional: energy tests


def _bin_times(signals: np.ndarray, n_bins: int) -> np.ndarray:
    """Mean over ``n_bins`` consecutive time windows: (..., n_channels, n_bins), flattened."""
    n_t = signals.shape[-1]
    edges = np.linspace(0, n_t, n_bins + 1).round().astype(int)
    binned = np.stack([signals[..., a:b].mean(axis=-1) for a, b in zip(edges[:-1], edges[1:])],
                      axis=-1)
    return binned.reshape(*signals.shape[:-2], -1)


def energy_distance_pvalues(real, generated, *, n_bins: int = 10, n_permutations: int = 199,
                            seed: int = 0) -> np.ndarray:
    """Per-image permutation p-values of the energy distance between real and generated trials.

    For image *i*, with real trials ``X`` (m) and generated ``Y`` (n) as vectors of channel ×
    time-window means (``n_bins`` windows: the conditional response lives at low
    frequencies, and fewer dimensions give the test power), the statistic is
    ``E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖`` (Székely & Rizzo), and its null distribution
    comes from relabelling the pooled trials.

    Returns
    -------
    ndarray, shape (n_images,): ``(1 + #{E_perm ≥ E}) / (1 + n_permutations)``.
    """
    real, generated = _check_pair(real, generated)
    x_all, y_all = _bin_times(real, n_bins), _bin_times(generated, n_bins)
    m, n = real.shape[1], generated.shape[1]
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_permutations + 1, m + n))
    labels[:, :m] = 1.0
    for k in range(1, n_permutations + 1):
        labels[k] = labels[k, rng.permutation(m + n)]
    a, b = labels, 1.0 - labels
    p = np.empty(len(real))
    for i in range(len(real)):
        z = np.concatenate([x_all[i], y_all[i]])
        sq = (z ** 2).sum(axis=1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * z @ z.T, 0.0))
        xy = np.einsum("pi,ij,pj->p", a, d, b) / (m * n)
        xx = np.einsum("pi,ij,pj->p", a, d, a) / (m * m)
        yy = np.einsum("pi,ij,pj->p", b, d, b) / (n * n)
        energy = 2 * xy - xx - yy
        p[i] = (1 + (energy[1:] >= energy[0] - 1e-12 * abs(energy[0])).sum()) / (n_permutations + 1)
    return p


def rejection_rate(p_values, alpha: float = ALPHA) -> dict:
    """Fraction of tests with ``p ≤ alpha``, its Wilson CI, and a one-sided binomial p-value
    for "more rejections than ``alpha`` predicts" (the generator is not real-like).

    Permutation p-values ``(1 + k) / (P + 1)`` are discrete: a real-like generator is
    rejected at ``floor(alpha · (P + 1)) / (P + 1)``, which equals ``alpha`` when
    ``alpha · (P + 1)`` is a whole number (the default 199 permutations at α = .05).
    """
    p_values = np.asarray(p_values, float)
    k, n = int((p_values <= alpha).sum()), len(p_values)
    low, high = wilson_interval(k, n)
    return {"value": k / n, "ci_low": low, "ci_high": high,
            "p": float(_stats.binomtest(k, n, alpha, alternative="greater").pvalue)}


# ------------------------------------------------------------------ residual statistics


def _trial_features(residuals: np.ndarray, sfreq: float, max_lag: int,
                    scale: np.ndarray) -> dict[str, np.ndarray]:
    """Per-trial sufficient statistics of residuals (n_trials, n_channels, n_times).

    A set's covariance, autocorrelation, spectrum and kurtosis are functions of the *means*
    of these over its trials, so a permutation test only re-averages them.
    """
    n_trials, n_ch, n_t = residuals.shape
    scatter = np.einsum("nct,ndt->ncd", residuals, residuals) / n_t
    autocov = np.stack([(residuals[..., :n_t - lag] * residuals[..., lag:]).mean(axis=-1)
                        for lag in range(max_lag + 1)], axis=-1)
    power = np.abs(np.fft.rfft(residuals * np.hanning(n_t), axis=-1)) ** 2 / sfreq
    z = residuals / scale
    moments = np.stack([(z ** 2).mean(axis=(1, 2)), (z ** 4).mean(axis=(1, 2))], axis=-1)
    return {"scatter": scatter.reshape(n_trials, -1), "autocov": autocov.reshape(n_trials, -1),
            "power": power.reshape(n_trials, -1), "moments": moments}


def _covariance_distance(a: np.ndarray, b: np.ndarray, n_ch: int) -> float:
    from pyriemann.geometry.distance import distance_riemann

    ca, cb = a.reshape(n_ch, n_ch), b.reshape(n_ch, n_ch)
    ridge = 1e-9 * np.trace(ca + cb) / (2 * n_ch) * np.eye(n_ch)  # SPD even for rank-deficient sums
    return float(distance_riemann(ca + ridge, cb + ridge))


def _autocorrelation(autocov: np.ndarray, n_ch: int) -> np.ndarray:
    acov = autocov.reshape(n_ch, -1)
    return acov[:, 1:] / acov[:, :1]


def _log_spectrum(power: np.ndarray, n_ch: int, keep: np.ndarray) -> np.ndarray:
    return np.log10(power.reshape(n_ch, -1)[:, keep] + 1e-30)


def _kurtosis(moments: np.ndarray) -> float:
    return float(moments[1] / moments[0] ** 2 - 3.0)


def spectral_shape(freqs: np.ndarray, power: np.ndarray, *, fit: tuple[float, float] = (2.0, 40.0),
                   alpha_band: tuple[float, float] = (7.0, 14.0)) -> dict:
    """1/f slope and alpha peak of a power spectrum (averaged over channels first).

    The slope is that of a straight line fitted to log10 power against log10 frequency in
    ``fit``, leaving the alpha band out; the alpha peak is the frequency where power rises
    most above that line inside ``alpha_band``.

    Parameters
    ----------
    freqs : ndarray, shape (n_freqs,), Hz
    power : ndarray, shape (n_channels, n_freqs) or (n_freqs,)
    """
    power = np.atleast_2d(power).mean(axis=0)
    band = (freqs >= fit[0]) & (freqs <= fit[1])
    alpha = (freqs >= alpha_band[0]) & (freqs <= alpha_band[1])
    use = band & ~alpha
    slope, intercept = np.polyfit(np.log10(freqs[use]), np.log10(power[use]), 1)
    excess = np.log10(power[alpha]) - (intercept + slope * np.log10(freqs[alpha]))
    return {"slope": float(slope), "alpha_peak_hz": float(freqs[alpha][np.argmax(excess)]),
            "alpha_excess": float(excess.max())}


def residual_tests(real, generated, sfreq: float, *, max_lag: int = 10,
                   freq_range: tuple[float, float] = (1.0, 45.0), n_permutations: int = 499,
                   seed: int = 0) -> dict[str, dict]:
    """Residual statistics of real vs generated trials, with permutation p-values.

    Residuals are each set's trials minus its own image mean (:func:`image_residuals`).
    Under the null (the generator draws trials like the recording) the residual trials of
    an image are exchangeable between the two sets, so the null distribution of each
    distance comes from reassigning them within images (keeping both counts).

    Returns
    -------
    dict ``test → {value, reference, p}`` for ``covariance``, ``autocorrelation``,
    ``spectrum`` (distances; ``reference`` is the permutation mean, what a real-like
    generator scores with these counts) and ``kurtosis`` (``value`` the generated, ``reference``
    the real excess kurtosis; the p-value is two-sided); plus ``spectral_shape``:
    :func:`spectral_shape` of each set.
    """
    real, generated = _check_pair(real, generated)
    n_img, m, n_ch, n_t = real.shape
    n = generated.shape[1]
    r_real = image_residuals(real).reshape(-1, n_ch, n_t)
    r_gen = image_residuals(generated).reshape(-1, n_ch, n_t)
    pooled = np.concatenate([r_real, r_gen])
    scale = pooled.std(axis=0, keepdims=True)[0] + 1e-30  # per (channel, time): kurtosis of z
    features = _trial_features(pooled, sfreq, max_lag, scale)
    freqs = np.fft.rfftfreq(n_t, 1 / sfreq)
    keep = (freqs >= freq_range[0]) & (freqs <= freq_range[1])
    # Trial j of image i sits at row i*m + j (real) or n_img*m + i*n + j (generated).
    image_rows = [np.r_[i * m:(i + 1) * m, n_img * m + i * n:n_img * m + (i + 1) * n]
                  for i in range(n_img)]
    rng = np.random.default_rng(seed)
    # Row k of `labels` marks the trials set k calls real: k = 0 the observed split, then
    # permutations that reassign each image's pooled residual trials (keeping both counts).
    labels = np.zeros((n_permutations + 1, len(pooled)), bool)
    for k in range(n_permutations + 1):
        for rows in image_rows:
            labels[k, rows[:m] if k == 0 else rng.permutation(rows)[:m]] = True
    weights = labels.astype(np.float64)
    stacked = np.concatenate(list(features.values()), axis=1)
    totals = stacked.sum(axis=0)
    sums_a = weights @ stacked  # every split's real-set sums at once
    means_a, means_b = sums_a / (n_img * m), (totals - sums_a) / (n_img * n)
    bounds = np.cumsum([0] + [v.shape[1] for v in features.values()])
    part = {k: slice(bounds[i], bounds[i + 1]) for i, k in enumerate(features)}

    def statistics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        return {
            "covariance": _covariance_distance(a[part["scatter"]], b[part["scatter"]], n_ch),
            "autocorrelation": float(np.abs(_autocorrelation(a[part["autocov"]], n_ch)
                                            - _autocorrelation(b[part["autocov"]], n_ch)).mean()),
            "spectrum": float(np.abs(_log_spectrum(a[part["power"]], n_ch, keep)
                                     - _log_spectrum(b[part["power"]], n_ch, keep)).mean()),
            "kurtosis": _kurtosis(b[part["moments"]]) - _kurtosis(a[part["moments"]]),
        }

    observed = statistics(means_a[0], means_b[0])
    null = pd.DataFrame([statistics(means_a[k], means_b[k]) for k in range(1, n_permutations + 1)])
    out = {}
    for name in ("covariance", "autocorrelation", "spectrum"):
        out[name] = {"value": observed[name], "reference": float(null[name].mean()),
                     "p": float((1 + (null[name] >= observed[name]).sum()) / (n_permutations + 1))}
    kurt_real = _kurtosis(means_a[0][part["moments"]])
    kurt_gen = _kurtosis(means_b[0][part["moments"]])
    extreme = (np.abs(null["kurtosis"]) >= abs(observed["kurtosis"])).sum()
    out["kurtosis"] = {"value": kurt_gen, "reference": kurt_real,
                       "p": float((1 + extreme) / (n_permutations + 1))}
    power = features["power"].reshape(len(pooled), n_ch, -1)
    out["spectral_shape"] = {"real": spectral_shape(freqs[1:], power[:n_img * m].mean(axis=0)[:, 1:]),
                             "generated": spectral_shape(freqs[1:],
                                                         power[n_img * m:].mean(axis=0)[:, 1:])}
    return out


# ------------------------------------------------------------------ variability calibration


# The bootstrap resamples images thousands of times; these statistics are computed from
# image × image Gram matrices, so that one resample costs O(n_images²), not a pass over the
# signals. With counts c (how often each image is drawn, N = Σc) and rows u_i, v_i:
# Σ_i c_i ⟨u_i − ū, v_i − v̄⟩ = Σ_i c_i ⟨u_i, v_i⟩ − cᵀ U Vᵀ c / N.


def _centred_product(gram: np.ndarray, counts: np.ndarray) -> float:
    n = counts.sum()
    return float(counts @ np.diag(gram) - counts @ gram @ counts / n)


def _counts(idx: np.ndarray, n_images: int) -> np.ndarray:
    return np.bincount(idx, minlength=n_images).astype(np.float64)


def _snr_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Gram matrix of the image means, per-image mean residual power, n, n_features."""
    means = x.mean(axis=1).reshape(len(x), -1)
    return (means @ means.T, (image_residuals(x) ** 2).mean(axis=(1, 2, 3)), x.shape[1],
            means.shape[1])


def _snr_from(parts, idx: np.ndarray) -> float:
    gram, power, n, n_features = parts
    counts = _counts(idx, len(power))
    noise = float(counts @ power / counts.sum())
    specific = _centred_product(gram, counts) / (counts.sum() - 1) / n_features - noise / n
    return specific / noise


def single_trial_snr(signals) -> float:
    """Image-specific signal variance per trial over the residual (trial) variance.

    ``S = mean over features of Var_images(image mean) − σ² / n`` (the sampling part of the
    image means removed, so the estimate does not depend on ``n``); ``σ²`` is the mean
    residual variance. Parameters: ``signals`` (n_images, n >= 2, n_channels, n_times).
    """
    x = _check(signals, "signals").astype(np.float64)
    return _snr_from(_snr_parts(x), np.arange(len(x)))


def _half_parts(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gram matrices (aaᵀ, bbᵀ, abᵀ) of two disjoint half-averages per image."""
    order = np.random.default_rng(seed).permutation(x.shape[1])
    half = x.shape[1] // 2
    a = x[:, order[:half]].mean(axis=1).reshape(len(x), -1)
    b = x[:, order[half:2 * half]].mean(axis=1).reshape(len(x), -1)
    return a @ a.T, b @ b.T, a @ b.T


def _reliability_from(parts, idx: np.ndarray) -> float:
    aa, bb, ab = parts
    counts = _counts(idx, len(aa))
    return _centred_product(ab, counts) / np.sqrt(_centred_product(aa, counts)
                                                  * _centred_product(bb, counts))


def split_half_reliability(signals, seed: int = 0) -> float:
    """Correlation of the image-specific parts (minus the mean over images) of two disjoint
    half-averages of each image's trials (``n // 2`` each, the same random split per image)."""
    x = _check(signals, "signals").astype(np.float64)
    return _reliability_from(_half_parts(x, seed), np.arange(len(x)))


def log_residual_power(signals: np.ndarray) -> np.ndarray:
    """Per image, the natural log of the mean residual power (:func:`image_residuals`
    squared, averaged over trials, channels and times), shape (n_images,)."""
    return np.log((image_residuals(signals) ** 2).mean(axis=(1, 2, 3)))


def _paired(stat, real_parts, generated_parts, n_images: int, n_boot: int, seed: int) -> dict:
    """``stat(parts, idx)`` of each set, the bootstrap CI (over images) of the generated
    value and a two-sided p-value of the difference (both resampled jointly)."""
    every = np.arange(n_images)
    value, reference = stat(generated_parts, every), stat(real_parts, every)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, 2))
    for k in range(n_boot):
        idx = rng.integers(0, n_images, n_images)
        boot[k] = stat(generated_parts, idx), stat(real_parts, idx)
    low, high = np.percentile(boot[:, 0], [2.5, 97.5])
    return {"value": float(value), "reference": float(reference), "ci_low": float(low),
            "ci_high": float(high), "p": _bootstrap_p(value - reference, boot[:, 0] - boot[:, 1])}


def variability_tests(real, generated, *, n_boot: int = 500, seed: int = 0) -> dict[str, dict]:
    """SNR, split-half reliability, per-image spread and the image dependence of trial
    variability, generated vs real at equal trial counts (:func:`equal_counts`).

    ``snr`` and ``reliability`` compare levels (the generator's own vs the recording's);
    ``spread`` is the mean over images of ``log(SD_generated / SD_real)`` (t-test against
    0); ``variability_range`` the SD over images of the log residual power, which sampling
    alone keeps small and image-dependent jitter and gain make larger. Also returns
    ``variability_pattern``: the correlation over images of the two sets' log residual
    power (descriptive: > 0 when the generator's trials vary most where the recording's do).
    """
    real, generated = _check_pair(real, generated)
    real, generated = equal_counts(real, generated)
    n_img = len(real)
    out = {
        "snr": _paired(_snr_from, _snr_parts(real), _snr_parts(generated), n_img, n_boot, seed),
        "reliability": _paired(_reliability_from, _half_parts(real, seed),
                               _half_parts(generated, seed), n_img, n_boot, seed),
    }
    log_real, log_gen = log_residual_power(real), log_residual_power(generated)
    ratio = 0.5 * (log_gen - log_real)  # log SD ratio per image
    t = _stats.ttest_1samp(ratio, 0.0)
    ci = t.confidence_interval()
    out["spread"] = {"value": float(ratio.mean()), "reference": 0.0, "ci_low": float(ci.low),
                     "ci_high": float(ci.high), "p": float(t.pvalue)}
    out["variability_range"] = _paired(lambda log_power, idx: float(log_power[idx].std()),
                                       log_real, log_gen, n_img, n_boot, seed)
    pattern = bootstrap_ci(lambda idx: np.corrcoef(log_gen[idx], log_real[idx])[0, 1],
                           n_images=n_img, n_boot=n_boot, seed=seed)
    out["variability_pattern"] = {"value": float(np.corrcoef(log_gen, log_real)[0, 1]),
                                  "reference": np.nan, "ci_low": pattern.low,
                                  "ci_high": pattern.high, "p": np.nan}
    return out


# ------------------------------------------------------------------ single trials: classifier


def classifier_two_sample_test(real, generated, *, cv: int = 5, n_boot: int = 500,
                               seed: int = 0) -> dict:
    """Can a classifier tell real single trials from generated ones?

    Each trial's spatial covariance (OAS-shrunk, :class:`pyriemann.estimation.Covariances`)
    is mapped to the tangent space at the training folds' mean
    (:class:`pyriemann.tangentspace.TangentSpace`, log-Euclidean) and classified by
    logistic regression;
    folds keep every image's trials together (:class:`sklearn.model_selection.GroupKFold`),
    counts are equal (:func:`equal_counts`). The AUC of the out-of-fold predictions is 0.5
    for a real-like generator; its CI and one-sided p-value (AUC > 0.5) come from
    resampling images.
    """
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    real, generated = _check_pair(real, generated)
    real, generated = equal_counts(real, generated)
    n_img, n, n_ch, n_t = real.shape
    x = np.concatenate([real.reshape(-1, n_ch, n_t), generated.reshape(-1, n_ch, n_t)])
    # Units differ by orders of magnitude between EEG and MEG: scale to unit trial variance.
    x = x / x.std()
    covariances = Covariances("oas").fit_transform(x)
    y = np.r_[np.zeros(n_img * n), np.ones(n_img * n)]
    images = np.r_[np.repeat(np.arange(n_img), n), np.repeat(np.arange(n_img), n)]
    # The log-Euclidean reference point needs one matrix log per trial, where the Riemannian
    # mean iterates; for a linear classifier on the tangent vectors the choice hardly matters.
    model = make_pipeline(TangentSpace(metric="logeuclid"), StandardScaler(),
                          LogisticRegression(C=1.0, max_iter=2000))
    folds = GroupKFold(n_splits=min(cv, n_img))
    score = cross_val_predict(model, covariances, y, groups=images, cv=folds,
                              method="decision_function")
    rows = [np.flatnonzero(images == i) for i in range(n_img)]

    def auc_of(pick: np.ndarray) -> float:
        s, label = score[pick], y[pick]
        u = _stats.mannwhitneyu(s[label == 1], s[label == 0]).statistic  # AUC = U / (n₁ n₀)
        return float(u / ((label == 1).sum() * (label == 0).sum()))

    auc = auc_of(np.arange(len(y)))
    boot = bootstrap_ci(lambda idx: auc_of(np.concatenate([rows[i] for i in idx])),
                        n_images=n_img, n_boot=n_boot, seed=seed)
    p = _bootstrap_p(auc, boot.distribution, 0.5, alternative="greater")
    return {"value": auc, "reference": 0.5, "ci_low": boot.low, "ci_high": boot.high, "p": p}


# ------------------------------------------------------------------ memorisation


def nearest_distances(queries: np.ndarray, reference: np.ndarray, k: int = 1,
                      chunk: int = 4096) -> np.ndarray:
    """Euclidean distances of each query to its ``k`` nearest reference rows, nearest first.

    The reference is read ``chunk`` rows at a time (in float64, keeping the ``k`` best so
    far): a float64 copy of THINGS-EEG2's 66 176 training trials at 63 × 250 alone would be
    8.4 GB.

    Parameters
    ----------
    queries : ndarray, shape (n_queries, n_features)
    reference : ndarray, shape (n_reference, n_features), n_reference >= k

    Returns
    -------
    ndarray, shape (n_queries,) for ``k = 1``, else (n_queries, k)
    """
    queries = np.asarray(queries, np.float64)
    q_sq = (queries ** 2).sum(axis=1)[:, None]
    best = np.full((len(queries), 0), np.inf)
    for start in range(0, len(reference), chunk):
        r = np.asarray(reference[start:start + chunk], np.float64)
        d2 = q_sq + (r ** 2).sum(axis=1)[None] - 2 * queries @ r.T
        candidates = np.concatenate([best, d2], axis=1)
        best = (np.partition(candidates, k - 1, axis=1)[:, :k] if candidates.shape[1] > k
                else candidates)
    out = np.sqrt(np.maximum(np.sort(best, axis=1), 0.0))
    return out[:, 0] if k == 1 else out


def memorisation_test(real, generated, training, *, max_queries: int = 1000,
                      near_copy: float = 0.5, seed: int = 0) -> dict:
    """Are generated signals copies of training trials?

    For each query signal, ``ρ = d₁ / d₂``: its distance to the nearest training trial over
    that to the second nearest. A copy of a training trial has ``ρ = 0``, a copy with a
    little noise added a small ``ρ``; any other signal is almost as far from its nearest as
    from its second-nearest trial (single trials are dominated by noise in hundreds of
    dimensions: on the built-in data real test trials, smooth generated signals and a
    training mean alike have ``ρ`` > 0.85). A query with ``ρ < near_copy`` is a **near
    copy**; the statistic is the share of generated queries that are, against the share of
    real test trials (queried the same way, ≈ 0), by a one-sided Fisher exact test.

    The threshold is absolute, not a quantile of the real ``ρ``: smoother signals have
    slightly smaller ``ρ`` (their distances to all trials differ relatively more), which a
    quantile would take for copying.

    Parameters
    ----------
    real : ndarray, shape (n_images, m, n_channels, n_times)
        Real test trials (a sample of them are the real queries).
    training : ndarray, shape (n_train_images, n_reps, n_channels, n_times)
        What the generator was trained on, all of it (a subsample would hide copies).
    max_queries : int
        Query signals drawn at random from each side.
    """
    real, generated = _check_pair(real, generated)
    training = np.asarray(training)
    if training.ndim != 4 or training.shape[2:] != real.shape[2:] or training.shape[0] * training.shape[1] < 2:
        raise ValueError(f"training {training.shape}: expected (n_images, n_reps) + channels "
                         f"and times {real.shape[2:]}, at least 2 trials")
    # A view when the trials are float32 already (4.2 GB at THINGS-EEG2 250 Hz: no copy).
    flat_train = training.reshape(-1, int(np.prod(real.shape[2:]))).astype(np.float32, copy=False)
    rng = np.random.default_rng(seed)

    def ratios(signals: np.ndarray) -> np.ndarray:
        flat = signals.reshape(-1, flat_train.shape[1]).astype(np.float32)
        queries = flat[rng.choice(len(flat), min(max_queries, len(flat)), replace=False)]
        nearest = nearest_distances(queries, flat_train, k=2)
        return nearest[:, 0] / nearest[:, 1]

    rho_gen, rho_real = ratios(generated), ratios(real)
    k_gen, k_real = int((rho_gen < near_copy).sum()), int((rho_real < near_copy).sum())
    table = [[k_gen, len(rho_gen) - k_gen], [k_real, len(rho_real) - k_real]]
    p = float(_stats.fisher_exact(table, alternative="greater").pvalue)
    low, high = wilson_interval(k_gen, len(rho_gen))
    return {"value": k_gen / len(rho_gen), "reference": k_real / len(rho_real),
            "ci_low": low, "ci_high": high, "p": p}


# ------------------------------------------------------------------ attribute effects


@dataclass(frozen=True)
class AttributeEffect:
    """A known effect of the built-in simulator, measured the same way in any signals."""

    name: str
    label: str
    window_s: tuple[float, float]
    what: str


ATTRIBUTE_EFFECTS = {e.name: e for e in (
    AttributeEffect("contrast_latency_ms", "contrast → P1 latency (ms)", (0.06, 0.125),
                    "centroid latency of the global field power², lowest- minus highest-contrast "
                    "third of the images (the simulator delays P1 by 30 ms per unit of lost "
                    "contrast)"),
    AttributeEffect("lateralisation", "hemifield lateralisation", (0.06, 0.2),
                    "lateralisation index (R − L) / (R + L) of RMS amplitude, left- minus "
                    "right-most third of the images (contralateral early visual cortex responds "
                    "more)"),
    AttributeEffect("c1_ratio", "C1: upper / lower field ratio", (0.06, 0.11),
                    "projection of the upper-third scalp map on the lower-third one (< 1: "
                    "the upper field weakens or flips the first peak)"),
    AttributeEffect("curved_n170", "curved shapes: N170 gain", (0.15, 0.21),
                    "curved minus straight-edged images, projected on the grand average "
                    "(relative amplitude gain, > 0 in the simulator)"),
    AttributeEffect("curved_p300", "curved shapes: P300 gain", (0.25, 0.5),
                    "the same in the P300 window"),
)}


def _window(times: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    mask = (times >= window[0]) & (times <= window[1])
    if not mask.any():
        raise ValueError(f"times: no sample in the window {window} s "
                         f"(epoch {times[0]:.3f}…{times[-1]:.3f} s)")
    return mask


def _effects_from_averages(averages: np.ndarray, groups: dict[str, np.ndarray], times: np.ndarray,
                           side: np.ndarray) -> dict[str, float]:
    """The effects of :data:`ATTRIBUTE_EFFECTS` from per-image averages (n_images, n_ch, n_t)."""
    def mean(mask):
        # A bootstrap resample of a small test set can leave a group empty: NaN, no warning.
        return averages[mask].mean(axis=0) if mask.any() else np.full(averages.shape[1:], np.nan)

    out = {}
    w = _window(times, ATTRIBUTE_EFFECTS["contrast_latency_ms"].window_s)
    latency = {}
    for name in ("low_contrast", "high_contrast"):
        # The centroid resolves shifts below one sample, which a peak pick cannot.
        power = mean(groups[name])[:, w].var(axis=0)
        latency[name] = float(times[w] @ power / power.sum())
    out["contrast_latency_ms"] = 1000.0 * float(latency["low_contrast"] - latency["high_contrast"])

    w = _window(times, ATTRIBUTE_EFFECTS["lateralisation"].window_s)
    index = {}
    for name in ("left_field", "right_field"):
        rms = np.sqrt((mean(groups[name])[:, w] ** 2).mean(axis=1))
        right, left = rms[side > 0].mean(), rms[side < 0].mean()
        index[name] = (right - left) / (right + left)
    out["lateralisation"] = float(index["left_field"] - index["right_field"])

    w = _window(times, ATTRIBUTE_EFFECTS["c1_ratio"].window_s)
    upper, lower = mean(groups["upper_field"])[:, w].mean(axis=1), mean(groups["lower_field"])[:, w].mean(axis=1)
    out["c1_ratio"] = float(upper @ lower / (lower @ lower))

    grand = averages.mean(axis=0)
    difference = mean(groups["curved"]) - mean(groups["straight"])
    for name in ("curved_n170", "curved_p300"):
        w = _window(times, ATTRIBUTE_EFFECTS[name].window_s)
        g = grand[:, w].ravel()
        out[name] = float(difference[:, w].ravel() @ g / (g @ g))
    return out


def attribute_groups(attributes: pd.DataFrame) -> dict[str, np.ndarray]:
    """Boolean image masks the effects contrast (lowest vs highest third of contrast, of the
    horizontal and of the vertical position; curved vs straight-edged shapes), from the
    simulator's attribute table."""
    missing = {"contrast", "x", "y", "curved"} - set(attributes.columns)
    if missing:
        raise ValueError(f"attributes: expected columns contrast, x, y, curved; missing {sorted(missing)}")
    def thirds(column: str) -> tuple[np.ndarray, np.ndarray]:
        values = attributes[column].to_numpy(float)
        low, high = np.quantile(values, [1 / 3, 2 / 3])
        return values <= low, values >= high

    curved = attributes["curved"].to_numpy().astype(bool)
    groups = {"curved": curved, "straight": ~curved}
    groups["low_contrast"], groups["high_contrast"] = thirds("contrast")
    groups["left_field"], groups["right_field"] = thirds("x")
    groups["lower_field"], groups["upper_field"] = thirds("y")
    return groups


def attribute_effects(signals, attributes: pd.DataFrame, times, channel_x) -> dict[str, float]:
    """The built-in simulator's attribute effects (:data:`ATTRIBUTE_EFFECTS`) in any signals.

    Parameters
    ----------
    signals : ndarray, shape (n_images, n, n_channels, n_times)
        Averaged over ``n`` per image first.
    attributes : DataFrame
        One row per image (columns ``contrast, x, y, curved``), in the same order.
    times : ndarray, shape (n_times,), s
    channel_x : ndarray, shape (n_channels,)
        Left–right sensor position (m, head frame: > 0 right hemisphere).
    """
    x = _check(signals, "signals").astype(np.float64)
    if len(attributes) != len(x):
        raise ValueError(f"attributes: expected {len(x)} rows (one per image), found {len(attributes)}")
    return _effects_from_averages(x.mean(axis=1), attribute_groups(attributes), np.asarray(times),
                                  np.asarray(channel_x, float))


def attribute_effect_tests(real, generated, attributes: pd.DataFrame, times, channel_x, *,
                           n_boot: int = 300, seed: int = 0) -> dict[str, dict]:
    """Each attribute effect in generated vs real signals (equal counts), with the bootstrap
    CI (over images) of the generated value and a two-sided paired p-value."""
    real, generated = _check_pair(real, generated)
    real, generated = equal_counts(real, generated)
    groups = attribute_groups(attributes)
    times, side = np.asarray(times), np.asarray(channel_x, float)
    averages = {"real": real.mean(axis=1), "generated": generated.mean(axis=1)}

    def effects(which: str, idx: np.ndarray) -> dict[str, float]:
        return _effects_from_averages(averages[which][idx], {k: v[idx] for k, v in groups.items()},
                                      times, side)

    every = np.arange(len(real))
    value, reference = effects("generated", every), effects("real", every)
    rng = np.random.default_rng(seed)
    boot_gen, boot_real = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(real), len(real))
        boot_gen.append(effects("generated", idx))
        boot_real.append(effects("real", idx))
    boot_gen, boot_real = pd.DataFrame(boot_gen), pd.DataFrame(boot_real)
    out = {}
    for name in ATTRIBUTE_EFFECTS:
        low, high = np.nanpercentile(boot_gen[name], [2.5, 97.5])
        out[name] = {"value": value[name], "reference": reference[name], "ci_low": float(low),
                     "ci_high": float(high),
                     "p": _bootstrap_p(value[name] - reference[name],
                                       boot_gen[name] - boot_real[name])}
    return out


# ------------------------------------------------------------------ the battery


def leading_spatial_components(real, generated, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sets projected on the ``k`` leading spatial principal components of the pooled
    trials: ``(n_images, m | n, k, n_times)``, unchanged when they have ``k`` channels or fewer.

    The components come from the channel covariance of every real and generated trial
    together (labels unused), so the projection treats the two sets alike and permutation
    and cross-validated tests stay valid on it. The covariance tests cost the square (and
    their matrix logarithms the cube) of the channel count: 275 MEG sensors would make
    them the slowest part of a page.
    """
    n_ch = real.shape[2]
    if n_ch <= k:
        return real, generated
    scatter = np.zeros((n_ch, n_ch))
    for trials in (real, generated):
        for image in trials:  # one image at a time: no float64 copy of a whole set
            x = image.astype(np.float64)
            x = (x - x.mean(axis=-1, keepdims=True)).transpose(1, 0, 2).reshape(n_ch, -1)
            scatter += x @ x.T
    _, vectors = np.linalg.eigh(scatter)  # ascending eigenvalues
    basis = vectors[:, ::-1][:, :k].astype(np.float32)  # (n_channels, k)
    project = lambda trials: np.einsum("irct,ck->irkt", trials, basis, optimize=True)
    return project(real), project(generated)


def battery(real, generated, sfreq: float, times, *, training=None, attributes=None,
            channel_x=None, n_permutations: int = 499, n_boot: int = 300,
            classifier_images: int | None = 100, max_components: int = 32,
            seed: int = 0) -> pd.DataFrame:
    """Every realism test of one generator against the real repetitions of the same images.

    Parameters
    ----------
    real : ndarray, shape (n_images, m, n_channels, n_times)
        Real repetitions (in the book: the target half, never the ``real_half`` reference).
    generated : ndarray, shape (n_images, n, n_channels, n_times)
    training : ndarray, optional
        Training trials ``(n_train_images, n_reps, n_channels, n_times)``: adds ``memorisation``.
    attributes, channel_x : optional
        The images' attribute table and the sensors' left–right positions (simulated data):
        add the attribute effects.
    classifier_images : int or None
        The classifier test uses the first this many images (it costs the most; ``None``: all).
    max_components : int
        The residual (covariance, autocorrelation, spectrum, kurtosis) and classifier tests
        see at most this many channels: beyond it, the leading spatial components of the
        pooled trials (:func:`leading_spatial_components`; THINGS-EEG2's 63 channels,
        THINGS-MEG's 271 sensors). The other tests see every channel.

    Returns
    -------
    DataFrame, one row per test: ``test, label, sees, value, reference, ci_low, ci_high, p``
    (``reference`` is what a real-like generator scores: the recording's own value, the
    null rate or the permutation mean; ``p`` tests "real-like", NaN for descriptive rows).
    """
    real, generated = _check_pair(real, generated)
    rows = {"energy": rejection_rate(energy_distance_pvalues(real, generated, seed=seed))}
    rows["energy"]["reference"] = ALPHA
    spatial_real, spatial_gen = leading_spatial_components(real, generated, max_components)
    residual = residual_tests(spatial_real, spatial_gen, sfreq, n_permutations=n_permutations,
                              seed=seed)
    shape = residual.pop("spectral_shape")
    rows.update(residual)
    rows.update(variability_tests(real, generated, n_boot=n_boot, seed=seed))
    k = len(real) if classifier_images is None else min(classifier_images, len(real))
    rows["classifier"] = classifier_two_sample_test(spatial_real[:k], spatial_gen[:k],
                                                    n_boot=n_boot, seed=seed)
    if training is not None:
        rows["memorisation"] = memorisation_test(real, generated, training, seed=seed)
    if attributes is not None and channel_x is not None:
        rows.update(attribute_effect_tests(real, generated, attributes, times, channel_x,
                                           n_boot=n_boot, seed=seed))
    for name, key in (("spectral_slope", "slope"), ("alpha_peak_hz", "alpha_peak_hz")):
        rows[name] = {"value": shape["generated"][key], "reference": shape["real"][key], "p": np.nan}
    return as_table(rows)


def as_table(results: dict[str, dict]) -> pd.DataFrame:
    """Test results (``name → {value, reference, ci_low, ci_high, p}``, missing keys NaN)
    as battery rows, with each test's ``label`` and what it ``sees``."""
    labels = {**{n: (t.label, t.sees) for n, t in TESTS.items()},
              **{n: (e.label, "attributes") for n, e in ATTRIBUTE_EFFECTS.items()}}
    return pd.DataFrame([{"test": name, "label": labels[name][0], "sees": labels[name][1],
                          **{c: row.get(c, np.nan) for c in
                             ("value", "reference", "ci_low", "ci_high", "p")}}
                         for name, row in results.items()])


def verdicts(table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Holm-adjusted p-values within each generator's battery and a pass / fail per test.

    ``table`` holds one battery per generator (a ``generator`` column, or one battery).
    The family is one generator's tests, so a real-like generator passes *all* of them
    with probability ≥ 1 − α. Rows without a p-value (descriptive) get no verdict.
    """
    from .stats import holm

    table = table.copy()
    if "generator" not in table:
        table["generator"] = "generator"
    table["p_holm"] = np.nan
    for _, rows in table.groupby("generator", sort=False):
        table.loc[rows.index, "p_holm"] = holm(rows["p"].to_numpy())
    table["passes"] = np.where(table["p_holm"].isna(), None, table["p_holm"] > alpha)
    return table

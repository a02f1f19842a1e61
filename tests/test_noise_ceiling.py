"""Tests for analysis.evaluation.noise_ceiling against data with a known signal-to-noise ratio.

Construction: ``trials[i, k] = mu[i] + noise[i, k]``, with ``mu`` i.i.d. of variance ``S``
across images (and features) and noise i.i.d. of variance ``N`` per trial. The average of
``n`` repetitions then has reliability ``S / (S + N / n)`` (both across images per feature
and across features per image) and noise ceiling ``sqrt`` of that.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.evaluation import noise_ceiling
from analysis.evaluation.noise_ceiling import (
    exact_ceiling,
    mse_floor,
    noise_ceiling_r,
    spearman_brown,
    split_half_reliability,
)

S, N = 1.0, 4.0
N_IMAGES, N_CHANNELS, N_TIMES = 200, 8, 25


def simulate(n_reps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, np.sqrt(S), (N_IMAGES, N_CHANNELS, N_TIMES))
    noise = rng.normal(0, np.sqrt(N), (N_IMAGES, n_reps, N_CHANNELS, N_TIMES))
    return (mu[:, None] + noise).astype(np.float32), mu


def reliability(n: float) -> float:
    return S / (S + N / n)


def tolerance(r: float) -> float:
    """Six standard errors of a mean of correlations r: each has SE about (1 - r**2) / sqrt(n)
    over n = 200 images (or 200 features), and 200 independent ones are averaged."""
    return 6 * (1 - r**2) / np.sqrt(N_IMAGES * N_CHANNELS * N_TIMES)


def test_spearman_brown_hand_values():
    np.testing.assert_allclose(spearman_brown([0.0, 0.5, 1.0], 2), [0.0, 2 / 3, 1.0])
    assert spearman_brown(0.25, 3) == pytest.approx(0.75 / 1.5)
    assert spearman_brown(-0.2, 2) == pytest.approx(-0.4 / 0.8)  # no signal stays negative
    assert np.isnan(spearman_brown(-1.0, 2))


@pytest.mark.parametrize("n_reps", [8, 7])
def test_split_half_reliability_matches_the_analytic_snr(n_reps):
    trials, _ = simulate(n_reps)
    result = split_half_reliability(trials, n_splits=10, seed=0)
    half = n_reps // 2
    assert (result.n_reps, result.half_size, result.n_splits) == (n_reps, half, 10)
    assert result.encoding.shape == (N_CHANNELS, N_TIMES) and result.paper.shape == (N_IMAGES,)
    # half-vs-half correlation: reliability of an h-rep average
    r_half = reliability(half)
    # Spearman-Brown with k = n / h (a derivative < 1 maps the SE of r_half onto rho_n)
    rho = reliability(n_reps)
    for estimate_half, estimate in ((result.encoding_half, result.encoding),
                                    (result.paper_half, result.paper)):
        assert estimate_half.mean() == pytest.approx(r_half, abs=tolerance(r_half))
        assert estimate.mean() == pytest.approx(rho, abs=tolerance(r_half))
    assert tolerance(r_half) < 0.03


def test_noise_ceiling_r_is_sqrt_of_the_full_average_reliability():
    trials, _ = simulate(8)
    ceiling = noise_ceiling_r(trials, n_splits=10, seed=0)
    expected = np.sqrt(reliability(8))  # sqrt(2/3) = 0.816
    assert ceiling.method == "split-half"
    assert ceiling.encoding_mean == pytest.approx(expected, abs=tolerance(reliability(4)))
    assert ceiling.paper_mean == pytest.approx(expected, abs=tolerance(reliability(4)))
    np.testing.assert_allclose(
        ceiling.encoding, np.sqrt(split_half_reliability(trials, n_splits=10).encoding))


def test_exact_ceiling_matches_the_analytic_value():
    trials, mu = simulate(8)
    ceiling = exact_ceiling(mu, trials)
    expected = np.sqrt(reliability(8))
    assert ceiling.method == "exact"
    assert ceiling.encoding.shape == (N_CHANNELS, N_TIMES) and ceiling.paper.shape == (N_IMAGES,)
    assert ceiling.encoding_mean == pytest.approx(expected, abs=tolerance(expected))
    assert ceiling.paper_mean == pytest.approx(expected, abs=tolerance(expected))
    # and it agrees with the split-half estimate
    assert noise_ceiling_r(trials, n_splits=10).encoding_mean == pytest.approx(
        ceiling.encoding_mean, abs=0.01)


def test_mse_floor_is_noise_variance_over_n_reps():
    trials, _ = simulate(8)
    floor = mse_floor(trials)
    assert floor.shape == (N_IMAGES,)
    # SE of a ddof=1 variance over 8 reps is N sqrt(2 / 7) per cell, averaged over all cells
    se = N * np.sqrt(2 / 7) / np.sqrt(N_IMAGES * N_CHANNELS * N_TIMES) / 8
    assert floor.mean() == pytest.approx(N / 8, abs=6 * se)


def test_splits_are_true_disjoint_halves_and_grouping_does_not_matter(monkeypatch):
    trials, _ = simulate(6)
    result = split_half_reliability(trials, n_splits=1, seed=3)
    order = np.random.default_rng(3).permutation(6)
    a = trials[:, order[:3]].astype(np.float64).mean(axis=1)
    b = trials[:, order[3:]].astype(np.float64).mean(axis=1)
    from analysis.evaluation.stats import pearson_r
    np.testing.assert_allclose(result.encoding_half, pearson_r(a, b, axis=0), atol=1e-6)
    np.testing.assert_allclose(result.paper_half, pearson_r(a, b, axis=(1, 2)), atol=1e-6)

    together = split_half_reliability(trials, n_splits=5, seed=1)
    monkeypatch.setattr(noise_ceiling, "_HALVES_BUFFER_VALUES", 1)  # one split per pass
    one_by_one = split_half_reliability(trials, n_splits=5, seed=1)
    np.testing.assert_allclose(one_by_one.encoding, together.encoding, atol=1e-12)


def test_pure_noise_and_constant_channels():
    rng = np.random.default_rng(7)
    trials = rng.normal(size=(50, 4, 3, 10))
    trials[:, :, 0] = 0.0  # e.g. a reference channel
    ceiling = noise_ceiling_r(trials, n_splits=4)
    assert np.isnan(ceiling.encoding[0]).all()
    signal_free = ceiling.encoding[1:]
    assert (signal_free >= 0).all() and (signal_free == 0).any()  # negative reliability -> 0
    assert np.isfinite(ceiling.encoding_mean)  # the NaN channel is left out of the mean


def test_two_repetitions_is_enough():
    trials, _ = simulate(2)
    result = split_half_reliability(trials, n_splits=3)
    assert result.half_size == 1
    assert result.encoding.mean() == pytest.approx(reliability(2), abs=tolerance(reliability(1)))


def test_validation_messages():
    with pytest.raises(ValueError, match=r"trials: expected rank 4 with shape \(n_images, n_reps, "
                                         r"n_channels, n_times\), found rank 3"):
        split_half_reliability(np.zeros((5, 3, 4)))
    with pytest.raises(ValueError, match=r"trials: expected at least 2 repetitions on axis 1 "
                                         r"\(n_reps\), found shape \(5, 1, 3, 4\)"):
        noise_ceiling_r(np.zeros((5, 1, 3, 4)))
    with pytest.raises(ValueError, match="trials: expected at least 2 repetitions"):
        mse_floor(np.zeros((5, 1, 3, 4)))
    with pytest.raises(ValueError, match=r"noiseless: expected shape \(n_images=5, n_channels=3, "
                                         r"n_times=4\), found \(5, 3, 5\)"):
        exact_ceiling(np.zeros((5, 3, 5)), np.zeros((5, 2, 3, 4)))
    with pytest.raises(ValueError, match="n_splits: expected at least 1 split, found 0"):
        split_half_reliability(np.zeros((5, 2, 3, 4)), n_splits=0)


def test_gifford_bounds_match_their_expected_values():
    from analysis.evaluation.noise_ceiling import gifford_bounds

    # signal variance 1, noise variance 4 per repetition, 8 repetitions (halves of 4):
    # half averages have reliability 1 / (1 + 4/4) = 0.5, so lower ≈ 0.5 and
    # upper = corr(half, all) = sqrt((1 + 0.5) / 2) ≈ 0.866 for equal-variance halves.
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((4000, 1, 2, 3))
    trials = truth + 2 * rng.standard_normal((4000, 8, 2, 3))
    lower, upper = gifford_bounds(trials, n_splits=5)
    assert lower.shape == upper.shape == (2, 3)
    np.testing.assert_allclose(lower, 0.5, atol=0.03)
    np.testing.assert_allclose(upper, np.sqrt(0.75), atol=0.02)

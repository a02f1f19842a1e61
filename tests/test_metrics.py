"""Tests for analysis.evaluation.metrics: hand-computable values and the summary table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.evaluation import metrics
from analysis.evaluation.metrics import (
    encoding_score,
    encoding_score_statistic,
    fidelity_summary,
    paper_mse,
    paper_pearson,
)
from analysis.evaluation.noise_ceiling import noise_ceiling_r
from analysis.evaluation.stats import mean_ignoring_nan

# Two images, one channel, three time points, all numbers small enough to do by hand.
TARGET = np.array([[[0.0, 1.0, 2.0]], [[1.0, 1.0, 4.0]]])
PRED = np.array([[[0.0, 2.0, 1.0]], [[3.0, 1.0, 4.0]]])


def random_responses(shape=(30, 4, 6), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def simulate(n_images=60, n_reps=10, n_channels=4, n_times=10, noise_sd=2.0, seed=0):
    rng = np.random.default_rng(seed)
    noiseless = rng.normal(size=(n_images, n_channels, n_times))
    trials = noiseless[:, None] + rng.normal(0, noise_sd, (n_images, n_reps, n_channels, n_times))
    return trials.astype(np.float32), noiseless


# --- per-image and per-feature scores ------------------------------------------------------

def test_two_image_example_by_hand():
    # image 0: errors (0, 1, 1) -> MSE 2/3; centred pred (-1, 1, 0), target (-1, 0, 1) -> r 1/2
    # image 1: errors (2, 0, 0) -> MSE 4/3; centred pred (1/3, -5/3, 4/3), target (-1, -1, 2)
    #          -> r = 4 / sqrt(42/9 * 6) = 2 / sqrt(7)
    np.testing.assert_allclose(paper_mse(PRED, TARGET), [2 / 3, 4 / 3])
    np.testing.assert_allclose(paper_pearson(PRED, TARGET), [0.5, 2 / np.sqrt(7)])
    # channels x time are flattened: the same numbers laid out as 3 channels x 1 time
    np.testing.assert_allclose(paper_pearson(PRED.reshape(2, 3, 1), TARGET.reshape(2, 3, 1)),
                               [0.5, 2 / np.sqrt(7)])


def test_identical_prediction_is_perfect():
    target = random_responses()
    np.testing.assert_allclose(paper_mse(target, target), 0.0)
    np.testing.assert_allclose(paper_pearson(target, target), 1.0)
    np.testing.assert_allclose(encoding_score(target, target), 1.0)


def test_affine_prediction_has_r_one_and_a_hand_computable_mse():
    # pred = 2 * target + 3 -> error = target + 3: image 0 (3, 4, 5) -> (9 + 16 + 25) / 3
    pred = 2 * TARGET + 3
    np.testing.assert_allclose(paper_mse(pred, TARGET), [50 / 3, (16 + 16 + 49) / 3])
    np.testing.assert_allclose(paper_pearson(pred, TARGET), 1.0)
    target = random_responses()
    np.testing.assert_allclose(encoding_score(2 * target + 3, target), 1.0)


def test_negated_prediction_has_r_minus_one():
    target = random_responses()
    np.testing.assert_allclose(paper_pearson(-target, target), -1.0)
    np.testing.assert_allclose(encoding_score(-target, target), -1.0)


def test_encoding_score_is_across_images_per_channel_and_time():
    target = np.zeros((3, 1, 2))
    target[:, 0, 0] = [1.0, 2.0, 3.0]
    target[:, 0, 1] = [0.0, 5.0, 1.0]
    pred = target.copy()
    pred[:, 0, 0] = [1.0, 3.0, 2.0]  # centred (-1, 1, 0) vs (-1, 0, 1) -> 1/2
    score = encoding_score(pred, target)
    assert score.shape == (1, 2)
    np.testing.assert_allclose(score, [[0.5, 1.0]])


def test_zero_variance_gives_nan_by_the_documented_rule():
    target = random_responses((5, 2, 3))
    pred = target.copy()
    pred[1] = 7.0  # a constant prediction for image 1
    r = paper_pearson(pred, target)
    assert np.isnan(r[1]) and np.isfinite(np.delete(r, 1)).all()
    target[:, 0, 2] = 0.0  # one channel x time point flat across images
    score = encoding_score(target + 1.0, target)
    assert np.isnan(score[0, 2]) and np.isfinite(score.ravel()[np.arange(6) != 2]).all()


def test_shape_errors_name_the_argument_and_both_shapes():
    with pytest.raises(ValueError, match=r"pred: expected shape \(n_images=2, n_channels=3, "
                                         r"n_times=5\), found \(2, 3, 4\)"):
        paper_mse(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"target: expected rank 3 with shape \(n_images, "
                                         r"n_channels, n_times\), found rank 2"):
        paper_pearson(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"target_avg: expected rank 3 .* found rank 4"):
        encoding_score(np.zeros((2, 3, 4)), np.zeros((2, 1, 3, 4)))
    with pytest.raises(ValueError, match="pred: expected only finite values"):
        paper_mse(np.full((2, 3, 4), np.nan), np.zeros((2, 3, 4)))


# --- the resampled encoding score ----------------------------------------------------------

def test_encoding_score_statistic_equals_recomputing_on_resampled_images(monkeypatch):
    target = random_responses((40, 3, 5), seed=1)
    pred = target + random_responses((40, 3, 5), seed=2)
    statistic = encoding_score_statistic(pred, target)
    full = mean_ignoring_nan(encoding_score(pred, target))
    assert statistic(np.arange(40)) == pytest.approx(full)
    idx = np.random.default_rng(3).integers(0, 40, (7, 40))
    direct = [mean_ignoring_nan(encoding_score(pred[i], target[i])) for i in idx]
    np.testing.assert_allclose(statistic(idx), direct, rtol=1e-10)
    monkeypatch.setattr(metrics, "_MOMENT_BLOCK_VALUES", 1)  # one resample per product
    np.testing.assert_allclose(encoding_score_statistic(pred, target)(idx), direct, rtol=1e-10)


def test_encoding_score_statistic_keeps_no_copies_of_all_moments(monkeypatch):
    # The five weighted moments are formed a block of points at a time: beyond the two
    # standardised float64 copies (x, y), memory stays near one block, where the moments of
    # all points at once would be five more float64 copies.
    import tracemalloc

    target = random_responses((200, 20, 50), seed=1)
    pred = target + random_responses((200, 20, 50), seed=2)
    one_copy = pred.size * 8  # bytes of a float64 copy
    monkeypatch.setattr(metrics, "_MOMENT_BLOCK_VALUES", pred.size // 8)
    idx = np.random.default_rng(3).integers(0, 200, (50, 200))
    direct = [mean_ignoring_nan(encoding_score(pred[i], target[i])) for i in idx[:3]]
    tracemalloc.start()
    try:
        values = encoding_score_statistic(pred, target)(idx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(values[:3], direct, rtol=1e-10)
    assert peak < 3.5 * one_copy, f"peak {peak / one_copy:.1f} float64 copies"


def test_paper_mse_in_blocks_of_images_equals_one_piece(monkeypatch):
    target = random_responses((9, 3, 4), seed=1)
    pred = target + random_responses((9, 3, 4), seed=2)
    expected = ((pred.astype(np.float64) - target) ** 2).mean(axis=(1, 2))
    monkeypatch.setattr(metrics, "_MOMENT_BLOCK_VALUES", 24)  # two images per block
    np.testing.assert_allclose(paper_mse(pred, target), expected, rtol=1e-12)


# --- the summary table -------------------------------------------------------------------

def test_fidelity_summary_layout_and_a_perfect_model():
    trials, noiseless = simulate()
    table = fidelity_summary(noiseless, trials, noiseless, n_boot=200, n_splits=5)
    assert list(table.columns) == ["metric", "ceiling_method", "value", "ci_low", "ci_high",
                                   "ceiling", "pct_of_ceiling", "n_undefined"]
    assert list(zip(table.metric, table.ceiling_method)) == [
        ("paper_mse", "repetition variance"), ("paper_mse", "exact"),
        ("paper_r", "split-half"), ("paper_r", "exact"),
        ("encoding_score", "split-half"), ("encoding_score", "exact"),
    ]
    rows = table.set_index(["metric", "ceiling_method"])
    # the exact ceiling *is* the score of the noiseless means, so the ratio is exactly 100 %
    assert rows.loc[("paper_r", "exact"), "pct_of_ceiling"] == pytest.approx(100.0)
    assert rows.loc[("encoding_score", "exact"), "pct_of_ceiling"] == pytest.approx(100.0)
    assert rows.loc[("paper_mse", "exact"), "ceiling"] == pytest.approx(
        rows.loc[("paper_mse", "exact"), "value"])
    # the split-half estimates land near 100 % / near the true floor (noise var 4 / 10 reps)
    for metric in ("paper_r", "encoding_score"):
        assert rows.loc[(metric, "split-half"), "pct_of_ceiling"] == pytest.approx(100, abs=5)
    assert rows.loc[("paper_mse", "repetition variance"), "ceiling"] == pytest.approx(0.4, rel=0.1)
    assert rows.loc["paper_mse", "pct_of_ceiling"].isna().all()
    assert (table.n_undefined == 0).all()
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    assert table.attrs["n_images"] == 60 and table.attrs["n_reps"] == 10


def test_fidelity_summary_pct_of_ceiling_is_corr_with_the_true_response():
    trials, noiseless = simulate(n_images=100, seed=4)
    # prediction noise as large as the signal: corr(pred, noiseless) = 1 / sqrt(2) = 70.7 %
    pred = noiseless + np.random.default_rng(5).normal(size=noiseless.shape)
    table = fidelity_summary(pred, trials, noiseless, n_boot=200, n_splits=5)
    exact = table[table.ceiling_method == "exact"].set_index("metric")
    assert exact.loc["encoding_score", "pct_of_ceiling"] == pytest.approx(70.7, abs=4)
    assert exact.loc["paper_r", "pct_of_ceiling"] == pytest.approx(70.7, abs=4)


def test_fidelity_summary_without_noiseless_and_with_a_precomputed_ceiling():
    trials, noiseless = simulate(seed=6)
    pred = noiseless + random_responses(noiseless.shape, seed=7)
    ceiling = noise_ceiling_r(trials, n_splits=5, seed=0)
    table = fidelity_summary(pred, trials, n_boot=100, n_splits=5, seed=0)
    reused = fidelity_summary(pred, trials, n_boot=100, seed=0, ceiling=ceiling)
    assert list(table.metric) == ["paper_mse", "paper_r", "encoding_score"]
    pd.testing.assert_frame_equal(table, reused)
    assert reused.attrs["n_splits"] is None



def test_fidelity_summary_of_single_trials_scores_without_split_half_ceilings():
    # THINGS-MEG shows each training image once: validation concepts have one repetition.
    trials, noiseless = simulate(seed=10)
    one = trials[:, :1]
    pred = noiseless + random_responses(noiseless.shape, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = fidelity_summary(pred, one, noiseless, n_boot=50).set_index(
            ["metric", "ceiling_method"])
    score = table.loc[("encoding_score", "split-half")]
    assert score["value"] == pytest.approx(mean_ignoring_nan(encoding_score(pred, one[:, 0])))
    assert score["ci_low"] <= score["value"] <= score["ci_high"]
    assert np.isnan([score["ceiling"], score["pct_of_ceiling"],
                     table.loc[("paper_mse", "repetition variance"), "ceiling"]]).all()
    # The exact ceiling needs no repetitions.
    assert np.isfinite(table.loc[("encoding_score", "exact"), "pct_of_ceiling"])

def test_fidelity_summary_of_a_constant_prediction_is_undefined_and_quiet():
    trials, noiseless = simulate(seed=9)
    same_for_all_images = np.broadcast_to(noiseless.mean(axis=0), noiseless.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = fidelity_summary(same_for_all_images, trials, n_boot=50, n_splits=2)
    row = table.set_index("metric").loc["encoding_score"]
    assert row.n_undefined == 4 * 10  # every channel x time point
    assert np.isnan([row.value, row.ci_low, row.ci_high, row.pct_of_ceiling]).all()


def test_fidelity_summary_counts_undefined_images_and_validates_inputs():
    trials, noiseless = simulate(seed=8)
    pred = noiseless.copy()
    pred[3] = 0.0
    table = fidelity_summary(pred, trials, n_boot=50, n_splits=2).set_index("metric")
    assert table.loc["paper_r", "n_undefined"] == 1
    assert np.isfinite(table.loc["paper_r", "value"])
    with pytest.raises(ValueError, match=r"pred: expected shape \(n_images=60, n_channels=4, "
                                         r"n_times=10\), found \(60, 4, 9\)"):
        fidelity_summary(pred[..., :9], trials)
    with pytest.raises(ValueError, match=r"trials: expected rank 4 .* found rank 3"):
        fidelity_summary(pred, trials.mean(axis=1))
    with pytest.raises(ValueError, match=r"noiseless: expected shape \(n_images=60"):
        fidelity_summary(pred, trials, noiseless[:50])
    with pytest.raises(ValueError, match=r"ceiling: expected encoding shape \(4, 10\)"):
        fidelity_summary(pred, trials, ceiling=noise_ceiling_r(trials[:, :, :3], n_splits=1))


def test_pct_of_exact_ceiling_ci_resamples_the_ceiling_with_the_images():
    from analysis.evaluation.metrics import pct_of_exact_ceiling_ci

    rng = np.random.default_rng(1)
    truth = rng.standard_normal((50, 2, 6))
    target = truth + rng.standard_normal(truth.shape)
    value, low, high = pct_of_exact_ceiling_ci(truth, truth, target, n_boot=300)
    # the truth is its own ceiling on every resample: exactly 100 %, no spread
    assert value == pytest.approx(100) and low == pytest.approx(100) and high == pytest.approx(100)
    noisy = truth + rng.standard_normal(truth.shape)
    value, low, high = pct_of_exact_ceiling_ci(noisy, truth, target, n_boot=300)
    assert low < value < high and 40 < value < 90  # corr(noisy, truth) ≈ 0.71

"""Reference generators on known answers: the residual noise model recovers a known
covariance, the oracle draws new trials with the recorded noise statistics, and a simple
fidelity check ranks oracle ≈ real_half above mean_noise."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.config import SimulationSize
from analysis.data.simulated import (SimulationConfig, config_from_meta, load_simulated,
                                     oracle_trials, simulate_dataset)
from analysis.evaluation.metrics import encoding_score
from analysis.evaluation.stats import mean_ignoring_nan
from analysis.names import REFERENCES
from analysis.references import (ResidualNoise, mean_plus_noise, real_half, shuffled,
                                 split_repetitions)

SIZE = SimulationSize(n_subjects=1, n_train_concepts=40, n_train_images_per_concept=2,
                      n_test_concepts=30, n_train_reps=4, n_test_reps=16, image_size=32)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    config = SimulationConfig(size=SIZE, trial_snr=0.3)
    simulate_dataset(root, config, progress=False)
    return load_simulated(root, 1)


def test_split_repetitions_gives_disjoint_halves_of_every_image():
    trials = np.arange(3 * 5).reshape(3, 5, 1, 1).astype(float)  # rep r of image i = 5i + r
    first, second = split_repetitions(trials, seed=1)
    assert first.shape == (3, 2, 1, 1) and second.shape == (3, 3, 1, 1)
    for i in range(3):
        reps = np.concatenate([first[i], second[i]]).ravel() - 5 * i
        assert sorted(reps) == [0, 1, 2, 3, 4]  # every repetition once, the same split per image
    np.testing.assert_array_equal(first[1].ravel() - 5, first[0].ravel())
    with pytest.raises(ValueError, match="n_reps >= 2"):
        split_repetitions(trials[:, :1])


def test_residual_noise_recovers_a_known_covariance():
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((6, 6))  # Σ = A Aᵀ over 2 channels × 3 times
    means = rng.standard_normal((500, 1, 6)) * 5  # image means must not leak into Σ
    trials = means + rng.standard_normal((500, 2, 6)) @ mixing.T  # only 2 reps per image
    noise = ResidualNoise().fit(trials.reshape(500, 2, 2, 3))
    truth = mixing @ mixing.T
    assert np.abs(noise.covariance - truth).max() < 0.15 * np.abs(truth).max()
    draws = noise.sample(20000, rng).reshape(20000, 6)
    assert np.abs(np.cov(draws.T) - truth).max() < 0.2 * np.abs(truth).max()
    with pytest.raises(RuntimeError, match="before fit"):
        ResidualNoise().sample(1, rng)


def test_residual_noise_beyond_max_rank_keeps_the_leading_components_and_the_power():
    rng = np.random.default_rng(3)
    # 12 entries: 2 strong directions over a weak isotropic floor (variance 0.25 each).
    strong = rng.standard_normal((12, 2)) * 3
    truth = strong @ strong.T + 0.25 * np.eye(12)
    trials = rng.standard_normal((3000, 2, 12)) @ np.linalg.cholesky(truth).T
    noise = ResidualNoise(max_rank=2).fit(trials.reshape(3000, 2, 3, 4))
    assert noise.factor.shape == (12, 2) and noise.isotropic > 0
    estimate = noise.covariance
    assert np.trace(estimate) == pytest.approx(np.trace(truth), rel=0.05)  # total power kept
    assert np.abs(estimate - truth).max() < 0.1 * np.abs(truth).max()
    draws = noise.sample(20000, rng).reshape(20000, 12)
    assert np.abs(np.cov(draws.T) - truth).max() < 0.15 * np.abs(truth).max()


def test_mean_plus_noise_centres_on_the_means():
    noise = ResidualNoise().fit(np.random.default_rng(0).standard_normal((50, 3, 2, 4)))
    means = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    signals = mean_plus_noise(means, noise, n=4000, seed=1)
    assert signals.shape == (3, 4000, 2, 4) and signals.dtype == np.float32
    np.testing.assert_allclose(signals.mean(axis=1), means, atol=0.1)


def test_shuffled_moves_every_image():
    samples = np.arange(7).reshape(7, 1, 1, 1)
    for seed in range(20):
        moved = shuffled(samples, seed).ravel()
        assert sorted(moved) == list(range(7)) and (moved != np.arange(7)).all()
    with pytest.raises(ValueError, match="at least 2 images"):
        shuffled(samples[:1])


def test_oracle_draws_new_trials_with_the_recorded_noise(subject):
    assert config_from_meta(subject.meta).size == SIZE
    oracle = oracle_trials(subject, n=16, seed=0)
    real = subject.test.signals
    truth = subject.noiseless["test"]
    assert oracle.shape == real.shape and oracle.dtype == np.float32
    assert not np.allclose(oracle, real)  # new draws, not the recorded trials
    ratio = (oracle - truth[:, None]).var() / (real - truth[:, None]).var()
    assert 0.9 < ratio < 1.1  # the same noise level
    # The same spatial structure: channel covariance of the noise, correlated across entries.
    def channel_cov(x):
        residual = (x - truth[:, None]).transpose(2, 0, 1, 3).reshape(x.shape[2], -1)
        return np.cov(residual)
    assert np.corrcoef(channel_cov(oracle).ravel(), channel_cov(real).ravel())[0, 1] > 0.95
    np.testing.assert_array_equal(oracle_trials(subject, n=2, seed=3), oracle_trials(subject, n=2, seed=3))


def test_the_oracle_draws_the_true_trial_process_for_any_simulated_image(subject):
    """Its average converges to the saved expectation (test images, in the loader's order),
    and it accepts new attribute rows: two identical rows give the same mean response."""
    from analysis.data.simulated import image_attributes

    many = oracle_trials(subject, n=200, seed=5)
    truth = subject.noiseless["test"]
    error = ((many.mean(axis=1) - truth) ** 2).mean() / (many - truth[:, None]).var()
    assert error == pytest.approx(1 / 200, rel=0.3)  # only the 1/n of the noise is left
    rows = image_attributes(subject, "test").iloc[[3, 3]]
    new = oracle_trials(subject, n=200, seed=6, attributes=rows)
    assert new.shape == (2, 200) + truth.shape[1:]
    for mean in new.mean(axis=1):
        assert np.corrcoef(mean.ravel(), truth[3].ravel())[0, 1] > 0.9


def test_a_fidelity_check_ranks_the_references(subject):
    """Encoding score of 4-signal averages against the held-out half's average:
    oracle ≈ real_half (both are real-like), both far above the image-blind mean_noise."""
    generator_half, target_half = split_repetitions(subject.test.signals)
    target = target_half.mean(axis=1)
    noise = ResidualNoise().fit(subject.train.signals)
    blind = np.broadcast_to(subject.train.average().mean(axis=0), target.shape)
    references = {
        "oracle": oracle_trials(subject, n=4),
        "real_half": real_half(generator_half, 4),
        "mean_noise": mean_plus_noise(np.ascontiguousarray(blind), noise, 4),
    }
    score = {name: float(mean_ignoring_nan(encoding_score(s.mean(axis=1), target)))
             for name, s in references.items()}
    assert score["oracle"] > 0.15 and score["real_half"] > 0.15
    assert abs(score["oracle"] - score["real_half"]) < 0.1
    assert abs(score["mean_noise"]) < 0.1
    assert set(references) <= set(REFERENCES)


def test_the_judge_on_built_in_data_ranks_the_references(subject):
    """On the simulator's own data: image-conditional checks rank oracle ≈ real_half above a
    shrunk linear-Gaussian generator above mean_noise / shuffled; the pooled spectrum cannot."""
    from analysis.evaluation import decoding
    from analysis.evaluation.metric_validation import Context, score_checks, verdicts
    from analysis.names import TIERS

    held, target = split_repetitions(subject.test.signals, seed=0)
    truth = subject.noiseless["test"]
    noise = ResidualNoise().fit(subject.train.signals)
    grand = np.broadcast_to(subject.train.average().mean(axis=0), truth.shape)
    shrunk = np.ascontiguousarray(0.5 * truth + 0.5 * grand)  # a ridge-like mean predictor
    ridge_like = mean_plus_noise(shrunk, noise, 8, seed=1)
    signals = {"oracle": oracle_trials(subject, n=8), "real_half": real_half(held, 8),
               "ridge_noise": ridge_like,
               "mean_noise": mean_plus_noise(np.ascontiguousarray(grand), noise, 8, seed=2),
               "shuffled": shuffled(ridge_like, seed=0)}
    mask = decoding.select_features_by_reliability(subject.train.signals, quantile=0.8)
    scores = score_checks(signals, target, Context(subject.times, subject.sfreq, mask))
    table = verdicts(scores, TIERS).set_index("check")
    for check in ("encoding_score", "paper_r", "paper_mse", "top1", "map_r"):
        assert table.loc[check, "valid"], (check, table.loc[check].to_dict())
    assert not table.loc["spectrum_error", "valid"]
    values = scores.pivot(index="generator", columns="check", values="value")
    assert abs(values.loc["oracle", "encoding_score"] - values.loc["real_half", "encoding_score"]) < 0.1

"""The realism battery on known answers: each test accepts draws from the real process and
rejects the difference it is built to see; statistics match hand-derived values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.evaluation import realism as R

N_IMG, N_CH, N_T = 60, 4, 50


def gaussian(n, rng, sd=1.0, n_img=N_IMG, means=None, mixing=None):
    x = rng.standard_normal((n_img, n, N_CH, N_T)) * sd
    if mixing is not None:
        x = np.einsum("cd,inds->incs", mixing, x)
    return x if means is None else x + means[:, None]


def test_residual_variance_does_not_depend_on_the_number_of_trials():
    rng = np.random.default_rng(0)
    for n in (2, 5, 20):
        r = R.image_residuals(gaussian(n, rng, sd=2.0))
        assert (r ** 2).mean() == pytest.approx(4.0, rel=0.05)


def test_rejection_rate_by_hand():
    out = R.rejection_rate([0.01, 0.5, 0.04, 0.9])
    assert out["value"] == 0.5
    assert out["p"] == pytest.approx(1 - 0.95 ** 4 - 4 * 0.05 * 0.95 ** 3)  # P(X ≥ 2), X ~ B(4, .05)
    assert out["ci_low"] < 0.5 < out["ci_high"]


def test_energy_test_holds_its_level_and_sees_a_wrong_image_mean():
    rng = np.random.default_rng(1)
    means = rng.standard_normal((N_IMG, N_CH, N_T))
    real = gaussian(12, rng, means=means)
    same = R.energy_distance_pvalues(real, gaussian(10, rng, means=means), seed=0)
    assert same.shape == (N_IMG,) and ((same > 0) & (same <= 1)).all()
    assert R.rejection_rate(same)["value"] < 0.15
    wrong = R.energy_distance_pvalues(real, gaussian(10, rng, means=np.roll(means, 1, axis=0)))
    assert R.rejection_rate(wrong)["value"] > 0.9


def _ar1(n, rng, phi):
    x = rng.standard_normal((N_IMG, n, N_CH, N_T))
    for t in range(1, N_T):
        x[..., t] += phi * x[..., t - 1]
    return x


def test_residual_tests_accept_the_same_process_and_each_sees_its_difference():
    rng = np.random.default_rng(2)
    real = _ar1(10, rng, 0.5)
    same = R.residual_tests(real, _ar1(8, rng, 0.5), 100.0, n_permutations=199)
    assert all(same[k]["p"] > 0.01 for k in ("covariance", "autocorrelation", "spectrum", "kurtosis"))
    whiter = R.residual_tests(real, _ar1(8, rng, 0.0), 100.0, n_permutations=199)
    assert whiter["autocorrelation"]["p"] <= 0.01 and whiter["spectrum"]["p"] <= 0.01
    mixing = np.eye(N_CH) + 0.8  # correlated channels
    mixed = R.residual_tests(real, np.einsum("cd,inds->incs", mixing, _ar1(8, rng, 0.5)), 100.0,
                             n_permutations=199)
    assert mixed["covariance"]["p"] <= 0.01
    laplace = rng.laplace(size=(N_IMG, 10, N_CH, N_T))
    tails = R.residual_tests(laplace, rng.standard_normal((N_IMG, 8, N_CH, N_T)), 100.0,
                             n_permutations=199)
    # Laplace has excess kurtosis 3; removing a 10-trial mean dilutes it to 3 · Σa⁴ / (Σa²)²
    # with a = (0.9, −0.1 × 9), i.e. ≈ 2.4.
    assert tails["kurtosis"]["reference"] == pytest.approx(2.4, abs=0.35)
    assert tails["kurtosis"]["value"] == pytest.approx(0.0, abs=0.3)
    assert tails["kurtosis"]["p"] <= 0.01


def test_spectral_shape_recovers_a_known_slope_and_alpha_peak():
    freqs = np.arange(1.0, 50.0)
    power = freqs ** -1.5
    power[(freqs >= 9) & (freqs <= 11)] *= np.array([2.0, 4.0, 2.0])
    shape = R.spectral_shape(freqs, power)
    assert shape["slope"] == pytest.approx(-1.5, abs=1e-6)
    assert shape["alpha_peak_hz"] == 10.0 and shape["alpha_excess"] == pytest.approx(np.log10(4))


def test_snr_and_reliability_match_their_formulas_at_any_trial_count():
    rng = np.random.default_rng(3)
    signal_var, noise_var = 0.5, 2.0
    means = rng.standard_normal((400, N_CH, N_T)) * np.sqrt(signal_var)
    for n in (4, 16):
        x = gaussian(n, rng, sd=np.sqrt(noise_var), n_img=400, means=means)
        assert R.single_trial_snr(x) == pytest.approx(signal_var / noise_var, rel=0.1)
        expected = signal_var / (signal_var + noise_var / (n // 2))
        assert R.split_half_reliability(x) == pytest.approx(expected, abs=0.03)


def test_variability_tests_see_a_collapse_a_shrunk_mean_and_homoscedastic_noise():
    rng = np.random.default_rng(4)
    means = rng.standard_normal((N_IMG, N_CH, N_T))
    image_sd = np.exp(rng.normal(0, 0.4, N_IMG))[:, None, None, None]  # image-dependent spread
    real = means[:, None] + image_sd * rng.standard_normal((N_IMG, 16, N_CH, N_T))
    like = means[:, None] + image_sd * rng.standard_normal((N_IMG, 16, N_CH, N_T))
    ok = R.variability_tests(real, like)
    assert all(ok[k]["p"] > 0.01 for k in ("snr", "reliability", "spread", "variability_range"))
    assert ok["variability_pattern"]["value"] > 0.5
    collapsed = means[:, None] + 0.1 * image_sd * rng.standard_normal((N_IMG, 16, N_CH, N_T))
    out = R.variability_tests(real, collapsed)
    assert out["spread"]["value"] == pytest.approx(np.log(0.1), abs=0.02) and out["spread"]["p"] < 1e-6
    homoscedastic = gaussian(16, rng, sd=float(image_sd.mean()), means=means)
    out = R.variability_tests(real, homoscedastic)
    assert out["variability_range"]["value"] < out["variability_range"]["reference"]
    assert out["variability_range"]["p"] <= 0.01
    shrunk = gaussian(16, rng, sd=float(image_sd.mean()), means=0.3 * means)
    out = R.variability_tests(real, shrunk)
    assert out["snr"]["p"] <= 0.01 and out["reliability"]["p"] <= 0.01


def test_classifier_is_at_chance_for_the_same_process_and_sees_a_covariance_change():
    rng = np.random.default_rng(5)
    real = _ar1(8, rng, 0.5)
    same = R.classifier_two_sample_test(real, _ar1(8, rng, 0.5), n_boot=200)
    assert 0.4 < same["value"] < 0.6 and same["p"] > 0.01
    mixing = np.eye(N_CH) + 0.8
    other = R.classifier_two_sample_test(real, np.einsum("cd,inds->incs", mixing, _ar1(8, rng, 0.5)),
                                         n_boot=200)
    assert other["value"] > 0.8 and other["p"] <= 0.01



def test_leading_spatial_components_keep_the_strong_subspace_and_treat_both_sets_alike():
    rng = np.random.default_rng(6)
    real, generated = gaussian(3, rng), gaussian(2, rng)
    same = R.leading_spatial_components(real, generated, N_CH)
    assert same[0] is real and same[1] is generated  # few enough channels: untouched
    # Two strong channels among four: the 2 leading components span them.
    sd = np.array([5.0, 1.0, 4.0, 0.1])[:, None]
    strong = [x * sd for x in (real, generated)]
    a, b = R.leading_spatial_components(*strong, 2)
    assert a.shape == (N_IMG, 3, 2, N_T) and b.shape == (N_IMG, 2, 2, N_T)
    kept = (a ** 2).sum() / (strong[0][:, :, [0, 2]] ** 2).sum()
    assert kept == pytest.approx(1.0, abs=0.01)
    # Labels play no part: swapping the sets swaps the projections.
    b2, a2 = R.leading_spatial_components(strong[1], strong[0], 2)
    np.testing.assert_allclose(np.abs(a2), np.abs(a), rtol=1e-4, atol=1e-4)
    # A covariance change inside the leading components is still seen by the classifier.
    mixing = np.eye(N_CH) + 0.8
    reduced = R.leading_spatial_components(_ar1(8, rng, 0.5),
                                           np.einsum("cd,inds->incs", mixing, _ar1(8, rng, 0.5)), 3)
    assert R.classifier_two_sample_test(*reduced, n_boot=200)["p"] <= 0.01

def test_nearest_distances_by_hand():
    reference = np.array([[0.0, 0.0], [3.0, 4.0]])
    queries = np.array([[0.0, 1.0], [3.0, 5.0], [6.0, 8.0]])
    np.testing.assert_allclose(R.nearest_distances(queries, reference, chunk=2), [1.0, 1.0, 5.0])
    np.testing.assert_allclose(R.nearest_distances(queries, reference, k=2, chunk=2),
                               [[1.0, np.sqrt(18.0)], [1.0, np.sqrt(34.0)], [5.0, 10.0]])
    # One reference row at a time: the k best are carried from chunk to chunk.
    np.testing.assert_allclose(R.nearest_distances(queries, reference, k=2, chunk=1),
                               [[1.0, np.sqrt(18.0)], [1.0, np.sqrt(34.0)], [5.0, 10.0]])
    np.testing.assert_allclose(R.nearest_distances(queries, reference[::-1], chunk=1),
                               [1.0, 1.0, 5.0])


def test_memorisation_sees_copies_of_training_trials_but_not_a_wrong_spread_or_shift():
    rng = np.random.default_rng(6)
    means = rng.standard_normal((N_IMG, N_CH, N_T))
    train_means = rng.standard_normal((200, N_CH, N_T))
    training = gaussian(4, rng, n_img=200, means=train_means)
    real = gaussian(6, rng, means=means)
    new = R.memorisation_test(real, gaussian(6, rng, means=means), training)
    assert new["reference"] == 0.0 and new["value"] == 0.0 and new["p"] == 1.0
    # A third of the spread, or signals drawn toward the training means: both neighbour
    # distances move alike, so neither is taken for copying.
    narrow = R.memorisation_test(real, gaussian(6, rng, sd=0.3, means=means), training)
    near_training = R.memorisation_test(
        real, gaussian(6, rng, sd=0.3, means=train_means[:N_IMG] * 0.5 + means * 0.5), training)
    assert narrow["p"] > 0.01 and near_training["p"] > 0.01
    flat = training.reshape(-1, N_CH, N_T)
    copies = flat[rng.choice(len(flat), N_IMG * 6)].reshape(N_IMG, 6, N_CH, N_T)
    out = R.memorisation_test(real, copies, training)
    assert out["value"] == 1.0 and out["p"] < 1e-6  # ρ = 0 for every copy
    with pytest.raises(ValueError, match="training"):
        R.memorisation_test(real, copies, training[..., :10])


@pytest.fixture(scope="module")
def simulated_means():
    """Noiseless mean responses of 300 new simulated images (no trial jitter), as 2 'trials'."""
    from analysis.config import SimulationSize
    from analysis.data import images as stimuli
    from analysis.data import simulated as sim

    size = SimulationSize(n_subjects=1, n_train_concepts=2, n_train_images_per_concept=1,
                          n_test_concepts=2)
    config = sim.SimulationConfig(size=size, subject_variability=0.0,
                                  effects=sim.ResponseEffects.none())
    info = sim.make_info("eeg", config.sfreq)
    rng = np.random.default_rng(7)
    attributes = stimuli.sample_attributes(stimuli.all_concepts()[::2], 1, rng, "t")
    means = sim.noiseless_responses(attributes, sim.make_subject(config, 1, info), config,
                                    sim.AttributeCodes.draw(0))
    channel_x = np.array([ch["loc"][0] for ch in info["chs"]])
    return np.repeat(means[:, None], 2, axis=1), attributes, config.times, channel_x


def test_attribute_effects_recover_the_simulators_effects_and_vanish_without_the_image(simulated_means):
    signals, attributes, times, channel_x = simulated_means
    effects = R.attribute_effects(signals, attributes, times, channel_x)
    assert set(effects) == set(R.ATTRIBUTE_EFFECTS)
    # Lowest vs highest contrast third differ by ~0.5 in contrast: 30 ms per unit → ~15 ms.
    assert 5.0 < effects["contrast_latency_ms"] < 25.0
    assert effects["lateralisation"] > 0.02 and effects["c1_ratio"] < 0.6
    assert effects["curved_n170"] > 0.05 and effects["curved_p300"] > 0.3
    blind = np.broadcast_to(signals.mean(axis=0), signals.shape)
    none = R.attribute_effects(blind, attributes, times, channel_x)
    assert none["contrast_latency_ms"] == pytest.approx(0.0, abs=1e-6)
    assert none["c1_ratio"] == pytest.approx(1.0) and abs(none["curved_p300"]) < 1e-6
    with pytest.raises(ValueError, match="one per image"):
        R.attribute_effects(signals, attributes.iloc[:5], times, channel_x)


def test_battery_and_verdicts_on_a_real_like_and_an_image_blind_generator(simulated_means):
    means, attributes, times, channel_x = simulated_means
    rng = np.random.default_rng(8)
    truth = means[:, 0].astype(np.float64)
    scale = truth.std() * 3

    def draw(n, centre):
        return centre[:, None] + scale * rng.standard_normal((len(truth), n) + truth.shape[1:])

    real = draw(10, truth)
    training = draw(2, truth)
    tables = []
    for name, generated in (("like", draw(8, truth)),
                            ("blind", draw(8, np.broadcast_to(truth.mean(axis=0), truth.shape)))):
        table = R.battery(real, generated, 100.0, times, training=training,
                          attributes=attributes, channel_x=channel_x, n_boot=200,
                          classifier_images=60)
        tables.append(table.assign(generator=name))
    table = R.verdicts(pd.concat(tables, ignore_index=True))
    assert set(table["test"]) == set(R.TESTS) | set(R.ATTRIBUTE_EFFECTS)
    # Descriptive rows carry no p-value, every other row does.
    assert set(table.loc[table["p"].isna(), "test"]) == {n for n, t in R.TESTS.items() if not t.tested}
    like = table[table.generator == "like"].set_index("test")
    blind = table[table.generator == "blind"].set_index("test")
    tested = like["p"].notna()
    assert like.loc[tested, "passes"].all(), like.loc[~like["passes"].astype(bool) & tested]
    for test in ("energy", "snr", "reliability", "curved_p300", "c1_ratio"):
        assert not blind.loc[test, "passes"], test
    assert blind.loc["variability_pattern", "passes"] is None


def test_holm_within_each_generator():
    table = pd.DataFrame({"generator": ["a", "a", "a", "b"], "test": ["x", "y", "z", "x"],
                          "p": [0.01, 0.03, np.nan, 0.2]})
    out = R.verdicts(table).set_index(["generator", "test"])
    assert out.loc[("a", "x"), "p_holm"] == pytest.approx(0.02)  # 0.01 × 2 (NaN not counted)
    assert out.loc[("a", "y"), "p_holm"] == pytest.approx(0.03)  # 0.03 × 1
    assert out.loc[("b", "x"), "p_holm"] == pytest.approx(0.2)  # another generator, own family
    assert list(out["passes"]) == [False, False, None, True]


def test_inputs_are_checked_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"n >= 2"):
        R.single_trial_snr(np.zeros((3, 1, 2, 5)))
    with pytest.raises(ValueError, match="same images"):
        R.variability_tests(np.zeros((3, 4, 2, 5)), np.zeros((4, 4, 2, 5)))
    with pytest.raises(ValueError, match="finite"):
        R.energy_distance_pvalues(np.full((3, 4, 2, 5), np.nan), np.zeros((3, 4, 2, 5)))

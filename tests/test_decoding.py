"""Decoding-based plausibility checks (analysis.evaluation.decoding) on data with known answers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler

from analysis.evaluation import decoding as dec

SFREQ = 100.0
TIMES = np.round(np.arange(-20, 80) / SFREQ, 6)  # THINGS-EEG2 epoch: -0.2 … 0.79 s


def iid(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def derangement(n, rng):
    """A random permutation with no fixed point."""
    while True:
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm


def binomial_upper(n, p, alpha=1e-4):
    """Largest plausible hit rate of n Bernoulli(p) trials (one-sided, level alpha)."""
    return stats.binom.ppf(1 - alpha, n, p) / n


# --------------------------------------------------------------------------- (a) identification


def test_identical_signals_are_all_identified_with_chance_levels():
    real_avg = iid((50, 4, 20))
    for generated in (real_avg, np.repeat(real_avg[:, None], 3, axis=1)):  # samples averaged
        for metric in ("correlation", "euclidean"):
            res = dec.identification(generated, real_avg, metric=metric)
            assert res.top1 == 1.0 and res.top5 == 1.0
            np.testing.assert_array_equal(res.ranks, np.ones(50))
            assert res.chance_top1 == pytest.approx(1 / 50)
            assert res.chance_top5 == pytest.approx(5 / 50)
            assert res.similarity.shape == (50, 50)


def test_shuffled_images_identify_at_chance_and_the_null_says_so():
    n = 200
    real_avg = iid((n, 8, 25), seed=1)
    generated = real_avg + 0.5 * iid(real_avg.shape, seed=2)  # noisy but image-specific
    shuffled = generated[derangement(n, np.random.default_rng(3))]

    res = dec.identification(shuffled, real_avg)
    assert res.top1 <= binomial_upper(n, 1 / n)
    assert res.top5 <= binomial_upper(n, 5 / n)
    assert np.mean(res.ranks) == pytest.approx((n + 1) / 2, rel=0.15)  # uniform ranks

    null = dec.identification_permutation_null(shuffled, real_avg, n_perm=500, seed=0)
    assert null.null.shape == (500,)
    assert null.null.mean() == pytest.approx(1 / n, abs=0.003)
    assert null.p_value > 0.2

    true = dec.identification_permutation_null(generated, real_avg, n_perm=500, seed=0)
    assert true.observed == dec.identification(generated, real_avg).top1 > 0.9
    assert true.p_value == pytest.approx(1 / 501)
    rank_null = dec.identification_permutation_null(generated, real_avg, n_perm=200,
                                                    statistic="mean_rank")
    assert rank_null.observed < rank_null.null.min() and rank_null.p_value == pytest.approx(1 / 201)


def test_a_generator_without_image_information_identifies_nothing():
    """The same output for every image ties everywhere; ties count against the image."""
    real_avg = iid((30, 4, 20))
    same = np.broadcast_to(iid((4, 20), seed=5), real_avg.shape)
    for metric in ("correlation", "euclidean"):
        res = dec.identification(same, real_avg, metric=metric)
        assert res.top1 == 0.0
        np.testing.assert_array_equal(res.ranks, np.full(30, 30))
    flat = np.zeros_like(real_avg)  # no variance: correlation undefined, never identified
    assert dec.identification(flat, real_avg).top1 == 0.0


def two_feature_sets(n_images=40, n_reps=4, seed=0):
    """Train trials reliable only at channels 0-1 × times 5-9; test averages whose image
    information lives only at channel 3 × times 10-19."""
    rng = np.random.default_rng(seed)
    train = 0.3 * rng.standard_normal((n_images, n_reps, 5, 20))
    train[:, :, 0:2, 5:10] += rng.standard_normal((n_images, 1, 2, 5))
    signal = np.zeros((n_images, 5, 20))
    signal[:, 3, 10:20] = rng.standard_normal((n_images, 10))
    test_real = signal + 0.1 * rng.standard_normal(signal.shape)
    test_generated = signal + 0.1 * rng.standard_normal(signal.shape)
    return train, test_real, test_generated


def test_feature_selection_comes_from_training_data_only():
    train, test_real, test_generated = two_feature_sets()
    mask = dec.select_features_by_reliability(train, k=10)
    assert mask.shape == (5, 20) and mask.dtype == bool and mask.sum() == 10
    expected = np.zeros((5, 20), bool)
    expected[0:2, 5:10] = True
    np.testing.assert_array_equal(mask, expected)
    # The test set's structure cannot enter: the mask is the training one, so the image
    # information of this test set (elsewhere) is not used ...
    assert dec.identification(test_generated, test_real, feature_mask=mask).top1 <= 0.25
    assert dec.identification(test_generated, test_real, feature_mask=mask.ravel()).top1 <= 0.25
    # ... although it is there.
    assert dec.identification(test_generated, test_real).top1 > 0.9
    assert dec.select_features_by_reliability(train, quantile=0.95).sum() == 5
    assert dec.select_features_by_reliability(train, quantile=0.0).sum() == 100
    reliability = dec.feature_reliability(train)
    assert reliability.shape == (5, 20)
    assert reliability[expected].min() > 0.8 > 0.5 > np.abs(reliability[~expected]).max()


# --------------------------------------------------------------------------- (b) transfer


def labelled_data(label_in_generated=True, seed=0):
    """Binary label encoded by a spatial pattern at times 4-8 (of 12), in real single trials
    (40 images × 10 reps) and in generated samples (40 images × 5 samples)."""
    rng = np.random.default_rng(seed)
    n_img, n_ch, n_t = 40, 4, 12
    labels = np.repeat([0, 1], n_img // 2)
    pattern = np.array([1.0, -1.0, 0.5, 0.0])
    course = np.zeros(n_t)
    course[4:9] = 1.0
    sign = np.where(labels == 1, 1.0, -1.0)
    signal = sign[:, None, None] * pattern[:, None] * course
    real = signal[:, None] + rng.standard_normal((n_img, 10, n_ch, n_t))
    gen_sign = sign if label_in_generated else rng.choice([-1.0, 1.0], n_img)
    gen_signal = gen_sign[:, None, None] * pattern[:, None] * course
    generated = gen_signal[:, None] + 0.5 * rng.standard_normal((n_img, 5, n_ch, n_t))
    return dec.stack_examples(real, labels), dec.stack_examples(generated, labels)


def test_transfer_decoding_works_both_ways_when_both_carry_the_label():
    (X, y, g), (Xg, yg, gg) = labelled_data()
    assert X.shape == (400, 4, 12) and Xg.shape == (200, 4, 12)
    times = np.arange(12) / SFREQ
    df = dec.transfer_decoding(X, y, Xg, yg, times, groups_train=g, groups_test=gg)
    assert list(df.columns) == ["direction", "train", "test", "time", "accuracy", "chance",
                                "scoring", "n_train", "n_test"]
    assert set(df["direction"]) == {"real→generated", "generated→real", "real→real (cv)",
                                    "generated→generated (cv)"}
    assert (df["chance"] == 0.5).all() and len(df) == 4 * 12
    inside = df[df["time"].between(times[4], times[8])].groupby("direction")["accuracy"].mean()
    outside = df[~df["time"].between(times[4], times[8])].groupby("direction")["accuracy"].mean()
    assert (inside > 0.85).all(), inside
    assert (outside - 0.5).abs().max() < 0.1, outside
    cv_row = df[df["direction"] == "real→real (cv)"].iloc[0]
    assert (cv_row["n_train"], cv_row["n_test"]) == (320, 80)  # whole images per fold

    window = dec.transfer_decoding(X, y, Xg, yg, time_resolved=False, classifier="lda",
                                   groups_train=g, groups_test=gg)
    assert len(window) == 4 and window["time"].isna().all()
    assert (window["accuracy"] > 0.85).all()


def test_transfer_decoding_is_at_chance_when_generated_lacks_the_label():
    (X, y, g), (Xg, yg, gg) = labelled_data(label_in_generated=False)
    df = dec.transfer_decoding(X, y, Xg, yg, time_resolved=False, within=False,
                               groups_train=g, groups_test=gg)
    acc = df.set_index("direction")["accuracy"]
    # 200 generated examples of 40 images with random label signs: chance ± 3 SD of 40 images.
    tolerance = 3 * np.sqrt(0.25 / 40)
    assert abs(acc["real→generated"] - 0.5) < tolerance
    assert abs(acc["generated→real"] - 0.5) < tolerance


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_chance_is_the_majority_rate_or_one_over_classes():
    (X, y, g), (Xg, yg, gg) = labelled_data()
    y3 = np.where(np.arange(len(y)) % 40 < 10, 2, y)  # classes 0, 1, 2: 150, 150, 100 trials
    df = dec.transfer_decoding(X, y3, Xg, yg, time_resolved=False, within=False,
                               scoring="balanced_accuracy")
    assert df.set_index("direction").loc["generated→real", "chance"] == pytest.approx(1 / 3)
    acc = dec.transfer_decoding(X, y3, Xg, yg, time_resolved=False, within=False)
    assert acc.set_index("direction").loc["generated→real", "chance"] == pytest.approx(150 / 400)


# --------------------------------------------------------------------------- (c) real vs generated


def test_same_distribution_gives_auc_near_half_and_a_shift_near_one():
    n = 200  # per class: the SD of a mean over 5 folds is ~0.03, so ±0.1 is ~3 SD
    real, same = iid((n, 3, 10), seed=1), iid((n, 3, 10), seed=2)
    res = dec.real_vs_generated_auc(real, same, n_permutations=19)
    assert abs(res.auc - 0.5) < 0.1
    assert res.fold_aucs.shape == (5,) and res.null.shape == (19,)
    assert res.p_value > 0.05 and (res.n_real, res.n_generated) == (n, n)

    shifted = dec.real_vs_generated_auc(real, same + 1.0, n_permutations=19)
    assert shifted.auc > 0.95
    assert shifted.p_value == pytest.approx(1 / 20)


def test_auc_in_principal_components_equals_the_fit_on_the_standardised_features():
    # More features (3 × 40) than examples (2 × 30): the basis change is exact only because
    # an L2 fit's weights lie in the span of its examples; the fold AUCs must not move.
    real, generated = iid((30, 3, 40), seed=5), 1.3 * iid((30, 3, 40), seed=6)
    res = dec.real_vs_generated_auc(real, generated, cv=3, seed=2, n_permutations=0)
    x = StandardScaler().fit_transform(np.concatenate([real, generated]).reshape(60, -1))
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    direct = cross_val_score(LogisticRegression(C=0.01, solver="liblinear", random_state=2),
                             x, y, cv=StratifiedKFold(3, shuffle=True, random_state=2),
                             scoring="roc_auc")
    np.testing.assert_allclose(res.fold_aucs, direct, atol=1e-9)


def test_log_power_features_catch_what_a_linear_signal_classifier_cannot():
    real = iid((20, 10, 3, 16), seed=3)  # 4-D: (n_images, n_reps, …) → 200 examples
    louder = 3.0 * iid((200, 3, 16), seed=4)  # same mean, three times the amplitude
    assert abs(dec.real_vs_generated_auc(real, louder, n_permutations=0).auc - 0.5) < 0.1
    res = dec.real_vs_generated_auc(real, louder, features="log_power", n_permutations=0)
    assert res.auc > 0.95 and np.isnan(res.p_value)
    assert dec.real_vs_generated_auc(real, louder, features="both", n_permutations=0).auc > 0.95


# --------------------------------------------------------------------------- (d) signal statistics


def test_power_spectrum_of_a_10_hz_sine_peaks_at_10_hz():
    t = np.arange(200) / SFREQ
    x = np.broadcast_to(np.sin(2 * np.pi * 10 * t), (3, 2, 200))
    freqs, psd = dec.power_spectra(x, SFREQ)
    assert psd.shape == freqs.shape
    assert freqs[np.argmax(psd)] == pytest.approx(10.0)
    freqs, psd = dec.power_spectra(x[..., :100], SFREQ, fmin=5, fmax=20)  # 100-sample epochs
    assert freqs.min() >= 5 and freqs.max() <= 20 and freqs[np.argmax(psd)] == pytest.approx(10.0)


def gaussian(t, latency, width):
    return np.exp(-0.5 * ((t - latency) / width) ** 2)


def test_erp_peaks_find_gaussian_bumps_to_the_sample():
    wave = 2.5 * gaussian(TIMES, 0.10, 0.01) - 1.5 * gaussian(TIMES, 0.17, 0.015) \
        + 0.8 * gaussian(TIMES, 0.35, 0.03)
    peaks = dec.erp_peaks(wave, TIMES).set_index("component")
    assert list(peaks.index) == ["P1", "N1", "P3"]
    np.testing.assert_allclose(peaks["latency"], [0.10, 0.17, 0.35], atol=1e-9)
    np.testing.assert_allclose(peaks["amplitude"], [2.5, -1.5, 0.8], atol=1e-3)
    np.testing.assert_array_equal(peaks["polarity"], [1, -1, 1])
    assert not peaks["at_edge"].any()
    # Channels are averaged over picks; explicit polarity; a peak on a bound is flagged.
    channels = np.stack([wave, 3 * wave, -wave])
    picked = dec.erp_peaks(channels, TIMES, {"early": (0.05, 0.14, "P")}, picks=[0, 1])
    assert picked.loc[0, "latency"] == pytest.approx(0.10)
    assert picked.loc[0, "amplitude"] == pytest.approx(5.0, abs=1e-3)
    assert dec.erp_peaks(wave, TIMES, {"P": (0.12, 0.16)}).loc[0, "at_edge"]


def test_compare_signal_statistics_reports_both_sources_and_a_latency_shift():
    rng = np.random.default_rng(0)
    real = gaussian(TIMES, 0.10, 0.01) - gaussian(TIMES, 0.17, 0.015)
    real = real[None, None] + 0.01 * rng.standard_normal((10, 4, 3, 100))
    generated = np.roll(real.mean(axis=1), 2, axis=-1)  # 20 ms later, averaged
    df = dec.compare_signal_statistics(real, generated, SFREQ, TIMES,
                                       windows={"P1": (0.05, 0.14), "N1": (0.15, 0.22)})
    assert list(df.columns) == ["source", "statistic", "feature", "value"]
    assert set(df["source"]) == {"real", "generated"}
    assert set(df["statistic"]) == {"band_power", "rms", "peak_latency", "peak_amplitude"}
    assert set(df.query("statistic == 'band_power'")["feature"]) == set(dec.DEFAULT_BANDS)
    wide = df.pivot_table(index=["statistic", "feature"], columns="source", values="value")
    shift = wide.loc["peak_latency", "generated"] - wide.loc["peak_latency", "real"]
    np.testing.assert_allclose(shift, 0.02, atol=1e-9)
    same = dec.compare_signal_statistics(real, real, SFREQ, TIMES)
    same = same.pivot_table(index=["statistic", "feature"], columns="source", values="value")
    np.testing.assert_allclose(same["real"], same["generated"])


# --------------------------------------------------------------------------- plots


def test_plot_helpers_return_figures():
    real_avg = iid((20, 4, 12))
    res = dec.identification(real_avg + 0.5 * iid(real_avg.shape, seed=1), real_avg)
    (X, y, g), (Xg, yg, _) = labelled_data()
    curves = dec.transfer_decoding(X[:, :, :3], y, Xg[:, :, :3], yg, within=False)
    window = dec.transfer_decoding(X, y, Xg, yg, time_resolved=False, within=False)
    freqs, psd = dec.power_spectra(real_avg, SFREQ)
    wave = gaussian(TIMES, 0.1, 0.01)
    figures = [
        dec.plot_identification_ranks(res),
        dec.plot_transfer_curves(curves),
        dec.plot_transfer_curves(window),
        dec.plot_spectra(freqs, {"real": psd, "generated": psd / 2}),
        dec.plot_erp_comparison(TIMES, {"real": wave, "generated": np.stack([wave, wave])}),
    ]
    for fig in figures:
        assert isinstance(fig, Figure) and fig.axes
        plt.close(fig)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("call, message", [
    (lambda: dec.identification(iid((5, 2, 3)), iid((6, 2, 3))),
     r"generated: expected 6 images × \(2, 3\) \(as real_avg\), found shape \(5, 2, 3\)"),
    (lambda: dec.identification(iid((5, 2, 3)), iid((5, 2, 3)), metric="cosine"),
     r"metric: expected one of \['correlation', 'euclidean'\], found 'cosine'"),
    (lambda: dec.identification(iid((5, 2, 3)), iid((5, 6))),
     r"real_avg: expected shape \(n_images, n_channels, n_times\), found shape \(5, 6\)"),
    (lambda: dec.identification(iid((5, 2, 3)), iid((5, 2, 3)), feature_mask=np.ones((3, 2), bool)),
     r"feature_mask: expected a boolean array of shape \(2, 3\) or \(6,\), "
     r"found dtype bool, shape \(3, 2\)"),
    (lambda: dec.identification(np.full((5, 2, 3), np.nan), iid((5, 2, 3))),
     r"generated: expected only finite values, found 30 NaN/inf"),
    (lambda: dec.identification_permutation_null(iid((5, 2, 3)), iid((5, 2, 3)), n_perm=0),
     r"n_perm: expected a positive integer, found 0"),
    (lambda: dec.select_features_by_reliability(iid((5, 2, 2, 3)), k=3, quantile=0.5),
     r"k / quantile: expected exactly one of them, found k=3, quantile=0.5"),
    (lambda: dec.select_features_by_reliability(iid((5, 2, 2, 3)), k=7),
     r"k: expected an integer in \[1, 6\] \(n_channels \* n_times\), found 7"),
    (lambda: dec.select_features_by_reliability(iid((5, 1, 2, 3)), k=2),
     r"train_trials: expected at least 2 repetitions on axis 1 for split halves, "
     r"found shape \(5, 1, 2, 3\)"),
    (lambda: dec.transfer_decoding(iid((10, 2, 3)), [0, 1] * 5, iid((10, 2, 3)), [0, 1] * 5,
                                   times=[0, 1]),
     r"times: expected shape \(3,\) \(n_times of X_train\), found shape \(2,\)"),
    (lambda: dec.transfer_decoding(iid((10, 2, 3)), [0] * 10, iid((10, 2, 3)), [0, 1] * 5),
     r"y_train: expected at least 2 classes, found 1"),
    (lambda: dec.transfer_decoding(iid((10, 2, 3)), [0, 1] * 5, iid((10, 4, 3)), [0, 1] * 5),
     r"X_test: expected the same \(n_channels, n_times\) as X_train \(2, 3\), found \(4, 3\)"),
    (lambda: dec.transfer_decoding(iid((10, 2, 3)), [0, 1] * 5, iid((10, 2, 3)), [0, 1] * 5, cv=6),
     r"y_train: expected at least cv=6 examples of every class, found class counts \[5, 5\]"),
    (lambda: dec.stack_examples(iid((4, 2, 2, 3)), [0, 1, 1]),
     r"image_labels: expected shape \(4,\) \(one per image\), found shape \(3,\)"),
    (lambda: dec.real_vs_generated_auc(iid((10, 2, 3)), iid((10, 2, 4))),
     r"generated: expected the same \(n_channels, n_times\) as real \(2, 3\), found \(2, 4\)"),
    (lambda: dec.real_vs_generated_auc(iid((10, 2, 3)), iid((10, 2, 3)), features="psd"),
     r"features: expected one of \['signal', 'log_power', 'both'\], found 'psd'"),
    (lambda: dec.power_spectra(iid((2, 50)), SFREQ, n_fft=64),
     r"n_fft: expected an integer in \[2, 50\] \(n_times\), found 64"),
    (lambda: dec.erp_peaks(iid(100), TIMES, {"P1": (0.9, 1.0)}),
     r"windows\['P1'\]: expected samples within times \[-0.2, 0.79\] s, found \(0.9, 1\) s"),
    (lambda: dec.erp_peaks(iid(100), TIMES, {"early": (0.1, 0.2)}),
     r"windows\['early'\]: expected \(tmin, tmax\) with a name starting with P or N"),
    (lambda: dec.erp_peaks(iid(100), TIMES[:-1]),
     r"times: expected shape \(100,\) \(n_times of grand_average\), found shape \(99,\)"),
])
def test_argument_errors_name_the_argument_and_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()

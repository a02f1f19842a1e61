"""Every evaluation function on simulated trials vs the ridge baseline, at `ci` size.

Issue 4's acceptance: the whole battery runs in under a minute on the built-in dataset.
The time is printed (benchmarks are recorded, not asserted); the numbers are checked.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from analysis.data import simulated as sim
from analysis.evaluation import decoding, metrics, topography
from analysis.evaluation.noise_ceiling import exact_ceiling
from analysis.models.baselines import MeanResponse, RidgeEncoder


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci")
    sim.simulate_dataset(root, sim.config_for_profile("ci"), progress=False)
    return [sim.load_simulated(root, s) for s in (1, 2)]


def attribute_features(dataset):
    """Image attributes as features: what a good image encoder would make available."""
    table = pd.read_csv(dataset.meta["image_attributes"]).set_index("image_id")
    numeric = ["size", "x", "y", "spatial_frequency", "contrast", "clutter"]
    onehot = pd.get_dummies(table[["shape", "hue", "texture"]]).astype(float)
    frame = pd.concat([table[numeric], onehot], axis=1)
    return (frame.loc[dataset.train.image_ids].to_numpy(), frame.loc[dataset.test.image_ids].to_numpy())


def test_the_whole_evaluation_battery_on_ridge_predictions(subjects):
    start = time.perf_counter()
    predictions, real = {}, {}
    for dataset in subjects:
        x_train, x_test = attribute_features(dataset)
        ridge = RidgeEncoder().fit(x_train, dataset.train.average())
        predictions[dataset.meta["subject"]] = ridge.predict(x_test)
        real[dataset.meta["subject"]] = dataset.test.average()
    dataset = subjects[0]
    pred, trials = predictions[1], dataset.test.signals
    mean_pred = MeanResponse().fit(x_train, dataset.train.average()).predict(x_test)

    # Fidelity: ridge on the true attributes beats the mean response, below the exact ceiling.
    ridge_summary = metrics.fidelity_summary(pred, trials, dataset.noiseless["test"], n_boot=200)
    mean_summary = metrics.fidelity_summary(mean_pred, trials, dataset.noiseless["test"], n_boot=200)
    row = ridge_summary.query("metric == 'encoding_score' and ceiling_method == 'exact'").iloc[0]
    assert 0 < row["value"] <= row["ceiling"] + 0.05
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    mean_row = mean_summary.query("metric == 'encoding_score' and ceiling_method == 'exact'")
    assert np.isnan(mean_row.iloc[0]["value"])  # constant across images: undefined, not lucky
    assert exact_ceiling(dataset.noiseless["test"], trials).encoding_mean > 0
    metrics.plot_fidelity({"ridge": ridge_summary}).clf()

    # Topography: intra-subject per window, inter-subject own-vs-other.
    times = dataset.times
    maps_real = topography.window_maps(real[1], times)
    maps_pred = topography.window_maps(pred, times)
    assert (topography.spatial_correlation(maps_real, maps_pred) > 0.5).all()
    own = topography.own_vs_other_index(
        {s: topography.window_maps(p, times) for s, p in predictions.items()},
        {s: topography.window_maps(r, times) for s, r in real.items()})
    assert own.index > 0  # ridge fit per subject keeps each subject's own topography

    # Decoding: identification well above chance, AUC of averages vs predictions reported.
    mask = decoding.select_features_by_reliability(dataset.train.signals, quantile=0.8)
    ident = decoding.identification(pred, real[1], feature_mask=mask)
    assert ident.top1 > 3 * ident.chance_top1
    auc = decoding.real_vs_generated_auc(real[1], pred, cv=5, n_permutations=10)
    assert 0.0 <= auc.auc <= 1.0
    stats = decoding.compare_signal_statistics(real[1], pred, dataset.sfreq, times)
    assert set(stats["source"]) == {"real", "generated"}

    seconds = time.perf_counter() - start
    print(f"\nevaluation battery on ci-size simulated data: {seconds:.1f} s")

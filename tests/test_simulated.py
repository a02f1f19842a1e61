"""The built-in simulated dataset: determinism, format round trip, and its ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.config import SimulationSize
from analysis.data import images as stimuli
from analysis.data import simulated as sim
from analysis.data.things_eeg2 import CHANNELS, load_things_eeg2

TINY = SimulationSize(n_subjects=2, n_train_concepts=8, n_train_images_per_concept=2,
                      n_test_concepts=10, n_train_reps=2, n_test_reps=32, image_size=64)


def tiny_config(**overrides) -> sim.SimulationConfig:
    return sim.SimulationConfig(size=TINY, **overrides)


@pytest.fixture(scope="module")
def eeg_info():
    return sim.make_info("eeg", 100.0)


@pytest.fixture(scope="module")
def stimuli_tables():
    return sim.draw_stimuli(tiny_config())


def simulate(config, subject, stimuli_tables, info):
    train, test = stimuli_tables
    return sim.simulate_subject(config, subject, train, test, info,
                                sim.AttributeCodes.draw(config.seed))


def corr(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def check_average_matches_truth(trials, noiseless, tolerance):
    """The trial average must correlate with the noiseless mean, image by image, as well as
    sqrt(S / (S + N/n)) predicts for its image-specific part; a wrong image order gives ~0."""
    specific = noiseless - noiseless.mean(axis=0)
    average = trials.mean(axis=1)
    noise_var = (trials - noiseless[:, None]).var() / trials.shape[1]
    expected = np.sqrt(specific.var() / (specific.var() + noise_var))
    assert corr(average - average.mean(axis=0), specific) == pytest.approx(expected, abs=tolerance)


# ------------------------------------------------------------------ stimuli


def test_train_and_test_concepts_are_disjoint_and_200_test_concepts_fit():
    rng = np.random.default_rng(0)
    train, test = stimuli.split_concepts(370, 200, rng)
    assert len(test) == 200 and len(train) == 370
    assert not {c.name for c in train} & {c.name for c in test}


def test_asking_for_too_many_concepts_names_the_limit():
    with pytest.raises(ValueError, match="only 576"):
        stimuli.split_concepts(500, 200, np.random.default_rng(0))


def test_rendering_is_deterministic_and_reflects_attributes():
    rng = np.random.default_rng(1)
    table = stimuli.sample_attributes([stimuli.Concept("circle", "red", "solid")], 1, rng, "s")
    row = table.iloc[0].copy()
    row.update({"x": 0.0, "y": 0.0, "clutter": 0.0, "contrast": 1.0, "size": 0.3})
    image = stimuli.render_image(row, 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, stimuli.render_image(row, 64))
    centre, corner = image[32, 32], image[1, 1]
    assert centre[0] > centre[2] + 100  # a red figure…
    np.testing.assert_allclose(corner, 128, atol=1)  # …on mid-grey, uncluttered background
    low = stimuli.render_image({**row, "contrast": 0.25}, 64)
    assert np.abs(low[32, 32].astype(int) - 128).max() < np.abs(centre.astype(int) - 128).max()


# ------------------------------------------------------------------ responses and noise


def test_simulation_is_deterministic_given_the_seed(stimuli_tables, eeg_info):
    a = simulate(tiny_config(seed=3), 1, stimuli_tables, eeg_info)
    b = simulate(tiny_config(seed=3), 1, stimuli_tables, eeg_info)
    c = simulate(tiny_config(seed=4), 1, stimuli_tables, eeg_info)
    for key in ("train", "test", "test_noiseless"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["test"], c["test"])


def test_shapes_and_dtypes(stimuli_tables, eeg_info):
    out = simulate(tiny_config(), 1, stimuli_tables, eeg_info)
    assert out["train"].shape == (16, 2, 17, 100)
    assert out["test"].shape == (10, 32, 17, 100)
    assert out["test_noiseless"].shape == (10, 17, 100)
    assert out["train"].dtype == np.float32 and np.isfinite(out["train"]).all()


def test_repetitions_average_toward_the_noiseless_mean(stimuli_tables, eeg_info):
    out = simulate(tiny_config(), 1, stimuli_tables, eeg_info)
    truth = out["test_noiseless"][:, None]
    noise = out["test"] - truth
    # Independent trial noise: the error of an n-trial average falls like 1/n in power.
    mse = {n: float((noise[:, :n].mean(axis=1) ** 2).mean()) for n in (1, 4, 16, 32)}
    for n in (4, 16, 32):
        assert mse[1] / mse[n] == pytest.approx(n, rel=0.35)
    # …and the average correlates with the truth as sqrt(S / (S + N/n)) predicts.
    signal_var, noise_var = out["test_noiseless"].var(), noise.var() / 32
    expected = np.sqrt(signal_var / (signal_var + noise_var))
    assert corr(out["test"].mean(axis=1), out["test_noiseless"]) == pytest.approx(expected, abs=0.03)


def test_noise_is_calibrated_to_the_requested_snr(stimuli_tables, eeg_info):
    # Trial noise only: jitter and gain (see the trial-effect tests) are signal variability.
    config = tiny_config(trial_snr=0.2, subject_variability=0.0, effects=sim.ResponseEffects.none())
    out = simulate(config, 1, stimuli_tables, eeg_info)
    noiseless = np.concatenate([out["train_noiseless"], out["test_noiseless"]])
    specific = noiseless - noiseless.mean(axis=0)
    noise = out["test"] - out["test_noiseless"][:, None]
    assert specific.var() / noise.var() == pytest.approx(0.2, rel=0.1)


def test_noise_is_spatially_correlated_and_has_a_falling_spectrum(eeg_info):
    config = tiny_config()
    subject = sim.make_subject(config, 1, eeg_info)
    noise = sim.trial_noise(np.random.default_rng(0), 400, subject, 100.0, config.times)
    channel_corr = np.corrcoef(noise.transpose(1, 0, 2).reshape(17, -1))
    assert np.abs(channel_corr[np.triu_indices(17, 1)]).mean() > 0.2  # volume conduction
    power = (np.abs(np.fft.rfft(noise, axis=-1)) ** 2).mean(axis=(0, 1))
    freqs = np.fft.rfftfreq(100, 0.01)
    assert power[(freqs >= 2) & (freqs <= 4)].mean() > 2 * power[(freqs >= 30) & (freqs <= 45)].mean()
    alpha, beta = power[(freqs >= 9) & (freqs <= 11)].mean(), power[(freqs >= 14) & (freqs <= 16)].mean()
    assert alpha > beta  # an alpha bump on top of 1/f


REGION_NAMES = np.array([r.name for r in sim.REGIONS])


def _changed_regions(base: pd.DataFrame, **change) -> set[str]:
    times = tiny_config().times
    codes = sim.AttributeCodes.draw(0)
    changed = base.copy()
    for column, value in change.items():
        changed[column] = value
    # The default tuning (hemifield-dependent shape code, shape × hue) without latency jitter,
    # which would let contrast and clutter smear every region's mean (tested below).
    effects = sim.ResponseEffects(latency_sd_s=0.0, late_latency_sd_s=0.0)
    delta = np.abs(sim.source_waveforms(changed, times, codes, effects=effects)
                   - sim.source_waveforms(base, times, codes, effects=effects)).max(axis=(0, 2))
    return set(REGION_NAMES[delta > 1e-9])


@pytest.mark.parametrize("change, regions", [
    ({"contrast": 0.3}, {"early_visual", "ventral_occipital"}),  # colour signal scales with contrast
    ({"x": 0.15}, {"early_visual", "lateral_occipital"}),  # the shape code depends on the field
    ({"y": 0.15}, {"early_visual"}),
    ({"hue": "blue"}, {"ventral_occipital"}),
    ({"texture": "striped"}, {"ventral_occipital"}),
    ({"shape": "square", "curved": False},  # ventral occipital: the shape × hue interaction
     {"ventral_occipital", "lateral_occipital", "ventral_temporal", "parietal"}),
    ({"clutter": 0.9}, {"lateral_occipital", "parietal"}),
])
def test_attribute_changes_move_the_response_only_in_their_regions(change, regions):
    base = pd.DataFrame([{"shape": "circle", "curved": True, "hue": "red", "texture": "solid",
                          "size": 0.3, "x": 0.0, "y": 0.0, "spatial_frequency": 6.0,
                          "contrast": 0.8, "clutter": 0.1, "rotation": 0.0}])
    assert _changed_regions(base, **change) == regions


def test_a_region_change_reaches_the_sensors_through_its_lead_field(stimuli_tables, eeg_info):
    config = tiny_config(effects=sim.ResponseEffects(position_tuning=0.0))
    subject = sim.make_subject(config, 1, eeg_info)
    codes = sim.AttributeCodes.draw(0)
    train, _ = stimuli_tables
    base = train.iloc[:1].copy()
    moved = base.assign(x=-0.2)  # left visual field → right early visual cortex responds more
    delta = (sim.noiseless_responses(moved, subject, config, codes)
             - sim.noiseless_responses(base, subject, config, codes))[0]
    early = np.flatnonzero(REGION_NAMES == "early_visual")
    spatial = np.linalg.svd(delta, full_matrices=False)[0][:, :2]  # ≤ 2 sources changed
    residual = subject.lead_field[:, early] - spatial @ (spatial.T @ subject.lead_field[:, early])
    assert np.linalg.norm(residual) < 1e-6 * np.linalg.norm(subject.lead_field[:, early])


def test_subjects_differ_by_the_configured_amount(stimuli_tables, eeg_info):
    similarity = {}
    for variability in (0.0, 0.5, 2.0):
        config = tiny_config(subject_variability=variability)
        s1 = simulate(config, 1, stimuli_tables, eeg_info)["test_noiseless"]
        s2 = simulate(config, 2, stimuli_tables, eeg_info)["test_noiseless"]
        similarity[variability] = corr(s1, s2)
    assert similarity[0.0] == pytest.approx(1.0, abs=1e-6)  # identical heads and sources
    assert 1.0 > similarity[0.5] > similarity[2.0]


# ------------------------------------------------------------------ trial-level effects


def _one_image(**change) -> pd.DataFrame:
    row = {"shape": "circle", "curved": True, "hue": "red", "texture": "solid", "size": 0.3,
           "x": 0.0, "y": 0.0, "spatial_frequency": 6.0, "contrast": 0.8, "clutter": 0.1,
           "rotation": 0.0}
    row.update(change)
    return pd.DataFrame([row])


def _peaks(waveforms: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak time (s) and signed peak value of single-component waveforms (n, n_times)."""
    index = np.abs(waveforms).argmax(axis=1)
    return times[index], waveforms[np.arange(len(waveforms)), index]


@pytest.mark.parametrize("contrast, clutter", [(1.0, 0.0), (0.25, 0.8)])
def test_single_trials_carry_the_configured_jitter_and_gain(contrast, clutter):
    """Peak latencies and amplitudes of noise-free single trials (1 kHz, one component per
    region) have the configured spreads, larger for a low-contrast, cluttered image."""
    effects = sim.ResponseEffects()
    times = np.arange(-0.1, 0.8, 0.001)
    image = _one_image(contrast=contrast, clutter=clutter)
    rows = image.iloc[np.zeros(4000, int)]
    draws = sim.TrialDraws.draw(np.random.default_rng(0), rows, effects)
    trials = sim.source_waveforms(rows, times, sim.AttributeCodes.draw(0), effects=effects,
                                  trials=draws)
    scale = 1 + effects.contrast_jitter * (1 - contrast) + effects.clutter_jitter * clutter
    parietal = list(REGION_NAMES).index("parietal")
    lateral = list(REGION_NAMES).index("lateral_occipital")
    late_t, late_peak = _peaks(trials[:, parietal], times)
    early_t, _ = _peaks(trials[:, lateral], times)
    assert late_t.std() == pytest.approx(effects.late_latency_sd_s * scale, rel=0.06)
    assert early_t.std() == pytest.approx(effects.latency_sd_s * scale, rel=0.1)
    # Every component of a trial moves together: the early shift is one number per trial.
    np.testing.assert_allclose(early_t - early_t.mean(), draws.latency_s[:, 0]
                               - draws.latency_s[:, 0].mean(), atol=0.0011)
    assert np.log(np.abs(late_peak)).std() == pytest.approx(effects.gain_sd, rel=0.06)
    assert draws.gain.mean() == pytest.approx(1.0, abs=0.02)


def test_the_noiseless_mean_is_the_expectation_of_the_trials():
    """The closed-form expectation (Gaussian components widened by the jitter) equals the
    Monte-Carlo mean of many trials, and is smeared (lower, wider) relative to one trial."""
    effects = sim.ResponseEffects()
    times = tiny_config().times
    codes = sim.AttributeCodes.draw(0)
    image = _one_image(contrast=0.4, clutter=0.6)
    rows = image.iloc[np.zeros(20000, int)]
    draws = sim.TrialDraws.draw(np.random.default_rng(1), rows, effects)
    trials = sim.source_waveforms(rows, times, codes, effects=effects, trials=draws)
    expected = sim.source_waveforms(image, times, codes, effects=effects)[0]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(trials.mean(axis=0), expected, atol=0.02 * scale)
    unjittered = sim.source_waveforms(image, times, codes,
                                      effects=sim.ResponseEffects(latency_sd_s=0.0,
                                                                  late_latency_sd_s=0.0))[0]
    parietal = list(REGION_NAMES).index("parietal")
    assert np.abs(expected[parietal]).max() < 0.9 * np.abs(unjittered[parietal]).max()


def test_the_shape_code_depends_on_the_hemifield_and_colour_interacts_with_shape():
    times = tiny_config().times
    codes = sim.AttributeCodes.draw(0)
    lateral = list(REGION_NAMES).index("lateral_occipital")
    ventral = list(REGION_NAMES).index("ventral_occipital")
    still = sim.ResponseEffects(latency_sd_s=0.0, late_latency_sd_s=0.0)

    def amplitude(region, effects, **attrs):
        wave = sim.source_waveforms(_one_image(**attrs), times, codes, effects=effects)[0, region]
        return wave[np.abs(wave).argmax()]

    # Left- vs right-field difference between two shapes: zero without position tuning.
    def field_dependence(effects):
        diff = {x: amplitude(lateral, effects, x=x, shape="star")
                - amplitude(lateral, effects, x=x, shape="cross") for x in (-0.15, 0.15)}
        return abs(diff[0.15] - diff[-0.15])
    assert field_dependence(still) > 0.05
    assert field_dependence(sim.ResponseEffects(latency_sd_s=0.0, late_latency_sd_s=0.0,
                                                position_tuning=0.0)) < 1e-9

    # Interaction contrast of a 2 × 2 shape × hue design: zero for additive codes.
    def interaction(effects):
        a = {(s, h): amplitude(ventral, effects, shape=s, hue=h, texture="solid")
             for s in ("star", "cross") for h in ("red", "blue")}
        return abs(a["star", "red"] - a["star", "blue"] - a["cross", "red"] + a["cross", "blue"])
    assert interaction(still) > 0.05
    assert interaction(sim.ResponseEffects(latency_sd_s=0.0, late_latency_sd_s=0.0,
                                           shape_hue=0.0)) < 1e-9


def test_without_effects_the_simulator_is_mean_plus_noise(stimuli_tables, eeg_info):
    """ResponseEffects.none(): the trials minus their noiseless mean are the noise process
    alone (the same for every image), as in versions before trial effects."""
    config = tiny_config(effects=sim.ResponseEffects.none())
    out = simulate(config, 1, stimuli_tables, eeg_info)
    assert (out["test_truth"]["latency_s"] == 0).all() and (out["test_truth"]["gain"] == 1).all()
    with_effects = simulate(tiny_config(), 1, stimuli_tables, eeg_info)
    # Same noise stream either way: the difference of the two datasets is signal only.
    difference = (with_effects["test"] - with_effects["test_noiseless"][:, None]) - (
        out["test"] - out["test_noiseless"][:, None])
    assert np.abs(difference).max() > 0  # jitter and gain change the trials…
    noise = out["test"] - out["test_noiseless"][:, None]
    assert np.abs(difference).std() < noise.std()  # …by less than the noise


# ------------------------------------------------------------------ files on disk


@pytest.fixture(scope="module")
def eeg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "eeg"
    sim.simulate_dataset(root, tiny_config(), progress=False)
    return root


def test_dataset_is_written_in_the_things_eeg2_format(eeg_root):
    dataset = load_things_eeg2(eeg_root, 1)  # the real loader, nothing simulation-specific
    assert dataset.train.signals.shape == (16, 2, 17, 100)
    assert dataset.test.signals.shape == (10, 32, 17, 100)
    assert dataset.meta["variant"] == "official-17ch-100Hz"
    assert dataset.ch_names == list(CHANNELS["official"])
    assert all(p.is_file() for p in dataset.test.image_paths)


def test_load_simulated_adds_noiseless_means_and_settings(eeg_root):
    dataset = sim.load_simulated(eeg_root, 2)
    assert dataset.meta["dataset"] == "simulated" and dataset.meta["units"] == "µV"
    assert dataset.noiseless["test"].shape == (10, 17, 100)
    check_average_matches_truth(dataset.test.signals, dataset.noiseless["test"], 0.05)
    attributes = pd.read_csv(dataset.meta["image_attributes"])
    assert list(attributes.query("split == 'test'")["image_id"]) == dataset.test.image_ids
    assert sim.config_from_meta(dataset.meta).effects == sim.ResponseEffects()


def test_every_trials_jitter_and_gain_are_saved(eeg_root):
    truth = sim.load_trial_truth(eeg_root, 1, "test")
    assert truth["latency_s"].shape == (10, 32, 2) and truth["gain"].shape == (10, 32)
    attributes = pd.read_csv(eeg_root / "image_set" / "image_attributes.csv").query("split == 'test'")
    expected_sd = sim.ResponseEffects().latency_sd(attributes)
    np.testing.assert_allclose(truth["latency_sd_s"], expected_sd)
    # The drawn shifts have the recorded spread (pooled over images, in units of each sd).
    z = truth["latency_s"] / truth["latency_sd_s"][:, None]
    assert z.std() == pytest.approx(1.0, abs=0.1)
    with pytest.raises(FileNotFoundError, match="trial_truth"):
        sim.load_trial_truth(eeg_root, 9)


def test_manifests_from_before_trial_effects_load_as_none(eeg_root):
    meta = {"simulation": {**json.loads((eeg_root / "simulation.json").read_text())["config"]}}
    meta["simulation"].pop("effects")
    assert sim.config_from_meta(meta).effects == sim.ResponseEffects.none()


def test_rerun_resumes_without_rewriting_and_adds_subjects(eeg_root):
    data_file = eeg_root / "preprocessed_data" / "sub-01" / "preprocessed_eeg_training.npy"
    before = data_file.stat().st_mtime_ns
    sim.simulate_dataset(eeg_root, tiny_config(), subjects=[1, 2, 3], progress=False)
    assert data_file.stat().st_mtime_ns == before
    assert json.loads((eeg_root / "simulation.json").read_text())["subjects"] == [1, 2, 3]
    assert sim.load_simulated(eeg_root, 3).train.signals.shape == (16, 2, 17, 100)


def test_other_settings_in_an_existing_root_are_refused(eeg_root):
    with pytest.raises(FileExistsError, match="other settings"):
        sim.simulate_dataset(eeg_root, tiny_config(seed=9), progress=False)


def test_loading_an_unsimulated_subject_names_the_manifest(eeg_root):
    with pytest.raises(ValueError, match=r"simulation\.json.*subjects.*subject 7"):
        sim.load_simulated(eeg_root, 7)


def test_meg_option_writes_things_meg_epochs(tmp_path):
    size = SimulationSize(n_subjects=1, n_train_concepts=4, n_train_images_per_concept=2,
                          n_test_concepts=5, n_test_reps=3, image_size=32)
    config = sim.SimulationConfig(size=size, modality="meg")
    sim.simulate_dataset(tmp_path, config, progress=False)
    assert (tmp_path / "derivatives" / "preprocessed" / "preprocessed_P1-epo.fif").is_file()
    # The float64 scratch file MNE's epochs were assembled in is gone.
    assert sorted(p.name for p in (tmp_path / "simulation" / "sub-01").iterdir()) == [
        "noiseless_test.npy", "noiseless_training.npy", "trial_truth_test.npz",
        "trial_truth_training.npz"]
    dataset = sim.load_simulated(tmp_path, 1)
    assert dataset.meta["n_catch_dropped"] == 2
    assert dataset.train.signals.shape == (8, 1, 275, 281)  # MEG: each training image once
    assert dataset.test.signals.shape == (5, 3, 275, 281)
    assert dataset.sfreq == 200.0 and dataset.meta["units"] == "fT"
    assert dataset.ch_names[0].startswith("M")
    # The loader's image order (by event code) is matched to the saved noiseless means.
    check_average_matches_truth(dataset.test.signals, dataset.noiseless["test"], 0.1)



def test_rehearsal_profile_simulates_each_dataset_at_its_things_size():
    eeg = sim.config_for_profile("rehearsal")
    meg = sim.config_for_profile("rehearsal", modality="meg")
    # THINGS-EEG2: 16 540 images x 4 repetitions, 200 x 80; THINGS-MEG: 22 248 x 1, 200 x 12.
    assert (eeg.size.n_train_images, eeg.size.n_train_reps, eeg.size.n_test_reps) == (16544, 4, 80)
    assert (meg.size.n_train_images, meg.size.n_train_reps, meg.size.n_test_reps) == (22184, 1, 12)
    assert meg.size.n_test_concepts == eeg.size.n_test_concepts == 200
    assert meg.sfreq == 200.0 and len(meg.times) == 281
    # Profiles without MEG sizes of their own use the same sizes for both.
    assert sim.config_for_profile("ci", modality="meg").size == sim.config_for_profile("ci").size


def test_large_arrays_are_computed_in_blocks_with_the_same_values(monkeypatch):
    # THINGS-MEG's training set is 1.7e9 values: its noiseless responses and noise level are
    # computed a block at a time; smaller sets in one piece, so the built-in data never change.
    size = SimulationSize(n_subjects=1, n_train_concepts=6, n_train_images_per_concept=3,
                          n_test_concepts=4, image_size=32)
    config = sim.SimulationConfig(size=size)
    train, test = sim.draw_stimuli(config)
    subject = sim.make_subject(config, 1, sim.make_info("eeg", config.sfreq, config.ch_names))
    codes = sim.AttributeCodes.draw(config.seed)
    whole = sim.noiseless_responses(train, subject, config, codes)
    other = sim.noiseless_responses(test, subject, config, codes)
    std = sim.noise_std_for_snr(np.concatenate([whole, other]), 0.5)
    assert sim.noise_std_for_snr([whole, other], 0.5) == std
    monkeypatch.setattr(sim, "_LARGE", 0)
    monkeypatch.setattr(sim, "_BLOCK", 5 * whole[0].size)  # blocks of 5 images
    np.testing.assert_allclose(sim.noiseless_responses(train, subject, config, codes), whole,
                               rtol=1e-6, atol=1e-6 * np.abs(whole).max())
    assert sim.noise_std_for_snr([whole, other], 0.5) == pytest.approx(std, rel=1e-5)

def test_nice_variant_has_63_channels_at_250_hz_and_its_own_identity():
    size = SimulationSize(n_subjects=1, n_train_concepts=4, n_train_images_per_concept=1,
                          n_test_concepts=2)
    official, nice = sim.SimulationConfig(size), sim.SimulationConfig(size, eeg_variant="nice")
    assert official.sfreq == 100.0 and len(official.times) == 100
    assert nice.sfreq == 250.0 and len(nice.times) == 250
    assert nice.times[0] == -0.2 and nice.times[-1] == pytest.approx(0.796)
    assert len(nice.ch_names) == 63 and official.ch_names[:3] == ["Pz", "P3", "P7"]
    assert nice.identity() != official.identity()
    info = sim.make_info("eeg", nice.sfreq, nice.ch_names)
    assert info["nchan"] == 63 and info["sfreq"] == 250.0
    assert np.isfinite(np.array([ch["loc"][:3] for ch in info["chs"]])).all()

"""Topography metrics: known answers on hand-made arrays, then simulated EEG/MEG subjects."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.config import SimulationSize  # noqa: E402
from analysis.data import simulated as sim  # noqa: E402
from analysis.evaluation import topography as topo  # noqa: E402

SIZE = SimulationSize(n_subjects=4, n_train_concepts=4, n_train_images_per_concept=1,
                      n_test_concepts=12, n_train_reps=1, n_test_reps=2, image_size=32)
SUBJECTS = [f"sub-{s:02d}" for s in range(1, 5)]


def corr(a, b):
    return np.corrcoef(a, b)[0, 1]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module", params=["eeg", "meg"])
def simulated(request):
    """Noiseless test responses of 4 subjects: (info, times, {subject: responses})."""
    config = sim.SimulationConfig(size=SIZE, modality=request.param)
    info = sim.make_info(request.param, config.sfreq)
    _, test = sim.draw_stimuli(config)
    codes = sim.AttributeCodes.draw(config.seed)
    responses = {name: sim.noiseless_responses(test, sim.make_subject(config, s, info),
                                               config, codes).astype(float)
                 for s, name in enumerate(SUBJECTS, start=1)}
    return info, config.times, responses


@pytest.fixture
def maps():
    """Random window maps, shape (n_windows=3, n_images=6, n_channels=17)."""
    return np.random.default_rng(0).standard_normal((3, 6, 17))


# --------------------------------------------------------------------------- window maps


def test_window_maps_averages_exactly_the_samples_in_start_stop():
    times = np.arange(-20, 80) * 0.01  # float steps: 0.12 is 0.12000000000000001 here
    ramp = np.broadcast_to(np.arange(100.0), (5, 3, 100))  # value = sample index
    out = topo.window_maps(ramp, times, {"a": (0.08, 0.12), "b": (-0.2, -0.1)})
    assert out.shape == (2, 5, 3)
    # 0.08 ≤ t < 0.12 → samples 28..31; -0.2 ≤ t < -0.1 → samples 0..9.
    np.testing.assert_array_equal(out[0], np.mean([28, 29, 30, 31]))
    np.testing.assert_array_equal(out[1], np.mean(np.arange(10)))
    single = topo.window_maps(ramp[0], times, [(0.08, 0.12)])
    assert single.shape == (1, 3)
    np.testing.assert_array_equal(single, 29.5)


def test_window_maps_defaults_and_errors():
    times = np.arange(-20, 80) / 100
    responses = np.zeros((4, 17, 100))
    assert topo.window_maps(responses, times).shape == (len(topo.default_windows()), 4, 17)
    with pytest.raises(ValueError, match=r"times: expected shape \(100,\)"):
        topo.window_maps(responses, times[:-1])
    with pytest.raises(ValueError, match="contains no sample"):
        topo.window_maps(responses, times, [(0.9, 1.0)])
    with pytest.raises(ValueError, match="start < stop"):
        topo.window_maps(responses, times, [(0.2, 0.1)])
    with pytest.raises(ValueError, match=r"responses: expected shape .* found shape \(17,\)"):
        topo.window_maps(np.zeros(17), times)


# --------------------------------------------------------------------------- intra-subject


def test_spatial_correlation_known_answers(maps):
    np.testing.assert_allclose(topo.spatial_correlation(maps, maps), 1.0, rtol=1e-12)
    np.testing.assert_allclose(topo.spatial_correlation(maps, 2.5 * maps - 3.0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(topo.spatial_correlation(maps, -maps), -1.0, rtol=1e-12)
    np.testing.assert_allclose(topo.spatial_correlation(maps, 0.3 * maps + 1, per_image=True),
                               1.0, rtol=1e-12)
    # Channels shifted by one: r is exactly the correlation of the map with its shift.
    shifted = np.roll(maps, 1, axis=-1)
    mean_map = maps.mean(axis=1)
    expected = [corr(m, np.roll(m, 1)) for m in mean_map]
    r = topo.spatial_correlation(maps, shifted)
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    assert np.all(r < 0.9)
    per_image = [np.mean([corr(m, np.roll(m, 1)) for m in window]) for window in maps]
    np.testing.assert_allclose(topo.spatial_correlation(maps, shifted, per_image=True),
                               per_image, rtol=1e-12)
    # Maps without the image axis are used as they are.
    np.testing.assert_allclose(topo.spatial_correlation(mean_map, np.roll(mean_map, 1, -1)),
                               expected, rtol=1e-12)


def test_spatial_correlation_rejects_mismatched_shapes(maps):
    with pytest.raises(ValueError, match=r"generated_maps: expected the shape of real_maps"):
        topo.spatial_correlation(maps, maps[:, :, :-1])
    with pytest.raises(ValueError, match="per_image=True needs shape"):
        topo.spatial_correlation(maps[:, 0], maps[:, 0], per_image=True)


def test_spatial_correlation_timecourse_matches_corrcoef_per_time():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((5, 17, 30))
    generated = real + rng.standard_normal(real.shape)
    r = topo.spatial_correlation_timecourse(real, generated)
    expected = [corr(real.mean(0)[:, t], generated.mean(0)[:, t]) for t in range(30)]
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    np.testing.assert_allclose(topo.spatial_correlation_timecourse(real, real), 1.0, rtol=1e-12)
    assert topo.spatial_correlation_timecourse(real[0], generated[0]).shape == (30,)


# --------------------------------------------------------------------------- inter-subject


def test_subject_similarity_matrix_is_a_correlation_matrix(maps):
    rng = np.random.default_rng(2)
    by_subject = {s: maps + rng.standard_normal(maps.shape) for s in SUBJECTS}
    matrix = topo.subject_similarity_matrix(by_subject)
    assert matrix.shape == (4, 4)
    np.testing.assert_allclose(matrix, matrix.T, rtol=1e-12)
    np.testing.assert_allclose(np.diag(matrix), 1.0, rtol=1e-12)
    # Concatenated windows of the image-averaged maps; or one window.
    vectors = [by_subject[s].mean(axis=1).ravel() for s in SUBJECTS]
    np.testing.assert_allclose(matrix, np.corrcoef(vectors), rtol=1e-12)
    one = topo.subject_similarity_matrix(by_subject, window=1)
    np.testing.assert_allclose(one, np.corrcoef([by_subject[s].mean(1)[1] for s in SUBJECTS]),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="window: expected an index into 3 windows"):
        topo.subject_similarity_matrix(by_subject, window=3)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        topo.subject_similarity_matrix({"sub-01": maps})


def test_own_vs_other_detects_individual_patterns(simulated):
    _, times, responses = simulated
    rng = np.random.default_rng(3)
    real = {s: topo.window_maps(r, times) for s, r in responses.items()}
    generated = {s: m + 0.02 * m.std() * rng.standard_normal(m.shape) for s, m in real.items()}
    result = topo.own_vs_other_index(generated, real)
    assert result.exact and len(result.null) == math.factorial(4)
    assert result.index > 0 and np.all(result.per_subject > 0)
    assert result.p_value == pytest.approx(1 / 24)  # the smallest 4 subjects allow
    # Per-subject values recomputed by hand from the generated × real matrix.
    m = result.matrix
    hand = [m[s, s] - np.mean([m[s, o] for o in range(4) if o != s]) for s in range(4)]
    np.testing.assert_allclose(result.per_subject, hand, rtol=1e-12)
    assert result.index == pytest.approx(np.mean(hand))
    # Random permutations when n! exceeds n_perm: p = (1 + 0) / (1 + n_perm), reproducible.
    sampled = topo.own_vs_other_index(generated, real, n_perm=10, seed=5)
    assert not sampled.exact and len(sampled.null) == 10
    assert sampled.p_value >= 1 / 11
    np.testing.assert_array_equal(
        sampled.null, topo.own_vs_other_index(generated, real, n_perm=10, seed=5).null)


def test_own_vs_other_is_null_when_generated_maps_ignore_the_subject(simulated):
    _, times, responses = simulated
    real = {s: topo.window_maps(r, times) for s, r in responses.items()}
    group = np.mean(list(real.values()), axis=0)
    result = topo.own_vs_other_index({s: group for s in real}, real)
    assert result.index == pytest.approx(0.0, abs=1e-12)
    assert result.p_value == 1.0


def test_own_vs_other_rejects_different_subjects(maps):
    with pytest.raises(ValueError, match="reference_by_subject: expected subjects"):
        topo.own_vs_other_index({"a": maps, "b": maps}, {"a": maps, "c": maps})


# --------------------------------------------------------------------------- RSA


def test_rdm_is_one_minus_pearson_with_zero_diagonal():
    rng = np.random.default_rng(4)
    responses = rng.standard_normal((8, 17, 40))
    times = np.arange(40) / 100
    d = topo.rdm(responses, times, (0.1, 0.2))
    maps = responses[..., 10:20].mean(-1)
    np.testing.assert_allclose(d, 1 - np.corrcoef(maps), atol=1e-12)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_allclose(topo.rdm(maps), d, atol=1e-12)
    resolved = topo.rdm(responses)
    assert resolved.shape == (40, 8, 8)
    np.testing.assert_allclose(resolved[7], 1 - np.corrcoef(responses[..., 7]), atol=1e-12)
    np.testing.assert_array_equal(resolved, np.swapaxes(resolved, 1, 2))
    with pytest.raises(ValueError, match="times: expected the time axis"):
        topo.rdm(responses, window=(0.1, 0.2))


def test_rdm_similarity_is_spearman_of_upper_triangles():
    d = topo.rdm(np.random.default_rng(5).standard_normal((10, 17)))
    assert topo.rdm_similarity(d, d) == pytest.approx(1.0)
    assert topo.rdm_similarity(d, d ** 3 + 1) == pytest.approx(1.0)  # rank-based
    other = topo.rdm(np.random.default_rng(6).standard_normal((10, 17)))
    assert abs(topo.rdm_similarity(d, other)) < 0.5
    with pytest.raises(ValueError, match="rdm_a: expected a square"):
        topo.rdm_similarity(d[:, :5], d[:, :5])


def test_rsa_timecourse_shape_and_identity():
    rng = np.random.default_rng(7)
    real = rng.standard_normal((8, 17, 20))
    times = np.arange(20) / 100
    np.testing.assert_allclose(topo.rsa_timecourse(real, real, times), 1.0)
    smooth = topo.rsa_timecourse(real, real + 0.5 * rng.standard_normal(real.shape), times, win=0.05)
    assert smooth.shape == (20,) and np.all(smooth > 0) and np.all(smooth < 1)
    # win = 0.02 s at 100 Hz averages t-1, t, t+1 (two samples at the edges).
    generated = rng.standard_normal(real.shape)
    rho = topo.rsa_timecourse(real, generated, times, win=0.02)
    by_hand = topo.rdm_similarity(topo.rdm(real[..., 4:7].mean(-1)),
                                  topo.rdm(generated[..., 4:7].mean(-1)))
    assert rho[5] == pytest.approx(by_hand)
    edge = topo.rdm_similarity(topo.rdm(real[..., :2].mean(-1)), topo.rdm(generated[..., :2].mean(-1)))
    assert rho[0] == pytest.approx(edge)


# --------------------------------------------------------------------------- plots


def test_topomap_sphere_is_the_head_not_the_cap():
    eeg = topo.topomap_sphere(sim.make_info("eeg", 100.0))
    # colin27: preauricular points at ±82.5 mm, nasion 114 mm in front of their midpoint
    # (rounded to 0.1 mm).
    np.testing.assert_allclose(eeg, (0, 0, 0, (82.5 + 82.5 + 114) / 3e3), atol=1e-4)
    info = sim.make_info("meg", 200.0)
    meg = topo.topomap_sphere(info)
    np.testing.assert_allclose(meg, (0, 0, 0.04, 0.12), atol=1e-9)  # the simulated helmet
    # The sphere is returned in head coordinates: with the head moved in the helmet, its
    # centre maps back (head → device) onto the helmet's centre.
    moved = info.copy()
    dev_head = mne.transforms.rotation(0.1, -0.05, 0.2)
    dev_head[:3, 3] = (0.003, 0.02, -0.04)
    with moved._unlock():
        moved["dev_head_t"] = mne.transforms.Transform("meg", "head", dev_head)
    sphere = topo.topomap_sphere(moved)
    centre_device = mne.transforms.apply_trans(np.linalg.inv(dev_head), sphere[:3])
    np.testing.assert_allclose([*centre_device, sphere[3]], (0, 0, 0.04, 0.12), atol=1e-9)


def test_plots_return_figures_with_the_expected_axes(simulated):
    info, times, responses = simulated
    real = topo.window_maps(responses["sub-01"], times)
    generated = topo.window_maps(responses["sub-02"], times)
    # Two windows keep the test fast (interpolating 275-channel maps is the slow part).
    windows = dict(list(topo.default_windows().items())[:2])
    fig = topo.plot_window_topomaps(real[:2], generated[:2, 0], info, windows, units="µV")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 2  # 2 rows of maps + one colourbar per window
    with pytest.raises(ValueError, match="windows: expected 3 windows"):
        topo.plot_window_topomaps(real, generated, info, [(0.08, 0.12)])

    matrix = topo.subject_similarity_matrix({s: topo.window_maps(r, times)
                                             for s, r in responses.items()})
    heat = topo.plot_similarity_matrix(matrix, SUBJECTS, "real maps")
    assert isinstance(heat, Figure) and len(heat.axes) == 2  # heatmap + colourbar
    r = topo.spatial_correlation_timecourse(responses["sub-01"], responses["sub-02"])
    line = topo.plot_spatial_corr_timecourse(times, {"sub-01 vs sub-02": r})
    assert isinstance(line, Figure) and len(line.axes) == 1
    assert len(line.axes[0].lines) == 3  # the curve + zero line + onset line
    with pytest.raises(ValueError, match="expected shape"):
        topo.plot_spatial_corr_timecourse(times[:-1], r)


def test_image_specific_maps_remove_the_shared_response():
    rng = np.random.default_rng(4)
    shared = 50 * rng.standard_normal((2, 1, 8))  # one evoked map, the same for every subject
    real = {s: shared + rng.standard_normal((2, 30, 8)) for s in ("a", "b", "c")}
    averaged = topo.subject_similarity_matrix(real)
    assert averaged[~np.eye(3, dtype=bool)].min() > 0.99  # the shared map dominates
    specific = topo.subject_similarity_matrix(real, image_specific=True)
    assert np.abs(specific[~np.eye(3, dtype=bool)]).max() < 0.2  # independent image maps
    np.testing.assert_allclose(np.diag(specific), 1.0)
    # A generator that copies each subject's image-specific maps keeps them; one map for
    # every image (a train-mean predictor) has none: undefined, not a high score.
    copied = {s: m + 0.3 * rng.standard_normal(m.shape) for s, m in real.items()}
    own = topo.own_vs_other_index(copied, real, image_specific=True)
    assert own.index > 0.8 and own.p_value == pytest.approx(1 / 6)  # 3! permutations
    flat = {s: np.broadcast_to(m.mean(axis=1, keepdims=True), m.shape) for s, m in real.items()}
    assert np.isnan(topo.subject_similarity_matrix(flat, real, image_specific=True)).all()
    with pytest.raises(ValueError, match="image-specific maps need shape"):
        topo.subject_similarity_matrix({s: m[:, 0] for s, m in real.items()}, image_specific=True)


def test_mantel_test_on_identical_and_unrelated_rdms():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((25, 6))
    same = topo.rdm(x)
    rho, p = topo.mantel_test(same, same, n_perm=99)
    assert rho == pytest.approx(1.0) and p == pytest.approx(0.01)  # 1 / (99 + 1)
    rho, p = topo.mantel_test(same, topo.rdm(rng.standard_normal((25, 6))), n_perm=99)
    assert abs(rho) < 0.3 and p > 0.05
    assert np.isnan(topo.mantel_test(same, np.ones((25, 25)))[0])  # constant: undefined

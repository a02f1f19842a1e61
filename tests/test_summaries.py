"""The tables and figures of the book pages, on a tiny simulated subject trained in seconds.

Each table is checked for its columns, for CIs that bracket their values, and for facts
that hold by construction: the noiseless truth scores exactly the exact ceiling, the
train-mean baseline has no encoding score and cannot identify images, a model compared
with itself differs by exactly zero.
"""

from __future__ import annotations

import dataclasses
import json

import matplotlib
import mne
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from analysis import plots, summaries
from analysis.config import SamplingConfig, SimulationSize, get_profile
from analysis.experiment import SubjectRun, ensure_dataset

matplotlib.use("Agg")

SIZE = SimulationSize(n_subjects=2, n_train_concepts=12, n_train_images_per_concept=2,
                      n_test_concepts=10, n_train_reps=2, n_test_reps=4, image_size=32)
PROFILE = dataclasses.replace(
    get_profile("ci"), simulation=SIZE,
    unet=dict(base_channels=8, channel_mults=(1, 2), context_dim=8, concat_maps=4, heads=2),
    train=dict(epochs=1, batch_size=16, warmup_steps=2, n_diffusion_steps=100),
    sampling=SamplingConfig(steps=3, n_samples=2))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def runs(workdir):
    root = ensure_dataset("simulated", None, PROFILE, workdir)
    return {s: SubjectRun("simulated", root, s, PROFILE, workdir, device="cpu", progress=False)
            for s in (1, 2)}


@pytest.fixture(scope="module")
def run(runs):
    return runs[1]


def brackets(table: pd.DataFrame, value: str = "value") -> bool:
    finite = table.dropna(subset=["ci_low", "ci_high"])
    return bool(((finite["ci_low"] <= finite[value] + 1e-12)
                 & (finite[value] <= finite["ci_high"] + 1e-12)).all())


def test_ensure_dataset_simulates_once_into_the_workdir(workdir, runs):
    root = workdir / "data" / "simulated" / "ci"
    assert (root / "simulation.json").is_file()
    stamp = (root / "simulation.json").stat().st_mtime_ns
    assert ensure_dataset("simulated", None, PROFILE, workdir) == root
    assert (root / "simulation.json").stat().st_mtime_ns == stamp  # nothing rewritten
    with pytest.raises(ValueError, match="root"):
        ensure_dataset("things-eeg2", None, PROFILE, workdir)


def test_ensure_dataset_refuses_a_folder_simulated_by_another_version(tmp_path):
    """A finished dataset whose settings differ (e.g. made before trial effects) is not reused."""
    root = tmp_path / "data" / "simulated" / "ci"
    root.mkdir(parents=True)
    manifest = {"identity": "0123456789abcdef", "subjects": [1, 2]}
    (root / "simulation.json").write_text(json.dumps(manifest))
    with pytest.raises(FileExistsError, match="other settings"):
        ensure_dataset("simulated", None, PROFILE, tmp_path)


def test_fidelity_table_scores_every_model_with_cis(run):
    table = summaries.fidelity_table(run, summaries.MODELS + ("noiseless",), n_boot=200)
    assert list(table.columns[:3]) == ["model", "metric", "ceiling_method"]
    assert {"value", "ci_low", "ci_high", "ceiling", "pct_of_ceiling", "pct_ci_low",
            "pct_ci_high"} <= set(table.columns)
    assert list(table["model"].unique()) == list(summaries.MODELS) + ["noiseless"]
    per_image = table[table["metric"] != "encoding_score"]
    assert brackets(per_image)
    # The train-mean baseline predicts the same response for every image: no encoding score.
    mean_enc = table.query("model == 'train_mean' and metric == 'encoding_score'")
    assert mean_enc["value"].isna().all()
    # The noiseless truth scores exactly the exact ceiling, i.e. 100 % of it.
    truth = table.query("model == 'noiseless' and ceiling_method == 'exact' "
                        "and metric != 'paper_mse'")
    np.testing.assert_allclose(truth["value"], truth["ceiling"], rtol=1e-9)
    np.testing.assert_allclose(truth["pct_of_ceiling"], 100.0, rtol=1e-9)
    assert set(summaries.fidelity_by_model(table)) == set(table["model"])


def test_readout_table_scores_every_feature_set_and_its_pooled_row_is_the_ridge_baseline(run):
    readouts = summaries.readout_table(run, n_boot=100)
    own = f"CLIP {get_profile('ci').encoder.model} (random init): pooled"
    assert list(readouts["model"].unique()) == [
        own, f"{own}, kernel", "CLIP i2b-tiny-vit (random init): tokens, 2x2 grid",
        "EffNet-Lite0 (ImageNet): pooled", "raw pixels 16x16", "true attributes (oracle)"]
    ridge = summaries.fidelity_table(run, ("ridge",), n_boot=100)
    first = readouts[readouts["model"] == own]
    np.testing.assert_allclose(first[["value", "ci_low", "ci_high"]].to_numpy(dtype=float),
                               ridge[["value", "ci_low", "ci_high"]].to_numpy(dtype=float))
    assert brackets(readouts[readouts["metric"] != "encoding_score"])
    # Saved for the group page like every per-subject table.
    saved = summaries.load_or_compute(run, "readouts")
    assert set(saved["model"]) == set(readouts["model"]) and (saved["subject"] == 1).all()
    display = summaries.readout_display(saved)
    assert list(display.columns) == ["sub-1", "group"] and list(display.index) == list(
        readouts["model"].unique())
    findings = summaries.readout_findings(saved)
    assert f"`{own}`" in findings and "The best read-out is" in findings
    assert (readouts["n_outputs"] == readouts["of_outputs"]).all() and "subsample" not in findings


def test_read_outs_beyond_the_output_limit_use_an_even_subsample(run, monkeypatch):
    from analysis.pages import fidelity
    from analysis.evaluation.metrics import encoding_score

    assert (fidelity.readout_outputs(1700) == np.arange(1700)).all()
    # THINGS-EEG2 at 250 Hz and THINGS-MEG: every 4th / 19th of the flattened outputs.
    assert len(fidelity.readout_outputs(63 * 250)) == 3938
    assert len(fidelity.readout_outputs(275 * 281)) == 4068
    monkeypatch.setattr(fidelity, "READOUT_OUTPUTS", 100)
    readouts = fidelity.readout_table(run, n_boot=50)
    assert set(readouts["n_outputs"]) == {100} and set(readouts["of_outputs"]) == {17 * 100}
    # The ridge row is the ridge baseline's prediction scored on every 17th output.
    outputs = np.arange(0, 1700, 17)
    ridge = summaries.prediction(run, "ridge").reshape(10, -1)[:, outputs]
    target = run.target_average.reshape(10, -1)[:, outputs]
    own = readouts[(readouts["metric"] == "encoding_score")
                   & (readouts["ceiling_method"] == "exact")].iloc[0]
    assert own["value"] == pytest.approx(np.nanmean(encoding_score(ridge[:, None], target[:, None])))
    assert "even subsample of 100 of the 1,700 channel × time outputs" in summaries.readout_findings(
        readouts.assign(subject=1))


def test_paired_display_pivots_comparisons_by_subject():
    tests = pd.DataFrame({"model_a": ["cross_attention"] * 3, "model_b": ["ridge", "none", "ridge"],
                          "metric": "paper_r", "difference": [0.1, -0.02, 0.3],
                          "ci_low": [0.05, -0.04, 0.2], "ci_high": [0.15, 0.0, 0.4],
                          "p_value": [0.0123, 0.5, 0.0002], "subject": [1, 1, 2]})
    display = summaries.paired_display(tests)
    assert list(display.index) == ["cross_attention − ridge (paper_r)",
                                   "cross_attention − none (paper_r)"]
    assert list(display.columns) == ["sub-01", "sub-02"]
    assert display.iloc[0, 0] == "0.100 [0.050, 0.150], p = 0.012"
    assert display.iloc[0, 1] == "0.300 [0.200, 0.400], p = 0.0002"
    assert pd.isna(display.iloc[1, 1])  # subject 2 did not run that comparison


def test_paired_tests_give_differences_with_ci_and_p(run):
    table = summaries.paired_tests(run, n_perm=200, n_boot=200)
    assert [tuple(p) for p in table[["model_a", "model_b"]].to_numpy()] == list(summaries.PAIRS)
    assert brackets(table, "difference")
    assert ((table["p_value"] > 0) & (table["p_value"] <= 1)).all()
    same = summaries.paired_tests(run, [("ridge", "ridge")], metric="paper_mse", n_perm=50,
                                  n_boot=50).iloc[0]
    assert same["difference"] == 0 and same["p_value"] == 1
    assert (table["metric"] == "encoding_score").all()
    assert (table["method"] == "joint image bootstrap").all()
    assert (table["p_holm"] >= table["p_value"] - 1e-12).all()  # adjusting never lowers p
    itself = summaries.paired_tests(run, [("concat", "concat")], n_boot=50).iloc[0]
    assert itself["difference"] == 0 and itself["p_value"] == 1
    with pytest.raises(ValueError, match="metric"):
        summaries.paired_tests(run, metric="top1")


def test_a_subject_without_the_ablation_trains_and_shows_cross_attention_alone(runs, workdir):
    from analysis import calibration
    from analysis.config import CONDITIONINGS
    from analysis.experiment import subject_runs

    first = runs[1]
    group = subject_runs("simulated", first.root, [1, 2], PROFILE, workdir, "cpu")
    other = group[2]
    assert group[1].conditionings == CONDITIONINGS
    assert other.conditionings == ("cross_attention",)
    # Asking it for an ablation model is an error that says whose models those are,
    # raised before any training.
    with pytest.raises(ValueError, match="subject 2: conditioning 'concat' is not trained"):
        other.model("concat")
    assert summaries.available(other, ("oracle", "concat", "cross_attention", "ridge")) == [
        "oracle", "cross_attention", "ridge"]
    assert calibration.available_in_all(group, summaries.MODELS) == [
        "cross_attention", "ridge", "train_mean"]
    assert summaries.ablation_runs(group) == {1: group[1]}
    # Its default comparisons are those it has the models for.
    table = summaries.paired_tests(other, n_boot=20)
    assert [tuple(p) for p in table[["model_a", "model_b"]].to_numpy()] == [
        ("cross_attention", "ridge")]
    # A profile that ablates every subject trains them all everywhere.
    every = dataclasses.replace(PROFILE, ablation_on_every_subject=True)
    assert SubjectRun("simulated", first.root, 2, every, workdir, ablation=False
                      ).conditionings == CONDITIONINGS
    assert not get_profile("default").ablation_on_every_subject
    assert get_profile("paper").ablation_on_every_subject


def test_holm_adjusts_by_hand():
    from analysis.evaluation.stats import holm

    # sorted 0.01, 0.02, 0.04 × 3, 2, 1 = 0.03, 0.04, 0.04 (made monotone); NaN untouched
    np.testing.assert_allclose(holm([0.04, 0.01, np.nan, 0.02]), [0.04, 0.03, np.nan, 0.04])
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_paired_encoding_test_finds_a_better_prediction():
    from analysis.evaluation.metrics import paired_encoding_test

    rng = np.random.default_rng(0)
    truth = rng.standard_normal((60, 3, 5))
    target = truth + 0.5 * rng.standard_normal(truth.shape)
    good, bad = truth + 0.3 * rng.standard_normal(truth.shape), rng.standard_normal(truth.shape)
    result = paired_encoding_test(good, bad, target, n_boot=500)
    assert result.difference > 0.5 and result.ci_low > 0 and result.p_value < 0.01
    assert result.n_images == 60


def test_identification_table_has_chance_cis_and_p(run):
    table = summaries.identification_table(run, ("cross_attention", "ridge", "train_mean"),
                                           n_perm=100)
    assert set(table["statistic"]) == {"top1", "top5"}
    assert brackets(table)
    n = run.dataset.test.n_images
    top1 = table[table["statistic"] == "top1"]
    np.testing.assert_allclose(top1["chance"], 1 / n)
    # Identical predictions tie everywhere and ties count against the correct image.
    baseline = table[table["model"] == "train_mean"]
    assert (baseline["value"] == 0).all() and (baseline["value"] <= baseline["chance"]).all()
    assert (table["p_value"] > 0).all() and (table["p_value"] <= 1).all()
    ranks = summaries.identify(run, ("ridge",))["ridge"].ranks
    assert ranks.shape == (n,) and ranks.min() >= 1


def test_topography_and_rsa_tables(run):
    table = summaries.topography_table(run, ("cross_attention", "train_mean"), n_boot=200)
    assert set(table["measure"]) == {"erp_map", "per_image", "image_specific"}
    assert set(table["model"]) == {"cross_attention", "train_mean", "noiseless"}
    assert set(table["window"]) == {"P1", "N1", "P300"}
    assert brackets(table)
    assert table["value"].dropna().between(-1, 1).all()
    # The train mean has no image-specific topography at all.
    specific = table.query("model == 'train_mean' and measure == 'image_specific'")
    assert specific["value"].isna().all()
    rsa = summaries.rsa_table(run, ("ridge", "train_mean"), n_perm=100)
    assert rsa.query("model == 'train_mean'")["rho"].isna().all()  # no RDM without variation
    assert rsa.query("model == 'noiseless'")["rho"].notna().all()
    assert rsa.query("model == 'noiseless'")["p_value"].isna().all()  # calibrates, untested
    assert rsa.query("model == 'ridge'")["p_value"].between(0, 1).all()
    curves = summaries.spatial_timecourses(run, ("ridge",))
    assert curves["ridge"].shape == run.dataset.times.shape
    rsa_curves = summaries.rsa_timecourses(run, ("ridge",), reference=False)
    assert set(rsa_curves) == {"ridge"}


def test_plausibility_and_transfer(run):
    table = summaries.plausibility_table(run, ("oracle", "cross_attention", "ridge"), cv=3,
                                         n_permutations=5)
    assert list(table["model"]) == ["oracle", "cross_attention", "ridge"]
    assert np.isnan(table.loc[0, "p_value"])  # references calibrate, they are not tested
    table = table.iloc[1:]
    assert table["auc"].between(0, 1).all() and (table["k"] == 1).all()  # 2 target reps
    assert (table["n_images"] == SIZE.n_test_concepts).all()
    assert ((table["p_value"] > 0) & (table["p_value"] <= 1)).all()
    assert brackets(table, "auc")
    transfer = summaries.transfer_table(run, "curved", time_resolved=False, cv=3)
    assert set(transfer["direction"]) == {"real→generated", "generated→real",
                                          "real→real (cv)", "generated→generated (cv)"}
    assert transfer["accuracy"].between(0, 1).all()
    n_images, n_samples = run.generated("cross_attention").shape[:2]
    assert transfer.query("direction == 'real→generated'")["n_test"].item() == n_images * min(n_samples, 4)
    one = summaries.transfer_table(run, "curved", time_resolved=False, cv=3, max_samples=1)
    assert one.query("direction == 'real→generated'")["n_test"].item() == n_images


def test_transfer_is_skipped_without_an_attribute_table(run, monkeypatch):
    monkeypatch.setitem(run.dataset.meta, "image_attributes", None)
    assert summaries.transfer_table(run) is None
    assert summaries.image_attribute(run, "curved") is None


def test_overview_training_and_signal_tables(run):
    design = summaries.design_table(run)
    assert design.set_index("split").loc["test", "n_reps"] == SIZE.n_test_reps
    ceilings = summaries.ceiling_table(run, n_boot=100)
    assert set(ceilings["method"]) == {"split-half", "exact", "Gifford lower", "Gifford upper"}
    value = ceilings.set_index("method")["value"]
    assert value["Gifford lower"] < value["Gifford upper"]  # one half vs all repetitions
    assert brackets(ceilings)
    training = summaries.training_table(run)
    assert list(training["conditioning"]) == ["cross_attention", "concat", "film", "none"]
    assert (training["n_parameters"] > 0).all() and (training["epochs"] == 1).all()
    assert summaries.config_table(run).loc[("train", "epochs")].eq("1").all()
    assert all(len(v) == 1 for v in summaries.losses(run).values())
    stats = summaries.signal_statistics_table(run)
    assert {"real", "generated", "ratio"} <= set(stats.columns)
    freqs, psds = summaries.spectra(run)
    assert all(p.shape == freqs.shape for p in psds.values())
    assert set(summaries.grand_averages(run, ("ridge",))) == {"real", "ridge"}


def test_saved_tables_are_reused_and_recomputed_for_another_profile(runs, monkeypatch):
    run = runs[1]
    path = summaries.save_table(run, "plausibility", pd.DataFrame({"auc": [0.123]}))
    assert summaries.load_or_compute(run, "plausibility")["auc"].tolist() == [0.123]
    other = pd.read_csv(path).assign(profile="default")
    other.to_csv(path, index=False)
    monkeypatch.setitem(summaries.RESULTS, "plausibility",
                        lambda r: pd.DataFrame({"auc": [0.5]}))
    group = summaries.group_results(runs, "plausibility")
    assert group["auc"].tolist() == [0.5, 0.5]  # subject 1 recomputed, subject 2 computed
    assert sorted(group["subject"]) == [1, 2] and (group["profile"] == "ci").all()


def test_group_mean_table_is_a_t_interval():
    values = pd.DataFrame({"model": ["a"] * 3 + ["b"], "value": [1.0, 2.0, 3.0, 5.0]})
    table = summaries.group_mean_table(values, ["model"]).set_index("model")
    half = 4.302652729749464 * 1.0 / np.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    np.testing.assert_allclose(table.loc["a", ["mean", "ci_low", "ci_high"]],
                               [2.0, 2.0 - half, 2.0 + half])
    assert table.loc["b", "mean"] == 5.0 and np.isnan(table.loc["b", "ci_low"])


def test_headline_from_saved_tables(runs):
    fidelity = summaries.group_results(runs, "fidelity")
    values = summaries.headline_values(fidelity)
    assert set(values["quantity"]) == {"encoding_pct_ceiling", "encoding_score", "paper_r",
                                       "paper_mse"}
    assert len(values.query("model == 'ridge' and quantity == 'paper_r'")) == 2
    table = summaries.headline_table(values)
    shown = summaries.shown(runs[1])
    assert shown[:5] == ["oracle", "real_half", "ridge_noise", "mean_noise", "shuffled"]
    assert list(table.index) == shown and shown[5:] == list(summaries.MODELS)
    assert (table["n_subjects"] == 2).all()
    fig = plots.plot_group_bars(values, ["encoding_pct_ceiling", "paper_r"])
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == shown
    verdicts = pd.DataFrame({"check": ["encoding_score", "paper_r"], "valid": [True, False]})
    csv = summaries.headline_csv(values, verdicts)
    assert list(csv.columns) == ["model", "metric", "value", "ci_low", "ci_high", "n_subjects",
                                 "valid"]
    row = csv.query("model == 'ridge' and metric == 'paper_r'").iloc[0]
    assert row["n_subjects"] == 2 and not row["valid"]
    assert row["value"] == pytest.approx(values.query(
        "model == 'ridge' and quantity == 'paper_r'")["value"].mean())
    assert csv.query("metric == 'encoding_pct_ceiling'")["valid"].all()  # the encoding check
    assert not csv.query("metric == 'paper_mse'")["valid"].any()  # never validated: not valid
    # Long names (the read-outs) are wrapped, not rotated off the figure.
    long = values.replace({"model": {"ridge": "kernel ridge: pooled embedding"}})
    ticks = plots.plot_group_bars(long, ["paper_r"]).axes[0].get_xticklabels()
    assert "kernel ridge:\npooled embedding" in [t.get_text() for t in ticks]
    assert {t.get_rotation() for t in ticks} == {0.0}


def test_inter_subject_topography(runs):
    result = summaries.inter_subject_topography(runs, "ridge")
    assert result.real.shape == (2, 2)
    np.testing.assert_allclose(np.diag(result.real), 1.0)
    assert result.own_vs_other.exact and len(result.own_vs_other.null) == 2
    table = summaries.own_vs_other_table(runs, ("ridge", "train_mean"))
    assert table.loc[0, "min_p"] == 0.5 and (table["maps"] == "image-specific").all()
    assert np.isnan(table.loc[1, "index"])  # no image-specific maps: undefined
    averaged = summaries.own_vs_other_table(runs, ("train_mean",), image_specific=False)
    assert np.isfinite(averaged.loc[0, "index"])  # the former check scored a constant


def test_sweeps_and_seeds(run):
    sweep = summaries.sampling_sweep(run, "guidance_scale", [0.0, 1.0], n_boot=50)
    assert sorted(sweep["setting"].unique()) == [0.0, 1.0]
    assert (sweep["n_samples"] == run.profile.sampling.n_samples).all()
    three = summaries.sampling_sweep(run, "guidance_scale", [1.0], n_boot=50, n_samples=3)
    assert (three["n_samples"] == 3).all()
    assert run.generated(guidance_scale=1.0, n_samples=3).shape[1] == 3
    seeds = summaries.seed_table(run, (0, 1), n_boot=50)
    assert sorted(seeds["train_seed"].unique()) == [0, 1]
    rows = seeds.query("metric == 'paper_r' and ceiling_method == 'exact'")
    assert len(summaries.group_mean_table(rows, ["metric"])) == 1
    assert isinstance(plots.plot_sweep(sweep, xlabel="guidance scale"), Figure)


def test_learning_curve_seed_ablation_and_oracle_conditioning(run):
    # 12 x 2 images: the validation split holds a few; epochs=1 scores once (the last).
    curve = summaries.learning_curve(run, ("cross_attention", "film"))
    assert list(curve["conditioning"]) == ["cross_attention", "film"]
    assert (curve["epoch"] == 1).all() and np.isfinite(curve["ridge_r"]).all()
    assert summaries.plateau_epoch(pd.DataFrame({"epoch": [2, 4, 6], "encoding_r": [0.5, 0.99, 1.0]})) == 4
    # Nothing learnt (every r below 0): no share of the best exists; the first best epoch.
    assert summaries.plateau_epoch(pd.DataFrame({"epoch": [2, 4, 6],
                                                 "encoding_r": [-0.3, -0.1, -0.1]})) == 4
    scores, pairs = summaries.seed_ablation(run, (0, 1), pairs=[("cross_attention", "film"),
                                                                ("cross_attention", "ridge")])
    assert len(scores.query("model == 'cross_attention'")) == 2
    assert len(scores.query("model == 'ridge'")) == 1  # a baseline has no seed
    by = scores.pivot_table(index="train_seed", columns="model", values="encoding_r")
    expected = (by["cross_attention"] - by["film"]).mean()
    assert pairs.loc[0, "difference"] == pytest.approx(expected)
    assert pairs.loc[1, "difference"] == pytest.approx(
        (by["cross_attention"] - scores.query("model == 'ridge'")["encoding_r"].iloc[0]).mean())
    assert (pairs["p_holm"] >= pairs["p_value"]).all() and (pairs["n_seeds"] == 2).all()
    oracle = summaries.oracle_conditioning(run, n_boot=20)
    assert set(oracle["model"]) == {"cross_attention on true attributes", "ridge on true attributes"}
    ridge_rows = oracle[oracle["model"] == "ridge on true attributes"]
    np.testing.assert_allclose(ridge_rows["pct_of_ridge"], 100.0)


def test_provenance_versions_and_commit(run, tmp_path):
    table = summaries.provenance_table(run)
    assert (table["encoder"].str.contains("random init")).all()
    versions = summaries.environment_versions().set_index("name")["version"]
    assert {"python", "torch", "mne", "numpy", "open_clip_torch"} <= set(versions.index)
    assert versions["mne"] == mne.__version__ and torch.__version__.startswith(versions["torch"])
    # The same versions travel with the run's provenance and its checkpoints.
    assert run.provenance()["versions"]["open_clip_torch"] == versions["open_clip_torch"]
    record = json.loads((run.model("cross_attention").path.parent / "config.json").read_text())
    assert record["versions"]["mne"] == mne.__version__
    assert summaries.git_commit(tmp_path) == "unknown"


def test_figure_helpers_return_figures(run):
    figures = [
        plots.plot_grand_average(run.dataset),
        plots.plot_topomaps(summaries.window_maps(run), run.dataset.info, units="µV"),
        plots.plot_losses(summaries.losses(run)),
        plots.plot_example_waveforms(run, ("cross_attention", "ridge"), n_images=2),
    ]
    assert all(isinstance(f, Figure) for f in figures)
    assert summaries.example_channels(run) == ["Oz", "P8"]
    assert list(summaries.example_images(run, 3)) == [0, 4, 9]


def test_display_tables(run):
    fidelity = summaries.fidelity_table(run, ("ridge", "train_mean"), n_boot=50)
    display = summaries.fidelity_display(fidelity)
    assert list(display.index) == ["ridge", "train_mean"]
    assert list(display.columns) == ["paper_mse", "paper_r", "encoding_score",
                                     "encoding % of exact ceiling"]
    row = fidelity.query("model == 'ridge' and metric == 'paper_r'").iloc[0]
    assert display.loc["ridge", "paper_r"] == summaries.format_ci(row["value"], row["ci_low"],
                                                                  row["ci_high"], 3)


def test_group_means_are_clipped_to_the_range_of_the_quantity():
    values = pd.DataFrame({"quantity": ["auc", "auc", "paper_mse", "paper_mse"],
                           "value": [0.9, 1.0, 0.1, 5.0]})
    table = summaries.group_mean_table(values, ["quantity"]).set_index("quantity")
    assert table.loc["auc", "ci_high"] == 1.0 and table.loc["paper_mse", "ci_low"] == 0.0
    clipped = summaries.group_mean_table(values, ["quantity"], bounds=(0.5, 0.6))
    assert clipped["ci_low"].eq(0.5).all()


def test_ci_text_formats_rows_and_series():
    table = pd.DataFrame({"value": [0.5], "ci_low": [0.4], "ci_high": [0.6], "auc": [0.7]})
    assert summaries.ci_text(next(table.itertuples()), 2) == "0.50 [0.40, 0.60]"
    assert summaries.ci_text(table.iloc[0], 1, scale=100) == "50.0 [40.0, 60.0]"


def test_baseline_predictions_are_saved_and_reused_by_a_new_run(run, workdir, monkeypatch):
    from analysis import experiment

    ridge = run.prediction("ridge")
    # One file per (features, training data, test images): the validation run has its own.
    saved = sorted((workdir / "cache" / "baselines").glob("simulated-sub-1-*.npz"))
    assert saved
    again = SubjectRun("simulated", run.root, 1, PROFILE, workdir, device="cpu", progress=False)

    def no_refit(*args, **kwargs):
        raise AssertionError("ridge was fit again although its predictions were saved")

    monkeypatch.setattr(experiment.RidgeEncoder, "fit", no_refit)
    np.testing.assert_array_equal(again.prediction("ridge"), ridge)
    np.testing.assert_array_equal(again.prediction("train_mean"), run.prediction("train_mean"))
    assert sorted((workdir / "cache" / "baselines").glob("simulated-sub-1-*.npz")) == saved


def test_signals_give_every_name_the_same_shape_and_keep_real_half_out_of_the_target(run):
    from analysis.names import MODELS, REFERENCES

    held, target = run.test_halves
    n = run.n_signals
    assert n == min(PROFILE.sampling.n_samples, held.shape[1])
    assert target.shape[1] + held.shape[1] == SIZE.n_test_reps
    shape = (SIZE.n_test_concepts, n, len(run.dataset.ch_names), len(run.dataset.times))
    for name in REFERENCES + MODELS:
        assert run.signals(name).shape == shape, name
    # real_half repetitions come from the held-out half, none from the target half:
    real = run.signals("real_half").reshape(-1, *shape[2:])
    flat_target = target.reshape(-1, *shape[2:])
    assert not any(np.array_equal(r, t) for r in real for t in flat_target)
    np.testing.assert_array_equal(run.signals("ridge"), np.repeat(
        run.prediction("ridge")[:, None], n, axis=1))
    assert run.signals("ridge_noise") is run.signals("ridge_noise")  # drawn once per session
    with pytest.raises(ValueError, match="real_half holds"):
        run.signals("real_half", held.shape[1] + 1)
    with pytest.raises(ValueError, match="unknown model or reference 'nope'"):
        run.signals("nope")


def test_calibration_scores_every_reference_and_model_and_give_verdicts(runs):
    from analysis import calibration
    from analysis.evaluation.metric_validation import CHECKS

    scores = summaries.group_results(runs, "calibration")
    assert set(scores["subject"]) == {1, 2}
    assert set(scores["check"]) == {c.name for c in CHECKS}
    one = scores[scores["subject"] == 1]
    n_scored = len(summaries.REFERENCES) + len(summaries.MODELS)  # 5 references + 6 models
    assert len(one) == len(CHECKS) * n_scored and not one.duplicated(["generator", "check"]).any()
    assert set(one["kind"]) == {"reference", "generator", "baseline"}
    verdicts = calibration.calibration_verdicts(scores)
    assert len(verdicts) == 2 * len(CHECKS) and verdicts["valid"].dtype == bool
    table = calibration.dataset_verdicts(verdicts)
    # valid over the dataset only where every subject passes
    per_check = verdicts.groupby("check")["valid"].all()
    assert dict(zip(table["check"], table["valid"])) == per_check.to_dict()
    readable = calibration.verdict_display(table)
    assert list(readable.columns) == ["valid", "passes", "why it fails"]
    assert set(readable["valid"]) <= {"yes", "no"} and readable["passes"].str.endswith("/ 2").all()
    display = calibration.calibration_display(scores)
    assert list(display.columns[:5]) == ["oracle", "real_half", "ridge_noise", "mean_noise",
                                         "shuffled"]
    assert "↑" in display.index[0]
    text = calibration.calibration_findings(table)
    assert f"of {len(CHECKS)} checks" in text
    fig = plots.plot_calibration(scores, table)
    assert isinstance(fig, Figure) and sum(a.get_visible() for a in fig.axes) == len(CHECKS)
    path = summaries.save_dataset_table(runs, "calibration_verdicts", table)
    saved = pd.read_csv(path)
    assert path.parent.name == "simulated" and set(saved["subjects"]) == {"1 2"}


def test_validation_run_holds_out_concepts_and_never_sees_the_test_set(run):
    from analysis.validation import VALIDATION_FRACTION, concept_draw

    def held_out(concepts):
        return {concept_draw(c) < VALIDATION_FRACTION for c in concepts}

    val = run.validation
    # Every model of the run is fit on the fitting concepts; the validation run scores the
    # held-out ones, with the very same generators (one checkpoint, its learning curve in it).
    assert val.dataset.train is run.dataset.train
    assert held_out(val.dataset.test.concepts) == {True}
    assert held_out(run.dataset.train.concepts) == {False}
    assert (run.dataset.train.n_images + val.dataset.test.n_images
            == SIZE.n_train_concepts * SIZE.n_train_images_per_concept)
    assert not set(val.dataset.train.concepts) & set(val.dataset.test.concepts)
    assert not set(val.dataset.test.image_ids) & set(run.dataset.test.image_ids)
    assert val.target.shape[1] == SIZE.n_train_reps  # every repetition is the target
    assert val.features is run.features
    assert val.model("cross_attention") is run.model("cross_attention")
    assert run.model("cross_attention").info["curve"]
    # What each saves beside that checkpoint for its own images stays apart.
    assert run.validation.validation is val and val.images == "validation" and run.images == ""
    np.testing.assert_array_equal(val.conditional_mean().shape[0], val.dataset.test.n_images)
    assert run.conditional_mean().shape[0] == run.dataset.test.n_images
    folder = run.model("cross_attention").path.parent
    assert {"conditional_mean.npz", "conditional_mean-validation.npz"} <= {
        p.name for p in folder.iterdir()}


def test_a_sweep_on_many_validation_images_samples_an_evenly_spaced_subset(run, monkeypatch):
    val = run.validation
    n = val.dataset.test.n_images
    assert val.with_test_subset(n) is val  # nothing to leave out
    assert n >= 2
    sub = val.with_test_subset(1)
    rows = [0]  # the first of evenly spaced ones
    assert sub.dataset.test.image_ids == [val.dataset.test.image_ids[i] for i in rows]
    np.testing.assert_array_equal(sub.target, val.target[rows])
    np.testing.assert_array_equal(sub.dataset.noiseless["test"], val.dataset.noiseless["test"][rows])
    assert sub.dataset.train is val.dataset.train and sub.features is val.features
    assert sub.model("cross_attention") is val.model("cross_attention")  # not retrained
    # The sweep scores the subset (this split is too small to cut: a bootstrap needs 2).
    asked, whole = [], SubjectRun.with_test_subset
    monkeypatch.setattr(SubjectRun, "with_test_subset",
                        lambda self, m: asked.append(m) or whole(self, m))
    sweep, _, test = summaries.validation_choice(run, "guidance_scale", [1.0], n_boot=20,
                                                 max_images=7)
    assert asked == [7]
    assert (sweep["n_images"] == n).all() and (test["n_images"] == run.dataset.test.n_images).all()
    # At most SWEEP_SAMPLES samples per validation image (the profile's where fewer), the
    # profile's number on the test set.
    assert (sweep["n_samples"] == min(summaries.SWEEP_SAMPLES, run.profile.sampling.n_samples)).all()
    more = dataclasses.replace(run.profile, sampling=dataclasses.replace(
        run.profile.sampling, n_samples=summaries.SWEEP_SAMPLES + 2))
    wide = SubjectRun("simulated", run.root, run.subject, more, run.workdir, device="cpu",
                      progress=False)
    sweep, _, test = summaries.validation_choice(wide, "guidance_scale", [1.0], n_boot=20)
    assert (sweep["n_samples"] == summaries.SWEEP_SAMPLES).all()
    assert (test["n_samples"] == summaries.SWEEP_SAMPLES + 2).all()
    with pytest.raises(ValueError, match="max_images: expected at least 1"):
        val.with_test_subset(0)


def test_a_choice_on_validation_does_not_change_with_the_test_data(run, monkeypatch):
    sweep, chosen, test = summaries.validation_choice(run, "guidance_scale", [0.0, 1.0, 3.0],
                                                      n_boot=20)
    assert chosen == summaries.chosen_setting(sweep, "snr_ratio")
    assert (sweep["split"] == "validation").all()
    assert type(chosen) is float  # not numpy's: it goes into JSON next to generated signals
    steps = pd.DataFrame({"metric": "encoding_score", "setting": np.array([3, 5]),
                          "value": [0.2, 0.1]})
    assert type(summaries.chosen_setting(steps)) is int and summaries.chosen_setting(steps) == 3
    # Guidance is chosen for realistic samples: the single-trial SNR nearest the recording's.
    ratios = sweep.query("metric == 'snr_ratio'").drop_duplicates("setting").set_index("setting")
    distance = np.abs(np.log(ratios["value"]))
    assert distance.loc[chosen] == distance.min()
    by_hand = pd.DataFrame({"metric": "snr_ratio", "setting": [0.0, 1.0, 3.0],
                            "value": [0.2, 0.9, 3.0]})
    assert summaries.chosen_setting(by_hand, "snr_ratio") == 1.0
    # A setting without a measurable criterion is never chosen; none at all is an error
    # (validation_choice then keeps the profile's own).
    assert summaries.chosen_setting(by_hand.assign(value=[np.nan, 0.5, 3.0]), "snr_ratio") == 1.0
    with pytest.raises(ValueError, match="no setting has a finite 'snr_ratio'"):
        summaries.chosen_setting(by_hand.assign(value=np.nan), "snr_ratio")
    # The sampling steps are chosen where a classifier tells samples from recorded trials
    # least well (few steps give too clean trials whose mean scores well).
    steps_sweep, chosen_steps, _ = summaries.validation_choice(run, "steps", [2, 8], n_boot=20)
    aucs = steps_sweep.query("metric == 'classifier_auc'").drop_duplicates("setting")
    assert aucs["value"].between(0, 1).all() and (aucs["ci_low"] <= aucs["value"]).all()
    nearest = aucs["setting"].iloc[int(np.argmin(np.abs(aucs["value"] - 0.5)))]
    assert chosen_steps == nearest
    by_hand = pd.DataFrame({"metric": "classifier_auc", "setting": [10, 20, 40],
                            "value": [1.0, 0.38, 0.6]})
    assert summaries.chosen_setting(by_hand, "classifier_auc") == 40  # |0.6 - .5| < |0.38 - .5|
    assert set(test["role"]) >= {"chosen on validation"} and (test["split"] == "test").all()
    # Replace the test set's signals with noise: the validation sweep, hence the choice,
    # must not move (it never reads them).
    noisy = SubjectRun("simulated", run.root, run.subject, run.profile, run.workdir,
                       device="cpu", progress=False)
    ds = noisy.dataset
    monkeypatch.setattr(ds.test, "signals",
                        np.random.default_rng(5).standard_normal(ds.test.signals.shape)
                        .astype(np.float32))
    again, chosen_again, _ = summaries.validation_choice(noisy, "guidance_scale",
                                                         [0.0, 1.0, 3.0], n_boot=20)
    assert chosen_again == chosen
    pd.testing.assert_frame_equal(again, sweep)


def test_own_vs_other_is_calibrated_on_the_references(runs):
    from analysis import calibration

    table, verdict = calibration.own_vs_other_calibration(runs)
    assert list(table["model"][:5]) == ["oracle", "real_half", "ridge_noise", "mean_noise",
                                       "shuffled"]
    assert len(verdict) == 1 and verdict.loc[0, "check"] == "own_vs_other"
    index = table.set_index("model")["index"]
    assert verdict.loc[0, "tier1"] == index["ridge_noise"]
    assert verdict.loc[0, "tier0"] == min(index["oracle"], index["real_half"])
    assert verdict.loc[0, "tier2"] == max(index["mean_noise"], index["shuffled"])


def test_real_signals_match_the_repetitions_of_a_generator_trained_on_averages():
    from types import SimpleNamespace

    from analysis.pages.decoding import _real_like_generated

    target = np.arange(3 * 5 * 1 * 2, dtype=float).reshape(3, 5, 1, 2)
    config = SimpleNamespace(targets="average")
    fake = SimpleNamespace(target=target, model=lambda m: SimpleNamespace(train_config=config),
                           dataset=SimpleNamespace(train=SimpleNamespace(n_reps=2)))
    real, label = _real_like_generated(fake, "cross_attention")
    assert real.shape == (3, 2, 1, 2) and label == "real 2-repetition averages"
    np.testing.assert_allclose(real[:, 1], target[:, 2:4].mean(axis=1))  # groups of 2, 5th left out
    config.targets = "trials"
    assert _real_like_generated(fake, "cross_attention")[0] is target


def test_realism_scores_every_generator_and_its_probes_fail_what_they_exist_to_fail(runs):
    from analysis.evaluation import realism

    scores = summaries.group_results(runs, "realism")  # computed through the saved table
    assert set(scores["subject"]) == {1, 2}
    one = scores[scores["subject"] == 1]
    expected = summaries.realism_generators(runs[1]) + list(summaries.PROBES)
    assert list(dict.fromkeys(one["generator"])) == expected
    assert "ridge" not in expected and "oracle" in expected  # no distribution; simulated data
    battery = set(realism.TESTS) | set(realism.ATTRIBUTE_EFFECTS)
    assert battery <= set(one.loc[one["generator"] == "oracle", "test"])
    probes = one[one["kind"] == "probe"]
    assert dict(zip(probes["generator"], probes["test"])) == {"collapsed": "spread",
                                                              "copies": "memorisation"}
    copies = probes[(probes["generator"] == "copies") & (probes["test"] == "memorisation")]
    assert copies["value"].iloc[0] > copies["reference"].iloc[0]  # its signals are training trials
    collapsed = probes[(probes["generator"] == "collapsed") & (probes["test"] == "spread")]
    assert collapsed["value"].iloc[0] < -1.5  # a tenth of the SD: log(0.1) ≈ −2.3
    assert ((one["n_signals"] == runs[1].n_signals) & (one["n_real"] == runs[1].target.shape[1])).all()

    validity = summaries.realism_validity(scores)
    assert set(validity["subject"]) == {1, 2} and validity["valid"].dtype == bool
    memo = validity[(validity["test"] == "memorisation") & (validity["subject"] == 1)].iloc[0]
    assert "copies" in memo["failed_by"]
    dataset = summaries.realism_dataset_validity(validity)
    assert dict(zip(dataset["test"], dataset["valid"])) == \
        validity.groupby("test")["valid"].all().to_dict()
    display = summaries.realism_display(one)
    assert display.columns[0] == "real / null" and "oracle" in display.columns
    assert display["copies"].str.contains("✗").any()
    assert "tests are evidence here" in summaries.realism_findings(one, validity[validity.subject == 1])
    group = summaries.realism_group_table(scores)
    assert "copies" not in group.columns and group.columns[0] == "real / null"
    refs = summaries.realism_group_table(scores, ["reference"])
    assert "cross_attention" not in refs.columns and "oracle" in refs.columns
    assert "Evidence in every subject" in summaries.realism_group_findings(scores, dataset)
    values, verdicts = summaries.realism_headline(scores, dataset)
    assert values["quantity"].str.startswith("realism_").all()
    assert set(verdicts["check"]) == {"realism_" + t for t in dataset["test"]}
    rows = summaries.headline_csv(values, verdicts)
    assert set(rows["model"]) == set(summaries.realism_generators(runs[1]))
    rates = rows[rows["metric"].isin(["realism_energy", "realism_classifier"])]
    assert ((rates["ci_low"] >= 0) & (rates["ci_high"] <= 1)).all()  # fractions stay in [0, 1]
    assert isinstance(plots.plot_realism_grid(scores), Figure)
    by_image = summaries.variability_by_image(runs[1], ["oracle", "cross_attention"])
    assert len(by_image) == 2 * runs[1].dataset.test.n_images
    assert isinstance(plots.plot_variability_by_image(by_image), Figure)


def test_realism_on_real_data_uses_real_half_and_skips_what_needs_the_simulator():
    """A recording has no oracle and no attribute table: the battery runs on the rest, and a
    test is evidence where real_half passes and something unlike the recording fails."""
    from types import SimpleNamespace

    from analysis.references import ResidualNoise

    rng = np.random.default_rng(0)
    means = rng.standard_normal((20, 3, 40))
    target = means[:, None] + rng.standard_normal((20, 6, 3, 40))
    train = rng.standard_normal((30, 2, 3, 40))
    draws = {"real_half": means[:, None] + rng.standard_normal((20, 4, 3, 40))}
    for name in ("ridge_noise", "mean_noise", "shuffled", "cross_attention", "concat", "film", "none"):
        draws[name] = rng.standard_normal((20, 4, 3, 40))  # image-blind noise
    info = mne.create_info(["O1", "Oz", "O2"], 100.0, "eeg")
    dataset = SimpleNamespace(noiseless=None, meta={"dataset": "things-eeg2"}, info=info,
                              sfreq=100.0, times=np.arange(40) / 100.0,
                              train=SimpleNamespace(signals=train),
                              test=SimpleNamespace(n_images=20))
    fake = SimpleNamespace(dataset=dataset, target=target, n_signals=4,
                           conditionings=("cross_attention", "concat", "film", "none"),
                           signals=lambda name: draws[name],
                           prediction=lambda name: np.zeros((20, 3, 40)),
                           residual_noise=ResidualNoise().fit(train))
    scores = summaries.realism_scores(fake)
    assert "oracle" not in set(scores["generator"])
    assert not scores["sees"].eq("attributes").any()
    validity = summaries.realism_validity(scores).set_index("test")
    assert validity.loc["energy", "valid"] and "mean_noise" in validity.loc["energy", "failed_by"]


def test_realism_validity_by_hand():
    scores = pd.DataFrame({
        "subject": 1, "test": ["a", "a", "a", "b", "b", "b"],
        "generator": ["real_half", "ridge_noise", "copies"] * 2, "p": 0.5,
        # a: real_half passes, ridge_noise fails → valid; b: real_half fails → not valid
        "p_holm": [0.6, 0.01, 0.7, 0.01, 0.01, 0.7]})
    validity = summaries.realism_validity(scores).set_index("test")
    assert validity.loc["a", "valid"] and validity.loc["a", "failed_by"] == "ridge_noise"
    assert not validity.loc["b", "valid"] and not validity.loc["b", "real_like_pass"]


def test_headline_findings_are_sentences_computed_from_the_rows():
    def row(model, metric, value, low, high, valid=True):
        return dict(model=model, metric=metric, value=value, ci_low=low, ci_high=high,
                    n_subjects=3, valid=valid)

    rows = pd.DataFrame([
        row("cross_attention", "encoding_pct_ceiling", 58.2, 26.5, 89.9),
        row("ridge", "encoding_pct_ceiling", 65.4, 52.7, 78.2),
        row("oracle", "encoding_pct_ceiling", 66.3, 60.0, 70.0),
        row("mean_noise", "encoding_pct_ceiling", -2.7, -5.0, 0.1),
        row("cross_attention", "top1", 0.08, 0.06, 0.10),
        row("ridge", "top1", 0.13, 0.12, 0.14),
        row("cross_attention", "auc", 0.78, 0.7, 0.86, valid=False),
        row("ridge", "auc", 0.6, 0.55, 0.65, valid=False),
    ])
    text = summaries.headline_findings(rows)
    paragraphs = text.split("\n\n")
    assert paragraphs[0].startswith("Means over 3 subjects")
    encoding, top1, auc = paragraphs[1:]
    assert encoding == ("**Encoding score**: `cross_attention` 58.2 [26.5, 89.9] % of the noise "
                        "ceiling, `ridge` 65.4 [52.7, 78.2], `oracle` 66.3 [60.0, 70.0], "
                        "`mean_noise` -2.7 [-5.0, 0.1]. The generator's interval lies across "
                        "`ridge`'s mean (no difference shown at this number of subjects).")
    assert top1.endswith("The generator's interval lies below `ridge`'s mean.")
    assert "lies above" in auc and "a description, not evidence" in auc
    assert "description" not in encoding + top1


def test_fidelity_findings_name_each_score_and_call_differences_at_holm_alpha():
    fidelity = pd.DataFrame([
        dict(model="oracle", metric="encoding_score", ceiling_method="exact", value=0.2,
             ci_low=0.18, ci_high=0.22, pct_of_ceiling=100.0, pct_ci_low=90.0, pct_ci_high=110.0),
        dict(model="train_mean", metric="encoding_score", ceiling_method="exact", value=np.nan,
             ci_low=np.nan, ci_high=np.nan, pct_of_ceiling=np.nan, pct_ci_low=np.nan,
             pct_ci_high=np.nan),
        dict(model="oracle", metric="encoding_score", ceiling_method="split-half", value=0.2,
             ci_low=0.18, ci_high=0.22, pct_of_ceiling=50.0, pct_ci_low=45.0, pct_ci_high=55.0),
    ])
    paired = pd.DataFrame([
        dict(model_a="cross_attention", model_b="ridge", difference=-0.043, ci_low=-0.063,
             ci_high=-0.024, p_holm=0.002),
        dict(model_a="cross_attention", model_b="film", difference=0.01, ci_low=-0.01,
             ci_high=0.03, p_holm=0.23),
    ])
    scores, worse, same = summaries.fidelity_findings(fidelity, paired, "exact").split("\n\n")
    assert "`oracle` 0.200 [0.180, 0.220] (100.0 [90.0, 110.0] % of the exact ceiling)" in scores
    assert "`train_mean` undefined" in scores and "split-half" not in scores
    assert worse == ("`cross_attention` − `ridge`: Δ -0.043 [-0.063, -0.024], Holm-adjusted "
                     "p = 0.002: `ridge` scores higher than `cross_attention` at α = 0.05.")
    assert same.endswith("p = 0.23: no difference shown at α = 0.05.")


def test_decoding_findings_read_identification_against_chance_and_auc_against_real():
    identification = pd.DataFrame([
        dict(model="ridge", statistic="top1", value=0.13, ci_low=0.09, ci_high=0.18,
             chance=0.005, p_value=0.001),
        dict(model="none", statistic="top1", value=0.005, ci_low=0.0, ci_high=0.03,
             chance=0.005, p_value=0.6),
        dict(model="ridge", statistic="top5", value=0.4, ci_low=0.3, ci_high=0.5,
             chance=0.025, p_value=0.001),
    ])
    plausibility = pd.DataFrame([
        dict(model="real_half", auc=0.5, ci_low=0.45, ci_high=0.55, p_value=np.nan),
        dict(model="cross_attention", auc=0.78, ci_low=0.7, ci_high=0.86, p_value=0.01),
    ])
    top1, auc, invalid = summaries.decoding_findings(identification, plausibility,
                                                    ["top5"]).split("\n\n")
    assert top1.startswith("**Identification top-1** (Wilson 95 % intervals; chance 0.5 %)")
    assert "`ridge` 13.0 [9.0, 18.0] % (above chance, p = 0.001)" in top1
    assert "`none` 0.5 [0.0, 3.0] % (not shown above chance, p = 0.6)" in top1
    assert "40.0" not in top1  # top-5 rows are not top-1
    assert "`real_half` 0.50 [0.45, 0.55];" in auc
    assert "`cross_attention` 0.78 [0.70, 0.86] (told apart from real, p = 0.01)" in auc
    assert invalid.endswith("descriptions, not evidence: top5.")


def test_ablation_and_seed_findings_state_the_oracle_bar_the_group_means_and_the_seed_tests():
    means = pd.DataFrame([
        dict(model="cross_attention", quantity="encoding_pct_ceiling", mean=58.2, ci_low=26.5,
             ci_high=89.9, n=3),
        dict(model="ridge", quantity="encoding_pct_ceiling", mean=65.4, ci_low=52.7,
             ci_high=78.2, n=3),
        dict(model="ridge", quantity="paper_r", mean=0.6, ci_low=0.5, ci_high=0.7, n=3),
    ])
    seeds = pd.DataFrame([dict(model_a="cross_attention", model_b="film", n_seeds=3,
                               difference=-0.013, ci_low=-0.033, ci_high=0.008, p_holm=0.23)])
    oracle = pd.DataFrame([dict(model="cross_attention on true attributes", pct_of_ridge=105.3),
                           dict(model="ridge on true attributes", pct_of_ridge=100.0)])
    bar, encoding = summaries.ablation_findings(means, oracle).split("\n\n")
    assert bar == ("**Oracle conditioning**: `cross_attention on true attributes` reaches "
                   "105.3 % of ridge's encoding score on the same attributes; it meets the "
                   "90 % bar.")
    assert "mean over 3 subjects" in encoding and "`ridge` 65.4 [52.7, 78.2] %" in encoding
    assert "0.6" not in encoding  # other quantities are not encoding scores
    low = oracle.assign(pct_of_ridge=[80.0, 100.0])
    assert "does not meet the 90 % bar" in summaries.ablation_findings(means, low)
    assert summaries.ablation_findings(means).startswith("**Encoding score**")
    (seed,) = summaries.seed_findings(seeds).split("\n\n")
    assert seed.endswith("Δ encoding r -0.013 [-0.033, 0.008], Holm-adjusted p = 0.23: "
                         "no difference shown at α = 0.05.")
    across = pd.DataFrame([dict(conditioning="film", metric="encoding_score", mean=0.2,
                                ci_low=0.15, ci_high=0.25, n=3),
                           dict(conditioning="film", metric="paper_r", mean=0.5, ci_low=0.4,
                                ci_high=0.6, n=3)])
    spread, _ = summaries.seed_findings(seeds, across_seeds=across).split("\n\n")
    assert spread == ("Encoding score across training seeds of the first subject (mean, "
                      "Student-t 95 % CI): `film` 0.200 [0.150, 0.250] over 3 seeds.")


def test_topography_findings_give_one_sentence_per_window():
    topo = pd.DataFrame([
        dict(model="real_half", window="P1", start=0.08, stop=0.12, measure="image_specific",
             value=0.6, ci_low=0.5, ci_high=0.7),
        dict(model="cross_attention", window="P1", start=0.08, stop=0.12,
             measure="image_specific", value=0.3, ci_low=0.2, ci_high=0.4),
        dict(model="cross_attention", window="P1", start=0.08, stop=0.12, measure="full",
             value=0.9, ci_low=0.85, ci_high=0.95),
        dict(model="cross_attention", window="N1", start=0.15, stop=0.2,
             measure="image_specific", value=0.1, ci_low=-0.1, ci_high=0.3),
    ])
    rsa = pd.DataFrame([dict(model="cross_attention", window="P1", rho=0.25, p_value=0.001),
                        dict(model="cross_attention", window="N1", rho=0.02, p_value=0.4)])
    p1, n1 = summaries.topography_findings(topo, rsa).split("\n\n")
    assert p1 == ("**P1** (80–120 ms), image-specific spatial r: `real_half` 0.600 [0.500, "
                  "0.700]; `cross_attention` 0.300 [0.200, 0.400]. `cross_attention`'s "
                  "representational geometry: RDM ρ = 0.250 (p = 0.001, above chance).")
    assert "0.900" not in p1  # the full maps are not image-specific
    assert n1.startswith("**N1** (150–200 ms)") and "not shown above chance" in n1


def test_group_topography_findings_with_several_subjects_and_with_one():
    inter = summaries.InterSubjectTopography(
        subjects=[1, 2], real=np.array([[1.0, 0.2], [0.2, 1.0]]),
        generated=np.array([[1.0, 0.6], [0.6, 1.0]]), generated_vs_real=np.eye(2),
        own_vs_other=None)
    own = pd.DataFrame([
        dict(model="mean_noise", index=0.01, p_value=0.5, min_p=0.5),
        dict(model="train_mean", index=np.nan, p_value=np.nan, min_p=0.5),
        dict(model="cross_attention", index=0.12, p_value=0.5, min_p=0.5),
    ])
    spread, index = summaries.group_topography_findings(inter, own).split("\n\n")
    assert spread.startswith("Mean inter-subject r of image-specific maps: real 0.200, "
                             "generated 0.600")
    assert "the image-blind `mean_noise` gives +0.010" in index
    assert "`train_mean` undefined" in index
    assert "`cross_attention` +0.120 (p = 0.5, smallest possible 0.5)" in index
    assert summaries.group_topography_findings(None, None).startswith("One subject")


def test_training_findings_give_the_loss_of_each_phase():
    from types import SimpleNamespace

    from analysis.training import TrainConfig

    config = TrainConfig(epochs=4, trial_epochs=1, targets="average")
    losses = [0.9, 0.7, 0.6, 0.8]
    assert summaries.loss_phases(losses, config) == {"average": [0.9, 0.7, 0.6], "trials": [0.8]}
    run = SimpleNamespace(model=lambda c: SimpleNamespace(losses=losses, train_config=config))
    training = pd.DataFrame([dict(conditioning="film", loaded=True, n_parameters=1234567,
                                  train_seconds=61.4, device="cpu")])
    assert summaries.training_findings(run, training) == (
        "`film` (checkpoint reused, 1,234,567 parameters, 61 s on cpu): on repetition "
        "averages its loss went 0.900 → 0.600 over 3 epochs; on single trials its loss went "
        "0.800 → 0.800 over 1 epoch.")


def test_overview_findings_state_the_design_the_peak_and_each_ceiling(run):
    ceilings = pd.DataFrame([
        dict(method="exact", metric="paper_r", value=0.8, ci_low=0.7, ci_high=0.9),
        dict(method="exact", metric="encoding_score", value=0.3, ci_low=0.25, ci_high=0.35),
        dict(method="split-half", metric="paper_r", value=0.82, ci_low=0.72, ci_high=0.92),
        dict(method="split-half", metric="encoding_score", value=0.34, ci_low=np.nan,
             ci_high=np.nan),
        dict(method="Gifford lower", metric="encoding_score", value=0.2, ci_low=np.nan,
             ci_high=np.nan),
        dict(method="Gifford upper", metric="encoding_score", value=0.4, ci_low=np.nan,
             ci_high=np.nan)])
    design, bars, bounds = summaries.overview_findings(run, ceilings).split("\n\n")
    erp = run.dataset.test.signals.mean(axis=(0, 1))
    peak_ms = 1e3 * run.dataset.times[np.sqrt((erp ** 2).mean(axis=0)).argmax()]
    assert design == (f"The test set holds 10 images × 4 repetitions; models are scored against "
                      f"the target half (2 repetitions per image). The global field power of "
                      f"the grand-average response peaks {peak_ms:.0f} ms after image onset.")
    assert ("the exact ceiling is 0.300 [0.250, 0.350] on the encoding score and "
            "0.800 [0.700, 0.900] on the paper's r; the split-half ceiling is 0.340 on") in bars
    assert "The split-half estimate is 0.040 above the exact one" in bars
    assert bounds.endswith("lower 0.200, upper 0.400.")
    # Real data have no exact ceiling: only the split-half one is stated.
    real = summaries.overview_findings(run, ceilings[ceilings["method"] != "exact"])
    assert "exact" not in real and "the split-half ceiling is 0.340" in real


def test_sampling_findings_read_the_plateau_and_the_choices():
    curve = pd.DataFrame({"conditioning": ["a"] * 4 + ["b"] * 3,
                          "epoch": [1, 2, 3, 4, 1, 2, 3],
                          "encoding_r": [0.1, 0.2, 0.25, 0.255, 0.05, 0.1, 0.2],
                          "ridge_r": [0.3] * 7})
    test = pd.DataFrame([
        dict(setting=1.0, role="chosen on validation", metric="encoding_score",
             ceiling_method="exact", value=0.2, ci_low=0.1, ci_high=0.3, pct_of_ceiling=50.0),
        dict(setting=1.0, role="chosen on validation", metric="snr_ratio",
             ceiling_method="exact", value=1.1, ci_low=np.nan, ci_high=np.nan,
             pct_of_ceiling=np.nan)])
    a, b, guidance = summaries.sampling_findings(
        curve, 3, {"guidance scale": (1.0, test)}, "exact").split("\n\n")
    # 98 % of a's best (0.255) is 0.2499: reached at epoch 3, within the profile's 3 epochs.
    assert a == ("`a` reaches 98 % of its best validation encoding r (0.255, epoch 4) by "
                 "epoch 3: the profile's 3 epochs are past it. Ridge on the same features and "
                 "images scores 0.300.")
    assert "by epoch 3: its last scored epoch, so the curve may still be rising there." in b
    assert guidance == ("**Guidance scale**: validation chose 1.0. On the test set, scored once, "
                        "at 1.0 (chosen on validation) the mean of the samples scores "
                        "0.200 [0.100, 0.300], 50.0 % of the exact ceiling, and a sample's SNR "
                        "is 1.10 × a recorded trial's.")
    assert "stop before it" in summaries.sampling_findings(curve, 2, {}, "exact")
    # Reaching 98 % of the best at epoch 39 of 40 shows no plateau.
    late = pd.DataFrame({"conditioning": "c", "epoch": np.arange(1, 41),
                         "encoding_r": np.r_[np.linspace(0.01, 0.12, 38), 0.1262, 0.128],
                         "ridge_r": 0.124})
    assert ("by epoch 39: within the last tenth of training, too late to show a plateau"
            in summaries.sampling_findings(late, 40, {}, "exact"))
    assert "**DDIM steps**" in summaries.sampling_findings(curve, 3, {"DDIM steps": (1.0, test)},
                                                           "exact")
    auc = dict(setting=1.0, role="chosen on validation", metric="classifier_auc",
               ceiling_method="exact", value=0.9, ci_low=0.85, ci_high=0.95, pct_of_ceiling=np.nan)
    steps = summaries.sampling_findings(curve, 3, {"steps": (1.0, pd.concat(
        [test, pd.DataFrame([auc])]))}, "exact").split("\n\n")[-1]
    assert steps.endswith("a sample's SNR is 1.10 × a recorded trial's, and a classifier tells "
                          "samples from recorded trials at AUC 0.900 [0.850, 0.950] (0.5: not "
                          "at all).")


def test_reproducibility_findings_name_the_commit_weights_seeds_and_time():
    info = dict(profile="ci", device="cpu", encoder="tiny (random init)", encoder_digest="ab12",
                sampling=dict(seed=0))
    provenance = pd.DataFrame(dict(subject=[1, 1, 2, 2], conditioning=["x", "y", "x", "y"],
                                   trained_on="cpu", train_seed=[0, 0, 0, 1],
                                   train_seconds=[10.0, 20.0, 30.0, 40.4],
                                   generate_seconds=[1.0, 2.0, 3.0, 4.0]))
    commit, weights, seeds = summaries.reproducibility_findings(
        "abc123-dirty", info, provenance).split("\n\n")
    assert commit == ("The numbers in this book come from commit `abc123-dirty` (with "
                      "uncommitted changes), profile `ci`, run on cpu; generators were trained "
                      "on cpu.")
    assert weights == "Image features: tiny (random init), weights sha256 `ab12`."
    assert seeds.startswith("Training seeds [0, 1], sampling seed 0. Training took 100 s and "
                            "sampling 10 s in all, over 2 subjects × 2 generators")
    assert "not a git checkout" in summaries.reproducibility_findings("unknown", info, provenance)


def test_training_images_shown_once_keep_every_feature_and_take_noise_from_held_out_trials():
    # THINGS-MEG shows each training image once: no split-half reliability and no residuals
    # around an image's mean exist in the training set.
    from types import SimpleNamespace

    from analysis.pages.decoding import identification_mask

    rng = np.random.default_rng(0)
    once = SimpleNamespace(signals=rng.standard_normal((6, 1, 3, 5)), n_reps=1)
    held_out, target = rng.standard_normal((2, 4, 2, 3, 5))
    run = SimpleNamespace(dataset=SimpleNamespace(train=once), test_halves=(held_out, target))
    assert identification_mask(run).all() and identification_mask(run).shape == (3, 5)
    trials, source = SubjectRun.noise_trials.fget(run)
    assert trials is held_out and "held-out test repetitions" in source
    twice = SimpleNamespace(signals=rng.standard_normal((6, 2, 3, 5)), n_reps=2)
    run.dataset.train = twice
    assert SubjectRun.noise_trials.fget(run)[0] is twice.signals
    assert identification_mask(run, quantile=0.8).sum() == 3  # the top 20 % of 15 features

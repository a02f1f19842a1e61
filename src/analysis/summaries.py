"""Every table a book page shows, as a function of a :class:`~analysis.experiment.SubjectRun`.

The notebooks stay thin: each table on a page is one call here, computed live from the
run's (cached) data, predictions and generated signals, so no number is ever typed in.
Tables are tidy :class:`pandas.DataFrame` s; every headline number comes with a CI and
every test with a p-value. Per-subject tables are saved for the group pages with
:func:`save_table` and gathered with :func:`group_results`, which computes what a subject
is missing (through its cached ``SubjectRun``) instead of failing.

Model names
-----------
Those of :mod:`analysis.names`: the generators ``'cross_attention'``, ``'concat'``,
``'none'`` (the mean over their samples per test image), the baselines ``'ridge'``,
``'train_mean'``, the reference generators (``'oracle'``, ``'real_half'``,
``'ridge_noise'``, ``'mean_noise'``, ``'shuffled'``; the mean of their
:attr:`~analysis.experiment.SubjectRun.n_signals` signals) and, for simulated data only,
``'noiseless'``: the true mean responses, a perfect mean predictor. Tables show the
references before the models by default (:func:`shown`). Every table scores against the
same target half of the test repetitions (:attr:`~analysis.experiment.SubjectRun.target`),
so that ``real_half`` can be drawn from the other half.

Units are those of the data (``run.dataset.meta['units']``, e.g. µV); correlations are
unitless; times are in seconds.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .calibration import calibration_scores
from .evaluation import decoding, topography
from .evaluation.metrics import (fidelity_summary, paired_encoding_test, paper_mse,
                                 paper_pearson, pct_of_exact_ceiling_ci)
from .evaluation.noise_ceiling import (NoiseCeiling, exact_ceiling, gifford_bounds,
                                       noise_ceiling_r)
from .evaluation.stats import (bootstrap_ci, fisher_z_interval, format_ci, holm,
                               mean_ignoring_nan, paired_permutation_test, pearson_r,
                               t_interval, wilson_interval)
from .names import CONDITIONINGS, MODELS, PAIRS, PER_IMAGE_MODELS, REFERENCES

if TYPE_CHECKING:
    from .experiment import SubjectRun

#: Where a simulated dataset stores the per-image attributes (``meta`` key).
_ATTRIBUTES_KEY = "image_attributes"


# --------------------------------------------------------------------------- predictions


def prediction(run: SubjectRun, name: str) -> np.ndarray:
    """Predicted test responses ``(n_test_images, n_channels, n_times)`` of a model.

    ``name`` is anything :meth:`SubjectRun.prediction` accepts, or ``'noiseless'`` for the
    true means of simulated data.

    Raises
    ------
    ValueError
        ``'noiseless'`` on a dataset without noiseless means (real recordings).
    """
    if name == "noiseless":
        if run.dataset.noiseless is None:
            raise ValueError(f"name: 'noiseless' needs simulated data, found dataset "
                             f"'{run.dataset_name}' without noiseless means")
        return run.dataset.noiseless["test"]
    return run.prediction(name)


def shown(run: SubjectRun, models: Sequence[str] = MODELS) -> list[str]:
    """What a page's table shows by default: every reference the data allow (``oracle``
    needs simulated data), then ``models``."""
    from .calibration import available

    return available(run, REFERENCES + tuple(models))


def _with_reference(run: SubjectRun, models: Sequence[str], reference: bool) -> list[str]:
    models = list(models)
    if reference and run.dataset.noiseless is not None and "noiseless" not in models:
        models.append("noiseless")
    return models


def example_images(run: SubjectRun, n: int = 3) -> np.ndarray:
    """Indices of ``n`` test images spread evenly over the test set (first, …, last)."""
    n_images = run.dataset.test.n_images
    return np.unique(np.linspace(0, n_images - 1, min(n, n_images)).round().astype(int))


def example_channels(run: SubjectRun, preferred: Sequence[str] = ("Oz", "P8"),
                     n: int = 2) -> list[str]:
    """The preferred channels that the recording has, topped up with its first channels."""
    names = run.dataset.ch_names
    chosen = [c for c in preferred if c in names][:n]
    return chosen + [c for c in names if c not in chosen][:n - len(chosen)]


# --------------------------------------------------------------------------- overview


def design_table(run: SubjectRun) -> pd.DataFrame:
    """Images, repetitions, concepts, channels and times of each split.

    Returns
    -------
    pandas.DataFrame
        One row per split (``train``, ``test``): ``n_images``, ``n_reps``, ``n_trials``,
        ``n_concepts``, ``n_channels``, ``n_times``, ``sfreq`` (Hz), ``units``.
    """
    ds = run.dataset
    rows = []
    for name, split in (("train", ds.train), ("test", ds.test)):
        rows.append(dict(split=name, n_images=split.n_images, n_reps=split.n_reps,
                         n_trials=split.n_images * split.n_reps,
                         n_concepts=len(set(split.concepts)), n_channels=len(ds.ch_names),
                         n_times=len(ds.times), sfreq=ds.sfreq, units=ds.meta["units"]))
    return pd.DataFrame(rows)


def noise_ceilings(run: SubjectRun, *, n_splits: int = 20, seed: int = 0
                   ) -> dict[str, NoiseCeiling]:
    """The split-half ceiling of the test trials and, for simulated data, the exact one."""
    trials = run.target
    out = {"split-half": noise_ceiling_r(trials, n_splits=n_splits, seed=seed)}
    if run.dataset.noiseless is not None:
        out["exact"] = exact_ceiling(run.dataset.noiseless["test"], trials)
    return out


def ceiling_table(run: SubjectRun, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Noise ceilings on the paper's r and on the encoding score, with bootstrap CIs.

    The paper-r ceiling is a mean of per-image ceilings, so its CI resamples those. The
    exact encoding ceiling is the encoding score of the noiseless means, so its CI
    recomputes that score on resampled images; the split-half encoding ceiling is
    reported without a CI (resampling images inside a split-half estimate is not
    meaningful). Beside them, Gifford et al.'s (2022) lower and upper bounds of the
    encoding score (:func:`~analysis.evaluation.noise_ceiling.gifford_bounds`), so numbers
    compare with published THINGS-EEG2 curves. All of the target half of the repetitions.

    Returns
    -------
    pandas.DataFrame
        One row per (``method``, ``metric``): ``value``, ``ci_low``, ``ci_high`` (r, unitless).
    """
    from .evaluation.metrics import encoding_score_statistic

    rows = []
    trials = run.target
    for method, ceiling in noise_ceilings(run, seed=seed).items():
        paper = ceiling.paper[np.isfinite(ceiling.paper)]
        ci = bootstrap_ci(paper, n_boot=n_boot, seed=seed)
        rows.append(dict(method=method, metric="paper_r", value=ci.value, ci_low=ci.low,
                         ci_high=ci.high))
        low = high = np.nan
        if method == "exact":
            statistic = encoding_score_statistic(run.dataset.noiseless["test"],
                                                 trials.mean(axis=1))
            interval = bootstrap_ci(statistic, n_images=len(trials), n_boot=n_boot, seed=seed,
                                    vectorized=True)
            low, high = interval.low, interval.high
        rows.append(dict(method=method, metric="encoding_score", value=ceiling.encoding_mean,
                         ci_low=low, ci_high=high))
    lower, upper = gifford_bounds(trials, seed=seed)
    for method, bound in (("Gifford lower", lower), ("Gifford upper", upper)):
        rows.append(dict(method=method, metric="encoding_score",
                         value=float(mean_ignoring_nan(bound)), ci_low=np.nan, ci_high=np.nan))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- training


def _checkpoint_record(trained) -> dict:
    path = trained.path.parent / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def training_table(run: SubjectRun, conditionings: Sequence[str] = CONDITIONINGS,
                   **train_overrides) -> pd.DataFrame:
    """What was trained (or loaded) for each conditioning, and how long it took.

    Returns
    -------
    pandas.DataFrame
        One row per conditioning: ``loaded`` (an existing checkpoint was reused),
        ``epochs``, ``final_loss``, ``n_parameters``, ``device`` (where it was trained),
        ``train_seconds`` (of the original training), ``seed`` and ``checkpoint`` (path).
    """
    rows = []
    for conditioning in conditionings:
        trained = run.model(conditioning, **train_overrides)
        record = _checkpoint_record(trained)
        rows.append(dict(
            conditioning=conditioning, loaded=trained.loaded,
            epochs=trained.train_config.epochs,
            final_loss=trained.losses[-1] if trained.losses else np.nan,
            n_parameters=record.get("n_parameters", trained.model.n_parameters()),
            device=record.get("device", "unknown"),
            train_seconds=trained.info.get("train_seconds", np.nan),
            seed=trained.train_config.seed, checkpoint=str(trained.path)))
    return pd.DataFrame(rows)


def config_table(run: SubjectRun, conditionings: Sequence[str] = CONDITIONINGS) -> pd.DataFrame:
    """Model and training settings side by side, one column per conditioning.

    Returns
    -------
    pandas.DataFrame
        Index ``(section, setting)`` with ``section`` ``'model'`` or ``'train'``; values as
        strings so mixed types display cleanly.
    """
    columns = {}
    for conditioning in conditionings:
        trained = run.model(conditioning)
        entries = {("model", k): v for k, v in trained.model_config.as_dict().items()}
        entries.update({("train", k): v for k, v in trained.train_config.as_dict().items()})
        columns[conditioning] = {k: str(v) for k, v in entries.items()}
    table = pd.DataFrame(columns)
    table.index.names = ["section", "setting"]
    return table


def losses(run: SubjectRun, conditionings: Sequence[str] = CONDITIONINGS) -> dict[str, list[float]]:
    """Mean training loss per epoch of each conditioning (train-or-load)."""
    return {c: list(run.model(c).losses) for c in conditionings}


# --------------------------------------------------------------------------- fidelity


def fidelity_table(run: SubjectRun, models: Sequence[str] | None = None, *, n_boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Paper MSE, paper r and encoding score of each model, with CIs and ceilings.

    Each model's prediction is scored by :func:`~analysis.evaluation.metrics.fidelity_summary`
    against the test trials of ``run`` (one split-half ceiling shared by every model; the
    exact ceiling too when the data are simulated).

    Parameters
    ----------
    run : SubjectRun
    models : sequence of str
        Model names (see the module docstring).
    n_boot : int
        Bootstrap resamples over test images.
    seed : int
        Seed of the bootstrap and of the split halves.

    Returns
    -------
    pandas.DataFrame
        The ``fidelity_summary`` columns (``metric``, ``ceiling_method``, ``value``,
        ``ci_low``, ``ci_high``, ``ceiling``, ``pct_of_ceiling``, ``n_undefined``) plus
        ``model`` first and ``pct_ci_low`` / ``pct_ci_high``: the CI as % of the ceiling —
        for the encoding score against the exact ceiling a bootstrap of the ratio that
        resamples the ceiling with the images
        (:func:`~analysis.evaluation.metrics.pct_of_exact_ceiling_ci`); otherwise the score's
        CI bounds over a ceiling taken as fixed. The encoding score of ``train_mean`` is NaN:
        it predicts the same response for every image, so it has no variance across images.
    """
    models = shown(run) if models is None else models
    return score_predictions(run, {model: prediction(run, model) for model in models},
                             n_boot=n_boot, seed=seed)


def score_predictions(run: SubjectRun, predictions: Mapping[str, np.ndarray], *,
                      n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`fidelity_table` of any named test-set predictions ``(n_images, n_ch, n_times)``."""
    trials = run.target
    noiseless = None if run.dataset.noiseless is None else run.dataset.noiseless["test"]
    ceiling = noise_ceiling_r(trials, seed=seed)
    frames = []
    for model, predicted in predictions.items():
        table = fidelity_summary(predicted, trials, noiseless, n_boot=n_boot,
                                 seed=seed, ceiling=ceiling)
        is_r = table["metric"] != "paper_mse"
        for bound in ("low", "high"):
            table[f"pct_ci_{bound}"] = np.where(is_r & (table["ceiling"] > 0),
                                                100 * table[f"ci_{bound}"] / table["ceiling"],
                                                np.nan)
        exact = (table["metric"] == "encoding_score") & (table["ceiling_method"] == "exact")
        if exact.any() and np.isfinite(table.loc[exact, "value"]).all():
            # The exact ceiling is measured on the same images: resample it with them.
            _, low, high = pct_of_exact_ceiling_ci(predicted, noiseless, trials.mean(axis=1),
                                                   n_boot=n_boot, seed=seed)
            table.loc[exact, ["pct_ci_low", "pct_ci_high"]] = low, high
        frames.append(table.assign(model=model))
    out = pd.concat(frames, ignore_index=True)
    return out[["model"] + [c for c in out.columns if c != "model"]]


def readout_predictions(run: SubjectRun) -> dict[str, np.ndarray]:
    """Test-set predictions of ridge on each feature set of :func:`analysis.readouts.feature_sets`.

    Each is fit on the training averages. The profile encoder's pooled read-out *is* the
    ``ridge`` baseline. Beside them, RBF kernel ridge on the same pooled embedding
    (``'…: pooled, kernel'``) asks whether the features hold image information that a
    linear map misses.
    """
    from .models.baselines import KernelRidgeEncoder, RidgeEncoder
    from .readouts import feature_sets, pooled_name

    responses = run.dataset.train.average()
    own = pooled_name(run.features.meta)
    out = {}
    for name, (train, test) in feature_sets(run, run.readout_features).items():
        if name == own:
            out[name] = prediction(run, "ridge")
            out[f"{own}, kernel"] = KernelRidgeEncoder().fit(train, responses).predict(test)
        else:
            out[name] = RidgeEncoder().fit(train, responses).predict(test)
    return out


def readout_table(run: SubjectRun, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`fidelity_table` of :func:`readout_predictions` (``model`` names the read-out)."""
    return score_predictions(run, readout_predictions(run), n_boot=n_boot, seed=seed)


def _readout_means(readouts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The encoding-score rows of saved read-out tables (the preferred ceiling) and, indexed
    by read-out, their mean % of ceiling over subjects with its Student-t CI."""
    encoding = readouts[(readouts["metric"] == "encoding_score")
                        & (readouts["ceiling_method"] == preferred_ceiling(readouts))]
    means = group_mean_table(encoding, ["model"], value="pct_of_ceiling",
                             bounds=(-100.0, 100.0)).set_index("model")
    return encoding, means


def readout_display(readouts: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Saved :func:`readout_table` s of one or more subjects as a display table.

    One row per read-out; one column per subject with its encoding score as % of the
    (exact, when simulated) ceiling and the bootstrap 95 % CI over test images, and a
    ``group`` column with the mean over subjects and its Student-t 95 % CI.
    """
    encoding, means = _readout_means(readouts)
    wide = ci_pivot(encoding.assign(subject="sub-" + encoding["subject"].astype(str)), "model",
                    "subject", value="pct_of_ceiling", low="pct_ci_low", high="pct_ci_high",
                    digits=digits)
    wide["group"] = [format_ci(means.loc[m, "mean"], means.loc[m, "ci_low"],
                               means.loc[m, "ci_high"], digits) for m in wide.index]
    wide.index.name = "read-out (ridge unless said)"
    return wide


def readout_findings(readouts: pd.DataFrame) -> str:
    """What the read-outs say, in sentences computed from the saved tables (Markdown).

    Names the best read-out, where the profile encoder's pooled features stand against raw
    pixels, the other encoders and, on simulated data, the true attributes.
    """
    _, means = _readout_means(readouts)
    n = int(means["n"].max())
    ceiling = preferred_ceiling(readouts)

    def say(model: str) -> str:
        return f"{means.loc[model, 'mean']:.1f} % [{means.loc[model, 'ci_low']:.1f}, " \
               f"{means.loc[model, 'ci_high']:.1f}]"

    own = next(m for m in means.index if m.endswith(": pooled"))
    encoder = own.rsplit(":", 1)[0]

    def versus(model: str) -> str:
        return ("above" if means.loc[model, "ci_low"] > means.loc[own, "mean"] else
                "below" if means.loc[model, "ci_high"] < means.loc[own, "mean"] else
                "not clearly different from")

    lines = [f"Ridge on the profile encoder's pooled features (`{own}`, the input of the ridge "
             f"baseline and of concatenation) reaches {say(own)} of the {ceiling} ceiling "
             f"(mean over {n} subject{'s' if n != 1 else ''}, Student-t 95 % CI)."]
    stages = [m for m in means.index if m.startswith(f"{encoder}: stage ")]
    if stages:
        best_stage = means.loc[stages, "mean"].idxmax()
        lines.append(f"Of its stages alone, `{best_stage}` reaches most ({say(best_stage)}), "
                     f"{versus(best_stage)} all stages together.")
    grid = f"{encoder}: tokens, 2x2 grid"
    if grid in means.index:
        lines.append(f"Its tokens averaged over a 2 × 2 grid of positions (where in the image a "
                     f"feature is) reach {say(grid)}, {versus(grid)} the pooled features: "
                     + ("the token sequence holds linearly readable information the pooled "
                        "embedding lacks." if versus(grid) == "above" else
                        "no evidence that the token sequence holds linearly readable "
                        "information beyond the pooled embedding."))
    for model in means.index:
        if model.startswith(encoder):
            continue
        lines.append(f"`{model}`: {say(model)}, {versus(model)} the profile encoder's mean.")
    best = means["mean"].idxmax()
    lines.append(f"The best read-out is `{best}` ({say(best)}).")
    return "\n\n".join(lines)


def fidelity_by_model(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a :func:`fidelity_table` into ``{model: table}`` for ``plot_fidelity``."""
    return {model: part.drop(columns="model") for model, part in table.groupby("model", sort=False)}


def fidelity_display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A :func:`fidelity_table` as one row per model, cells ``'value [low, high]'``.

    Columns: paper MSE, paper r, encoding score, and the encoding score as % of the exact
    ceiling when the data are simulated (else of the split-half ceiling).
    """
    method = preferred_ceiling(table)
    scores = table.drop_duplicates(["model", "metric"])
    wide = ci_pivot(scores, "model", "metric", digits=digits)
    pct = table[(table["metric"] == "encoding_score") & (table["ceiling_method"] == method)]
    wide[f"encoding % of {method} ceiling"] = ci_pivot(
        pct.assign(metric="pct"), "model", "metric", value="pct_of_ceiling", low="pct_ci_low",
        high="pct_ci_high", digits=1)["pct"]
    return wide


def ci_pivot(table: pd.DataFrame, index: str | list[str], columns: str, *, value: str = "value",
             low: str = "ci_low", high: str = "ci_high", digits: int = 3) -> pd.DataFrame:
    """Pivot a tidy table into display cells ``'value [low, high]'`` (order of appearance)."""
    cells = table.assign(_cell=[format_ci(v, lo, hi, digits) for v, lo, hi in
                                zip(table[value], table[low], table[high])])
    wide = cells.pivot(index=index, columns=columns, values="_cell")
    index_order = cells[index].drop_duplicates()
    wide = wide.reindex(index=pd.MultiIndex.from_frame(index_order) if isinstance(index, list)
                        else index_order.to_numpy(),
                        columns=cells[columns].drop_duplicates().to_numpy())
    wide.columns.name = None
    return wide


def ci_text(row, digits: int = 3, *, value: str = "value", low: str = "ci_low",
            high: str = "ci_high", scale: float = 1.0) -> str:
    """``'value [low, high]'`` of one table row (a namedtuple from ``itertuples`` or a
    Series), each multiplied by ``scale`` (e.g. 100 for percent)."""
    get = row.get if isinstance(row, pd.Series) else lambda name: getattr(row, name)
    return format_ci(scale * get(value), scale * get(low), scale * get(high), digits)


_PER_IMAGE_METRICS: dict[str, Callable] = {"paper_r": paper_pearson, "paper_mse": paper_mse}


def paired_display(tests: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Saved :func:`paired_tests` of one or more subjects, one row per comparison.

    Columns are subjects; cells read ``'difference [CI], p = …'`` (A − B of the tested
    metric, bootstrap CI, two-sided p with two significant digits, Holm-adjusted over the
    comparisons of a subject when the table has ``p_holm``).
    """
    p = tests["p_holm"] if "p_holm" in tests else tests["p_value"]
    cells = [f"{format_ci(r.difference, r.ci_low, r.ci_high, digits)}, p = {q:.2g}"
             for r, q in zip(tests.itertuples(), p)]
    table = tests.assign(comparison=tests["model_a"] + " − " + tests["model_b"] + " ("
                         + tests["metric"] + ")", cell=cells)
    wide = table.pivot(index="comparison", columns="subject", values="cell")
    order = list(dict.fromkeys(table["comparison"]))
    return wide.loc[order].rename(columns=lambda s: f"sub-{int(s):02d}").rename_axis(
        index=None, columns=None)


def paired_tests(run: SubjectRun, pairs: Iterable[tuple[str, str]] = PAIRS,
                 metric: str = "encoding_score", *, n_perm: int = 10_000, n_boot: int = 2000,
                 seed: int = 0) -> pd.DataFrame:
    """Is model A better than model B on the same test images? Paired tests, Holm-adjusted.

    ``metric='encoding_score'`` (the default; the score the headline reports) resamples the
    images jointly for both models (:func:`~analysis.evaluation.metrics.paired_encoding_test`):
    the encoding score is a correlation across images, so it has no per-image value to
    flip. The per-image metrics ``'paper_r'`` and ``'paper_mse'`` (against the target
    average) use a sign-flip permutation test
    (:func:`~analysis.evaluation.stats.paired_permutation_test`), leaving out images where
    either value is undefined. ``p_holm`` adjusts the p-values over the pairs of the call
    (Holm–Bonferroni), the family a page reports.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``model_a``, ``model_b``, ``metric``, ``difference`` (A − B;
        positive favours A for r and the encoding score, B for MSE), ``ci_low``, ``ci_high``
        (percentile bootstrap over images), ``p_value`` (two-sided), ``p_holm``,
        ``n_images``, ``method``.
    """
    if metric not in ("encoding_score", *_PER_IMAGE_METRICS):
        raise ValueError(f"metric: expected 'encoding_score' or one of "
                         f"{sorted(_PER_IMAGE_METRICS)} (per-image metrics), found '{metric}'")
    average = run.target_average
    per_image = {}
    rows = []
    for a, b in pairs:
        if metric == "encoding_score":
            result = paired_encoding_test(prediction(run, a), prediction(run, b), average,
                                          n_boot=n_boot, seed=seed)
        else:
            for name in (a, b):
                if name not in per_image:
                    per_image[name] = _PER_IMAGE_METRICS[metric](prediction(run, name), average)
            va, vb = per_image[a], per_image[b]
            ok = np.isfinite(va) & np.isfinite(vb)
            result = paired_permutation_test(va[ok], vb[ok], n_perm=n_perm, n_boot=n_boot,
                                             seed=seed)
        rows.append(dict(model_a=a, model_b=b, metric=metric, difference=result.difference,
                         ci_low=result.ci_low, ci_high=result.ci_high, p_value=result.p_value,
                         n_images=result.n_images, method=result.method))
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("p_value") + 1, "p_holm", holm(table["p_value"]))
    return table


# --------------------------------------------------------------------------- identification


def identification_mask(run: SubjectRun, *, quantile: float = 0.8, seed: int = 0) -> np.ndarray:
    """The most reliable channel × time features, chosen on the *training* trials only."""
    return decoding.select_features_by_reliability(run.dataset.train.signals, quantile=quantile,
                                                   seed=seed)


def identify(run: SubjectRun, models: Sequence[str] = MODELS, *, quantile: float = 0.8,
             seed: int = 0) -> dict[str, decoding.IdentificationResult]:
    """Zero-shot identification of every test image from each model's prediction.

    Each model's per-image prediction (generators: the mean of their samples) is
    correlated with every real test average over the features of
    :func:`identification_mask`; see :func:`~analysis.evaluation.decoding.identification`.
    """
    mask = identification_mask(run, quantile=quantile, seed=seed)
    average = run.target_average
    return {m: decoding.identification(prediction(run, m), average, feature_mask=mask)
            for m in models}


def identification_table(run: SubjectRun, models: Sequence[str] | None = None, *,
                         n_perm: int = 1000, quantile: float = 0.8, seed: int = 0
                         ) -> pd.DataFrame:
    """Top-1 / top-5 identification accuracy of each model, with CIs, chance and p-values.

    Features are the top ``1 - quantile`` most reliable channel × time points of the
    *training* trials (:func:`identification_mask`), so test data never choose them.

    Returns
    -------
    pandas.DataFrame
        One row per (``model``, ``statistic``) with ``statistic`` ``'top1'`` or ``'top5'``:
        ``value`` (fraction of images), ``ci_low`` / ``ci_high`` (Wilson score interval
        over images), ``chance``, ``p_value`` (permutation of image labels,
        ``n_perm`` resamples, one-sided), ``mean_rank`` and ``n_images``. A model that
        predicts the same response for every image (``train_mean``) ties everywhere and
        ties count against it: top-k = 0.
    """
    models = shown(run) if models is None else models
    mask = identification_mask(run, quantile=quantile, seed=seed)
    average = run.target_average
    rows = []
    for model in models:
        pred = prediction(run, model)
        result = decoding.identification(pred, average, feature_mask=mask)
        for statistic, value, chance in (("top1", result.top1, result.chance_top1),
                                         ("top5", result.top5, result.chance_top5)):
            null = decoding.identification_permutation_null(
                pred, average, n_perm, seed, feature_mask=mask, statistic=statistic)
            low, high = wilson_interval(round(value * result.n_images), result.n_images)
            rows.append(dict(model=model, statistic=statistic, value=value, ci_low=low,
                             ci_high=high, chance=chance, p_value=null.p_value,
                             mean_rank=float(result.ranks.mean()), n_images=result.n_images))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- topography


def topography_table(run: SubjectRun, models: Sequence[str] | None = None, *, windows=None,
                     reference: bool = True, n_boot: int = 1000, ci: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """Spatial correlation of real and predicted scalp maps per time window, with CIs.

    Maps are the responses averaged over each window (default
    :func:`~analysis.evaluation.topography.default_windows`). Three measures, each a
    Pearson r across channels:

    - ``'erp_map'``: the maps averaged over test images (the ERP topography). Dominated
      by the response every image shares, so even ``train_mean`` scores close to 1;
    - ``'per_image'``: each image's real and predicted map correlated, then averaged;
    - ``'image_specific'``: the same after removing each side's mean map over images, i.e.
      whether the model gets the *differences* between images' topographies right
      (undefined for ``train_mean``, which has none).

    CIs resample test images. Per-image measures: percentile bootstrap of the mean.
    ``'erp_map'``: a correlation of mean maps, so
    :func:`~analysis.evaluation.stats.fisher_z_interval` of its bootstrap replicates. With ``reference`` and simulated
    data a ``'noiseless'`` row shows what a perfect model reaches against the noisy maps.

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``window``, ``start``, ``stop`` (s), ``measure``, ``value``,
        ``ci_low``, ``ci_high``.
    """
    models = shown(run) if models is None else models
    labels, bounds = _windows(windows)
    named = dict(zip(labels, bounds))
    times = run.dataset.times
    real = topography.window_maps(run.target_average, times, named)
    rows = []
    for model in _with_reference(run, models, reference):
        gen = topography.window_maps(prediction(run, model), times, named)
        for w, (label, (start, stop)) in enumerate(zip(labels, bounds)):
            real_w, gen_w = real[w], gen[w]  # (n_images, n_channels)
            n_images = len(real_w)
            value = float(pearson_r(real_w.mean(axis=0), gen_w.mean(axis=0)))
            low = high = np.nan
            if np.isfinite(value):
                boot = bootstrap_ci(
                    lambda idx: pearson_r(real_w[idx].mean(axis=-2), gen_w[idx].mean(axis=-2),
                                          axis=-1),
                    n_images=n_images, n_boot=n_boot, ci=ci, seed=seed, vectorized=True,
                    batch=200)
                low, high = fisher_z_interval(value, boot.distribution, ci)
            rows.append(dict(model=model, window=label, start=start, stop=stop,
                             measure="erp_map", value=value, ci_low=low, ci_high=high))
            specific = (real_w - real_w.mean(axis=0), gen_w - gen_w.mean(axis=0))
            if np.abs(specific[1]).max() <= 1e-9 * np.abs(gen_w).max():
                specific = (specific[0], np.zeros_like(gen_w))  # rounding noise only: none
            for measure, (a, b) in (("per_image", (real_w, gen_w)), ("image_specific", specific)):
                per_image = pearson_r(a, b, axis=-1)
                value, low, high = mean_ignoring_nan(per_image), np.nan, np.nan
                if np.isfinite(per_image).all():
                    interval = bootstrap_ci(per_image, n_boot=n_boot, ci=ci, seed=seed)
                    low, high = interval.low, interval.high
                rows.append(dict(model=model, window=label, start=start, stop=stop,
                                 measure=measure, value=value, ci_low=low, ci_high=high))
    return pd.DataFrame(rows)


def _windows(windows) -> tuple[list[str], list[tuple[float, float]]]:
    windows = topography.default_windows() if windows is None else windows
    if isinstance(windows, Mapping):
        return list(windows), [tuple(map(float, w)) for w in windows.values()]
    bounds = [tuple(map(float, w)) for w in windows]
    return [f"{1e3 * a:g}–{1e3 * b:g} ms" for a, b in bounds], bounds


def window_maps(run: SubjectRun, model: str | None = None, windows=None) -> np.ndarray:
    """Window maps ``(n_windows, n_images, n_channels)`` of the real test averages
    (``model=None``) or of a model's predictions."""
    responses = run.target_average if model is None else prediction(run, model)
    return topography.window_maps(responses, run.dataset.times, windows)


def spatial_timecourses(run: SubjectRun, models: Sequence[str] = MODELS, *,
                        reference: bool = True) -> dict[str, np.ndarray]:
    """Spatial correlation of the real and predicted ERP at every time, per model.

    Returns
    -------
    dict of str to ndarray, shape (n_times,)
    """
    real = run.target_average
    return {m: topography.spatial_correlation_timecourse(real, prediction(run, m))
            for m in _with_reference(run, models, reference)}


def rsa_timecourses(run: SubjectRun, models: Sequence[str] = PER_IMAGE_MODELS, *,
                    win: float = 0.03, reference: bool = True) -> dict[str, np.ndarray]:
    """Similarity (Spearman ρ) of the real and predicted image × image RDMs over time.

    Each time point's RDMs come from the responses smoothed over ``win`` seconds (see
    :func:`~analysis.evaluation.topography.rsa_timecourse`). Models with one prediction
    for every image (``train_mean``) have no RDM and are best left out.
    """
    real = run.target_average
    return {m: topography.rsa_timecourse(real, prediction(run, m), run.dataset.times, win=win)
            for m in _with_reference(run, models, reference)}


def rsa_table(run: SubjectRun, models: Sequence[str] | None = None, *, windows=None,
              reference: bool = True, n_perm: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Representational similarity of real and predicted window maps, with permutation p.

    Per window, the image × image RDMs (1 − r across channels) of the real test averages
    and of the predictions are compared by Spearman ρ over their upper triangles; the
    p-value permutes the image labels of the predicted RDM (a Mantel test, one-sided,
    ``(1 + #null >= ρ) / (n_perm + 1)``). No CI: resampling images would duplicate rows of
    an RDM.

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``window``, ``start``, ``stop``, ``rho``, ``p_value``,
        ``n_images``.
    """
    models = shown(run, PER_IMAGE_MODELS) if models is None else models
    labels, bounds = _windows(windows)
    times = run.dataset.times
    real = topography.window_maps(run.target_average, times, dict(zip(labels, bounds)))
    n = real.shape[1]
    rows = []
    for model in _with_reference(run, models, reference):
        gen = topography.window_maps(prediction(run, model), times, dict(zip(labels, bounds)))
        for w, (label, (start, stop)) in enumerate(zip(labels, bounds)):
            rho, p = topography.mantel_test(topography.rdm(real[w]), topography.rdm(gen[w]),
                                            n_perm, seed)
            rows.append(dict(model=model, window=label, start=start, stop=stop, rho=rho,
                             p_value=p, n_images=n))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- plausibility


def plausibility_table(run: SubjectRun, models: Sequence[str] | None = None, *,
                       cv: int = 5, n_permutations: int = 19, seed: int = 0) -> pd.DataFrame:
    """Can a classifier tell real from generated signals, image by image? AUC and p.

    Like with like (:func:`~analysis.evaluation.decoding.residual_auc`): for every test
    image, the average of ``k`` real target repetitions and the average of ``k`` of the
    model's signals, each minus the average of ``k`` other real repetitions of that image;
    log-power features, folds and permutations grouped by image. AUC 0.5: the generated
    signals fit their image as well as real repetitions do. References come first, so each
    model's AUC reads against ``real_half`` (0.5 by construction) and the image-blind
    ``mean_noise``.

    Parameters
    ----------
    models : sequence of str, optional
        Names of :mod:`analysis.names`; default every reference the data allow, then the
        generators and ``ridge``.
    cv, n_permutations, seed
        Folds, label permutations behind the p-value (each costs ``cv`` classifier fits;
        the smallest possible p is ``1 / (n_permutations + 1)``), and seed.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model``, ``auc`` (mean over folds), ``ci_low`` / ``ci_high``
        (Student-t interval over the ``cv`` fold AUCs, clipped to [0, 1] — a rough interval,
        the folds share training data), ``p_value`` (one-sided, AUC above chance),
        ``n_images``, ``k`` (repetitions per average) and ``comparison``.
    """
    models = shown(run, PER_IMAGE_MODELS) if models is None else models
    rows = []
    for model in models:
        signals = run.signals(model)
        result = decoding.residual_auc(run.target, signals, cv=cv, seed=seed,
                                       n_permutations=n_permutations)
        _, low, high = np.clip(t_interval(result.fold_aucs), 0.0, 1.0)
        k = min(signals.shape[1], run.target.shape[1] // 2)
        rows.append(dict(model=model, auc=result.auc, ci_low=low, ci_high=high,
                         p_value=result.p_value, n_images=result.n_real, k=k,
                         comparison=f"{k}-averages minus {k} other real repetitions"))
    return pd.DataFrame(rows)


def image_attribute(run: SubjectRun, attribute: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-image labels of an attribute for the training and test images, if known.

    Only the simulated dataset ships an attribute table (``meta['image_attributes']``);
    for real datasets this returns None.
    """
    path = run.dataset.meta.get(_ATTRIBUTES_KEY)
    if path is None or not Path(path).is_file():
        return None
    table = pd.read_csv(path).set_index("image_id")
    if attribute not in table.columns:
        raise ValueError(f"attribute: expected a column of {path}, one of "
                         f"{list(table.columns)}; found '{attribute}'")
    return (table.loc[run.dataset.train.image_ids, attribute].to_numpy(),
            table.loc[run.dataset.test.image_ids, attribute].to_numpy())


def transfer_table(run: SubjectRun, attribute: str = "curved", model: str = "cross_attention",
                   *, time_resolved: bool = True, classifier: str | None = None, cv: int = 5,
                   seed: int = 0, max_samples: int = 4) -> pd.DataFrame | None:
    """Decode an image attribute across real trials and generated samples, both ways.

    Real examples are the single *training* trials; generated examples are the
    generator's samples for the *test* images, so a decoder never meets the same image
    on both sides. A generator trained on repetition averages (``targets='average'``, the
    ``default`` profile) makes average-like samples, less noisy than the trials the
    decoder is trained on. Balanced accuracy; the within-source baselines are
    cross-validated with an image's repetitions kept in one fold. See
    :func:`~analysis.evaluation.decoding.transfer_decoding`.

    At most ``max_samples`` samples per test image are used (the first ones): more add
    decoding time, not information about the attribute.

    ``classifier`` defaults to shrinkage LDA for time-resolved decoding (few channels per
    time point; about 15 times faster than logistic regression there) and to logistic
    regression on the whole window (LDA's covariance of all channel × time features
    would be slow).

    Returns
    -------
    pandas.DataFrame or None
        The ``transfer_decoding`` table, or None when the dataset has no attribute table
        (real recordings).
    """
    labels = image_attribute(run, attribute)
    if labels is None:
        return None
    train_labels, test_labels = labels
    classifier = classifier or ("lda" if time_resolved else "logistic")
    x_real, y_real, g_real = decoding.stack_examples(run.dataset.train.signals, train_labels)
    x_gen, y_gen, g_gen = decoding.stack_examples(run.generated(model)[:, :max_samples],
                                                  test_labels)
    return decoding.transfer_decoding(
        x_real, y_real, x_gen, y_gen, run.dataset.times, time_resolved,
        names=("real", "generated"), groups_train=g_real, groups_test=g_gen,
        classifier=classifier, cv=cv, scoring="balanced_accuracy", seed=seed,
    ).assign(attribute=attribute, model=model)


def _real_like_generated(run: SubjectRun, model: str) -> tuple[np.ndarray, str]:
    """Real test signals comparable with one generated sample: trials or averages."""
    if run.model(model).train_config.targets == "average":
        return run.target_average, "real test averages"
    return run.target, "real test trials"


def spectra(run: SubjectRun, models: Sequence[str] = ("cross_attention",)
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Welch power spectra of real test trials and of each generator's samples.

    Returns
    -------
    freqs : ndarray, shape (n_freqs,)
        Hz.
    psds : dict of str to ndarray, shape (n_freqs,)
        Mean PSD (units²/Hz) of the real signals comparable with single samples (trials,
        or averages for a generator trained on averages) and of each model's samples.
    """
    real, label = _real_like_generated(run, models[0])
    freqs, psd = decoding.power_spectra(real, run.dataset.sfreq)
    psds = {label: psd}
    for model in models:
        _, psds[f"{model} samples"] = decoding.power_spectra(run.generated(model),
                                                             run.dataset.sfreq)
    return freqs, psds


def grand_averages(run: SubjectRun, models: Sequence[str] = ("cross_attention",)
                   ) -> dict[str, np.ndarray]:
    """Grand-average responses ``(n_channels, n_times)``: real test data and each model."""
    out = {"real": run.target_average.mean(axis=0)}
    out.update({m: prediction(run, m).mean(axis=0) for m in models})
    return out


def signal_statistics_table(run: SubjectRun, model: str = "cross_attention") -> pd.DataFrame:
    """Band power, RMS and ERP peak latency / amplitude, real vs one generator's samples.

    Real test trials are set against generated samples (both single-trial-like); ERP
    peaks come from each side's grand average. See
    :func:`~analysis.evaluation.decoding.compare_signal_statistics`.

    Returns
    -------
    pandas.DataFrame
        Columns ``statistic``, ``feature``, ``real``, ``generated`` and ``ratio``
        (generated / real).
    """
    real, _ = _real_like_generated(run, model)
    long = decoding.compare_signal_statistics(real, run.generated(model), run.dataset.sfreq,
                                              run.dataset.times)
    wide = long.pivot_table(index=["statistic", "feature"], columns="source", values="value",
                            sort=False).reset_index()
    wide.columns.name = None
    with np.errstate(divide="ignore", invalid="ignore"):
        wide["ratio"] = wide["generated"] / wide["real"]
    return wide[["statistic", "feature", "real", "generated", "ratio"]]


# --------------------------------------------------------------------------- saved results

#: The per-subject tables the group pages read, and how each is computed.
RESULTS: dict[str, Callable[[SubjectRun], pd.DataFrame]] = {
    "calibration": calibration_scores,
    "fidelity": fidelity_table,
    "readouts": readout_table,
    "paired_tests": paired_tests,
    "identification": identification_table,
    "plausibility": plausibility_table,
    "topography": topography_table,
}


def save_table(run: SubjectRun, name: str, table: pd.DataFrame) -> Path:
    """Save a per-subject table for the group pages, tagged with its profile and encoder.

    Calls :meth:`SubjectRun.save_result` (which adds ``dataset`` and ``subject``) after
    adding ``profile`` and ``encoder`` columns, so :func:`load_or_compute` never mixes
    tables of different run sizes or encoders.
    """
    return run.save_result(name, table.assign(profile=run.profile.name,
                                              encoder=run.encoder_label))


def save_dataset_table(runs: Mapping[int, SubjectRun], name: str, table: pd.DataFrame) -> Path:
    """Save a table about the whole dataset (all of ``runs``) as
    ``results/<dataset>/<name>.csv``, tagged with dataset, subjects, profile and encoder."""
    from .files import atomic_write_text

    first = next(iter(runs.values()))
    folder = Path(first.workdir) / "results" / first.dataset_name
    folder.mkdir(parents=True, exist_ok=True)
    table = table.assign(dataset=first.dataset_name,
                         subjects=" ".join(str(s) for s in runs), profile=first.profile.name,
                         encoder=first.encoder_label)
    return atomic_write_text(folder / f"{name}.csv", table.to_csv(index=False))


def load_or_compute(run: SubjectRun, name: str) -> pd.DataFrame:
    """The saved table ``name`` of this subject, computed and saved first when missing.

    A saved table made with another profile or encoder is recomputed.

    Parameters
    ----------
    name : str
        One of :data:`RESULTS`.
    """
    if name not in RESULTS:
        raise ValueError(f"name: expected one of {sorted(RESULTS)}, found '{name}'")
    path = run.results_dir / f"{name}.csv"
    if path.is_file():
        table = pd.read_csv(path)
        if ({"profile", "encoder"} <= set(table.columns)
                and (table["profile"] == run.profile.name).all()
                and (table["encoder"] == run.encoder_label).all()):
            return table
    save_table(run, name, RESULTS[name](run))
    return pd.read_csv(path)


def group_results(runs: Mapping[int, SubjectRun], name: str) -> pd.DataFrame:
    """One saved table for every subject of ``runs``, concatenated (computing missing ones)."""
    return pd.concat([load_or_compute(run, name) for run in runs.values()], ignore_index=True)


# --------------------------------------------------------------------------- group summaries


#: The range each summarised quantity can take; CIs are clipped to it.
RANGES: dict[str, tuple[float, float]] = {
    "paper_r": (-1.0, 1.0), "encoding_score": (-1.0, 1.0), "paper_mse": (0.0, np.inf),
    "top1": (0.0, 1.0), "top5": (0.0, 1.0), "auc": (0.0, 1.0),
}


def group_mean_table(values: pd.DataFrame, by: Sequence[str], value: str = "value",
                     ci: float = 0.95, bounds: tuple[float, float] | None = None
                     ) -> pd.DataFrame:
    """Mean over subjects (or seeds) with a Student-t CI, per group of ``by``.

    The t-interval (``scipy.stats.t.interval`` with ``n - 1`` degrees of freedom) treats
    subjects as a random sample; with 2 subjects it is honest but very wide (± 12.7
    standard errors), with 1 it is undefined (NaN). Bounds are clipped to the range the
    quantity can take: ``bounds`` when given, else :data:`RANGES` of the group's
    ``quantity`` or ``metric`` value when ``by`` has such a column.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, ``mean``, ``ci_low``, ``ci_high``, ``n`` (finite values used).
    """
    rows = []
    for key, part in values.groupby(list(by), sort=False):
        mean, low, high = t_interval(part[value].to_numpy(), ci)
        key = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        lo, hi = bounds or RANGES.get(key.get("quantity", key.get("metric")), (-np.inf, np.inf))
        rows.append({**key, "mean": mean, "ci_low": np.clip(low, lo, hi),
                     "ci_high": np.clip(high, lo, hi),
                     "n": int(np.isfinite(part[value].to_numpy(dtype=float)).sum())})
    return pd.DataFrame(rows)


def preferred_ceiling(fidelity: pd.DataFrame) -> str:
    """``'exact'`` when a fidelity table has exact-ceiling rows (simulated), else split-half."""
    return "exact" if (fidelity["ceiling_method"] == "exact").any() else "split-half"


def headline_values(fidelity: pd.DataFrame, identification: pd.DataFrame | None = None,
                    plausibility: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-subject headline numbers in long format, from the saved group tables.

    Quantities: ``encoding_pct_ceiling`` (encoding score as % of the exact ceiling when
    the data are simulated, else of the split-half ceiling), ``encoding_score``,
    ``paper_r``, ``paper_mse``, ``top1`` (identification, fraction) and ``auc``
    (real-vs-generated, like with like: :func:`plausibility_table`).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``model``, ``quantity``, ``value``.
    """
    scores = fidelity.drop_duplicates(["subject", "model", "metric"])  # same value per ceiling
    encoding = fidelity[(fidelity["metric"] == "encoding_score")
                        & (fidelity["ceiling_method"] == preferred_ceiling(fidelity))]
    parts = [encoding.assign(quantity="encoding_pct_ceiling", value=encoding["pct_of_ceiling"])]
    parts += [scores[scores["metric"] == m].assign(quantity=m)
              for m in ("encoding_score", "paper_r", "paper_mse")]
    if identification is not None:
        parts.append(identification[identification["statistic"] == "top1"].assign(
            quantity="top1"))
    if plausibility is not None:
        parts.append(plausibility.assign(quantity="auc", value=lambda d: d["auc"]))
    return pd.concat([p[["subject", "model", "quantity", "value"]] for p in parts],
                     ignore_index=True)


def headline_table(values: pd.DataFrame, ci: float = 0.95, digits: int = 3,
                   percent_digits: int = 1) -> pd.DataFrame:
    """Group mean [t-interval CI] per model and quantity, as a display table.

    Parameters
    ----------
    values : pandas.DataFrame
        From :func:`headline_values`.

    Returns
    -------
    pandas.DataFrame
        One row per model, one column per quantity, cells ``'mean [low, high]'``, plus
        ``n_subjects``.
    """
    means = group_mean_table(values, ["model", "quantity"], ci=ci)
    means["cell"] = [format_ci(m, lo, hi, percent_digits if q.endswith("pct_ceiling") else digits)
                     for q, m, lo, hi in zip(means["quantity"], means["mean"], means["ci_low"],
                                             means["ci_high"])]
    table = means.pivot(index="model", columns="quantity", values="cell")
    table = table.reindex(index=[m for m in values["model"].unique()],
                          columns=[q for q in values["quantity"].unique()])
    table["n_subjects"] = values.groupby("model")["subject"].nunique()
    table.columns.name = None
    return table


#: The check of :data:`~analysis.evaluation.metric_validation.CHECKS` behind each headline
#: quantity: a quantity is valid only where its check passed in every subject.
HEADLINE_CHECKS = {"encoding_pct_ceiling": "encoding_score", "encoding_score": "encoding_score",
                   "paper_r": "paper_r", "paper_mse": "paper_mse", "top1": "top1",
                   "auc": "auc_residual"}


def headline_csv(values: pd.DataFrame, verdicts: pd.DataFrame, ci: float = 0.95
                 ) -> pd.DataFrame:
    """The machine-readable headline: ``results/<dataset>/headline.csv``.

    Parameters
    ----------
    values : pandas.DataFrame
        :func:`headline_values` (``subject``, ``model``, ``quantity``, ``value``).
    verdicts : pandas.DataFrame
        :func:`~analysis.calibration.dataset_verdicts` (``check``, ``valid``).

    Returns
    -------
    pandas.DataFrame
        One row per (model or reference, metric): ``model``, ``metric``, ``value`` (mean
        over subjects), ``ci_low`` / ``ci_high`` (Student-t across subjects, clipped to the
        metric's range), ``n_subjects`` and ``valid`` (the metric's check ranked the
        references as it claims in every subject; False when it was never validated).
    """
    means = group_mean_table(values, ["model", "quantity"], ci=ci)
    passed = dict(zip(verdicts["check"], verdicts["valid"].astype(bool)))
    return pd.DataFrame({
        "model": means["model"], "metric": means["quantity"], "value": means["mean"],
        "ci_low": means["ci_low"], "ci_high": means["ci_high"],
        "n_subjects": values.groupby(["model", "quantity"], sort=False)["subject"].nunique()
        .loc[list(zip(means["model"], means["quantity"]))].to_numpy(),
        "valid": [passed.get(HEADLINE_CHECKS.get(q, q), False) for q in means["quantity"]]})


@dataclass
class InterSubjectTopography:
    """Subject × subject similarity of real and generated scalp maps (one model).

    Attributes
    ----------
    subjects : list of int
    real, generated : ndarray, shape (n_subjects, n_subjects)
        Correlation of subjects' real maps with each other, and of generated maps.
    generated_vs_real : ndarray, shape (n_subjects, n_subjects)
        Rows: generated maps of a subject; columns: real maps of a subject.
    own_vs_other : topography.OwnVsOther
        Whether generated maps match their own subject's real maps best, with a
        permutation p over subject labels (exact with few subjects: the smallest possible
        p is ``1 / n_subjects!``).
    """

    subjects: list
    real: np.ndarray
    generated: np.ndarray
    generated_vs_real: np.ndarray
    own_vs_other: topography.OwnVsOther


def inter_subject_topography(runs: Mapping[int, SubjectRun], model: str = "cross_attention",
                             *, windows=None, n_perm: int = 10_000, seed: int = 0,
                             image_specific: bool = True) -> InterSubjectTopography:
    """Compare subjects' real (target-half) and generated window maps, all windows
    concatenated; by default image-specific maps (each image's map minus the mean map,
    :func:`~analysis.evaluation.topography.subject_similarity_matrix`), because the evoked
    response every image shares makes every pair of subjects, and every model, look alike."""
    real = {s: window_maps(run, None, windows) for s, run in runs.items()}
    gen = {s: window_maps(run, model, windows) for s, run in runs.items()}
    kw = dict(image_specific=image_specific)
    return InterSubjectTopography(
        subjects=list(runs),
        real=topography.subject_similarity_matrix(real, **kw),
        generated=topography.subject_similarity_matrix(gen, **kw),
        generated_vs_real=topography.subject_similarity_matrix(gen, real, **kw),
        own_vs_other=topography.own_vs_other_index(gen, real, n_perm=n_perm, seed=seed, **kw))


def own_vs_other_table(runs: Mapping[int, SubjectRun], models: Sequence[str] | None = None, *,
                       windows=None, n_perm: int = 10_000, seed: int = 0,
                       image_specific: bool = True) -> pd.DataFrame:
    """Own-vs-other index of each model's maps, with its permutation p and null size.

    By default the references that know the image (``real_half``, ``ridge_noise``) and the
    image-blind ``mean_noise`` (the null a model must beat: its image-specific maps are
    noise) come first, then the generators, ``ridge`` and ``train_mean`` (undefined on
    image-specific maps: it has none).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``index`` (mean over subjects of own − mean other r),
        ``p_value`` (one-sided), ``exact`` (all permutations enumerated), ``n_permutations``,
        ``min_p`` (the smallest p this many subjects allow), ``maps`` and ``per_subject``.
    """
    if models is None:
        models = ("real_half", "ridge_noise", "mean_noise") + MODELS
    rows = []
    for model in models:
        result = inter_subject_topography(runs, model, windows=windows, n_perm=n_perm,
                                          seed=seed, image_specific=image_specific).own_vs_other
        n_null = len(result.null)
        rows.append(dict(model=model, index=result.index, p_value=result.p_value,
                         exact=result.exact, n_permutations=n_null,
                         min_p=1 / n_null if result.exact else 1 / (n_null + 1),
                         maps="image-specific" if image_specific else "image-averaged",
                         per_subject=", ".join(f"{s}: {v:.3f}" for s, v in
                                               zip(result.subjects, result.per_subject))))
    return pd.DataFrame(rows)


def _fidelity_rows(run: SubjectRun, pred: np.ndarray, n_boot: int, seed: int) -> pd.DataFrame:
    trials = run.target
    noiseless = None if run.dataset.noiseless is None else run.dataset.noiseless["test"]
    table = fidelity_summary(pred, trials, noiseless, n_boot=n_boot, seed=seed)
    return table[table["metric"] != "paper_mse"]


def sampling_sweep(run: SubjectRun, parameter: str, values: Sequence,
                   conditioning: str = "cross_attention", *, n_boot: int = 500,
                   seed: int = 0) -> pd.DataFrame:
    """Fidelity of one generator as one sampling setting varies (e.g. guidance, steps).

    Parameters
    ----------
    parameter : str
        A :class:`~analysis.config.SamplingConfig` field, e.g. ``'guidance_scale'`` or
        ``'steps'``.
    values : sequence
        Settings to try; generated signals are cached per setting.

    Returns
    -------
    pandas.DataFrame
        ``fidelity_summary`` rows for ``paper_r`` and ``encoding_score`` with
        ``parameter`` and ``setting`` columns.
    """
    frames = [_fidelity_rows(run, run.prediction(conditioning, **{parameter: v}), n_boot, seed)
              .assign(parameter=parameter, setting=v) for v in values]
    return pd.concat(frames, ignore_index=True)


def chosen_setting(sweep: pd.DataFrame) -> object:
    """The setting of a :func:`sampling_sweep` with the highest encoding score (the first
    one on ties, in the order tried)."""
    rows = sweep[sweep["metric"] == "encoding_score"].drop_duplicates("setting")
    return rows.loc[rows["value"].idxmax(), "setting"]


def validation_choice(run: SubjectRun, parameter: str, values: Sequence,
                      conditioning: str = "cross_attention", *, n_boot: int = 500,
                      seed: int = 0) -> tuple[pd.DataFrame, object, pd.DataFrame]:
    """Choose a sampling setting on the validation concepts, then score the test set once.

    The sweep runs on :attr:`~analysis.experiment.SubjectRun.validation` (a generator
    trained without the validation concepts, scored on them); the setting with the highest
    encoding score there is chosen (:func:`chosen_setting`). Only then is the test set
    scored, at the chosen setting and at the profile's own, so the two can be compared.

    Returns
    -------
    validation : pandas.DataFrame
        :func:`sampling_sweep` rows on the validation concepts (``split='validation'``).
    chosen : object
        The chosen value.
    test : pandas.DataFrame
        :func:`sampling_sweep` rows on the test set for the chosen and the profile's value
        (``split='test'``, ``role`` ``'chosen on validation'`` / ``'profile default'``).
    """
    sweep = sampling_sweep(run.validation, parameter, values, conditioning, n_boot=n_boot,
                           seed=seed).assign(split="validation")
    chosen = chosen_setting(sweep)
    default = getattr(run.profile.sampling, parameter)
    roles = {chosen: "chosen on validation"}
    roles.setdefault(default, "profile default")
    if default == chosen:
        roles[chosen] = "chosen on validation = profile default"
    test = sampling_sweep(run, parameter, list(roles), conditioning, n_boot=n_boot,
                          seed=seed).assign(split="test")
    test["role"] = test["setting"].map(roles)
    return sweep, chosen, test


def seed_table(run: SubjectRun, seeds: Sequence[int] = (0, 1, 2),
               conditioning: str = "cross_attention", *, n_boot: int = 500,
               seed: int = 0) -> pd.DataFrame:
    """Fidelity of the generator trained with each training seed (train-or-load each).

    Returns
    -------
    pandas.DataFrame
        ``fidelity_summary`` rows for ``paper_r`` and ``encoding_score`` with a
        ``train_seed`` column; summarise across seeds with :func:`group_mean_table`.
    """
    default = run.profile.train.get("seed", 0)
    frames = []
    for s in seeds:
        overrides = {} if s == default else {"seed": s}
        pred = run.prediction(conditioning, train_overrides=overrides)
        frames.append(_fidelity_rows(run, pred, n_boot, seed).assign(train_seed=s))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- reproducibility


def environment_versions() -> pd.DataFrame:
    """Versions of Python and of the packages behind every number (name, version)."""
    from .provenance import package_versions

    rows = [*package_versions().items(), ("platform", platform.platform())]
    return pd.DataFrame(rows, columns=["name", "version"])


def git_commit(path: str | Path = ".") -> str:
    """``git rev-parse HEAD`` of the repository holding ``path`` (plus ``-dirty`` with
    uncommitted changes), or ``'unknown'`` outside a git checkout or without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=path, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_table(run: SubjectRun, conditionings: Sequence[str] = CONDITIONINGS
                     ) -> pd.DataFrame:
    """Per generator: seeds, device, encoder weights, timings of training and sampling.

    Read from each checkpoint's ``config.json`` and the records saved next to its
    generated signals, so the timings are those of the original runs even when this
    session only loaded them.

    Returns
    -------
    pandas.DataFrame
        One row per conditioning: ``train_seed``, ``sampling_seed``, ``trained_on``,
        ``n_parameters``, ``encoder``, ``encoder_digest``, ``train_seconds``,
        ``generate_seconds``, ``signals_per_s``, ``started``, ``checkpoint_key``.
    """
    from .pipeline import generated_name

    sampling = run.sampling()
    rows = []
    for conditioning in conditionings:
        trained = run.model(conditioning)
        record = _checkpoint_record(trained)
        generated = trained.path.parent / f"{generated_name(sampling)}.json"
        gen = json.loads(generated.read_text()) if generated.is_file() else {}
        encoder = record.get("encoder", {})
        weights = "random init" if encoder.get("random_init") else encoder.get("pretrained")
        rows.append(dict(
            conditioning=conditioning, train_seed=trained.train_config.seed,
            sampling_seed=sampling.seed, trained_on=record.get("device", "unknown"),
            n_parameters=record.get("n_parameters"),
            encoder=f"{encoder.get('model')} ({weights})",
            encoder_digest=str(encoder.get("weights_digest"))[:16],
            train_seconds=trained.info.get("train_seconds", np.nan),
            generate_seconds=gen.get("seconds", np.nan),
            signals_per_s=gen.get("signals_per_s", np.nan),
            started=record.get("started"), checkpoint_key=str(record.get("key"))[:12]))
    return pd.DataFrame(rows)

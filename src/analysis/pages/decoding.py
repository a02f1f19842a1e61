"""Tables of the decoding page: identification, the like-with-like real-vs-generated
classifier, transfer decoding, spectra and ERP statistics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..evaluation import decoding
from ..evaluation.stats import format_ci, t_interval, wilson_interval
from ..names import MODELS, PER_IMAGE_MODELS, kind
from .common import ATTRIBUTES_KEY, prediction, shown

if TYPE_CHECKING:
    from ..experiment import SubjectRun


def identification_mask(run: SubjectRun, *, quantile: float = 0.8, seed: int = 0) -> np.ndarray:
    """The most reliable channel × time features, chosen on the *training* trials only.

    Where each training image was shown once (THINGS-MEG) reliability across repetitions
    cannot be measured without the test set, so every feature is kept.
    """
    train = run.dataset.train.signals
    if train.shape[1] < 2:
        return np.ones(train.shape[2:], dtype=bool)
    return decoding.select_features_by_reliability(train, quantile=quantile, seed=seed)


def identify(run: SubjectRun, models: Sequence[str] | None = None, *, quantile: float = 0.8,
             seed: int = 0) -> dict[str, decoding.IdentificationResult]:
    """Zero-shot identification of every test image from each model's prediction (default:
    every model the subject has).

    Each model's per-image prediction (generators: the mean of their samples) is
    correlated with every real test average over the features of
    :func:`identification_mask`; see :func:`~analysis.evaluation.decoding.identification`.
    """
    from ..calibration import available

    models = available(run, MODELS) if models is None else models
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
        the folds share training data), ``p_value`` (one-sided, AUC above chance; NaN for
        references, which calibrate the scale rather than being tested),
        ``n_images``, ``k`` (repetitions per average) and ``comparison``.
    """
    models = shown(run, PER_IMAGE_MODELS) if models is None else models
    rows = []
    for model in models:
        signals = run.signals(model)
        # References calibrate the scale; only the models' AUCs are tested (permutations
        # cost n_permutations × cv fits each).
        result = decoding.residual_auc(run.target, signals, cv=cv, seed=seed,
                                       n_permutations=0 if kind(model) == "reference"
                                       else n_permutations)
        _, low, high = np.clip(t_interval(result.fold_aucs), 0.0, 1.0)
        k = decoding.residual_k(signals.shape[1], run.target.shape[1])
        rows.append(dict(model=model, auc=result.auc, ci_low=low, ci_high=high,
                         p_value=result.p_value, n_images=result.n_real, k=k,
                         comparison=f"{k}-averages minus {k} other real repetitions"))
    return pd.DataFrame(rows)


def image_attribute(run: SubjectRun, attribute: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-image labels of an attribute for the training and test images, if known.

    Only the simulated dataset ships an attribute table (``meta['image_attributes']``);
    for real datasets this returns None.
    """
    path = run.dataset.meta.get(ATTRIBUTES_KEY)
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
    """Real test signals comparable with one generated sample, with equal repetition counts.

    A generator trained on single trials makes trial-like samples: the target trials. One
    trained on averages of the ``r`` training repetitions makes samples like an ``r``-average:
    the target repetitions averaged in groups of ``r`` (``n_target // r`` groups per image),
    not over all of them, which would be far less noisy.

    Returns
    -------
    signals : ndarray, shape (n_images, n_groups, n_channels, n_times)
    label : str
    """
    if run.model(model).train_config.targets != "average":
        return run.target, "real test trials"
    reps = run.dataset.train.n_reps
    n_groups = run.target.shape[1] // reps
    if n_groups == 0:  # fewer target repetitions than one training average holds
        return run.target.mean(axis=1, keepdims=True), f"real {run.target.shape[1]}-averages"
    grouped = run.target[:, :n_groups * reps].reshape(run.target.shape[0], n_groups, reps,
                                                      *run.target.shape[2:])
    return grouped.mean(axis=2), f"real {reps}-repetition averages"


def spectra(run: SubjectRun, models: Sequence[str] = ("cross_attention",)
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Welch power spectra of real test trials and of each generator's samples.

    Returns
    -------
    freqs : ndarray, shape (n_freqs,)
        Hz.
    psds : dict of str to ndarray, shape (n_freqs,)
        Mean PSD (units²/Hz) of the real signals comparable with single samples (trials,
        or averages of as many repetitions as the generator's training targets,
        :func:`_real_like_generated`) and of each model's samples.
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


def decoding_findings(identification: pd.DataFrame, plausibility: pd.DataFrame,
                      invalid: Sequence[str] = (), alpha: float = 0.05) -> str:
    """The decoding page's finding as Markdown sentences, computed from its tables.

    Parameters
    ----------
    identification : pandas.DataFrame
        :func:`identification_table` (its ``top1`` rows are used).
    plausibility : pandas.DataFrame
        :func:`plausibility_table` (``auc``, ``ci_low``, ``ci_high``, ``p_value``).
    invalid : sequence of str
        Checks that did not rank the references as they claim in this subject; named, so
        their numbers read as descriptions.
    alpha : float
        Level at which a p-value is called.
    """
    top1 = identification.query("statistic == 'top1'")
    parts = []
    for row in top1.itertuples():
        above = ("above chance" if row.p_value < alpha else "not shown above chance")
        share = format_ci(100 * row.value, 100 * row.ci_low, 100 * row.ci_high, 1)
        parts.append(f"`{row.model}` {share} % ({above}, p = {row.p_value:.2g})")
    chance = 100 * float(top1["chance"].iloc[0]) if len(top1) else float("nan")
    sentences = [f"**Identification top-1** (Wilson 95 % intervals; chance {chance:.1f} %): "
                 + "; ".join(parts) + "."]
    parts = []
    for row in plausibility.itertuples():
        text = f"`{row.model}` {format_ci(row.auc, row.ci_low, row.ci_high, 2)}"
        if np.isfinite(row.p_value):
            text += (" (told apart from real" if row.p_value < alpha
                     else " (not told apart from real") + f", p = {row.p_value:.2g})"
        parts.append(text)
    sentences.append("**Real vs generated** (AUC; 0.5: a classifier cannot tell a model's "
                     "signals from real repetitions of the same image): " + "; ".join(parts)
                     + ".")
    if len(invalid):
        sentences.append("Checks that did not rank the references as they claim here, so "
                         "their numbers are descriptions, not evidence: "
                         + ", ".join(invalid) + ".")
    return "\n\n".join(sentences)

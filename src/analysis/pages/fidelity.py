"""Tables of the fidelity page: scores with CIs and ceilings, read-outs, paired tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..evaluation.metrics import (fidelity_summary, paired_encoding_test, paper_mse,
                                  paper_pearson, pct_of_exact_ceiling_ci)
from ..evaluation.noise_ceiling import noise_ceiling_r
from ..evaluation.stats import format_ci, holm, paired_permutation_test
from ..names import PAIRS
from .common import difference_verdict, prediction, shown

if TYPE_CHECKING:
    from ..experiment import SubjectRun


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
                      outputs: np.ndarray | None = None, n_boot: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """:func:`fidelity_table` of any named test-set predictions ``(n_images, n_ch, n_times)``.

    With ``outputs`` (indices into the flattened channel × time outputs, see
    :func:`readout_outputs`) the predictions are ``(n_images, 1, len(outputs))`` and are
    scored against those outputs of the trials.
    """
    trials = run.target
    noiseless = None if run.dataset.noiseless is None else run.dataset.noiseless["test"]
    if outputs is not None:
        trials = trials.reshape(*trials.shape[:2], -1)[..., outputs][:, :, None]
        if noiseless is not None:
            noiseless = noiseless.reshape(len(noiseless), -1)[:, outputs][:, None]
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


#: Most channel × time outputs the read-out comparison fits and scores (see
#: :func:`readout_outputs`): every output of the built-in data (17 × 100), an even
#: subsample of THINGS-EEG2's 63 × 250 and THINGS-MEG's 271 × 281.
READOUT_OUTPUTS = 4096


def readout_outputs(n_outputs: int, limit: int = READOUT_OUTPUTS) -> np.ndarray:
    """The flattened channel × time outputs the read-outs use: all of them up to ``limit``,
    else every k-th (``k = ceil(n_outputs / limit)``), spread over channels and times.

    Fitting costs images × features × outputs per penalty tried: comparing feature sets on
    THINGS-MEG's 77 275 outputs would take more than an hour on 2 cores, while the mean
    encoding score over an even subsample of a few thousand outputs estimates the same
    mean (each output's ridge has its own penalty and weights, so it is fit exactly as in
    the full model).
    """
    return np.arange(0, n_outputs, -(-n_outputs // limit))


def readout_predictions(run: SubjectRun, outputs: np.ndarray | None = None
                        ) -> dict[str, np.ndarray]:
    """Test-set predictions of ridge on each feature set of :func:`analysis.readouts.feature_sets`.

    Each is fit on the training averages of the ``outputs`` (default
    :func:`readout_outputs`), predictions ``(n_test_images, 1, len(outputs))``. The profile
    encoder's pooled read-out *is* the ``ridge`` baseline (its outputs taken from it).
    Beside them, RBF kernel ridge on the same pooled embedding (``'…: pooled, kernel'``)
    asks whether the features hold image information that a linear map misses.
    """
    from ..models.baselines import KernelRidgeEncoder, RidgeEncoder
    from ..readouts import feature_sets, pooled_name

    train_signals = run.dataset.train.signals
    n_images, n_reps = train_signals.shape[:2]
    if outputs is None:
        outputs = readout_outputs(int(np.prod(train_signals.shape[2:])), READOUT_OUTPUTS)
    # Averaged over repetitions at the chosen outputs only: THINGS-MEG's full average would
    # be another 6.8 GB.
    responses = train_signals.reshape(n_images, n_reps, -1)[..., outputs].mean(axis=1)[:, None]
    own = pooled_name(run.features.meta)
    out = {}
    for name, (train, test) in feature_sets(run, run.readout_features).items():
        if name == own:
            ridge = prediction(run, "ridge")
            out[name] = ridge.reshape(len(ridge), -1)[:, outputs][:, None]
            out[f"{own}, kernel"] = KernelRidgeEncoder().fit(train, responses).predict(test)
        else:
            out[name] = RidgeEncoder().fit(train, responses).predict(test)
    return out


def readout_table(run: SubjectRun, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`fidelity_table` of :func:`readout_predictions` (``model`` names the read-out),
    on the outputs of :func:`readout_outputs` (the table's ``n_outputs`` column says how many
    of the channel × time outputs)."""
    n_outputs = int(np.prod(run.dataset.train.signals.shape[2:]))
    outputs = readout_outputs(n_outputs, READOUT_OUTPUTS)
    table = score_predictions(run, readout_predictions(run, outputs), outputs=outputs,
                              n_boot=n_boot, seed=seed)
    return table.assign(n_outputs=len(outputs), of_outputs=n_outputs)


_PER_IMAGE_METRICS: dict[str, Callable] = {"paper_r": paper_pearson, "paper_mse": paper_mse}


def paired_tests(run: SubjectRun, pairs: Iterable[tuple[str, str]] | None = None,
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
    (Holm–Bonferroni), the family a page reports. The default ``pairs``: those of
    :data:`~analysis.names.PAIRS` whose models the subject has (the ablation's are the
    first subject's).

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
    from ..calibration import available

    if pairs is None:
        pairs = [pair for pair in PAIRS if len(available(run, pair)) == 2]
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


def fidelity_findings(fidelity: pd.DataFrame, paired: pd.DataFrame, ceiling: str,
                      alpha: float = 0.05) -> str:
    """The fidelity page's finding as Markdown sentences, computed from its tables.

    Parameters
    ----------
    fidelity : pandas.DataFrame
        :func:`fidelity_table` (``encoding_score`` rows, with ``pct_of_ceiling`` and its
        ``pct_ci_low`` / ``pct_ci_high``).
    paired : pandas.DataFrame
        :func:`paired_tests` (``difference``, ``ci_low``, ``ci_high``, ``p_holm``).
    ceiling : str
        The ceiling method the percentages refer to (``'exact'`` or ``'split-half'``).
    alpha : float
        Level of the Holm-adjusted tests a difference is called at.
    """
    rows = fidelity.query("metric == 'encoding_score' and ceiling_method == @ceiling")
    scores = []
    for row in rows.itertuples():
        if not np.isfinite(row.value):  # a constant prediction has no correlation
            scores.append(f"`{row.model}` undefined (the same prediction for every image)")
            continue
        pct = format_ci(row.pct_of_ceiling, row.pct_ci_low, row.pct_ci_high, 1)
        scores.append(f"`{row.model}` {format_ci(row.value, row.ci_low, row.ci_high, 3)} "
                      f"({pct} % of the {ceiling} ceiling)")
    sentences = ["**Encoding score** of each model's mean prediction and of the references "
                 "(bootstrap 95 % intervals over test images): " + "; ".join(scores) + "."]
    for row in paired.itertuples():
        verdict = difference_verdict(row.model_a, row.model_b, row.difference, row.p_holm,
                                     alpha)
        delta = format_ci(row.difference, row.ci_low, row.ci_high, 3)
        sentences.append(f"`{row.model_a}` − `{row.model_b}`: Δ {delta}, Holm-adjusted "
                         f"p = {row.p_holm:.2g}: {verdict}.")
    return "\n\n".join(sentences)

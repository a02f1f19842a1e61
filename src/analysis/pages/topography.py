"""Tables of the topography pages: spatial correlation, RSA, the inter-subject matrices
and the own-vs-other index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from ..evaluation import topography as topo
from ..evaluation.stats import (bootstrap_ci, fisher_z_interval, format_ci, mean_ignoring_nan,
                               pearson_r)
from ..names import MODELS, PER_IMAGE_MODELS, kind
from .common import prediction, shown, window_bounds, window_maps, with_noiseless

if TYPE_CHECKING:
    from ..experiment import SubjectRun


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
    :func:`~analysis.evaluation.stats.fisher_z_interval` of its bootstrap replicates. With
    ``reference`` and simulated data a ``'noiseless'`` row shows what a perfect model
    reaches against the noisy maps.

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``window``, ``start``, ``stop`` (s), ``measure``, ``value``,
        ``ci_low``, ``ci_high``.
    """
    models = shown(run) if models is None else models
    labels, bounds = window_bounds(windows)
    named = dict(zip(labels, bounds))
    times = run.dataset.times
    real = topo.window_maps(run.target_average, times, named)
    rows = []
    for model in with_noiseless(run, models, reference):
        gen = topo.window_maps(prediction(run, model), times, named)
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
            specific = (topo.image_specific_maps(real_w, axis=0),
                        topo.image_specific_maps(gen_w, axis=0))
            for measure, (a, b) in (("per_image", (real_w, gen_w)), ("image_specific", specific)):
                per_image = pearson_r(a, b, axis=-1)
                value, low, high = mean_ignoring_nan(per_image), np.nan, np.nan
                if np.isfinite(per_image).all():
                    interval = bootstrap_ci(per_image, n_boot=n_boot, ci=ci, seed=seed)
                    low, high = interval.low, interval.high
                rows.append(dict(model=model, window=label, start=start, stop=stop,
                                 measure=measure, value=value, ci_low=low, ci_high=high))
    return pd.DataFrame(rows)


def spatial_timecourses(run: SubjectRun, models: Sequence[str] | None = None, *,
                        reference: bool = True) -> dict[str, np.ndarray]:
    """Spatial correlation of the real and predicted ERP at every time, per model (default:
    every model the subject has).

    Returns
    -------
    dict of str to ndarray, shape (n_times,)
    """
    from ..calibration import available

    models = available(run, MODELS) if models is None else models
    real = run.target_average
    return {m: topo.spatial_correlation_timecourse(real, prediction(run, m))
            for m in with_noiseless(run, models, reference)}


def rsa_timecourses(run: SubjectRun, models: Sequence[str] | None = None, *,
                    win: float = 0.03, reference: bool = True) -> dict[str, np.ndarray]:
    """Similarity (Spearman ρ) of the real and predicted image × image RDMs over time.

    Each time point's RDMs come from the responses smoothed over ``win`` seconds (see
    :func:`~analysis.evaluation.topography.rsa_timecourse`). Models with one prediction
    for every image (``train_mean``) have no RDM and are best left out (the default: every
    per-image model the subject has).
    """
    from ..calibration import available

    models = available(run, PER_IMAGE_MODELS) if models is None else models
    real = run.target_average
    return {m: topo.rsa_timecourse(real, prediction(run, m), run.dataset.times, win=win)
            for m in with_noiseless(run, models, reference)}


def rsa_table(run: SubjectRun, models: Sequence[str] | None = None, *, windows=None,
              reference: bool = True, n_perm: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Representational similarity of real and predicted window maps, with permutation p.

    Per window, the image × image RDMs (1 − r across channels) of the real test averages
    and of the predictions are compared by Spearman ρ over their upper triangles; the
    p-value permutes the image labels of the predicted RDM (a Mantel test, one-sided,
    ``(1 + #null >= ρ) / (n_perm + 1)``), for the models only: references and the
    noiseless truth calibrate the scale (NaN p, and no permutation cost). No CI: resampling
    images would duplicate rows of an RDM.

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``window``, ``start``, ``stop``, ``rho``, ``p_value``,
        ``n_images``.
    """
    models = shown(run, PER_IMAGE_MODELS) if models is None else models
    labels, bounds = window_bounds(windows)
    times = run.dataset.times
    real = topo.window_maps(run.target_average, times, dict(zip(labels, bounds)))
    n = real.shape[1]
    rows = []
    for model in with_noiseless(run, models, reference):
        gen = topo.window_maps(prediction(run, model), times, dict(zip(labels, bounds)))
        for w, (label, (start, stop)) in enumerate(zip(labels, bounds)):
            if kind(model) in ("reference", "truth"):  # they calibrate; not tested
                rho, p = topo.mantel_test(topo.rdm(real[w]), topo.rdm(gen[w]), 1, seed)
                p = np.nan
            else:
                rho, p = topo.mantel_test(topo.rdm(real[w]), topo.rdm(gen[w]), n_perm, seed)
            rows.append(dict(model=model, window=label, start=start, stop=stop, rho=rho,
                             p_value=p, n_images=n))
    return pd.DataFrame(rows)


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
    own_vs_other : topo.OwnVsOther
        Whether generated maps match their own subject's real maps best, with a
        permutation p over subject labels (exact with few subjects: the smallest possible
        p is ``1 / n_subjects!``).
    """

    subjects: list
    real: np.ndarray
    generated: np.ndarray
    generated_vs_real: np.ndarray
    own_vs_other: topo.OwnVsOther


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
        real=topo.subject_similarity_matrix(real, **kw),
        generated=topo.subject_similarity_matrix(gen, **kw),
        generated_vs_real=topo.subject_similarity_matrix(gen, real, **kw),
        own_vs_other=topo.own_vs_other_index(gen, real, n_perm=n_perm, seed=seed, **kw))


def own_vs_other_table(runs: Mapping[int, SubjectRun], models: Sequence[str] | None = None, *,
                       windows=None, n_perm: int = 10_000, seed: int = 0,
                       image_specific: bool = True) -> pd.DataFrame:
    """Own-vs-other index of each model's maps, with its permutation p and null size.

    By default the references that know the image (``real_half``, ``ridge_noise``) and the
    image-blind ``mean_noise`` (the null a model must beat: its image-specific maps are
    noise) come first, then the generators every subject has, ``ridge`` and ``train_mean``
    (undefined on image-specific maps: it has none).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``index`` (mean over subjects of own − mean other r),
        ``p_value`` (one-sided), ``exact`` (all permutations enumerated), ``n_permutations``,
        ``min_p`` (the smallest p this many subjects allow), ``maps`` and ``per_subject``.
    """
    from ..calibration import available_in_all

    if models is None:
        models = available_in_all(runs, ("real_half", "ridge_noise", "mean_noise") + MODELS)
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


def topography_findings(topo_table: pd.DataFrame, rsa: pd.DataFrame,
                        model: str = "cross_attention", alpha: float = 0.05) -> str:
    """The topography page's finding as Markdown sentences, one per ERP window.

    Parameters
    ----------
    topo_table : pandas.DataFrame
        :func:`topography_table` (its ``image_specific`` rows: every model and reference).
    rsa : pandas.DataFrame
        :func:`rsa_table` (``model``, ``window``, ``rho``, ``p_value``).
    model : str
        The generator whose RDM similarity is stated.
    alpha : float
        Level at which the RSA permutation p is called.
    """
    specific = topo_table[topo_table["measure"] == "image_specific"]
    sentences = []
    for window, rows in specific.groupby("window", sort=False):
        first = rows.iloc[0]
        parts = [f"`{r.model}` {format_ci(r.value, r.ci_low, r.ci_high, 3)}"
                 for r in rows.itertuples()]
        text = (f"**{window}** ({1000 * first['start']:.0f}–{1000 * first['stop']:.0f} ms), "
                "image-specific spatial r: " + "; ".join(parts) + ".")
        match = rsa[(rsa["model"] == model) & (rsa["window"] == window)]
        if len(match):
            r = match.iloc[0]
            called = "above" if r["p_value"] < alpha else "not shown above"
            text += (f" `{model}`'s representational geometry: RDM ρ = {r['rho']:.3f} "
                     f"(p = {r['p_value']:.2g}, {called} chance).")
        sentences.append(text)
    return "\n\n".join(sentences)


def group_topography_findings(inter: "InterSubjectTopography | None", own: pd.DataFrame | None,
                              null: str = "mean_noise") -> str:
    """The group topography page's finding as Markdown sentences.

    ``inter`` (:func:`inter_subject_topography`) and ``own`` (:func:`own_vs_other_table`)
    are None for a one-subject run, which has nothing to compare across subjects.
    """
    if inter is None or own is None:
        return ("One subject: nothing to compare across subjects (the between-subject "
                "similarity and the own-vs-other index need at least two); the "
                "intra-subject table above is this subject's alone.")
    off = ~np.eye(len(inter.subjects), dtype=bool)
    sentences = [f"Mean inter-subject r of image-specific maps: real "
                 f"{inter.real[off].mean():.3f}, generated {inter.generated[off].mean():.3f} "
                 "(generated maps more alike across subjects than real ones would mean the "
                 "generator ignores the individual)."]
    base = own.set_index("model")["index"].get(null, np.nan)
    parts = []
    for r in own.itertuples():
        if not np.isfinite(r.index):
            parts.append(f"`{r.model}` undefined (no image-specific maps)")
        else:
            parts.append(f"`{r.model}` {r.index:+.3f} (p = {r.p_value:.2g}, smallest possible "
                         f"{r.min_p:.2g})")
    sentences.append(f"**Own-vs-other index** (own-subject minus other-subject r; the "
                     f"image-blind `{null}` gives {base:+.3f}): " + "; ".join(parts) + ".")
    return "\n\n".join(sentences)

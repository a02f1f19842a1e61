"""Tables of the sampling page: sweeps of sampling settings, choices on validation
concepts, training seeds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..evaluation.metrics import fidelity_summary

if TYPE_CHECKING:
    from ..experiment import SubjectRun


def _fidelity_rows(run: SubjectRun, pred: np.ndarray, n_boot: int, seed: int) -> pd.DataFrame:
    trials = run.target
    noiseless = None if run.dataset.noiseless is None else run.dataset.noiseless["test"]
    table = fidelity_summary(pred, trials, noiseless, n_boot=n_boot, seed=seed)
    return table[table["metric"] != "paper_mse"]


#: What each sampling setting is chosen for on the validation concepts. The generator's
#: mean prediction is its conditional mean, which no sampling setting changes; the
#: settings serve the *samples*. Guidance is chosen so that their single-trial SNR is the
#: recording's (``snr_ratio`` nearest 1: neither caricatures nor pure noise). The number
#: of steps is chosen so that a classifier tells the samples from recorded trials least
#: well (``classifier_auc`` nearest 0.5, :func:`~analysis.evaluation.realism.classifier_two_sample_test`):
#: the SNR alone chose 10 steps of DPM-Solver++ for the default book's generator, whose
#: samples the classifier then told from trials perfectly (validation AUC 1.00 at 10 steps,
#: 0.98 at 20, 0.91 at 30, 0.86 at 40; the trials' spatial covariance, autocorrelation and
#: spectrum also came nearer the recording's with more steps). Few steps smooth the trial
#: noise away, so the mean-of-samples score would choose the fewest, the wrong end.
CRITERIA = {"guidance_scale": "snr_ratio", "steps": "classifier_auc"}


def sampler_label(run: SubjectRun) -> str:
    """The name of the profile's sampler, e.g. ``'DPM-Solver++(2M)'`` (for axis labels)."""
    from ..models.diffusion import SAMPLERS

    return SAMPLERS[run.profile.sampling.method].name


#: Validation images a sampling sweep scores at most (evenly spaced ones beyond it:
#: :meth:`~analysis.experiment.SubjectRun.with_test_subset`). Twice the THINGS test set:
#: each setting samples every image, and THINGS-MEG's 2218 validation images made the
#: page's two sweeps take over an hour on 2 CPU cores; the built-in book's validation
#: split is smaller, so it is scored whole.
SWEEP_MAX_IMAGES = 400

#: Samples per validation image a sampling sweep draws at most (the profile's number where
#: it is smaller). Neither criterion gains from more: the samples' single-trial SNR does not
#: depend on their number (:func:`~analysis.evaluation.realism.single_trial_snr` removes the
#: sampling part of the image means), and the classifier compares equal numbers of samples
#: and recorded trials per image, at most the validation images' repetitions (4 in
#: THINGS-EEG2's layout). So 4 choose what 16 would at a quarter of the cost: the built-in
#: book's guidance sweep took 693 of its 3026 s with 16. The mean of 4 samples
#: scores lower than the test set's mean of the profile's number, so the sweep's encoding
#: scores are compared across settings, not with the test rows.
SWEEP_SAMPLES = 4

#: The test rows' ``role`` where validation could not choose (images shown once).
NOT_CHOSEN = "profile default (validation cannot measure the criterion)"


def sampling_sweep(run: SubjectRun, parameter: str, values: Sequence,
                   conditioning: str = "cross_attention", *, n_boot: int = 500,
                   seed: int = 0, n_samples: int | None = None) -> pd.DataFrame:
    """Fidelity and realism of one generator's samples as one sampling setting varies.

    Parameters
    ----------
    parameter : str
        A :class:`~analysis.config.SamplingConfig` field, e.g. ``'guidance_scale'`` or
        ``'steps'``.
    values : sequence
        Settings to try; generated signals are cached per setting.
    n_samples : int | None
        Samples per image (``None``: the profile's).

    Returns
    -------
    pandas.DataFrame
        ``fidelity_summary`` rows (``paper_r``, ``encoding_score``) of the mean of the
        samples per image, a ``snr_ratio`` row: the samples' single-trial SNR over the
        recording's (:func:`~analysis.evaluation.realism.single_trial_snr`; 1 = as noisy as
        real trials; NaN where the target has one repetition per image, as THINGS-MEG's
        training images do, so the recording's SNR cannot be measured), and a
        ``classifier_auc`` row (how well a classifier tells samples from recorded trials,
        0.5 = not at all, with a bootstrap CI over images), with ``parameter``
        and ``setting`` columns, ``n_images`` (how many images were scored) and
        ``n_samples`` (samples per image).
    """
    from ..evaluation.realism import classifier_two_sample_test, single_trial_snr

    real_snr = single_trial_snr(run.target) if run.target.shape[1] >= 2 else np.nan
    frames = []
    changes = {} if n_samples is None else {"n_samples": n_samples}
    for v in values:
        samples = run.generated(conditioning, **{**changes, parameter: v})
        rows = _fidelity_rows(run, samples.mean(axis=1), n_boot, seed)
        auc = classifier_two_sample_test(run.target, samples, n_boot=n_boot, seed=seed)
        realism = [("snr_ratio", single_trial_snr(samples) / real_snr, np.nan, np.nan),
                   ("classifier_auc", auc["value"], auc["ci_low"], auc["ci_high"])]
        extra = pd.DataFrame([{**row.to_dict(), "metric": metric, "value": value,
                               "ci_low": low, "ci_high": high, "ceiling": np.nan,
                               "pct_of_ceiling": np.nan}
                              for _, row in rows.drop_duplicates("ceiling_method").iterrows()
                              for metric, value, low, high in realism])
        frames.append(pd.concat([rows, extra], ignore_index=True).assign(
            parameter=parameter, setting=v, n_images=len(samples), n_samples=samples.shape[1]))
    return pd.concat(frames, ignore_index=True)


def chosen_setting(sweep: pd.DataFrame, metric: str = "encoding_score") -> object:
    """The setting of a :func:`sampling_sweep` that is best by ``metric``: the highest
    ``encoding_score``, the ``snr_ratio`` nearest 1 (on a log scale) or the
    ``classifier_auc`` nearest 0.5; the first one on ties, in the order tried.

    Raises
    ------
    ValueError
        No setting has a finite ``metric`` (e.g. ``snr_ratio`` on single-shown images).
    """
    rows = sweep[sweep["metric"] == metric].drop_duplicates("setting")
    rows = rows[np.isfinite(rows["value"].to_numpy(float))]
    if rows.empty:
        raise ValueError(f"sweep: no setting has a finite '{metric}' to choose by")
    if metric in ("snr_ratio", "classifier_auc"):
        values = rows["value"].to_numpy(float)
        distance = (np.abs(np.log(np.clip(values, 1e-12, None))) if metric == "snr_ratio"
                    else np.abs(values - 0.5))
        value = rows["setting"].iloc[int(np.argmin(distance))]
    else:
        value = rows.loc[rows["value"].idxmax(), "setting"]
    return value.item() if isinstance(value, np.generic) else value  # a plain number for JSON


def validation_choice(run: SubjectRun, parameter: str, values: Sequence,
                      conditioning: str = "cross_attention", *, n_boot: int = 500,
                      seed: int = 0, max_images: int = SWEEP_MAX_IMAGES,
                      n_samples: int = SWEEP_SAMPLES) -> tuple[pd.DataFrame, object, pd.DataFrame]:
    """Choose a sampling setting on the validation concepts, then score the test set once.

    The sweep runs on :attr:`~analysis.experiment.SubjectRun.validation` (a generator
    trained without the validation concepts, scored on at most ``max_images`` of them,
    its ``n_images`` column, with at most ``n_samples`` samples per image); the setting that is best
    there by :data:`CRITERIA` is chosen (:func:`chosen_setting`). Only then is the test set
    scored, at the chosen setting and at the profile's own, so the two can be compared.

    Returns
    -------
    validation : pandas.DataFrame
        :func:`sampling_sweep` rows on the validation concepts (``split='validation'``).
    chosen : object
        The chosen value; the profile's own where the criterion cannot be measured on the
        validation concepts (images shown once).
    test : pandas.DataFrame
        :func:`sampling_sweep` rows on the test set for the chosen and the profile's value
        (``split='test'``, ``role`` ``'chosen on validation'`` / ``'profile default'``).
    """
    sweep = sampling_sweep(run.validation.with_test_subset(max_images), parameter, values,
                           conditioning, n_boot=n_boot, seed=seed,
                           n_samples=min(n_samples, run.profile.sampling.n_samples)
                           ).assign(split="validation")
    default = getattr(run.profile.sampling, parameter)
    try:
        chosen = chosen_setting(sweep, CRITERIA.get(parameter, "encoding_score"))
    except ValueError:
        # Validation images shown once (THINGS-MEG): the recording's SNR, the criterion,
        # cannot be measured without the test set, so nothing is chosen.
        chosen, roles = default, {default: NOT_CHOSEN}
    else:
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
    frames = {}
    # The other seeds first: the default seed's model is the one the subject's training
    # page trains, perhaps at this moment (the book runs the two pages side by side, and
    # train_or_load waits for a model another process is training).
    for s in sorted(seeds, key=lambda s: s == default):
        overrides = {} if s == default else {"seed": s}
        pred = run.prediction(conditioning, train_overrides=overrides)
        frames[s] = _fidelity_rows(run, pred, n_boot, seed).assign(train_seed=s)
    return pd.concat([frames[s] for s in seeds], ignore_index=True)


def seed_ablation(run: SubjectRun, seeds: Sequence[int] = (0, 1, 2),
                  pairs: Sequence[tuple[str, str]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The conditioning ablation over training seeds: each generator retrained per seed.

    The unit is the training seed: a difference between two conditionings counts only if
    it beats the spread that retraining alone produces. Per seed, each model's encoding
    score (mean r over channel × time points of its conditional mean against the target
    average) is computed; a pair's per-seed differences get a Student-t CI and a
    one-sample t-test, Holm-adjusted over the pairs. Baselines (``ridge``) have no seed:
    the same prediction is subtracted for every seed.

    Returns
    -------
    scores : pandas.DataFrame
        ``model``, ``train_seed``, ``encoding_r`` (one row per model and seed).
    pairs : pandas.DataFrame
        ``model_a``, ``model_b``, ``n_seeds``, ``difference`` (mean of A − B; positive favours
        A), ``ci_low``, ``ci_high``, ``p_value``, ``p_holm``.
    """
    from scipy import stats as scipy_stats

    from ..evaluation.metrics import mean_encoding_score
    from ..evaluation.stats import holm, t_interval
    from ..names import CONDITIONINGS, PAIRS

    pairs = list(PAIRS if pairs is None else pairs)
    models = list(dict.fromkeys(m for pair in pairs for m in pair))
    default = run.profile.train.get("seed", 0)
    rows = []
    for model in models:
        for s in (seeds if model in CONDITIONINGS else seeds[:1]):
            overrides = {} if s == default else {"seed": s}
            pred = (run.prediction(model, train_overrides=overrides) if model in CONDITIONINGS
                    else run.prediction(model))
            rows.append(dict(model=model, train_seed=s,
                             encoding_r=mean_encoding_score(pred, run.target_average)))
    scores = pd.DataFrame(rows)
    by = scores.pivot_table(index="train_seed", columns="model", values="encoding_r")
    by = by.reindex(list(seeds)).ffill()  # a baseline's one value stands for every seed
    out = []
    for a, b in pairs:
        diff = (by[a] - by[b]).to_numpy(float)
        mean, low, high = t_interval(diff)
        p = float(scipy_stats.ttest_1samp(diff, 0.0).pvalue) if len(diff) > 1 else np.nan
        out.append(dict(model_a=a, model_b=b, n_seeds=len(diff), difference=mean,
                        ci_low=low, ci_high=high, p_value=p))
    table = pd.DataFrame(out)
    table["p_holm"] = holm(table["p_value"])
    return scores, table


def sampling_findings(curve: pd.DataFrame, profile_epochs: int,
                      choices: dict[str, tuple[object, pd.DataFrame]], method: str) -> str:
    """The sampling page's finding as Markdown: where training plateaus, and what validation
    chose and what the test set then scored.

    Parameters
    ----------
    curve : DataFrame
        :func:`~analysis.pages.training.learning_curve`.
    profile_epochs : int
        The epochs the other pages' generators train for.
    choices : dict
        Per setting's name (e.g. ``'guidance scale'``): the value chosen on validation and
        the test rows of :func:`validation_choice`.
    method : str
        The ceiling the test scores are shares of (``'exact'`` or ``'split-half'``).
    """
    from .display import ci_text
    from .training import plateau_epoch

    paragraphs = []
    for model, rows in curve.groupby("conditioning", sort=False):
        best = rows.loc[rows["encoding_r"].idxmax()]
        plateau, last = plateau_epoch(rows), rows["epoch"].max()
        if plateau == last:
            verdict = "its last scored epoch, so the curve may still be rising there"
        elif plateau > 0.9 * last:
            # Too few scored epochs after it to tell a plateau from a curve still rising.
            verdict = ("within the last tenth of training, too late to show a plateau: the "
                       "curve may still be rising")
        elif plateau <= profile_epochs:
            verdict = f"the profile's {profile_epochs} epochs are past it"
        else:
            verdict = f"the profile's {profile_epochs} epochs stop before it"
        paragraphs.append(
            f"`{model}` reaches 98 % of its best validation encoding r ({best.encoding_r:.3f}, "
            f"epoch {best.epoch:.0f}) by epoch {plateau}: {verdict}. Ridge on the same "
            f"features and images scores {rows['ridge_r'].iloc[0]:.3f}.")
    for name, (chosen, test) in choices.items():
        rows = test[test["ceiling_method"] == method]
        scored = []
        for row in rows[rows["metric"] == "encoding_score"].itertuples():
            snr = rows[(rows["metric"] == "snr_ratio") & (rows["setting"] == row.setting)]
            auc = rows[(rows["metric"] == "classifier_auc") & (rows["setting"] == row.setting)]
            snr_text = f"a sample's SNR is {snr['value'].iloc[0]:.2f} × a recorded trial's"
            realism = (f"{snr_text}, and a classifier tells samples from recorded trials at "
                       f"AUC {ci_text(auc.iloc[0])} (0.5: not at all)" if len(auc)
                       else f"and {snr_text}")
            scored.append(f"at {row.setting} ({row.role}) the mean of the samples scores "
                          f"{ci_text(row)}, {row.pct_of_ceiling:.1f} % of the {method} "
                          f"ceiling, {realism}")
        choice = (f"validation chose {chosen}" if NOT_CHOSEN not in set(rows["role"]) else
                  f"the validation images were shown once, so the recording's SNR, the "
                  f"criterion, cannot be measured there and the profile's {chosen} is kept")
        paragraphs.append(f"**{name[:1].upper()}{name[1:]}**: {choice}. On the test set, scored once, "
                          + "; ".join(scored) + ".")
    return "\n\n".join(paragraphs)

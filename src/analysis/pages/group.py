"""Group summaries: means over subjects with CIs, and the headline (table and CSV)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..evaluation.stats import format_ci, t_interval
from .common import difference_verdict


#: The range each summarised quantity can take; CIs are clipped to it.
RANGES: dict[str, tuple[float, float]] = {
    "paper_r": (-1.0, 1.0), "encoding_score": (-1.0, 1.0), "paper_mse": (0.0, np.inf),
    "top1": (0.0, 1.0), "top5": (0.0, 1.0), "auc": (0.0, 1.0),
    # headline.csv's realism rows that are fractions (analysis.pages.realism)
    "realism_energy": (0.0, 1.0), "realism_classifier": (0.0, 1.0),
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


def ablation_runs(runs: dict) -> dict:
    """The runs of ``runs`` that train every conditioning: the subjects the ablation
    compares (the first, or all of them where the profile ablates every subject)."""
    from ..names import CONDITIONINGS

    return {s: run for s, run in runs.items() if set(run.conditionings) == set(CONDITIONINGS)}


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


#: How :func:`headline_findings` names each headline quantity, and its unit suffix.
FINDING_LABELS = {"encoding_pct_ceiling": ("encoding score", " % of the noise ceiling"),
                  "top1": ("identification top-1", ""), "auc": ("real-vs-generated AUC", "")}


def headline_findings(rows: pd.DataFrame, generator: str = "cross_attention",
                      baseline: str = "ridge", null: str = "mean_noise",
                      ceiling: str = "oracle") -> str:
    """The group summary's finding as Markdown sentences, computed from :func:`headline_csv`.

    For each quantity of :data:`FINDING_LABELS`: the generator's mean over subjects with its
    CI, beside the baseline, the image-blind ``null`` and the ``ceiling`` reference where
    they were scored, and whether the generator's interval lies above, below or across the
    baseline's value. A quantity whose check did not rank the references as it claims is
    said to be a description, not evidence.
    """
    table = rows.set_index(["model", "metric"])
    n = int(rows["n_subjects"].max())
    sentences = [f"Means over {n} subject{'s' if n != 1 else ''} "
                 f"(Student-t 95 % intervals across subjects"
                 f"{'; one subject has no interval' if n == 1 else ''})."]
    for quantity, (label, unit) in FINDING_LABELS.items():
        if (generator, quantity) not in table.index:
            continue
        digits = 1 if unit else 3

        def text(model: str) -> str:
            return format_ci(*table.loc[(model, quantity), ["value", "ci_low", "ci_high"]],
                             digits)

        row = table.loc[(generator, quantity)]
        parts = [f"`{generator}` {text(generator)}{unit}"]
        parts += [f"`{m}` {text(m)}" for m in (baseline, ceiling, null)
                  if (m, quantity) in table.index]
        sentence = f"**{label.capitalize()}**: " + ", ".join(parts) + "."
        if (baseline, quantity) in table.index and np.isfinite(row["ci_low"]):
            base = table.loc[(baseline, quantity), "value"]
            where = ("above" if row["ci_low"] > base else "below" if row["ci_high"] < base
                     else "across")
            sentence += (f" The generator's interval lies {where} `{baseline}`'s mean"
                         + (" (no difference shown at this number of subjects)."
                            if where == "across" else "."))
        if not bool(row["valid"]):
            sentence += (" This check did not rank the reference generators as it claims "
                         "in every subject: a description, not evidence.")
        sentences.append(sentence)
    return "\n\n".join(sentences)


def ablation_findings(means: pd.DataFrame, oracle: pd.DataFrame | None = None,
                      bar_pct_of_ridge: float = 90.0) -> str:
    """The conditioning ablation page's finding as Markdown sentences, computed from its
    tables.

    Parameters
    ----------
    means : pandas.DataFrame
        :func:`group_mean_table` of :func:`headline_values` by ``model`` and ``quantity``
        (its ``encoding_pct_ceiling`` rows are used).
    oracle : pandas.DataFrame, optional
        :func:`~analysis.pages.training.oracle_conditioning` rows of one ceiling's
        ``encoding_score`` (simulated data only).
    bar_pct_of_ridge : float
        The oracle-conditioning bar (% of ridge).
    """
    sentences = []
    if oracle is not None and len(oracle):
        row = oracle[oracle["model"] != "ridge on true attributes"].iloc[0]
        verdict = "meets" if row["pct_of_ridge"] >= bar_pct_of_ridge else "does not meet"
        sentences.append(f"**Oracle conditioning**: `{row['model']}` reaches "
                         f"{row['pct_of_ridge']:.1f} % of ridge's encoding score on the same "
                         f"attributes; it {verdict} the {bar_pct_of_ridge:g} % bar.")
    rows = means[means["quantity"] == "encoding_pct_ceiling"]
    n = int(rows["n"].max()) if len(rows) else 0
    parts = [f"`{r.model}` {format_ci(r.mean, r.ci_low, r.ci_high, 1)} %"
             for r in rows.itertuples()]
    sentences.append(f"**Encoding score** as % of the noise ceiling, mean over {n} "
                     f"subject{'s' if n != 1 else ''} (Student-t 95 % intervals): "
                     + "; ".join(parts) + ".")
    return "\n\n".join(sentences)


def seed_findings(seed_pairs: pd.DataFrame, alpha: float = 0.05,
                  across_seeds: pd.DataFrame | None = None) -> str:
    """The seeds page's finding as Markdown sentences, computed from its tables.

    Parameters
    ----------
    seed_pairs : pandas.DataFrame
        :func:`~analysis.pages.sampling.seed_ablation`'s pairs (``model_a``, ``model_b``,
        ``n_seeds``, ``difference``, ``ci_low``, ``ci_high``, ``p_holm``).
    alpha : float
        Level of the Holm-adjusted seed tests.
    across_seeds : pandas.DataFrame, optional
        :func:`group_mean_table` of :func:`~analysis.pages.sampling.seed_table` rows by
        ``conditioning`` and ``metric`` (its ``encoding_score`` rows are used).
    """
    from .display import ci_text

    sentences = []
    if across_seeds is not None:
        spread = [f"`{r.conditioning}` {ci_text(r, value='mean')} over {r.n} seeds"
                  for r in across_seeds[across_seeds["metric"] == "encoding_score"].itertuples()]
        if spread:
            sentences.append("Encoding score across training seeds of the first subject "
                             "(mean, Student-t 95 % CI): " + "; ".join(spread) + ".")
    for r in seed_pairs.itertuples():
        verdict = difference_verdict(r.model_a, r.model_b, r.difference, r.p_holm, alpha)
        delta = format_ci(r.difference, r.ci_low, r.ci_high, 3)
        sentences.append(f"Over {r.n_seeds} training seeds of the first subject, "
                         f"`{r.model_a}` − `{r.model_b}`: Δ encoding r {delta}, Holm-adjusted "
                         f"p = {r.p_holm:.2g}: {verdict}.")
    return "\n\n".join(sentences)

"""Display formatting: result tables turned into the cells and sentences a reader sees."""

from __future__ import annotations

import pandas as pd

from ..evaluation.stats import format_ci
from .group import group_mean_table, preferred_ceiling


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
    if "n_outputs" in readouts and (readouts["n_outputs"] < readouts["of_outputs"]).any():
        lines[0] += (f" Every read-out is fit and scored on an even subsample of "
                     f"{int(readouts['n_outputs'].max()):,} of the "
                     f"{int(readouts['of_outputs'].max()):,} channel × time outputs.")
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

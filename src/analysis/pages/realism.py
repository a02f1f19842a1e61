"""Tables of the realism page: the single-trial battery (:mod:`analysis.evaluation.realism`)
for every reference and generator of a subject, the two probes that show the diversity
tests can fail, and which tests are valid (real-like references pass, something fails)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..config import CONDITIONINGS
from ..evaluation import realism
from ..names import REFERENCES, TIERS
from .common import ATTRIBUTES_KEY

if TYPE_CHECKING:
    from ..experiment import SubjectRun

#: Generators that only the realism page scores, to show that its diversity tests can fail
#: (no reference collapses or copies training trials): what each is, and the one test it
#: exists to fail, the only one it is scored on.
PROBES = {
    "collapsed": ("ridge mean + a tenth of the residual noise (samples collapse onto the mean)",
                  "spread"),
    "copies": ("random training trials, whatever the image (a generator that memorised)",
               "memorisation"),
}


def realism_generators(run: SubjectRun) -> list[str]:
    """The references the data allow (``oracle`` needs simulated data), then the generators.

    Deterministic baselines (``ridge``, ``train_mean``) have no distribution of trials and
    are left out.
    """
    from ..calibration import available

    return available(run, REFERENCES + CONDITIONINGS)


def probe_signals(run: SubjectRun, name: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` signals per test image of a probe (:data:`PROBES`), shape like
    :meth:`~analysis.experiment.SubjectRun.signals`."""
    from ..references import mean_plus_noise

    rng = np.random.default_rng(seed)
    if name == "collapsed":
        spread = mean_plus_noise(np.zeros_like(run.prediction("ridge")), run.residual_noise, n,
                                 seed=seed + 3)
        return (run.prediction("ridge")[:, None] + 0.1 * spread).astype(np.float32)
    if name == "copies":
        train = run.dataset.train.signals
        flat = train.reshape(-1, *train.shape[2:])
        wanted = run.dataset.test.n_images * n
        pick = rng.choice(len(flat), wanted, replace=wanted > len(flat))
        return flat[pick].reshape(run.dataset.test.n_images, n, *train.shape[2:])
    raise ValueError(f"probe: expected one of {sorted(PROBES)}, found '{name}'")


def _attribute_inputs(run: SubjectRun) -> tuple[pd.DataFrame | None, np.ndarray | None]:
    """The test images' attribute rows and the sensors' left–right positions (simulated data)."""
    if ATTRIBUTES_KEY not in run.dataset.meta:
        return None, None
    from ..data.simulated import image_attributes

    channel_x = np.array([ch["loc"][0] for ch in run.dataset.info["chs"]])
    return image_attributes(run.dataset, "test"), channel_x


def realism_scores(run: SubjectRun, generators: Sequence[str] | None = None, *,
                   seed: int = 0) -> pd.DataFrame:
    """The realism battery for every generator of one subject, with Holm verdicts.

    Each generator's :attr:`~analysis.experiment.SubjectRun.n_signals` signals per test
    image are compared with the target half of the real repetitions
    (:attr:`~analysis.experiment.SubjectRun.target`, which ``real_half`` never sees);
    memorisation is measured against the training trials, attribute effects need the
    simulator's attribute table. Each probe (:data:`PROBES`) is scored on its own test only.

    Returns
    -------
    pandas.DataFrame
        :func:`~analysis.evaluation.realism.battery` rows with ``generator``, ``kind``
        (``'reference'``, ``'generator'`` or ``'probe'``), ``p_holm``, ``passes``,
        ``n_signals`` and ``n_real``.
    """
    generators = realism_generators(run) if generators is None else list(generators)
    attributes, channel_x = _attribute_inputs(run)
    real, train = run.target, run.dataset.train.signals
    common = dict(sfreq=run.dataset.sfreq, times=run.dataset.times)
    tables = []
    for name in generators:
        table = realism.battery(real, run.signals(name), training=train, attributes=attributes,
                                channel_x=channel_x, seed=seed, **common)
        kind = "reference" if name in REFERENCES else "generator"
        tables.append(table.assign(generator=name, kind=kind))
    n = run.n_signals
    for name, (_, test) in PROBES.items():
        signals = probe_signals(run, name, n, seed)
        row = (realism.memorisation_test(real, signals, train, seed=seed) if test == "memorisation"
               else realism.variability_tests(real, signals, seed=seed)[test])
        tables.append(realism.as_table({test: row}).assign(generator=name, kind="probe"))
    scores = realism.verdicts(pd.concat(tables, ignore_index=True))
    return scores.assign(n_signals=n, n_real=real.shape[1])


def _real_like(names) -> list[str]:
    return [n for n in names if TIERS.get(n) == 0]


def realism_validity(scores: pd.DataFrame) -> pd.DataFrame:
    """Per subject and test: is the test evidence?

    Valid when every real-like reference (tier 0: ``oracle``, ``real_half``) passes it and
    at least one generator known to be unlike the recording (a tier-1 / tier-2 reference
    or a probe) fails it: a test nothing can fail, or that rejects real data, says nothing
    about a model.

    Returns
    -------
    pandas.DataFrame
        ``subject`` (when ``scores`` has it), ``test``, ``valid``, ``real_like_pass``,
        ``failed_by`` (names, comma-separated).
    """
    scores = scores if "subject" in scores else scores.assign(subject=0)
    rows = []
    for (subject, test), part in scores[scores["p"].notna()].groupby(["subject", "test"],
                                                                     sort=False):
        # From the adjusted p-values, not `passes`: a table read back from CSV holds strings.
        passes = dict(zip(part["generator"], part["p_holm"] > realism.ALPHA))
        like = _real_like(passes)
        unlike = [g for g in passes if (TIERS.get(g, -1) > 0 or g in PROBES)]
        failed = [g for g in unlike if not passes[g]]
        like_ok = bool(like) and all(passes[g] for g in like)
        rows.append({"subject": subject, "test": test, "valid": like_ok and bool(failed),
                     "real_like_pass": like_ok, "failed_by": ", ".join(failed)})
    return pd.DataFrame(rows)


def realism_dataset_validity(validity: pd.DataFrame) -> pd.DataFrame:
    """Over subjects: a test is valid only where it was valid in every subject."""
    return (validity.groupby("test", sort=False)
            .agg(valid=("valid", "all"), n_subjects=("subject", "nunique"),
                 valid_in=("valid", "sum")).reset_index())


def realism_display(scores: pd.DataFrame, kinds: Sequence[str] | None = None,
                    digits: int = 3) -> pd.DataFrame:
    """Tests × generators: each value with ✓ (passes, Holm-adjusted) or ✗ (rejected);
    descriptive rows without a mark; the recording's own value or the null in ``real / null``.

    ``kinds`` keeps only those generators (``'reference'``, ``'generator'``, ``'probe'``),
    so that a page can show the table in parts narrow enough to read.
    """
    if kinds is not None:
        reference = scores.drop_duplicates("test").set_index("test")["reference"]
        scores = scores[scores["kind"].isin(kinds)]
        scores = scores.assign(reference=scores["test"].map(reference))
    order = list(dict.fromkeys(scores["generator"]))

    def cell(row) -> str:
        if not np.isfinite(row["value"]):
            return ""
        mark = "" if not np.isfinite(row["p_holm"]) else (
            " ✓" if row["p_holm"] > realism.ALPHA else " ✗")
        return f"{row['value']:.{digits}f}{mark}"

    table = scores.assign(cell=scores.apply(cell, axis=1))
    wide = table.pivot_table(index=["test", "label"], columns="generator", values="cell",
                             aggfunc="first", sort=False)
    wide = wide[[g for g in order if g in wide.columns]].fillna("")
    reference = table.drop_duplicates(["test"]).set_index("test")["reference"]
    wide.insert(0, "real / null", [f"{reference[t]:.{digits}f}" if np.isfinite(reference[t])
                                   else "" for t, _ in wide.index])
    return wide.droplevel("test")


def realism_summary(scores: pd.DataFrame, validity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per generator: tests passed of those scored (only valid tests when ``validity``)."""
    tested = scores[scores["p"].notna()]
    tested = tested.assign(passes=tested["p_holm"] > realism.ALPHA)
    if validity is not None:
        valid = set(validity.loc[validity["valid"], "test"])
        tested = tested[tested["test"].isin(valid)]
    return (tested.groupby("generator", sort=False)
            .agg(kind=("kind", "first"), tests=("test", "count"),
                 passed=("passes", lambda s: int(sum(bool(v) for v in s))),
                 rejected=("passes", lambda s: ", ".join(
                     t for t, v in zip(tested.loc[s.index, "test"], s) if not v)))
            .reset_index())


def realism_findings(scores: pd.DataFrame, validity: pd.DataFrame) -> str:
    """What the page found, as sentences computed from the tables."""
    summary = realism_summary(scores, validity).set_index("generator")
    valid = validity.loc[validity["valid"], "test"].tolist()
    invalid = validity.loc[~validity["valid"], "test"].tolist()
    lines = [f"{len(valid)} of {len(validity)} tests are evidence here (real-like references "
             f"pass, something known to be unlike the recording fails)"
             + (f"; not evidence: {', '.join(invalid)}." if invalid else ".")]
    for name, row in summary.iterrows():
        if row["kind"] == "probe":
            continue
        verdict = ("passes every valid test" if row["passed"] == row["tests"]
                   else f"fails {row['tests'] - row['passed']} of {row['tests']}: {row['rejected']}")
        lines.append(f"{name} ({row['kind']}) {verdict}.")
    return "\n".join(lines)


def variability_by_image(run: SubjectRun, generators: Sequence[str]) -> pd.DataFrame:
    """Per test image: log residual power of the real target trials and of each generator's
    signals at equal counts (the data behind ``variability_range`` / ``variability_pattern``).

    Returns
    -------
    pandas.DataFrame
        ``image``, ``generator``, ``real``, ``generated`` (natural log of µV² or fT²).
    """
    rows = []
    for name in generators:
        real, generated = realism.equal_counts(run.target, run.signals(name))
        rows.append(pd.DataFrame({
            "image": np.arange(len(real)), "generator": name,
            "real": realism.log_residual_power(real.astype(np.float64)),
            "generated": realism.log_residual_power(generated.astype(np.float64))}))
    return pd.concat(rows, ignore_index=True)


def realism_headline(scores: pd.DataFrame, validity: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The realism rows of ``results/<dataset>/headline.csv``.

    Parameters
    ----------
    scores : pandas.DataFrame
        Every subject's :func:`realism_scores` (with ``subject``).
    validity : pandas.DataFrame
        :func:`realism_dataset_validity`.

    Returns
    -------
    (values, verdicts) : DataFrames for :func:`~analysis.pages.group.headline_csv`:
        ``subject, model, quantity, value`` with quantity ``realism_<test>`` (references and
        generators, not probes), and ``check, valid`` for the same quantities.
    """
    rows = scores[scores["p"].notna() & (scores["kind"] != "probe")]
    values = pd.DataFrame({"subject": rows["subject"], "model": rows["generator"],
                           "quantity": "realism_" + rows["test"], "value": rows["value"]})
    verdicts = pd.DataFrame({"check": "realism_" + validity["test"], "valid": validity["valid"]})
    return values.reset_index(drop=True), verdicts


def realism_group_table(scores: pd.DataFrame, kinds: Sequence[str] = ("reference", "generator"),
                        digits: int = 3) -> pd.DataFrame:
    """Tests × generators over subjects: ``'mean [low, high]'`` (Student-t across subjects)
    beside the recording's mean value or the null in ``real / null``, for the generators of
    ``kinds`` (probes are scored on one test each and left out by default)."""
    from .display import ci_pivot
    from .group import group_mean_table

    tested = scores[scores["p"].notna() & scores["kind"].isin(kinds)]
    # Named like headline.csv's rows, so that RANGES clips fractions to [0, 1].
    means = group_mean_table(tested.assign(quantity="realism_" + tested["test"]),
                             ["quantity", "label", "generator"])
    table = ci_pivot(means.rename(columns={"mean": "value"}), "label", "generator",
                     digits=digits)
    real = tested.groupby("label", sort=False)["reference"].mean()
    table.insert(0, "real / null", real.reindex(table.index).round(digits))
    return table


def realism_group_findings(scores: pd.DataFrame, dataset_validity: pd.DataFrame) -> str:
    """Sentences: the tests valid in every subject, and in how many subjects each generator
    passes all of them."""
    valid = dataset_validity.loc[dataset_validity["valid"], "test"].tolist()
    lines = [f"Evidence in every subject: {', '.join(valid) or 'no test'}."]
    tested = scores[scores["p"].notna() & (scores["kind"] != "probe") & scores["test"].isin(valid)]
    passing = (tested.assign(passes=tested["p_holm"] > realism.ALPHA)
               .groupby(["generator", "subject"], sort=False)["passes"].all()
               .groupby("generator", sort=False).agg(["sum", "count"]))
    for name, row in passing.iterrows():
        lines.append(f"{name} passes every valid test in {int(row['sum'])} of "
                     f"{int(row['count'])} subjects.")
    return "\n".join(lines)

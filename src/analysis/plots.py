"""Figures the book pages share that belong to no single evaluation module.

Evaluation figures live beside their metrics (``plot_fidelity`` in
:mod:`~analysis.evaluation.metrics`, topomaps in :mod:`~analysis.evaluation.topography`,
decoding plots in :mod:`~analysis.evaluation.decoding`); here are the rest: the dataset's
ERP and scalp maps, training curves, example waveforms, and group / sweep summaries.
Every function returns a matplotlib Figure and never calls ``plt.show``.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .evaluation import topography
from .names import CONDITIONINGS
from .pages.common import example_channels, example_images, prediction
from .pages.group import RANGES, group_mean_table

if TYPE_CHECKING:
    from .data.contract import EpochedDataset
    from .experiment import SubjectRun

#: Tick labels longer than this are wrapped onto several lines instead of rotated.
LONG_LABEL = 16


def plot_grand_average(dataset: EpochedDataset) -> Figure:
    """Butterfly plot of the test ERP (average over images and repetitions), every channel.

    Thin lines are channels (labelled at their largest deflection for the two most
    extreme), the thick black line the root-mean-square over channels (global field
    power).
    """
    erp = dataset.test.average().mean(axis=0)  # (n_channels, n_times)
    times = 1e3 * dataset.times
    fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(erp)))
    for wave, colour in zip(erp, colours):
        ax.plot(times, wave, color=colour, lw=0.8)
    ax.plot(times, np.sqrt((erp ** 2).mean(axis=0)), color="k", lw=2, label="GFP (RMS)")
    for index in {int(np.argmax(erp.max(axis=1))), int(np.argmin(erp.min(axis=1)))}:
        t = int(np.argmax(np.abs(erp[index])))
        ax.annotate(dataset.ch_names[index], (times[t], erp[index, t]), fontsize="small",
                    xytext=(4, 0), textcoords="offset points")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8, ls=":")
    ax.set(xlabel="time (ms)", ylabel=f"amplitude ({dataset.meta['units']})",
           title=f"test ERP, {len(erp)} channels", xlim=(times[0], times[-1]))
    ax.legend(loc="upper right", fontsize="small")
    return fig


def plot_topomaps(maps: np.ndarray, info: mne.Info, windows=None, *, units: str = "",
                  title: str = "") -> Figure:
    """One row of scalp maps, one per time window, on a shared symmetric colour scale.

    Parameters
    ----------
    maps : ndarray, shape (n_windows, n_images, n_channels) or (n_windows, n_channels)
        Window maps (:func:`~analysis.evaluation.topography.window_maps`); averaged over
        images when they have the axis.
    info : mne.Info
        Channels with positions, in the maps' order.
    windows : dict or sequence of (start, stop), optional
        The windows of ``maps`` (titles); default the default windows.
    """
    maps = np.asarray(maps, float)
    maps = maps.mean(axis=1) if maps.ndim == 3 else maps
    windows = topography.default_windows() if windows is None else windows
    items = (list(windows.items()) if isinstance(windows, Mapping)
             else [(f"{1e3 * a:g}–{1e3 * b:g} ms", (a, b)) for a, b in windows])
    if len(items) != len(maps):
        raise ValueError(f"windows: expected {len(maps)} windows (axis 0 of maps), "
                         f"found {len(items)}")
    sphere = topography.topomap_sphere(info)
    limit = float(np.nanmax(np.abs(maps))) or 1.0
    fig, axes = plt.subplots(1, len(maps), figsize=(2.4 * len(maps) + 0.8, 3.0),
                             layout="constrained", squeeze=False)
    for ax, values, (label, (start, stop)) in zip(axes[0], maps, items):
        image, _ = mne.viz.plot_topomap(values, info, axes=ax, show=False, sphere=sphere,
                                        extrapolate="local", vlim=(-limit, limit),
                                        cmap="RdBu_r", contours=6)
        ax.set_title(f"{label}\n{1e3 * start:g}–{1e3 * stop:g} ms")
    fig.colorbar(image, ax=axes[0], shrink=0.8, label=units)
    if title:
        fig.suptitle(title)
    return fig


def plot_losses(losses: Mapping[str, Sequence[float]]) -> Figure:
    """Mean training loss per epoch, one line per model."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    for name, values in losses.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=name)
    ax.set(xlabel="epoch", ylabel="diffusion loss (mean over examples)",
           title="training loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small")
    sns.despine(ax=ax)
    return fig


def plot_learning_curve(curve: pd.DataFrame, chosen_epochs: int | None = None) -> Figure:
    """Validation encoding score of each generator's conditional mean against epochs, with
    ridge's score on the same images as a dashed line (rows of
    :func:`~analysis.summaries.learning_curve`); a dotted line at ``chosen_epochs``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    for name, rows in curve.groupby("conditioning", sort=False):
        ax.plot(rows["epoch"], rows["encoding_r"], marker="o", ms=3, label=name)
    ax.axhline(curve["ridge_r"].iloc[0], color="0.3", ls="--", lw=1, label="ridge")
    if chosen_epochs is not None:
        ax.axvline(chosen_epochs, color="0.5", ls=":", lw=1, label="profile epochs")
    ax.set(xlabel="epoch", ylabel="validation encoding r", title="learning curve")
    ax.legend(fontsize="small")
    sns.despine(ax=ax)
    return fig


def plot_example_waveforms(run: SubjectRun, models: Sequence[str] = ("cross_attention", "ridge"),
                           n_images: int = 3, channels: Sequence[str] | None = None) -> Figure:
    """Real vs predicted waveforms for a few test images (rows) at a few channels (columns).

    Grey band: real mean ± 1 SEM over test repetitions; black: the real mean; dashed:
    the noiseless truth (simulated data); coloured: each model's prediction (for a
    generator, its conditional mean, with four of its samples as faint lines).
    """
    channels = list(channels or example_channels(run))
    picks = [run.dataset.ch_names.index(c) for c in channels]
    images = example_images(run, n_images)
    trials = run.dataset.test.signals
    times = 1e3 * run.dataset.times
    noiseless = run.dataset.noiseless["test"] if run.dataset.noiseless is not None else None
    predictions = {m: prediction(run, m) for m in models}
    samples = {m: run.generated(m)[:, :4] for m in models if m in CONDITIONINGS}
    fig, axes = plt.subplots(len(images), len(picks), figsize=(4.2 * len(picks), 2.3 * len(images)),
                             sharex=True, squeeze=False, layout="constrained")
    for row, image in enumerate(images):
        for col, (pick, name) in enumerate(zip(picks, channels)):
            ax = axes[row, col]
            reps = trials[image, :, pick]
            mean, sem = reps.mean(axis=0), reps.std(axis=0, ddof=1) / np.sqrt(len(reps))
            ax.fill_between(times, mean - sem, mean + sem, color="0.85", lw=0)
            ax.plot(times, mean, color="k", lw=1.2, label="real (mean ± SEM)")
            if noiseless is not None:
                ax.plot(times, noiseless[image, pick], color="k", ls="--", lw=1,
                        label="noiseless truth")
            for i, model in enumerate(models):
                colour = f"C{i}"
                for sample in samples[model][image] if model in samples else ():
                    ax.plot(times, sample[pick], color=colour, lw=0.5, alpha=0.35)
                ax.plot(times, predictions[model][image, pick], color=colour, lw=1.4,
                        label=model)
            ax.axvline(0, color="0.5", lw=0.8, ls=":")
            ax.set_title(f"{run.dataset.test.image_ids[image]} — {name}", fontsize="small")
            if col == 0:
                ax.set_ylabel(run.dataset.meta["units"])
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    return fig


def plot_group_bars(values: pd.DataFrame, quantities: Sequence[str], *,
                    labels: Mapping[str, str] | None = None,
                    references: Mapping[str, float] | None = None, ci: float = 0.95) -> Figure:
    """Group mean per model (bar) with a Student-t CI across subjects, subjects as dots.

    Panels are laid out two per row; CIs are clipped to the quantity's range
    (:data:`~analysis.summaries.RANGES`).

    Parameters
    ----------
    values : pandas.DataFrame
        Long format with ``subject``, ``model``, ``quantity``, ``value``
        (:func:`~analysis.summaries.headline_values`).
    quantities : sequence of str
        One panel each.
    labels : dict, optional
        Axis label per quantity.
    references : dict, optional
        A dashed reference line per quantity (e.g. chance: ``{'auc': 0.5}``).
    """
    labels, references = dict(labels or {}), dict(references or {})
    models = list(values["model"].unique())
    ncols = min(2, len(quantities))
    nrows = -(-len(quantities) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(0.6 + 1.0 * len(models) * ncols, 3.4 * nrows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(quantities):]:
        ax.set_visible(False)
    for ax, quantity in zip(axes.flat, quantities):
        part = values[values["quantity"] == quantity]
        means = group_mean_table(part, ["model"], ci=ci, bounds=RANGES.get(quantity))
        means = means.set_index("model").reindex(models)
        x = np.arange(len(models))
        ax.bar(x, means["mean"], color=sns.color_palette("deep", len(models)), alpha=0.8)
        ax.errorbar(x, means["mean"], yerr=[means["mean"] - means["ci_low"],
                                            means["ci_high"] - means["mean"]],
                    fmt="none", ecolor="k", capsize=4, lw=1)
        for i, model in enumerate(models):
            dots = part[part["model"] == model]["value"].to_numpy(dtype=float)
            ax.plot(np.full(len(dots), i) + np.linspace(-0.15, 0.15, len(dots)), dots, "o",
                    color="k", ms=3)
        if max(map(len, models)) > LONG_LABEL:  # e.g. "kernel ridge: pooled embedding"
            ax.set_xticks(x, [textwrap.fill(m, LONG_LABEL) for m in models], fontsize="small")
        else:
            ax.set_xticks(x, models, rotation=30, ha="right")
        ax.set_ylabel(labels.get(quantity, quantity.replace("_", " ")))
        ax.axhline(0, color="0.5", lw=0.8)
        if quantity in references:
            ax.axhline(references[quantity], color="k", ls="--", lw=1)
            ax.annotate("chance", (1.0, references[quantity]), fontsize="small", ha="right",
                        va="bottom", xycoords=("axes fraction", "data"))
        sns.despine(ax=ax)
    return fig


def plot_sweep(table: pd.DataFrame, metrics: Sequence[str] = ("encoding_score", "paper_r"),
               x: str = "setting", *, ceiling_method: str | None = None,
               xlabel: str | None = None, chosen=None) -> Figure:
    """Fidelity metrics against a swept setting (one panel each), with bootstrap CIs
    (``snr_ratio``: the samples' single-trial SNR over the recording's, log scale;
    ``classifier_auc``: how well a classifier tells samples from recorded trials, chance 0.5).

    Parameters
    ----------
    table : pandas.DataFrame
        ``fidelity_summary``-style rows (``metric``, ``ceiling_method``, ``value``,
        ``ci_low``, ``ci_high``, ``ceiling``) with an ``x`` column, e.g. from
        :func:`~analysis.summaries.sampling_sweep` or :func:`~analysis.summaries.seed_table`.
    metrics : sequence of str
        One panel per metric.
    ceiling_method : str, optional
        Which ceiling rows to use (drawn dashed); default ``'exact'`` when present, else
        ``'split-half'``.
    chosen : optional
        A setting to mark with a dotted line (the one chosen on validation data).
    """
    method = ceiling_method or ("exact" if (table["ceiling_method"] == "exact").any()
                                else "split-half")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        rows = table[(table["metric"] == metric) & (table["ceiling_method"] == method)]
        rows = rows.sort_values(x)
        ax.errorbar(rows[x], rows["value"], yerr=[rows["value"] - rows["ci_low"],
                                                  rows["ci_high"] - rows["value"]],
                    marker="o", capsize=3, color="C0")
        ceiling = rows["ceiling"].iloc[0] if len(rows) else np.nan
        if np.isfinite(ceiling):
            ax.axhline(ceiling, color="0.5", ls="--", lw=1)
            ax.annotate(f"{method} ceiling", (1.0, ceiling), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize="small", color="0.4")
        if metric == "classifier_auc":  # 0.5: samples cannot be told from recorded trials
            ax.axhline(0.5, color="0.5", ls="--", lw=1)
            ax.annotate("chance", (1.0, 0.5), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize="small", color="0.4")
        if metric == "snr_ratio":  # a ratio to the recording: 1 is right, on a log scale
            ax.axhline(1.0, color="0.5", ls="--", lw=1)
            ax.annotate("recording", (1.0, 1.0), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize="small", color="0.4")
            ax.set_yscale("log")
        ax.set_xticks(sorted(rows[x].unique()))
        if chosen is not None:
            ax.axvline(chosen, color="C3", ls=":", lw=1.5)
            ax.annotate(" chosen", (chosen, 0.02), xycoords=("data", "axes fraction"),
                        ha="left", va="bottom", fontsize="small", color="C3")
        ax.set(xlabel=xlabel or x.replace("_", " "), ylabel=metric.replace("_", " "))
        sns.despine(ax=ax)
    return fig


def plot_calibration(scores: pd.DataFrame, verdicts: pd.DataFrame | None = None) -> Figure:
    """Every check (one panel each) for every reference and model; dots are subjects.

    References are coloured by the tier a valid check ranks them in (green best, orange
    ``ridge_noise``, red image-blind), models grey; a bar marks the mean over subjects.
    With ``verdicts`` (:func:`~analysis.calibration.dataset_verdicts`) each title says
    whether the check is valid.

    Parameters
    ----------
    scores : pandas.DataFrame
        :func:`~analysis.calibration.calibration_scores` rows (``generator``, ``check``,
        ``value``, ``subject``).
    """
    from .evaluation.metric_validation import CHECKS
    from .names import MODELS, REFERENCES, TIERS

    names = [g for g in REFERENCES + MODELS if g in set(scores["generator"])]
    checks = [c for c in CHECKS if c.name in set(scores["check"])]
    valid = {} if verdicts is None else dict(zip(verdicts["check"], verdicts["valid"]))
    tier_colour = {0: "tab:green", 1: "tab:orange", 2: "tab:red"}
    colours = [tier_colour[TIERS[g]] if g in TIERS else "0.5" for g in names]
    ncols = min(5, len(checks))
    nrows = -(-len(checks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 3.0 * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(checks):]:
        ax.set_visible(False)
    x = np.arange(len(names))
    for ax, check in zip(axes.flat, checks):
        part = scores[scores["check"] == check.name]
        for i, (name, colour) in enumerate(zip(names, colours)):
            values = part[part["generator"] == name]["value"].to_numpy(dtype=float)
            ax.plot(np.full(len(values), i), values, "o", color=colour, ms=3, alpha=0.8)
            if np.isfinite(values).any():
                ax.plot([i - 0.3, i + 0.3], [np.nanmean(values)] * 2, color=colour, lw=2)
        mark = "" if check.name not in valid else (" ✓" if valid[check.name] else " ✗")
        ax.set_title(f"{check.label} {check.arrow}{mark}", fontsize="small")
        if check.better == "chance":
            ax.axhline(0.5, color="k", ls="--", lw=0.8)
        ax.set_xticks(x, names, rotation=90, fontsize="x-small")
        ax.tick_params(axis="y", labelsize="x-small")
        sns.despine(ax=ax)
    return fig


def plot_realism_grid(scores: pd.DataFrame) -> Figure:
    """Tests (rows) × generators (columns): green where a generator passes a test (Holm-
    adjusted p > .05), red where it is rejected, blank where it was not scored; each
    cell shows the test's value. With several subjects, the colour is the fraction of
    subjects passing and the value their mean.

    Parameters
    ----------
    scores : pandas.DataFrame
        :func:`~analysis.pages.realism.realism_scores` rows (optionally with ``subject``).
    """
    from .evaluation.realism import ALPHA

    tested = scores[scores["p"].notna()].assign(
        passing=lambda d: (d["p_holm"] > ALPHA).astype(float))
    generators = list(dict.fromkeys(tested["generator"]))
    tests = list(dict.fromkeys(tested["label"]))
    share = tested.pivot_table(index="label", columns="generator", values="passing",
                               aggfunc="mean").reindex(index=tests, columns=generators)
    value = tested.pivot_table(index="label", columns="generator", values="value",
                               aggfunc="mean").reindex(index=tests, columns=generators)
    fig, ax = plt.subplots(figsize=(0.62 * len(generators) + 3.0, 0.3 * len(tests) + 1.2),
                           layout="constrained")
    sns.heatmap(share, ax=ax, cmap="RdYlGn", vmin=0, vmax=1,
                cbar_kws={"label": "passes (share of subjects)", "shrink": 0.6},
                annot=value.map(lambda v: "" if not np.isfinite(v) else f"{v:.2g}").to_numpy(),
                fmt="", annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="both", labelsize="small")
    return fig


def plot_variability_by_image(table: pd.DataFrame) -> Figure:
    """Per test image, the log trial variance of the generated signals against that of the
    real ones (one panel per generator; the diagonal is "as variable as the recording").

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`~analysis.pages.realism.variability_by_image` rows.
    """
    generators = list(dict.fromkeys(table["generator"]))
    fig, axes = plt.subplots(1, len(generators), figsize=(2.8 * len(generators), 2.9),
                             squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, generators):
        part = table[table["generator"] == name]
        r = np.corrcoef(part["real"], part["generated"])[0, 1]
        # Each panel its own scale: a generator far too smooth would squash the others.
        low = min(part["real"].min(), part["generated"].min())
        high = max(part["real"].max(), part["generated"].max())
        ax.plot(part["real"], part["generated"], ".", ms=3, alpha=0.6)
        ax.plot([low, high], [low, high], "k--", lw=0.8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{name} (r = {r:.2f})", fontsize="small")
        ax.set_xlabel("real: log trial variance", fontsize="small")
        sns.despine(ax=ax)
    axes[0, 0].set_ylabel("generated: log trial variance", fontsize="small")
    return fig

"""Every table a book page shows, as a function of a :class:`~analysis.experiment.SubjectRun`.

The notebooks' one entry point: ``summaries.fidelity_table(run)`` and so on. The tables are
defined in :mod:`analysis.pages`, one module per book page (``overview``, ``training``,
``fidelity``, ``topography``, ``decoding``, ``realism``, ``sampling``, ``reproducibility``), with what
pages share (``common``), group summaries (``group``), display formatting (``display``) and
persistence (``results``) apart; statistical procedures live in :mod:`analysis.evaluation`.
The notebooks stay thin: each table on a page is one call, computed live from the
run's (cached) data, predictions and generated signals, so no number is ever typed in.
Tables are tidy :class:`pandas.DataFrame` s; every headline number comes with a CI and
every test with a p-value. Per-subject tables are saved for the group pages with
:func:`save_table` and gathered with :func:`group_results`, which computes what a subject
is missing (through its cached ``SubjectRun``) instead of failing.

Model names
-----------
Those of :mod:`analysis.names`: the generators ``'cross_attention'``, ``'concat'``,
``'film'``, ``'none'`` (their prediction is the model's conditional mean, E[x | c]; their
signals are samples), the baselines ``'ridge'``,
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

from .calibration import available
from .evaluation.stats import format_ci
from .names import MODELS, PAIRS, PER_IMAGE_MODELS, REFERENCES
from .pages.common import (ATTRIBUTES_KEY, prediction, shown, with_noiseless, example_images,
                           example_channels, window_bounds, window_maps)
from .pages.overview import (design_table, noise_ceilings, ceiling_table, gfp_peak_latency,
                             overview_findings)
from .pages.training import (checkpoint_record, training_table, config_table, losses,
                             learning_curve, plateau_epoch, oracle_conditioning, loss_phases,
                             training_findings)
from .pages.fidelity import (fidelity_table, score_predictions, readout_predictions,
                             readout_table, paired_tests, fidelity_findings)
from .pages.decoding import (identification_mask, identify, identification_table,
                             plausibility_table, image_attribute, transfer_table, spectra,
                             grand_averages, signal_statistics_table, decoding_findings)
from .pages.topography import (topography_table, spatial_timecourses, rsa_timecourses, rsa_table,
                               InterSubjectTopography, inter_subject_topography,
                               own_vs_other_table, topography_findings,
                               group_topography_findings)
from .pages.realism import (PROBES, realism_generators, probe_signals, realism_scores,
                            realism_validity, realism_dataset_validity, realism_display,
                            realism_summary, realism_findings, variability_by_image,
                            realism_headline, realism_group_table, realism_group_findings)
from .pages.sampling import (CRITERIA, SWEEP_SAMPLES, sampling_sweep, chosen_setting,
                             validation_choice, seed_table, seed_ablation, sampling_findings,
                             sampler_label)
from .pages.group import (RANGES, ablation_runs, group_mean_table, preferred_ceiling,
                          headline_values,
                          HEADLINE_CHECKS, headline_csv, headline_findings, ablation_findings,
                          seed_findings)
from .pages.display import (readout_display, readout_findings, fidelity_by_model,
                            fidelity_display, ci_pivot, ci_text, paired_display, headline_table)
from .pages.results import (RESULTS, save_table, save_dataset_table, load_or_compute,
                            group_results)
from .pages.reproducibility import (environment_versions, git_commit, provenance_table,
                                    reproducibility_findings)

__all__ = [
    "available", "ATTRIBUTES_KEY", "prediction", "shown", "with_noiseless", "example_images",
    "example_channels", "window_bounds", "window_maps", "design_table", "noise_ceilings",
    "ceiling_table", "gfp_peak_latency", "overview_findings", "sampling_findings",
    "reproducibility_findings", "checkpoint_record", "training_table", "config_table", "losses",
    "learning_curve", "plateau_epoch", "oracle_conditioning", "CRITERIA", "seed_ablation",
    "fidelity_table", "score_predictions", "readout_predictions", "readout_table", "paired_tests",
    "identification_mask", "identify", "identification_table", "plausibility_table",
    "image_attribute", "transfer_table", "spectra", "grand_averages", "signal_statistics_table",
    "topography_table", "spatial_timecourses", "rsa_timecourses", "rsa_table",
    "InterSubjectTopography", "inter_subject_topography", "own_vs_other_table", "sampling_sweep",
    "SWEEP_SAMPLES",
    "chosen_setting", "validation_choice", "seed_table", "sampler_label", "RANGES",
    "ablation_runs", "group_mean_table",
    "preferred_ceiling", "headline_values", "HEADLINE_CHECKS", "headline_csv",
    "headline_findings", "fidelity_findings", "decoding_findings", "ablation_findings",
    "seed_findings",
    "topography_findings", "group_topography_findings", "loss_phases", "training_findings",
    "readout_display",
    "readout_findings", "fidelity_by_model", "fidelity_display", "ci_pivot", "ci_text",
    "paired_display", "headline_table", "RESULTS", "save_table", "save_dataset_table",
    "load_or_compute", "group_results", "environment_versions", "git_commit", "provenance_table",
    "MODELS", "PAIRS", "PER_IMAGE_MODELS", "REFERENCES", "format_ci",
    "PROBES", "realism_generators", "probe_signals", "realism_scores", "realism_validity",
    "realism_dataset_validity", "realism_display", "realism_summary", "realism_findings",
    "variability_by_image", "realism_headline", "realism_group_table", "realism_group_findings",
]

"""Choose the generator's training recipe on validation concepts (never the test set).

Each variant (a conditioning, U-Net overrides and training overrides of a profile) is
trained on the fitting concepts of one subject with the validation learning curve
(:meth:`analysis.experiment.SubjectRun.learning_curve_monitor`), then scored there: the
encoding score of its conditional mean (raw r and % of the exact ceiling), beside ridge on
the same features and images; the single-trial SNR of its samples as a multiple of the
recording's, the per-image spread (log SD ratio, 0 = the recording's) and how well a
classifier tells the samples from recorded trials (AUC, 0.5 = not at all); and the
training seconds (this machine). What buys fidelity and realism per second of training.

    .venv/bin/python benchmarks/training_recipe.py --workdir /tmp/recipe \
        --output benchmarks/results/training-recipe.json \
        --variant film-avg48 '{"conditioning": "film", "train": {"targets": "average", "epochs": 48}}'

Several ``--variant NAME JSON`` may be given; they run one after the other (never two heavy
jobs at once on a small machine: the timings would lie).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from analysis.config import get_profile
from analysis.evaluation.realism import (classifier_two_sample_test, single_trial_snr,
                                         variability_tests)
from analysis.experiment import SubjectRun, ensure_dataset
from analysis.provenance import package_versions


def score_variant(run: SubjectRun, conditioning: str, train: dict, n_samples: int,
                  guidance: float, steps: int) -> dict:
    val = run.validation
    started = time.perf_counter()
    trained = val.model(conditioning, **train)
    seconds = trained.info.get("train_seconds", time.perf_counter() - started)
    score = run.validation_encoding_score(conditioning, n_boot=200, **train)
    samples = val.generated(conditioning, train_overrides=train, guidance_scale=guidance,
                            steps=steps, n_samples=n_samples)
    spread = variability_tests(val.target, samples, n_boot=100)["spread"]["value"]
    # How well a classifier tells the samples from recorded trials (0.5: not at all), as the
    # sampling page's steps criterion measures it.
    auc = classifier_two_sample_test(val.target, samples, n_boot=200)
    return {"conditioning": conditioning, "train": train,
            "encoding_r": round(score["value"], 4),
            "encoding_pct_ceiling": round(score["pct_of_ceiling"], 1),
            "ridge_r": round(score["baseline_value"], 4),
            "snr_ratio": round(single_trial_snr(samples) / single_trial_snr(val.target), 2),
            "spread": round(float(spread), 3),
            "classifier_auc": [round(float(auc[k]), 3) for k in ("value", "ci_low", "ci_high")],
            "train_seconds": round(float(seconds), 1),
            "optimiser_steps": trained.info["curve"][-1]["step"] if trained.info["curve"] else None,
            "curve": [(row["epoch"], round(row["encoding_r"], 4)) for row in trained.info["curve"]],
            "sampling": {"guidance_scale": guidance, "steps": steps, "n_samples": n_samples}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/recipe")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"),
                        required=True)
    parser.add_argument("--n-samples", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = {}
    for name, spec in args.variant:
        spec = json.loads(spec)
        profile = get_profile(args.profile)
        profile = dataclasses.replace(profile, unet={**profile.unet, **spec.get("unet", {})})
        root = ensure_dataset("simulated", None, profile, args.workdir, subjects=[args.subject])
        run = SubjectRun("simulated", root, args.subject, profile, args.workdir, progress=False)
        results[name] = {"subject": args.subject, "unet": profile.unet, **score_variant(
            run, spec.get("conditioning", "cross_attention"), spec.get("train", {}),
            args.n_samples, args.guidance, args.steps)}
        print(name, json.dumps(results[name]), flush=True)
    if args.output:
        # Variants measured before (other names) are kept: the file is the record of
        # every recipe tried.
        earlier = (json.loads(args.output.read_text())["variants"] if args.output.is_file()
                   else {})
        record = {"profile": args.profile, "subject": args.subject, "encoder": run.encoder_label,
                  "versions": package_versions(), "date": time.strftime("%Y-%m-%d"),
                  "variants": {**earlier, **results}}
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

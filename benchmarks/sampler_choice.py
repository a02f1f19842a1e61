"""Choose the sampler (DDIM or DPM-Solver++(2M), and its steps) on validation concepts.

The cross-attention generator of one subject, trained on the fitting concepts, samples
the validation concepts with each sampler; per sampler the record holds the samples'
single-trial SNR as a multiple of the recording's (``snr_ratio``; 1 = as noisy as real
trials: what a sampling setting is chosen by, see ``analysis.pages.sampling.CRITERIA``),
the encoding r of the mean of the samples against the validation average, and the
sampling seconds on this machine. The profile's sampler is the one the book's own rule
chooses (``analysis.pages.sampling.chosen_setting``: the SNR ratio nearest 1, log scale).

    .venv/bin/python benchmarks/sampler_choice.py --workdir /tmp/w_default \
        --output benchmarks/results/sampler-choice.json

Run it alone (never two heavy jobs at once on a small machine: the timings would lie).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from analysis.evaluation.metrics import mean_encoding_score
from analysis.evaluation.realism import single_trial_snr
from analysis.experiment import SubjectRun, ensure_dataset
from analysis.pages.sampling import CRITERIA, chosen_setting
from analysis.provenance import package_versions

#: (method, steps) tried, the former default (DDIM-50) first. (Not the samplers
#: themselves: those are analysis.models.diffusion.SAMPLERS.)
TRIED = [("ddim", 50), ("ddim", 20), ("ddim", 10),
            ("dpmpp", 5), ("dpmpp", 10), ("dpmpp", 20), ("dpmpp", 30)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/w_default")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    root = ensure_dataset("simulated", None, args.profile, args.workdir, subjects=[args.subject])
    run = SubjectRun("simulated", root, args.subject, args.profile, args.workdir, progress=False)
    val = run.validation
    real_snr = single_trial_snr(val.target)
    rows = []
    for method, steps in TRIED:
        started = time.perf_counter()
        samples = val.generated("cross_attention", method=method, steps=steps)
        seconds = time.perf_counter() - started
        rows.append({"method": method, "steps": steps,
                     "snr_ratio": round(float(single_trial_snr(samples) / real_snr), 3),
                     "encoding_r_of_sample_mean": round(float(mean_encoding_score(
                         samples.mean(axis=1), val.target_average)), 4),
                     "sampling_seconds": round(seconds, 1), "n_signals": int(samples.shape[0] * samples.shape[1])})
        print(json.dumps(rows[-1]), flush=True)
    criterion = CRITERIA["steps"]  # how the sampling page chooses a sampler setting
    sweep = pd.DataFrame({"metric": criterion, "value": [row[criterion] for row in rows],
                          "setting": [(row["method"], row["steps"]) for row in rows]})
    method, steps = chosen_setting(sweep, criterion)
    record = {"profile": args.profile, "subject": args.subject, "encoder": run.encoder_label,
              "conditioning": "cross_attention", "split": "validation concepts",
              "n_validation_images": val.dataset.test.n_images,
              "sampling": {k: v for k, v in vars(run.profile.sampling).items()
                           if k not in ("method", "steps")},
              "chosen": {"method": method, "steps": steps,
                         "rule": f"{criterion} nearest 1 (log scale)"},
              "versions": package_versions(), "date": time.strftime("%Y-%m-%d"),
              "samplers": rows}
    print("chosen:", record["chosen"])
    if args.output:
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""How the decoding page's real-vs-generated AUC scales to THINGS-sized test sets.

The decoding page's ``plausibility_table`` calls
:func:`analysis.evaluation.decoding.residual_auc` once per model: a logistic regression on
log-power features (channels × ``n_times // 2 + 1`` bins) of 2 × 200 image residuals,
``cv`` folds, plus ``n_permutations × cv`` fits for each generator (references are not
permuted). Fitted on the features themselves, its cost grew with channels × bins (at
0d08cba, 19 permutations: 47 s at the THINGS-EEG2 250 Hz layout, 223 s at THINGS-MEG);
since the fits run in the principal components of the 400 examples, the features are
read once. This times one call per layout and permutation count on random arrays of the
real test-set shape (the fit's cost does not depend on the values), with the process's
peak resident memory after each call.

    .venv/bin/python benchmarks/decoding_scale.py --output benchmarks/results/decoding-scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

from analysis.evaluation import decoding
from analysis.files import atomic_write_text
from analysis.provenance import package_versions

#: Test-set shapes (images, real repetitions, channels, times) of the layouts the
#: loaders read: THINGS-EEG2 as released (17 channels, 100 Hz) and as the NICE/ATM files
#: (63 channels, 250 Hz), THINGS-MEG (271 sensors, 281 samples, 12 test repetitions).
LAYOUTS = {
    "things-eeg2-official": (200, 80, 17, 100),
    "things-eeg2-nice": (200, 80, 63, 250),
    "things-meg": (200, 12, 271, 281),
}


def time_layout(shape: tuple[int, int, int, int], n_permutations: int, *, n_samples: int = 8,
                cv: int = 5, seed: int = 0) -> dict:
    """Seconds of one ``residual_auc`` call on random arrays of ``shape``."""
    rng = np.random.default_rng(seed)
    real = rng.standard_normal(shape, dtype=np.float32)
    generated = 1.2 * real[:, :n_samples]  # too much power: the AUC is far from 0.5
    start = time.perf_counter()
    result = decoding.residual_auc(real, generated, cv=cv, seed=seed,
                                   n_permutations=n_permutations)
    seconds = time.perf_counter() - start
    n_images, _, n_channels, n_times = shape
    return dict(shape=list(shape), n_features=n_channels * (n_times // 2 + 1),
                n_permutations=n_permutations, cv=cv, seconds=round(seconds, 2),
                auc=round(float(result.auc), 3),
                peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", nargs="+", choices=sorted(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--permutations", type=int, nargs="+", default=[0, 19],
                        help="0: a reference's cost; 19: a generator's (the page's default)")
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args()
    rows = []
    for name in args.layouts:
        for n_permutations in args.permutations:
            row = dict(layout=name, **time_layout(LAYOUTS[name], n_permutations))
            print(json.dumps(row), flush=True)
            rows.append(row)
    record = dict(rows=rows, cpu_count=os.cpu_count(), threads=os.environ.get("OMP_NUM_THREADS"),
                  date=time.strftime("%Y-%m-%d"), versions=package_versions())
    if args.output:
        atomic_write_text(args.output, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""What a training step of each conditioning costs, and how batch size changes it.

The book's pages train on one thread each (two pages at a time on 2 cores), on signals of
17 channels × 100 samples: tensors so small that a step's time is mostly the number of
operations, not their size. This measures training samples/s of the `default` profile's
U-Net per conditioning and batch size on synthetic inputs of those shapes (speed does not
depend on the values), the figure behind the book's training minutes.

    .venv/bin/python benchmarks/training_cost.py --output benchmarks/results/training-cost.json

Run it alone (never two heavy jobs at once on a small machine: the timings would lie).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from analysis.benchmark import bench_training, machine
from analysis.config import CONDITIONINGS
from analysis.provenance import package_versions

BATCH_SIZES = (32, 64, 128, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a book page: 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for conditioning in CONDITIONINGS:
        for batch_size in BATCH_SIZES:
            rows.append(bench_training(args.profile, conditioning, batch_size=batch_size,
                                       device="cpu", train_steps=args.steps))
            print(json.dumps(rows[-1]), flush=True)
    record = {"profile": args.profile, "threads": args.threads, "machine": machine(),
              "versions": package_versions(), "date": time.strftime("%Y-%m-%d"),
              "rows": rows}
    if args.output:
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

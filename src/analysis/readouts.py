"""What image features carry: linear read-outs of feature sets, before any generator is judged.

A generator conditioned on some features can at best use what those features hold about
the response. Ridge regression from a feature set to every channel × time (the field's
encoding model) says how much of the ceiling a feature set leaves reachable. This module
makes the feature sets a reader compares — each encoder's pooled embedding, each CNN stage,
the token sequence, raw down-sampled pixels and, on simulated data, the true image
attributes ("oracle features") — and scores ridge on the validation concepts
(:mod:`analysis.validation`), where choices such as the encoder's stages are made.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .data.images import CONTINUOUS_RANGES, HUES, SHAPES, TEXTURES
from .evaluation.metrics import mean_encoding_score
from .models.baselines import RidgeEncoder

if TYPE_CHECKING:
    from .encoders import ImageFeatures

#: Categorical columns of the simulator's attribute table (one-hot coded).
CATEGORICAL_ATTRIBUTES = ("shape", "hue", "texture")


def pixel_features(paths: Sequence[str | Path], size: int = 16) -> np.ndarray:
    """Raw pixels, down-sampled: each image resized to ``size × size`` RGB in [0, 1].

    Returns
    -------
    ndarray, float32, shape (n_images, size * size * 3)
    """
    out = np.empty((len(paths), size * size * 3), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            small = image.convert("RGB").resize((size, size), Image.Resampling.BOX)
        out[i] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
    return out


def attribute_features(table: pd.DataFrame) -> np.ndarray:
    """The simulator's true attributes as a design matrix: one-hot categories + continuous.

    Parameters
    ----------
    table : DataFrame
        Rows of the simulator's ``image_attributes.csv`` (columns ``shape, hue, texture,
        curved`` and those of :data:`~analysis.data.images.CONTINUOUS_RANGES`). The
        ``rotation`` angle enters as its cosine and sine.

    Returns
    -------
    ndarray, float32, shape (n_images, n_columns)
    """
    levels = {"shape": SHAPES, "hue": HUES, "texture": TEXTURES}
    columns = [(table[name].to_numpy()[:, None] == np.asarray(levels[name])[None, :]).astype(float)
               for name in CATEGORICAL_ATTRIBUTES]
    columns.append(table[["curved"]].to_numpy(dtype=float))
    for name in CONTINUOUS_RANGES:
        values = table[name].to_numpy(dtype=float)
        if name == "rotation":
            columns.append(np.stack([np.cos(values), np.sin(values)], axis=1))
        else:
            columns.append(values[:, None])
    return np.concatenate(columns, axis=1).astype(np.float32)


def oracle_image_features(dataset) -> ImageFeatures:
    """The simulator's true attributes of every training and test image, as features a
    generator can be conditioned on ("oracle conditioning").

    ``pooled`` is :func:`attribute_features` (what ridge on the true attributes reads); the
    token sequence is that same vector as one token, so every conditioning sees exactly the
    same information. A generator trained on these shows what training can reach when the
    features hold everything the simulator used.

    Parameters
    ----------
    dataset : EpochedDataset
        Simulated data (its ``meta['image_attributes']`` names the attribute table).

    Returns
    -------
    ImageFeatures
        Rows in the order train ids, then test ids; ``meta['model']`` is
        ``'true attributes (oracle)'``.

    Raises
    ------
    ValueError
        The dataset has no attribute table (real recordings).
    """
    import hashlib

    from .encoders import ImageFeatures

    table = dataset.meta.get("image_attributes")
    if not table or not Path(table).is_file():
        raise ValueError(f"{dataset.meta.get('dataset')} sub-{dataset.meta.get('subject')}: "
                         "oracle conditioning needs the simulator's image_attributes.csv")
    ids = list(dataset.train.image_ids) + list(dataset.test.image_ids)
    attributes = pd.read_csv(table).set_index("image_id")
    pooled = attribute_features(attributes.loc[ids].reset_index())
    digest = hashlib.sha256(pooled.tobytes() + "\n".join(ids).encode()).hexdigest()[:16]
    name = "true attributes (oracle)"
    return ImageFeatures(ids, pooled, pooled[:, None, :].astype(np.float16),
                         {"model": name, "label": name, "weights_digest": digest,
                          "cache_key": f"oracle-{digest}", "random_init": False})


def validation_score(features: np.ndarray, responses: np.ndarray, mask: np.ndarray) -> float:
    """Ridge encoding score on held-out validation images.

    Parameters
    ----------
    features : ndarray, shape (n_images, n_features)
        Training images' features.
    responses : ndarray, shape (n_images, n_channels, n_times)
        Their repetition-averaged responses.
    mask : ndarray of bool, shape (n_images,)
        Validation images (:func:`analysis.validation.validation_mask`); ridge is fit on
        the others.

    Returns
    -------
    float
        Mean over channel × time of the across-image correlation between the ridge
        prediction and the validation images' averages.
    """
    mask = np.asarray(mask, dtype=bool)
    model = RidgeEncoder().fit(features[~mask], responses[~mask])
    return mean_encoding_score(model.predict(features[mask]), responses[mask])


def encoder_name(meta: dict) -> str:
    """Short name of the encoder behind some features, e.g. ``'CLIP ViT-B-32 (random init)'``."""
    model = str(meta.get("model"))
    if meta.get("family") == "timm":
        name = re.sub(r"^tf_efficientnet_lite(\d)$", r"EffNet-Lite\1", model)
        weights = "random init" if meta.get("random_init") else "ImageNet"
    else:
        name = f"CLIP {model}"
        weights = "random init" if meta.get("random_init") else "pretrained"
    return f"{name} ({weights})"


def pooled_name(meta: dict) -> str:
    """Name of the read-out of an encoder's pooled embedding (the ridge baseline's input)."""
    return f"{encoder_name(meta)}: pooled"


def stage_slices(meta: dict) -> dict[str, slice]:
    """Where each CNN stage sits in a ``timm`` encoder's pooled vector (empty for CLIP).

    The pooled vector concatenates, stage after stage, each stage map average-pooled to
    ``grid × grid`` (``C · grid²`` numbers per stage; :mod:`analysis.encoders.cnn`).
    """
    channels, grid = meta.get("stage_channels") or {}, int(meta.get("grid") or 1)
    slices, start = {}, 0
    for stage, n in channels.items():
        slices[stage] = slice(start, start + int(n) * grid * grid)
        start += int(n) * grid * grid
    return slices


def token_grid_means(tokens: np.ndarray, grid: int = 2) -> np.ndarray:
    """Token sequences on a square grid of positions, averaged over ``grid × grid`` blocks.

    Parameters
    ----------
    tokens : ndarray, shape (n_images, n_tokens, token_dim)
        ``n_tokens`` a square number (7 × 7 for ViT-B/32 patches and the CNN's positions).

    Returns
    -------
    ndarray, float32, shape (n_images, grid * grid * token_dim)
        Where in the image a feature is, coarsely; the pooled embedding of a CNN with a 1 × 1
        grid is the mean of these blocks, so a gain over it is spatial information.
    """
    import torch
    import torch.nn.functional as F

    n, length, dim = tokens.shape
    side = int(round(np.sqrt(length)))
    if side * side != length:
        raise ValueError(f"tokens: expected a square number of tokens, found {length}")
    maps = torch.as_tensor(np.asarray(tokens, dtype=np.float32)).transpose(1, 2)
    blocks = F.adaptive_avg_pool2d(maps.reshape(n, dim, side, side), grid)
    return blocks.reshape(n, dim * grid * grid).numpy()


def split_rows(features, image_ids_by_split: Sequence[Sequence[str]], array: str = "pooled"
               ) -> list[np.ndarray]:
    """``features.<array>`` rows for each list of image ids, as float32 arrays."""
    row = {image_id: i for i, image_id in enumerate(features.image_ids)}
    values = getattr(features, array)
    return [np.asarray(values[[row[i] for i in ids]], dtype=np.float32) for ids in image_ids_by_split]


def feature_sets(run, extra_features: Sequence = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The feature sets a reader compares, as ``{name: (train, test)}`` design matrices.

    Parameters
    ----------
    run : SubjectRun
        Its profile encoder's features give ``pooled`` (what ridge and concatenation read),
        each CNN stage alone and the tokens averaged over positions (a summary of what
        cross-attention attends to).
    extra_features : sequence of ImageFeatures
        Other encoders' features of the same images (e.g. random-init CLIP: what random
        features give), read out through their pooled embedding.

    Also raw 16 × 16 pixels and, on simulated data, the true attributes ("oracle features").
    """
    ids = (run.dataset.train.image_ids, run.dataset.test.image_ids)
    own = run.features
    pooled = tuple(split_rows(own, ids))
    sets = {pooled_name(own.meta): pooled}
    for stage, where in stage_slices(own.meta).items():
        sets[f"{encoder_name(own.meta)}: stage {stage}"] = tuple(x[:, where] for x in pooled)
    sets[f"{encoder_name(own.meta)}: tokens, 2x2 grid"] = tuple(
        token_grid_means(t) for t in split_rows(own, ids, "tokens"))
    for features in extra_features:
        sets[pooled_name(features.meta)] = tuple(split_rows(features, ids))
    sets["raw pixels 16x16"] = tuple(pixel_features(split.image_paths)
                                     for split in (run.dataset.train, run.dataset.test))
    table = run.dataset.meta.get("image_attributes")
    if table and Path(table).is_file():
        attributes = pd.read_csv(table).set_index("image_id")
        sets["true attributes (oracle)"] = tuple(
            attribute_features(attributes.loc[list(i)].reset_index()) for i in ids)
    return sets

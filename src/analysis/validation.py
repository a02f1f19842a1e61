"""The fixed validation split: held-out *training* concepts that decide every choice.

Nothing is chosen on test data. Encoder stages, epochs, guidance, sampler steps, sample
counts and weightings are chosen by scores on the validation concepts: training concepts
held out from fitting. Membership is a function of the concept name alone (its sha256), so
the split is the same on every machine and for every subject, needs no seed, and cannot
change when the test data (or any other concept) changes.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

#: Share of training concepts held out for validation.
VALIDATION_FRACTION = 0.1


def concept_draw(concept: str) -> float:
    """A uniform number in [0, 1) fixed by the concept name (first 8 bytes of its sha256)."""
    digest = hashlib.sha256(str(concept).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def validation_mask(concepts: Sequence[str], fraction: float = VALIDATION_FRACTION) -> np.ndarray:
    """Which training images belong to validation concepts.

    Parameters
    ----------
    concepts : sequence of str, length n_images
        The concept of each training image (images of one concept go together).
    fraction : float
        Expected share of concepts held out, in (0, 1).

    Returns
    -------
    ndarray of bool, shape (n_images,)

    Raises
    ------
    ValueError
        ``fraction`` is outside (0, 1), or the split leaves no concept on one side.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: expected a number in (0, 1), found {fraction}")
    mask = np.array([concept_draw(c) < fraction for c in concepts], dtype=bool)
    if mask.all() or not mask.any():
        side = "validation" if not mask.any() else "fitting"
        raise ValueError(f"concepts: the validation split of {len(set(concepts))} concept(s) "
                         f"at fraction {fraction} leaves no {side} concept; use more concepts")
    return mask


def validation_dataset(dataset):
    """The subject's data with the validation concepts as its test set.

    ``train`` keeps the fitting concepts, ``test`` holds the validation concepts' training
    images (their few training repetitions); the real test images are left out entirely,
    so nothing fitted or chosen on the result can depend on them. Simulated noiseless
    means follow the same split. ``meta['split'] = 'validation'`` marks it.

    Parameters
    ----------
    dataset : EpochedDataset

    Returns
    -------
    EpochedDataset
    """
    from .data.contract import EpochedDataset, Split

    held = validation_mask(dataset.train.concepts)
    train = dataset.train

    def part(mask: np.ndarray) -> Split:
        paths = None if train.image_paths is None else [
            p for p, m in zip(train.image_paths, mask) if m]
        return Split(train.signals[mask], [i for i, m in zip(train.image_ids, mask) if m],
                     [c for c, m in zip(train.concepts, mask) if m], paths,
                     source=f"{train.source} (validation split)")

    noiseless = None
    if dataset.noiseless is not None:
        noiseless = {"train": dataset.noiseless["train"][~held],
                     "test": dataset.noiseless["train"][held]}
    return EpochedDataset(part(~held), part(held), dataset.info, dataset.times,
                          dict(dataset.meta, split="validation"), noiseless)

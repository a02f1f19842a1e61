"""The fixed validation split: held-out *training* concepts that decide every choice.

Nothing is chosen on test data. Encoder stages, epochs, guidance, sampler steps, sample
counts and weightings are chosen by scores on the validation concepts: training concepts
held out from fitting. Membership is a function of the concept name alone (its sha256), so
the split is the same on every machine and for every subject, needs no seed, and cannot
change when the test data (or any other concept) changes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

#: Share of training concepts held out for validation.
VALIDATION_FRACTION = 0.1
#: A validation split's fitting part larger than this (bytes) is written to the work
#: folder's cache and read memory-mapped, not copied into memory: at THINGS-MEG's size the
#: copy is 6.2 GB beside the 6.8 GB recording, and a memory map's pages are the file's,
#: which the system can drop and read again instead of running out of memory.
IN_MEMORY_LIMIT_BYTES = 1 << 30


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


def rows_of(array: np.ndarray, mask: np.ndarray, cache: Path | None = None,
            max_in_memory_bytes: int = IN_MEMORY_LIMIT_BYTES) -> np.ndarray:
    """``array[mask]`` (rows along axis 0): a copy in memory, or where it would be larger
    than ``max_in_memory_bytes`` and a ``cache`` file path is given, a read-only memory map
    of that ``.npy`` file, written block by block (atomically) the first time.

    ``cache`` must name the content (the caller keys it by a digest of ``array`` and
    ``mask``): an existing file of the right shape and dtype is reused as it is.
    """
    rows = np.flatnonzero(mask)
    row_bytes = array[0].nbytes if len(array) else 0
    if cache is None or len(rows) * row_bytes <= max_in_memory_bytes:
        return array[mask]
    shape = (len(rows), *array.shape[1:])
    if cache.is_file():
        existing = np.load(cache, mmap_mode="r")
        if existing.shape == shape and existing.dtype == array.dtype:
            return existing
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=array.dtype, shape=shape)
    block = max(1, max_in_memory_bytes // 8 // max(row_bytes, 1))  # a few hundred MB at a time
    for start in range(0, len(rows), block):
        out[start:start + block] = array[rows[start:start + block]]
    out.flush()
    del out
    os.replace(tmp, cache)
    return np.load(cache, mmap_mode="r")


def split_validation(dataset, cache_dir: str | Path | None = None,
                     max_in_memory_bytes: int = IN_MEMORY_LIMIT_BYTES):
    """The subject's data split for fitting and for validation.

    Every generator and baseline is fit on the *fitting* concepts only, so that the
    validation concepts score the very models the book reports (learning curves, sampling
    choices, model cards), not twins of them.

    Parameters
    ----------
    dataset : EpochedDataset
        The whole recording.
    cache_dir : path, optional
        Where a fitting part larger than ``max_in_memory_bytes`` is kept as a memory-mapped
        ``.npy`` (:func:`rows_of`), keyed by a digest of the training data; ``None``: always
        in memory.

    Returns
    -------
    fitting : EpochedDataset
        ``train`` holds the fitting concepts' images, ``test`` the real test set;
        ``meta['split'] = 'fitting'``.
    validation : EpochedDataset
        The same ``train`` (the same object: models fit on one are the other's), and as
        ``test`` the validation concepts' training images with their few repetitions; the
        real test images are left out entirely, so nothing fitted or chosen on it can depend
        on them; ``meta['split'] = 'validation'``.

    Simulated noiseless means follow the same split.
    """
    from .data.contract import EpochedDataset, Split

    held = validation_mask(dataset.train.concepts)
    train = dataset.train

    digest: list[str] = []  # of the training data and the split, computed once if needed

    def cache(name: str) -> Path | None:
        if cache_dir is None:
            return None
        if not digest:
            from .training import dataset_fingerprint

            content = repr((sorted(dataset_fingerprint(dataset).items()), VALIDATION_FRACTION))
            digest.append(hashlib.sha256(content.encode()).hexdigest()[:16])
        return Path(cache_dir) / f"{name}-{digest[0]}.npy"

    def part(mask: np.ndarray, source: str, name: str | None = None) -> Split:
        paths = None if train.image_paths is None else [
            p for p, m in zip(train.image_paths, mask) if m]
        signals = rows_of(train.signals, mask, name and cache(name), max_in_memory_bytes)
        return Split(signals, [i for i, m in zip(train.image_ids, mask) if m],
                     [c for c, m in zip(train.concepts, mask) if m], paths,
                     source=f"{train.source} ({source})")

    fitting = part(~held, "fitting concepts", "fitting")
    fitting_noiseless = validation_noiseless = None
    if dataset.noiseless is not None:
        noiseless_fitting = rows_of(dataset.noiseless["train"], ~held,
                                    cache("fitting-noiseless"), max_in_memory_bytes)
        fitting_noiseless = dict(dataset.noiseless, train=noiseless_fitting)
        validation_noiseless = {"train": noiseless_fitting,
                                "test": dataset.noiseless["train"][held]}
    return (EpochedDataset(fitting, dataset.test, dataset.info, dataset.times,
                           dict(dataset.meta, split="fitting"), fitting_noiseless),
            EpochedDataset(fitting, part(held, "validation concepts"), dataset.info,
                           dataset.times, dict(dataset.meta, split="validation"),
                           validation_noiseless))

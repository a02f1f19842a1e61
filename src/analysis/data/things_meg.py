"""THINGS-MEG (Hebart et al. 2023, OpenNeuro ds004212): loader and writer.

The preprocessed derivatives are MNE epochs files,
``<root>/derivatives/preprocessed/preprocessed_P{n}-epo.fif``: 271 CTF axial gradiometers
(``MLxxx`` / ``MRxxx`` / ``MZxxx``), 200 Hz, -0.1 … 1.3 s (281 samples), in tesla. The
event code of each epoch identifies its image: catch trials carry ``999999``, test images
are the codes shown many times (200 images × 12 repetitions), training images the codes
shown once (22,248 images).
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import mne
import numpy as np

from .contract import DataFormatError, EpochedDataset, Split, check_signals, format_error

logger = logging.getLogger(__name__)

DATASET = "things-meg"
UNITS = "T"
CATCH_CODE = 999999
PATH_COLUMNS = ("image_path", "image_file")
CONCEPT_COLUMN = "concept"
# Epochs read from the file at a time when gathering them into float32 splits. The file is
# never loaded whole: MNE holds epochs in float64, ~13 GB for one real participant, on top
# of the 6.5 GB float32 splits; reading in chunks bounds the float64 copy to one chunk.
CHUNK = 512


def epochs_path(root: str | os.PathLike, participant: int) -> Path:
    """``<root>/derivatives/preprocessed/preprocessed_P{n}-epo.fif``."""
    return Path(root) / "derivatives" / "preprocessed" / f"preprocessed_P{participant}-epo.fif"


def load_things_meg(
    root: str | os.PathLike,
    participant: int,
    *,
    n_test_reps: int | None = 12,
    images_root: str | os.PathLike | None = None,
) -> EpochedDataset:
    """Load one THINGS-MEG participant's preprocessed epochs.

    Parameters
    ----------
    root : path
        Dataset root (the BIDS folder holding ``derivatives/preprocessed/``).
    participant : int
        Participant number, 1 … 4 in the real data.
    n_test_reps : int or None
        Repetitions kept per test image: the first ``n_test_reps`` occurrences (12 in the
        real data). If a test image was shown fewer times, the minimum count across test
        images is used instead and a warning is logged. None keeps the minimum count.
    images_root : path, optional
        Folder that relative ``image_path`` / ``image_file`` metadata entries are
        resolved against.

    Returns
    -------
    EpochedDataset
        ``train.signals`` float32 ``(n_train_images, 1, n_meg, n_times)`` and
        ``test.signals`` float32 ``(n_test_images, n_reps, n_meg, n_times)`` in tesla,
        images ordered by event code (the same order for every participant); ``info`` is
        the epochs' info restricted to MEG channels; ``times`` in seconds.

        Image ids are the stems of ``epochs.metadata['image_path']`` (or ``image_file``)
        when that column exists, else ``img{code:06d}``; concepts come from
        ``metadata['concept']`` when present, else equal the ids.

    Raises
    ------
    DataFormatError
        Missing or unreadable file, no MEG channels, no repeated images (no test set), no
        single-shown images (no training set), fewer than 2 repetitions, an image code
        with inconsistent metadata, or NaN/inf values.
    """
    if n_test_reps is not None and n_test_reps < 2:
        raise ValueError(f"n_test_reps must be at least 2 (or None), got {n_test_reps}")
    path = epochs_path(root, participant)
    epochs = _read_epochs(path)
    picks = _meg_picks(epochs, source=path)

    codes = np.asarray(epochs.events[:, 2])
    keep = codes != CATCH_CODE
    n_catch = int((~keep).sum())
    train_groups, test_groups, n_reps = _group_by_image(codes, keep, n_test_reps, source=path)

    images = _image_table(epochs, codes, images_root, source=path)
    splits = {}
    for name, groups in (("train", train_groups), ("test", test_groups)):
        signals = check_signals(_gather_float32(epochs, picks, groups), source=path,
                                field_name=f"epochs data ({name} images)")
        splits[name] = Split(signals=signals, source=str(path),
                             **_labels(list(groups), images))

    info = mne.pick_info(epochs.info, picks)
    meta = {
        "dataset": DATASET,
        "subject": int(participant),
        "units": UNITS,
        "preprocessing": _describe(info, epochs.times),
        "files": {"epochs": str(path)},
        "n_catch_dropped": n_catch,
        "n_test_reps": n_reps,
    }
    logger.info("Loaded THINGS-MEG P%d: %d train, %d test images × %d reps, %d catch dropped",
                participant, len(train_groups), len(test_groups), n_reps, n_catch)
    return EpochedDataset(train=splits["train"], test=splits["test"], info=info,
                          times=epochs.times.copy(), meta=meta)


def list_images(root: str | os.PathLike, participant: int = 1, *, n_test_reps: int | None = 12
                ) -> tuple[list[str], list[Path]]:
    """Image ids and paths of one participant's epochs, training then test, in the order
    :func:`load_things_meg` returns them (so features cached from this
    list serve the loaded dataset); relative paths resolve against ``root``.

    Reads the events and metadata only, not the signals.

    Raises
    ------
    DataFormatError
        As :func:`load_things_meg`, or when the metadata names no image files.
    """
    path = epochs_path(root, participant)
    epochs = _read_epochs(path)
    codes = np.asarray(epochs.events[:, 2])
    train, test, _ = _group_by_image(codes, codes != CATCH_CODE, n_test_reps, source=path)
    table = _image_table(epochs, codes, root, source=path)
    if table is None:
        raise format_error(path, "metadata", f"an image path column ({' or '.join(PATH_COLUMNS)})",
                           "none: without image files there is nothing to encode")
    ids, paths = [], []
    for groups in (train, test):
        labels = _labels(list(groups), table)
        ids += labels["image_ids"]
        paths += labels["image_paths"]
    return ids, paths


def _read_epochs(path: Path) -> mne.BaseEpochs:
    """The epochs file's header, events and metadata; signals stay on disk until read."""
    if not path.is_file():
        raise DataFormatError(
            f"{path}: file not found; expected THINGS-MEG preprocessed epochs at "
            "<root>/derivatives/preprocessed/preprocessed_P{n}-epo.fif")
    try:
        with warnings.catch_warnings():
            # MNE's metadata reader calls a pandas API deprecated in pandas 3.1; the
            # warning is about MNE's code, not the user's file, so keep it out of the way.
            warnings.filterwarnings("ignore", message=r"The inplace keyword")
            return mne.read_epochs(path, preload=False, verbose="error")
    except Exception as exc:  # MNE raises many types for corrupt / non-FIF files
        raise format_error(path, "<file>", "an MNE epochs FIF file",
                           f"an unreadable file ({type(exc).__name__}: {exc})") from exc


def _meg_picks(epochs: mne.BaseEpochs, *, source: Path) -> np.ndarray:
    """Indices of the MEG sensors (reference channels, EEG, stim etc. left out)."""
    picks = mne.pick_types(epochs.info, meg=True, ref_meg=False)
    if len(picks) == 0:
        found = sorted(set(epochs.get_channel_types()))
        raise format_error(source, "info['chs']", "MEG channels (CTF MLx/MRx/MZx sensors)",
                           f"none; channel types {found}")
    return picks


def _group_by_image(codes: np.ndarray, keep: np.ndarray, n_test_reps: int | None, *,
                    source: Path) -> tuple[dict, dict, int]:
    """Group epoch indices by event code.

    Returns
    -------
    train : dict code -> [epoch index]
        Codes shown once, ascending by code.
    test : dict code -> [epoch indices]
        Codes shown more than once, ascending by code, each with the first ``n_reps``
        occurrences in file order.
    n_reps : int
    """
    indices: dict[int, list[int]] = {}
    for i in np.flatnonzero(keep):
        indices.setdefault(int(codes[i]), []).append(int(i))
    ordered = sorted(indices)
    train = {c: indices[c] for c in ordered if len(indices[c]) == 1}
    test = {c: indices[c] for c in ordered if len(indices[c]) > 1}
    if not test:
        raise format_error(source, "events[:, 2]",
                           "test images: event codes that occur more than once",
                           f"{len(train)} codes, each shown once (catch code {CATCH_CODE} "
                           "excluded)")
    if not train:
        raise format_error(source, "events[:, 2]",
                           "training images: event codes that occur exactly once",
                           f"all {len(test)} codes repeated")
    n_reps = _choose_reps(test, n_test_reps, source=source)
    return train, {c: idx[:n_reps] for c, idx in test.items()}, n_reps


def _choose_reps(test: dict[int, list[int]], n_test_reps: int | None, *, source: Path) -> int:
    """Repetitions per test image: ``n_test_reps`` capped by the smallest count."""
    counts = np.array([len(v) for v in test.values()])
    n_min = int(counts.min())
    wanted = n_min if n_test_reps is None else n_test_reps
    if n_min < 2:  # cannot happen with the >1 rule, but guards future changes
        raise format_error(source, "events[:, 2]", "at least 2 repetitions per test image",
                           f"{n_min}")
    if n_min < wanted or counts.max() != counts.min():
        logger.warning("%s: test images shown %d to %d times (expected %s); keeping the "
                       "first %d repetitions of each", source, n_min, int(counts.max()),
                       n_test_reps, min(n_min, wanted))
    return min(n_min, wanted)


def _gather_float32(epochs: mne.BaseEpochs, picks: np.ndarray, groups: dict[int, list[int]]
                    ) -> np.ndarray:
    """``(n_images, n_reps, n_picks, n_times)`` float32 of the epochs at the grouped indices,
    read ``CHUNK`` epochs at a time (from the file when ``epochs`` is not preloaded)."""
    index = np.array(list(groups.values()), dtype=int)  # (n_images, n_reps)
    shape = (len(picks), len(epochs.times))
    out = np.empty(index.shape + shape, dtype=np.float32)
    flat_out = out.reshape((-1,) + shape)
    flat_index = index.ravel()
    for start in range(0, len(flat_index), CHUNK):
        stop = start + CHUNK
        flat_out[start:stop] = epochs.get_data(picks=picks, item=flat_index[start:stop],
                                               verbose="error")
    return out


def _labels(codes: list[int], table: dict[int, dict] | None) -> dict:
    """Keyword arguments for :class:`Split`: ids, concepts and paths of ``codes``."""
    if table is None:
        ids = [f"img{c:06d}" for c in codes]
        return {"image_ids": ids, "concepts": list(ids), "image_paths": None}
    return {key: [table[c][key] for c in codes]
            for key in ("image_ids", "concepts", "image_paths")}


def _image_table(epochs: mne.BaseEpochs, codes: np.ndarray, images_root: Any, *,
                 source: Path) -> dict[int, dict] | None:
    """Per event code: ``image_ids``, ``concepts``, ``image_paths`` from ``epochs.metadata``.

    Returns None when the metadata has no image path column. Every epoch of one code
    must name the same image.
    """
    md = epochs.metadata
    column = next((c for c in PATH_COLUMNS if md is not None and c in md.columns), None)
    if column is None:
        return None
    root = Path(images_root) if images_root is not None else None
    has_concept = CONCEPT_COLUMN in md.columns
    table: dict[int, dict] = {}
    for row, code in enumerate(codes):
        code = int(code)
        if code == CATCH_CODE:
            continue
        rel = str(md[column].iloc[row])
        if code in table:
            if table[code]["_raw"] != rel:
                raise format_error(source, f"metadata['{column}']",
                                   f"one image per event code (code {code})",
                                   f"{table[code]['_raw']!r} and {rel!r}")
            continue
        image_path = root / rel if root is not None else Path(rel)
        concept = str(md[CONCEPT_COLUMN].iloc[row]) if has_concept else None
        table[code] = {"_raw": rel, "image_ids": Path(rel).stem,
                       "concepts": concept or Path(rel).stem, "image_paths": image_path}
    return table


def _describe(info: mne.Info, times: np.ndarray) -> str:
    return (f"THINGS-MEG preprocessed epochs (Hebart et al. 2023): {len(info['ch_names'])} "
            f"MEG channels, {info['sfreq']:g} Hz, {times[0]:+.3f}…{times[-1]:+.3f} s, "
            f"band-pass {info['highpass']:g}–{info['lowpass']:g} Hz; catch trials dropped")


def write_things_meg(root: str | os.PathLike, participant: int, epochs: mne.BaseEpochs, *,
                     overwrite: bool = False, split_size: str | int = "2GB") -> Path:
    """Save epochs where :func:`load_things_meg` looks for them, without partial files.

    Parameters
    ----------
    root : path
        Dataset root; the file goes to ``derivatives/preprocessed/preprocessed_P{n}-epo.fif``.
    participant : int
    epochs : mne.Epochs or mne.EpochsArray
        Event codes identify images (catch trials ``999999``); optional metadata columns
        ``image_path`` / ``image_file`` and ``concept``.
    overwrite : bool
        Replace an existing file; otherwise ``FileExistsError``.
    split_size : str or int
        MNE's largest part (FIF files cannot exceed 2 GB): larger data are written as
        ``…-epo.fif``, ``…-epo-1.fif``, …, which MNE reads back as one.

    Returns
    -------
    Path
        The first (or only) part.

    Notes
    -----
    MNE writes every part under its final name into a hidden folder beside the target (the
    parts link to each other by name); the parts are then moved in, the first one last, so
    the loader never opens a file whose later parts are missing.
    """
    target = epochs_path(root, participant)
    if target.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing data file {target}; "
                              "pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".tmp-{uuid.uuid4().hex}"
    scratch.mkdir()
    try:
        epochs.save(scratch / target.name, split_size=split_size, overwrite=False,
                    verbose="error")
        if target.exists() and not overwrite:
            raise FileExistsError(f"refusing to overwrite existing data file {target}")
        parts = {part.name for part in scratch.glob(f"{target.stem}-*.fif")}
        for name in sorted(parts):
            os.replace(scratch / name, target.parent / name)
        os.replace(scratch / target.name, target)
        # Parts of an earlier, larger file would otherwise be left behind.
        for stale in target.parent.glob(f"{target.stem}-*.fif"):
            if stale.name not in parts:
                stale.unlink()
    finally:
        for leftover in scratch.glob("*"):
            leftover.unlink()
        scratch.rmdir()
    return target

"""THINGS-EEG2 (Gifford et al. 2022): loader and writer for the preprocessed files.

Two published on-disk variants are accepted and told apart by their content:

``official-17ch-100Hz``
    The dataset's own preprocessing, ``preprocessed_data/sub-XX/preprocessed_eeg_*.npy``:
    a dict saved with :func:`numpy.save` (so ``np.load(...).item()``), 17 posterior
    channels, -0.2 … 0.8 s at 100 Hz.
``nice-63ch-250Hz``
    The variant used by NICE / ATM / UBP, usually ``Preprocessed_data_250Hz/sub-XX/``: the
    same dict written with :func:`pickle.dump` under a ``.npy`` name (``np.load`` returns
    the dict itself), 63 channels, 0 … 1 s at 250 Hz. Its ``times`` may be longer than the
    data; the last ``n_times`` samples are the ones that belong to the data.

Any other channel count / rate in the same container is loaded too and labelled
``generic-<n>ch-<sfreq>Hz``.

Both variants hold MVNN-whitened data (unitless), train ``(n_images, 4, n_ch, n_t)`` and
test ``(200, 80, n_ch, n_t)``. Stimuli are described by ``image_metadata.npy`` (keys
``train_img_concepts``, ``train_img_files``, ``test_img_concepts``, ``test_img_files``),
with pixels under ``training_images/<concept>/<file>`` and ``test_images/<concept>/<file>``
next to it.

Security: every file read here is a pickle by format (``allow_pickle=True``), and unpickling
can run code. Files are only ever read from the data root the user points at; never point
this loader at files from a source you do not trust.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import mne
import numpy as np

from ..files import atomic_write, refuse_existing
from .contract import (
    DataFormatError,
    EpochedDataset,
    Split,
    check_signals,
    format_error,
    require_keys,
)

logger = logging.getLogger(__name__)

DATASET = "things-eeg2"
UNITS = "MVNN-whitened (unitless)"
MONTAGE = "colin27_1005"
DATA_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
METADATA_KEYS = ("train_img_concepts", "train_img_files", "test_img_concepts", "test_img_files")
METADATA_FILE = "image_metadata.npy"
SPLIT_FILES = {"train": "preprocessed_eeg_training.npy", "test": "preprocessed_eeg_test.npy"}
IMAGE_FOLDERS = {"train": "training_images", "test": "test_images"}
# Data folders, in search order, relative to the dataset root.
DATA_FOLDERS = {"official": "preprocessed_data", "nice": "Preprocessed_data_250Hz"}
#: Channels of each variant, in file order: the official preprocessing's 17 posterior
#: channels, and the 63 of the NICE/ATM files (10-10 names, all in colin27_1005).
CHANNELS = {
    "official": ("Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1", "P5", "PO7", "PO3",
                 "POz", "PO4", "PO8", "P6", "P2"),
    "nice": ("Fp1", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "F2",
             "F4", "F6", "F8", "FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6",
             "FT8", "FT10", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8", "TP9",
             "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "TP10", "P7",
             "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "PO7", "PO3", "POz", "PO4",
             "PO8", "O1", "Oz", "O2"),
}
#: Sampling rate (Hz) of each variant.
SFREQ = {"official": 100.0, "nice": 250.0}
VARIANT_OFFICIAL = "official-17ch-100Hz"
VARIANT_NICE = "nice-63ch-250Hz"
NPY_MAGIC = b"\x93NUMPY"
# How many missing image paths an error message lists before summarising.
N_LISTED = 5

LAYOUT_HINT = (
    "expected layout: <root>/preprocessed_data/sub-XX/preprocessed_eeg_{training,test}.npy "
    "(official) or <root>/Preprocessed_data_250Hz/sub-XX/... (NICE/ATM), "
    "or pass data_dir=<folder holding sub-XX>"
)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_things_eeg2(
    root: str | os.PathLike,
    subject: int,
    *,
    data_dir: str | os.PathLike | None = None,
    require_images: bool = True,
) -> EpochedDataset:
    """Load one THINGS-EEG2 subject (official or NICE/ATM preprocessing).

    Parameters
    ----------
    root : path
        Dataset root: holds ``preprocessed_data/`` or ``Preprocessed_data_250Hz/`` and
        ``image_set/image_metadata.npy`` (or ``image_metadata.npy`` directly).
    subject : int
        Subject number, 1-based (``sub-01`` … ``sub-10`` in the real data).
    data_dir : path, optional
        Folder holding ``sub-XX/`` when it is not one of the two standard folders under
        ``root``. When given it is the only folder searched, so a typo cannot silently
        fall back to a different preprocessing.
    require_images : bool
        If True (default), ``image_metadata.npy`` must exist and every image file it names
        must be on disk. If False, missing image files are allowed, and without
        metadata the images get placeholder ids (``train00000``, ``test000``), concept
        ``'unknown'`` and no paths.

    Returns
    -------
    EpochedDataset
        ``train.signals`` float32 ``(n_train_images, n_reps, n_channels, n_times)`` and
        ``test.signals`` float32 ``(n_test_images, n_reps, n_channels, n_times)``,
        MVNN-whitened (unitless); ``times`` in seconds; ``info`` with EEG channels and the
        ``colin27_1005`` montage; ``meta`` with ``dataset``, ``subject``, ``units``,
        ``preprocessing``, ``variant``, ``container`` and ``files``.

    Raises
    ------
    DataFormatError
        A file is missing (the message lists the paths searched), a key is missing, an
        array has the wrong rank or NaN/inf values, channel names are unknown to the
        montage or differ between training and test, ``times`` does not fit the data,
        metadata lengths do not match the data, or images are missing.

    Notes
    -----
    The files are pickles by format; they are only loaded from the user's own data root.
    """
    root = Path(root)
    subject = _check_subject(subject)
    folder = find_subject_folder(root, subject, data_dir=data_dir)
    paths = {split: folder / name for split, name in SPLIT_FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise DataFormatError(f"{path}: file not found (the subject folder {folder} "
                                  f"exists but lacks it); {LAYOUT_HINT}")

    train = _read_split_file(paths["train"])
    test = _read_split_file(paths["test"])
    _check_same_axes(train, test, paths)

    ch_names, times = train["ch_names"], train["times"]
    sfreq = train["sfreq"]
    variant = detect_variant(len(ch_names), sfreq, train["container"])
    info = _make_info(ch_names, sfreq, source=paths["train"])

    images = _read_images(root, train["signals"].shape[0], test["signals"].shape[0],
                          require_images=require_images)
    splits = {
        name: Split(signals=part["signals"], source=str(paths[name]), **images[name])
        for name, part in (("train", train), ("test", test))
    }
    meta = {
        "dataset": DATASET,
        "subject": subject,
        "units": UNITS,
        "preprocessing": describe_variant(variant, len(ch_names), sfreq, times,
                                          trimmed=train["times_trimmed"]),
        "variant": variant,
        "container": train["container"],
        "files": {"train": str(paths["train"]), "test": str(paths["test"]),
                  "image_metadata": images["metadata_path"]},
    }
    logger.info("Loaded THINGS-EEG2 sub-%02d (%s) from %s", subject, variant, folder)
    return EpochedDataset(train=splits["train"], test=splits["test"], info=info,
                          times=times, meta=meta)


def _check_subject(subject: Any) -> int:
    """Return ``subject`` as a positive int (numpy ints accepted, bools and str are not)."""
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)):
        raise TypeError(f"subject must be an int such as 1 (for sub-01), got {subject!r}")
    if subject < 1:
        raise ValueError(f"subject numbers start at 1, got {subject}")
    return int(subject)


def subject_folder_name(subject: int) -> str:
    """``sub-01`` style folder name used by THINGS-EEG2."""
    return f"sub-{subject:02d}"


def find_subject_folder(root: Path, subject: int, *, data_dir=None) -> Path:
    """Return the ``sub-XX`` folder holding the preprocessed files.

    Searches ``data_dir`` alone when it is given, else ``<root>/preprocessed_data`` then
    ``<root>/Preprocessed_data_250Hz``. A folder counts when its ``sub-XX`` folder
    exists.

    Raises
    ------
    DataFormatError
        None of the candidates holds ``sub-XX``; the message lists every path tried.
    """
    sub = subject_folder_name(subject)
    if data_dir is not None:
        candidates = [Path(data_dir)]
    else:
        candidates = [root / name for name in DATA_FOLDERS.values()]
    for candidate in candidates:
        if (candidate / sub).is_dir():
            return candidate / sub
    tried = ", ".join(str(c / sub / SPLIT_FILES["train"]) for c in candidates)
    raise DataFormatError(f"THINGS-EEG2 {sub}: file not found; looked for {tried}; "
                          f"{LAYOUT_HINT}")


def read_pickled_dict(path: Path) -> tuple[dict, str]:
    """Read a dict stored either with :func:`numpy.save` or :func:`pickle.dump`.

    Returns
    -------
    mapping : dict
    container : {'np.save', 'pickle'}
        How it was stored: read from the file's first bytes, since the ``.npy`` suffix is
        used for both.

    Notes
    -----
    Unpickling can execute code; only call this on files from the user's own data root.
    """
    with open(path, "rb") as fh:
        container = "np.save" if fh.read(len(NPY_MAGIC)) == NPY_MAGIC else "pickle"
    try:
        loaded = np.load(path, allow_pickle=True)
    except Exception as exc:  # corrupt or truncated files raise many different types
        raise format_error(path, "<file>", "a dict saved with np.save or pickle.dump",
                           f"an unreadable file ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.ndim == 0:
        loaded = loaded.item()  # np.save wraps the dict in a 0-d object array
    require_keys(loaded, (), source=path)  # only checks it is a dict
    return loaded, container


def _read_split_file(path: Path) -> dict:
    """Read and validate one ``preprocessed_eeg_*.npy`` file.

    Returns
    -------
    dict
        ``signals`` float32 ``(n_images, n_reps, n_ch, n_t)``, ``ch_names`` list of str,
        ``times`` float ``(n_t,)`` seconds, ``sfreq`` Hz, ``container``,
        ``times_trimmed`` (how many leading stored time points were dropped).
    """
    mapping, container = read_pickled_dict(path)
    require_keys(mapping, DATA_KEYS, source=path)
    ch_names = _check_ch_names(mapping["ch_names"], source=path)
    signals = check_signals(mapping["preprocessed_eeg_data"], source=path,
                            field_name="preprocessed_eeg_data", n_channels=len(ch_names))
    n_times = signals.shape[3]
    times, trimmed = _fit_times(mapping["times"], n_times, container=container, source=path)
    return {"signals": signals, "ch_names": ch_names, "times": times,
            "sfreq": _sfreq_from_times(times, source=path), "container": container,
            "times_trimmed": trimmed}


def _check_ch_names(value: Any, *, source: Path) -> list[str]:
    """Return channel names as a list of unique str."""
    try:
        names = [str(n) for n in value]
    except TypeError:
        raise format_error(source, "ch_names", "a list of channel names",
                           type(value).__name__) from None
    if not names:
        raise format_error(source, "ch_names", "at least one channel name", "an empty list")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise format_error(source, "ch_names", "unique channel names",
                           f"duplicates {duplicates}")
    return names


def _fit_times(value: Any, n_times: int, *, container: str, source: Path) -> tuple[np.ndarray, int]:
    """Return the time vector matching ``n_times`` data samples, and how many were dropped.

    Pickled (NICE/ATM) files store the times of the epoch before it was cropped, so the
    data's samples are the *last* ``n_times`` ones; official files must match exactly.
    """
    times = np.asarray(value, dtype=float) if _is_numeric(value) else None
    if times is None or times.ndim != 1:
        found = type(value).__name__ if times is None else f"shape {times.shape}"
        raise format_error(source, "times", "a 1-D numeric vector in seconds", found)
    if not np.isfinite(times).all():
        raise format_error(source, "times", "only finite values", "NaN/inf values")
    trimmed = 0
    if container == "pickle" and len(times) > n_times:
        trimmed = len(times) - n_times
        logger.info("%s: 'times' has %d samples for %d data samples; using the last %d "
                    "(NICE/ATM files store the uncropped epoch times)",
                    source, len(times), n_times, n_times)
        times = times[-n_times:]
    if len(times) != n_times:
        rule = " (after keeping the last n samples)" if container == "pickle" else ""
        raise format_error(source, "times",
                           f"{n_times} samples, the size of axis 3 of "
                           f"'preprocessed_eeg_data'{rule}", f"{len(times)} samples")
    return times, trimmed


def _is_numeric(value: Any) -> bool:
    try:
        return np.issubdtype(np.asarray(value).dtype, np.number)
    except (TypeError, ValueError):
        return False


def _sfreq_from_times(times: np.ndarray, *, source: Path) -> float:
    """Sampling rate (Hz) from a time vector; it must be increasing and evenly spaced."""
    if len(times) < 2:
        raise format_error(source, "times", "at least 2 samples", f"{len(times)}")
    step = np.diff(times)
    median = float(np.median(step))
    # 1 % tolerance: float32 times and rounding in the published files are not exact.
    if median <= 0 or np.any(np.abs(step - median) > 0.01 * median):
        raise format_error(source, "times", "increasing, evenly spaced samples",
                           f"steps from {step.min():.6g} to {step.max():.6g} s")
    return round(1.0 / median, 6)


def _check_same_axes(train: dict, test: dict, paths: dict[str, Path]) -> None:
    """Training and test files must describe the same channels and time axis."""
    src = f"{paths['test']} (compared with {paths['train'].name})"
    if train["ch_names"] != test["ch_names"]:
        only_train = [n for n in train["ch_names"] if n not in test["ch_names"]]
        only_test = [n for n in test["ch_names"] if n not in train["ch_names"]]
        detail = (f"only in training {only_train}, only in test {only_test}"
                  if only_train or only_test else "the same names in a different order")
        raise format_error(src, "ch_names", "identical channel names in both files", detail)
    if len(train["times"]) != len(test["times"]) or not np.allclose(
            train["times"], test["times"], atol=1e-6):
        raise format_error(src, "times", "identical time vectors in both files",
                           f"{_span(train['times'])} vs {_span(test['times'])}")


def _span(times: np.ndarray) -> str:
    return f"{len(times)} samples {times[0]:+.4f}…{times[-1]:+.4f} s"


def detect_variant(n_channels: int, sfreq: float, container: str) -> str:
    """Name the preprocessing variant from channel count, rate and container."""
    if n_channels == 17 and np.isclose(sfreq, 100.0) and container == "np.save":
        return VARIANT_OFFICIAL
    if n_channels == 63 and np.isclose(sfreq, 250.0):
        return VARIANT_NICE
    return f"generic-{n_channels}ch-{sfreq:g}Hz"


def describe_variant(variant: str, n_channels: int, sfreq: float, times: np.ndarray,
                     *, trimmed: int = 0) -> str:
    """One sentence describing the preprocessing, for ``meta['preprocessing']``."""
    span = f"{n_channels} channels, {sfreq:g} Hz, {times[0]:+.3f}…{times[-1]:+.3f} s"
    if variant == VARIANT_OFFICIAL:
        text = f"THINGS-EEG2 official preprocessing (Gifford et al. 2022): {span}, MVNN-whitened"
    elif variant == VARIANT_NICE:
        text = f"NICE/ATM-style THINGS-EEG2 preprocessing: {span}, MVNN-whitened"
    else:
        text = f"THINGS-EEG2-format preprocessing ({variant}): {span}, assumed MVNN-whitened"
    if trimmed:
        text += f"; stored times had {trimmed} extra leading samples (last n kept)"
    return text


def _make_info(ch_names: list[str], sfreq: float, *, source: Path) -> mne.Info:
    """EEG ``mne.Info`` with ``colin27_1005`` sensor positions.

    Raises
    ------
    DataFormatError
        Some channel names are not in the montage (so no positions, no topographies).
    """
    montage = mne.channels.make_standard_montage(MONTAGE)
    known = set(montage.ch_names)
    unknown = [n for n in ch_names if n not in known]
    if unknown:
        raise format_error(source, "ch_names", f"names of the {MONTAGE} montage "
                           "(10-05 system, case-sensitive)", f"unknown names {unknown}")
    info = mne.create_info(ch_names, sfreq, "eeg")
    info.set_montage(montage, verbose=False)
    return info


def _read_images(root: Path, n_train: int, n_test: int, *, require_images: bool) -> dict:
    """Image ids, concepts and paths for both splits from ``image_metadata.npy``.

    Returns
    -------
    dict
        ``train`` and ``test``: keyword arguments for :class:`Split` (``image_ids``,
        ``concepts``, ``image_paths``); ``metadata_path``: str or None.
    """
    path = find_image_metadata(root)
    if path is None:
        tried = [str(p) for p in _metadata_candidates(root)]
        if require_images:
            raise DataFormatError(f"{METADATA_FILE}: file not found; looked for {tried} "
                                  "(pass require_images=False to load signals without "
                                  "images)")
        logger.warning("No %s under %s: using placeholder image ids and no image paths",
                       METADATA_FILE, root)
        return {"train": _placeholder_images("train", n_train, 5),
                "test": _placeholder_images("test", n_test, 3), "metadata_path": None}

    mapping, _ = read_pickled_dict(path)
    require_keys(mapping, METADATA_KEYS, source=path)
    out: dict[str, Any] = {"metadata_path": str(path)}
    for split, n_images in (("train", n_train), ("test", n_test)):
        out[split] = _split_images(mapping, split, n_images, images_root=path.parent,
                                   source=path)
        if require_images:
            _require_files(out[split]["image_paths"], split, source=path)
    return out


def list_images(root: str | os.PathLike) -> tuple[list[str], list[Path]]:
    """Every image of a THINGS-EEG2-style image set: ids and paths, training then test.

    Used to extract image features once per dataset, independently of any subject.

    Raises
    ------
    DataFormatError
        If ``image_metadata.npy`` is missing or lacks a key, or any image file is missing.
    """
    root = Path(root)
    path = find_image_metadata(root)
    if path is None:
        raise DataFormatError(f"{METADATA_FILE}: file not found; looked for "
                              f"{[str(p) for p in _metadata_candidates(root)]}")
    mapping, _ = read_pickled_dict(path)
    require_keys(mapping, METADATA_KEYS, source=path)
    ids: list[str] = []
    paths: list[Path] = []
    for split in ("train", "test"):
        n_images = len(mapping[f"{split}_img_files"])
        images = _split_images(mapping, split, n_images, images_root=path.parent, source=path)
        _require_files(images["image_paths"], split, source=path)
        ids += images["image_ids"]
        paths += images["image_paths"]
    return ids, paths


def _metadata_candidates(root: Path) -> list[Path]:
    return [root / "image_set" / METADATA_FILE, root / METADATA_FILE]


def find_image_metadata(root: Path) -> Path | None:
    """``<root>/image_set/image_metadata.npy`` or ``<root>/image_metadata.npy``, or None."""
    return next((p for p in _metadata_candidates(Path(root)) if p.is_file()), None)


def _placeholder_images(split: str, n_images: int, width: int) -> dict:
    ids = [f"{split}{i:0{width}d}" for i in range(n_images)]
    return {"image_ids": ids, "concepts": ["unknown"] * n_images, "image_paths": None}


def _split_images(mapping: dict, split: str, n_images: int, *, images_root: Path,
                  source: Path) -> dict:
    """Ids (file stems), concepts and paths of one split, checked against ``n_images``."""
    prefix = "train" if split == "train" else "test"
    signal_file = SPLIT_FILES[split]
    lists = {}
    for kind in ("concepts", "files"):
        key = f"{prefix}_img_{kind}"
        lists[kind] = _as_str_list(mapping[key], key=key, source=source)
        if len(lists[kind]) != n_images:
            raise format_error(source, key,
                               f"{n_images} entries (images in {signal_file})",
                               f"{len(lists[kind])} entries")
    folder = images_root / IMAGE_FOLDERS[split]
    paths = [folder / c / f for c, f in zip(lists["concepts"], lists["files"])]
    return {"image_ids": [Path(f).stem for f in lists["files"]],
            "concepts": lists["concepts"], "image_paths": paths}


def _as_str_list(value: Any, *, key: str, source: Path) -> list[str]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise format_error(source, key, "a list of strings", type(value).__name__)
    return [str(v) for v in value]


def _require_files(paths: Sequence[Path], split: str, *, source: Path) -> None:
    """Raise when image files are missing, listing how many and the first few."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing[:N_LISTED])
        more = f" and {len(missing) - N_LISTED} more" if len(missing) > N_LISTED else ""
        raise format_error(source, f"{split}_img_files",
                           f"all {len(paths)} {split} images on disk under "
                           f"{IMAGE_FOLDERS[split]}/<concept>/<file>",
                           f"{len(missing)} missing: {listed}{more} "
                           "(pass require_images=False to load anyway)")


# --------------------------------------------------------------------------------------
# Writing (tests and the built-in simulated dataset)
# --------------------------------------------------------------------------------------


def write_things_eeg2(
    root: str | os.PathLike,
    subject: int,
    *,
    train_signals: np.ndarray,
    test_signals: np.ndarray,
    ch_names: Sequence[str],
    times: np.ndarray,
    variant: str = "official",
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write one subject's preprocessed files exactly as a published variant stores them.

    Parameters
    ----------
    root : path
        Dataset root; files go to ``<root>/preprocessed_data/sub-XX/`` (``'official'``) or
        ``<root>/Preprocessed_data_250Hz/sub-XX/`` (``'nice'``).
    subject : int
        Subject number (1-based).
    train_signals, test_signals : ndarray, shape (n_images, n_reps, n_channels, n_times)
        Epochs (MVNN-whitened in the real data); written with their dtype unchanged.
    ch_names : sequence of str, length n_channels
    times : ndarray, shape (n_times,) or longer for ``'nice'``
        Seconds. The NICE/ATM files may store a longer (uncropped) vector.
    variant : {'official', 'nice'}
        ``'official'``: dict saved with :func:`numpy.save`; ``'nice'``: dict written with
        :func:`pickle.dump` (protocol 4) under the same ``.npy`` names.
    data_dir : path, optional
        Folder to hold ``sub-XX/`` instead of the variant's standard folder under ``root``.
    overwrite : bool
        Replace existing files. Without it an existing file raises ``FileExistsError`` so
        raw data are never clobbered by accident.

    Returns
    -------
    dict
        ``{'train': path, 'test': path}``.

    Notes
    -----
    Each file is written to a temporary name in the target folder and moved into place
    with :func:`os.replace`, so a reader never sees a half-written file.
    """
    if variant not in DATA_FOLDERS:
        raise ValueError(f"variant must be one of {sorted(DATA_FOLDERS)}, got {variant!r}")
    subject = _check_subject(subject)
    base = Path(data_dir) if data_dir is not None else Path(root) / DATA_FOLDERS[variant]
    folder = base / subject_folder_name(subject)
    targets = {split: folder / name for split, name in SPLIT_FILES.items()}
    refuse_existing(targets.values(), overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    dump = _save_npy if variant == "official" else _save_pickle
    for split, signals in (("train", train_signals), ("test", test_signals)):
        content = {"preprocessed_eeg_data": np.asarray(signals),
                   "ch_names": list(ch_names), "times": np.asarray(times)}
        atomic_write(targets[split], lambda fh, c=content: dump(fh, c), overwrite=overwrite)
    return targets


def write_image_metadata(
    images_root: str | os.PathLike,
    train_concepts: Sequence[str],
    train_files: Sequence[str],
    test_concepts: Sequence[str],
    test_files: Sequence[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``<images_root>/image_metadata.npy`` in the official format (np.save of a dict).

    Images themselves belong at ``<images_root>/training_images/<concept>/<file>`` and
    ``<images_root>/test_images/<concept>/<file>``; this function writes only the index.

    Returns
    -------
    Path
        The metadata file.
    """
    for name, concepts, files in (("train", train_concepts, train_files),
                                  ("test", test_concepts, test_files)):
        if len(concepts) != len(files):
            raise ValueError(f"{name}: {len(concepts)} concepts but {len(files)} files")
    target = Path(images_root) / METADATA_FILE
    refuse_existing([target], overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    content = {"train_img_concepts": [str(c) for c in train_concepts],
               "train_img_files": [str(f) for f in train_files],
               "test_img_concepts": [str(c) for c in test_concepts],
               "test_img_files": [str(f) for f in test_files]}
    atomic_write(target, lambda fh: _save_npy(fh, content), overwrite=overwrite)
    return target


def _save_npy(fh, content: dict) -> None:
    # Passing a file object keeps np.save from appending a second ".npy" suffix.
    np.save(fh, content, allow_pickle=True)


def _save_pickle(fh, content: dict) -> None:
    pickle.dump(content, fh, protocol=4)  # what the NICE/ATM preprocessing scripts use

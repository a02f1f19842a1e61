"""The data contract every loader returns: one subject of one dataset.

Every loader (THINGS-EEG2 in both published variants, THINGS-MEG, the built-in simulated
dataset) produces an :class:`EpochedDataset`, so the model and the evaluation code never
see a file format. Construction validates shapes, dtypes and finiteness and raises a
:class:`DataFormatError` that names the file and field, so a bad input fails at the door
rather than deep inside training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import mne
import numpy as np


class DataFormatError(ValueError):
    """A data file does not match the format its loader expects.

    The message always names the file and the field (key) at fault, and what was expected
    versus what was found.
    """


def format_error(source: str | Path, field_name: str, expected: str, found: str) -> DataFormatError:
    """Build the one message style every loader uses: file, field, expected vs found."""
    return DataFormatError(
        f"{source}: field '{field_name}': expected {expected}, found {found}"
    )


def check_signals(
    signals: Any,
    *,
    source: str | Path,
    field_name: str,
    n_channels: int | None = None,
    n_times: int | None = None,
) -> np.ndarray:
    """Validate an epoch array ``[n_images, n_reps, n_channels, n_times]`` and return float32.

    Parameters
    ----------
    signals : array-like
        The candidate array.
    source, field_name : str
        Where it came from, used verbatim in error messages.
    n_channels, n_times : int | None
        Expected sizes of the last two axes, when known (e.g. from ``ch_names``/``times``).

    Raises
    ------
    DataFormatError
        Wrong type, rank, axis size, dtype kind, or any NaN/inf value.
    """
    if not isinstance(signals, np.ndarray):
        raise format_error(source, field_name, "a numpy array", type(signals).__name__)
    if signals.ndim != 4:
        raise format_error(
            source, field_name,
            "rank 4 [n_images, n_reps, n_channels, n_times]",
            f"rank {signals.ndim} with shape {signals.shape}",
        )
    if not np.issubdtype(signals.dtype, np.floating):
        raise format_error(source, field_name, "a floating-point dtype", str(signals.dtype))
    if n_channels is not None and signals.shape[2] != n_channels:
        raise format_error(
            source, field_name,
            f"{n_channels} channels on axis 2 (from the channel names)",
            f"shape {signals.shape}",
        )
    if n_times is not None and signals.shape[3] != n_times:
        raise format_error(
            source, field_name,
            f"{n_times} time samples on axis 3 (from the times vector)",
            f"shape {signals.shape}",
        )
    if min(signals.shape) == 0:
        raise format_error(source, field_name, "no empty axis", f"shape {signals.shape}")
    finite = np.isfinite(signals)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise format_error(
            source, field_name, "only finite values",
            f"{int((~finite).sum())} NaN/inf values, first at index {tuple(int(i) for i in bad)}",
        )
    return signals.astype(np.float32, copy=False)


@dataclass
class Split:
    """One partition (train or test) of a subject's epochs.

    Attributes
    ----------
    signals : ndarray, float32, shape (n_images, n_reps, n_channels, n_times)
        Single-trial epochs, grouped by image. Units are given by ``EpochedDataset.meta``.
    image_ids : list of str
        Stable identifiers, one per image (the image file's stem for THINGS).
    concepts : list of str
        Concept (category) of each image.
    image_paths : list of Path or None
        Pixels on disk, one per image, when the images are available.
    """

    signals: np.ndarray
    image_ids: list[str]
    concepts: list[str]
    image_paths: list[Path] | None = None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.signals = check_signals(self.signals, source=self.source, field_name="signals")
        n_images = self.signals.shape[0]
        for name in ("image_ids", "concepts", "image_paths"):
            value = getattr(self, name)
            if value is not None and len(value) != n_images:
                raise format_error(
                    self.source, name, f"{n_images} entries (one per image on axis 0)",
                    f"{len(value)}",
                )
        self.image_ids = [str(i) for i in self.image_ids]
        self.concepts = [str(c) for c in self.concepts]
        if len(set(self.image_ids)) != n_images:
            raise format_error(self.source, "image_ids", "unique ids", "duplicates")
        if self.image_paths is not None:
            self.image_paths = [Path(p) for p in self.image_paths]

    @property
    def n_images(self) -> int:
        return self.signals.shape[0]

    @property
    def n_reps(self) -> int:
        return self.signals.shape[1]

    def average(self) -> np.ndarray:
        """Mean over repetitions, shape ``(n_images, n_channels, n_times)``; with one
        repetition (THINGS-MEG's training images) a read-only view of the signals, not a
        copy (6.9 GB there)."""
        if self.signals.shape[1] == 1:
            view = self.signals[:, 0]
            view.flags.writeable = False
            return view
        return self.signals.mean(axis=1)

    def take(self, rows: Sequence[int]) -> "Split":
        """The images at ``rows`` (indices along axis 0, in that order), signals copied."""
        rows = [int(i) for i in rows]
        paths = None if self.image_paths is None else [self.image_paths[i] for i in rows]
        return Split(self.signals[rows], [self.image_ids[i] for i in rows],
                     [self.concepts[i] for i in rows], paths, source=self.source)

    def missing_images(self) -> list[Path]:
        """Image paths that do not exist on disk (empty when all are present)."""
        if self.image_paths is None:
            return []
        return [p for p in self.image_paths if not p.is_file()]


@dataclass
class EpochedDataset:
    """One subject of one dataset, in the form every downstream module consumes.

    Attributes
    ----------
    train, test : Split
        Training images (few repetitions) and test images (many repetitions).
    info : mne.Info
        Channel names, types, sampling frequency and (where known) sensor positions.
    times : ndarray, shape (n_times,)
        Epoch time axis in seconds relative to stimulus onset.
    meta : dict
        At least ``dataset``, ``subject``, ``units`` and ``preprocessing``.
    noiseless : dict or None
        For simulated data only: ``{'train': array, 'test': array}``, each
        ``(n_images, n_channels, n_times)``, the responses without trial noise, so the true
        ceiling on any fidelity metric is known exactly.
    """

    train: Split
    test: Split
    info: mne.Info
    times: np.ndarray
    meta: dict = field(default_factory=dict)
    noiseless: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=float)
        n_ch, n_t = len(self.info["ch_names"]), len(self.times)
        for split in (self.train, self.test):
            check_signals(split.signals, source=split.source, field_name="signals",
                          n_channels=n_ch, n_times=n_t)
        for key in ("dataset", "subject", "units", "preprocessing"):
            self.meta.setdefault(key, "unknown")
        if self.noiseless is not None:
            for name, split in (("train", self.train), ("test", self.test)):
                arr = self.noiseless.get(name)
                expected = (split.n_images, n_ch, n_t)
                if arr is None or arr.shape != expected:
                    raise format_error(
                        self.meta.get("noiseless_source", "<noiseless>"), name,
                        f"shape {expected}", "missing" if arr is None else f"shape {arr.shape}",
                    )

    @property
    def ch_names(self) -> list[str]:
        return list(self.info["ch_names"])

    @property
    def sfreq(self) -> float:
        return float(self.info["sfreq"])

    def summary(self) -> str:
        """One line a notebook can print to say exactly what was loaded."""
        return (
            f"{self.meta['dataset']} sub-{self.meta['subject']}: "
            f"train {self.train.signals.shape}, test {self.test.signals.shape} "
            f"(images, reps, channels, times); {self.sfreq:g} Hz, "
            f"{self.times[0]:+.3f}…{self.times[-1]:+.3f} s; units {self.meta['units']}; "
            f"{self.meta['preprocessing']}"
        )


def require_keys(mapping: Any, keys: Sequence[str], *, source: str | Path) -> None:
    """Raise a :class:`DataFormatError` naming the first key missing from a loaded dict."""
    if not isinstance(mapping, dict):
        raise format_error(source, "<file>", "a dict saved with np.save or pickle",
                           type(mapping).__name__)
    for key in keys:
        if key not in mapping:
            raise format_error(source, key, "this key to be present",
                               f"only keys {sorted(map(str, mapping))}")

"""Brain signals for any image from a trained generator, written as MNE epochs.

The Python side of ``python -m analysis generate --checkpoint DIR --images …``::

    from analysis.generator import load_generator

    generator = load_generator("checkpoints/simulated/sub-1/cross_attention-0a1b2c3d4e5f")
    epochs = generator.generate(["cat.jpg", "dog.png"], n_samples=4)   # mne.EpochsArray
    epochs.save("signals-epo.fif")

A checkpoint folder (what :func:`analysis.training.train_or_load` writes) holds the
weights, ``config.json`` (which encoder, with which weights, produced the features the
model was trained on) and ``recording-info.fif`` (the training data's channels, types,
sensor positions and sampling rate). The images are encoded by that same encoder, refused if
its weights differ from those recorded, and the signals come back with the recording's
measurement info and epoch start, one epoch per (image, sample), with ``epochs.metadata``
saying which image, sample, model and sampling settings produced each.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import mne
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .config import EncoderConfig, SamplingConfig
from .data.contract import format_error
from .files import atomic_save, atomic_write
from .training import FINAL, RECIPE_VERSION, RECORDING_INFO, TrainedModel, load_trained, match_features

#: File suffixes read as images when a folder is given (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Data units of the loaders → the factor to SI units, which MNE stores (V, T). Unitless
#: data (THINGS-EEG2's whitened epochs) are written as they are.
TO_SI = {"V": 1.0, "µV": 1e-6, "uV": 1e-6, "T": 1.0, "fT": 1e-15}


def image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from folders (their images, sorted), image files, and list files.

    A list file is a ``.txt`` file with one image path per line (relative paths are taken
    from the list's folder; blank lines and lines starting with ``#`` are skipped).

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or a folder without images.
    """
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{item}: no image files ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif item.suffix.lower() == ".txt" and item.is_file():
            lines = [line.strip() for line in item.read_text().splitlines()]
            paths += [p if p.is_absolute() else item.parent / p
                      for p in map(Path, (l for l in lines if l and not l.startswith("#")))]
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"image, folder or list file not found: {item}")
    for path in paths:
        check_image(path)
    return paths


def check_image(path: Path) -> None:
    """Refuse a file PIL cannot decode, naming it (before any work is done).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DataFormatError
        ``path`` is not a readable image.
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise format_error(path, "pixels", "an image PIL can read",
                           f"{type(error).__name__}: {error}") from None


@dataclass
class Generator:
    """A trained generator with what is needed to turn images into recordings.

    Attributes
    ----------
    trained : TrainedModel
    encoder : EncoderConfig
        The encoder the model was trained on; ``weights_digest`` is what its weights hash to.
    weights_digest : str
    info : mne.Info
        The training data's measurement info.
    tmin : float
        Epoch start relative to image onset (s).
    units : str
        The training data's units (see :data:`TO_SI`).
    source : Path
        The checkpoint folder.
    """

    trained: TrainedModel
    encoder: EncoderConfig
    weights_digest: str
    info: mne.Info
    tmin: float
    units: str
    source: Path

    @classmethod
    def load(cls, checkpoint: str | Path) -> "Generator":
        """Load from a checkpoint folder (or its ``checkpoint.pt``).

        Raises
        ------
        FileNotFoundError
            No finished checkpoint there.
        DataFormatError
            The checkpoint was written by another version of image2brain (it lacks what this
            version records), naming the file.
        """
        folder = Path(checkpoint)
        folder = folder.parent if folder.is_file() else folder
        final = folder / FINAL
        if not final.is_file():
            partial = " (training is unfinished: partial.pt)" if (folder / "partial.pt").is_file() else ""
            raise FileNotFoundError(f"{final}: no finished checkpoint{partial}")
        trained = load_trained(final)
        recorded = trained.info.get("recipe_version")
        info_file = folder / RECORDING_INFO
        if recorded != RECIPE_VERSION or not info_file.is_file():
            raise format_error(final, "info.recipe_version",
                               f"a checkpoint of recipe {RECIPE_VERSION} with {RECORDING_INFO} "
                               "beside it (retrain it with this version)",
                               f"recipe {recorded}" + ("" if info_file.is_file()
                                                       else f", no {RECORDING_INFO}"))
        config = json.loads((folder / "config.json").read_text())
        enc = config["encoder"]
        encoder = EncoderConfig(family=enc["family"], model=enc["model"],
                                pretrained=enc["pretrained"], stages=enc.get("stages"),
                                grid=enc.get("grid"))
        return cls(trained, encoder, enc["weights_digest"], mne.io.read_info(info_file, verbose=False),
                   float(trained.info["tmin"]), str(trained.info["units"]), folder)

    def encode(self, paths: Sequence[Path], *, device: str | None = None,
               cache_dir: str | Path | None = None, progress: bool = False):
        """Features of ``paths`` by the encoder the model was trained on.

        Raises
        ------
        ValueError
            The encoder's weights here differ from those the model was trained with.
        """
        from .pipeline import image_encoder_for

        encoder = image_encoder_for(self.encoder, device)
        if encoder.weights_digest != self.weights_digest:
            raise ValueError(f"{self.source}: trained on {self.encoder.model} weights with "
                             f"digest {self.weights_digest[:12]}…, but these weights hash to "
                             f"{encoder.weights_digest[:12]}… (pretrained={self.encoder.pretrained!r})")
        ids = [f"{i:06d}" for i in range(len(paths))]  # stems need not be unique
        return encoder.encode(paths, ids, cache_dir=cache_dir, progress=progress)

    def generate(self, images: Sequence[str | Path], *, n_samples: int = 4,
                 sampling: SamplingConfig | None = None, device: str | None = None,
                 cache_dir: str | Path | None = None, progress: bool = False) -> mne.EpochsArray:
        """Signals for ``images`` (files, folders or list files; see :func:`image_paths`).

        Parameters
        ----------
        n_samples : int
            Signals per image (draws from p(x | image)).
        sampling : SamplingConfig, optional
            Sampler, steps, η, guidance and seed (``n_samples`` here wins); default
            :class:`~analysis.config.SamplingConfig`'s.

        Returns
        -------
        mne.EpochsArray
            ``n_images × n_samples`` epochs, image by image, in SI units where the training
            data had physical units; ``metadata`` columns ``image_path``, ``sample``,
            ``model``, ``checkpoint``, ``encoder`` and the sampling settings.
        """
        sampling = SamplingConfig(**{**asdict(sampling or SamplingConfig()), "n_samples": n_samples})
        paths = image_paths(images)
        features = self.encode(paths, device=device, cache_dir=cache_dir, progress=progress)
        signals = self.trained.generate(
            match_features(features, features.image_ids), n_samples=sampling.n_samples,
            method=sampling.method, steps=sampling.steps, eta=sampling.eta,
            guidance_scale=sampling.guidance_scale, seed=sampling.seed, device=device,
            progress=progress)
        n_images, n, n_channels, n_times = signals.shape
        data = signals.reshape(n_images * n, n_channels, n_times).astype(np.float64)
        data *= TO_SI.get(self.units, 1.0)
        metadata = pd.DataFrame({
            "image_path": np.repeat([str(p) for p in paths], n),
            "sample": np.tile(np.arange(n), n_images),
            "model": self.trained.conditioning, "checkpoint": str(self.source),
            "encoder": f"{self.encoder.model} ({self.weights_digest[:12]})",
            **{f"sampling_{k}": v for k, v in asdict(sampling).items() if k != "n_samples"}})
        events = np.column_stack([np.arange(len(data)), np.zeros(len(data), int),
                                  np.repeat(np.arange(1, n_images + 1), n)])
        info = self.info.copy()
        info["description"] = (f"image2brain {self.trained.conditioning} generator "
                               f"({self.source.name}); units of the training data: {self.units}")
        return mne.EpochsArray(data, info, events=events, tmin=self.tmin, metadata=metadata,
                               baseline=None, verbose=False)


def load_generator(checkpoint: str | Path) -> Generator:
    """:meth:`Generator.load`."""
    return Generator.load(checkpoint)


def write_epochs(epochs: mne.EpochsArray, out: str | Path, *, npz: bool = False,
                 overwrite: bool = False) -> list[Path]:
    """Save ``epochs`` to ``out`` (``…-epo.fif``), and ``out`` with ``.npz`` when asked.

    Each file is written to a temporary name and renamed, so an interrupted write never
    replaces an existing file with a partial one.

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out)
    if not out.name.endswith(("-epo.fif", "_epo.fif")):
        raise ValueError(f"{out}: MNE epochs files end in -epo.fif")
    written = [out]
    atomic_save(out, lambda path: epochs.save(path, verbose=False), overwrite=overwrite)
    if npz:
        arrays = out.with_name(out.name[: -len("-epo.fif")] + ".npz")
        atomic_write(arrays, lambda fh: np.savez(
            fh, signals=epochs.get_data(copy=True).astype(np.float32),
            ch_names=np.array(epochs.ch_names), sfreq=epochs.info["sfreq"], tmin=epochs.tmin,
            image_path=epochs.metadata["image_path"].to_numpy(),
            sample=epochs.metadata["sample"].to_numpy()), overwrite=overwrite)
        written.append(arrays)
    return written


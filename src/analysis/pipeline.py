"""The steps a notebook or the CLI chains together, each one call.

load a subject → features of its images (cached) → train or load a generator → generate
the test set (saved next to the checkpoint). Every step records what it used.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .config import DATASETS, EncoderConfig, Profile, SamplingConfig
from .data.contract import EpochedDataset
from .encoders import FeatureEncoder, ImageFeatures, build_encoder, feature_index
from .files import atomic_write, atomic_write_text
from .training import TrainConfig, TrainedModel, match_features, model_config_for, train_or_load

logger = logging.getLogger(__name__)


def load_dataset(name: str, root: str | Path, subject: int) -> EpochedDataset:
    """Load one subject of a dataset by name (see :data:`DATASETS`)."""
    from .data.simulated import load_simulated
    from .data.things_eeg2 import load_things_eeg2
    from .data.things_meg import load_things_meg

    loaders = {"simulated": load_simulated, "things-eeg2": load_things_eeg2,
               # THINGS-MEG's metadata names image files relative to the dataset root.
               "things-meg": functools.partial(load_things_meg, images_root=root)}
    if name not in loaders:
        raise ValueError(f"dataset must be one of {DATASETS}, got '{name}'")
    return loaders[name](Path(root), subject)


def dataset_images(dataset: EpochedDataset) -> tuple[list, list[str]]:
    """Paths and ids of all training and test images of ``dataset``, in that order.

    Raises
    ------
    ValueError
        If the dataset has no image paths (images are needed to condition on).
    """
    paths, ids = [], []
    for split in (dataset.train, dataset.test):
        if split.image_paths is None:
            raise ValueError(f"{dataset.meta['dataset']} sub-{dataset.meta['subject']}: no image "
                             "paths; the images are needed to compute features")
        paths += split.image_paths
        ids += split.image_ids
    return paths, ids


def dataset_features(dataset: EpochedDataset, encoder: EncoderConfig, cache_dir: str | Path,
                     *, device: str | None = None, progress: bool = True) -> ImageFeatures:
    """Image features of all training and test images of ``dataset`` (cached on disk;
    :func:`image_features` of :func:`dataset_images`)."""
    return image_features(*dataset_images(dataset), encoder, cache_dir, device=device,
                          progress=progress)


def image_features(paths: list, ids: list[str], encoder: EncoderConfig, cache_dir: str | Path,
                   *, device: str | None = None, progress: bool = True) -> ImageFeatures:
    """Image features of these images, cached on disk under ``cache_dir`` (keyed by the
    encoder, its weights and the images; found through the feature index without building
    the encoder)."""
    # Known from the index (analysis.encoders.feature_index): no encoder built.
    hashes = feature_index.image_hashes(paths)
    known = feature_index.lookup(encoder, paths, ids, cache_dir, hashes)
    if known is not None:
        return known
    image_encoder = image_encoder_for(encoder, device)
    features = image_encoder.encode(paths, ids, cache_dir=Path(cache_dir), progress=progress)
    key = features.meta["cache_key"]
    feature_index.remember(encoder, ids, hashes, cache_dir,
                           image_encoder.cache_path(cache_dir, key), key)
    return features


@functools.lru_cache(maxsize=2)
def image_encoder_for(encoder: EncoderConfig, device: str | None = None) -> FeatureEncoder:
    """One encoder (:func:`~analysis.encoders.build_encoder`) per (config, device) in a process.

    Building an encoder takes seconds (and computes its weights digest, the cache key), and
    a random-init one warns each time it is built; a notebook asks for features many times.
    A weights file changed on disk is picked up by the next process, not this one.
    """
    return build_encoder(encoder, device)


def train_generator(dataset: EpochedDataset, features: ImageFeatures, conditioning: str,
                    profile: Profile, checkpoint_root: str | Path, *, device: str | None = None,
                    progress: bool = True, monitor=None, **train_overrides) -> TrainedModel:
    """Train (or load) the profile's generator with the given conditioning.

    ``monitor`` (see :func:`~analysis.training.train_or_load`) scores the weights about 12
    times over the run: the learning curve.
    """
    model_config = model_config_for(dataset, features, conditioning, **profile.unet)
    train_config = TrainConfig(**{**profile.train, **train_overrides})
    return train_or_load(dataset, features, model_config, train_config, checkpoint_root,
                         device=device, progress=progress, monitor=monitor,
                         monitor_every=max(1, train_config.epochs // 12))


def generate_test_set(trained: TrainedModel, dataset: EpochedDataset, features: ImageFeatures,
                      sampling: SamplingConfig, *, device: str | None = None,
                      progress: bool = True, save: bool = True, images: str = "") -> np.ndarray:
    """Generate signals for every test image; optionally save them next to the checkpoint,
    named by :func:`generated_name` (``images`` tells which image set, ``''`` the test set).

    Returns
    -------
    ndarray, float32, shape (n_test_images, n_samples, n_channels, n_times)
    """
    cond = match_features(features, dataset.test.image_ids)
    start = time.perf_counter()
    signals = trained.generate(cond, n_samples=sampling.n_samples, method=sampling.method,
                               steps=sampling.steps, eta=sampling.eta,
                               guidance_scale=sampling.guidance_scale,
                               seed=sampling.seed, device=device, progress=progress)
    seconds = time.perf_counter() - start
    if save:
        name = generated_name(sampling, images)
        folder = trained.path.parent
        atomic_write(folder / f"{name}.npz", lambda fh: np.savez(
            fh, signals=signals, image_ids=np.array(dataset.test.image_ids)), overwrite=True)
        record = {"sampling": asdict(sampling), "seconds": round(seconds, 3),
                  "signals_per_s": round(signals.shape[0] * signals.shape[1] / seconds, 3),
                  "checkpoint": str(trained.path), "encoder": {
                      k: features.meta.get(k) for k in ("family", "model", "pretrained", "random_init",
                                                     "label")}}
        atomic_write_text(folder / f"{name}.json", json.dumps(record, indent=2))
    return signals


def generated_name(sampling: SamplingConfig, images: str = "") -> str:
    """File stem for a set of generated signals, e.g. ``generated-ddim50-w1-n4-s0``
    (``ddim50-eta1`` for stochastic DDIM, ``dpmpp20`` for DPM-Solver++, ``ddpmall``), and
    ``-<images>`` for an image set other than the test set (e.g. ``-validation``: one
    checkpoint generates for both, and neither file may replace the other)."""
    steps = "all" if sampling.method == "ddpm" else sampling.steps
    eta = f"-eta{sampling.eta:g}" if sampling.method == "ddim" and sampling.eta else ""
    return (f"generated-{sampling.method}{steps}{eta}-w{sampling.guidance_scale:g}"
            f"-n{sampling.n_samples}-s{sampling.seed}{image_set_suffix(images)}")


def image_set_suffix(images: str) -> str:
    """What names a file saved beside a checkpoint for an image set other than the test
    set (``images``, e.g. ``'validation'``): ``'-validation'``; ``''`` for the test set."""
    return f"-{images}" if images else ""


def with_sampling(profile: Profile, **changes) -> SamplingConfig:
    return replace(profile.sampling, **changes)


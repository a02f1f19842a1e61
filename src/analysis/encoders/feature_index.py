"""Which cached features an encoder configuration made, known without building the encoder.

The feature cache (:meth:`FeatureEncoder.encode`) is keyed by a digest of the network's
weights, so finding a cached file means building the encoder: importing open_clip or timm,
constructing the network and digesting it, seconds in every notebook kernel although the
features are on disk. This index records, beside the cache, what fixes those weights without
building anything (the :class:`~analysis.config.EncoderConfig`, the versions of the packages
that construct the network, this package's encoder code and configs, and a weights file's
size and modification time) together with the image files' contents, and names the features
file they made. A lookup that finds no entry, or an entry whose file is gone or does not
match, builds the encoder as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from ..files import atomic_write_text
from .base import ImageFeatures, sha256_file

logger = logging.getLogger(__name__)

#: Subfolder of the feature cache that holds the index entries (one small JSON each).
INDEX_DIR = "index"
#: Distributions whose version can change the weights or outputs an encoder config gives.
ENCODER_PACKAGES = ("torch", "open_clip_torch", "timm", "efficientnet-lite-pytorch", "pillow")
_CODE = Path(__file__).parent  # analysis/encoders: the back-ends and their preprocessing
_CONFIGS = _CODE.parent / "encoder_configs"  # the tiny ViT's architecture


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _code_digest() -> str:
    """sha256 over the encoder back-ends' source and configs: any change misses the index."""
    digest = hashlib.sha256()
    for path in sorted([*_CODE.glob("*.py"), *_CONFIGS.glob("*")]):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _weights_stamp(pretrained: str | None) -> object:
    """A weights file's (or folder's files') size and modification time; None for a tag."""
    if not pretrained:
        return None
    path = Path(str(pretrained).removeprefix("local-dir:"))
    if path.is_file():
        return [path.name, path.stat().st_size, path.stat().st_mtime_ns]
    if path.is_dir():
        return sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns]
                      for p in path.rglob("*") if p.is_file())
    return None


def index_key(config, image_ids: Sequence[str], file_sha256: Sequence[str]) -> str:
    """sha256 hex of everything that decides the features of these images under ``config``
    (an :class:`~analysis.config.EncoderConfig`; its ``batch_size`` does not)."""
    content = {"config": {k: v for k, v in asdict(config).items() if k != "batch_size"},
               "weights_file": _weights_stamp(config.pretrained),
               "versions": {d: _version(d) for d in ENCODER_PACKAGES},
               "code": _code_digest(),
               "images": [[str(i), str(h)] for i, h in zip(image_ids, file_sha256, strict=True)]}
    blob = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _entry(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / INDEX_DIR / f"{key[:32]}.json"


def read_features(path: Path, ids: Sequence[str], cache_key: str) -> ImageFeatures:
    """Cached features from ``path``, checked against the ids and cache key expected.

    Raises
    ------
    ValueError
        The file's cache key, image ids or array shapes differ from what is expected.
    """
    with np.load(path, allow_pickle=False) as z:  # a cache file is data, never code
        meta = json.loads(str(z["meta"][()]))
        cached_ids = [str(i) for i in z["image_ids"]]
        pooled, tokens = np.array(z["pooled"]), np.array(z["tokens"])
    problems = []
    if meta.get("cache_key") != cache_key:
        problems.append("cache_key differs")
    if cached_ids != list(ids):
        problems.append("image_ids differ")
    if pooled.dtype != np.float32 or pooled.shape != (len(ids), meta.get("embed_dim")):
        problems.append(f"pooled is {pooled.dtype}{pooled.shape}")
    if tokens.dtype != np.float16 or tokens.shape != (len(ids), meta.get("n_tokens"),
                                                      meta.get("token_dim")):
        problems.append(f"tokens is {tokens.dtype}{tokens.shape}")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    meta["cache_hit"] = True
    return ImageFeatures(cached_ids, pooled, tokens, meta)


def image_hashes(paths: Sequence[Path]) -> list[str]:
    """sha256 of each image file's bytes (what the feature cache keys follow)."""
    return [sha256_file(Path(p)) for p in paths]


def lookup(config, paths: Sequence[Path], ids: Sequence[str], cache_dir: str | Path,
           hashes: Sequence[str] | None = None) -> ImageFeatures | None:
    """The cached features ``config`` made for these images, or None (nothing recorded, or
    the recorded file is gone or inconsistent: then the encoder must be built)."""
    hashes = image_hashes(paths) if hashes is None else hashes
    entry = _entry(cache_dir, index_key(config, ids, hashes))
    if not entry.is_file():
        return None
    try:
        record = json.loads(entry.read_text())
        features = read_features(Path(cache_dir) / record["features_file"], ids,
                                 record["cache_key"])
    except (OSError, ValueError, KeyError) as error:
        logger.info("feature index entry %s not usable (%s); building the encoder", entry, error)
        return None
    logger.info("image features: %s (indexed, encoder not built)", record["features_file"])
    return features


def remember(config, ids: Sequence[str], hashes: Sequence[str], cache_dir: str | Path,
             features_file: Path, cache_key: str) -> Path | None:
    """Record that ``config`` made ``features_file`` (in ``cache_dir``, with ``cache_key``)
    for these images (an atomic write); a file that is not there is not recorded."""
    if not Path(features_file).is_file():
        return None
    entry = _entry(cache_dir, index_key(config, ids, hashes))
    entry.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(entry, json.dumps({"features_file": Path(features_file).name,
                                         "cache_key": cache_key}) + "\n")
    return entry

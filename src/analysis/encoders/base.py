"""What every image encoder shares: the feature container, the on-disk cache, the batch loop.

A back-end (:mod:`~analysis.encoders.clip`, :mod:`~analysis.encoders.cnn`) builds a network
and implements :meth:`FeatureEncoder._forward_batch`; this module turns that into
``encode(paths) -> ImageFeatures`` with ids checks, a progress bar and a cache.

Cache
-----
``encode(..., cache_dir=...)`` keys a ``.npz`` file by the back-end's feature format, the
model name, the sha256 of the weights, the preprocessing and the list of
``(image_id, sha256(file bytes))``, so renaming, editing or reordering an image, or changing
weights, never returns stale features. Writes are atomic; an unreadable or inconsistent
cache file is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from analysis.files import atomic_write

logger = logging.getLogger("analysis.encoders")


class RandomInitWarning(UserWarning):
    """The image encoder runs with random weights (no pretrained weights were loaded)."""


@dataclass
class ImageFeatures:
    """Features of a list of images, in the order of ``image_ids``.

    Attributes
    ----------
    image_ids : list of str
        Stable identifiers, one per image.
    pooled : np.ndarray, float32, shape (n_images, embed_dim)
        One vector per image: what ``concat`` conditioning and the ridge baseline read.
    tokens : np.ndarray, float16, shape (n_images, n_tokens, token_dim)
        A sequence per image (patch tokens, or spatial positions of CNN stage maps): what
        cross-attention attends to.
    meta : dict
        Provenance: family, model, pretrained, weights_digest, random_init, label, device,
        n_images, cache_key, cache_hit, image_size, embed_dim, n_tokens, token_dim, ...
    """

    image_ids: list[str]
    pooled: np.ndarray
    tokens: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        if self.pooled.ndim != 2 or self.pooled.shape[0] != n:
            raise ValueError(f"pooled must have shape (n_images={n}, embed_dim), got {self.pooled.shape}")
        if self.tokens.ndim != 3 or self.tokens.shape[0] != n:
            raise ValueError(
                f"tokens must have shape (n_images={n}, n_tokens, token_dim), got {self.tokens.shape}"
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def label(self) -> str:
        """What produced these features, in words (printed on every page)."""
        return str(self.meta.get("label", self.meta.get("model", "unknown encoder")))


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_dict_digest(module: torch.nn.Module) -> str:
    """sha256 over (name, dtype, shape, bytes) of every state-dict tensor, in sorted order.

    Independent of the device and of how the weights were obtained, so a model loaded from a
    checkpoint has the same digest as the model that wrote it.
    """
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|{tensor.numel()}\n".encode())
        # A byte view works for every dtype (bfloat16 has no numpy equivalent) without a copy.
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _default_ids(paths: Sequence[Path]) -> list[str]:
    ids = [p.stem for p in paths]
    if len(set(ids)) != len(ids):
        raise ValueError(
            "image file names (stems) are not unique, so they cannot serve as image_ids; "
            "pass image_ids explicitly"
        )
    return ids


def _check_ids(ids: list[str], n: int) -> None:
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} image_ids for {n} images")
    if len(set(ids)) != n:
        dups = sorted(i for i, c in Counter(ids).items() if c > 1)
        raise ValueError(f"image_ids must be unique; duplicated: {dups[:10]}")


# --------------------------------------------------------------------------------------
# the shared encoder
# --------------------------------------------------------------------------------------

class FeatureEncoder:
    """Base of the image encoders: ``encode`` files (cached) or ``encode_images`` in memory.

    A subclass sets, in its ``__init__``: ``family``, ``model_name``, ``pretrained``,
    ``weights_source``, ``random_init``, ``seed``, ``batch_size``, ``device``, ``image_size``
    (H, W), ``embed_dim``, ``n_tokens``, ``token_dim``, ``preprocess_cfg`` (JSON-able),
    ``_network`` (the module whose weights are digested) and ``_preprocess`` (PIL image →
    tensor (3, H, W)); and implements :meth:`_forward_batch` and :attr:`label`.
    """

    family: str = ""
    #: Part of every cache key: a back-end bumps it whenever what pooled/tokens mean changes.
    feature_format: str = ""

    model_name: str
    pretrained: str | None
    weights_source: str
    random_init: bool
    seed: int
    batch_size: int
    device: torch.device
    image_size: tuple[int, int]
    embed_dim: int
    n_tokens: int
    token_dim: int
    preprocess_cfg: dict
    _network: torch.nn.Module
    _preprocess: Callable[[Image.Image], torch.Tensor]
    _weights_digest: str | None = None

    # ------------------------------------------------------------------ to implement
    @property
    def label(self) -> str:
        """The encoder and its weights in words, e.g. for a page's header."""
        raise NotImplementedError

    def _forward_batch(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float → pooled (B, embed_dim) float32, tokens (B, n_tokens, token_dim) float16."""
        raise NotImplementedError

    def _extra_meta(self) -> dict:
        """Back-end specific provenance added to every :class:`ImageFeatures`' meta."""
        return {}

    # ------------------------------------------------------------------ properties
    @property
    def weights_digest(self) -> str:
        """sha256 of the network's full state dict (computed once, on first use)."""
        if self._weights_digest is None:
            t0 = time.perf_counter()
            self._weights_digest = state_dict_digest(self._network)
            logger.debug("weights digest in %.2f s", time.perf_counter() - t0)
        return self._weights_digest

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model_name!r}, pretrained={self.pretrained!r}, "
                f"device={str(self.device)!r}, random_init={self.random_init})")

    # ------------------------------------------------------------------ public API
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model's eval transform: a PIL image → float tensor (3, H, W)."""
        return self._preprocess(image.convert("RGB"))

    def cache_key(self, image_ids: Sequence[str], file_sha256: Sequence[str]) -> str:
        """sha256 hex identifying (format, model, weights, preprocessing, images).

        Parameters
        ----------
        image_ids : sequence of str, length n_images
        file_sha256 : sequence of str, length n_images
            sha256 hex of each image file's bytes.
        """
        payload = {
            "format": self.feature_format,
            "model": self.model_name,
            "weights_digest": self.weights_digest,
            "image_size": list(self.image_size),
            "preprocess": self.preprocess_cfg,
            "images": [[str(i), str(h)] for i, h in zip(image_ids, file_sha256, strict=True)],
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def cache_path(self, cache_dir: str | os.PathLike, key: str) -> Path:
        """Where features with cache ``key`` live inside ``cache_dir``."""
        return Path(cache_dir) / f"features-{_safe_name(self.model_name)}-{key[:16]}.npz"

    def encode(
        self,
        image_paths: Sequence[str | os.PathLike],
        image_ids: Sequence[str] | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> ImageFeatures:
        """Encode image files, optionally through the on-disk cache.

        Parameters
        ----------
        image_paths : sequence of path-like, length n_images
            Image files (anything PIL reads); converted to RGB and preprocessed with the
            model's eval transform.
        image_ids : sequence of str, optional
            Stable ids, same length; default: the file stems (which must then be unique).
        cache_dir : path-like, optional
            If given, features are read from / written to
            ``<cache_dir>/features-<model>-<key[:16]>.npz``.
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        ImageFeatures
            ``pooled`` (n_images, embed_dim) float32, ``tokens`` (n_images, n_tokens,
            token_dim) float16; ``meta['cache_hit']`` tells whether the model ran.

        Raises
        ------
        FileNotFoundError
            An image file does not exist (the message names it).
        """
        paths = [Path(p) for p in image_paths]
        if not paths:
            raise ValueError("no images to encode")
        ids = _default_ids(paths) if image_ids is None else [str(i) for i in image_ids]
        _check_ids(ids, len(paths))
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"image file not found: {p}")

        # Hashing file bytes (not names or mtimes) makes the key follow the content.
        key = self.cache_key(ids, [sha256_file(p) for p in paths])
        target = self.cache_path(cache_dir, key) if cache_dir is not None else None
        if target is not None and target.exists():
            try:
                features = self._load_cache(target, key, ids)
            except Exception as exc:  # noqa: BLE001 - any unreadable cache must be recomputed
                logger.warning("feature cache %s is unreadable or inconsistent (%s: %s); recomputing",
                               target, type(exc).__name__, exc)
            else:
                logger.info("image features: cache hit %s", target)
                return features

        def load(i: int) -> Image.Image:
            with Image.open(paths[i]) as im:
                return im.convert("RGB")

        features = self._run(load, ids, progress=progress, cache_key=key)
        if target is not None:
            self._save_cache(target, features)
        return features

    def encode_images(
        self,
        images: Sequence[Image.Image],
        image_ids: Sequence[str] | None = None,
        *,
        progress: bool = False,
    ) -> ImageFeatures:
        """Encode in-memory PIL images (no cache).

        Parameters
        ----------
        images : sequence of PIL.Image.Image, length n_images
        image_ids : sequence of str, optional
            Default ``'000000'``, ``'000001'``, ...

        Returns
        -------
        ImageFeatures
            As :meth:`encode`, with ``meta['cache_key'] = None``.
        """
        if len(images) == 0:
            raise ValueError("no images to encode")
        ids = [f"{i:06d}" for i in range(len(images))] if image_ids is None else [str(i) for i in image_ids]
        _check_ids(ids, len(images))
        return self._run(lambda i: images[i].convert("RGB"), ids, progress=progress, cache_key=None)

    # ------------------------------------------------------------------ internals
    def _run(self, load: Callable[[int], Image.Image], ids: list[str], *, progress: bool,
             cache_key: str | None) -> ImageFeatures:
        n = len(ids)
        # Preallocate: concatenating per-batch arrays would briefly double peak memory, which
        # matters for tens of thousands of images × hundreds of tokens.
        pooled = np.empty((n, self.embed_dim), dtype=np.float32)
        tokens = np.empty((n, self.n_tokens, self.token_dim), dtype=np.float16)
        t0 = time.perf_counter()
        with torch.inference_mode(), tqdm(total=n, unit="img", desc=self.model_name,
                                          disable=not progress) as bar:
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                batch = torch.stack([self.preprocess(load(i)) for i in range(start, stop)])
                pooled[start:stop], tokens[start:stop] = self._forward_batch(
                    batch.to(self.device, non_blocking=True))
                bar.update(stop - start)
        seconds = time.perf_counter() - t0
        logger.info("encoded %d images with %s in %.2f s (%.1f img/s)", n, self.model_name,
                    seconds, n / max(seconds, 1e-9))
        return ImageFeatures(list(ids), pooled, tokens, self._meta(n, cache_key))

    def _meta(self, n_images: int, cache_key: str | None) -> dict:
        return {
            "family": self.family,
            "model": self.model_name,
            "pretrained": self.pretrained,
            "weights_source": self.weights_source,
            "weights_digest": self.weights_digest,
            "random_init": self.random_init,
            "label": self.label,
            "seed": self.seed,
            "torch_version": torch.__version__,
            "device": str(self.device),
            "n_images": int(n_images),
            "cache_key": cache_key,
            "cache_hit": False,
            "image_size": list(self.image_size),
            "embed_dim": self.embed_dim,
            "n_tokens": self.n_tokens,
            "token_dim": self.token_dim,
            "feature_format": self.feature_format,
            **self._extra_meta(),
        }

    def _load_cache(self, path: Path, key: str, ids: list[str]) -> ImageFeatures:
        # allow_pickle=False: a cache file is data, never code.
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            cached_ids = [str(i) for i in z["image_ids"]]
            pooled = np.array(z["pooled"])
            tokens = np.array(z["tokens"])
        n = len(ids)
        problems = []
        if meta.get("cache_key") != key:
            problems.append("cache_key differs")
        if cached_ids != ids:
            problems.append("image_ids differ")
        if pooled.dtype != np.float32 or pooled.shape != (n, self.embed_dim):
            problems.append(f"pooled is {pooled.dtype}{pooled.shape}")
        if tokens.dtype != np.float16 or tokens.shape != (n, self.n_tokens, self.token_dim):
            problems.append(f"tokens is {tokens.dtype}{tokens.shape}")
        if problems:
            raise ValueError("; ".join(problems))
        meta["cache_hit"] = True
        meta["label"] = self.label  # the cache key matched: these weights made the features
        return ImageFeatures(cached_ids, pooled, tokens, meta)

    @staticmethod
    def _save_cache(path: Path, features: ImageFeatures) -> None:
        """Write atomically. A cache folder that cannot be created or written to is a
        warning, not an error (the features in memory are still good); a write that fails
        part-way (e.g. a full disk) raises, leaving no temporary file."""
        def write(fh) -> None:
            np.savez(fh, pooled=features.pooled, tokens=features.tokens,
                     image_ids=np.array(features.image_ids, dtype=str),
                     meta=np.array(json.dumps(features.meta)))

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(path.parent, os.W_OK):
                raise PermissionError(f"{path.parent} is not writable")
        except OSError as exc:
            logger.warning("could not write feature cache %s (%s); continuing without it", path, exc)
            return
        atomic_write(path, write, overwrite=True)
        logger.info("image features cached at %s", path)


# --------------------------------------------------------------------------------------
# benchmark
# --------------------------------------------------------------------------------------

def benchmark_features(encoder: FeatureEncoder, n_images: int = 64, *, repeats: int = 3) -> dict:
    """Time feature extraction (preprocessing + forward) on procedurally generated images.

    Uniform-noise RGB images at the model's input size are encoded in memory. One untimed
    warm-up batch comes first (allocator, kernel selection), then ``repeats`` timed passes
    over all ``n_images``; the median pass is reported because on a shared 2-core machine
    single passes vary several-fold.

    Returns
    -------
    dict
        ``family``, ``model``, ``pretrained``, ``device``, ``n_images``, ``batch_size``,
        ``seconds`` (median pass), ``seconds_min``, ``repeats``, ``images_per_s`` (from the
        median), ``random_init``, ``torch_threads``.
    """
    if n_images < 1 or repeats < 1:
        raise ValueError(f"n_images and repeats must be >= 1, got {n_images}, {repeats}")
    rng = np.random.default_rng(0)
    h, w = encoder.image_size
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n_images)]

    def sync() -> None:
        if encoder.device.type == "cuda":
            torch.cuda.synchronize(encoder.device)

    encoder.encode_images(images[: min(encoder.batch_size, n_images)])
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encoder.encode_images(images)
        sync()
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    return {
        "family": encoder.family,
        "model": encoder.model_name,
        "pretrained": encoder.pretrained,
        "device": str(encoder.device),
        "n_images": int(n_images),
        "batch_size": int(encoder.batch_size),
        "seconds": round(seconds, 4),
        "seconds_min": round(min(times), 4),
        "repeats": int(repeats),
        "images_per_s": round(n_images / seconds, 2),
        "random_init": encoder.random_init,
        "torch_threads": torch.get_num_threads(),
    }

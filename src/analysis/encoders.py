"""CLIP image features via open_clip, with an on-disk feature cache.

The denoiser is conditioned on two things computed here for every stimulus image:

* ``pooled`` — the CLIP image embedding (after the visual projection), shape
  ``(n_images, embed_dim)``, used by the ``concat`` conditioning and the ridge baseline;
* ``tokens`` — the visual token sequence that cross-attention attends to, shape
  ``(n_images, n_tokens, token_dim)``. With open_clip's ``VisionTransformer`` and
  ``output_tokens=True`` these are the *patch* tokens after ``ln_post`` (the class token is
  excluded and they are *not* projected), so ``n_tokens = (image_size / patch_size) ** 2``
  and ``token_dim`` is the tower width (49 × 768 for ViT-B-32, 256 × 1024 for ViT-L-14).

Weights
-------
``pretrained`` is ``None`` (random init — the only option offline here; deterministic given
``seed`` and reported loudly), an open_clip tag such as ``'openai'`` (needs the Hugging Face
hub or the tag's URL), a local checkpoint file, ``'local-dir:/dir'`` (a folder with
``open_clip_config.json`` + ``open_clip_model.safetensors``) or ``'hf-hub:org/repo'``.

The CI encoder
--------------
``encoder_configs/i2b-tiny-vit.json`` registers ``'i2b-tiny-vit'`` with open_clip at import:
a deliberately tiny ViT (embed_dim 64, 224 px, patch 32, width 64, 2 layers, 2 heads; a
one-layer text tower that is never used). It exists only so the test suite and nbmake runs
finish in seconds; its random features carry no semantics and it has no pretrained weights.

Cache
-----
``ImageEncoder.encode(..., cache_dir=...)`` keys a ``.npz`` file by the model name, the
sha256 of the weights, the preprocessing and the list of ``(image_id, sha256(file bytes))``,
so renaming, editing or reordering an image, or changing weights, never returns stale
features. Writes are atomic; an unreadable or inconsistent cache file is recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import open_clip
import torch
from open_clip.transformer import VisionTransformer
from PIL import Image
from tqdm import tqdm

from analysis.devices import select_device
from analysis.files import atomic_write

logger = logging.getLogger(__name__)

_CONFIG_DIR = Path(__file__).with_name("encoder_configs")
# open_clip only knows architectures from JSON files; registering at import means every
# caller (tests, notebooks, CLI) can say ``ImageEncoder('i2b-tiny-vit')``.
for _config_file in sorted(_CONFIG_DIR.glob("*.json")):
    if _config_file.stem not in open_clip.list_models():
        open_clip.add_model_config(_config_file)

#: Suffixes open_clip can read as a full CLIP checkpoint (besides big_vision ``.npz``).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

# Part of every cache key: bump it whenever what ``pooled``/``tokens`` mean changes, so old
# cache files are never mistaken for the new definition.
_FEATURE_FORMAT = "i2b-features-v1:pooled=visual-proj;tokens=ln_post-patch-tokens-no-cls"

_RANDOM_INIT_MESSAGE = (
    "CLIP weights: random init (no pretrained weights loaded) for model '{model}' "
    "(seed {seed}). Image features are NOT semantic CLIP features; every result that depends "
    "on them reflects a random projection of the pixels. Pass pretrained=<tag | checkpoint "
    "path | local-dir:/dir> for real CLIP weights."
)


@contextlib.contextmanager
def _without_open_clip_random_init_notice():
    """Drop open_clip's root-logger "No pretrained weights loaded" record: the
    :class:`RandomInitWarning` says the same with what to do about it."""

    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    handlers = [root, *root.handlers]
    for h in handlers:
        h.addFilter(keep)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(keep)


class RandomInitWarning(UserWarning):
    """The image encoder runs with random weights (no pretrained CLIP weights were loaded)."""


@dataclass
class ImageFeatures:
    """CLIP features of a list of images, in the order of ``image_ids``.

    Attributes
    ----------
    image_ids : list of str
        Stable identifiers, one per image.
    pooled : np.ndarray, float32, shape (n_images, embed_dim)
        CLIP image embedding (after the visual projection, not L2-normalised).
    tokens : np.ndarray, float16, shape (n_images, n_tokens, token_dim)
        Visual patch tokens after the final LayerNorm (no class token, not projected).
    meta : dict
        Provenance: model, pretrained, weights_digest, random_init, versions, device,
        n_images, cache_key, cache_hit, image_size, embed_dim, n_tokens, token_dim.
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


# --------------------------------------------------------------------------------------
# resolving `pretrained`
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _WeightsSpec:
    """How to call open_clip for a given (model, pretrained) pair."""

    source: str  # 'random' | 'tag' | 'file' | 'local-dir' | 'hf-hub'
    open_clip_name: str
    open_clip_pretrained: str | None
    kwargs: dict = field(default_factory=dict)
    tag_cfg: dict = field(default_factory=dict)


def _offline_message(model: str, pretrained: str, reason: str) -> str:
    return (
        f"CLIP weights for model '{model}' with pretrained='{pretrained}' could not be obtained "
        f"offline ({reason}). Download the checkpoint on a machine with internet access and pass "
        "its local path (pretrained='/path/open_clip_model.safetensors' or .pt/.pth/.bin) or a "
        "folder as pretrained='local-dir:/dir' (open_clip_config.json + "
        "open_clip_model.safetensors); if the weights are already in your Hugging Face cache, "
        "set HF_HUB_OFFLINE=1. Use pretrained=None for (loudly reported) random weights."
    )


def _find_dir_checkpoint(directory: Path) -> list[Path]:
    return sorted(p for ext in (".safetensors", ".bin", ".pth") for p in directory.glob(f"*{ext}"))


def _resolve_weights(model: str, pretrained: str | os.PathLike | None) -> _WeightsSpec:
    """Classify ``pretrained`` and fail early, with a clear message, on what cannot work."""
    value = "" if pretrained is None else os.fspath(pretrained).strip()
    schema_source = value.startswith(("local-dir:", "hf-hub:"))
    if not schema_source and open_clip.get_model_config(model.replace("/", "-")) is None:
        # open_clip's own error lists all ~200 architectures; keep ours readable.
        raise ValueError(
            f"unknown open_clip model '{model}' (e.g. 'ViT-B-32', 'ViT-L-14', 'i2b-tiny-vit'; "
            "see open_clip.list_models())"
        )
    if not value:
        return _WeightsSpec("random", model, None)

    if value.startswith("local-dir:"):
        directory = Path(value[len("local-dir:"):]).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"CLIP weights directory not found (pretrained='{value}'): {directory}")
        if not (directory / "open_clip_config.json").is_file():
            raise FileNotFoundError(
                f"CLIP weights directory {directory} has no open_clip_config.json "
                "(open_clip's local-dir format needs it, with a 'model_cfg' entry)"
            )
        # open_clip itself only logs a warning and silently random-inits when the folder has
        # a config but no weights; refuse that here.
        if not _find_dir_checkpoint(directory):
            raise FileNotFoundError(
                f"CLIP weights directory {directory} has no checkpoint "
                "(expected open_clip_model.safetensors, or *.safetensors / *.bin / *.pth)"
            )
        # open_clip takes local-dir (and hf-hub) as a *model name* schema and ignores
        # `pretrained`; the architecture then comes from the folder's config, not `model`.
        known = open_clip.get_model_config(model.replace("/", "-"))
        if known is not None:
            with open(directory / "open_clip_config.json", encoding="utf-8") as f:
                folder_cfg = json.load(f).get("model_cfg")
            if folder_cfg is not None and _json_safe(folder_cfg) != _json_safe(known):
                logger.warning(
                    "the architecture in %s/open_clip_config.json differs from open_clip's '%s'; "
                    "the folder's config is used (meta['model'] still says '%s')",
                    directory, model, model,
                )
        return _WeightsSpec("local-dir", f"local-dir:{directory}", None)

    if value.startswith("hf-hub:"):
        return _WeightsSpec("hf-hub", value, None, tag_cfg={"hf_hub": value[len("hf-hub:"):]})

    # open_clip checks tags before files, so do the same to call it exactly as it will behave.
    arch = model.replace("/", "-")
    tag_cfg = open_clip.get_pretrained_cfg(arch, value)
    if tag_cfg:
        kwargs = {}
        # e.g. 'openai' weights were trained with QuickGELU but the plain 'ViT-B-32' config uses
        # GELU; open_clip only warns about the mismatch and the features come out subtly wrong.
        model_cfg = open_clip.get_model_config(arch) or {}
        if tag_cfg.get("quick_gelu", False) and not model_cfg.get("quick_gelu", False):
            kwargs["force_quick_gelu"] = True
        return _WeightsSpec("tag", model, value, kwargs, dict(tag_cfg))

    path = Path(value).expanduser()
    if path.is_file():
        return _WeightsSpec("file", model, str(path))
    if path.is_dir():
        raise FileNotFoundError(
            f"CLIP checkpoint path is a directory: {path}; pass a file, or pretrained='local-dir:{path}'"
        )
    looks_like_path = path.suffix in CHECKPOINT_SUFFIXES + (".npz",) or os.sep in value or "/" in value
    if looks_like_path:
        raise FileNotFoundError(f"CLIP checkpoint file not found: {path}")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    raise ValueError(
        f"pretrained='{value}' is neither an open_clip tag for model '{model}' "
        f"(known tags: {tags or 'none'}) nor an existing checkpoint file"
    )


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _state_dict_digest(module: torch.nn.Module) -> str:
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


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


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
# the encoder
# --------------------------------------------------------------------------------------

class ImageEncoder:
    """An open_clip image tower in eval mode that returns pooled embeddings and tokens.

    Parameters
    ----------
    model : str
        open_clip architecture name (``'ViT-B-32'``, ``'ViT-L-14'``, ``'i2b-tiny-vit'``, ...).
        Must have a ``VisionTransformer`` image tower (token sequences are required).
    pretrained : str | os.PathLike | None
        ``None`` for random init (deterministic given ``seed``; reported with a
        :class:`RandomInitWarning` and a logged warning), an open_clip tag, a checkpoint file
        (``.pt/.pth/.bin/.safetensors``), ``'local-dir:/dir'`` or ``'hf-hub:org/repo'``.
        With ``local-dir:``/``hf-hub:`` the architecture comes from the folder/repo config.
    device : str | torch.device | None
        Passed to :func:`analysis.devices.select_device` (``None`` = CUDA if available).
    seed : int
        Seeds the random initialisation. The global torch RNG state is left untouched.
    batch_size : int
        Images per forward pass.

    Raises
    ------
    FileNotFoundError
        A checkpoint path or ``local-dir:`` folder (or its contents) does not exist.
    RuntimeError
        Tagged weights could not be downloaded, or a checkpoint does not fit the model.
    ValueError
        ``pretrained`` is neither a known tag nor a path.
    NotImplementedError
        The architecture's image tower is not an open_clip ``VisionTransformer``.
    """

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = str(model)
        self.pretrained = None if pretrained is None else os.fspath(pretrained)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.device = select_device(device)

        spec = _resolve_weights(self.model_name, pretrained)
        self.weights_source = spec.source
        # No reachability probe of our own: the CLI and Makefile set HF_HUB_OFFLINE=1 by
        # default, so an unobtainable tag fails at once inside open_clip and is explained below.

        t0 = time.perf_counter()
        # fork_rng: seeding for a reproducible random init must not reset the caller's RNG.
        with torch.random.fork_rng(devices=[]), _without_open_clip_random_init_notice():
            torch.manual_seed(self.seed)
            try:
                clip, _, preprocess = open_clip.create_model_and_transforms(
                    spec.open_clip_name,
                    pretrained=spec.open_clip_pretrained,
                    device="cpu",  # initialise on CPU so the weights do not depend on the device
                    # HF-text-tower configs would otherwise fetch text weights from the hub;
                    # the text tower is unused here.
                    pretrained_text=False,
                    **spec.kwargs,
                )
            except Exception as exc:  # noqa: BLE001 - re-raised with what the user can do about it
                if spec.source in ("tag", "hf-hub"):
                    raise RuntimeError(
                        _offline_message(self.model_name, self.pretrained, f"{type(exc).__name__}: {exc}")
                    ) from exc
                if spec.source in ("file", "local-dir"):
                    raise RuntimeError(
                        f"could not load CLIP checkpoint {self.pretrained!r} into architecture "
                        f"'{self.model_name}': {exc}"
                    ) from exc
                raise

        visual = clip.visual
        if not isinstance(visual, VisionTransformer):
            raise NotImplementedError(
                f"model '{self.model_name}' has a {type(visual).__name__} image tower; token "
                "sequences for cross-attention need an open_clip VisionTransformer (ViT-*) model"
            )
        # open_clip 3.3: VisionTransformer.forward returns (pooled @ proj, patch tokens) when
        # output_tokens is set; CLIP.encode_image would then return that tuple too, so we
        # call the visual tower directly.
        visual.output_tokens = True
        clip.eval()
        clip.requires_grad_(False)
        self._model = clip.to(self.device)
        self._visual = visual
        self._preprocess: Callable[[Image.Image], torch.Tensor] = preprocess
        self.preprocess_cfg = _json_safe(dict(getattr(visual, "preprocess_cfg", {})))
        self.image_size = tuple(int(s) for s in visual.image_size)
        self.embed_dim = int(visual.output_dim)
        self.n_tokens = int(visual.grid_size[0] * visual.grid_size[1])
        self.token_dim = int(visual.conv1.out_channels)
        self.random_init = spec.source == "random"
        self._weights_digest: str | None = None
        logger.info(
            "image encoder %s (pretrained=%r, source=%s) ready on %s in %.1f s",
            self.model_name, self.pretrained, spec.source, self.device, time.perf_counter() - t0,
        )
        if self.random_init:
            # One warning (shown once per call site, also on the CLI's stderr); open_clip's
            # own terser root-logger notice is filtered out during creation above.
            message = _RANDOM_INIT_MESSAGE.format(model=self.model_name, seed=self.seed)
            warnings.warn(message, RandomInitWarning, stacklevel=2)

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> torch.nn.Module:
        """The full open_clip model (eval mode, gradients off)."""
        return self._model

    @property
    def weights_digest(self) -> str:
        """sha256 of the full state dict (computed once, on first use; ~1 s for ViT-B-32)."""
        if self._weights_digest is None:
            t0 = time.perf_counter()
            self._weights_digest = _state_dict_digest(self._model)
            logger.debug("weights digest in %.2f s", time.perf_counter() - t0)
        return self._weights_digest

    def __repr__(self) -> str:
        return (
            f"ImageEncoder(model={self.model_name!r}, pretrained={self.pretrained!r}, "
            f"device={str(self.device)!r}, random_init={self.random_init})"
        )

    # ------------------------------------------------------------------ public API
    def cache_key(self, image_ids: Sequence[str], file_sha256: Sequence[str]) -> str:
        """sha256 hex identifying (format, model, weights, preprocessing, images).

        Parameters
        ----------
        image_ids : sequence of str, length n_images
        file_sha256 : sequence of str, length n_images
            sha256 hex of each image file's bytes.
        """
        payload = {
            "format": _FEATURE_FORMAT,
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
            model's open_clip eval transform.
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
        key = self.cache_key(ids, [_sha256_file(p) for p in paths])
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
    @torch.inference_mode()
    def _forward_batch(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float → pooled (B, embed_dim) float32, tokens (B, n_tokens, width) float16."""
        pooled, tokens = self._visual(batch.to(self.device, non_blocking=True))
        return (pooled.float().cpu().numpy(),
                tokens.to(torch.float16).cpu().numpy())

    def _run(self, load: Callable[[int], Image.Image], ids: list[str], *, progress: bool,
             cache_key: str | None) -> ImageFeatures:
        n = len(ids)
        # Preallocate: concatenating per-batch arrays would briefly double peak memory, which
        # matters for tens of thousands of images × hundreds of tokens.
        pooled = np.empty((n, self.embed_dim), dtype=np.float32)
        tokens = np.empty((n, self.n_tokens, self.token_dim), dtype=np.float16)
        t0 = time.perf_counter()
        with tqdm(total=n, unit="img", desc=f"CLIP {self.model_name}", disable=not progress) as bar:
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                batch = torch.stack([self._preprocess(load(i)) for i in range(start, stop)])
                pooled[start:stop], tokens[start:stop] = self._forward_batch(batch)
                bar.update(stop - start)
        seconds = time.perf_counter() - t0
        logger.info("encoded %d images with %s in %.2f s (%.1f img/s)", n, self.model_name,
                    seconds, n / max(seconds, 1e-9))
        return ImageFeatures(list(ids), pooled, tokens, self._meta(n, cache_key))

    def _meta(self, n_images: int, cache_key: str | None) -> dict:
        return {
            "model": self.model_name,
            "pretrained": self.pretrained,
            "weights_source": self.weights_source,
            "weights_digest": self.weights_digest,
            "random_init": self.random_init,
            "seed": self.seed,
            "open_clip_version": open_clip.__version__,
            "torch_version": torch.__version__,
            "device": str(self.device),
            "n_images": int(n_images),
            "cache_key": cache_key,
            "cache_hit": False,
            "image_size": list(self.image_size),
            "embed_dim": self.embed_dim,
            "n_tokens": self.n_tokens,
            "token_dim": self.token_dim,
            "feature_format": _FEATURE_FORMAT,
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

def benchmark_features(
    model: str,
    pretrained: str | None = None,
    n_images: int = 64,
    batch_size: int = 32,
    device: str | None = None,
    *,
    repeats: int = 3,
) -> dict:
    """Time feature extraction (preprocessing + forward) on procedurally generated images.

    Uniform-noise RGB images at the model's input size are encoded in memory. One untimed
    warm-up batch comes first (allocator, kernel selection), then ``repeats`` timed passes
    over all ``n_images``; the median pass is reported because on a shared 2-core machine
    single passes vary several-fold.

    Returns
    -------
    dict
        ``model``, ``pretrained``, ``device``, ``n_images``, ``batch_size``, ``seconds``
        (median pass), ``seconds_min``, ``repeats``, ``images_per_s`` (from the median),
        ``random_init``, ``torch_threads``.
    """
    if n_images < 1 or repeats < 1:
        raise ValueError(f"n_images and repeats must be >= 1, got {n_images}, {repeats}")
    encoder = ImageEncoder(model, pretrained, device=device, batch_size=batch_size)
    rng = np.random.default_rng(0)
    h, w = encoder.image_size
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n_images)]

    def sync() -> None:
        if encoder.device.type == "cuda":
            torch.cuda.synchronize(encoder.device)

    encoder.encode_images(images[: min(batch_size, n_images)])
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encoder.encode_images(images)
        sync()
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    return {
        "model": model,
        "pretrained": pretrained,
        "device": str(encoder.device),
        "n_images": int(n_images),
        "batch_size": int(batch_size),
        "seconds": round(seconds, 4),
        "seconds_min": round(min(times), 4),
        "repeats": int(repeats),
        "images_per_s": round(n_images / seconds, 2),
        "random_init": encoder.random_init,
        "torch_threads": torch.get_num_threads(),
    }

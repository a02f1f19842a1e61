"""The paper's encoder: CLIP image features via open_clip (cache: :mod:`.base`).

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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch
from open_clip.transformer import VisionTransformer
from PIL import Image

from analysis.devices import select_device
from analysis.encoders.base import FeatureEncoder, RandomInitWarning, json_safe

logger = logging.getLogger(__name__)

_CONFIG_DIR = Path(__file__).parent.parent / "encoder_configs"
# open_clip only knows architectures from JSON files; registering at import means every
# caller (tests, notebooks, CLI) can say ``ClipEncoder('i2b-tiny-vit')``.
for _config_file in sorted(_CONFIG_DIR.glob("*.json")):
    if _config_file.stem not in open_clip.list_models():
        open_clip.add_model_config(_config_file)

#: Suffixes open_clip can read as a full CLIP checkpoint (besides big_vision ``.npz``).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


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
            if folder_cfg is not None and json_safe(folder_cfg) != json_safe(known):
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
# the encoder
# --------------------------------------------------------------------------------------

class ClipEncoder(FeatureEncoder):
    """An open_clip image tower in eval mode that returns pooled embeddings and tokens.

    Pooled: the CLIP image embedding after the visual projection; tokens: the patch tokens
    after ``ln_post`` (no class token, not projected).

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

    family = "open_clip"
    feature_format = "i2b-features-v1:pooled=visual-proj;tokens=ln_post-patch-tokens-no-cls"

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
        self._network = clip
        self._visual = visual
        self._preprocess: Callable[[Image.Image], torch.Tensor] = preprocess
        self.preprocess_cfg = json_safe(dict(getattr(visual, "preprocess_cfg", {})))
        self.image_size = tuple(int(s) for s in visual.image_size)
        self.embed_dim = int(visual.output_dim)
        self.n_tokens = int(visual.grid_size[0] * visual.grid_size[1])
        self.token_dim = int(visual.conv1.out_channels)
        self.random_init = spec.source == "random"
        logger.info(
            "image encoder %s (pretrained=%r, source=%s) ready on %s in %.1f s",
            self.model_name, self.pretrained, spec.source, self.device, time.perf_counter() - t0,
        )
        if self.random_init:
            # One warning (shown once per call site, also on the CLI's stderr); open_clip's
            # own terser root-logger notice is filtered out during creation above.
            message = _RANDOM_INIT_MESSAGE.format(model=self.model_name, seed=self.seed)
            warnings.warn(message, RandomInitWarning, stacklevel=2)

    @property
    def model(self) -> torch.nn.Module:
        """The full open_clip model (eval mode, gradients off)."""
        return self._model

    @property
    def label(self) -> str:
        weights = "random init" if self.random_init else f"pretrained ({self.pretrained})"
        return f"CLIP weights: {weights} — open_clip {self.model_name}"

    def _extra_meta(self) -> dict:
        return {"open_clip_version": open_clip.__version__}

    def _forward_batch(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float → pooled (B, embed_dim) float32, tokens (B, n_tokens, width) float16."""
        pooled, tokens = self._visual(batch)
        return (pooled.float().cpu().numpy(),
                tokens.to(torch.float16).cpu().numpy())

